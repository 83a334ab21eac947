"""Per-frame tracks in time: filling the frames a detector missed, runs, smoothing.

A track is a (T, ...) array, one row per frame, with NaN rows where a detector found nothing
(landmarks, face boxes, box centres). The landmark stage, the frame crop of preprocess and the
face window of the video command all fill gaps and smooth the same way, here.
"""
from __future__ import annotations

import numpy as np


def fill_gaps(values) -> np.ndarray:
    """Linear interpolation in time over the NaN rows of a (T, ...) track.

    A row counts as missing when any of its entries is not finite. Rows before the first / after
    the last valid row copy the nearest valid one. Returns a new float64 array of the same
    shape. ValueError when no row is valid (callers turn it into their InputError).
    """
    v = np.asarray(values, float)
    flat = v.reshape(len(v), -1).copy()
    ok = np.isfinite(flat).all(axis=1)
    if not ok.any():
        raise ValueError("no valid frame to interpolate from")
    t = np.arange(len(v))
    for c in range(flat.shape[1]):
        flat[:, c] = np.interp(t, t[ok], flat[ok, c])
    return flat.reshape(v.shape)


def smooth(values, sigma: float) -> np.ndarray:
    """Gaussian smoothing along time (axis 0), sigma in frames, edges by the nearest frame;
    sigma <= 0 (or one frame) returns a float copy."""
    from scipy.ndimage import gaussian_filter1d

    v = np.asarray(values, float)
    return v.copy() if sigma <= 0 or len(v) < 2 else gaussian_filter1d(v, sigma, axis=0, mode="nearest")


def runs(mask) -> list[tuple[int, int]]:
    """[start, end) of every run of True in a boolean sequence."""
    m = np.asarray(list(mask), bool)
    edges = np.flatnonzero(np.diff(np.concatenate([[False], m, [False]]).astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def gap_fill_mask(detected, max_gap: int) -> np.ndarray:
    """Which frames get a value: the detected ones plus runs of at most `max_gap` misses.

    detected: (T,) bool. A run of misses (between two detections, or at the start or end of the
    clip) of length <= max_gap is a detector miss, to be filled; a longer run is a stretch
    without a face, left empty. max_gap < 0 fills every run.
    """
    d = np.asarray(detected, bool)
    keep = d.copy()
    for a, b in runs(~d):
        if max_gap < 0 or b - a <= max_gap:
            keep[a:b] = True
    return keep
