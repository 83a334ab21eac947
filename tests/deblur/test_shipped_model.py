"""The deblurring model the project ships (checkpoints/facedeblur.npz, checkpoints/MODEL_CARD.md):
its file, that it is every command's default, and that it deblurs the authors' own clip."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import run_model
from deblur import checkpoint as ckpt
from deblur.config import NetworkConfig

from tests.helpers import ROOT, script_env
SHIPPED = ckpt.SHIPPED_CHECKPOINT


def test_shipped_file_is_small_complete_and_described():
    assert SHIPPED == ROOT / "checkpoints" / "facedeblur.npz" and SHIPPED.is_file()
    assert SHIPPED.stat().st_size <= 16 * 2 ** 20
    weights, opt, meta = ckpt.read_native(SHIPPED)
    assert opt == {}  # weights only
    assert {np.asarray(v).dtype for v in weights.values()} == {np.dtype("float16")}
    ckpt.check_finite(SHIPPED, weights)
    cfg = meta["config"]
    assert set(cfg) == set(NetworkConfig.keys())
    net, config, step = ckpt.load_generator(SHIPPED, {}, verbose=False)
    assert config.to_dict() == cfg and net.deblur_config == config and step == meta["step"]
    # The model card names this file's configuration and where it came from: a training step,
    # or, for a weight interpolation, both sources and alpha.
    card = (ROOT / "checkpoints" / "MODEL_CARD.md").read_text()
    assert "facedeblur.npz" in card
    assert f"--face {cfg['face']}" in card and f"--channels {cfg['channels']}" in card
    # how it is run (stored in the file, every command's default) is in the card's export command
    how = ckpt.stored_inference(SHIPPED)
    if how["self_ensemble"]:
        assert "--self_ensemble on" in card
    if how["sharp_guard"]:
        assert f"--sharp_guard {how['sharp_guard']:g}" in card
    mix = meta.get("interpolated")
    if mix is None:
        assert meta["step"] > 0 and f"{meta['step']}" in card
    else:
        assert meta["step"] == 0
        assert f"--alpha {mix['alpha']:g}" in card and f"--widen_seed {mix['widen_seed']}" in card
        assert mix["a"] in card and mix["b"] in card


def test_shipped_interpolation_is_rebuilt_from_committed_files(tmp_path):
    """An interpolated shipped file (deblur.interpolate) must be reproducible: both sources are
    committed, and the recorded command rebuilds the same float16 arrays from them."""
    from deblur import interpolate

    shipped, _, meta = ckpt.read_native(SHIPPED)
    mix = meta.get("interpolated")
    if mix is None:
        pytest.skip("the shipped model is not an interpolation")
    for src in (mix["a"], mix["b"]):
        assert (ROOT / src).is_file(), f"{src}, a source of the shipped model, is not in the repository"
    out = interpolate.write_interpolated(ROOT / mix["a"], ROOT / mix["b"], mix["alpha"],
                                         tmp_path / "rebuilt.npz", mix["widen_seed"], "float16")
    rebuilt, _, rmeta = ckpt.read_native(out)
    assert set(rebuilt) == set(shipped)
    assert all(np.array_equal(rebuilt[k], shipped[k]) for k in shipped)
    assert (rmeta["config"], rmeta["interpolated"]["a_step"]) == (meta["config"], mix["a_step"])


def test_export_keeps_the_outputs_within_float16(tmp_path):
    from deblur.testing import datasets as deblur_data

    deblur_data.build(tmp_path, n=3, h=40, w=40)
    run_model.main(["--phase", "train", "--datalist", str(tmp_path / "datalist_train.txt"),
                    "--data_root", str(tmp_path / "dataset"),
                    "--train_root", str(tmp_path / "training_set"),
                    "--checkpoint_dir", str(tmp_path / "ck"), "--channels", "4", "--gpu", "-1",
                    "--batch_size", "2", "--patch_size", "36", "--max_steps", "2",
                    "--face", "none", "--residual", "--lr", "1e-2"])
    out = tmp_path / "m.npz"
    assert run_model.main(["--phase", "export", "--checkpoint", str(tmp_path / "ck"),
                           "--output_path", str(out)]) == 0
    src, _, _ = ckpt.load_generator(tmp_path / "ck", {}, verbose=False)
    dst, cfg, step = ckpt.load_generator(out, {}, verbose=False)
    assert step == 2 and cfg.residual is True and cfg.face == "none"
    assert out.stat().st_size < (tmp_path / "ck" / "deblur-2.npz").stat().st_size / 3
    x = {"blur": np.random.default_rng(0).random((1, 40, 40, 15), dtype=np.float32)}
    a, b = np.asarray(src(x)), np.asarray(dst(x))
    assert np.abs(a - b).max() < 2e-3
    assert run_model.main(["--phase", "export", "--checkpoint", str(tmp_path / "ck"),
                           "--output_path", str(tmp_path / "m.txt")]) == 2


@pytest.fixture(scope="module")
def vd001_run(tmp_path_factory):
    """vd001 as a user would run it: neighbours aligned by `preprocess align`, then
    `run_model.py --phase test` with no --checkpoint. Returns (status, stdout, metrics, blurry)."""
    import contextlib
    import io
    import shutil

    from common import metrics
    from common.fileio import read_image

    from tests.helpers import shared_path

    vd001 = shared_path("vd001")  # skips both tests without ../shared
    tmp = tmp_path_factory.mktemp("vd001")
    for sub in ("blurry", "sharp", "face"):
        shutil.copytree(vd001 / sub, tmp / "dataset" / "vd001" / sub)
    subprocess.run([sys.executable, "-m", "preprocess", "align", "--dataset",
                    str(tmp / "dataset"), "--out", str(tmp / "testing_set"),
                    "--datalist", "", "--align", "flow", "--flow", "dis"],
                   check=True, cwd=ROOT, capture_output=True)
    if ckpt.stored_config(SHIPPED, ckpt.read_meta(SHIPPED)).face != "none":
        # A model with the 3D prior reads coefficients and renders: stages 3 and 4 with the
        # shipped ICT Face Model, from the five points vd001 comes with.
        for cmd in (["demo.py", "--input_path", str(tmp / "dataset"),
                     "--output_path", str(tmp / "testing_set")],
                    ["demo_render.py", "--coeff_path", str(tmp / "testing_set"),
                     "--data_path", str(tmp / "dataset")]):
            subprocess.run([sys.executable, *cmd], check=True, cwd=ROOT, capture_output=True,
                           env=script_env())
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = run_model.main(["--phase", "test", "--input_path", str(tmp / "testing_set"),
                             "--output_path", str(tmp / "res"), "--gpu", "-1",
                             "--gt_path", str(tmp / "dataset")])
    res = json.loads((tmp / "res" / "metrics.json").read_text()) if rc == 0 else None
    rows = [metrics.frame_metrics(read_image(p), read_image(vd001 / "sharp" / p.name))
            for p in sorted((vd001 / "blurry").glob("*.png"))]
    blurry = {k: float(np.mean([r[k] for r in rows])) for k in ("psnr", "ssim")}
    return rc, out.getvalue(), res, blurry


@pytest.mark.slow
def test_run_model_test_phase_uses_the_shipped_model_by_default(vd001_run):
    rc, out, res, _ = vd001_run
    assert rc == 0
    assert f"using the shipped model {SHIPPED}" in out
    assert len(res["frames"]) == 25
    # the figures and the results folder say which model made them (evaluate.py reads model.json)
    assert "PSNR/SSIM of the shipped model facedeblur.npz" in out
    assert res["model"].startswith("the shipped model facedeblur.npz")


@pytest.mark.slow
def test_shipped_model_beats_the_blurry_input_on_vd001(vd001_run):
    """Issue 10: on the authors' own blur (never trained on) the shipped model beats the blurry
    input in PSNR and SSIM, with the neighbours aligned as `preprocess align` does by default
    (occluded pixels from frame t; with --occlusion warp it does not: MODEL_CARD.md)."""
    rc, _, res, blurry = vd001_run
    assert rc == 0
    allf = res["all_frames"]
    assert allf["psnr"] > blurry["psnr"] and allf["ssim"] > blurry["ssim"], (allf, blurry)


@pytest.mark.slow
def test_make_demo_uses_the_shipped_model_and_gains_a_decibel(tmp_path):
    """Issue 10: `make demo` (demo/run_demo.py) trains nothing, runs deblur_video.py with no
    checkpoint flag (so the shipped model is the video command's default) and its result beats
    the blurry clip by >= 1 dB PSNR."""
    work = tmp_path / "demo_work"
    run = subprocess.run([sys.executable, "demo/run_demo.py", "--work", str(work)], cwd=ROOT,
                         capture_output=True, text=True, timeout=1200, env=script_env())
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "training" not in run.stdout.split("2/4")[1].split("3/4")[0]
    assert "--checkpoint" not in run.stdout.split("$ deblur_video.py")[1].split("\n")[0]
    assert f"the shipped model {SHIPPED}" in run.stdout
    res = json.loads((work / "eval.json").read_text())
    # the demo's report names the model that made the frames (from deblur_video.py's record)
    assert res["model"].startswith("the shipped model facedeblur.npz"), res["model"]
    assert "result = the shipped model facedeblur.npz" in run.stdout
    overall = res["overall"]
    assert overall["psnr"] - overall["blurry_psnr"] >= 1.0, overall
    assert overall["ssim"] > overall["blurry_ssim"], overall
