"""Deblur a face video with one command: frames -> landmarks -> 3D prior -> alignment -> network -> H.264.

Replaces the original's manual sequence (extractFrames.m, the Windows landmark detector,
demo.py, demo_render.py, generateAlignments.m, run_model.py --phase test; rwenqi/3Dfacedeblurring).
Logic in pipeline/video.py; stages and the resumable working folder are described there.

    python deblur_video.py INPUT.mp4 OUTPUT.mp4 [--checkpoint PATH] [--full_frame]

The output keeps the input's frame times (variable frame rate included), exact size and audio
streams; frames without a face pass through unchanged. Exit status 0 on success, 2 for bad
input (one `error:` line naming the file), 1 for an internal failure (see common/cli.py).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from common.cli import ArgumentParser, nonnegative_float


def build_parser() -> argparse.ArgumentParser:
    from common.flags import add_flow_flag, add_gpu_flag, add_occlusion_flag, add_precision_flag
    from deblur.config import add_face_flag
    from pipeline.video import DEFAULT_CHECKPOINT

    ap = ArgumentParser(prog="deblur_video.py", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", help="blurry face video (any format ffmpeg reads) or a folder of frames")
    ap.add_argument("output", help="deblurred video to write (.mp4/.mov/.m4v/.mkv, H.264; same frames, "
                                   "frame times, size and audio as the input)")
    ap.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT,
                    help=f"trained network: native checkpoint folder/file or the authors' TF1 checkpoint "
                         f"(default {DEFAULT_CHECKPOINT})")
    add_face_flag(ap, default=None, help_default="the one stored in a native checkpoint; run_model.py's "
                                                  "for TF1 ones")
    ap.add_argument("--levels", type=int, default=None, help="scale levels of the checkpoint (default: run_model's)")
    ap.add_argument("--align", default="flow", choices=("none", "flow", "homography"),
                    help="how neighbouring frames are warped onto each frame (default flow)")
    add_flow_flag(ap)
    add_occlusion_flag(ap)
    add_gpu_flag(ap)
    ap.add_argument("--rnet", default=None, help="the authors' R-Net .pb: 3D coefficients by R-Net instead of fitting")
    ap.add_argument("--bfm", default=None, help="BFM_model_front.mat (default: found in faceReconstruction/BFM/ "
                                                "or BFM/, else the shipped ICT Face Model)")
    ap.add_argument("--frames_out", default=None, help="also write the deblurred frames as PNGs into this folder")
    ap.add_argument("--full_frame", action="store_true",
                    help="deblur whole frames (the original behaviour) instead of a face-centred window")
    ap.add_argument("--work_dir", default=None,
                    help="working folder; a re-run with the same folder resumes (default OUTPUT_work/ beside OUTPUT)")
    ap.add_argument("--fps", default=None,
                    help="re-time the output to this constant rate, e.g. 25 or 30000/1001 (default: every frame "
                         "keeps the input's timestamp; 25 for a folder of frames)")
    ap.add_argument("--no_audio", action="store_true", help="leave the input's audio streams out (default: copied)")
    ap.add_argument("--max_gap", type=int, default=None,
                    help="runs of at most this many frames without a detected face are taken for detector "
                         "misses and deblurred with interpolated landmarks; longer runs pass through unchanged "
                         "(default 2)")
    ap.add_argument("--max_frames", type=int, default=None, help="only the first N frames")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes for neighbour alignment (default 1)")
    ap.add_argument("--margin", type=float, default=3.0,
                    help="face window side = MARGIN x five-point extent + 2 x CONTEXT (default 3.0)")
    ap.add_argument("--context", type=int, default=32, help="extra pixels around the face window (default 32)")
    ap.add_argument("--multiple", type=int, default=32, help="face window side rounded up to this (default 32)")
    ap.add_argument("--feather", type=int, default=16, help="width in pixels of the blend ramp (default 16)")
    ap.add_argument("--model_args", default="", help="extra run_model.py flags, quoted, e.g. \"--channels 16\"")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    g = ap.add_argument_group("speed (the defaults are the fast ones, except that a checkpoint may ask "
                              "for the self-ensemble, as the shipped one does; docs/video.md)")
    add_precision_flag(g, default="auto")
    g.add_argument("--xla", action="store_true", help="compile the network's forward pass with XLA")
    g.add_argument("--self_ensemble", nargs="?", const="on", choices=("on", "off"), default=None,
                   help="also deblur each face window mirrored left-right and average the two "
                        "(twice the network time; checkpoints/MODEL_CARD.md has its gain); alone = on; "
                        "default: what the checkpoint stores")
    g.add_argument("--sharp_guard", type=nonnegative_float, default=None, metavar="TAU",
                   help="scale each face window's correction by rms^2/(rms^2+TAU^2), rms its root mean square "
                        "in grey levels, so sharp frames stay as they are (0 = off; default: the value the "
                        "checkpoint stores; checkpoints/MODEL_CARD.md)")
    g.add_argument("--batch", type=int, default=1,
                   help="frames per network forward pass (default 1: on a 2-core CPU larger batches were slower, "
                        "docs/benchmarks.md; try 4-8 on a GPU)")
    g.add_argument("--chunk", type=int, default=32,
                   help="frames held in memory and finished at a time; a killed run resumes at the first "
                        "unfinished chunk (default 32)")
    g.add_argument("--detect_every", type=int, default=5,
                   help="run the face detector every N frames and track the landmarks in between; 1 detects "
                        "on every frame (default 5)")
    ap.add_argument("--keep_intermediates", action="store_true",
                    help="also write the face windows, warped neighbours and network outputs as PNGs in the "
                         "original layout inside the working folder")
    return ap


def _main(argv=None) -> int:
    a = build_parser().parse_args(argv)

    from common.cli import EXIT_INTERNAL
    from pipeline.video import MAX_GAP, Options, StageError, deblur_video

    opt = Options(input=Path(a.input), output=Path(a.output), checkpoint=Path(a.checkpoint),
                  work_dir=Path(a.work_dir) if a.work_dir else None, face=a.face, levels=a.levels,
                  align=a.align, flow=a.flow, occlusion=a.occlusion, gpu=a.gpu, rnet=a.rnet, bfm=a.bfm,
                  frames_out=Path(a.frames_out) if a.frames_out else None, full_frame=a.full_frame, fps=a.fps,
                  max_frames=a.max_frames, jobs=a.jobs, margin=a.margin, context=a.context,
                  multiple=a.multiple, feather=a.feather, model_args=shlex.split(a.model_args), quiet=a.quiet,
                  no_audio=a.no_audio, max_gap=MAX_GAP if a.max_gap is None else a.max_gap,
                  precision=a.precision, xla=a.xla, self_ensemble=None if a.self_ensemble is None else a.self_ensemble == "on",
                  sharp_guard=a.sharp_guard, batch=a.batch, chunk=a.chunk,
                  detect_every=a.detect_every, keep_intermediates=a.keep_intermediates)
    try:
        deblur_video(opt)
    except StageError as e:
        # a stage tool failed for another reason than the input (its log says why)
        print(f"deblur_video.py: internal failure: {e}\nThis is not a problem with the input. Finished stages "
              f"are kept in {opt.work_dir}: once the cause is fixed, the same command resumes at this stage.",
              file=sys.stderr)
        return EXIT_INTERNAL
    return 0


def main(argv=None) -> int:
    from common.cli import run_cli

    return run_cli(_main, argv, prog="deblur_video.py")


if __name__ == "__main__":
    sys.exit(main())
