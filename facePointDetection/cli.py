"""Command line of `python -m facePointDetection` (the original detector executables +
check5points). Logic lives in pipeline.py / detect.py; bad input (including landmark files that
fail --check) -> one `error:` line, exit 2; exit statuses as in common/cli.py.
"""
from __future__ import annotations

import argparse
import json
import sys

from common.cli import ArgumentParser, EXIT_BAD_INPUT, run_cli
from common.errors import InputError

from .pipeline import MAX_GAP, check_points, detect_dataset


def build_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(prog="python -m facePointDetection",
                        description="Five (and optionally 68) facial landmarks on every "
                                    "DIR/<video>/blurry/ frame -> face/, bbox.txt (face68/).")
    ap.add_argument("--dataset", default="./dataset", help="dataset root (default ./dataset)")
    ap.add_argument("--points", type=int, default=5, choices=(5, 68),
                    help="5 (MTCNN, default) or 68 (also write dlib 68 points to face68/)")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    ap.add_argument("--smooth", type=float, default=0.0,
                    help="temporal Gaussian sigma in frames for points and boxes (default 0 = off)")
    ap.add_argument("--no_flip", action="store_true",
                    help="skip the mirrored second MTCNN pass (2x faster, slightly less accurate)")
    ap.add_argument("--min_face_size", type=int, default=20, help="MTCNN smallest face, px (default 20)")
    ap.add_argument("--videos", nargs="+", default=None, metavar="NAME", help="only these clips")
    ap.add_argument("--max_gap", type=int, default=MAX_GAP,
                    help=f"runs of at most this many frames without a detection are filled by "
                         f"interpolation (detector misses); longer runs are frames without a face, "
                         f"listed in <video>/noface.txt and given no landmark file (default {MAX_GAP}; "
                         f"-1 fills every gap)")
    ap.add_argument("--check", action="store_true",
                    help="only validate existing face/*.txt files (check5points); exit 2 on problems")
    return ap


def _main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    if not a.check:
        res = detect_dataset(a.dataset, a.points, a.jobs, flip=not a.no_flip, smooth=a.smooth,
                             min_face_size=a.min_face_size, videos=a.videos, max_gap=a.max_gap,
                             log=lambda m: print(m, file=sys.stderr))
        print("landmarks:", json.dumps({k: dict(frames=v["frames"], interpolated=len(v["interpolated"]),
                                                no_face=len(v["no_face"]), skipped=v["skipped"])
                                        for k, v in res.items()}))
    problems = check_points(a.dataset, a.videos)
    if a.points == 68 and not a.check:
        problems += check_points(a.dataset, a.videos, n=68, sub="face68")
    for p in problems:
        print(f"check: {p}", file=sys.stderr)
    print(f"check: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    return EXIT_BAD_INPUT if problems else 0


def main(argv=None) -> int:
    return run_cli(_main, argv, prog="facePointDetection", bad_input=(InputError, ValueError))
