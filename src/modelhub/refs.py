"""Model references: parse, validate and print canonically. Pure: no I/O.

Grammar (each hub's is its row in :mod:`modelhub.registry`)::

    hf:ORG/NAME[@REVISION]
    tfhub:HANDLE
    kaggle:OWNER/MODEL/FRAMEWORK/VARIATION[/VERSION]
    onnx:NAME[@OPSET]
    torch:NAME[@WEIGHTS]            torchvision builder + weights enum member
    torch:OWNER/REPO[:REF]/ENTRY    torch.hub GitHub entrypoint
    keras:NAME[/notop]
    url:URL

plus full hub URLs (huggingface.co, tfhub.dev, kaggle.com/models); any other http(s) URL is
``url:``. Every name segment is checked against one conservative character set, so that no
accepted reference can name a path outside the store.
"""

from __future__ import annotations

from .refgrammar import MAX_REF_LEN, MAX_SEGMENT_LEN, ModelRef, is_name, url_basename
from .registry import hub_names, parse, with_revision

__all__ = [
    "MAX_REF_LEN",
    "MAX_SEGMENT_LEN",
    "ModelRef",
    "hub_names",
    "is_name",
    "parse",
    "url_basename",
    "with_revision",
]
