"""Frame extraction and the face-centred crop (preprocess/video.py)."""
import cv2
import numpy as np
import pytest

from common.fileio import read_image, read_points
from preprocess.video import crop_square, extract_frames


@pytest.mark.parametrize("side,size", [(64, 64), (128, 64), (256, 64)])
def test_crop_square_geometry(side, size):
    """On a horizontal ramp (value = x), output pixel j samples x0 + (j + 0.5) / s - 0.5."""
    ramp = np.tile(np.arange(256, dtype=np.uint8)[None, :, None], (300, 1, 3))
    cx, cy = 128.0, 150.0
    out = crop_square(ramp, cx, cy, side, size)
    s = size / side
    expected = cx - side / 2 + (np.arange(size) + 0.5) / s - 0.5
    assert out.shape == (size, size, 3)
    assert np.abs(out[size // 2, :, 0].astype(float) - expected).max() <= 1.0


def test_face_crop_follows_a_moving_face(faces5pt, tmp_path):
    """A real face photo panned across a larger canvas: the crop stays on the face."""
    img = read_image(faces5pt / "000002.jpg")
    pts = read_points(faces5pt / "000002.txt")
    img = cv2.resize(img, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    pts = (pts + 0.5) * 0.5 - 0.5
    src = tmp_path / "frames"
    src.mkdir()
    shifts = [(4 * k, 2 * k) for k in range(8)]
    for k, (dx, dy) in enumerate(shifts):
        canvas = np.full((420, 380, 3), 40, np.uint8)
        canvas[40 + dy:40 + dy + img.shape[0], 20 + dx:20 + dx + img.shape[1]] = img
        cv2.imwrite(str(src / f"f{k:02d}.png"), canvas[:, :, ::-1])
    res = extract_frames(src, tmp_path / "ds", name="pan", face_crop=96, crop_smooth=0)
    assert res["frames"] == 8 and res["written"] == 8
    boxes = np.loadtxt(tmp_path / "ds" / "pan" / "crop_boxes.txt", usecols=(2, 3, 4))
    eyes = pts[:2].mean(0)
    for (dx, dy), (cx, cy, side) in zip(shifts, boxes):
        ex, ey = eyes[0] + 20 + dx, eyes[1] + 40 + dy
        # the eye midpoint lies inside the upper-middle part of the crop
        assert abs((ex - cx) / side) < 0.1 and -0.3 < (ey - cy) / side < 0.1
    assert np.allclose(np.diff(boxes[:, 0]), 4, atol=1.5)  # follows the 4 px/frame pan
    assert read_image(tmp_path / "ds" / "pan" / "sharp" / "00008.png").shape == (96, 96, 3)
    again = extract_frames(src, tmp_path / "ds", name="pan", face_crop=96, crop_smooth=0)
    assert again["written"] == 0 and again["skipped"] == 8
