"""Finding (image, mask) pairs in the folder layouts of the datasets the papers use.

=============  =================================================================================
layout         folders (relative to the root given to :func:`find_samples`)
=============  =================================================================================
``kaggle``     ``images/*.jpg`` + ``masks/*.jpg`` (same stem; also the synthetic data), or the
               split variant ``train/{images,masks}`` + ``test/{images,masks}`` (split honoured)
``deepcrack``  ``train_img/ train_lab/ test_img/ test_lab/`` (labels ``<stem>.png``; split kept)
``carvana``    ``train/<id>.jpg`` + ``train_masks/<id>_mask.gif``
``isic2018``   ``ISIC2018_Task1-2_{Training,Validation,Test}_Input/ISIC_XXXXXXX.jpg`` +
               ``ISIC2018_Task1_{Training,Validation,Test}_GroundTruth/ISIC_XXXXXXX_segmentation.png``
               (whichever of the three splits are present; their split is kept)
``dsb2018``    one folder per image id: ``<id>/images/<id>.png`` + ``<id>/masks/*.png`` (instance
               masks merged with a logical OR); the root may also be the folder holding
               ``stage1_train/`` (``stage1_test`` has no masks and is not used)
=============  =================================================================================

Image and mask folders are searched **recursively**: a pair in a sub-folder
(``images/site1/a.jpg`` + ``masks/site1/a.png``) is paired by its relative path and gets the id
``site1/a``. Files whose extension is not an image type (:data:`~unetq.data.imageio.IMAGE_EXTS`)
are skipped with a warning that lists them, except documents (:data:`DOCUMENT_EXTS`: ISIC ships
``LICENSE.txt`` next to its images); :func:`skipped_files` returns them all, documents included.
Hidden files and folders (name starting with ``.``) are ignored.

Every pair is checked eagerly (:func:`validate_samples`): unpaired files, empty folders,
unreadable or truncated files, unsupported modes and image/mask size mismatches raise a
:class:`~unetq.data.imageio.DataError` that names the files. Nothing is skipped silently.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .imageio import IMAGE_EXTS, DataError, inspect_file, is_image_file

log = logging.getLogger(__name__)

#: Skipped without a warning: text and metadata files, never images (still in :func:`skipped_files`).
DOCUMENT_EXTS = (".txt", ".md", ".csv", ".json", ".yaml", ".yml", ".xml", ".html", ".pdf", ".ini", ".db")


@dataclass(frozen=True)
class Sample:
    """One image with its mask file(s); ``split`` is the dataset's own split if it has one."""

    id: str
    image: Path
    masks: tuple[Path, ...]
    split: str | None = None

    @property
    def mask(self) -> Path | tuple[Path, ...]:
        """The mask path (a tuple when several instance masks are merged)."""
        return self.masks[0] if len(self.masks) == 1 else self.masks


def _hidden(p: Path, folder: Path) -> bool:
    return any(part.startswith(".") for part in p.relative_to(folder).parts)


def _images(folder: Path, skipped: list[Path]) -> list[Path]:
    """Image files in ``folder`` and its sub-folders, sorted; other files are appended to
    ``skipped``; hidden files and folders are ignored."""
    if not folder.is_dir():
        raise DataError(f"folder not found: {folder}")
    files = []
    for p in sorted(folder.rglob("*")):
        if _hidden(p, folder) or p.is_dir():
            continue
        (files if is_image_file(p) else skipped).append(p)
    if not files:
        raise DataError(f"empty folder: no image files ({' '.join(IMAGE_EXTS)}) in {folder} or its sub-folders")
    return files


def _key(p: Path, folder: Path, stem: str) -> str:
    """``sub/folders/<stem>``: the relative path of ``p`` in ``folder`` with ``stem`` as name."""
    parent = p.relative_to(folder).parent
    return (parent / stem).as_posix()


def _pair(img_dir: Path, mask_dir: Path, mask_stem: Callable[[str], str], skipped: list[Path], split=None,
          id_prefix: str = "") -> list[Sample]:
    """Pair images and masks by relative path and stem (sub-folders included); any image
    without a mask or mask without image is an error."""
    images, masks = _images(img_dir, skipped), _images(mask_dir, skipped)
    by_stem = {}
    for m in masks:
        k = _key(m, mask_dir, m.stem)
        if k in by_stem:
            raise DataError(f"two masks with the stem {k!r}: {by_stem[k]} and {m}")
        by_stem[k] = m
    samples, lonely = [], []
    used = set()
    for im in images:
        key = _key(im, img_dir, mask_stem(im.stem))
        if key in by_stem:
            samples.append(Sample(id_prefix + _key(im, img_dir, im.stem), im, (by_stem[key],), split))
            used.add(key)
        else:
            lonely.append(im)
    orphans = [m for s, m in by_stem.items() if s not in used]
    if lonely or orphans:
        msg = []
        if lonely:
            msg.append(f"{len(lonely)} image(s) in {img_dir} without a mask in {mask_dir}: "
                       + ", ".join(p.relative_to(img_dir).as_posix() for p in lonely[:5])
                       + (" ..." if len(lonely) > 5 else ""))
        if orphans:
            msg.append(f"{len(orphans)} mask(s) in {mask_dir} without an image in {img_dir}: "
                       + ", ".join(p.relative_to(mask_dir).as_posix() for p in orphans[:5])
                       + (" ..." if len(orphans) > 5 else ""))
        raise DataError("; ".join(msg))
    return samples


