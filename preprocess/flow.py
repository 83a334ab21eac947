"""Optical flow, warping and homography alignment (the original `genFlow` / `generateAlignments.m`).

Conventions: images are HxW(x3) arrays; a flow field is float32 (H, W, 2) holding (dx, dy) in
pixels, x right, y down, such that `ref(x, y) ~= other(x + dx, y + dy)`: `warp(other, flow)`
then resamples `other` onto `ref`'s pixel grid (backward warping, no holes).

The original computes TV-L1 flow on frames resized so the smaller side is 200 px and scales
the flow back up; `compute_flow` does the same (`small_side`), with OpenCV's DualTVL1
(opencv-contrib) or DIS (about 100x faster, less accurate on large motion) as the method.
"""
from __future__ import annotations

import cv2
import numpy as np

from common.flags import DEFAULT_FLOW, FLOW_METHODS  # noqa: F401 - FLOW_METHODS re-exported for callers


def to_gray_u8(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


_FLOW_CACHE: dict = {}


def _flow_object(method: str):
    # OpenCV flow objects are costly to build (TV-L1 allocates its pyramids); one per process.
    if method not in _FLOW_CACHE:
        if method == "tvl1":
            _FLOW_CACHE[method] = cv2.optflow.DualTVL1OpticalFlow_create()
        elif method == "dis":
            _FLOW_CACHE[method] = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        else:
            raise ValueError(f"unknown flow method {method!r} (choose from {FLOW_METHODS})")
    return _FLOW_CACHE[method]


def compute_flow(ref: np.ndarray, other: np.ndarray, method: str = DEFAULT_FLOW,
                 small_side: int | None = 200) -> np.ndarray:
    """Flow (H, W, 2) float32 from `ref` to `other` (see module docstring for the convention).

    The flow is computed on copies whose smaller side is `small_side` (never upscaled; None =
    full size), then resized to full size and multiplied by the scale factors.
    """
    a, b = to_gray_u8(ref), to_gray_u8(other)
    h, w = a.shape
    s = 1.0 if small_side is None else min(1.0, small_side / min(h, w))
    if s < 1.0:
        size = (max(1, round(w * s)), max(1, round(h * s)))
        a = cv2.resize(a, size, interpolation=cv2.INTER_AREA)
        b = cv2.resize(b, size, interpolation=cv2.INTER_AREA)
    flow = _flow_object(method).calc(a, b, None)
    if s < 1.0:
        fh, fw = flow.shape[:2]
        flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR)
        flow[..., 0] *= w / fw
        flow[..., 1] *= h / fh
    return flow.astype(np.float32, copy=False)


def warp(img: np.ndarray, flow: np.ndarray, interpolation: int = cv2.INTER_CUBIC) -> np.ndarray:
    """Resample `img` at (x + dx, y + dy); same dtype as `img` (uint8 results are clipped)."""
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    out = cv2.remap(img, gx + flow[..., 0], gy + flow[..., 1], interpolation,
                    borderMode=cv2.BORDER_REPLICATE)
    return out


def estimate_homography(ref: np.ndarray, other: np.ndarray, min_inliers: int = 12,
                        ratio: float = 0.75) -> np.ndarray | None:
    """3x3 homography mapping `ref` pixel coords to `other`'s, or None when estimation fails.

    SIFT keypoints (the original used SURF, which is patented and absent from OpenCV builds),
    Lowe ratio test, RANSAC with a 3 px threshold; fails with fewer than `min_inliers`
    inliers or a degenerate/implausible matrix.
    """
    sift = cv2.SIFT_create()
    ka, da = sift.detectAndCompute(to_gray_u8(ref), None)
    kb, db = sift.detectAndCompute(to_gray_u8(other), None)
    if da is None or db is None or len(ka) < min_inliers or len(kb) < min_inliers:
        return None
    matches = cv2.BFMatcher(cv2.NORM_L2).knnMatch(da, db, k=2)
    good = [m[0] for m in matches if len(m) == 2 and m[0].distance < ratio * m[1].distance]
    if len(good) < min_inliers:
        return None
    pa = np.float32([ka[m.queryIdx].pt for m in good])
    pb = np.float32([kb[m.trainIdx].pt for m in good])
    H, mask = cv2.findHomography(pa, pb, cv2.RANSAC, 3.0)
    if H is None or mask is None or int(mask.sum()) < min_inliers or not np.all(np.isfinite(H)):
        return None
    det = np.linalg.det(H[:2, :2])
    if not 0.2 < det < 5.0:  # a flipped or collapsing warp is a wrong estimate, not motion
        return None
    return H


def align_homography(ref: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, bool]:
    """Warp `other` onto `ref` with a homography; (unwarped `other`, False) when it fails."""
    H = estimate_homography(ref, other)
    if H is None:
        return other, False
    h, w = ref.shape[:2]
    out = cv2.warpPerspective(other, H, (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE)
    return out, True


def align_flow(ref: np.ndarray, other: np.ndarray, method: str = DEFAULT_FLOW,
               small_side: int | None = 200) -> np.ndarray:
    """Warp `other` onto `ref` with optical flow (uint8 in, uint8 out)."""
    return warp(other, compute_flow(ref, other, method, small_side))
