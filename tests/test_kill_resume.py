"""Kill -9 in the middle of long runs, then run the same command again.

Training is killed five times at random steps (seeded, so a failure reproduces) and resumed each
time: the final step, learning rate, Adam state and weights must equal an uninterrupted run's.
Preprocessing, demo.py and demo_render.py are killed mid-run: the re-run completes, redoes only
the unfinished work, and every output file opens. (The video command: tests/test_cases.py and
tests/pipeline/test_video.py kill and resume it.)

Small on purpose (2 CPU cores): --channels 8, 64-pixel patches, 24 steps, vd001 frames.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from deblur.testing import datasets as deblur_data
from tests.helpers import ROOT
from deblur import checkpoint as ckpt
from common.fileio import read_coeff, read_image

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
STEPS = 24


def _start(cmd, cwd=ROOT, log=None):
    return subprocess.Popen(cmd, cwd=cwd, env=ENV, start_new_session=True,
                            stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT)


def _kill_when(proc, ready, timeout=600, delay=0.0, at_once=lambda: False):
    """SIGKILL the process group once `ready()` holds, then after `delay` s, or as soon as
    `at_once()` holds during that delay (a fast CPU finishes several steps in it). False if the
    process ended first."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            return False
        if ready():
            t1 = time.time()
            while time.time() - t1 < delay and not at_once():
                time.sleep(0.005)
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


def _newest_step(folder: Path) -> int:
    found = ckpt.native_checkpoints(folder)
    return int(re.findall(r"\d+", found[-1].name)[-1]) if found else 0


def _train_cmd(tmp_path, ck_dir):
    return [sys.executable, "run_model.py", "--phase", "train", "--datalist", str(tmp_path / "datalist_train.txt"),
            "--data_root", str(tmp_path / "dataset"), "--train_root", str(tmp_path / "training_set"),
            "--checkpoint_dir", str(ck_dir), "--channels", "8", "--patch_size", "64", "--batch_size", "2",
            "--max_steps", str(STEPS), "--save_every", "1", "--keep", "2", "--lr", "1e-3", "--gpu", "-1"]


