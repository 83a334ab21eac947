"""The video command in one process (issue 11, part 4/5): same frames as the stage tools, chunked
resume, bounded frame buffer, PNGs only when asked, fast defaults.

Small on purpose: 10 frames of a real 224x224 talking-head clip (../shared/data/face_videos) and a
randomly initialised `--face none` network with 4 channels, written in the test (it checks the
plumbing, not the quality). The runs are in this process (`pipeline.video.deblur_video`), so the
test can count the network calls.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common import videoio
from common.fileio import read_image
from pipeline import face_region as fr
from pipeline import video as dv
from tests.helpers import ROOT, script_env

CLIP = "Talking-Face_PC-AVS__misc_Audio_Source_00015.mp4"
N = 10


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from tests.helpers import shared_path

    import imageio_ffmpeg

    src = shared_path("face_videos", CLIP)
    reader = imageio_ffmpeg.read_frames(str(src))
    w, h = next(reader)["size"]
    frames = [np.frombuffer(b, np.uint8).reshape(h, w, 3) for _, b in zip(range(N), reader)]
    reader.close()
    out = tmp_path_factory.mktemp("clip") / "talk.mp4"
    videoio.write_video(out, frames, 25.0)
    return out


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from deblur.checkpoint import save_native
    from deblur.network import build_generator

    folder = tmp_path_factory.mktemp("ck")
    save_native(folder / "deblur-0.npz", build_generator("none", 1, "color", 5, channels=4), 0)
    return folder


def _options(clip, out, ckpt, **kw):
    return dv.Options(input=clip, output=out, checkpoint=ckpt, quiet=True, align="flow", flow="dis",
                      margin=1.5, context=16, multiple=32, **kw)


@pytest.fixture(scope="module")
def kept(clip, ckpt, tmp_path_factory):
    """One run with --keep_intermediates and --frames_out, chunks of 4, batches of 3."""
    tmp = tmp_path_factory.mktemp("kept")
    # fp32 as the stage tools below are run with (auto is bf16 on a CPU with bf16 units)
    opt = _options(clip, tmp / "out.mp4", ckpt, work_dir=tmp / "work", frames_out=tmp / "frames",
                   keep_intermediates=True, chunk=4, batch=3, precision="fp32")
    return opt, dv.deblur_video(opt)


def test_in_process_frames_equal_the_stage_tools(kept, ckpt, tmp_path):
    """The stage tools (python -m preprocess align, run_model.py --phase test) on the face windows
    the in-process run cut give the same neighbours and, within one grey level, the same frames.

    Tolerance: the neighbours must be identical (the same function on the same pixels). The network
    runs in batches of 3 in process and one frame at a time in run_model.py; oneDNN's fp32
    convolutions may sum in another order for another batch size, a difference of ~1e-6 that can
    move a value across a rounding boundary: at most 1 of 255, on a small fraction of the pixels.
    """
    opt, res = kept
    work = opt.work_dir
    env = script_env(TF_CPP_MIN_LOG_LEVEL="3")
    ts = tmp_path / "training_set"
    r = subprocess.run([sys.executable, "-m", "preprocess", "align", "--dataset", str(work / "dataset"), "--out",
                        str(ts), "--datalist", "", "--align", "flow", "--flow", "dis"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    seg = dv.clip_name(opt.input)
    names = sorted(p.name for p in (work / "dataset" / seg / "blurry").glob("*.png"))
    assert len(names) == N
    for o in (-2, -1, 0, 1, 2):
        for n in names:
            np.testing.assert_array_equal(read_image(ts / seg / f"blur_{o}" / n),
                                          read_image(work / "training_set" / seg / f"blur_{o}" / n))
    r = subprocess.run([sys.executable, "run_model.py", "--phase", "test", "--input_path", str(ts), "--output_path",
                        str(tmp_path / "result"), "--checkpoint", str(ckpt), "--precision", "fp32"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    from preprocess.video import iter_video

    boxes = dv.Pipeline(opt)._boxes()
    inputs = [f for _, f in iter_video(opt.input)]
    for k, n in enumerate(names):
        ref = read_image(tmp_path / "result" / seg / n)
        got = read_image(work / "result" / seg / n)
        diff = np.abs(ref.astype(int) - got)
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (n, diff.max(), (diff > 0).mean())
        # the window is the input frame's crop; the final frame is the result pasted back into it
        np.testing.assert_array_equal(read_image(work / "dataset" / seg / "blurry" / n), fr.crop(inputs[k], boxes[k]))
        full = read_image(opt.frames_out / n)
        assert full.shape[:2] == (224, 224)
        np.testing.assert_array_equal(fr.blend(inputs[k], got, boxes[k], opt.feather), full)


def test_frames_out_and_intermediates_only_when_asked(kept, clip, ckpt, tmp_path):
    opt, res = kept
    # the frames and the record of the network that made them (evaluate.py labels with it)
    assert sorted(p.name for p in opt.frames_out.iterdir()) == [f"{k:05d}.png" for k in range(1, N + 1)] + ["model.json"]
    assert len(list((opt.work_dir / "training_set").rglob("*.png"))) == 5 * N
    # the default: the video and the working folder's final frames, nothing else as PNG
    plain = _options(clip, tmp_path / "out.mp4", ckpt, work_dir=tmp_path / "work", chunk=4)
    dv.deblur_video(plain)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "work"]
    pngs = {p.relative_to(tmp_path / "work").parts[0] for p in (tmp_path / "work").rglob("*.png")}
    assert pngs == {"final"}
    assert videoio.probe(tmp_path / "out.mp4")["frames"] == N


def test_frame_buffer_is_bounded(kept):
    """At most a chunk plus the temporal context (2 x 2 neighbours) is held, whatever the length."""
    opt, res = kept
    assert 0 < res["max_frames_held"] <= opt.chunk + 4
    frames = ((k, np.full((2, 2, 3), k % 256, np.uint8)) for k in range(1000))
    w = dv.FrameWindow(frames, 1000, keep=8 + 4)
    for a in range(0, 1000, 8):
        w.release_before(a - 2)
        got = [w.get(k) for k in range(max(0, a - 2), min(1000, a + 10))]
        assert got[0][0, 0, 0] == max(0, a - 2) % 256
    assert w.max_held == 12
    w2 = dv.FrameWindow(((k, None) for k in range(100)), 100, keep=5)
    with pytest.raises(RuntimeError):
        [w2.get(k) for k in range(6)]  # never released: the bound is enforced, not just counted


def test_resume_after_a_kill_redoes_no_finished_chunk(clip, ckpt, tmp_path, monkeypatch):
    """Killed after two of three chunks (an exception where SIGKILL would strike: after chunk 2's
    frames and record are written); the re-run deblurs only the last chunk's frames."""
    from deblur.inference import Deblurrer

    calls = []
    real = Deblurrer.deblur_batch

    def counting(self, items, batch_size=None):
        calls.append(len(items))
        return real(self, items, batch_size)

    monkeypatch.setattr(Deblurrer, "deblur_batch", counting)
    marks = []
    real_mark = dv.Progress.mark

    def mark_then_die(self, c):
        real_mark(self, c)
        marks.append(c)
        if len(marks) == 2:
            raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(dv.Progress, "mark", mark_then_die)
    opt = _options(clip, tmp_path / "out.mp4", ckpt, work_dir=tmp_path / "work", chunk=4, batch=4)
    with pytest.raises(KeyboardInterrupt):
        dv.deblur_video(opt)
    assert sum(calls) == 8 and not opt.output.exists()
    calls.clear()
    monkeypatch.setattr(dv.Progress, "mark", real_mark)
    res = dv.deblur_video(opt)
    assert sum(calls) == N - 8  # only the third chunk's two frames
    assert res["timings"]["landmarks"] == 0.0 and res["timings"]["region"] == 0.0  # skipped stages
    assert videoio.probe(opt.output)["frames"] == N
    # a change of a deblur setting invalidates the finished chunks
    calls.clear()
    dv.deblur_video(_options(clip, tmp_path / "out.mp4", ckpt, work_dir=tmp_path / "work", chunk=4, batch=4,
                             feather=8))
    assert sum(calls) == N


