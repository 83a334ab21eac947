"""Blur synthesis (preprocess/blur.py) on synthetic moving patterns with known averages."""
import numpy as np
import pytest

from preprocess.blur import blur_frames, blur_dataset
from common.fileio import read_image, write_image
from common.metrics import psnr
from tests.helpers import face_crop as _face_crop
from tests.helpers import shift


def bar_frames(n=9, width=2, speed=2, size=(8, 40), x0=4, value=255):
    """Frames with a white vertical bar moving `speed` px/frame to the right on black."""
    frames = []
    for k in range(n):
        f = np.zeros((*size, 3), np.uint8)
        f[:, x0 + k * speed: x0 + k * speed + width] = value
        frames.append(f)
    return frames


def test_average_of_seven_is_a_uniform_streak():
    frames = bar_frames()
    b = blur_frames(frames, n_avg=7, targets=[4])[0]
    # Frames 1..7 put the bar at x = 6..19 (each pixel covered once): 255/7 everywhere there.
    row = b[0, :, 0].astype(int)
    assert np.all(row[6:20] == round(255 / 7))
    assert np.all(row[:6] == 0) and np.all(row[20:] == 0)
    assert b.dtype == np.uint8 and b.shape == frames[4].shape


def test_sequence_ends_repeat_the_end_frames():
    frames = bar_frames()
    b0 = blur_frames(frames, n_avg=7, targets=[0])[0][0, :, 0].astype(int)
    # Window -3..3 clamped: frame 0 counted 4 times, then frames 1, 2, 3 once each.
    assert b0[4] == round(4 * 255 / 7) and b0[6] == round(255 / 7) and b0[11] == round(255 / 7)
    assert b0[12] == 0


def test_n_avg_one_returns_the_sharp_frames():
    frames = bar_frames()
    out = blur_frames(frames, n_avg=1)
    assert all(np.array_equal(a, b) for a, b in zip(out, frames))


def test_linear_light_average():
    frames = bar_frames()
    b = blur_frames(frames, n_avg=7, linear=True, targets=[4])[0]
    # One of 7 samples at full white in linear light, re-encoded with gamma 1/2.2.
    expected = round(255 * (1 / 7) ** (1 / 2.2))
    assert abs(int(b[0, 10, 0]) - expected) <= 1
    assert expected > round(255 / 7) + 50  # visibly different from the sRGB average


@pytest.mark.parametrize("bad", [0, 2, 6, -1])
def test_n_avg_must_be_odd(bad):
    with pytest.raises(ValueError, match="odd"):
        blur_frames(bar_frames(), n_avg=bad)


def test_upsampling_approaches_continuous_motion_blur(faces5pt):
    """A face photo translating 6 px/frame: with K=6 flow sub-frames the 7-frame average is
    much closer to the continuous-motion blur (dense average over every 0.25 px) than the
    plain average of 7 ghosted copies."""
    face = _face_crop(faces5pt)
    v = 6
    frames = [shift(face, v * (k - 5), 0) for k in range(11)]
    gt = np.mean([shift(face, x, 0) for x in np.arange(-3 * v, 3 * v + 1e-6, 0.25)], axis=0)
    box = (slice(40, 120), slice(40, 120))
    plain = blur_frames(frames, 7, upsample=1, targets=[5])[0]
    up = blur_frames(frames, 7, upsample=6, targets=[5])[0]
    p_plain, p_up = psnr(plain[box], gt[box]), psnr(up[box], gt[box])
    assert p_up > p_plain + 10, (p_plain, p_up)
    assert p_up > 45


def test_blur_dataset_matches_in_memory_and_jobs2(tmp_path):
    frames = bar_frames(n=6, size=(8, 24))
    for k, f in enumerate(frames, 1):
        write_image(tmp_path / "clip" / "sharp" / f"{k:05d}.png", f)
    res = blur_dataset(tmp_path, n_avg=3, jobs=2, chunk=2)
    assert res == dict(frames=6, written=6, skipped=0)
    expected = blur_frames(frames, n_avg=3)
    for k, e in enumerate(expected, 1):
        assert np.array_equal(read_image(tmp_path / "clip" / "blurry" / f"{k:05d}.png"), e)


def test_frame_reader_is_bounded_and_checks_sizes(tmp_path):
    from preprocess.blur import FrameReader
    from common.fileio import InputError, write_image

    files = []
    for k in range(6):
        f = tmp_path / f"{k + 1:05d}.png"
        write_image(f, np.full((8, 10 if k < 5 else 12, 3), k, np.uint8))
        files.append(f)
    r = FrameReader(files, capacity=2)
    for k in range(5):
        assert r[k][0, 0, 0] == k
    assert len(r._cache) == 2  # never more than `capacity` decoded frames
    with pytest.raises(InputError, match=r"00006.png: frame size 12x8 differs from 00001.png"):
        r[5]  # the first frame was evicted long ago; its size is still the reference
