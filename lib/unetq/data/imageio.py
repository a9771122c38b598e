"""Reading images and masks with clear errors, and the preprocessing of seed 000.

Mode rules (documented conversions are logged; anything else is an error naming the file):

- images: RGB as is; grayscale (``L``, ``1``, ``P``) is expanded to 3 channels; ``RGBA``/``LA``
  drop the alpha channel (DSB2018 ships RGBA PNGs with an opaque alpha); ``CMYK``/``YCbCr`` are
  converted to RGB. 16-bit and float modes (``I;16``, ``I``, ``F``) are rejected.
- masks: ``L`` as is; ``1`` and palette ``P`` (Carvana GIFs) are converted to ``L``; ``RGB``
  masks are converted to luminance with a warning. ``RGBA``/``LA`` (is the alpha the label?),
  16-bit and float masks are rejected.

Preprocessing (``load_pair``): the raw mask is binarised at the source resolution (value
``> threshold`` is crack; seed 000 uses 100), the binary mask is resized with Pillow's bilinear
filter (area-aware when shrinking) and pixels at least half covered (``> 127``) are kept; the
image is resized bilinearly. Both become ``size × size`` (non-square sources are stretched, as
in the papers' pipelines), uint8; the dataset divides the image by 255.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError


IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif")

_IMAGE_OK = {"RGB"}
_IMAGE_CONVERT = {"L": "grayscale", "1": "1-bit", "P": "palette", "RGBA": "alpha dropped",
                  "LA": "alpha dropped", "CMYK": "CMYK", "YCbCr": "YCbCr", "RGBX": "padding dropped"}
_MASK_OK = {"L"}
_MASK_CONVERT = {"1": "1-bit", "P": "palette", "RGB": "RGB label converted to luminance"}


class DataError(ValueError):
    """A dataset file or folder that cannot be used as is; the message names it."""


def is_image_file(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")


def _truncated(path: Path) -> bool:
    """Cheap completeness check on the file's tail (full decoding happens at load time)."""
    suffix = path.suffix.lower()
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            f.seek(max(0, size - 1024))
            tail = f.read()
    except OSError:
        return True
    if suffix in (".jpg", ".jpeg"):
        return b"\xff\xd9" not in tail
    if suffix == ".png":
        return b"IEND" not in tail[-32:]
    if suffix == ".gif":
        return b";" not in tail[-16:]
    return False


def inspect_file(path: Path, kind: str) -> tuple[tuple[int, int], str]:
    """Header check of an image (``kind="image"``) or mask: returns ``((width, height), mode)``.

    Raises :class:`DataError` naming the file when it is missing, empty, not an image, truncated
    or of an unsupported mode."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{kind} file not found: {path}")
    if path.stat().st_size == 0:
        raise DataError(f"{kind} file is empty: {path}")
    try:
        with Image.open(path) as im:
            size, mode = im.size, im.mode
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataError(f"unreadable {kind} file {path}: {e}") from e
    if _truncated(path):
        raise DataError(f"truncated {kind} file {path} (no end-of-image marker)")
    ok, convert = (_IMAGE_OK, _IMAGE_CONVERT) if kind == "image" else (_MASK_OK, _MASK_CONVERT)
    if mode not in ok and mode not in convert:
        raise DataError(
            f"unsupported {kind} mode {mode!r} in {path}; supported: "
            f"{sorted(ok | set(convert))} (16-bit, float and alpha masks are rejected)")
    return size, mode


def _decode(path: Path, kind: str) -> Image.Image:
    try:
        im = Image.open(path)
        im.load()
        return im
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"cannot decode {kind} file {path}: {e}") from e


def read_image(path) -> np.ndarray:
    """RGB uint8 array ``[H, W, 3]`` (mode conversions as in the module doc)."""
    path = Path(path)
    im = _decode(path, "image")
    if im.mode not in _IMAGE_OK:
        if im.mode not in _IMAGE_CONVERT:
            raise DataError(f"unsupported image mode {im.mode!r} in {path}")
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8)


def read_mask(paths) -> np.ndarray:
    """Raw grayscale mask uint8 ``[H, W]`` before binarisation. Several paths (DSB2018 instance
    masks) are merged with a pixel-wise maximum, which after thresholding is their logical OR."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out = None
    for p in paths:
        p = Path(p)
        im = _decode(p, "mask")
        if im.mode not in _MASK_OK:
            if im.mode not in _MASK_CONVERT:
                raise DataError(f"unsupported mask mode {im.mode!r} in {p}")
            im = im.convert("L")
        a = np.asarray(im, dtype=np.uint8)
        if out is None:
            out = a.copy()
        elif a.shape != out.shape:
            raise DataError(f"mask {p} has size {a.shape[::-1]}, other masks of the image {out.shape[::-1]}")
        else:
            np.maximum(out, a, out=out)
    if out is None:
        raise DataError("read_mask: no mask file given")
    return out


def binarize(mask: np.ndarray, threshold: int = 100) -> np.ndarray:
    """Seed 000's binarisation: uint8 1 where ``mask > threshold`` (so 100 → 0, 101 → 1), else 0."""
    return (np.asarray(mask) > threshold).astype(np.uint8)


def resize_image(img: np.ndarray, size: int) -> np.ndarray:
    if img.shape[0] == size and img.shape[1] == size:
        return img
    return np.asarray(Image.fromarray(img, "RGB").resize((size, size), Image.BILINEAR))


def resize_binary_mask(mask01: np.ndarray, size: int) -> np.ndarray:
    """Resize a {0,1} mask: bilinear on {0,255}, then keep pixels more than half covered."""
    if mask01.shape[0] == size and mask01.shape[1] == size:
        return mask01.astype(np.uint8)
    im = Image.fromarray((mask01 * 255).astype(np.uint8), "L").resize((size, size), Image.BILINEAR)
    return (np.asarray(im) > 127).astype(np.uint8)


def load_pair(image_path, mask_paths, size: int, threshold: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Decode, binarise and resize one sample: (uint8 ``[S,S,3]``, uint8 ``[S,S]`` in {0,1})."""
    img = read_image(image_path)
    raw = read_mask(mask_paths)
    if raw.shape != img.shape[:2]:
        first = mask_paths if isinstance(mask_paths, (str, Path)) else list(mask_paths)[0]
        raise DataError(f"size mismatch: image {image_path} is {img.shape[1]}x{img.shape[0]}, "
                        f"mask {first} is {raw.shape[1]}x{raw.shape[0]}")
    return resize_image(img, size), resize_binary_mask(binarize(raw, threshold), size)


def as_mask_array(m) -> np.ndarray:
    """A raw mask from a path, a list of paths, a Sample, a PIL image or an array."""
    if isinstance(m, np.ndarray):
        return m
    if isinstance(m, Image.Image):
        return np.asarray(m.convert("L") if m.mode != "L" else m)
    if hasattr(m, "masks"):  # a Sample
        return read_mask(m.masks)
    if isinstance(m, (str, Path)) or isinstance(m, Sequence):
        return read_mask(m)
    raise TypeError(f"cannot read a mask from {type(m).__name__}")