# ----------------------------------------------------------------------------- layouts
def _kaggle(root: Path, skipped: list[Path]):
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return _pair(root / "images", root / "masks", lambda s: s, skipped)
    if all((root / sp / sub).is_dir() for sp in ("train", "test") for sub in ("images", "masks")):
        return [s for sp in ("train", "test")
                for s in _pair(root / sp / "images", root / sp / "masks", lambda s: s, skipped, sp, f"{sp}/")]
    return None


def _deepcrack(root: Path, skipped: list[Path]):
    names = ("train_img", "train_lab", "test_img", "test_lab")
    if not all((root / n).is_dir() for n in names):
        return None
    return [s for sp in ("train", "test")
            for s in _pair(root / f"{sp}_img", root / f"{sp}_lab", lambda s: s, skipped, sp, f"{sp}/")]


def _carvana(root: Path, skipped: list[Path]):
    if not ((root / "train").is_dir() and (root / "train_masks").is_dir()):
        return None
    return _pair(root / "train", root / "train_masks", lambda s: f"{s}_mask", skipped)


_ISIC_SPLITS = {"Training": "train", "Validation": "val", "Test": "test"}


def _isic2018(root: Path, skipped: list[Path]):
    found = []
    for name, split in _ISIC_SPLITS.items():
        inp = root / f"ISIC2018_Task1-2_{name}_Input"
        gt = root / f"ISIC2018_Task1_{name}_GroundTruth"
        if inp.is_dir() or gt.is_dir():
            if not (inp.is_dir() and gt.is_dir()):
                raise DataError(f"ISIC 2018 {name} split incomplete in {root}: need both "
                                f"{inp.name}/ and {gt.name}/")
            found += _pair(inp, gt, lambda s: f"{s}_segmentation", skipped, split)
    return found or None


def _dsb_folder(d: Path) -> bool:
    """``d`` looks like a DSB2018 image folder: ``d/images/<d.name>.<ext>``."""
    return d.is_dir() and (d / "images").is_dir() and any(
        p.stem == d.name for p in (d / "images").iterdir())


def _dsb_files(folder: Path, skipped: list[Path]) -> list[Path]:
    """Image files directly in ``folder`` (DSB2018 has no sub-folders there: they are skipped)."""
    if not folder.is_dir():
        return []
    out = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        (out if is_image_file(p) else skipped).append(p)
    return out


def _dsb2018(root: Path, skipped: list[Path]):
    if (root / "stage1_train").is_dir():
        root = root / "stage1_train"
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not any(_dsb_folder(d) for d in subdirs):
        return None
    samples = []
    for d in subdirs:
        imgs = _dsb_files(d / "images", skipped)
        if len(imgs) != 1:
            raise DataError(f"DSB2018 folder {d} must hold exactly one image in images/, found {len(imgs)}")
        masks = _dsb_files(d / "masks", skipped)
        if not masks:
            raise DataError(f"image without mask: {imgs[0]} (no files in {d / 'masks'})")
        samples.append(Sample(d.name, imgs[0], tuple(masks)))
    return samples


LAYOUTS: dict[str, tuple[Callable, str]] = {
    "kaggle": (_kaggle, "images/ + masks/  (or train/{images,masks} + test/{images,masks})"),
    "deepcrack": (_deepcrack, "train_img/ train_lab/ test_img/ test_lab/"),
    "carvana": (_carvana, "train/ + train_masks/ (*_mask.gif)"),
    "isic2018": (_isic2018, "ISIC2018_Task1-2_Training_Input/ + ISIC2018_Task1_Training_GroundTruth/"),
    "dsb2018": (_dsb2018, "<id>/images/<id>.png + <id>/masks/*.png  (or stage1_train/ of those)"),
}


