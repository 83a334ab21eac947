"""Benchmark: the video command of this version against commit fbc6d9d (issue 11, "Done when").

Builds a 10-second 720p clip (the first `--frames` frames, 300 at 30 fps, of
../shared/data/face_videos/LivePortrait__assets_examples_driving_d13.mp4, 720x1280, re-encoded
H.264 CRF 18 with the bundled ffmpeg of imageio-ffmpeg) and a clip `--loops` (4) times as long
(the same frames looped), checks out commit fbc6d9d as a temporary git worktree (removed at the
end), and runs `deblur_video.py` of both versions on the 10-second clip with the same checkpoint,
one after the other, then this version on the long clip. Reported, as JSON
(bench/results/video_speed.json):

  per run: wall time of the whole command (process start to exit, Python and TensorFlow start-up
  included), seconds per frame, per-stage seconds (this version: <work>/timings.json, with the
  deblur stage's decode/align/network/blend parts; fbc6d9d: the `seconds` of its state.json),
  peak resident memory of the process tree (the sum of VmRSS over the command and all its
  descendants, read from /proc every 0.1 s);
  speed-up = fbc6d9d s/frame / this version's; peak memory long clip / 10-second clip;
  fidelity: this version's default (fast) path against its reference path (`--precision fp32
  --detect_every 1 --batch 1`: landmarks detected on every frame, the network one frame at a
  time in fp32) with the shipped model, PSNR in dB inside the face box (the five-point box
  grown 1.6x, common.metrics.inner_face_box, from the reference run's landmarks) per frame and
  over all frames (mean squared error pooled), and the PSNR difference between the two outputs
  measured against the blurry input in that box (both outputs compared with the same frames).

The checkpoint: fbc6d9d predates `--residual` and stores its settings in its own way, so it cannot
load the shipped model. Both versions load a randomly initialised native checkpoint written by
fbc6d9d's own code with the shipped model's architecture (--face none, 1 level, colour,
5 frames, 16 channels): its speed is the shipped model's (the residual connection is one
addition); its outputs mean nothing, so the fidelity figures use the shipped model.

    python bench/bench_video.py [--frames 300] [--loops 4] [--scale 1] [--channels 16] [--skip_old]
        [--skip_long] [--skip_fidelity]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from common.cli import ArgumentParser

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "face_videos" / "LivePortrait__assets_examples_driving_d13.mp4"
OLD_COMMIT = "fbc6d9d"
ARCH = {"face": "none", "levels": 1, "model": "color", "n_frames": 5, "channels": 16}


def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def make_clips(tmp: Path, frames: int, loops: int, scale: float = 1.0) -> tuple[Path, Path]:
    short, long = tmp / "clip_short.mp4", tmp / "clip_long.mp4"
    # scale: both sides times `scale`, rounded to even sizes (H.264 4:2:0 needs them)
    size = [] if scale == 1.0 else ["-vf", f"scale=trunc(iw*{scale}/2)*2:trunc(ih*{scale}/2)*2"]
    subprocess.run([ffmpeg(), "-v", "error", "-y", "-i", str(SOURCE), "-frames:v", str(frames), "-an", *size,
                    "-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p", str(short)], check=True)
    subprocess.run([ffmpeg(), "-v", "error", "-y", "-stream_loop", str(loops - 1), "-i", str(short), "-c", "copy",
                    str(long)], check=True)
    return short, long


def tree_rss_kib(pid: int) -> int:
    """Sum of VmRSS (KiB) of `pid` and all its descendants (Linux /proc)."""
    children: dict = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def run_command(cmd: list[str], cwd: Path, env: dict, log: Path) -> dict:
    """Run and time one command; peak tree RSS polled every 0.1 s."""
    peak = [0]
    with open(log, "w") as f:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT)

        def poll():
            while proc.poll() is None:
                peak[0] = max(peak[0], tree_rss_kib(proc.pid))
                time.sleep(0.1)

        th = threading.Thread(target=poll, daemon=True)
        th.start()
        rc = proc.wait()
        wall = time.perf_counter() - t0
        th.join()
    if rc != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({rc}); see {log}:\n{log.read_text()[-3000:]}")
    return {"wall_s": round(wall, 2), "peak_rss_mib": round(peak[0] / 1024, 1), "log": str(log)}


def stage_times(work: Path) -> dict:
    t = work / "timings.json"
    if t.is_file():  # this version
        d = json.loads(t.read_text())
        return {"stages": {k: round(v, 2) for k, v in d["stages"].items()},
                "deblur_parts": {k: round(v, 2) for k, v in d["deblur_parts"].items()}}
    state = json.loads((work / "state.json").read_text())  # fbc6d9d
    return {"stages": {k: v.get("seconds") for k, v in state.items()}}


def video_run(root: Path, clip: Path, ckpt: Path, tmp: Path, tag: str, extra=()) -> dict:
    out, work = tmp / f"{tag}.mp4", tmp / f"{tag}_work"
    env = dict(os.environ, PYTHONPATH=str(root), TF_CPP_MIN_LOG_LEVEL="2")
    cmd = [sys.executable, "deblur_video.py", str(clip), str(out), "--checkpoint", str(ckpt), "--work_dir",
           str(work), *extra]
    print(f"[{tag}] {' '.join(cmd[1:])}  (in {root})", flush=True)
    r = run_command(cmd, root, env, tmp / f"{tag}.log")
    n = json.loads((work / "video.json").read_text())["frames"]
    window = [ln.strip() for ln in Path(r["log"]).read_text().splitlines() if "face window" in ln]
    r.update(frames=n, s_per_frame=round(r["wall_s"] / n, 4), **stage_times(work), command=" ".join(cmd[1:]),
             output=str(out), window=window[:1])
    print(f"[{tag}] {r['wall_s']} s, {r['s_per_frame']} s/frame, peak {r['peak_rss_mib']} MiB", flush=True)
    return r


def old_checkpoint(old_root: Path, dst: Path, arch: dict = ARCH) -> Path:
    code = ("import sys; from deblur.network import build_generator; from deblur.checkpoint import save_native; "
            f"c = {arch!r}; save_native(sys.argv[1], build_generator(c['face'], c['levels'], c['model'], "
            "c['n_frames'], channels=c['channels']), c, 0)")
    dst.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", code, str(dst / "deblur-0.npz")], cwd=old_root, check=True,
                   env=dict(os.environ, PYTHONPATH=str(old_root), TF_CPP_MIN_LOG_LEVEL="3"))
    return dst


def decode(path: Path) -> list[np.ndarray]:
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path), output_params=["-fps_mode", "passthrough"])
    w, h = next(reader)["size"]
    return [np.frombuffer(b, np.uint8).reshape(h, w, 3) for b in reader]


def fidelity(fast: Path, ref: Path, ref_work: Path, clip: Path) -> dict:
    """PSNR of the fast output against the reference output inside the face box, per frame and pooled."""
    from common.metrics import inner_face_box

    pts = np.load(ref_work / "landmarks.npy")
    a, b, src = decode(fast), decode(ref), decode(clip)
    per, se, cnt, in_fast, in_ref = [], 0.0, 0, 0.0, 0.0
    for k in range(min(len(a), len(b))):
        if not np.isfinite(pts[k]).all():
            continue
        x0, y0, x1, y1 = inner_face_box(pts[k])
        x0, y0 = max(x0, 0), max(y0, 0)
        fa, fb, fs = (f[y0:y1, x0:x1].astype(np.float64) for f in (a[k], b[k], src[k]))
        mse = np.mean((fa - fb) ** 2)
        per.append(99.0 if mse == 0 else 10 * np.log10(255 ** 2 / mse))
        se, cnt = se + ((fa - fb) ** 2).sum(), cnt + fa.size
        in_fast += ((fa - fs) ** 2).sum()
        in_ref += ((fb - fs) ** 2).sum()
    pooled = 99.0 if se == 0 else 10 * np.log10(255 ** 2 / (se / cnt))
    p_fast, p_ref = (10 * np.log10(255 ** 2 / (x / cnt)) for x in (in_fast, in_ref))
    return {"frames": len(per), "psnr_fast_vs_reference_db": round(float(pooled), 3),
            "psnr_fast_vs_reference_min_frame_db": round(float(min(per)), 3),
            "psnr_vs_input_fast_db": round(float(p_fast), 3), "psnr_vs_input_reference_db": round(float(p_ref), 3),
            "psnr_vs_input_difference_db": round(float(p_fast - p_ref), 3)}


def save(res: dict, path) -> None:
    """Write the results so far (after every run: an interrupted benchmark keeps what it measured)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main(argv=None) -> int:
    ap = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=300, help="frames of the short clip (default 300 = 10 s)")
    ap.add_argument("--loops", type=int, default=4, help="the long clip is the short one this many times (default 4)")
    ap.add_argument("--skip_old", action="store_true", help="do not run fbc6d9d")
    ap.add_argument("--skip_long", action="store_true", help="do not run the long clip (no memory comparison)")
    ap.add_argument("--skip_fidelity", action="store_true", help="do not run the fast-vs-reference comparison")
    ap.add_argument("--channels", type=int, default=ARCH["channels"],
                    help="width of the random-weight network both versions run (default 16, the shipped "
                         "model's; a narrower one measures the pipeline around the network, e.g. memory "
                         "against clip length, in less time)")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="scale the clips' frames by this factor (default 1: 720x1280); e.g. 0.5 measures "
                         "memory against clip length on 360x640 frames in a quarter of the network time")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "video_speed.json"))
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (outputs, logs)")
    a = ap.parse_args(argv)
    if not SOURCE.is_file():
        print(f"error: {SOURCE}: source clip not found (../shared/data/face_videos)", file=sys.stderr)
        return 2
    # a terminated benchmark still removes its git worktree (the finally below)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    arch = dict(ARCH, channels=a.channels)
    tmp = Path(tempfile.mkdtemp(prefix="bench_video_"))
    old_root = tmp / "old"
    res = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                       "load_average_before": load_average()},
           "source": str(SOURCE), "frames": a.frames, "loops": a.loops, "scale": a.scale,
           "checkpoint": ("randomly initialised native checkpoint written by fbc6d9d's code, architecture "
                          f"{arch} ({'the shipped model' if arch == ARCH else 'not the shipped model'}'s "
                          "architecture; fbc6d9d cannot load the shipped checkpoint, which needs --residual); "
                          "speed only"), "runs": {}}
    try:
        short, long = make_clips(tmp, a.frames, a.loops, a.scale)
        subprocess.run(["git", "worktree", "add", "--detach", str(old_root), OLD_COMMIT], cwd=ROOT, check=True,
                       capture_output=True)
        ckpt = old_checkpoint(old_root, tmp / "ckpt", arch)
        runs = res["runs"]
        runs["new_short"] = video_run(ROOT, short, ckpt, tmp, "new_short")
        save(res, a.out)
        if not a.skip_old:
            runs["old_short"] = video_run(old_root, short, ckpt, tmp, "old_short")
            res["speedup_whole_command"] = round(runs["old_short"]["s_per_frame"] / runs["new_short"]["s_per_frame"], 2)
            save(res, a.out)
        if not a.skip_long:
            runs["new_long"] = video_run(ROOT, long, ckpt, tmp, "new_long")
            res["peak_rss_long_over_short"] = round(runs["new_long"]["peak_rss_mib"] / runs["new_short"]["peak_rss_mib"], 3)
            save(res, a.out)
        if not a.skip_fidelity:
            # this checkout's shipped model (an import of deblur.checkpoint could resolve to another
            # checkout through the editable install)
            shipped = ROOT / "checkpoints" / "facedeblur.npz"
            fast = video_run(ROOT, short, shipped, tmp, "shipped_fast")
            ref = video_run(ROOT, short, shipped, tmp, "shipped_reference",
                            ["--precision", "fp32", "--detect_every", "1", "--batch", "1"])
            runs["shipped_fast"], runs["shipped_reference"] = fast, ref
            res["fidelity"] = {"model": f"shipped {shipped}",
                               **fidelity(Path(fast["output"]), Path(ref["output"]), tmp / "shipped_reference_work",
                                          short)}
        res["machine"]["load_average_after"] = load_average()
    finally:
        if old_root.exists():
            subprocess.run(["git", "worktree", "remove", "--force", str(old_root)], cwd=ROOT, capture_output=True)
        subprocess.run(["git", "worktree", "prune"], cwd=ROOT, capture_output=True)
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    save(res, a.out)
    print(json.dumps({k: v for k, v in res.items() if k != "runs"}, indent=1))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
