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


def _segment_files(root, seg, frames, exposure):
    """A finished segment as write_lists sees it: blurry frames, aligned neighbours, recipe.json."""
    (root / "dataset" / seg / "blurry").mkdir(parents=True, exist_ok=True)
    (root / "dataset" / seg / "recipe.json").write_text(json.dumps({"exposure": exposure}))
    for k in range(1, frames + 1):
        name = f"{k:05d}.png"
        (root / "dataset" / seg / "blurry" / name).write_bytes(b"x")
        for o in (-2, -1, 0, 1, 2):
            d = root / "training_set" / seg / f"blur_{o}"
            d.mkdir(parents=True, exist_ok=True)
            (d / name).write_bytes(b"x")


def test_unblurred_repeat_oversamples_only_unblurred_training_segments(tmp_path):
    """--unblurred_repeat N lists each frame of a segment left without blur N times in the
    training list, in place; blurred segments and the validation list are listed once."""
    from common.fileio import InputError
    from preprocess.recipe import write_lists

    _segment_files(tmp_path, "a__s00", 2, 1.3)
    _segment_files(tmp_path, "a__s01", 2, 0.0)
    _segment_files(tmp_path, "b__s00", 2, 0.0)
    segments = {"train": ["a__s00", "a__s01"], "val": ["b__s00"]}
    assert write_lists(tmp_path, segments, 5) == {"train": 4, "val": 2}
    once = (tmp_path / "datalist_train.txt").read_text().splitlines()
    counts = write_lists(tmp_path, segments, 5, unblurred_repeat=3)
    assert counts == {"train": 8, "train_repeated": 4, "val": 2}
    rows = (tmp_path / "datalist_train.txt").read_text().splitlines()
    assert [r.split()[0] for r in rows] == [
        "a__s00/sharp/00001.png", "a__s00/sharp/00002.png",
        *["a__s01/sharp/00001.png"] * 3, *["a__s01/sharp/00002.png"] * 3]
    assert sorted(set(rows)) == sorted(once)
    assert len((tmp_path / "datalist_val.txt").read_text().splitlines()) == 2
    with pytest.raises(InputError, match="1 or more"):
        write_lists(tmp_path, segments, 5, unblurred_repeat=0)
    (tmp_path / "dataset" / "a__s01" / "recipe.json").write_text("{}")
    with pytest.raises(InputError, match="a__s01.*recipe.json"):
        write_lists(tmp_path, segments, 5, unblurred_repeat=2)


def test_fit_box_keeps_the_crop_inside_a_small_frame_at_its_own_resolution():
    """A 224-px talking-head frame with a face box wider than the frame: the crop is the whole
    frame, unscaled (no replicated border, no upsampling)."""
    from preprocess.video import crop_square, fit_box, fitted_crop_size

    frame = _texture(224, seed=3)
    size = fitted_crop_size(frame.shape, 336)
    assert size == 224
    cx, cy, side = fit_box(100.0, 130.0, 330.0, 224, 224, size)
    assert (cx, cy, side) == (112.0, 112.0, 224.0)
    assert np.array_equal(crop_square(frame, cx, cy, side, size), frame)
    # a large frame: the box keeps its size but is pushed inside; a small box grows to `size`
    assert fit_box(20.0, 600.0, 400.0, 720, 1280, 336) == (200.0, 600.0, 400.0)
    assert fit_box(360.0, 600.0, 200.0, 720, 1280, 336) == (360.0, 600.0, 336.0)
    assert fitted_crop_size((250, 300, 3), 336) == 248  # multiple of 8


def test_degrade_adds_the_requested_noise_and_jpeg_and_nothing_when_off():
    from preprocess.recipe import degrade

    img = np.full((64, 64, 3), 128, np.uint8)
    rng = np.random.default_rng(0)
    assert np.array_equal(degrade(img, 0.0, 0, rng), img)
    noisy = degrade(img, 2.0, 0, rng).astype(float)
    assert 1.8 < noisy.std() < 2.2 and abs(noisy.mean() - 128) < 0.1
    tex = np.repeat(_texture(64, seed=1)[..., :1], 3, axis=2)  # grey: 4:2:0 chroma loses nothing
    jpg = degrade(tex, 0.0, 75, rng)
    err = np.abs(jpg.astype(float) - tex).mean()
    assert jpg.shape == tex.shape and jpg.dtype == np.uint8 and 0.3 < err < 8


