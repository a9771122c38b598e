"""The study's configuration: the presets and :class:`StudyConfig`, resolved once and passed down.

Owns every setting a notebook, a study function or a trainer reads (data, model width, training,
calibration and benchmark repeats). A :class:`StudyConfig` is built once, by :func:`get_preset`
(preset + overrides), at the top of a notebook or a command, and handed to everything below it;
nothing below re-resolves a preset name. Changed settings are new objects
(:meth:`StudyConfig.replace`), never mutations.

Presets:

- ``ci``: seconds per notebook; used by nbval in the test command. Tiny images and widths, so
  numbers are meaningless except as a smoke test (the notebooks say so).
- ``quick``: the default of the main job: the whole study on a 2-core CPU in under 30 minutes,
  three training seeds, early stopping.
- ``cpu-study``: the converged multi-seed study for a 2-core CPU (about two hours with its
  learning-rate sweep): the data, image size and width of ``quick``, but an epoch cap that
  early stopping (not the cap) ends, so the ranking is not an artefact of a short budget; what
  the committed report shows. Same data as ``quick``, so the two answer "does the order change
  when every model is trained to convergence".
- ``paper``: the protocol of seed 000 (256x256, batch 16, 50 epochs, full width) for a GPU.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

#: The values that differ between presets; every other field takes its :class:`StudyConfig`
#: default.
PRESETS: dict[str, dict[str, Any]] = {
    "ci": dict(
        n_images=24, source_size=96, image_size=32, width=4, epochs=2, batch_size=4,
        lr=1e-3, num_workers=0, calib_images=4, bench_repeats=3, bench_warmup=1,
    ),
    "quick": dict(
        n_images=240, source_size=448, image_size=96, width=16, epochs=20, batch_size=8,
        lr=1e-3, num_workers=0, calib_images=32, bench_repeats=20, bench_warmup=3,
        seeds=3, patience=4, lr_schedule="plateau", bn_recalibration=True,
    ),
    "cpu-study": dict(
        n_images=240, source_size=448, image_size=96, width=16, epochs=60, batch_size=8,
        lr=1e-3, num_workers=0, calib_images=32, bench_repeats=40, bench_warmup=5,
        seeds=3, patience=6, lr_schedule="plateau", bn_recalibration=True,
    ),
    "paper": dict(
        n_images=2000, source_size=448, image_size=256, width=64, epochs=50, batch_size=16,
        lr=1e-3, num_workers=2, calib_images=200, bench_repeats=50, bench_warmup=10,
    ),
}


@dataclass(frozen=True)
class StudyConfig:
    """Every setting of one study run (frozen; change one with :meth:`replace`).

    Data: ``source`` (``"synthetic"``: the built-in generator, else the root of a real dataset),
    ``n_images`` (a seeded subset of a real dataset; None: all), ``source_size`` (generated
    image side), ``image_size`` (network input side), ``resize`` (how non-square images become
    square: ``"pad"``, ``"crop"`` or ``"stretch"``, see ``unetq.data.imageio``), ``split_file``
    (a JSON split of your own), ``seed``, ``threshold`` (mask binarisation, seed 000: 100),
    ``augment`` (flips on train).
    Model: ``width`` (channel scale; 64 is the paper model). Training: ``epochs``,
    ``batch_size``, ``lr``, ``optimizer``, ``weight_decay``, ``grad_clip``, ``amp``,
    ``bn_recalibration``, ``device``, ``num_workers``. Deployment: ``calib_images``.
    Benchmarks: ``bench_repeats`` timed calls, ``bench_warmup`` untimed calls, ``bench_block``
    consecutive calls per case in interleaved timing. Fair comparison: every architecture is
    trained with the same procedure: ``seeds`` training seeds (``train_seed`` 0 .. seeds-1, the
    data and split fixed by ``seed``), ``epochs`` as a cap with early stopping after ``patience``
    epochs without a better validation loss, the ``lr_schedule`` and BatchNorm re-estimation
    (``bn_recalibration``) for all. ``processes``: training processes; above 1 every training run
    is started under ``torchrun`` (DistributedDataParallel, one GPU per process on CUDA, gloo on
    the CPU; ``unetq.train.distributed``), ``batch_size`` staying the global batch."""

    preset: str
    n_images: int
    source_size: int
    image_size: int
    width: int
    epochs: int
    batch_size: int
    lr: float
    calib_images: int
    bench_repeats: int
    bench_warmup: int
    num_workers: int = 0
    bench_block: int = 5
    source: str = "synthetic"
    resize: str = "pad"
    split_file: str | None = None
    seed: int = 0
    threshold: int = 100
    augment: bool = False
    amp: str = "off"
    device: str = "auto"
    optimizer: str = "adam"
    weight_decay: float = 0.0
    grad_clip: float | None = None
    bn_recalibration: bool = False
    train_seed: int = 0
    seeds: int = 1
    patience: int | None = None
    lr_schedule: str = "constant"
    processes: int = 1

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {sorted(PRESETS)}")
        if self.source is None:
            object.__setattr__(self, "source", "synthetic")
        if self.resize not in ("pad", "crop", "stretch"):
            raise ValueError(f"resize must be 'pad', 'crop' or 'stretch', got {self.resize!r}")
        for name in ("n_images", "source_size", "image_size", "width", "epochs", "batch_size",
                     "calib_images", "bench_repeats", "bench_block", "seeds", "processes"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < (0 if name == "epochs" else 1):
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(self.lr, (int, float)) or self.lr <= 0:
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # -- derived configurations ---------------------------------------------------------------
    def replace(self, **changes) -> "StudyConfig":
        """A copy with ``changes`` (``None`` values ignored, as in :func:`get_preset`)."""
        unknown = set(changes) - set(self.field_names())
        if unknown:
            raise TypeError(f"unknown StudyConfig fields: {sorted(unknown)}")
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def baseline(self) -> "StudyConfig":
        """The unchanged preset this configuration started from (checkpoint names say how a run
        differs from it)."""
        return get_preset(self.preset)


def get_preset(name: str, **overrides) -> StudyConfig:
    """The :class:`StudyConfig` of preset ``name`` with ``overrides`` applied; ``None`` overrides
    are ignored so a papermill parameter left at ``None`` keeps the preset's value. An override
    that is not a field is an error naming it."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    names = set(StudyConfig.field_names())
    unknown = sorted(k for k, v in overrides.items() if k not in names and v is not None)
    if unknown:
        raise TypeError(f"unknown study settings {unknown}; the settings are {sorted(names - {'preset'})}")
    values = dict(PRESETS[name])
    values.update({k: v for k, v in overrides.items() if v is not None})
    return StudyConfig(preset=name, **values)