def test_precision_auto_is_fp32_without_bf16_units(monkeypatch):
    from deblur.precision import cpu_has_bf16, resolve_precision

    import deblur_video

    avx2 = "flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma\n"
    assert not cpu_has_bf16(avx2) and cpu_has_bf16(avx2.replace("fma", "fma amx_bf16"))
    monkeypatch.setattr("deblur.precision.cpu_has_bf16", lambda cpuinfo=None: False)
    assert resolve_precision("auto", on_gpu=False) == "fp32"
    assert deblur_video.build_parser().parse_args(["a.mp4", "b.mp4"]).precision == "auto"
    import run_model

    assert run_model.parse_args(["--phase", "test"]).precision == "auto"
    assert run_model.parse_args(["--phase", "train"]).precision == "fp32"


def test_auto_precision_and_a_second_run_in_the_same_process(clip, ckpt, tmp_path):
    """--precision auto runs in what `resolve_precision` picks for this machine (fp32 on CPUs
    without AMX-BF16/AVX512-BF16, this project's CI; bf16 on those with them), and leaves no
    global dtype policy behind: a second run in this process builds its MTCNN in float32 again
    (a leaked mixed_bfloat16 policy broke the landmark stage of the next run)."""
    import keras

    from deblur.precision import resolve_precision

    runs = []
    for k, precision in enumerate(("auto", "bf16", "auto")):
        opt = _options(clip, tmp_path / f"out{k}.mp4", ckpt, work_dir=tmp_path / f"work{k}",
                       precision=precision, max_frames=6)
        runs.append(dv.deblur_video(opt))
        assert keras.config.dtype_policy().name == "float32"
    assert any(f"precision {resolve_precision('auto')}" in n for n in runs[0]["notes"]), runs[0]["notes"]
    assert any("precision bf16" in n for n in runs[1]["notes"])
    assert videoio.probe(tmp_path / "out2.mp4")["frames"] == 6


