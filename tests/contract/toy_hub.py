"""A hub defined only here: one adapter class and one registry row (see CONTRIBUTING.md,
"Adding a hub"). :func:`install` registers it with modelhub and gives the contract suite its
fixture; ``tests/contract/test_toy_hub.py`` proves that this alone gets it the whole contract
suite, the mirror and ``sync``.

``toy:NAME`` is one file, ``NAME.bin``, served by its hub at ``{base}/NAME/NAME.bin``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelhub import registry
from modelhub.hubs.base import ModelHub, Plan, RemoteFile
from modelhub.refgrammar import ModelRef, check_segment
from modelhub.store import layout
from modelhub.upstream import Memo, Recorded, UpstreamStatus, check_http

NAME = "toy"


class ToyHub(ModelHub):
    """The toy hub's adapter: resolve names one file; the base class fetches it."""

    name = NAME

    def file_url(self, ref: ModelRef) -> str:
        """Where the hub serves ``ref``'s file."""
        return f"{self.hub_url}/{ref.name}/{ref.name}.bin"

    def resolve(
        self,
        ref: ModelRef,
        *,
        offline: bool = False,
        options: Mapping[str, Any] | None = None,
        force: bool = False,
    ) -> Plan:
        """One file; its revision is its sha256, known once fetched."""
        url = self.file_url(ref)
        rel = layout.file_path(ref, f"{ref.name}.bin")
        return Plan(ref=ref, revision=None, files=[RemoteFile(url, rel)], source=[url])

    def check_upstream(self, recorded: Recorded, memo: Memo) -> UpstreamStatus:
        """HEAD the file: its validators against the recorded sha256."""
        return check_http(recorded, self.file_url(recorded.ref), "HEAD", recorded.files[0][1])

    def import_kind(self, src: Path, ref: ModelRef) -> str:
        """A ``.bin`` file, kept under its own name."""
        if src.is_file() and src.name == f"{ref.name}.bin":
            return "plain-file"
        return super().import_kind(src, ref)


def _parse(text: str, body: str) -> ModelRef:
    check_segment(text, body, "toy model name")
    return ModelRef(NAME, body)


ROW = registry.HubRow(
    NAME,
    f"{__name__}:ToyHub",
    grammar="toy:NAME",
    parse=_parse,
    endpoints=(registry.Endpoint(NAME, "https://toy.invalid", NAME),),
    framework="toyfw",
    weight=1,
    import_help="toy: takes NAME.bin",
)


def build_toy(seed: Any, work: Path) -> Any:
    """The contract fixture: ``toy:tiny``, 1 MiB of seeded bytes, in the seed store."""
    from modelhub import parse
    from modelhub.importer import import_path
    from tests.faults.hubs import Scenario

    path = work / "tiny.bin"
    path.write_bytes(random.Random(5).randbytes(1 << 20))
    manifest = import_path(seed, path, parse("toy:tiny"))
    return Scenario(
        hub=NAME,
        ref="toy:tiny",
        target="/toy/tiny/tiny.bin",
        size=path.stat().st_size,
        files={f.path: (f.sha256, f.size) for f in manifest.files},
        transport_args=["--stage", "none"],
    )


def install() -> None:
    """Register the toy hub with modelhub and its fixture with the contract suite."""
    from tests.faults import hubs

    registry.register(ROW)
    hubs.BUILDERS[NAME] = lambda seed, work, _url: {NAME: build_toy(seed, work)}
    hubs.NEEDS[NAME] = ()
