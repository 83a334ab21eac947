"""Command line of `python -m preprocess {frames,blur,align,all}` (replaces the MATLAB scripts
extractFrames.m and generateAlignments.m of the original). Logic lives in video.py, blur.py,
align.py; this module parses flags, prints a one-line summary per step and turns bad input
into one `error: <file>: <problem>` line with exit status 2 (statuses: common/cli.py).

`--on_error skip` (long runs over many clips): a frame that cannot be read is left out with
everything that needs it, counted in the summary (`errors_skipped`) and listed on stderr;
`stop` (default) ends at the first one.
"""
from __future__ import annotations

import argparse
import json
import sys

from common.cli import ArgumentParser, run_cli
from common.flags import add_flow_flag, add_occlusion_flag
from common.names import name_problem, safe_name

from .align import ALIGN_METHODS, align_dataset
from .blur import blur_dataset
from common.fileio import InputError
from common.parallel import run_tasks
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
    add_flow_flag(g)
    add_occlusion_flag(g)
    g.add_argument("--flow_side", type=int, default=200,
                   help="flow computed with the smaller image side at this size (default 200, as the "
                        "original; 0 = full size)")
    g.add_argument("--n_frames", type=int, default=5, help="frames per sample: 5 (t-2..t+2) or 9 (t-4..t+4)")


def _common(p, dataset_default="./dataset"):
    p.add_argument("--dataset", default=dataset_default, help="dataset root (default ./dataset)")
    p.add_argument("--videos", nargs="+", default=None, metavar="NAME",
                   help="only these clip names of the dataset (default: all)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--on_error", default="stop", choices=("stop", "skip"),
                   help="a frame that cannot be read: stop with an error (default), or skip it (and what "
                        "needs it) and count it in the summary")