def test_self_ensemble_reruns_only_the_network_and_says_so(kept, ckpt, tmp_path):
    """--self_ensemble: the kept run's working folder continued with it re-runs the deblur stage
    (its settings changed) on the same face windows; the network outputs are the mirror
    self-ensemble of the stage's own inputs, and model.json says which network made them."""
    import json
    import shutil

    from deblur.checkpoint import load_generator
    from deblur.inference import Deblurrer, read_inputs

    opt, _ = kept
    work = tmp_path / "work"
    shutil.copytree(opt.work_dir, work)
    ens = _options(opt.input, tmp_path / "out.mp4", ckpt, work_dir=work, frames_out=tmp_path / "frames",
                   keep_intermediates=True, chunk=4, batch=3, precision="fp32", self_ensemble=True)
    res = dv.deblur_video(ens)
    assert res["timings"]["landmarks"] == 0.0 and res["timings"]["deblur"] > 0.0
    seg = dv.clip_name(opt.input)
    net, cfg, _ = load_generator(ckpt, verbose=False)
    d = Deblurrer(net, cfg, self_ensemble=True)
    for n in ("00001.png", "00006.png"):
        expect = d.deblur(*read_inputs(work / "training_set" / seg, n, cfg))
        got = read_image(work / "result" / seg / n)
        assert np.abs(got.astype(int) - expect).max() <= 1
        assert np.abs(got.astype(int) - read_image(opt.work_dir / "result" / seg / n)).mean() > 0.5
    rec = json.loads((tmp_path / "frames" / "model.json").read_text())
    assert rec["self_ensemble"] is True and rec["model"].endswith("mirror self-ensemble")


def test_checkpoint_inference_settings_are_the_video_defaults(kept, ckpt, tmp_path):
    """A checkpoint that stores the self-ensemble and a sharp-frame guard (run_model.py --phase
    export --self_ensemble on --sharp_guard TAU) is run with both when deblur_video is given no
    flag for them; model.json names both."""
    import json
    import shutil

    from deblur import checkpoint as ck
    from deblur.inference import Deblurrer, read_inputs

    opt, _ = kept
    work = tmp_path / "work"
    shutil.copytree(opt.work_dir, work)
    stored = ck.export_weights(ckpt, tmp_path / "guarded.npz", extra=ck.inference_meta(True, 0.5))
    run = _options(opt.input, tmp_path / "out.mp4", stored, work_dir=work, frames_out=tmp_path / "frames",
                   keep_intermediates=True, chunk=4, batch=3, precision="fp32")
    dv.deblur_video(run)
    seg = dv.clip_name(opt.input)
    net, cfg, _ = ck.load_generator(stored, verbose=False)
    d = Deblurrer(net, cfg, self_ensemble=True, sharp_guard=0.5)
    for n in ("00001.png", "00006.png"):
        expect = d.deblur(*read_inputs(work / "training_set" / seg, n, cfg))
        assert np.abs(read_image(work / "result" / seg / n).astype(int) - expect).max() <= 1
    rec = json.loads((tmp_path / "frames" / "model.json").read_text())
    assert rec["self_ensemble"] is True and rec["sharp_guard"] == 0.5
    assert rec["model"].endswith("mirror self-ensemble, sharp-frame guard 0.5")
