"""evaluate.py / deblur/evaluate.py: metrics against scikit-image, identity distance, reports, strips."""
from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from common import metrics
from common.fileio import read_image, write_image
from deblur import evaluate as ev
from tests.helpers import ROOT

N = 3  # frames of vd001 used (311x271): enough to exercise per-video means, fast


@pytest.fixture
def layout(vd001, tmp_path):
    """dataset-style gt/blurry, run_model-style pred (a mildly denoised blurry frame)."""
    rng = np.random.default_rng(0)
    for i in range(1, N + 1):
        name = f"{i:05d}.png"
        for sub in ("sharp", "blurry"):
            (tmp_path / "dataset" / "vd001" / sub).mkdir(parents=True, exist_ok=True)
            shutil.copy(vd001 / sub / name, tmp_path / "dataset" / "vd001" / sub / name)
        s = read_image(vd001 / "sharp" / name).astype(np.float64)
        pred = np.clip(s + rng.normal(0, 4, s.shape), 0, 255).astype(np.uint8)
        write_image(tmp_path / "results" / "vd001" / name, pred)
    return tmp_path


def test_psnr_ssim_match_skimage(vd001):
    for i in (1, 13):
        a = read_image(vd001 / "blurry" / f"{i:05d}.png")
        b = read_image(vd001 / "sharp" / f"{i:05d}.png")
        assert abs(metrics.psnr(a, b) - peak_signal_noise_ratio(b, a, data_range=255)) < 1e-3
        ref = structural_similarity(b, a, channel_axis=2, data_range=255)
        assert abs(metrics.ssim(a, b) - ref) < 1e-4
        ya, yb = metrics.rgb_to_y(a), metrics.rgb_to_y(b)
        assert abs(metrics.ssim(ya, yb) - structural_similarity(yb, ya, data_range=255)) < 1e-4
        assert abs(metrics.psnr(ya, yb) - peak_signal_noise_ratio(yb, ya, data_range=255)) < 1e-3


def test_y_is_matlab_bt601():
    px = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)
    y = metrics.rgb_to_y(px)[0]
    # MATLAB rgb2ycbcr (double): black 16, white 235, pure R/G/B 16+65.481, 16+128.553, 16+24.966
    np.testing.assert_allclose(y, [16.0, 235.0, 81.481, 144.553, 40.966], atol=1e-9)


def test_identical_images_psnr_inf_ssim_one():
    a = np.random.default_rng(1).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    assert math.isinf(metrics.psnr(a, a))
    assert metrics.ssim(a, a) == pytest.approx(1.0)


