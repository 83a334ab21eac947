"""Build small datasets in the original layout for the deblurring tests.

Neighbours are unwarped (clamped at the ends, as the original); priors are STAND-INS: the
coefficients are seeded random numbers and the render is a blurred copy of the sharp frame
masked to an ellipse. They exercise the data path, not the 3D reconstruction.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from common.fileio import read_image, write_coeff, write_image


def synthetic_frames(n, h, w, seed=0):
    """n sharp frames of a smooth random texture moving one pixel per frame, + their blur."""
    rng = np.random.default_rng(seed)
    big = rng.random((h // 4 + 8, w // 4 + 8 + n, 3))
    big = np.asarray(Image.fromarray((big * 255).astype(np.uint8)).resize(
        ((w // 4 + 8 + n) * 4, (h // 4 + 8) * 4), Image.BICUBIC))
    sharp = [big[8:8 + h, 8 + k: 8 + k + w] for k in range(n)]
    blurry = [np.asarray(Image.fromarray(s).filter(ImageFilter.BoxBlur(2))) for s in sharp]
    return sharp, blurry


def build(root, video="clip", source=None, n=6, h=64, w=72, n_frames=5, seed=0, resize=None):
    """Write dataset/<video>/{sharp,blurry}, training_set/<video>/{blur_k,face,render} and a
    datalist; `source` = a vd001-style folder to take real frames from (first n), resized to
    `resize` = (h, w) when given (bicubic)."""
    root = Path(root)
    if source is not None:
        names = sorted(p.name for p in (Path(source) / "blurry").glob("*.png"))[:n]
        sharp = [read_image(Path(source) / "sharp" / f) for f in names]
        blurry = [read_image(Path(source) / "blurry" / f) for f in names]
        if resize is not None:
            sharp, blurry = ([np.asarray(Image.fromarray(f).resize(resize[::-1], Image.BICUBIC))
                              for f in frames] for frames in (sharp, blurry))
    else:
        sharp, blurry = synthetic_frames(n, h, w, seed)
    rng = np.random.default_rng(seed + 1)
    r = n_frames // 2
    lines = []
    for t in range(len(sharp)):
        name = f"{t + 1:05d}.png"
        write_image(root / "dataset" / video / "sharp" / name, sharp[t])
        write_image(root / "dataset" / video / "blurry" / name, blurry[t])
        for o in range(-r, r + 1):
            src = blurry[min(max(t + o, 0), len(sharp) - 1)]
            write_image(root / "training_set" / video / f"blur_{o}" / name, src)
        write_coeff(root / "training_set" / video / "face" / name.replace(".png", ".txt"),
                    rng.normal(0, 1, 239))
        hh, ww = sharp[t].shape[:2]
        yy, xx = np.mgrid[:hh, :ww]
        mask = ((yy - hh / 2) / (hh / 3)) ** 2 + ((xx - ww / 2) / (ww / 4)) ** 2 < 1
        render = np.asarray(Image.fromarray(sharp[t]).filter(ImageFilter.GaussianBlur(1)))
        write_image(root / "training_set" / video / "render" / name, render * mask[..., None])
        cols = [f"{video}/sharp/{name}"] + [f"{video}/blur_{o}/{name}" for o in range(-r, r + 1)]
        cols += [f"{video}/face/{name.replace('.png', '.txt')}", f"{video}/render/{name}"]
        lines.append(" ".join(cols))
    (root / "datalist_train.txt").write_text("\n".join(lines) + "\n")
    return root
