"""The documented training-side chain, every stage through its own command line, on a real clip
of ../shared/data/face_videos (12 frames, 128x128 face crop): preprocess all ->
facePointDetection -> demo.py -> demo_render.py -> run_model.py --phase train. Checks that the
datalist written by stage 1 names exactly the files stages 2-4 write, and that the network
trains on them. Priors come from the shipped ICT Face Model (no BFM here), as for a new user."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from common.fileio import read_coeff, read_image
from tests.helpers import CLIP, trimmed_clip as _trimmed_clip
from tests.helpers import ROOT, run_cli


def _script(name, *args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, str(ROOT / name), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_every_stage_feeds_the_next(face_videos, tmp_path):
    src = face_videos / CLIP
    if not src.exists():
        src = sorted(face_videos.glob("*.mp4"))[0]
    video = _trimmed_clip(src, tmp_path / "clip.mp4", n=12)
    steps = [
        run_cli("preprocess", "all", "--video", video, "--face_crop", 128, "--crop_scale", 1.6,
                "--n_avg", 5, "--align", "flow", "--flow", "dis", cwd=tmp_path),
        run_cli("facePointDetection", "--dataset", "./dataset", cwd=tmp_path),
        _script("demo.py", cwd=tmp_path),
        _script("demo_render.py", cwd=tmp_path),
    ]
    for r in steps:
        assert r.returncode == 0, r.stderr[-2000:]
    for r in steps[2:]:  # each 3D stage says which model made its output
        assert "3D face model: ICT Face Model" in r.stdout + r.stderr or "Basel Face Model" in r.stdout + r.stderr
        assert "STAND-IN" not in r.stdout + r.stderr

    lines = (tmp_path / "datalist_train.txt").read_text().splitlines()
    assert len(lines) == 12
    for line in lines:
        cols = line.split()
        assert (tmp_path / "dataset" / cols[0]).is_file()
        for c in cols[1:]:
            assert (tmp_path / "training_set" / c).is_file(), c
        assert read_coeff(tmp_path / "training_set" / cols[6]).size == 239
        render = read_image(tmp_path / "training_set" / cols[7])
        assert render.shape == (128, 128, 3) and render.max() > 0  # a face was rendered

    r = _script("run_model.py", "--phase", "train", "--channels", "4", "--batch_size", "2",
                "--patch_size", "64", "--max_steps", "3", "--gpu", "-1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    ck = tmp_path / "checkpoints" / "both_1_64" / "deblur-3.npz"
    assert ck.is_file()
    with np.load(ck) as z:
        assert np.isfinite(z["weights/g_net/enc1_1/weights"]).all()
