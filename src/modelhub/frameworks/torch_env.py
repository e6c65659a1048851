"""torch and torchvision knowledge that the ``torch:`` hub, its conversion and its mirror routes
share: torch's cache folders and ``trusted_list``, torchvision's weights registry, torch.hub's
file-name hash rule, GitHub zipballs (their commit, a repository folder packed back into one), and
the example input shape of a model. Read from torch 2.14.1 ``torch/hub.py``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ModelNotFoundError, UsageError
from ..refs import ModelRef

# torch.hub's rule (torch 2.14.1 ``torch/hub.py: HASH_REGEX``), searched anywhere in the name; the
# first match is the sha256 prefix. Names without one (torchvision's quantized weights,
# ``mobilenet_v2_qnnpack_37f702c5.pth``) publish no hash at all.
HASH_REGEX = re.compile(r"-([a-f0-9]*)\.")

#: Owners torch.hub trusts without asking (``torch/hub.py: _TRUSTED_REPO_OWNERS``).
TRUSTED_OWNERS = ("facebookresearch", "facebookincubator", "pytorch", "fairinternal")
_COMMIT = re.compile(r"[0-9a-f]{40}")


def torch_home() -> Path:
    """torch's cache root, from the environment now: ``$TORCH_HOME`` or ``~/.cache/torch``."""
    if os.environ.get("TORCH_HOME"):
        return Path(os.environ["TORCH_HOME"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "torch"


def hub_dir() -> Path:
    """torch.hub's folder (``torch.hub.get_dir()`` without ``set_dir``): ``$TORCH_HOME/hub``."""
    return torch_home() / "hub"


def checkpoints_dir() -> Path:
    """Where torch.hub (and torchvision) look for downloaded weights."""
    return hub_dir() / "checkpoints"


def hash_prefix(filename: str) -> str | None:
    """The sha256 prefix torch.hub checks for ``filename`` (``check_hash=True``), or None when
    the name publishes none (no ``-<hex>.`` in it, or an empty one: nothing to check)."""
    match = HASH_REGEX.search(filename)
    return match.group(1) if match and match.group(1) else None


def hub_repo_dir(owner: str, repo: str, git_ref: str) -> Path:
    """torch.hub's folder for a repository at a ref: ``$TORCH_HOME/hub/OWNER_REPO_REF``."""
    return hub_dir() / "_".join([owner, repo, git_ref.replace("/", "_")])


def trusted_list() -> Path:
    """torch.hub's list of trusted repositories, one ``OWNER_REPO`` per line."""
    return hub_dir() / "trusted_list"


def listed_as_trusted(owner: str, repo: str) -> bool:
    """Whether ``OWNER_REPO`` is a line of torch.hub's ``trusted_list`` (missing file: no)."""
    try:
        lines = trusted_list().read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return False
    return f"{owner}_{repo}" in (line.strip() for line in lines)


def add_to_trusted_list(owner: str, repo: str) -> None:
    """Append ``OWNER_REPO`` to torch.hub's ``trusted_list`` as ``torch.hub.load(...,
    trust_repo=True)`` does (once; the file and its folder are created when missing)."""
    if listed_as_trusted(owner, repo):
        return
    path = trusted_list()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        fh.seek(0, os.SEEK_END)
        lead = b""
        if fh.tell():
            fh.seek(-1, os.SEEK_END)
            lead = b"" if fh.read(1) == b"\n" else b"\n"
        fh.write(lead + f"{owner}_{repo}\n".encode())


def zip_commit(path: Path) -> str | None:
    """The commit id ``git archive`` (hence a GitHub zipball) stores as the zip's comment."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            comment = zf.comment.decode("ascii", errors="replace").strip()
    except (OSError, zipfile.BadZipFile):
        return None
    return comment if _COMMIT.fullmatch(comment) else None


def pack_repo_dir(repo_dir: Path, top: str, dest: Path) -> None:
    """Write ``repo_dir`` (a repository torch.hub extracted) to ``dest`` as a zipball shaped
    like GitHub's: the ``top/`` folder entry first, then its files in sorted order with fixed
    times, so the same folder always gives the same bytes. Python caches and symlinks are
    left out."""
    import zipfile

    files = sorted(
        p
        for p in repo_dir.rglob("*")
        if p.is_file()
        and not p.is_symlink()
        and "__pycache__" not in p.relative_to(repo_dir).parts
        and p.suffix != ".pyc"
    )
    stamp = (1980, 1, 1, 0, 0, 0)
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        folder = zipfile.ZipInfo(f"{top}/", stamp)
        folder.external_attr = (0o40755 << 16) | 0x10
        zf.writestr(folder, b"")
        for path in files:
            info = zipfile.ZipInfo(f"{top}/{path.relative_to(repo_dir).as_posix()}", stamp)
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())


def input_shape(options: Mapping[str, Any], weights: Any = None) -> tuple[int, ...]:
    """The example input shape: ``--input-shape`` or the weights' own transforms/metadata."""
    raw = options.get("input_shape")
    if raw:
        try:
            shape = tuple(int(x) for x in str(raw).replace("x", ",").split(","))
        except ValueError:
            raise UsageError(f"--input-shape {raw!r} is not like 1,3,224,224") from None
        if not shape or any(d <= 0 for d in shape):
            raise UsageError(f"--input-shape {raw!r} needs positive sizes")
        return shape
    if weights is not None:
        meta = getattr(weights, "meta", {}) or {}
        if meta.get("input_shape"):
            return tuple(int(d) for d in meta["input_shape"])
        try:
            crop = weights.transforms().crop_size
            size = int(crop[0] if isinstance(crop, list | tuple) else crop)
            return (1, 3, size, size)
        except Exception:
            pass
    return (1, 3, 224, 224)


def _no_such_model(name: str, names: list[str]) -> str:
    """The message for a torchvision model that does not exist, with the closest names
    (``resnet-18`` → ``resnet18``: separators and case ignored first)."""
    import difflib

    def bare(text: str) -> str:
        return "".join(c for c in text.lower() if c.isalnum())

    close = [n for n in sorted(names) if bare(n) == bare(name)]
    close += [n for n in difflib.get_close_matches(name, names, n=3) if n not in close]
    if close:
        return f"torchvision has no model {name!r}; did you mean {', '.join(close[:3])}?"
    known = ", ".join(sorted(names)[:8])
    return f"torchvision has no model {name!r} (e.g. {known}, ...)"


def weights_for(ref: ModelRef) -> Any:
    """torchvision's weights enum member for ``ref`` (DEFAULT unless named)."""
    try:
        import torchvision.models as tvm
    except ImportError:
        raise UsageError("torch: models need torchvision: pip install 'modelhub[torch]'") from None
    try:
        enum = tvm.get_model_weights(ref.name)
    except (ValueError, KeyError):
        raise ModelNotFoundError(_no_such_model(ref.name, tvm.list_models())) from None
    member = ref.revision or "DEFAULT"
    try:
        return enum[member]
    except KeyError:
        names = ", ".join(w.name for w in enum)
        raise ModelNotFoundError(
            f"{ref.name} has no weights {member!r}; choose one of {names}"
        ) from None
