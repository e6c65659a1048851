"""TensorFlow in modelhub's processes: its logging lowered while modelhub drives it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from .._frameworks import settle


@contextlib.contextmanager
def quiet_tf() -> Iterator[None]:
    """Lower TensorFlow's logging for the block (it writes a lot on stderr)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    settle()
    level = tf.get_logger().level
    tf.get_logger().setLevel("ERROR")
    try:
        yield
    finally:
        tf.get_logger().setLevel(level)
