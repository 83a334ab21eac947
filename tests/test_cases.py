"""The situations of ../shared/cases/ (see its README): each input read from there, each
behaviour its README asks for, through the real commands.

The deblurring network is a tiny randomly initialised one (channels 4, written here): these
tests are about what happens to the video (audio, timing, size, frames without a face, errors),
not about deblurring quality. `--align none` keeps them short; the face-none checkpoint skips
the 3D-prior stages, the face-leaves-frame test runs them all.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common import videoio
from common.metrics import psnr
from tests.helpers import ROOT, SHARED
from common.fileio import read_image
from preprocess.video import iter_video

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def case(*parts) -> Path:
    p = SHARED.joinpath("cases", *parts)
    if not p.exists():
        pytest.skip(f"shared cases not available: {p} (tests that need ../shared skip without it)")
    return p


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    from deblur.checkpoint import save_native
    from deblur.network import build_generator

    out = {}
    for face in ("none", "both"):
        out[face] = save_native(tmp_path_factory.mktemp(f"ck_{face}") / "deblur-0.npz",
                                build_generator(face, 1, "color", 5, channels=4), 0)
    return out


def deblur_video(src, out, ckpt, *extra, timeout=900):
    cmd = [sys.executable, "deblur_video.py", str(src), str(out), "--checkpoint", str(ckpt), "--align", "none",
           *map(str, extra)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=timeout)


def decode(path) -> list[np.ndarray]:
    """Every frame of a video as ffmpeg decodes it, one per stored frame (no rate conversion)."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path), output_params=["-fps_mode", "passthrough"])
    w, h = next(reader)["size"]
    return [np.frombuffer(b, np.uint8).reshape(h, w, 3) for b in reader]


def audio_packets(path) -> list[str]:
    """The audio stream's packets (timestamps, sizes, checksums) as ffmpeg's framecrc lists them."""
    r = subprocess.run([videoio.ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:a", "-c", "copy",
                        "-f", "framecrc", "-"], capture_output=True, text=True, check=True)
    return [ln for ln in r.stdout.splitlines() if not ln.startswith("#")]


def abs_times(info: videoio.VideoInfo) -> list[Fraction]:
    return [p * info.time_base for p in info.pts]


# ----------------------------------------------------------------------------- audio-track
def test_audio_track_is_kept_in_sync_and_reported(ckpts, tmp_path):
    src = case("audio-track", "with_audio.mp4")
    out = tmp_path / "out.mp4"
    r = deblur_video(src, out, ckpts["none"])
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "audio: 1 stream(s) copied unchanged, in sync: aac" in r.stdout
    # the very same audio packets at the very same times, and the video frames at theirs
    assert audio_packets(out) == audio_packets(src)
    s, o = videoio.probe_video(src), videoio.probe_video(out)
    assert abs_times(o) == abs_times(s) and o.start == s.start
    # --no_audio: only the encode stage runs again, and the summary says what was dropped
    r = deblur_video(src, out, ckpts["none"], "--no_audio")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("skipped (done in an earlier run)") == 5
    assert "audio streams were DROPPED (--no_audio)" in r.stdout.replace("stream(s)", "streams")
    assert videoio.probe_video(out).audio == []


# ----------------------------------------------------------------------------- odd-frame-size
def test_odd_frame_size_is_kept_exactly(ckpts, tmp_path):
    src = case("odd-frame-size", "odd_271x311.mp4")
    out, work = tmp_path / "out.mp4", tmp_path / "work"
    # a small face window, so the last row and column are the input's picture (not the test
    # network's noise); six frames are enough for the size
    r = deblur_video(src, out, ckpts["none"], "--max_frames", "6", "--work_dir", work, "--margin", "1",
                     "--context", "0", "--multiple", "16")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    o = videoio.probe_video(out)
    assert (o.width, o.height, o.frames) == (271, 311, 6)
    assert o.pix_fmt == "yuv444p"  # 4:2:0 cannot hold an odd size; the summary says which was used
    assert "6 frames, 271x311 (the input's size), H.264 4:4:4" in r.stdout
    boxes = np.loadtxt(work / "boxes.txt", usecols=(1, 2, 3, 4), dtype=int, ndmin=2)
    assert np.all(boxes[:, 2] < 271) and np.all(boxes[:, 3] < 311)
    # no black (or any padded) row/column: the last ones are the input's, up to H.264 at CRF 18
    for got, want in zip(decode(out), decode(src)):
        assert got.shape == want.shape == (311, 271, 3)
        assert np.abs(got[-1].astype(int) - want[-1]).mean() < 6, "last row"
        assert np.abs(got[:, -1].astype(int) - want[:, -1]).mean() < 6, "last column"
        assert psnr(got[:boxes[0, 1]], want[:boxes[0, 1]]) > 35  # above the face window


def test_anamorphic_pixels_are_kept(ckpts, tmp_path):
    """Non-square pixels (a phone or DV clip with a sample aspect ratio): the output keeps the
    input's ratio, so players show it with the input's shape, and the summary says so."""
    src = tmp_path / "anamorphic.mp4"
    subprocess.run([videoio.ffmpeg_exe(), "-v", "error", "-i", str(case("audio-track", "with_audio.mp4")),
                    "-frames:v", "6", "-vf", "setsar=4/3", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-an",
                    str(src)], check=True)
    out = tmp_path / "out.mp4"
    r = deblur_video(src, out, ckpts["none"])
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    o = videoio.probe_video(out)
    assert (o.width, o.height, o.sar) == (224, 224, Fraction(4, 3))
    assert "224x224 (the input's size), pixel aspect ratio 4:3 (the input's: shown 299x224)" in r.stdout