def test_segment_params_draw_degradation_for_about_the_requested_share():
    cfg = RecipeConfig(degrade_share=0.5)
    ps = [segment_params(cfg, f"clip{i}", 0) for i in range(200)]
    noisy = [p for p in ps if p["noise_sigma"] > 0]
    assert 70 < len(noisy) < 130
    lo, hi = cfg.noise_range
    assert all(lo <= p["noise_sigma"] <= hi and cfg.jpeg_range[0] <= p["jpeg_quality"] <= cfg.jpeg_range[1]
               for p in noisy)
    assert all(p["jpeg_quality"] == 0 for p in ps if p["noise_sigma"] == 0)
    clean = RecipeConfig(degrade_share=0.0)
    assert all(segment_params(clean, f"clip{i}", 0)["noise_sigma"] == 0 for i in range(50))


def test_still_segments_blur_only_what_moves():
    """A still camera (the paper's blur): a static background stays sharp while a moving patch
    smears over the exposure; frames around the segment feed its end frames' windows."""
    rng = np.random.default_rng(0)
    bg = _texture(96, seed=5)
    frames = []
    for k in range(12):  # a 24-px textured square moving 3 px/frame to the right
        f = bg.copy()
        f[36:60, 10 + 3 * k:34 + 3 * k] = _texture(24, seed=7)
        frames.append(f)
    cfg = RecipeConfig()
    shake = Shake.random(rng, 64, 16, 0.0, cfg.rot_share, cfg.zoom_share, 8)
    assert np.all(shake.amp == 0)
    sharp, blurry, n_sub = synthesize(frames, shake, 4.0, 1.0, 0.0, 33, targets=range(2, 10))
    assert len(sharp) == 8 and n_sub == 17  # 4 frames x 4 grid steps + 1
    s, b = sharp[3].astype(float), blurry[3].astype(float)
    assert np.array_equal(sharp[0], frames[2][16:80, 16:80])  # still camera: the centre crop
    static = np.abs(s - b)[:8].mean()        # rows 16-23 of the frame: background only
    moving = np.abs(s - b)[22:42].mean()     # rows 38-57: the moving square
    assert static < 0.5 and moving > 8
    cfg = RecipeConfig(still_share=1.0)
    p = segment_params(cfg, "clip", 0)
    assert p["still"] and p["speed"] == 0 and 2.0 <= p["exposure"] <= 8.0


def test_still_blur_averages_srgb_values_and_exposure_zero_is_no_blur():
    """Still segments average sRGB values (the paper's frame averaging: no brightening of the
    blurred edges that linear light gives); exposure 0 leaves the frame unblurred."""
    a = np.full((48, 48, 3), 50, np.uint8)  # a flash in the middle frame: no motion, so the
    b = np.full((48, 48, 3), 200, np.uint8)  # two averages differ only by where they average
    shake = Shake.random(np.random.default_rng(0), 32, 8, 0.0, 0.25, 0.15, 3)
    _, lin, _ = synthesize([a, b, a], shake, 2.0, 1.0, 0.0, 33, targets=[1], linear=True)
    _, srgb, _ = synthesize([a, b, a], shake, 2.0, 1.0, 0.0, 33, targets=[1], linear=False)
    # linear light: ((50/255)^2.2 + (200/255)^2.2) / 2 on average -> brighter than the sRGB mean
    assert lin[0].mean() > srgb[0].mean() + 8  # measured 142 vs 131
    assert abs(srgb[0].mean() - 125) < 12
    sharp, blurry, _ = synthesize([a, b], shake, 0.0, 1.0, 0.0, 33, targets=[0])
    assert np.array_equal(sharp[0], blurry[0])


def test_recipe_command_passes_unblurred_repeat_to_the_recipe(monkeypatch, tmp_path):
    """`python -m preprocess recipe --unblurred_repeat 3` reaches RecipeConfig (default 1)."""
    import preprocess.recipe
    from preprocess.cli import _main

    seen = []
    monkeypatch.setattr(preprocess.recipe, "run_recipe",
                        lambda videos, out, cfg, jobs, priors: seen.append(cfg) or {})
    assert _main(["recipe", "--videos", str(tmp_path), "--out", str(tmp_path / "o")]) == 0
    assert _main(["recipe", "--videos", str(tmp_path), "--out", str(tmp_path / "o"),
                  "--unblurred_repeat", "3"]) == 0
    assert [c.unblurred_repeat for c in seen] == [1, 3]
