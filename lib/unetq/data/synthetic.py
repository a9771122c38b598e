"""Procedural road-crack images: the study's embedded default dataset.

Every image is built from its own RNG, seeded from ``(seed, index)``, so a dataset of ``n=10`` is
byte for byte the first ten images of ``n=20``. The files follow the Kaggle crack-segmentation
layout (``images/NNNNN.jpg`` RGB, ``masks/NNNNN.jpg`` grayscale) and, like the Kaggle masks, the
masks are JPEG-compressed anti-aliased drawings, so they hold stray grey values and the
threshold-100 binarisation matters.

What an image holds (all vectorised numpy / Pillow, no per-pixel Python):

- asphalt: a tinted grey base with faint low-frequency mottling, fine aggregate (bright stones,
  dark pits, a few px across) and per-pixel grain, kept sharp (real road photographs are
  fine-grained, not blotchy);
- distractors that are *not* labelled: straight sealed joints, lane paint (white or yellow,
  worn), oil stains, cast shadows (half-planes and pole bands), an illumination gradient;
- cracks (labelled): meandering random-walk polylines with branches, dark and sharp, width
  ``crack_width`` px (at 448 px) varying along the crack, contrast varying per crack and along
  it; some images hold a network of short cracks. The label covers the visible crack and
  nothing more (``label_margin`` px wider on each side, default 0), as the annotations of
  CrackForest, Crack500 and the Kaggle crack set do; ``crack_density`` scales the number of
  cracks. The defaults put the crack fraction, label width and contrast in the range of those
  datasets (``unetq.data.stats.REAL_RANGES``; notebook 01 measures them);
- about 15 % of the images are crack-free. ``width`` gives non-square images (the generator
  draws ``size`` x ``size`` and keeps the left ``width`` columns, or pads to them).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .. import paths

log = logging.getLogger(__name__)

#: Bumped whenever the generator's output changes, so a cached dataset of an older version is
#: regenerated instead of trusted.
GENERATOR_VERSION = 3
#: Fixed encoder settings: with the same Pillow/libjpeg build the files are byte-identical.
JPEG_IMAGE = dict(quality=90, subsampling=2, optimize=False, progressive=False)
JPEG_MASK = dict(quality=97, optimize=False, progressive=False)
P_CRACK_FREE = 0.15
#: Appearance defaults (widths in px at 448 px; they scale with the image size).
CRACK_WIDTH = (2.5, 6.5)
LABEL_MARGIN = 0.0
CRACK_DENSITY = 1.0
_MARKER = "COMPLETE.json"


def _rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(index), 0xC4AC])


def _smooth(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    """Smooth noise (about unit variance) with features about ``scale`` pixels across."""
    k = max(2, int(round(size / scale))) + 1
    low = rng.standard_normal((k, k)).astype(np.float32)
    return np.asarray(Image.fromarray(low).resize((size, size), Image.BICUBIC), dtype=np.float32)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    return x, y


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def _line_distance(rng, size, x, y):
    """Signed distance of every pixel to a random straight line through the image."""
    theta = rng.uniform(0, np.pi)
    x0, y0 = rng.uniform(0.15, 0.85, 2) * size
    return (x - x0) * np.cos(theta) + (y - y0) * np.sin(theta)


# --------------------------------------------------------------------------- background
def _asphalt(rng, size):
    """RGB float32 asphalt texture in [0, 255]."""
    s = size / 448.0  # texture scales with the image so every size looks like the same road
    base = rng.uniform(95, 150)
    lum = base + 4 * _smooth(rng, size, 90 * s) + 2 * _smooth(rng, size, 20 * s)
    stones = _smooth(rng, size, max(1.5, 2.6 * s))
    bright = np.clip((stones - 0.8) / 0.5, 0, 1)
    dark = np.clip((-stones - 1.0) / 0.5, 0, 1)
    lum = lum + rng.uniform(25, 50) * bright - rng.uniform(25, 45) * dark
    lum = lum + rng.normal(0, rng.uniform(4, 9), (size, size)).astype(np.float32)
    tint = 1 + rng.uniform(-0.05, 0.05, 3).astype(np.float32)
    # stones carry their own slight colour
    stone_tint = 1 + rng.uniform(-0.08, 0.08, 3).astype(np.float32)
    rgb = lum[..., None] * tint * (1 + (stone_tint - 1) * bright[..., None])
    return rgb.astype(np.float32)


def _joint(rng, size, x, y, rgb):
    """A straight sealed joint: dark, uniform width, crisp edges (not a crack)."""
    theta = rng.choice([0.0, np.pi / 2]) + rng.normal(0, 0.05)
    x0, y0 = rng.uniform(0.15, 0.85, 2) * size
    d = (x - x0) * np.cos(theta) + (y - y0) * np.sin(theta)
    half = rng.uniform(2.0, 5.5) * size / 448
    a = _sigmoid((half - np.abs(d)) / 0.6)
    rgb *= (1 - rng.uniform(0.35, 0.65) * a)[..., None]
    rgb += (a * rng.normal(0, 3, (size, size)))[..., None]


def _paint(rng, size, x, y, rgb):
    """A worn lane marking: a wide straight stripe, white or yellow."""
    d = _line_distance(rng, size, x, y)
    half = rng.uniform(10, 30) * size / 448
    wear = np.clip(0.85 + 0.25 * _smooth(rng, size, 30 * size / 448), 0, 1)
    a = _sigmoid((half - np.abs(d)) / 1.0) * wear * rng.uniform(0.55, 0.95)
    color = np.array([235, 235, 228] if rng.random() < 0.6 else [225, 190, 70], np.float32)
    rgb[:] = rgb * (1 - a[..., None]) + color * a[..., None]


def _stain(rng, size, x, y, rgb):
    """An oil stain: a soft irregular dark blob."""
    cx, cy = rng.uniform(0, size, 2)
    r = rng.uniform(18, 80) * size / 448
    ex = rng.uniform(0.6, 1.4)
    rr = np.sqrt(((x - cx) / ex) ** 2 + ((y - cy) * ex) ** 2) / r
    a = _sigmoid((1 - rr + 0.35 * _smooth(rng, size, r * 0.6 + 2)) / 0.12)
    rgb *= (1 - rng.uniform(0.15, 0.4) * a)[..., None]


def _shadow(rng, size, x, y, rgb):
    """A cast shadow: a soft half-plane or a pole's band."""
    d = _line_distance(rng, size, x, y)
    soft = rng.uniform(2, 12) * size / 448
    if rng.random() < 0.5:
        a = _sigmoid(d / soft)
    else:
        a = _sigmoid((rng.uniform(12, 40) * size / 448 - np.abs(d)) / soft)
    rgb *= (1 - rng.uniform(0.3, 0.55) * a)[..., None]


