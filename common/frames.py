"""Frames on disk: listing a clip's frames, a dataset's clips, and the temporal window.

The on-disk layout of every stage is `<root>/<clip>/<subdir>/00001.png` (the original
MATLAB scripts' layout, kept); these helpers are the one place that lists it.
"""
from __future__ import annotations

import re
from pathlib import Path

from common.errors import InputError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def natural_key(p: Path):
    """Sort key: "frame9.jpg" before "frame10.jpg" (digit runs compare as numbers)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def image_files(folder) -> list[Path]:
    """Image files of a frame folder (any of IMAGE_EXTS) in natural name order; hidden files
    (the temporary files of killed writes) are not frames."""
    return sorted((f for f in Path(folder).iterdir()
                   if f.suffix.lower() in IMAGE_EXTS and not f.name.startswith(".") and f.is_file()),
                  key=natural_key)


def frame_folder_files(folder) -> list[Path]:
    """A user's folder of frames (any image format, natural order); InputError when it holds none."""
    folder = Path(folder)
    files = image_files(folder)
    if not files:
        raise InputError(f"{folder}: folder contains no image files ({', '.join(IMAGE_EXTS)})")
    return files


def png_frames(folder) -> list[Path]:
    """Sorted `*.png` frames of a stage folder (names 00001.png ...); [] when the folder is
    missing. Hidden files are the temporary files of killed writes, not frames."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.png") if not p.name.startswith("."))


def list_frames(folder, what: str = "frames") -> list[Path]:
    """`png_frames` of a folder the user's command needs: InputError when it is missing or holds
    no frame."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: folder of {what} not found")
    files = png_frames(folder)
    if not files:
        raise InputError(f"{folder}: no PNG {what} in this folder")
    return files


def list_videos(dataset, subdir: str) -> list[Path]:
    """Clips of a dataset folder: the sub-folders that contain `subdir/` (e.g. `blurry` for
    dataset/, `blur_0` for testing_set/), sorted by name; InputError when there are none."""
    dataset = Path(dataset)
    if not dataset.is_dir():
        raise InputError(f"{dataset}: dataset folder not found")
    vids = sorted(d for d in dataset.iterdir() if (d / subdir).is_dir())
    if not vids:
        raise InputError(f"{dataset}: no <video>/{subdir}/ folder inside (expected "
                         f"{dataset}/<video>/{subdir}/00001.png ...)")
    return vids


def frame_offsets(n_frames: int) -> list[int]:
    """Offsets of the temporal window centred on a frame: 5 -> [-2, -1, 0, 1, 2] (the
    blur_-2..blur_2 folders and datalist columns). ValueError unless n_frames is positive and odd."""
    if n_frames < 1 or n_frames % 2 == 0:
        raise ValueError(f"--n_frames must be a positive odd number, got {n_frames}")
    r = n_frames // 2
    return list(range(-r, r + 1))
