"""preprocess/sample.py: the demo clip (astronaut photo, smooth camera shake, true motion blur)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import ROOT
from preprocess import sample as sm
from common.fileio import read_image

CFG = dict(n_frames=4, size=64, scale=0.4, sub_frames=5)


def test_layout_and_determinism(tmp_path):
    cfg = sm.SampleConfig(**CFG, seed=3)
    out = sm.make_sample(tmp_path / "a", "clip", cfg)
    sm.make_sample(tmp_path / "b", "clip", sm.SampleConfig(**CFG, seed=3))
    sm.make_sample(tmp_path / "c", "clip", sm.SampleConfig(**CFG, seed=4))
    for sub in ("sharp", "blurry"):
        names = sorted(p.name for p in (out / sub).iterdir())
        assert names == ["00001.png", "00002.png", "00003.png", "00004.png"]
        for n in names:
            a = read_image(out / sub / n)
            assert a.shape == (64, 64, 3)
            np.testing.assert_array_equal(a, read_image(tmp_path / "b" / "clip" / sub / n))
    assert any(not np.array_equal(read_image(out / "blurry" / n), read_image(tmp_path / "c" / "clip" / "blurry" / n))
               for n in ("00001.png", "00002.png"))
    meta = json.loads((out / "sample.json").read_text())
    assert meta["config"]["seed"] == 3 and len(meta["poses_mid_exposure"]) == 4


def test_blurry_is_linear_mean_of_sub_frames_and_sharp_is_mid_exposure():
    cfg = sm.SampleConfig(**CFG, seed=1)
    photo = sm.load_photo()
    traj = sm.Trajectory(cfg)
    sharp, blurry = sm.make_frame(photo, traj, 2, cfg)
    times = sm.sub_frame_times(2, cfg)
    assert len(times) == 5 and times[2] == pytest.approx(2.0) and times[-1] - times[0] == pytest.approx(1.0)
    subs = [sm.render(photo, traj.pose(t), cfg) for t in times]
    lin = np.mean([(np.clip(s, 0, 255) / 255.0) ** 2.2 for s in subs], axis=0)
    expect = np.round(255 * lin ** (1 / 2.2))
    assert np.abs(blurry.astype(float) - expect).max() <= 1
    np.testing.assert_allclose(sharp, np.clip(np.round(subs[2]), 0, 255), atol=1)
    # motion blur removes detail: lower gradient energy than the sharp frame
    g = lambda x: np.abs(np.diff(x.astype(float), axis=1)).mean()
    assert g(blurry) < 0.9 * g(sharp)


def test_trajectory_is_smooth_and_bounded():
    cfg = sm.SampleConfig(seed=0)
    traj = sm.Trajectory(cfg)
    t = np.linspace(0, 50, 2001)
    p = np.array([traj.pose(x) for x in t])
    assert np.all(np.abs(p) <= np.array([cfg.shake_px, cfg.shake_px, cfg.shake_deg, cfg.shake_zoom]) + 1e-9)
    step = np.abs(np.diff(p, axis=0)).max(axis=0) / (t[1] - t[0])  # max speed per frame
    assert step[0] < 2 * np.pi * 0.25 * cfg.shake_px + 1e-6
    assert p[:, 0].std() > 0.1 * cfg.shake_px  # it does move


def test_face_is_in_frame_centre():
    """The shipped photo's face lands near the centre of the default frame (dlib HOG detector)."""
    import dlib

    cfg = sm.SampleConfig(n_frames=1)
    sharp, _ = sm.make_frame(sm.load_photo(), sm.Trajectory(cfg), 0, cfg)
    rects = dlib.get_frontal_face_detector()(sharp, 1)
    assert len(rects) >= 1
    r = max(rects, key=lambda r: r.area())
    cx, cy = (r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2
    assert abs(cx - 96) < 25 and abs(cy - 96) < 25


def test_cli(tmp_path):
    out = subprocess.run([sys.executable, "-m", "preprocess.sample", "--dataset", str(tmp_path), "--name", "s",
                          "--frames", "2", "--size", "48", "--scale", "0.3"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert read_image(tmp_path / "s" / "blurry" / "00002.png").shape == (48, 48, 3)
    bad = subprocess.run([sys.executable, "-m", "preprocess.sample", "--dataset", str(tmp_path), "--size", "8"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "size" in bad.stderr and "Traceback" not in bad.stderr
