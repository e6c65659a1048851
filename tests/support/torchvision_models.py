"""A tiny real model registered in torchvision's own registry, with generated weights.

The weights file name carries the true sha256 prefix of its content, like torchvision's own
(``tinynet-<8 hex>.pth``), and its URL is the upstream form (download.pytorch.org/models/...),
so modelhub resolves it exactly as it resolves ``torch:resnet18``.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from functools import partial
from typing import Any

NAME = "modelhub_tinynet"
CATEGORIES = [f"class{i}" for i in range(10)]


@dataclass(frozen=True)
class TinyWeights:
    """The generated weights: bytes, file name and upstream URL."""

    data: bytes
    filename: str
    url: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


_REGISTERED: TinyWeights | None = None


def _net() -> Any:
    import torch
    from torch import nn

    class TinyNet(nn.Module):
        def __init__(self, num_classes: int = 10) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 8, 3, padding=1),
                nn.BatchNorm2d(8),
                nn.ReLU(),
                nn.Conv2d(8, 16, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d(1),
            )
            self.classifier = nn.Linear(16, num_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(torch.flatten(self.features(x), 1))

    return TinyNet


def _register(name: str, data: bytes, tiny_net: Any) -> TinyWeights:
    from torchvision.models._api import Weights, WeightsEnum, register_model
    from torchvision.transforms._presets import ImageClassification

    filename = f"{name}-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    url = f"https://download.pytorch.org/models/{filename}"
    weights = Weights(
        url=url,
        transforms=partial(ImageClassification, crop_size=32, resize_size=36),
        meta={"categories": CATEGORIES, "_docs": "generated for modelhub's tests"},
    )
    enum = WeightsEnum(f"{name}_Weights", [("IMAGENET1K_V1", weights), ("DEFAULT", weights)])

    def builder(*, weights: enum | None = None, progress: bool = True, **kwargs: Any) -> Any:
        weights = enum.verify(weights)
        net = tiny_net(len(weights.meta["categories"]) if weights else 10)
        if weights is not None:
            net.load_state_dict(weights.get_state_dict(progress=progress, check_hash=True))
        return net

    builder.__annotations__["weights"] = enum | None
    register_model(name=name)(builder)
    return TinyWeights(data, filename, url)


def register() -> TinyWeights:
    """Register ``modelhub_tinynet`` in torchvision (once per process); return its weights."""
    global _REGISTERED
    if _REGISTERED is None:
        import torch

        torch.manual_seed(1234)
        tiny_net = _net()
        model = tiny_net(len(CATEGORIES))
        with torch.no_grad():
            model.features[1].running_mean.uniform_(-0.1, 0.1)
            model.features[1].running_var.uniform_(0.5, 1.5)
        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        _REGISTERED = _register(NAME, buf.getvalue(), tiny_net)
    return _REGISTERED


class _RunsCode:
    """Pickles to a call of os.system: what a hostile checkpoint carries."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        import os

        return (os.system, (f"touch {self.marker}",))


_EVIL: TinyWeights | None = None
EVIL_NAME = "modelhub_evilnet"


def register_evil(marker: str) -> TinyWeights:
    """Register a model whose (correctly hash-named) weights pickle runs code when unpickled."""
    global _EVIL
    if _EVIL is None:
        import torch

        buf = io.BytesIO()
        torch.save({"features.0.weight": _RunsCode(marker)}, buf)
        _EVIL = _register(EVIL_NAME, buf.getvalue(), _net())
    return _EVIL
