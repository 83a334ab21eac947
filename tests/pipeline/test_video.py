"""deblur_video.py / pipeline/video.py: H.264 I/O, stage bookkeeping, the whole command with resume.

The end-to-end test uses a short 720p clip (12 frames: a real 224x224 talking-head clip from
../shared/data/face_videos scaled to 360x360 and placed on a 1280x720 canvas, so the face covers
~14% of the frame) and a tiny randomly initialised native checkpoint (channels 4) written in the
test: it checks the plumbing (frame count, size, rate, codec, blending, resume), not quality.
The 10-second 720p measurement is bench/bench_face_region.py.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers import ROOT
from common import videoio
from pipeline import video as dv
from common.fileio import read_image
from preprocess.video import iter_video

CLIP = "Talking-Face_PC-AVS__misc_Audio_Source_00015.mp4"
N_FRAMES = 12
FPS = 25.0


def test_write_video_probe_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    frames = [np.full((37, 50, 3), 20 * k, np.uint8) + rng.integers(0, 5, (37, 50, 3), dtype=np.uint8)
              for k in range(6)]
    out = tmp_path / "v.mp4"
    assert videoio.write_video(out, iter(frames), 12.5) == 6
    info = videoio.probe(out)
    # 37 rows: odd, so 4:4:4 keeps the exact size (no padded black row)
    assert info["frames"] == 6 and info["size"] == (50, 37) and info["fps"] == pytest.approx(12.5)
    assert info["codec"].startswith("h264") and info["pix_fmt"] == "yuv444p"
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]  # no temporary left behind
    with pytest.raises(ValueError):
        videoio.write_video(tmp_path / "bad.mp4", [frames[0], frames[0][:10]], 10)
    assert not (tmp_path / "bad.mp4").exists()


def test_state_keys_chain(tmp_path):
    s = dv.State(tmp_path)
    k1 = s.key("a", {"x": 1})
    s.mark("a", k1, 1.0)
    s.prev_key = k1
    k2 = s.key("b", {})
    s2 = dv.State(tmp_path)
    assert s2.is_done("a", k1) and not s2.is_done("b", k2)
    s2.prev_key = s2.key("a", {"x": 2})  # upstream settings changed -> downstream key changes
    assert s2.key("b", {}) != k2
    s2.start("b", "other")
    assert s2.stale("b", k2) and not dv.State(tmp_path).stale("c", "x")


def test_clip_name_and_errors(tmp_path):
    (tmp_path / "my clip" / "blurry").mkdir(parents=True)
    assert dv.clip_name(tmp_path / "my clip" / "blurry") == "my_clip"
    out = subprocess.run([sys.executable, "deblur_video.py", str(tmp_path / "missing.mp4"), str(tmp_path / "o.mp4"),
                          "--checkpoint", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "missing.mp4" in out.stderr and "Traceback" not in out.stderr
    (tmp_path / "x.mp4").write_bytes(b"not a video")
    out = subprocess.run([sys.executable, "deblur_video.py", str(tmp_path / "x.mp4"), str(tmp_path / "o.mp4"),
                          "--checkpoint", str(tmp_path / "nockpt")], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and "nockpt" in out.stderr


def make_720p_clip(face_videos: Path, out: Path, n: int = N_FRAMES) -> np.ndarray:
    """Write the test clip; returns the (x0, y0, side) of the pasted face video."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(face_videos / CLIP))
    meta = next(reader)
    w, h = meta["size"]
    frames = []
    for k, buf in enumerate(reader):
        if k >= n:
            break
        small = np.frombuffer(buf, np.uint8).reshape(h, w, 3)
        canvas = np.full((720, 1280, 3), (90, 110, 100), np.uint8)
        canvas[180:540, 700:1060] = cv2.resize(small, (360, 360), interpolation=cv2.INTER_CUBIC)
        frames.append(canvas)
    reader.close()
    videoio.write_video(out, frames, FPS)
    return np.array([700, 180, 360])


