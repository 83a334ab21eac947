r"""Benchmark: face-region vs full-frame deblurring on a 720p clip (speed per frame, PSNR in the face box).

Not in the original repository (rwenqi/3Dfacedeblurring deblurs whole frames). Builds a 1280x720
test clip from a real talking-head clip of ../shared/data/face_videos: every frame is scaled to
`--face_side` px and pasted on a flat 720p canvas (face video area = face_side^2 / (1280*720),
14% at 360 px), the sharp frames are kept, and the blurry input averages `--n_avg` consecutive
frames in linear light (the dataset's frame-averaging blur) and is encoded as H.264 (CRF 18).
Then runs `deblur_video.py` on it in each mode and reports, as JSON:

  per mode: wall time of the whole command and of each stage (from the working folder's
  state.json), seconds per frame, and PSNR/SSIM against the sharp frames inside the face box
  (five-point box grown 1.6x, common/metrics.inner_face_box, from the blurry frame's landmarks),
  plus the output's codec, frame count, size and frame rate read back with imageio-ffmpeg;
  speed-up = full-frame s/frame / face-region s/frame; PSNR difference face - full.

Without `--checkpoint` the network is a randomly initialised native checkpoint with the original
width (channels 32, 1 level) - a STAND-IN with the real cost but no deblurring skill; its PSNR
numbers only test that the two modes agree. Pass a trained checkpoint for meaningful PSNRs.

    python bench/bench_face_region.py [--seconds 10 | --frames 24] [--modes face,full] [--checkpoint P]
        [--clip NAME] [--out bench/out/face_region.json]
    # the 10-second run needs a longer clip than the default (78 frames):
    python bench/bench_face_region.py --seconds 10 --modes face \
        --clip LivePortrait__assets_examples_driving_d10.mp4 --out bench/out/face_region_10s.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from common.cli import ArgumentParser, run_cli
from common.errors import InputError
from common.fileio import read_image, read_points, write_image
from common.metrics import inner_face_box, psnr, ssim
from common.videoio import probe, write_video

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_CLIP = "LivePortrait__assets_examples_driving_d0.mp4"


def build_clip(src: Path, work: Path, n: int, face_side: int, n_avg: int) -> tuple[Path, float]:
    """Write work/clip720.mp4 (blurry) and work/sharp/NNNNN.png; return (mp4, fps)."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(src))
    meta = next(reader)
    w, h = meta["size"]
    fps = float(meta["fps"])
    r = n_avg // 2
    sharp = []
    for k, buf in enumerate(reader):
        if k >= n + 2 * r:
            break
        small = np.frombuffer(buf, np.uint8).reshape(h, w, 3)
        canvas = np.full((720, 1280, 3), (96, 110, 104), np.uint8)
        y0, x0 = (720 - face_side) // 2, 1280 - face_side - 160
        canvas[y0:y0 + face_side, x0:x0 + face_side] = cv2.resize(small, (face_side, face_side),
                                                                   interpolation=cv2.INTER_AREA)
        sharp.append(canvas)
    reader.close()
    if len(sharp) < n + 2 * r:
        raise SystemExit(f"{src}: only {len(sharp)} frames, need {n + 2 * r}")
    lin = [(f.astype(np.float32) / 255.0) ** 2.2 for f in sharp]
    blurry = []
    for t in range(r, r + n):
        m = np.mean(lin[t - r:t + r + 1], axis=0)
        blurry.append(np.clip(np.round(255 * m ** (1 / 2.2)), 0, 255).astype(np.uint8))
        write_image(work / "sharp" / f"{t - r + 1:05d}.png", sharp[t])
    mp4 = work / "clip720.mp4"
    write_video(mp4, blurry, fps)
    return mp4, fps


def standin_checkpoint(path: Path, channels: int) -> Path:
    code = ("import sys; from deblur.network import build_generator; from deblur.checkpoint import save_native;"
            f"save_native(sys.argv[1], build_generator('both', 1, 'color', 5, channels={channels}), 0)")
    subprocess.run([sys.executable, "-c", code, str(path / "deblur-0.npz")], cwd=ROOT, check=True)
    return path


def run_mode(mode: str, mp4: Path, work: Path, ckpt: Path, n: int, extra: list[str]) -> dict:
    wd = work / f"work_{mode}"
    out = work / f"out_{mode}.mp4"
    frames_out = work / f"frames_{mode}"
    cmd = [sys.executable, "deblur_video.py", str(mp4), str(out), "--checkpoint", str(ckpt), "--work_dir", str(wd),
           "--frames_out", str(frames_out)] + (["--full_frame"] if mode == "full" else []) + extra
    print("$ " + " ".join(cmd[1:]), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True)
    wall = time.perf_counter() - t0
    state = json.loads((wd / "state.json").read_text())
    stages = {k: v.get("seconds") for k, v in state.items()}
    info = probe(out)
    return {"wall_s": round(wall, 2), "s_per_frame": round(wall / n, 4), "stages_s": stages,
            "stages_s_per_frame": {k: round(v / n, 4) for k, v in stages.items() if v is not None},
            "output": {"codec": info["codec"], "frames": info["frames"], "size": list(info["size"]),
                       "fps": info["fps"]}, "frames_dir": str(frames_out), "work": str(wd)}


