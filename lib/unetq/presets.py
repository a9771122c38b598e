"""Parameter presets shared by every notebook.

- ``ci``: seconds per notebook; used by nbval in the test command. Tiny images and widths, so
  numbers are meaningless except as a smoke test (the notebooks say so).
- ``quick``: the default of the main job: the whole study on a 2-core CPU in under 30 minutes.
- ``paper``: the protocol of seed 000 (256x256, batch 16, 50 epochs, full width) for a GPU.
"""
from __future__ import annotations

import copy

PRESETS: dict[str, dict] = {
    "ci": dict(
        n_images=24, source_size=96, image_size=32, width=4, epochs=2, batch_size=4,
        lr=1e-3, num_workers=0, calib_images=4, bench_repeats=3, bench_warmup=1,
    ),
    "quick": dict(
        n_images=320, source_size=448, image_size=128, width=16, epochs=12, batch_size=8,
        lr=1e-3, num_workers=0, calib_images=32, bench_repeats=20, bench_warmup=3,
    ),
    "paper": dict(
        n_images=2000, source_size=448, image_size=256, width=64, epochs=50, batch_size=16,
        lr=1e-3, num_workers=2, calib_images=200, bench_repeats=50, bench_warmup=10,
    ),
}


def get_preset(name: str, **overrides) -> dict:
    """The preset ``name`` with ``overrides`` applied; ``None`` overrides are ignored so a
    papermill parameter left at ``None`` keeps the preset's value."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    cfg = copy.deepcopy(PRESETS[name])
    cfg["preset"] = name
    for k, v in overrides.items():
        if v is not None:
            cfg[k] = v
    return cfg
