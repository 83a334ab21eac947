"""Helpers shared by the test modules: where the repository and ../shared are, subprocess runs
of the stage commands, small image helpers. (Helpers the benchmarks also need live in
deblur/testing/.)"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from common.fileio import read_image, read_points

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACEDEBLUR_SHARED", ROOT.parent / "shared")).resolve()
# A real clip of ../shared/data/face_videos used by the command-chain tests.
CLIP = "dreamtalk__data_style_clip_video_M030_front_angry_level3_001.mp4"


def shared_path(*parts) -> Path:
    """Path inside ../shared/data, skipping the calling test when it is absent."""
    p = SHARED.joinpath("data", *parts)
    if not p.exists():
        pytest.skip(f"shared data not available: {p} (tests that need ../shared skip without it)")
    return p


def script_env(**extra) -> dict:
    """Environment for a subprocess running one of this checkout's scripts from any folder
    (e.g. demo/run_demo.py): the checkout importable as `pip install -e .` makes it, and first,
    so a second worktree sharing the virtual environment runs its own code."""
    return dict(os.environ, PYTHONPATH=str(ROOT), **extra)


def run_cli(module, *args, cwd):
    """`python -m module args...` in `cwd` (the repository importable through PYTHONPATH, as an
    installed package would be); returns the CompletedProcess with text output."""
    env = script_env(TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def trimmed_clip(src: Path, dst: Path, n=24, size=160) -> Path:
    """The first `n` frames of a video, resized to size x size, written as an mp4v file."""
    cap = cv2.VideoCapture(str(src))
    out = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), 25, (size, size))
    for _ in range(n):
        ok, frame = cap.read()
        assert ok, f"{src}: could not read {n} frames"
        out.write(cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA))
    cap.release()
    out.release()
    return dst


def face_crop(faces5pt, size=160):
    """A size x size crop around the face of faces5pt/000002.jpg (three eye distances wide)."""
    img = read_image(faces5pt / "000002.jpg")
    p = read_points(faces5pt / "000002.txt")
    c, s = p.mean(0), int(np.linalg.norm(p[0] - p[1]) * 3)
    x0, y0 = int(c[0] - s / 2), int(c[1] - s / 2)
    return cv2.resize(img[y0:y0 + s, x0:x0 + s], (size, size), interpolation=cv2.INTER_AREA)


def shift(im, dx, dy):
    """The image translated by (dx, dy) pixels (bicubic, reflected border)."""
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(im, m, (im.shape[1], im.shape[0]), flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REFLECT)