def test_training_killed_five_times_resumes_to_the_same_model(tmp_path, vd001):
    deblur_data.build(tmp_path, video="vd001", source=vd001, n=6)
    rng = random.Random(2019)
    killed = tmp_path / "killed"
    for k in range(5):
        last = _newest_step(killed)
        # a step left for each later kill, and the run must not reach the end
        limit = STEPS - (5 - k)
        target = rng.randint(last + 1, limit)
        proc = _start(_train_cmd(tmp_path, killed))
        assert _kill_when(proc, lambda: _newest_step(killed) >= target, delay=rng.uniform(0.0, 0.4),
                          at_once=lambda: _newest_step(killed) >= limit), \
            f"training ended before kill {k + 1} (step {_newest_step(killed)})"
        assert _newest_step(killed) < STEPS
    r = subprocess.run(_train_cmd(tmp_path, killed), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "Resuming from" in r.stdout
    # the uninterrupted run, in this process (one TensorFlow start-up less; same code and seed)
    import run_model
    from deblur.config import TrainConfig
    from deblur.train import train

    train(TrainConfig.from_args(run_model.parse_args(_train_cmd(tmp_path, tmp_path / "straight")[2:])))

    wa, oa, ma = ckpt.read_native(tmp_path / "straight" / f"deblur-{STEPS}.npz")
    wb, ob, mb = ckpt.read_native(killed / f"deblur-{STEPS}.npz")
    assert ma["step"] == mb["step"] == STEPS
    assert set(wa) == set(wb) and set(oa) == set(ob)
    for name in wa:
        np.testing.assert_allclose(wb[name], wa[name], rtol=1e-4, atol=1e-5, err_msg=name)
    for name in oa:  # Adam moments and the iteration count, which sets the learning rate
        np.testing.assert_allclose(ob[name], oa[name], rtol=1e-3, atol=1e-6, err_msg=name)
    iters = [n for n in ob if n.endswith("iterations") or n.endswith("iteration")]
    assert iters and int(ob[iters[0]]) == STEPS
    from deblur.train import make_optimizer

    _, schedule = make_optimizer(1e-3, STEPS, "fp32")
    assert float(schedule(int(ob[iters[0]]))) == float(schedule(int(oa[iters[0]])))  # the same learning rate
    assert [p.name for p in ckpt.native_checkpoints(killed)] == [f"deblur-{STEPS - 1}.npz", f"deblur-{STEPS}.npz"]


def _all_open(folder: Path) -> int:
    """Number of PNG outputs under `folder`; each must open completely. A SIGKILL can leave the
    temporary file of a write in flight (`.NAME.xxxx.tmp.png`, never under the output's name);
    every tool ignores such hidden files, so they are not counted."""
    n = 0
    for p in folder.rglob("*.png"):
        if not p.name.startswith("."):
            read_image(p)
            n += 1
    return n


def test_preprocess_killed_mid_run_redoes_only_unfinished_frames(tmp_path, vd001):
    frames = tmp_path / "clip"
    shutil.copytree(vd001 / "sharp", frames)
    cmd = [sys.executable, "-m", "preprocess", "all", "--video", str(frames), "--dataset", str(tmp_path / "ds"),
           "--out", str(tmp_path / "ts"), "--datalist", str(tmp_path / "list.txt"), "--n_avg", "3",
           "--align", "flow", "--flow", "dis"]
    blur_0 = tmp_path / "ts" / "clip" / "blur_0"
    proc = _start(cmd)
    assert _kill_when(proc, lambda: blur_0.is_dir() and len(list(blur_0.glob("*.png"))) >= 3), \
        "preprocessing finished before it could be killed"
    done_before = len(list(blur_0.glob("*.png")))
    assert done_before < 25
    r = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    frames_s = json.loads(r.stdout.split("frames:", 1)[1].splitlines()[0])[0]
    blur_s = json.loads(r.stdout.split("blur:", 1)[1].splitlines()[0])
    align_s = json.loads(r.stdout.split("align:", 1)[1].splitlines()[0])
    assert frames_s["written"] == 0 and frames_s["skipped"] == 25
    assert blur_s["written"] == 0 and blur_s["skipped"] == 25
    assert align_s["skipped"] >= done_before - 1 and align_s["written"] == 25 - align_s["skipped"]
    assert _all_open(tmp_path / "ds") == 50 and _all_open(tmp_path / "ts") == 125
    assert len((tmp_path / "list.txt").read_text().splitlines()) == 25


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    from faceReconstruction.bfm import write_standin_bfm

    return write_standin_bfm(tmp_path_factory.mktemp("bfm") / "BFM_model_front.mat", n_vertices=1500)


def test_demo_and_render_killed_mid_run_resume(tmp_path, vd001, standin):
    ds = tmp_path / "dataset"
    for clip in ("a", "b"):
        for sub in ("blurry", "face"):
            (ds / clip / sub).mkdir(parents=True)
            for f in sorted((vd001 / sub).iterdir())[:6]:
                shutil.copy(f, ds / clip / sub / f.name)
    ts = tmp_path / "ts"
    demo = [sys.executable, "demo.py", "--input_path", str(ds), "--output_path", str(ts), "--bfm", str(standin),
            "--landmarks", "5"]
    # demo.py writes a clip's coefficients together once the clip is fitted: kill it after the first clip
    proc = _start(demo)
    assert _kill_when(proc, lambda: len(list((ts / "a" / "face").glob("*.txt"))) == 6 if (ts / "a" / "face").is_dir()
                      else False), "demo.py finished before it could be killed"
    stamps = {p: p.stat().st_mtime_ns for p in (ts / "a" / "face").glob("*.txt")}
    r = subprocess.run(demo, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "a: all 6 coefficient files exist, skipped" in r.stderr
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    for clip in ("a", "b"):
        assert len([read_coeff(p) for p in (ts / clip / "face").glob("*.txt")]) == 6

    render = [sys.executable, "demo_render.py", "--coeff_path", str(ts), "--data_path", str(ds), "--bfm", str(standin)]
    proc = _start(render)
    assert _kill_when(proc, lambda: len(list(ts.glob("*/render/*.png"))) >= 3), \
        "demo_render.py finished before it could be killed"
    done = {p for p in ts.glob("*/render/*.png") if not p.name.startswith(".")}
    r = subprocess.run(render, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    m = re.search(r"renders written: (\d+) frames", r.stderr)
    assert m and int(m.group(1)) == 12 - len(done)  # only the frames without a render
    # 12 restored renders in training_set/<clip>/render/, 12 224x224 renders in
    # dataset/<clip>/face_render/ (where the original writes them)
    assert _all_open(ts) == 12
    assert sum(_all_open(d) for d in ds.glob("*/face_render")) == 12
