"""Command line of `python -m preprocess {frames,blur,align,all}` (replaces the MATLAB scripts
extractFrames.m and generateAlignments.m of the original). Logic lives in video.py, blur.py,
align.py; this module parses flags, prints a one-line summary per step and turns bad input
into one `error: <file>: <problem>` line with exit status 2.
"""
from __future__ import annotations

import argparse
import json
import sys

from common.names import name_problem, safe_name

from .align import ALIGN_METHODS, align_dataset
from .blur import blur_dataset
from .fileio import InputError
from .flow import FLOW_METHODS
from .parallel import run_tasks
from .video import extract_frames, video_name


def _frames_args(p):
    g = p.add_argument_group("frames")
    g.add_argument("--video", nargs="+", required=True, metavar="PATH",
                   help="video file(s) OpenCV/ffmpeg can read, or folder(s) of image frames")
    g.add_argument("--name", default=None, help="clip name (default: file stem; one video only)")
    g.add_argument("--max_frames", type=int, default=None, help="keep at most N frames")
    g.add_argument("--step", type=int, default=1, help="keep every K-th source frame (default 1)")
    g.add_argument("--face_crop", type=int, default=None, metavar="SIZE",
                   help="face-centred square crop resized to SIZExSIZE (e.g. 256 or 320)")
    g.add_argument("--crop_scale", type=float, default=2.0,
                   help="crop side / detected face box side (default 2.0)")
    g.add_argument("--crop_smooth", type=float, default=5.0,
                   help="temporal Gaussian sigma of the crop box, frames (default 5; 0 = off)")
    g.add_argument("--subdir", default="sharp", choices=("sharp", "blurry"),
                   help="write frames to <video>/sharp (default, for blur synthesis) or "
                        "<video>/blurry (an already blurry video to deblur)")


def _blur_args(p):
    g = p.add_argument_group("blur")
    g.add_argument("--n_avg", type=int, default=7, help="sharp frames averaged per blurry frame (odd, default 7)")
    g.add_argument("--linear", action="store_true", help="average in linear light (gamma 2.2)")
    g.add_argument("--upsample", type=int, default=1, metavar="K",
                   help="flow-interpolated sub-frames: K-1 between consecutive frames (default 1 = none)")


def _align_args(p):
    g = p.add_argument_group("align")
    g.add_argument("--out", default="./training_set", help="output root (./training_set or ./testing_set)")
    g.add_argument("--datalist", default="./datalist_train.txt",
                   help="datalist to write ('' = do not write one)")
    g.add_argument("--align", default="flow", choices=ALIGN_METHODS, help="neighbour warping (default flow)")
    g.add_argument("--flow", default="tvl1", choices=FLOW_METHODS, help="flow method (default tvl1, as the original; dis computes flow ~100x faster)")
    g.add_argument("--flow_side", type=int, default=200,
                   help="flow computed with the smaller image side at this size (default 200, as the "
                        "original; 0 = full size)")
    g.add_argument("--n_frames", type=int, default=5, help="frames per sample: 5 (t-2..t+2) or 9 (t-4..t+4)")


def _common(p, dataset_default="./dataset"):
    p.add_argument("--dataset", default=dataset_default, help="dataset root (default ./dataset)")
    p.add_argument("--videos", nargs="+", default=None, metavar="NAME",
                   help="only these clip names of the dataset (default: all)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m preprocess",
                                 description="Prepare face-deblurring data: frames, blur synthesis, neighbour alignment, datalist.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("frames", help="video -> dataset/<video>/sharp/00001.png ...")
    _common(p); _frames_args(p)
    p = sub.add_parser("blur", help="dataset/<video>/sharp -> dataset/<video>/blurry (frame averaging)")
    _common(p); _blur_args(p)
    p = sub.add_parser("align", help="dataset/<video>/blurry -> <out>/<video>/blur_-2..blur_2 + datalist")
    _common(p); _align_args(p)
    p = sub.add_parser("all", help="frames, blur and align in one go")
    _common(p); _frames_args(p); _blur_args(p); _align_args(p)
    return ap


def _extract(task):
    video, a = task
    return extract_frames(video, a["dataset"], a["name"], a["max_frames"], a["step"], a["face_crop"],
                          a["subdir"], a["crop_scale"], a["crop_smooth"])


def run_frames(a) -> list:
    if a.name and len(a.video) > 1:
        raise ValueError("--name can only be used with a single --video")
    if a.max_frames is not None and a.max_frames < 1:
        raise ValueError(f"--max_frames must be >= 1, got {a.max_frames}")
    if a.face_crop is not None and a.face_crop < 16:
        raise ValueError(f"--face_crop must be at least 16 pixels, got {a.face_crop}")
    if not a.name:
        # Two sources that end up under one clip name would mix their frames (existing
        # frames are kept on re-runs): 'a/clip.mp4' and 'b/clip.mp4', or 'my clip.mp4' and
        # 'my_clip.mp4' once the first is made safe.
        seen = {}
        for v in a.video:
            n = video_name(v)
            n = safe_name(n) if name_problem(n) else n
            if n in seen:
                raise ValueError(f"{seen[n]} and {v} would both become clip '{n}'; "
                                 f"run them separately with different --name")
            seen[n] = v
    opts = vars(a)
    return run_tasks(_extract, [(v, opts) for v in a.video], a.jobs, desc="frames", unit="video")


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    try:
        names = None
        if a.cmd in ("frames", "all"):
            res = run_frames(a)
            print("frames:", json.dumps(res))
            for r in res:
                if r.get("note"):
                    print(f"note: {r['note']}", file=sys.stderr)
            names = [r["name"] for r in res]
        videos = a.videos or (names if a.cmd == "all" else None)
        if a.cmd in ("blur", "all"):
            print("blur:", json.dumps(blur_dataset(a.dataset, a.n_avg, a.linear, a.upsample, a.jobs,
                                                   videos=videos)))
        if a.cmd in ("align", "all"):
            print("align:", json.dumps(align_dataset(a.dataset, a.out, a.datalist or None, a.align, a.flow,
                                                     a.n_frames, a.jobs, flow_side=a.flow_side or None,
                                                     videos=videos, datalist_videos=a.videos)))
    except (InputError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