def test_evaluate_report_and_cli(layout):
    rep = ev.evaluate(layout / "results", layout / "dataset", layout / "dataset")
    assert len(rep.rows) == N and set(rep.videos) == {"vd001"}
    for r in rep.rows:
        a = read_image(layout / "results" / "vd001" / r["frame"])
        b = read_image(layout / "dataset" / "vd001" / "sharp" / r["frame"])
        assert r["psnr"] == pytest.approx(peak_signal_noise_ratio(b, a, data_range=255), abs=1e-3)
        assert r["ssim"] == pytest.approx(structural_similarity(b, a, channel_axis=2, data_range=255), abs=1e-4)
        # noise of sigma 4 keeps the identity; the authors' blur moves the descriptor further
        assert 0.0 < r["id_dist"] < r["blurry_id_dist"] + 0.05
        assert r["id_dist"] < 0.6
    assert rep.overall["psnr"] == pytest.approx(np.mean([r["psnr"] for r in rep.rows]))
    assert rep.overall["psnr"] > rep.overall["blurry_psnr"]

    out = subprocess.run([sys.executable, "evaluate.py", "--pred", str(layout / "results"), "--gt",
                          str(layout / "dataset"), "--blurry", str(layout / "dataset"), "--out",
                          str(layout / "rep"), "--compare", str(layout / "cmp"), "--no_identity"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "ALL" in out.stdout and "blurry psnr" in out.stdout
    doc = json.loads((layout / "rep.json").read_text())
    assert doc["overall"]["frames"] == N
    assert doc["overall"]["psnr"] == pytest.approx(rep.overall["psnr"], abs=1e-9)
    rows = list(csv.DictReader(open(layout / "rep.csv")))
    assert [r["frame"] for r in rows] == [f"{i:05d}.png" for i in range(1, N + 1)] + ["mean_over_frames", "mean_over_frames"]
    strip = read_image(layout / "cmp" / "vd001" / "00001.png")
    res = read_image(layout / "results" / "vd001" / "00001.png")
    h, w = res.shape[:2]
    assert strip.shape == (h, 3 * w + 2 * 4, 3)  # blurry | result | sharp: no --render given
    # second panel is the result (the label box at its top-left excluded)
    x0 = w + 4
    np.testing.assert_array_equal(strip[60:, x0:x0 + w], res[60:])
    import imageio_ffmpeg
    reader = imageio_ffmpeg.read_frames(str(layout / "cmp" / "vd001.mp4"))
    meta = next(reader)
    n = sum(1 for _ in reader)
    # the strip's exact size, odd sides included (4:4:4 then), not padded
    assert meta["codec"].startswith("h264") and tuple(meta["size"]) == (strip.shape[1], strip.shape[0])
    assert n == N


def test_prediction_listing_skips_temporaries_and_folders(layout):
    """evaluate lists frames with common.frames.image_files: a killed write's hidden temporary
    and a sub-folder named like an image are not frames."""
    pred = layout / "results" / "vd001"
    (pred / ".00002.png.tmp.png").write_bytes(b"not an image")
    (pred / "extra.png").mkdir()
    rep = ev.evaluate(layout / "results", layout / "dataset", identity=False)
    assert [r["frame"] for r in rep.rows] == [f"{i:05d}.png" for i in range(1, N + 1)]


def test_cli_bad_input_exits_2(layout):
    (layout / "dataset" / "vd001" / "sharp" / "00002.png").unlink()
    out = subprocess.run([sys.executable, "evaluate.py", "--pred", str(layout / "results"), "--gt",
                          str(layout / "dataset"), "--no_identity"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 2
    assert "00002.png" in out.stderr and "Traceback" not in out.stderr
    assert not (layout / "results" / "eval.json").exists()


def test_identity_distinguishes_people(faces5pt):
    imgs = sorted(p for p in faces5pt.iterdir() if p.suffix.lower() in (".jpg", ".png"))[:2]
    a, b = (read_image(p) for p in imgs)
    sc = ev.IdentityScorer()
    da = sc.descriptor(a, sc.face_box(a)[0])
    db = sc.descriptor(b, sc.face_box(b)[0])
    assert np.linalg.norm(da - db) > 0.6
    assert np.linalg.norm(da - sc.descriptor(a, sc.face_box(a)[0])) < 1e-6


def test_comparison_strip_names_the_model_and_shows_a_prior_only_when_given(layout, tmp_path):
    """The strips say which model made the result (a caption from <pred>/model.json), and a
    model without a 3D prior gets no empty prior panel: blurry | result | sharp."""
    from deblur.checkpoint import write_model_record

    write_model_record(layout / "results", {"model": "the shipped model facedeblur.npz (step 2500)"})
    rep = ev.evaluate(layout / "results", layout / "dataset", layout / "dataset", identity=False)
    assert rep.model.startswith("the shipped model")
    ev.write_comparison(layout / "results", layout / "dataset", tmp_path / "cmp", blurry=layout / "dataset",
                        rep=rep)
    strip = read_image(tmp_path / "cmp" / "vd001" / "00001.png")
    res = read_image(layout / "results" / "vd001" / "00001.png")
    h, w = res.shape[:2]
    assert strip.shape[1] == 3 * w + 2 * 4 and h + 10 < strip.shape[0] < h + 40
    x0 = w + 4  # the result is the second panel now
    np.testing.assert_array_equal(strip[60:h, x0:x0 + w], res[60:])
    caption = strip[h:]
    assert caption.max() > 200 and np.median(caption) == 0  # white text on a black band
    # Without a model record: no caption, the panels as before.
    (layout / "results" / "model.json").unlink()
    rep = ev.evaluate(layout / "results", layout / "dataset", layout / "dataset", identity=False)
    ev.write_comparison(layout / "results", layout / "dataset", tmp_path / "cmp2", rep=rep,
                        render=layout / "nowhere")
    strip = read_image(tmp_path / "cmp2" / "vd001" / "00001.png")
    assert strip.shape == (h, 4 * w + 3 * 4, 3)
