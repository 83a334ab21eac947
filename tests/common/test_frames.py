"""common/frames.py: one rule for listing a clip's frames and a dataset's clips, the window."""
import numpy as np
import pytest

from common.errors import InputError
from common.fileio import write_image
from common.frames import frame_folder_files, frame_offsets, list_frames, list_videos, png_frames


def test_frame_offsets():
    assert frame_offsets(5) == [-2, -1, 0, 1, 2] and frame_offsets(1) == [0]
    for bad in (0, 4, -3):
        with pytest.raises(ValueError, match="odd"):
            frame_offsets(bad)


def test_listing_skips_hidden_temporaries_and_names_the_folder(tmp_path):
    img = np.zeros((4, 4, 3), np.uint8)
    for name in ("00002.png", "00001.png", ".00003.png.tmp.png", "notes.txt"):
        (tmp_path / "a" / "blurry").mkdir(parents=True, exist_ok=True)
        (tmp_path / "a" / "blurry" / name).write_bytes(b"")
    assert [p.name for p in list_frames(tmp_path / "a" / "blurry")] == ["00001.png", "00002.png"]
    assert png_frames(tmp_path / "missing") == []
    with pytest.raises(InputError, match="folder of blurry frames not found"):
        list_frames(tmp_path / "missing", "blurry frames")
    (tmp_path / "b" / "sharp").mkdir(parents=True)
    assert list_videos(tmp_path, "blurry") == [tmp_path / "a"]
    with pytest.raises(InputError, match="no <video>/blur_0/"):
        list_videos(tmp_path, "blur_0")
    with pytest.raises(InputError, match="dataset folder not found"):
        list_videos(tmp_path / "nope", "blurry")
    for name in ("frame10.jpg", "frame9.jpg", "frame1.PNG"):
        write_image(tmp_path / "user" / name, img)
    assert [p.name for p in frame_folder_files(tmp_path / "user")] == ["frame1.PNG", "frame9.jpg", "frame10.jpg"]
