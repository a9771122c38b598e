"""The architectures of the study and their per-block tables.

``create_model(name, in_channels=3, classes=1, width=64, **kw)`` builds ``"unet"`` (seed 000
Table 1), ``"ghost_unet"`` (seed 000 Table 2), ``"squeeze_unet"`` (seed 002 Tables 3-4) and
``"mbu_unet"`` (seed 001). ``width`` scales every channel count (``round(c * width / 64)``, at
least 1; 64 = the papers). Every model takes ``[N, in_channels, H, W]`` with H, W multiples of 16,
returns logits ``[N, classes, H, W]``, carries ``model.config`` (``create_model(**model.config)``
rebuilds it) and lists its paper-table rows with ``model.blocks()``.

``param_table``, ``profile_layers``, ``paper_param_table`` and ``weight_bytes`` (the one
definition of a model's size in a floating-point precision) live in ``tables.py``. The package
owns the networks and their counts; figures of them live in ``unetq.studies``.
"""
from __future__ import annotations

import importlib

from .registry import MODELS, create_model, list_models, register_model
from .tables import paper_param_table, param_table, profile_layers, weight_bytes

# Importing a module registers its architectures.
from . import unet, ghost_unet, squeeze_unet  # noqa: E402,F401  (registration side effect)

try:
    mbu_unet = importlib.import_module(f"{__name__}.mbu_unet")  # engineer E's; registers "mbu_unet"
except ModuleNotFoundError as err:
    # Only tolerate the module file itself being absent; a missing import *inside* it is a bug.
    if err.name != f"{__name__}.mbu_unet":
        raise

__all__ = [
    "MODELS", "create_model", "list_models", "register_model",
    "param_table", "profile_layers", "paper_param_table", "weight_bytes",
]