# --------------------------------------------------------------------------- cracks
def _walk(rng, start, angle, length, step):
    """Points of a meandering crack path: a persistent random walk of the heading."""
    n = max(3, int(length / step))
    heading = angle + np.cumsum(rng.normal(0, 0.12, n)) + rng.normal(0, 0.35, n)
    pts = np.asarray(start, np.float32) + np.cumsum(
        step * np.stack([np.cos(heading), np.sin(heading)], 1), 0)
    return np.vstack([np.asarray(start, np.float32)[None], pts])


def _profile(rng, n):
    """A smooth positive profile along ``n`` points in about [0.55, 1], tapered at the ends."""
    k = max(2, n // 12 + 1)
    low = rng.uniform(0.55, 1.0, k)
    prof = np.interp(np.linspace(0, k - 1, n), np.arange(k), low)
    taper = np.minimum(1, np.minimum(np.arange(n), np.arange(n)[::-1]) / 4 + 0.4)
    return prof * taper


def _draw_crack(draws, pts, width, contrast, margin, rng, ss):
    """Draw one polyline: visible darkness on ``draws[0]``, label on ``draws[1]`` (both at ``ss``×);
    the label is the visible stroke, ``margin`` px wider on each side."""
    vis, lab = draws
    n = len(pts)
    w = width * _profile(rng, n)
    c = contrast * (0.8 + 0.2 * _profile(rng, n))
    p = pts * ss
    for i in range(n - 1):
        seg = [tuple(p[i]), tuple(p[i + 1])]
        wv = max(1, int(round(w[i] * ss)))
        vis.line(seg, fill=int(255 * c[i]), width=wv)
        wl = max(1, int(round((w[i] + 2 * margin) * ss)))
        lab.line(seg, fill=255, width=wl)
        # round caps on both: smooth bands, not chains of beads
        for d, ww, f in ((vis, wv, int(255 * c[i])), (lab, wl, 255)):
            r = ww / 2
            d.ellipse([p[i + 1][0] - r, p[i + 1][1] - r, p[i + 1][0] + r, p[i + 1][1] + r], fill=f)
    return w


def _cracks(rng, size, ss, crack_width=CRACK_WIDTH, label_margin=LABEL_MARGIN, density=CRACK_DENSITY):
    """Supersampled crack canvases: (darkness alpha, label), both float32 in [0, 1] at ``size``."""
    big = size * ss
    vis_im = Image.new("L", (big, big), 0)
    lab_im = Image.new("L", (big, big), 0)
    draws = (ImageDraw.Draw(vis_im), ImageDraw.Draw(lab_im))
    s = size / 448.0
    margin = label_margin * s
    style = rng.random()
    lam = (2.0 if style > 0.25 else 6.0) * density
    n_main = max(1, int(round(density))) + rng.poisson(lam)  # style <= 0.25: a network of short cracks
    for _ in range(n_main):
        start = rng.uniform(-0.05, 1.05, 2) * size
        angle = rng.uniform(0, 2 * np.pi)
        # aim roughly across the image
        to_centre = np.arctan2(size / 2 - start[1], size / 2 - start[0])
        angle = to_centre + rng.normal(0, 0.6) if rng.random() < 0.7 else angle
        length = rng.uniform(0.4, 1.2) * size if style > 0.25 else rng.uniform(0.15, 0.4) * size
        lo, hi = crack_width
        width = (lo + (hi - lo) * rng.beta(2.0, 2.0)) * max(s, 0.5)
        contrast = rng.uniform(0.45, 0.85)
        pts = _walk(rng, start, angle, length, 3.0 * s)
        _draw_crack(draws, pts, width, contrast, margin, rng, ss)
        for _ in range(rng.poisson(2.0)):  # branches, and sometimes their own branches
            i = rng.integers(1, len(pts) - 1)
            b_ang = angle + rng.choice([-1, 1]) * rng.uniform(0.4, 1.2)
            bpts = _walk(rng, pts[i], b_ang, length * rng.uniform(0.15, 0.5), 3.0 * s)
            bw = max(1.0, width * rng.uniform(0.4, 0.8))
            _draw_crack(draws, bpts, bw, contrast * rng.uniform(0.6, 1.0), margin, rng, ss)
            if rng.random() < 0.3:
                j = rng.integers(1, len(bpts) - 1)
                cpts = _walk(rng, bpts[j], b_ang + rng.normal(0, 0.8), length * 0.15, 3.0 * s)
                _draw_crack(draws, cpts, max(1.0, bw * 0.7), contrast * 0.8, margin, rng, ss)
    vis = np.asarray(vis_im.reduce(ss), np.float32) / 255.0
    lab = np.asarray(lab_im.reduce(ss), np.float32) / 255.0
    return vis, lab


# --------------------------------------------------------------------------- one image
def synth_crack_pair(seed: int, index: int, size: int = 448, width: int | None = None,
                     crack_width=CRACK_WIDTH, label_margin: float = LABEL_MARGIN,
                     crack_density: float = CRACK_DENSITY) -> tuple[Image.Image, Image.Image]:
    """The ``index``-th image of the dataset ``seed`` as (RGB image, L mask before JPEG),
    ``size`` px high and ``width`` px wide (default ``size``); see the module docstring."""
    rng = _rng(seed, index)
    x, y = _grid(size)
    rgb = _asphalt(rng, size)
    if rng.random() < 0.3:
        _paint(rng, size, x, y, rgb)
    if rng.random() < 0.3:
        _joint(rng, size, x, y, rgb)
    for _ in range(rng.poisson(0.6)):
        _stain(rng, size, x, y, rgb)
    has_crack = rng.random() >= P_CRACK_FREE
    if has_crack:
        vis, lab = _cracks(rng, size, 2, crack_width, label_margin, crack_density)
        grain = 0.85 + 0.15 * rng.random((size, size), dtype=np.float32)
        rgb *= (1 - vis * grain)[..., None]
    else:
        lab = np.zeros((size, size), np.float32)
    if rng.random() < 0.35:
        _shadow(rng, size, x, y, rgb)
    g = rng.normal(0, 0.12, 2)
    rgb *= (1 + g[0] * (x / size - 0.5) + g[1] * (y / size - 0.5))[..., None]
    img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")
    blur = rng.uniform(0.0, 0.4) * size / 448
    if blur > 0.2:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    noise = rng.normal(0, rng.uniform(1.5, 4.0), (size, size, 3))
    img = Image.fromarray(np.clip(np.asarray(img, np.float32) + noise, 0, 255).astype(np.uint8), "RGB")
    mask = Image.fromarray(np.clip(lab * 255 + 0.5, 0, 255).astype(np.uint8), "L")
    if width is not None and int(width) != size:
        img, mask = _to_width(img, int(width)), _to_width(mask, int(width))
    return img, mask


def _to_width(im: Image.Image, width: int) -> Image.Image:
    """Keep the left ``width`` columns (or extend by mirroring the image, for a wider one)."""
    if width <= im.width:
        return im.crop((0, 0, width, im.height))
    out = Image.new(im.mode, (width, im.height))
    x = 0
    flip = False
    while x < width:
        out.paste(im.transpose(Image.FLIP_LEFT_RIGHT) if flip else im, (x, 0))
        x += im.width
        flip = not flip
    return out


def make_synthetic_cracks(out_dir, n: int, size: int = 448, seed: int = 0, progress: bool = True,
                          width: int | None = None, **appearance) -> Path:
    """Write ``n`` synthetic crack images and masks into ``out_dir`` (Kaggle layout) and return it.

    Files are ``images/{i:05d}.jpg`` and ``masks/{i:05d}.jpg``; the RNG of image ``i`` is seeded
    from ``(seed, i)``, so the output is deterministic and ``n=10`` is a prefix of ``n=20``.
    ``width`` makes them ``size`` high and ``width`` wide; ``appearance``: ``crack_width``,
    ``label_margin``, ``crack_density`` (see :func:`synth_crack_pair`)."""
    from tqdm.auto import tqdm

    if n < 1:
        raise ValueError(f"make_synthetic_cracks: n must be >= 1, got {n}")
    if size < 32:
        raise ValueError(f"make_synthetic_cracks: size must be >= 32, got {size}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    for i in tqdm(range(n), desc=f"synthetic cracks {size}px", disable=not progress, leave=False):
        img, mask = synth_crack_pair(seed, i, size, width, **appearance)
        img.save(out / "images" / f"{i:05d}.jpg", "JPEG", **JPEG_IMAGE)
        mask.save(out / "masks" / f"{i:05d}.jpg", "JPEG", **JPEG_MASK)
    return out


def _marker(n: int, size: int, seed: int) -> dict:
    return dict(n=int(n), size=int(size), seed=int(seed), generator_version=GENERATOR_VERSION)


def synthetic_is_complete(root, n: int, size: int, seed: int) -> bool:
    """True when ``root`` holds a finished dataset written by this generator version."""
    m = Path(root) / _MARKER
    try:
        return json.loads(m.read_text()) == _marker(n, size, seed)
    except (OSError, ValueError):
        return False


def ensure_synthetic(n: int, size: int = 448, seed: int = 0, data_root=None) -> Path:
    """The cached synthetic dataset ``<data_dir>/synthetic_n{n}_s{size}_seed{seed}``, generated
    on first use. Generation goes to a temporary folder renamed into place at the end, and a
    completion marker (with the generator version) is checked before reuse, so a killed run never
    leaves a half dataset that is later trusted."""
    root = Path(data_root) if data_root is not None else paths.data_dir()
    final = root / f"synthetic_n{n}_s{size}_seed{seed}"
    if synthetic_is_complete(final, n, size, seed):
        return final
    if final.exists():
        log.warning("regenerating %s: incomplete or written by another generator version", final)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=root))
    try:
        make_synthetic_cracks(tmp, n, size, seed)
        (tmp / _MARKER).write_text(json.dumps(_marker(n, size, seed)))
        if synthetic_is_complete(final, n, size, seed):  # another process finished first
            return final
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
