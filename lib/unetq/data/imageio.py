"""Reading images and masks with clear errors, and the preprocessing of seed 000.

Mode rules (documented conversions are logged; anything else is an error naming the file):

- images: RGB as is; grayscale (``L``, ``1``, ``P``) is expanded to 3 channels; ``RGBA``/``LA``
  drop the alpha channel (DSB2018 ships RGBA PNGs with an opaque alpha); ``CMYK``/``YCbCr`` are
  converted to RGB. 16-bit and float modes (``I;16``, ``I``, ``F``) are rejected.
- masks: ``L`` as is; ``1`` and palette ``P`` (Carvana GIFs) are converted to ``L``; ``RGB``
  masks are converted to luminance with a warning. ``RGBA``/``LA`` (is the alpha the label?),
  16-bit and float masks are rejected.

Preprocessing (``load_pair``): the raw mask is binarised at the source resolution (value
``> threshold`` is crack; seed 000 uses 100). A mask whose largest value is 1 is a 0/1 label map
(PNG label masks often are): its 1s are crack whatever the threshold (logged once per folder),
instead of the whole mask silently becoming background. Masks holding NaN or Inf are rejected.
Image and mask become ``size × size`` by one of :data:`RESIZE_MODES`:

- ``"pad"`` (default): scaled so the long side is ``size``, keeping the aspect ratio, then padded
  at the bottom/right with black image pixels and background mask pixels. Every labelled pixel
  is kept; the padding adds only true negatives, which IoU and Dice do not count.
- ``"crop"``: scaled so the short side is ``size``, then centre-cropped (drops the edges).
- ``"stretch"``: scaled to ``size × size`` regardless of the aspect ratio (the papers' pipelines).

Square sources give the same result in every mode. The image is resized bilinearly. The mask is
resized by **area**: each output pixel gets the fraction of its area covered by crack (Pillow's
box filter), and pixels at least :data:`MASK_COVERAGE` covered are crack, so a crack a pixel or
two wide shrunk 3-4x stays a connected line instead of breaking into dots (a half-coverage rule
drops a thin crack wherever it straddles two output pixels). Output is uint8; the dataset
divides the image by 255.

Files: the extensions of :data:`IMAGE_EXTS` are read (JPEG in all its spellings, PNG, BMP, TIFF,
GIF, WebP). An image whose header claims more than twice Pillow's decompression-bomb limit
(``PIL.Image.MAX_IMAGE_PIXELS``: Pillow's error) is a :class:`DataError` naming the file (and is
collected with the other bad files by ``validate_samples``); above the limit itself the header
check warns, naming the file.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

log = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp")
_JPEG_EXTS = (".jpg", ".jpeg", ".jpe", ".jfif")

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
    if suffix in _JPEG_EXTS:
        return b"\xff\xd9" not in tail
    if suffix == ".png":
        return b"IEND" not in tail[-32:]
    if suffix == ".gif":
        return b";" not in tail[-16:]
    return False


_BOMB = (Image.DecompressionBombError, Image.DecompressionBombWarning)  # the warning when made an error


def _bomb_error(path: Path, kind: str, e: Exception) -> DataError:
    return DataError(f"{kind} file {path} claims too many pixels to decode safely ({e}); raise "
                     "PIL.Image.MAX_IMAGE_PIXELS if the file is trusted")


def _warn_if_large(path: Path, kind: str, size: tuple[int, int]) -> None:
    """Pillow's decompression-bomb warning (more than ``MAX_IMAGE_PIXELS``), naming the file."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit and size[0] * size[1] > limit:
        warnings.warn(f"{kind} file {path} has {size[0]}x{size[1]} pixels, more than PIL.Image.MAX_IMAGE_PIXELS "
                      f"({limit}): it may be a decompression bomb", Image.DecompressionBombWarning, stacklevel=3)


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
    except _BOMB as e:
        raise _bomb_error(path, kind, e) from e
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataError(f"unreadable {kind} file {path}: {e}") from e
    _warn_if_large(path, kind, size)
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
    except _BOMB as e:
        raise _bomb_error(path, kind, e) from e
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


def is_zero_one(mask: np.ndarray) -> bool:
    """Whether ``mask`` is a 0/1 label map: its largest value is 1 (and none is negative)."""
    a = np.asarray(mask)
    return a.size > 0 and float(a.max()) == 1.0 and float(a.min()) >= 0.0


