"""Training-data recipe (preprocess/recipe.py): shake, exposure blur, identity split, layout."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from preprocess.recipe import (Interpolator, RecipeConfig, Shake, group_people, run_recipe,
                               safe_name, segment_params, segment_starts, synthesize)


def _texture(size=96, seed=0):
    rng = np.random.default_rng(seed)
    import cv2

    img = rng.uniform(0, 255, (size // 4, size // 4, 3)).astype(np.float32)
    return np.clip(cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def test_shake_speed_is_the_requested_rms_speed():
    rng = np.random.default_rng(1)
    sh = Shake.random(rng, 256, 200, speed=6.0, rot_share=0.0, zoom_share=0.0, n_frames=20)
    t = np.linspace(0, 19, 2000)
    p = sh.params(t)
    v = np.gradient(p[:2], t, axis=1)
    rms = math.sqrt(np.mean(v[0] ** 2) + np.mean(v[1] ** 2))
    assert rms == pytest.approx(6.0, rel=0.02)


def test_shake_stays_inside_the_margin():
    rng = np.random.default_rng(2)
    sh = Shake.random(rng, 128, 8, speed=40.0, rot_share=0.3, zoom_share=0.2, n_frames=20)
    corners = np.array([[0, 0, 1], [127, 0, 1], [0, 127, 1], [127, 127, 1]], float)
    for t in np.linspace(0, 19, 200):
        src = corners @ sh.matrix(t).T
        assert src.min() >= -0.5 and src.max() <= 128 + 16 - 0.5


def test_identity_camera_at_rest_is_the_centre_crop():
    sh = Shake(64, 8, np.zeros(4), np.full((4, 3), 0.2), np.zeros((4, 3)), np.ones((4, 3)))
    img = np.arange(80 * 80 * 3, dtype=np.float32).reshape(80, 80, 3) / 1000
    from preprocess.recipe import view

    np.testing.assert_allclose(view(img, sh.matrix(3.0), 64), img[8:72, 8:72], atol=1e-3)


def test_interpolator_follows_linear_motion():
    # A pattern moving 4 px/frame to the right: the mid-frame is the pattern shifted by 2 px.
    base = _texture(112)
    frames = [base[:, 8 - 4 * k: 104 - 4 * k].copy() for k in range(2)]
    mid = Interpolator(frames)(0.5)
    from preprocess.blur import to_linear

    truth = to_linear(base[:, 6:102])
    err = np.abs(mid[20:-20, 20:-20] - truth[20:-20, 20:-20]).mean()
    assert err < 0.01, err


def test_blur_grows_with_exposure_and_sharp_is_unblurred():
    frames = [_texture(96, 3)] * 6
    rng = np.random.default_rng(0)
    sh = Shake.random(rng, 64, 16, speed=8.0, rot_share=0.0, zoom_share=0.0, n_frames=6)
    errs = []
    for exposure in (0.05, 0.5, 1.5):
        sharp, blurry, n_sub = synthesize(frames, sh, exposure, 1.0, 8.0, 25)
        errs.append(np.mean([np.abs(s.astype(float) - b).mean() for s, b in zip(sharp, blurry)]))
    # a near-zero exposure only differs by resampling (bilinear sub-samples, bicubic sharp)
    assert errs[0] < 0.3 * errs[1] and errs[1] < errs[2]
    # the sharp frame is the source seen through the camera at mid-exposure
    from preprocess.recipe import view, _encode
    from preprocess.blur import to_linear

    np.testing.assert_array_equal(sharp[2], _encode(view(to_linear(frames[2]), sh.matrix(2), 64)))


def test_group_people_is_transitive_and_split_disjoint():
    e = np.eye(128)
    descs = {"a1": e[0], "a2": e[0] + 0.01, "b": e[1], "c1": e[2], "c2": e[2] * 0.9 + 0.02 * e[3]}
    groups = group_people(sorted(descs), descs)
    assert sorted(map(tuple, groups)) == [("a1", "a2"), ("b",), ("c1", "c2")]


def test_segment_layout_and_params_are_deterministic():
    cfg = RecipeConfig(segment_len=20)
    assert segment_starts(160, cfg, 4) == [0, 47, 93, 140]
    assert segment_starts(30, cfg, 4) == [5]
    assert segment_starts(10, cfg, 4) == []
    p1, p2 = segment_params(cfg, "clip", 1), segment_params(cfg, "clip", 1)
    assert p1 == p2 and p1 != segment_params(cfg, "clip", 2)
    lo, hi = cfg.speed_range
    assert lo <= p1["speed"] <= hi
    assert safe_name("my clip/1") == "my_clip_1"


@pytest.mark.slow
def test_recipe_end_to_end_on_real_clips(face_videos, tmp_path):
    src = tmp_path / "videos"
    src.mkdir()
    names = ["dreamtalk__data_style_clip_video_M030_front_angry_level3_001.mp4",
             "KEEP__assets_examples_real_3.mp4",
             "Talking-Face_PC-AVS__misc_Pose_Source_00067.mp4"]
    for n in names:
        os.symlink(face_videos / n, src / n)
    cfg = RecipeConfig(size=96, margin=16, max_source_frames=24, segment_len=8, segments=2,
                       val_segments=1, n_val=1)
    out = tmp_path / "out"
    summary = run_recipe(src, out, cfg, jobs=1)
    split = json.loads((out / "splits.json").read_text())
    assert len(split["val"]) >= 1 and not set(split["val"]) & set(split["train"])
    train = (out / "datalist_train.txt").read_text().split("\n")
    val = (out / "datalist_val.txt").read_text().split("\n")
    train, val = [ln.split() for ln in train if ln], [ln.split() for ln in val if ln]
    assert summary["datalists"] == {"train": len(train), "val": len(val)}
    assert len(train) + len(val) == 8 * (summary["segments"]["train"] + summary["segments"]["val"])
    for cols in train + val:
        assert len(cols) == 8
        assert (out / "dataset" / cols[0]).is_file()
        assert all((out / "training_set" / c).is_file() for c in cols[1:6])
    val_clips = {c[0].split("__s")[0] for c in val}
    train_clips = {c[0].split("__s")[0] for c in train}
    assert val_clips == set(split["val"]) and not val_clips & train_clips
    from common.fileio import read_image

    seg = cols[0].split("/")[0]
    s = read_image(out / "dataset" / seg / "sharp" / "00004.png")
    b = read_image(out / "dataset" / seg / "blurry" / "00004.png")
    assert s.shape == b.shape == (96, 96, 3) and np.abs(s.astype(int) - b).mean() > 0.5
    meta = json.loads((out / "dataset" / seg / "recipe.json").read_text())
    assert {"speed", "exposure", "sub_samples", "shake"} <= set(meta)
    # a second run finds everything done and writes the same lists
    before = (out / "datalist_train.txt").read_bytes()
    again = run_recipe(src, out, cfg, jobs=1)
    assert again["align"]["written"] == 0
    assert (out / "datalist_train.txt").read_bytes() == before


def test_datalists_with_priors_leave_out_frames_without_a_face(tmp_path):
    """A frame where the detector found no face has no coefficients or render: with priors the
    datalist leaves it out (and counts it), so --face both trains on the list as written."""
    from preprocess.recipe import write_lists

    seg = "clip__s00"
    for k in (1, 2, 3):
        name = f"{k:05d}.png"
        (tmp_path / "dataset" / seg / "blurry").mkdir(parents=True, exist_ok=True)
        (tmp_path / "dataset" / seg / "blurry" / name).write_bytes(b"x")
        for o in (-2, -1, 0, 1, 2):
            d = tmp_path / "training_set" / seg / f"blur_{o}"
            d.mkdir(parents=True, exist_ok=True)
            (d / name).write_bytes(b"x")
        if k != 2:  # frame 2: no face found
            for sub, fname in (("face", f"{k:05d}.txt"), ("render", name)):
                (tmp_path / "training_set" / seg / sub).mkdir(exist_ok=True)
                (tmp_path / "training_set" / seg / sub / fname).write_bytes(b"x")
    assert write_lists(tmp_path, {"train": [seg]}, 5) == {"train": 3}
    counts = write_lists(tmp_path, {"train": [seg]}, 5, priors=True)
    assert counts == {"train": 2, "train_without_prior": 1}
    rows = (tmp_path / "datalist_train.txt").read_text().split("\n")
    assert [r.split()[0] for r in rows if r] == [f"{seg}/sharp/00001.png", f"{seg}/sharp/00003.png"]
    assert all(len(r.split()) == 8 for r in rows if r)
