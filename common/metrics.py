"""PSNR and SSIM of restored frames: the project's one implementation.

Used by `run_model.py --phase test --gt_path` (deblur/inference.py), `evaluate.py`
(deblur/evaluate.py) and validation during training (`frame_batch_metrics`), so the three
report the same numbers for the same frames. The original repository (rwenqi/3Dfacedeblurring)
has no evaluation code; the definitions follow the deblurring literature (paper Tables 1-3)
and BasicSR's `utils/metrics` conventions.

Definitions (uint8 frames, data range 255; every value computed in float64):
- PSNR = 10 log10(255^2 / MSE), MSE over every pixel and channel (scikit-image
  `peak_signal_noise_ratio`); identical frames give +inf.
- SSIM = scikit-image `structural_similarity` with its defaults (7x7 uniform window, K1 0.01,
  K2 0.03, sample covariance, the 3-pixel border excluded), mean over the RGB channels.
- `_y` variants: the same on ITU-R BT.601 luma as MATLAB's rgb2ycbcr computes it,
  Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 for R, G, B in 0..255 (Y in 16..235),
  kept in float64 (not rounded). A single-channel frame is treated as R = G = B.

Averaging (the only one used; `AVERAGING` is printed/written beside every mean):
- per frame: the values above;
- per video: the mean over that video's frames;
- ALL: the mean over all frames of all videos (frame-weighted; a 6-frame video counts three
  times as much as a 2-frame one), NOT the mean of the per-video means.
Frames with PSNR = +inf (identical to the ground truth) are left out of PSNR means and
counted in `inf_psnr_frames`.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np

METRICS = ("psnr", "ssim", "psnr_y", "ssim_y")
AVERAGING = ("per video = mean over its frames; ALL = mean over all frames of all videos "
             "(frame-weighted, not the mean of the per-video means)")
DEFINITIONS = {
    "psnr": "10 log10(255^2/MSE) over all pixels and RGB channels, dB (skimage peak_signal_noise_ratio)",
    "ssim": "skimage structural_similarity, 7x7 uniform window, data_range 255, mean over RGB channels",
    "psnr_y/ssim_y": "same on BT.601 luma Y = 16 + (65.481 R + 128.553 G + 24.966 B)/255 (float, "
                     "MATLAB rgb2ycbcr)",
    "averaging": AVERAGING,
}


def psnr(a, b, data_range: float = 255.0) -> float:
    """PSNR in dB of two same-shape arrays (compared in float64); +inf when identical.

    Raises ValueError when the shapes differ.
    """
    from skimage.metrics import peak_signal_noise_ratio

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"psnr: shapes differ {a.shape} vs {b.shape}")
    if np.array_equal(a, b):
        return math.inf  # skimage would divide by zero (and warn)
    return float(peak_signal_noise_ratio(b, a, data_range=data_range))


def ssim(a, b, data_range: float = 255.0) -> float:
    """SSIM of HxW or HxWxC images (channels last, mean over channels), scikit-image defaults.

    Raises ValueError when the shapes differ or a side is below the 7-pixel window.
    """
    from skimage.metrics import structural_similarity

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"ssim: shapes differ {a.shape} vs {b.shape}")
    if min(a.shape[:2]) < 7:
        raise ValueError(f"ssim: image {a.shape[:2]} smaller than the 7x7 window")
    if a.ndim == 3 and a.shape[2] == 1:
        a, b = a[..., 0], b[..., 0]
    return float(structural_similarity(b, a, data_range=data_range,
                                       channel_axis=-1 if a.ndim == 3 else None))


def rgb_to_y(rgb) -> np.ndarray:
    """HxWx3 RGB in 0..255 (uint8 or float) -> float64 HxW BT.601 luma in 16..235.

    HxW or HxWx1 input is taken as gray (R = G = B).
    """
    rgb = np.asarray(rgb, dtype=np.float64)
    if rgb.ndim == 2 or rgb.shape[-1] == 1:
        g = rgb.reshape(rgb.shape[:2])
        return 16.0 + (65.481 + 128.553 + 24.966) * g / 255.0
    return 16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0


def frame_metrics(pred, gt) -> dict:
    """{"psnr", "ssim", "psnr_y", "ssim_y"} of one restored uint8 frame against its ground truth.

    `pred`, `gt`: HxWx3 (or HxW / HxWx1) arrays in 0..255, same shape (ValueError otherwise).
    """
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"result {pred.shape} and ground truth {gt.shape} differ in size")
    py, gy = rgb_to_y(pred), rgb_to_y(gt)
    return {"psnr": psnr(pred, gt), "ssim": ssim(pred, gt), "psnr_y": psnr(py, gy),
            "ssim_y": ssim(py, gy)}


def to_uint8(x) -> np.ndarray:
    """Network output in [0, 1] (float) -> uint8 exactly as the test phase writes frames
    (round(x * 255), clipped to 0..255)."""
    return np.clip(np.round(np.asarray(x, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def frame_batch_metrics(pred, target) -> dict:
    """Validation metrics of a batch of predictions against targets (e.g. during training).

    `pred`, `target`: [B, H, W, C] or [H, W, C] float arrays in [0, 1] (C = 3, or 1 for the
    gray model). Both are quantised with `to_uint8`, as frames written by the test phase are,
    so the numbers equal what `run_model.py --gt_path` would report for the same frames.
    Returns {"psnr", "ssim", "psnr_y", "ssim_y"} averaged over the batch items (ALL rule:
    frame-weighted, +inf PSNR left out), "frames": B, and "per_frame": the B per-item dicts.
    Raises ValueError on non-finite values (a diverged network must not score as a number).
    """
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction {pred.shape} and target {target.shape} differ in shape")
    if not (np.isfinite(pred).all() and np.isfinite(target).all()):
        raise ValueError("prediction or target contains NaN or infinite values")
    if pred.ndim == 3:
        pred, target = pred[None], target[None]
    rows = [frame_metrics(to_uint8(p), to_uint8(t)) for p, t in zip(pred, target)]
    return {**mean_metrics(rows), "per_frame": rows}


def mean_metrics(rows: Iterable[dict], keys: Iterable[str] = METRICS) -> dict:
    """Frame-weighted mean of each key over `rows` (per-frame dicts).

    +inf values are left out of that key's mean (counted in "inf_psnr_frames" for PSNR); None
    values are skipped; a key with no finite value gives None. Adds "frames": len(rows).
    """
    rows = list(rows)
    out = {}
    n_inf = 0
    for k in keys:
        vals = [r.get(k) for r in rows]
        inf = sum(1 for v in vals if isinstance(v, float) and math.isinf(v))
        if k == "psnr":
            n_inf = inf
        vals = [v for v in vals if v is not None and not (isinstance(v, float) and math.isinf(v))]
        out[k] = float(np.mean(vals)) if vals else None
    out["frames"] = len(rows)
    if n_inf:
        out["inf_psnr_frames"] = n_inf
    return out


def summarize(rows: list[dict], keys: Iterable[str] = METRICS, group: str = "video") -> tuple[dict, dict]:
    """The documented averaging: (per-video means {video: means}, ALL means over every frame).

    `rows`: per-frame dicts holding `group` (the video name) and the metric keys. Videos keep
    their first-appearance order. Both levels are `mean_metrics` dicts (with "frames").
    """
    keys = list(keys)
    videos: dict[str, list] = {}
    for r in rows:
        videos.setdefault(r[group], []).append(r)
    return ({v: mean_metrics(rs, keys) for v, rs in videos.items()}, mean_metrics(rows, keys))


def inner_face_box(points, scale: float = 1.6) -> tuple[int, int, int, int]:
    """Box around the face itself, where face metrics are scored (bench/, the video command's
    benchmarks): the five-point box grown `scale` x about its centre.

    The five points span eyes to mouth; 1.6 x that box covers brows to chin. (x0, y0, x1, y1).
    """
    p = np.asarray(points, dtype=np.float64)
    lo, hi = p.min(axis=0), p.max(axis=0)
    c, half = (lo + hi) / 2.0, (hi - lo).max() * scale / 2.0
    return (int(round(c[0] - half)), int(round(c[1] - half)), int(round(c[0] + half)), int(round(c[1] + half)))


def json_safe(v):
    """Metric values for JSON: non-finite floats (identical frames' PSNR) become null."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    return v
