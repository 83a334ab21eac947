"""pipeline/face_region.py: clip-constant face window, temporal smoothing, crop/shift, feathered blend."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline import face_region as fr
from common.fileio import InputError, read_points

FIVE = np.array([[40., 50.], [60., 50.], [50., 60.], [42., 70.], [58., 70.]])  # extent 20 x 20


def test_box_size_multiple_and_constant():
    pts = np.stack([FIVE + [100 + 3 * t, 100] for t in range(10)])
    boxes = fr.face_boxes(pts, (640, 360), margin=3.0, context=32, multiple=32, smooth=0)
    sides = boxes[:, 2:] - boxes[:, :2]
    assert np.all(sides == 128)  # 3*20 + 64 = 124 -> 128
    # centre follows the face: box centre within a pixel of the 5-point mean
    np.testing.assert_allclose((boxes[:, 0] + boxes[:, 2]) / 2, pts.mean(axis=1)[:, 0], atol=1)
    assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2] <= 640) and np.all(boxes[:, 3] <= 360)


def test_box_clamped_inside_frame_and_capped():
    pts = np.stack([FIVE - [40, 50]] * 3)  # face at the top-left corner
    b = fr.face_boxes(pts, (300, 200), smooth=0)
    assert tuple(b[0, :2]) == (0, 0)
    big = np.stack([FIVE * 10] * 2)
    b = fr.face_boxes(big, (300, 200), smooth=0)
    assert tuple(b[0]) == (0, 0, 300, 200)


def test_smoothing_removes_jitter_and_missing_frames_interpolate():
    rng = np.random.default_rng(0)
    T = 40
    drift = np.linspace(0, 80, T)
    pts = np.stack([FIVE + [100 + d, 100] for d in drift]) + rng.normal(0, 3, (T, 1, 2))
    pts[10] = np.nan
    raw = fr.face_boxes(pts, (640, 480), smooth=0)
    sm = fr.face_boxes(pts, (640, 480), smooth=3)
    jit = lambda b: np.abs(np.diff(b[:, 0], 2)).mean()
    assert jit(sm) < 0.3 * jit(raw)
    assert abs(raw[10, 0] - (raw[9, 0] + raw[11, 0]) / 2) <= 1
    with pytest.raises(InputError, match="no frame"):
        fr.face_boxes(np.full((3, 5, 2), np.nan), (640, 480))


def test_crop_and_shift_points_roundtrip(vd001):
    pts = read_points(vd001 / "face" / "00001.txt")
    img = np.arange(311 * 271 * 3, dtype=np.uint32).reshape(311, 271, 3).astype(np.uint8)
    box = fr.face_boxes(pts[None], (271, 311), margin=2.0, context=8, multiple=16)[0]
    c = fr.crop(img, box)
    assert c.shape[:2] == (box[3] - box[1], box[2] - box[0]) and c.shape[0] % 16 == 0
    sp = fr.shift_points(pts, box)
    for (x, y), (u, v) in zip(pts.round().astype(int), sp.round().astype(int)):
        np.testing.assert_array_equal(img[y, x], c[v, u])
    with pytest.raises(ValueError):
        fr.crop(img, (-1, 0, 10, 10))


def test_feather_and_blend():
    m = fr.feather_mask(40, 60, 8)
    assert m.shape == (40, 60) and m[20, 30] == 1.0
    assert 0 < m[0, 30] < 0.05 and 0 < m[20, 0] < 0.05
    assert np.all(np.diff(m[:8, 30]) > 0)  # monotone ramp
    frame = np.zeros((100, 120, 3), np.uint8)
    win = np.full((40, 60, 3), 200, np.uint8)
    out = fr.blend(frame, win, (30, 20, 90, 60), feather=8)
    assert np.all(out[40, 60] == 200)             # centre: the window
    assert np.all(out[:20] == 0) and np.all(out[:, :30] == 0)  # outside untouched
    assert 0 < out[20, 60, 0] < 20                # edge: mostly the frame
    # touching the frame border: no ramp on that side
    out2 = fr.blend(frame, win, (0, 0, 60, 40), feather=8)
    assert np.all(out2[0, 0] == 200) and out2[39, 30, 0] < 20
    with pytest.raises(ValueError):
        fr.blend(frame, win, (0, 0, 10, 10))

