"""Model registry: every architecture registers a builder under its name."""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str):
    """Decorator: ``@register_model("unet")`` on a builder ``f(in_channels, classes, width, **kw)``."""

    def deco(builder):
        if name in MODELS:
            raise ValueError(f"model {name!r} registered twice")
        MODELS[name] = builder
        return builder

    return deco


def list_models() -> list[str]:
    return sorted(MODELS)


def create_model(name: str, in_channels: int = 3, classes: int = 1, width: int = 64, **kw) -> nn.Module:
    """Build a registered architecture. ``width`` scales every channel count (64 = the papers').

    The returned module carries ``model.config`` (a dict) such that
    ``create_model(**model.config)`` rebuilds the same architecture (used by checkpoints)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; registered: {list_models()}")
    model = MODELS[name](in_channels=in_channels, classes=classes, width=width, **kw)
    model.config = dict(name=name, in_channels=in_channels, classes=classes, width=width, **kw)
    return model
