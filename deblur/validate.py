"""Validation during training: PSNR/SSIM of the network on whole held-out frames.

`--val_datalist` (same 8-column format as the training list) names held-out samples; every
`--val_every` steps the finest-scale output on the whole frames (no crop) is compared with the
sharp frames. PSNR and SSIM are on RGB, 0..255 after rounding to uint8, as every evaluation of
this project (deblur/evaluate.py); the averaging is over frames (each frame counts once). The
blurry centre frame's scores are computed once, so each row also shows the gain over the input.

Rows go to `<checkpoint_dir>/validation.csv` (step, seconds since this run started,
psnr, ssim, psnr_blurry, ssim_blurry, frames) and to TensorBoard (`val/psnr`, `val/ssim`,
`val/psnr_gain`). The checkpoint with the best validation PSNR is copied to
`<checkpoint_dir>/best.npz`.
"""
from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deblur.data import parse_datalist, validate
from deblur.evaluate import psnr, ssim
from deblur.network import uses_coeff, uses_render
from preprocess.fileio import read_image

CSV_FIELDS = ("step", "seconds", "psnr", "ssim", "psnr_blurry", "ssim_blurry", "frames")


@dataclass
class ValidationSet:
    """Held-out frames in memory: blur (N,H,W,3*n_frames) float32 0..1, render, coeff, sharp uint8."""

    blur: np.ndarray
    render: np.ndarray | None
    coeff: np.ndarray | None
    sharp: np.ndarray
    psnr_blurry: float
    ssim_blurry: float

    def __len__(self) -> int:
        return len(self.sharp)


def load_validation(datalist, data_root, train_root, n_frames: int, face: str,
                    max_frames: int = 0) -> ValidationSet:
    """Read (up to `max_frames`, evenly spread) samples of a datalist; all must share one size."""
    samples = parse_datalist(datalist, data_root, train_root, n_frames, face)
    if max_frames and len(samples) > max_frames:
        keep = np.linspace(0, len(samples) - 1, max_frames).round().astype(int)
        samples = [samples[i] for i in keep]
    patches = validate(samples, face, 0, str(datalist))
    blur = np.stack([np.concatenate([read_image(p) for p in s.blur], -1) for s in samples])
    sharp = np.stack([read_image(s.sharp) for s in samples])
    render = (np.stack([read_image(s.render) for s in samples]).astype(np.float32) / 255.0
              if uses_render(face) else None)
    centre = blur[..., 3 * (n_frames // 2): 3 * (n_frames // 2 + 1)]
    return ValidationSet(blur.astype(np.float32) / 255.0, render,
                         patches if uses_coeff(face) else None, sharp,
                         float(np.mean([psnr(c, s) for c, s in zip(centre, sharp)])),
                         float(np.mean([ssim(c, s) for c, s in zip(centre, sharp)])))


def predict(net, val: ValidationSet, batch: int = 4, fn=None) -> np.ndarray:
    """Finest-scale output, uint8 (N,H,W,3). `fn(inputs)` defaults to `net(inputs)` (eager)."""
    import keras

    fn = fn or (lambda x: net(x, training=False))
    outs = []
    for i in range(0, len(val), batch):
        x = {"blur": val.blur[i:i + batch]}
        if val.render is not None:
            x["render"] = val.render[i:i + batch]
        if val.coeff is not None:
            x["coeff"] = val.coeff[i:i + batch]
        y = fn(x)
        y = y[-1] if isinstance(y, (list, tuple)) else y
        y = np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(y, "float32")))
        outs.append(np.clip(np.rint(y * 255.0), 0, 255).astype(np.uint8))
    return np.concatenate(outs)


def score(net, val: ValidationSet, batch: int = 4, fn=None) -> dict:
    """Mean PSNR/SSIM over the frames of `val` (and the blurry input's, for the gain)."""
    pred = predict(net, val, batch, fn)
    return dict(psnr=float(np.mean([psnr(p, s) for p, s in zip(pred, val.sharp)])),
                ssim=float(np.mean([ssim(p, s) for p, s in zip(pred, val.sharp)])),
                psnr_blurry=val.psnr_blurry, ssim_blurry=val.ssim_blurry, frames=len(val))


class Validator:
    """Runs `score` every N steps, logs CSV + TensorBoard, keeps `best.npz`."""

    def __init__(self, val: ValidationSet, train_dir: Path, every: int, batch: int = 4):
        self.val, self.dir, self.every, self.batch = val, Path(train_dir), every, batch
        self.csv = self.dir / "validation.csv"
        self.best = -np.inf
        self._fn = None
        if self.csv.exists():
            with self.csv.open() as f:
                rows = list(csv.DictReader(f))
            self.best = max((float(r["psnr"]) for r in rows), default=-np.inf)

    def due(self, step: int, last: bool) -> bool:
        return self.every > 0 and (step % self.every == 0 or last)

    def __call__(self, net, step: int, seconds: float, checkpoint: Path | None, writer=None) -> dict:
        if self._fn is None:
            import tensorflow as tf

            # Traced once (the last partial batch retraces once more), not run eagerly.
            self._fn = tf.function(lambda x: net(x, training=False), reduce_retracing=True)
        row = dict(step=step, seconds=round(seconds, 1), **score(net, self.val, self.batch, self._fn))
        new = not self.csv.exists()
        with self.csv.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            if new:
                w.writeheader()
            w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
        if writer is not None:
            import tensorflow as tf

            with writer.as_default(step=step):
                tf.summary.scalar("val/psnr", row["psnr"])
                tf.summary.scalar("val/ssim", row["ssim"])
                tf.summary.scalar("val/psnr_gain", row["psnr"] - row["psnr_blurry"])
        if checkpoint is not None and row["psnr"] > self.best:
            self.best = row["psnr"]
            tmp = self.dir / ".best.npz.tmp"
            shutil.copyfile(checkpoint, tmp)
            tmp.replace(self.dir / "best.npz")
            row["best"] = True
        return row