def build_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(prog="python -m preprocess",
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
    _recipe_args(sub.add_parser(
        "recipe", help="folder of sharp face videos -> training/validation data (camera-shake blur)",
        description="Training-data recipe (see preprocess/recipe.py): identity-disjoint split, "
                    "face crops, camera-shake blur in linear light, neighbour alignment, datalists."))
    return ap


def _recipe_args(p):
    from .recipe import RecipeConfig

    d = RecipeConfig()
    p.add_argument("--videos", required=True, help="folder of sharp face videos (files or frame folders)")
    p.add_argument("--out", required=True, help="output root (dataset/, training_set/, datalists)")
    p.add_argument("--size", type=int, default=d.size, help="crop side, px")
    p.add_argument("--max_source_frames", type=int, default=d.max_source_frames,
                   help="frames decoded per clip")
    p.add_argument("--segment_len", type=int, default=d.segment_len, help="frames per segment")
    p.add_argument("--segments", type=int, default=d.segments, help="segments per training clip")
    p.add_argument("--val_segments", type=int, default=d.val_segments, help="segments per validation clip")
    p.add_argument("--n_val", type=int, default=d.n_val, help="validation clips (whole persons)")
    p.add_argument("--val_clips", nargs="+", default=[], help="explicit validation clips (names)")
    p.add_argument("--speed", type=float, nargs=2, default=d.speed_range, metavar=("LO", "HI"),
                   help="RMS camera-shake speed range, px/frame (log-uniform)")
    p.add_argument("--exposure", type=float, nargs=2, default=d.exposure_range, metavar=("LO", "HI"),
                   help="exposure range, frame intervals (log-uniform)")
    p.add_argument("--still_share", type=float, default=d.still_share,
                   help="share of segments with a still camera and a long exposure (the paper's blur)")
    p.add_argument("--still_exposure", type=float, nargs=2, default=d.still_exposure_range,
                   metavar=("LO", "HI"), help="their exposure range, frame intervals (log-uniform)")
    p.add_argument("--still_linear", action="store_true",
                   help="average still-camera segments in linear light too (default: sRGB values, "
                        "as the paper's frame averaging)")
    p.add_argument("--sharp_share", type=float, default=d.sharp_share,
                   help="share of segments without blur (blurry = sharp, then noise/JPEG)")
    p.add_argument("--unblurred_repeat", type=int, default=d.unblurred_repeat,
                   help="list each unblurred segment's frames this many times in datalist_train.txt "
                        "(default 1; only the list changes: rerun on a finished recipe, every finished step is skipped)")
    p.add_argument("--degrade_share", type=float, default=d.degrade_share,
                   help="share of segments with sensor noise + JPEG on the blurry frames (0 = clean)")
    p.add_argument("--noise", type=float, nargs=2, default=d.noise_range, metavar=("LO", "HI"),
                   help="noise sigma range, 8-bit levels (log-uniform)")
    p.add_argument("--jpeg", type=int, nargs=2, default=d.jpeg_range, metavar=("LO", "HI"),
                   help="JPEG quality range (uniform)")
    p.add_argument("--no_fit_frame", dest="fit_frame", action="store_false",
                   help="crop a fixed size around the face even beyond the frame (border repeated, "
                        "small faces upsampled; the recipe before 2026-11-30)")
    p.add_argument("--n_frames", type=int, default=d.n_frames, choices=(5, 9))
    add_occlusion_flag(p)
    p.add_argument("--priors", action="store_true",
                   help="also make the 3D priors (landmarks, coefficients, renders) with the shipped model")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")


def _extract(task):
    video, a = task
    return extract_frames(video, a["dataset"], a["name"], a["max_frames"], a["step"], a["face_crop"],
                          a["subdir"], a["crop_scale"], a["crop_smooth"], a["on_error"])


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


def _report_skipped(step: str, results) -> None:
    for r in results:
        for e in r.get("errors", []):
            print(f"skipped ({step}): {e}", file=sys.stderr)
        if r.get("errors_skipped", 0) > len(r.get("errors", [])):
            print(f"skipped ({step}): ... {r['errors_skipped'] - len(r['errors'])} more", file=sys.stderr)


def _main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    if a.cmd == "recipe":
        from .recipe import RecipeConfig, run_recipe

        cfg = RecipeConfig(size=a.size, max_source_frames=a.max_source_frames,
                           segment_len=a.segment_len, segments=a.segments,
                           val_segments=a.val_segments, n_val=a.n_val, val_clips=a.val_clips,
                           speed_range=tuple(a.speed), exposure_range=tuple(a.exposure),
                           n_frames=a.n_frames, seed=a.seed, fit_frame=a.fit_frame,
                           degrade_share=a.degrade_share, still_share=a.still_share,
                           still_exposure_range=tuple(a.still_exposure),
                           still_linear=a.still_linear, sharp_share=a.sharp_share,
                           unblurred_repeat=a.unblurred_repeat, noise_range=tuple(a.noise),
                           jpeg_range=tuple(a.jpeg), occlusion=a.occlusion)
        print("recipe:", json.dumps(run_recipe(a.videos, a.out, cfg, a.jobs, a.priors)))
        return 0
    names = None
    if a.cmd in ("frames", "all"):
        res = run_frames(a)
        _report_skipped("frames", res)
        for r in res:
            if r.get("note"):
                print(f"note: {r['note']}", file=sys.stderr)
        print("frames:", json.dumps([{k: v for k, v in r.items() if k != "errors"} for r in res]))
        names = [r["name"] for r in res]
    videos = a.videos or (names if a.cmd == "all" else None)
    if a.cmd in ("blur", "all"):
        res = blur_dataset(a.dataset, a.n_avg, a.linear, a.upsample, a.jobs, videos=videos, on_error=a.on_error)
        _report_skipped("blur", [res])
        print("blur:", json.dumps({k: v for k, v in res.items() if k != "errors"}))
    if a.cmd in ("align", "all"):
        res = align_dataset(a.dataset, a.out, a.datalist or None, a.align, a.flow, a.n_frames, a.jobs,
                            flow_side=a.flow_side or None, videos=videos, datalist_videos=a.videos,
                            on_error=a.on_error, occlusion=a.occlusion)
        _report_skipped("align", [res])
        print("align:", json.dumps({k: v for k, v in res.items() if k != "errors"}))
    return 0


def main(argv=None) -> int:
    # ValueError here only comes from flag checks (e.g. --n_avg must be odd): bad input too
    return run_cli(_main, argv, prog="python -m preprocess", bad_input=(InputError, ValueError))
