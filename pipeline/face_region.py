"""Face-region processing: deblur a face-centred crop and blend it back (a speed-up, not in the paper).

The original repository (rwenqi/3Dfacedeblurring, run_model.py / model.py) deblurs whole
frames. The facial prior only helps on the face, and the network's cost grows with the pixel
count, so by default the video command crops a face-centred window from every frame, runs every
stage after the five-point detection (3D fit, render, neighbour alignment, network) on the
crop, and pastes the result back with a feathered mask. `--full_frame` keeps the original
whole-frame behaviour.

Conventions: images are HxWx3 uint8 RGB, pixel coordinates (x right, y down, 0-based, pixel
centres at integers), boxes are `(x0, y0, x1, y1)` integer pixel bounds with x1/y1 exclusive.

Box: the window has ONE size for the whole clip (neighbour alignment and the network need
frames of equal size): `margin` x the largest five-point extent over the clip plus `context`
pixels of surroundings on each side (the network's receptive field reaches beyond the face),
rounded up to a multiple of `multiple` (the network's down-sampling factor, so it needs no
internal padding). Its centre follows the five-point centre smoothed over time with a Gaussian
of `smooth` frames (a jittering window would add motion), then is clamped into the frame.
Frames without landmarks take the centre linearly interpolated from their neighbours (the video
command calls it per stretch of frames with a face, so this only bridges detector misses).
"""
from __future__ import annotations

import math

import numpy as np

from common import tracks
from common.errors import InputError


def box_side(points: np.ndarray, frame_size, margin: float = 3.0, context: int = 32,
             multiple: int = 32) -> tuple[int, int]:
    """(width, height) of the clip's window; points (T, 5, 2) with NaN rows for missing frames.

    Each side = ceil((margin * max extent + 2 * context) / multiple) * multiple, capped at the
    frame size (w, h) (then the window is the full frame along that axis).
    """
    pts = np.asarray(points, dtype=np.float64)
    ok = np.all(np.isfinite(pts.reshape(len(pts), -1)), axis=1)
    if not ok.any():
        raise InputError("face region: no frame of the clip has landmarks (facePointDetection found no face)")
    ext = pts[ok].max(axis=1) - pts[ok].min(axis=1)          # (T, 2) five-point extent
    side = margin * float(ext.max()) + 2 * context
    side = int(math.ceil(side / multiple) * multiple)
    w, h = frame_size
    return min(side, w), min(side, h)


def face_boxes(points, frame_size, margin: float = 3.0, context: int = 32, multiple: int = 32,
               smooth: float = 2.0, side: tuple[int, int] | None = None) -> np.ndarray:
    """(T, 4) int boxes (x0, y0, x1, y1), all of the same size, inside the frame (w, h).

    side: (width, height) of the window when it is fixed by a longer stretch of frames
    (`box_side` of the whole clip); default `box_side` of these points.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 3 or pts.shape[1:] != (5, 2):
        raise ValueError(f"face_boxes: expected points of shape (T, 5, 2), got {pts.shape}")
    bw, bh = side if side is not None else box_side(pts, frame_size, margin, context, multiple)
    centres = pts.mean(axis=1)
    if not np.isfinite(centres).all(axis=1).any():
        raise InputError("face region: no frame of the clip has landmarks (facePointDetection found no face)")
    centres = tracks.smooth(tracks.fill_gaps(centres), smooth)
    w, h = frame_size
    x0 = np.clip(np.round(centres[:, 0] - bw / 2.0), 0, w - bw).astype(int)
    y0 = np.clip(np.round(centres[:, 1] - bh / 2.0), 0, h - bh).astype(int)
    return np.stack([x0, y0, x0 + bw, y0 + bh], axis=1)


def crop(img: np.ndarray, box) -> np.ndarray:
    """The window `box` of an image (the box must lie inside the image)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    if x0 < 0 or y0 < 0 or y1 > img.shape[0] or x1 > img.shape[1]:
        raise ValueError(f"crop: box {box} outside image of size {img.shape[1]}x{img.shape[0]}")
    return np.ascontiguousarray(img[y0:y1, x0:x1])


def shift_points(points, box) -> np.ndarray:
    """Landmarks (..., 2) from frame coordinates to the window's coordinates."""
    return np.asarray(points, dtype=np.float64) - np.array([box[0], box[1]], dtype=np.float64)


def feather_mask(h: int, w: int, feather: int, sides=(True, True, True, True)) -> np.ndarray:
    """float32 (h, w) weight: 1 inside, raised-cosine ramp to 0 over `feather` px at the edges.

    `sides` = (left, top, right, bottom): a side that touches the frame border gets no ramp
    (there is no outside picture to blend with there).
    """
    def ramp(n, lo, hi):
        r = np.ones(n, np.float32)
        f = min(feather, n // 2)
        if f > 0:
            # sample the ramp at pixel centres so the outermost pixel is > 0 and the window never
            # has a hard step
            x = (np.arange(f, dtype=np.float32) + 0.5) / f
            edge = 0.5 - 0.5 * np.cos(np.pi * x)
            if lo:
                r[:f] = np.minimum(r[:f], edge)
            if hi:
                r[n - f:] = np.minimum(r[n - f:], edge[::-1])
        return r

    left, top, right, bottom = sides
    return np.outer(ramp(h, top, bottom), ramp(w, left, right))


def blend(frame: np.ndarray, window: np.ndarray, box, feather: int = 16) -> np.ndarray:
    """Paste `window` (the processed crop) into a copy of `frame` at `box` with a feathered edge."""
    x0, y0, x1, y1 = (int(v) for v in box)
    if window.shape[:2] != (y1 - y0, x1 - x0):
        raise ValueError(f"blend: window {window.shape[:2]} does not match box {box}")
    h, w = frame.shape[:2]
    m = feather_mask(y1 - y0, x1 - x0, feather, (x0 > 0, y0 > 0, x1 < w, y1 < h))[..., None]
    out = frame.copy()
    region = frame[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.clip(np.round(m * window.astype(np.float32) + (1 - m) * region), 0, 255).astype(np.uint8)
    return out