# ----------------------------------------------------------------------------- variable-frame-rate
def test_variable_frame_rate_keeps_every_timestamp(ckpts, tmp_path):
    src = case("variable-frame-rate", "vfr.mp4")
    out = tmp_path / "out.mp4"
    r = deblur_video(src, out, ckpts["none"], "--max_frames", "14")  # 10 frames 40 ms apart, then 120 ms
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    s, o = videoio.probe_video(src), videoio.probe_video(out)
    assert s.variable_rate and o.variable_rate and o.frames == 14
    assert abs_times(o) == abs_times(s)[:14]  # exact, frame by frame
    assert abs_times(o)[10:12] == [Fraction(400, 1000), Fraction(520, 1000)]
    assert "every frame keeps its input timestamp (variable frame rate)" in r.stdout


# ----------------------------------------------------------------------------- 16bit-png-frames
def test_16bit_png_frames_decode_to_the_right_picture(tmp_path):
    frames = case("16bit-png-frames", "frames")
    files = sorted(frames.glob("*.png"))
    raw = np.asarray(Image.open(files[0]))
    assert raw.dtype == np.uint16  # the input really is 16-bit
    img = read_image(files[0])
    np.testing.assert_array_equal(img, np.dstack([(raw >> 8).astype(np.uint8)] * 3))
    assert 40 < img.mean() < 200 and img.std() > 20  # a picture, not a white frame
    # the two stages that failed on it ("no face detected"): frames, then five points
    env = dict(ENV, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "preprocess", "frames", "--video", str(frames), "--dataset",
                        str(tmp_path / "ds"), "--name", "cam", "--subdir", "blurry"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = sorted((tmp_path / "ds" / "cam" / "blurry").glob("*.png"))
    assert len(out) == len(files)
    np.testing.assert_array_equal(read_image(out[-1]), read_image(files[-1]))
    r = subprocess.run([sys.executable, "-m", "facePointDetection", "--dataset", str(tmp_path / "ds")], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(r.stdout.split("landmarks:", 1)[1].splitlines()[0])["cam"]
    assert summary["frames"] == len(files) and summary["no_face"] == 0


# ----------------------------------------------------------------------------- face-leaves-frame
def test_face_leaves_frame_passes_through_untouched_and_resumes(ckpts, tmp_path):
    """Frames 1-3 and 10-13 are plain grey: no landmarks, no 3D face, no network there; they come
    out as they went in and the console lists them. The run is also killed mid-way (after the
    region stage) and resumed: finished stages are not redone, every output opens."""
    src = case("face-leaves-frame", "face_gone.mp4")
    out, work = tmp_path / "out.mp4", tmp_path / "work"
    cmd = [sys.executable, "deblur_video.py", str(src), str(out), "--checkpoint", str(ckpts["both"]),
           "--align", "none", "--work_dir", str(work)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV,
                            start_new_session=True)
    t0 = time.time()
    while time.time() - t0 < 600 and proc.poll() is None:
        try:
            if "key" in json.loads((work / "state.json").read_text()).get("region", {}):
                break
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists(), "the run finished before it could be interrupted"
    # a kill between an atomic write and its rename leaves a temp file; plant one so the
    # clean-up on resume is checked whatever moment the kill hit
    (work / "full" / ".00001.deadbeef.tmp.png").parent.mkdir(parents=True, exist_ok=True)
    (work / "full" / ".00001.deadbeef.tmp.png").write_bytes(b"partial")

    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for k, stage in enumerate(("landmarks", "region"), 1):
        assert f"[{k}/6] {stage}" in r.stdout and "skipped" in r.stdout.split(f"[{k}/6]")[1].splitlines()[0]
    assert "skipped" not in r.stdout.split("[3/6]")[1].splitlines()[0]
    assert "frames without a face, passed through unchanged: 1-3, 10-13 (7 of 20)" in r.stdout

    no_face = [0, 1, 2, 9, 10, 11, 12]
    full = [f for _, f in iter_video(src)]  # the decoder the command uses
    final = sorted((work / "final").glob("*.png"))
    assert len(full) == len(final) == 20
    for k in range(20):
        same = np.array_equal(read_image(final[k]), full[k])
        assert same == (k in no_face), k  # untouched without a face, deblurred with one
        prior = read_image(work / "final_render" / final[k].name)
        assert (prior.max() == 0) == (k in no_face), k  # no face rendered where there is none
    # nothing was reconstructed for the frames without a face
    coeffs = sorted((work / "training_set").glob("*/face/*.txt"))
    assert len(coeffs) == 13 and sorted(p.parent.parent.name for p in coeffs)[0] == "face_gone_00004-00009"
    # the video: input frames where there was no face (up to H.264 at CRF 18)
    got, want = decode(out), decode(src)
    assert len(got) == 20
    for k in no_face:
        assert psnr(got[k], want[k]) > 38, k
    # every file of the interrupted + resumed run opens
    for p in work.rglob("*.png"):
        read_image(p)
    assert not list(work.rglob(".*.tmp*"))


# ----------------------------------------------------------------------------- mixed-frame-sizes
def test_mixed_frame_sizes_one_clear_error(ckpts, tmp_path):
    frames = case("mixed-frame-sizes", "frames")
    first_odd = next(p for p in sorted(frames.glob("*.png")) if Image.open(p).size != (224, 224))
    r = deblur_video(frames, tmp_path / "out.mp4", ckpts["none"], timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    line = r.stderr.strip()
    assert line.count("\n") == 0 and line.startswith("error: ")
    assert str(first_odd) in line and "200x200" in line and "224x224" in line
    assert not (tmp_path / "out.mp4").exists() and not (tmp_path / "out_work").exists()
    env = dict(ENV, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "preprocess", "frames", "--video", str(frames), "--dataset",
                        str(tmp_path / "ds")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and str(first_odd) in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "ds").exists()