def tiny_checkpoint(path: Path) -> Path:
    """Randomly initialised native checkpoint, channels 4 (fast on CPU; output quality irrelevant here)."""
    code = ("import sys; from deblur.network import build_generator; from deblur.checkpoint import save_native;"
            "save_native(sys.argv[1], build_generator('both', 1, 'color', 5, channels=4), 0)")
    subprocess.run([sys.executable, "-c", code, str(path / "deblur-0.npz")], cwd=ROOT, check=True, timeout=300,
                   capture_output=True)
    return path


@pytest.mark.slow
def test_deblur_video_end_to_end_and_resume(face_videos, tmp_path):
    for tool in ("demo.py", "demo_render.py", "run_model.py"):
        if not (ROOT / tool).is_file():
            pytest.fail(f"{tool} missing: deblur_video.py needs every stage tool")
    src = tmp_path / "clip720.mp4"
    make_720p_clip(face_videos, src)
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    out, work, frames_out = tmp_path / "out.mp4", tmp_path / "work", tmp_path / "frames"
    cmd = [sys.executable, "deblur_video.py", str(src), str(out), "--checkpoint", str(ckpt), "--work_dir", str(work),
           "--frames_out", str(frames_out), "--align", "flow", "--flow", "dis"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")

    # first run, killed once the landmark stage has finished (a real interruption)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    state = work / "state.json"
    t0 = time.time()
    while time.time() - t0 < 600:
        if state.is_file():
            try:
                if "key" in json.loads(state.read_text()).get("landmarks", {}):
                    break
            except json.JSONDecodeError:
                pass
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists(), "the first run finished before it could be interrupted"
    done = json.loads(state.read_text())
    assert "key" in done["landmarks"]

    # re-run: finished stages are skipped, the rest runs, the video appears
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    log = res.stdout
    assert "[1/6] landmarks" in log and "skipped" in log.split("[1/6]")[1].splitlines()[0]
    assert "[5/6] deblur" in log and "skipped" not in log.split("[5/6]")[1].splitlines()[0]
    info = videoio.probe(out)
    assert info["codec"].startswith("h264") and info["frames"] == N_FRAMES
    assert info["size"] == (1280, 720) and info["fps"] == pytest.approx(FPS)

    # face-region mode: the window is a multiple of 32, well under a quarter of the frame, and the
    # picture outside it is the input frame untouched
    boxes = np.loadtxt(work / "boxes.txt", usecols=(1, 2, 3, 4), dtype=int)
    side = boxes[:, 2:] - boxes[:, :2]
    assert np.all(side % 32 == 0) and np.all(side == side[0]) and side[0].prod() < 0.25 * 1280 * 720
    names = sorted(p.name for p in frames_out.iterdir() if p.suffix == ".png")
    assert names == [f"{k:05d}.png" for k in range(1, N_FRAMES + 1)]
    # what made the frames travels with them (evaluate.py labels its report with it)
    record = json.loads((frames_out / "model.json").read_text())
    assert record["checkpoint"] == str((ckpt / "deblur-0.npz").resolve()) and record["step"] == 0
    inputs = [f for _, f in iter_video(src)]  # the decoder the command uses
    for k in (0, N_FRAMES - 1):
        got = read_image(frames_out / names[k])
        src_frame = inputs[k]
        x0, y0, x1, y1 = boxes[k]
        outside = np.ones(got.shape[:2], bool)
        outside[y0:y1, x0:x1] = False
        np.testing.assert_array_equal(got[outside], src_frame[outside])
        # the face window lies over the pasted face video
        assert 700 - 60 <= (x0 + x1) / 2 <= 1060 + 60 and 180 - 60 <= (y0 + y1) / 2 <= 540 + 60

    # a third run does nothing but report every stage as done
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0 and again.stdout.count("skipped (done in an earlier run)") == 6
    assert "is up to date: every stage was done in an earlier run" in again.stdout
    assert "wrote " not in again.stdout  # nothing was written this time
