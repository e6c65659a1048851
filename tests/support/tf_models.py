"""Tiny real SavedModels and TFLite models built with TensorFlow, and archives of them."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path


def make_saved_model(path: Path, seed: int = 1) -> Path:
    """A tf.Module with variables, two float outputs and an int input/output, saved at ``path``."""
    import tensorflow as tf

    class Tiny(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(tf.random.stateless_normal([4, 3], seed=[seed, 2]))
            self.b = tf.Variable(tf.random.stateless_normal([3], seed=[seed, 3]))

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, 4], tf.float32, name="x"),
                tf.TensorSpec([None], tf.int32, name="k"),
            ]
        )
        def serve(self, x: tf.Tensor, k: tf.Tensor) -> dict[str, tf.Tensor]:
            logits = tf.matmul(x, self.w) + self.b
            return {"logits": logits, "probs": tf.nn.softmax(logits), "doubled": k * 2}

    module = Tiny()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def make_tflite(path: Path, seed: int = 1) -> Path:
    """A real TFLite flatbuffer (y = relu(x @ W), x: [1, 4]) converted by TensorFlow."""
    import tensorflow as tf

    class Tiny(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(tf.random.stateless_normal([4, 3], seed=[seed, 2]))

        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32, name="x")])
        def __call__(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": tf.nn.relu(tf.matmul(x, self.w))}

    module = Tiny()
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.__call__.get_concrete_function()], module
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(converter.convert())
    return path


def targz(folder: Path) -> bytes:
    """The folder as a tar.gz, members relative to it (the TF Hub compressed format)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for item in sorted(folder.rglob("*")):
            tar.add(str(item), arcname=item.relative_to(folder).as_posix(), recursive=False)
    return buf.getvalue()


def hostile_targz(kind: str) -> bytes:
    """A tar.gz with one hostile member: 'dotdot', 'absolute', 'symlink', 'hardlink', 'device'."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        ok = tarfile.TarInfo("saved_model.pb")
        ok.size = 3
        tar.addfile(ok, io.BytesIO(b"abc"))
        info = tarfile.TarInfo(
            {"dotdot": "../../evil.txt", "absolute": "/tmp/evil.txt"}.get(kind, "evil")
        )
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        elif kind == "hardlink":
            info.type, info.linkname = tarfile.LNKTYPE, "../../etc/passwd"
        elif kind == "device":
            info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
        else:
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
            return _close(tar, buf)
        tar.addfile(info)
    return buf.getvalue()


def _close(tar: tarfile.TarFile, buf: io.BytesIO) -> bytes:
    tar.close()
    return buf.getvalue()
