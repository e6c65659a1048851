"""Fixtures for mirror and import tests: a store, models imported into it, a running mirror."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelhub.importer import import_path
from modelhub.mirror import running
from modelhub.refs import parse
from modelhub.store import Manifest, Store
from tests.support.mirror_fixtures import make_hf_snapshot, make_savedmodel_folder
from tests.support.onnx_models import make_mlp


@pytest.fixture
def store(store_root: Path) -> Store:
    """The test's empty store."""
    return Store(store_root)


def do_import(store: Store, src: Path, ref: str, **kwargs: bool) -> Manifest:
    """Import under the model's lock, as the CLI does."""
    mref = parse(ref)
    with store.lock(mref):
        return import_path(store, src, mref, **kwargs)


@pytest.fixture
def hf_files(tmp_path: Path) -> dict[str, bytes]:
    """Files of a snapshot folder at tmp/src/hf-snapshot (with 12 extra files for paging)."""
    return make_hf_snapshot(tmp_path / "src" / "hf-snapshot", seed=1, extra_files=12)


@pytest.fixture
def populated(store: Store, tmp_path: Path, hf_files: dict[str, bytes]) -> dict[str, Manifest]:
    """A store with one model of every kind the mirror serves."""
    src = tmp_path / "src"
    make_hf_snapshot(src / "hf-v1", seed=2)
    make_savedmodel_folder(src / "savedmodel", seed=3)
    make_savedmodel_folder(src / "kaggle-sm", seed=4)
    make_mlp(src / "tiny-mlp-13.onnx", seed=5, opset=13)
    weights = src / "tiny-weights.pth"
    weights.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 40)
    h5 = src / "tiny_weights_tf_dim_ordering.h5"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(200)) * 30)
    return {
        "hf": do_import(store, src / "hf-snapshot", "hf:test-org/tiny-model"),
        "hf@v1": do_import(store, src / "hf-v1", "hf:test-org/tiny-model@v1"),
        "tfhub": do_import(store, src / "savedmodel", "tfhub:test/tiny-sm/1"),
        "kaggle": do_import(store, src / "kaggle-sm", "kaggle:test/tiny/tensorFlow2/default/2"),
        "onnx": do_import(store, src / "tiny-mlp-13.onnx", "onnx:tiny-mlp"),
        "torch": do_import(store, weights, "torch:tiny"),
        "keras": do_import(store, h5, "keras:Tiny"),
    }


@pytest.fixture
def mirror(store: Store, populated: dict[str, Manifest]) -> Iterator[str]:
    """A mirror of the populated store on 127.0.0.1 (tree pages of 5 entries); its URL."""
    with running(store.root, tree_page_size=5) as url:
        yield url
