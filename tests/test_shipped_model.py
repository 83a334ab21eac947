"""The deblurring model the project ships (checkpoints/facedeblur.npz, checkpoints/MODEL_CARD.md):
its file, that it is every command's default, and that it deblurs the authors' own clip."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import run_model
from deblur import checkpoint as ckpt

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ckpt.SHIPPED_CHECKPOINT


def test_shipped_file_is_small_complete_and_described():
    assert SHIPPED == ROOT / "checkpoints" / "facedeblur.npz" and SHIPPED.is_file()
    assert SHIPPED.stat().st_size <= 16 * 2 ** 20
    weights, opt, meta = ckpt.read_native(SHIPPED)
    assert opt == {}  # weights only
    assert {np.asarray(v).dtype for v in weights.values()} == {np.dtype("float16")}
    ckpt.check_finite(SHIPPED, weights)
    cfg = meta["config"]
    assert set(cfg) == set(ckpt.NETWORK_KEYS) and meta["step"] > 0
    net, config, step = ckpt.load_generator(SHIPPED, {}, verbose=False)
    assert config == cfg and step == meta["step"]
    # The model card names this file's configuration and step.
    card = (ROOT / "checkpoints" / "MODEL_CARD.md").read_text()
    assert "facedeblur.npz" in card and f"{meta['step']}" in card
    assert f"--face {cfg['face']}" in card and f"--channels {cfg['channels']}" in card


def test_export_keeps_the_outputs_within_float16(tmp_path):
    import deblur_data

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
    assert step == 2 and cfg["residual"] is True and cfg["face"] == "none"
    assert out.stat().st_size < (tmp_path / "ck" / "deblur-2.npz").stat().st_size / 3
    x = {"blur": np.random.default_rng(0).random((1, 40, 40, 15), dtype=np.float32)}
    a, b = np.asarray(src(x)), np.asarray(dst(x))
    assert np.abs(a - b).max() < 2e-3
    assert run_model.main(["--phase", "export", "--checkpoint", str(tmp_path / "ck"),
                           "--output_path", str(tmp_path / "m.txt")]) == 2


@pytest.mark.slow
def test_shipped_model_deblurs_vd001_by_default(tmp_path, vd001, capsys):
    """Issue 10: run_model.py --phase test with no --checkpoint uses the shipped model, which
    beats the blurry input in PSNR and SSIM on the authors' own blur (never trained on)."""
    import shutil

    for sub in ("blurry", "sharp", "face"):
        shutil.copytree(vd001 / sub, tmp_path / "dataset" / "vd001" / sub)
    subprocess.run([sys.executable, "-m", "preprocess", "align", "--dataset",
                    str(tmp_path / "dataset"), "--out", str(tmp_path / "testing_set"),
                    "--datalist", "", "--align", "flow", "--flow", "dis"],
                   check=True, cwd=ROOT, capture_output=True)
    rc = run_model.main(["--phase", "test", "--input_path", str(tmp_path / "testing_set"),
                         "--output_path", str(tmp_path / "res"), "--gpu", "-1",
                         "--gt_path", str(tmp_path / "dataset")])
    assert rc == 0
    assert f"using the shipped model {SHIPPED}" in capsys.readouterr().out
    res = json.loads((tmp_path / "res" / "metrics.json").read_text())
    from common import metrics
    from preprocess.fileio import read_image

    blurry = [metrics.frame_metrics(read_image(p), read_image(vd001 / "sharp" / p.name))
              for p in sorted((vd001 / "blurry").glob("*.png"))]
    b_psnr = float(np.mean([s["psnr"] for s in blurry]))
    b_ssim = float(np.mean([s["ssim"] for s in blurry]))
    allf = res["all_frames"]
    assert allf["psnr"] > b_psnr and allf["ssim"] > b_ssim, (allf, b_psnr, b_ssim)


@pytest.mark.slow
def test_make_demo_uses_the_shipped_model_and_gains_a_decibel(tmp_path):
    """Issue 10: `make demo` (demo/run_demo.py) trains nothing, runs deblur_video.py with no
    checkpoint flag (so the shipped model is the video command's default) and its result beats
    the blurry clip by >= 1 dB PSNR."""
    work = tmp_path / "demo_work"
    run = subprocess.run([sys.executable, "demo/run_demo.py", "--work", str(work)], cwd=ROOT,
                         capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "training" not in run.stdout.split("2/4")[1].split("3/4")[0]
    assert "--checkpoint" not in run.stdout.split("$ deblur_video.py")[1].split("\n")[0]
    assert f"the shipped model {SHIPPED}" in run.stdout
    res = json.loads((work / "eval.json").read_text())
    overall = res["overall"]
    assert overall["psnr"] - overall["blurry_psnr"] >= 1.0, overall
    assert overall["ssim"] > overall["blurry_ssim"], overall