def binarize(mask: np.ndarray, threshold: int = 100) -> np.ndarray:
    """Seed 000's binarisation: uint8 1 where ``mask > threshold`` (so 100 → 0, 101 → 1), else 0.

    A 0/1 mask (:func:`is_zero_one`: largest value 1) has its 1s as crack whatever the threshold
    (with the threshold it would be all background). A mask holding NaN or Inf is a
    :class:`DataError`."""
    a = np.asarray(mask)
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
        raise DataError(f"mask holds {int((~np.isfinite(a)).sum())} NaN/Inf value(s); a mask must hold "
                        "finite values (0-255, or 0/1)")
    if threshold >= 1 and is_zero_one(a):
        return (a >= 1).astype(np.uint8)
    return (a > threshold).astype(np.uint8)


_ZERO_ONE_FOLDERS: set = set()


def _note_zero_one(path) -> None:
    """Log (once per folder) that the masks there are 0/1 label maps."""
    folder = Path(path).parent
    if folder not in _ZERO_ONE_FOLDERS:
        _ZERO_ONE_FOLDERS.add(folder)
        log.info("0/1 masks in %s (first: %s): value 1 is crack", folder, Path(path).name)


RESIZE_MODES = ("pad", "crop", "stretch")
#: A resized mask pixel is crack when at least this fraction of its area was crack.
MASK_COVERAGE = 0.25


def _geometry(h: int, w: int, size: int, mode: str) -> tuple[tuple[int, int], tuple[int, int, int, int] | None]:
    """``((new_w, new_h), crop box or None)`` of :data:`RESIZE_MODES` for an ``h × w`` source."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")
    if mode == "stretch" or h == w:
        return (size, size), None
    if mode == "pad":
        k = size / max(h, w)
        return (max(1, round(w * k)), max(1, round(h * k))), None
    k = size / min(h, w)
    nw, nh = max(size, round(w * k)), max(size, round(h * k))
    x0, y0 = (nw - size) // 2, (nh - size) // 2
    return (nw, nh), (x0, y0, x0 + size, y0 + size)


def _fit(im: Image.Image, size: int, mode: str, resample) -> np.ndarray:
    (nw, nh), box = _geometry(im.height, im.width, size, mode)
    if (nw, nh) != im.size:
        im = im.resize((nw, nh), resample)
    if box is not None:
        im = im.crop(box)
    a = np.asarray(im)
    if a.shape[0] != size or a.shape[1] != size:  # "pad": background at the bottom / right
        out = np.zeros((size, size) + a.shape[2:], a.dtype)
        out[:a.shape[0], :a.shape[1]] = a
        a = out
    return a


def resize_image(img: np.ndarray, size: int, mode: str = "pad") -> np.ndarray:
    """``uint8 [H, W, 3]`` -> ``[size, size, 3]`` by ``mode`` (bilinear)."""
    if img.shape[0] == size and img.shape[1] == size:
        return img
    return _fit(Image.fromarray(img, "RGB"), size, mode, Image.BILINEAR)


def resize_binary_mask(mask01: np.ndarray, size: int, mode: str = "pad") -> np.ndarray:
    """Resize a {0,1} mask by area coverage (see the module docstring): ``[size, size]`` {0,1}."""
    if mask01.shape[0] == size and mask01.shape[1] == size:
        return mask01.astype(np.uint8)
    cover = _fit(Image.fromarray((mask01 * 255).astype(np.uint8), "L"), size, mode, Image.BOX)
    return (cover >= round(255 * MASK_COVERAGE)).astype(np.uint8)


def load_pair(image_path, mask_paths, size: int, threshold: int = 100,
              resize: str = "pad") -> tuple[np.ndarray, np.ndarray]:
    """Decode, binarise and resize one sample: (uint8 ``[S,S,3]``, uint8 ``[S,S]`` in {0,1})."""
    img = read_image(image_path)
    raw = read_mask(mask_paths)
    if raw.shape != img.shape[:2]:
        first = mask_paths if isinstance(mask_paths, (str, Path)) else list(mask_paths)[0]
        raise DataError(f"size mismatch: image {image_path} is {img.shape[1]}x{img.shape[0]}, "
                        f"mask {first} is {raw.shape[1]}x{raw.shape[0]}")
    if threshold >= 1 and is_zero_one(raw):
        _note_zero_one(mask_paths if isinstance(mask_paths, (str, Path)) else list(mask_paths)[0])
    return resize_image(img, size, resize), resize_binary_mask(binarize(raw, threshold), size, resize)


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