def score_face_box(frames_dir: Path, sharp_dir: Path, face_dir: Path, n: int) -> dict:
    ps, ss = [], []
    for k in range(1, n + 1):
        name = f"{k:05d}.png"
        x0, y0, x1, y1 = inner_face_box(read_points(face_dir / f"{k:05d}.txt"))
        a = read_image(frames_dir / name)
        b = read_image(sharp_dir / name)
        x0, y0 = max(x0, 0), max(y0, 0)
        ps.append(psnr(a[y0:y1, x0:x1], b[y0:y1, x0:x1]))
        ss.append(ssim(a[y0:y1, x0:x1], b[y0:y1, x0:x1]))
    return {"psnr_face_box": round(float(np.mean(ps)), 4), "ssim_face_box": round(float(np.mean(ss)), 5)}


def main(argv=None) -> int:
    """Exit statuses as every command (common/cli.py): 0 done, 2 bad input, 1 internal failure."""
    return run_cli(_main, argv, prog="bench/bench_face_region.py")


def _main(argv=None) -> int:
    ap = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data" / "face_videos"))
    ap.add_argument("--clip", default=DEFAULT_CLIP, help=f"face_videos clip (default {DEFAULT_CLIP})")
    ap.add_argument("--seconds", type=float, default=None, help="clip length in seconds (default: --frames)")
    ap.add_argument("--frames", type=int, default=24, help="clip length in frames (default 24)")
    ap.add_argument("--face_side", type=int, default=360, help="pasted face video side in px (default 360)")
    ap.add_argument("--n_avg", type=int, default=5, help="frames averaged into each blurry frame (default 5)")
    ap.add_argument("--modes", default="face,full", help="comma-separated: face, full (default both)")
    ap.add_argument("--checkpoint", default=None, help="trained checkpoint (default: random STAND-IN, channels 32)")
    ap.add_argument("--channels", type=int, default=32, help="width of the stand-in network (default 32)")
    ap.add_argument("--work", default=str(ROOT / "bench" / "out" / "face_region_work"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "face_region.json"))
    ap.add_argument("--extra", default="--align flow --flow dis", help="extra deblur_video.py flags")
    a = ap.parse_args(argv)

    src = Path(a.shared) / a.clip
    if not src.is_file():
        raise InputError(f"{src}: not found (needs ../shared/data/face_videos)")
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    fps_src = probe(src)["fps"]
    n = int(round(a.seconds * fps_src)) if a.seconds else a.frames
    mp4, fps = build_clip(src, work, n, a.face_side, a.n_avg)
    ckpt = Path(a.checkpoint) if a.checkpoint else standin_checkpoint(work / "standin_ckpt", a.channels)
    result = {"what": "deblur_video.py face-region vs --full_frame on a 1280x720 clip", "clip": a.clip,
              "frames": n, "fps": fps, "face_video_side_px": a.face_side,
              "face_video_fraction_of_frame": round(a.face_side ** 2 / (1280 * 720), 4), "n_avg": a.n_avg,
              "checkpoint": str(ckpt) if a.checkpoint else f"STAND-IN random weights, channels {a.channels}",
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "modes": {}}
    env_extra = a.extra.split()
    for mode in [m.strip() for m in a.modes.split(",") if m.strip()]:
        r = run_mode(mode, mp4, work, ckpt, n, env_extra)
        face_dir = Path(r["work"]) / "full" / "clip720" / "face"
        r.update(score_face_box(Path(r["frames_dir"]), work / "sharp", face_dir, n))
        result["modes"][mode] = r
        if mode == "face":
            b = np.loadtxt(Path(r["work"]) / "boxes.txt", usecols=(3, 4), dtype=int, ndmin=2)[0] - \
                np.loadtxt(Path(r["work"]) / "boxes.txt", usecols=(1, 2), dtype=int, ndmin=2)[0]
            r["window_px"] = [int(b[0]), int(b[1])]
            r["window_fraction_of_frame"] = round(float(b[0] * b[1]) / (1280 * 720), 4)
    face_dir = Path(next(iter(result["modes"].values()))["work"]) / "full" / "clip720" / "face"
    blur_frames = work / "blurry_frames"
    for k in range(1, n + 1):  # the decoded blurry input, scored the same way as the results
        name = f"{k:05d}.png"
        src_png = Path(next(iter(result["modes"].values()))["work"]) / "full" / "clip720" / "blurry" / name
        if not (blur_frames / name).is_file():
            write_image(blur_frames / name, read_image(src_png))
    result["blurry_input"] = score_face_box(blur_frames, work / "sharp", face_dir, n)
    if "face" in result["modes"] and "full" in result["modes"]:
        f, g = result["modes"]["face"], result["modes"]["full"]
        result["speedup_total"] = round(g["s_per_frame"] / f["s_per_frame"], 2)
        dn = lambda m: m["stages_s"].get("deblur") or float("nan")
        result["speedup_deblur_stage"] = round(dn(g) / dn(f), 2)
        result["psnr_face_minus_full_db"] = round(f["psnr_face_box"] - g["psnr_face_box"], 4)
    text = json.dumps(result, indent=1)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
