"""Restartability and bad input of the preprocessing steps: re-runs skip finished files, an
interrupted step leaves no truncated file, bad inputs give one clear error naming the file."""
from pathlib import Path

import numpy as np
import pytest

from preprocess.blur import blur_dataset
from preprocess.align import align_dataset
from common.fileio import InputError, read_image, write_image
from preprocess.video import extract_frames

from tests.helpers import run_cli


def _clip(ds, n=6, sub="sharp"):
    rng = np.random.default_rng(0)
    for k in range(1, n + 1):
        write_image(ds / "clip" / sub / f"{k:05d}.png", rng.integers(0, 255, (10, 12, 3), dtype=np.uint8))


def test_rerun_skips_finished_files(tmp_path):
    ds = tmp_path / "dataset"
    _clip(ds)
    assert blur_dataset(ds, n_avg=3)["written"] == 6
    marker = ds / "clip" / "blurry" / "00002.png"
    write_image(marker, np.zeros((10, 12, 3), np.uint8))  # a finished file must not be redone
    (ds / "clip" / "blurry" / "00004.png").unlink()
    res = blur_dataset(ds, n_avg=3)
    assert res == dict(frames=6, written=1, skipped=5)
    assert read_image(marker).max() == 0
    assert (ds / "clip" / "blurry" / "00004.png").is_file()
    _clip(ds, sub="blurry")
    first = align_dataset(ds, tmp_path / "out", None, align="none", n_frames=3)
    again = align_dataset(ds, tmp_path / "out", None, align="none", n_frames=3)
    assert first["written"] == 6 and again == dict(frames=6, written=0, skipped=6, fallbacks=0)


def test_interrupted_step_leaves_no_truncated_file(tmp_path, monkeypatch):
    """The 3rd frame's write is interrupted in the middle of the PNG encoding."""
    ds = tmp_path / "dataset"
    _clip(ds)
    from PIL import Image

    real_save, calls = Image.Image.save, {"n": 0}

    def flaky_save(self, fp, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            Path(fp).write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # partial bytes, then the crash
            raise KeyboardInterrupt
        return real_save(self, fp, *a, **k)

    monkeypatch.setattr(Image.Image, "save", flaky_save)
    with pytest.raises(KeyboardInterrupt):
        blur_dataset(ds, n_avg=3)
    monkeypatch.setattr(Image.Image, "save", real_save)
    files = sorted((ds / "clip" / "blurry").iterdir())
    assert [f.name for f in files] == ["00001.png", "00002.png"]  # no temp, no partial 00003
    for f in files:
        read_image(f)
    assert blur_dataset(ds, n_avg=3) == dict(frames=6, written=4, skipped=2)


def test_unreadable_video_is_a_clear_cli_error(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    r = run_cli("preprocess", "frames", "--video", bad, "--dataset", tmp_path / "ds", cwd=tmp_path)
    assert r.returncode == 2
    assert "broken.mp4" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "ds" / "broken" / "sharp").exists()
    r = run_cli("preprocess", "frames", "--video", tmp_path / "missing.mp4", cwd=tmp_path)
    assert r.returncode == 2 and "missing.mp4: video file or frame folder not found" in r.stderr


def test_corrupt_png_names_the_file(tmp_path):
    ds = tmp_path / "dataset"
    _clip(ds)
    (ds / "clip" / "sharp" / "00003.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(InputError, match=r"00003\.png: cannot read image"):
        blur_dataset(ds, n_avg=3)
    r = run_cli("preprocess", "blur", "--dataset", ds, "--n_avg", 3, cwd=tmp_path)
    assert r.returncode == 2 and "00003.png" in r.stderr and "Traceback" not in r.stderr


def test_empty_folders(tmp_path):
    (tmp_path / "ds" / "clip" / "sharp").mkdir(parents=True)
    with pytest.raises(InputError, match="no PNG sharp frames"):
        blur_dataset(tmp_path / "ds")
    with pytest.raises(InputError, match="no <video>/blurry/"):
        align_dataset(tmp_path / "ds", tmp_path / "out")
    with pytest.raises(InputError, match="dataset folder not found"):
        blur_dataset(tmp_path / "nope")
    (tmp_path / "frames").mkdir()
    with pytest.raises(InputError, match="no image files"):
        extract_frames(tmp_path / "frames", tmp_path / "ds")
    r = run_cli("preprocess", "align", "--dataset", tmp_path / "ds", cwd=tmp_path)
    assert r.returncode == 2 and "blurry" in r.stderr


def test_frame_folder_input_with_step_and_max(tmp_path):
    src = tmp_path / "jpgs"
    for k in range(10):  # unpadded numbers: natural order, not img1, img10, img2 ...
        write_image(src / f"img{k}.png", np.full((6, 8, 3), 20 * k, np.uint8))
    res = extract_frames(src, tmp_path / "ds", name="c", max_frames=4, step=3)
    assert res["frames"] == 4
    got = [read_image(tmp_path / "ds" / "c" / "sharp" / f"{k:05d}.png")[0, 0, 0] for k in (1, 2, 3, 4)]
    assert got == [0, 60, 120, 180]