def detect_layout(root) -> str:
    """Name of the layout whose folder signature ``root`` has (see the module table)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset root is not a folder: {root}")
    sig = {
        "kaggle": (root / "images").is_dir() and (root / "masks").is_dir()
        or ((root / "train" / "images").is_dir() and (root / "test" / "masks").is_dir()),
        "deepcrack": all((root / n).is_dir() for n in ("train_img", "train_lab", "test_img", "test_lab")),
        "carvana": (root / "train").is_dir() and (root / "train_masks").is_dir(),
        "isic2018": any((root / f"ISIC2018_Task1-2_{n}_Input").is_dir() for n in _ISIC_SPLITS),
        "dsb2018": (root / "stage1_train").is_dir() or any(_dsb_folder(d) for d in root.iterdir()),
    }
    hits = [k for k, v in sig.items() if v]
    if not hits:
        looked = "\n".join(f"  {k}: {desc}" for k, (_, desc) in LAYOUTS.items())
        raise DataError(f"unknown dataset layout in {root}; looked for:\n{looked}")
    if len(hits) > 1:
        raise DataError(f"ambiguous dataset layout in {root}: matches {hits}; pass layout= explicitly")
    return hits[0]


def validate_samples(samples: list[Sample], progress: bool = False) -> dict[str, int]:
    """Eager header check of every pair (readable, complete, supported mode, same size).

    Raises a DataError naming up to 10 bad files; returns counts of logged conversions."""
    from tqdm.auto import tqdm

    errors, conversions, first = [], {}, {}
    for s in tqdm(samples, desc="checking files", disable=not progress, leave=False):
        try:
            size, mode = inspect_file(s.image, "image")
            if mode != "RGB":
                conversions[f"image {mode}->RGB"] = conversions.get(f"image {mode}->RGB", 0) + 1
                first.setdefault(f"image {mode}->RGB", s.image)
            for m in s.masks:
                msize, mmode = inspect_file(m, "mask")
                if mmode != "L":
                    conversions[f"mask {mmode}->L"] = conversions.get(f"mask {mmode}->L", 0) + 1
                    first.setdefault(f"mask {mmode}->L", m)
                if msize != size:
                    raise DataError(f"size mismatch: image {s.image} is {size[0]}x{size[1]}, "
                                    f"mask {m} is {msize[0]}x{msize[1]}")
        except DataError as e:
            errors.append(str(e))
    if errors:
        more = f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else ""
        raise DataError(f"{len(errors)} bad sample(s):\n  " + "\n  ".join(errors[:10]) + more)
    for k, c in conversions.items():
        level = logging.WARNING if "RGBA" in k or "LA" in k or k.startswith("mask RGB") else logging.INFO
        log.log(level, "%d file(s) converted %s (first: %s)", c, k, first[k])
    return conversions


def _discover(root: Path, layout: str) -> tuple[str, list[Sample] | None, list[Path]]:
    """``(layout, samples, skipped files)`` of ``root``."""
    if not root.is_dir():
        raise DataError(f"dataset root is not a folder: {root}")
    if layout == "auto":
        layout = detect_layout(root)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose 'auto' or one of {sorted(LAYOUTS)}")
    skipped: list[Path] = []
    samples = LAYOUTS[layout][0](root, skipped)
    return layout, samples, sorted(set(skipped))


def skipped_files(root, layout: str = "auto") -> list[Path]:
    """The files in the image and mask folders of ``root`` that :func:`find_samples` skips,
    because their extension is not an image type (``IMAGE_EXTS``), or, in DSB2018's flat
    ``images/`` / ``masks/`` folders, because they are sub-folders. Hidden files are not listed."""
    return _discover(Path(root), layout)[2]


def _warn_skipped(root: Path, skipped: list[Path], shown: int = 20) -> None:
    names = [p.relative_to(root).as_posix() for p in skipped if p.suffix.lower() not in DOCUMENT_EXTS]
    if not names:
        return
    more = f" ... and {len(names) - shown} more" if len(names) > shown else ""
    warnings.warn(f"{root}: {len(names)} file(s) skipped, not an image type ({' '.join(IMAGE_EXTS)}): "
                  + ", ".join(names[:shown]) + more + " (unetq.data.skipped_files lists them all)",
                  stacklevel=3)


def find_samples(root, layout: str = "auto", validate: bool = True) -> list[Sample]:
    """All (image, mask) pairs under ``root`` in ``layout`` (``"auto"`` detects it), sorted by id;
    pairs in sub-folders included (see the module doc).

    Every file is header-checked unless ``validate=False``; problems raise a DataError naming
    the files (see the module doc). Files that are skipped (not an image type) are listed in a
    warning, documents (:data:`DOCUMENT_EXTS`) excepted (:func:`skipped_files` returns them all)."""
    root = Path(root)
    layout, samples, skipped = _discover(root, layout)
    if skipped:
        _warn_skipped(root, skipped)
    if not samples:
        looked = LAYOUTS[layout][1]
        raise DataError(f"no {layout} dataset in {root} (looked for {looked})")
    samples = sorted(samples, key=lambda s: s.id)
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise DataError(f"duplicate sample ids in {root}: {dup}")
    if validate:
        validate_samples(samples, progress=len(samples) > 2000)
    log.info("found %d %s samples in %s", len(samples), layout, root)
    return samples
