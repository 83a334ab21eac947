r"""Score deblurred frames against sharp frames: PSNR/SSIM (RGB, Y) and dlib identity distance.

Not in the original repository (rwenqi/3Dfacedeblurring); reproduces the measurements of the
paper's tables. Logic in deblur/evaluate.py (metric definitions in its docstring).

    python evaluate.py --pred results --gt dataset --blurry dataset --out results/eval \
        --compare results/compare --render training_set
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.cli import ArgumentParser


def main(argv=None) -> int:
    """Exit statuses as every command (common/cli.py): 0 done, 2 bad input, 1 internal failure."""
    from common.cli import run_cli

    return run_cli(_main, argv, prog="evaluate.py")


def _main(argv=None) -> int:
    ap = ArgumentParser(prog="evaluate.py", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pred", required=True, help="restored frames: <pred>/<video>/00001.png (or PNGs directly)")
    ap.add_argument("--gt", required=True, help="sharp frames: <gt>/<video>/sharp/ or <gt>/<video>/ (or PNGs directly)")
    ap.add_argument("--blurry", help="blurry inputs, scored as the reference row: <blurry>/<video>/blurry/ "
                                     "(dataset layout), <video>/blur_0/ or <video>/")
    ap.add_argument("--out", help="report prefix: writes OUT.csv and OUT.json (default: <pred>/eval)")
    ap.add_argument("--no_identity", action="store_true", help="skip the dlib identity distance (faster)")
    ap.add_argument("--compare", metavar="OUT", help="write side-by-side strips blurry | render prior | "
                                                     "result | sharp to OUT/<video>/NNNNN.png and OUT/<video>.mp4 "
                                                     "(the render panel only with --render; a caption names "
                                                     "the model when the results carry its model.json)")
    ap.add_argument("--render", help="3D prior renders for the strips: <render>/<video>/render/ (training_set layout)")
    ap.add_argument("--render_label", default="3D prior",
                    help="label of the render panel (default '3D prior'; e.g. '3D prior (STAND-IN)')")
    ap.add_argument("--fps", type=float, default=10.0, help="frame rate of the comparison MP4 (default 10)")
    args = ap.parse_args(argv)

    from deblur.evaluate import evaluate, format_table, write_comparison, write_reports

    rep = evaluate(args.pred, args.gt, args.blurry, identity=not args.no_identity)
    out = Path(args.out) if args.out else Path(args.pred) / "eval"
    csv_path, json_path = write_reports(rep, out)
    print(format_table(rep))
    print(f"wrote {csv_path}\nwrote {json_path}")
    if args.compare:
        written = write_comparison(args.pred, args.gt, args.compare, blurry=args.blurry,
                                   render=args.render, fps=args.fps, rep=rep,
                                   render_label=args.render_label)
        for video, w in written.items():
            print(f"comparison {video}: {len(w['pngs'])} PNG strips in {Path(w['pngs'][0]).parent}, "
                  f"video {w['mp4']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
