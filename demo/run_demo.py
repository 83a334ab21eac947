"""`make demo`: the whole method on a synthetic motion-blurred face clip, scored and shown.

Not in the original repository (rwenqi/3Dfacedeblurring). Steps, all on CPU, nothing downloaded:
 1. sample clip: scikit-image's astronaut photo filmed by a shaking virtual camera with true
    motion blur (preprocess/sample.py), sharp + blurry frames -> demo_work/dataset/astronaut/;
 2. model: the model this project trained and ships (checkpoints/facedeblur.npz, described in
    checkpoints/MODEL_CARD.md), or --checkpoint PATH (a native or the authors' TF1 checkpoint).
    With --retrain, a SHORT, time-boxed model is trained instead on clips made from the same
    photo with OTHER shake trajectories (demo_work/train/), through the same stage tools as for
    real data (landmarks, 3D fit, render, alignment, run_model.py --phase train); it shows the
    training path working, it is neither the shipped nor the paper's model;
 3. deblur_video.py on the blurry frames (face window, 3D prior, alignment, network, H.264);
 4. evaluate.py: blurry-vs-sharp and result-vs-sharp PSNR/SSIM (RGB, Y) and dlib identity
    distance, with side-by-side strips (blurry | 3D prior | result | sharp) as PNG and MP4.

    python demo/run_demo.py [--checkpoint PATH] [--retrain [--train_seconds 420]] [--work demo_work]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common.cli import ArgumentParser, EXIT_INTERNAL, run_cli
from common.errors import InputError
from pipeline.video import DEFAULT_CHECKPOINT, StageError, checkpoint_config, model_lines, prior_label, run_tool
from preprocess.sample import SampleConfig, make_sample

ROOT = Path(__file__).resolve().parents[1]

PROG = "demo/run_demo.py"
TEST_CLIP = "astronaut"
TRAIN_SEEDS = (101, 102, 103, 104)


def banner(msg: str) -> None:
    print("\n" + "=" * 78 + "\n" + msg + "\n" + "=" * 78, flush=True)


def has_checkpoint(path: Path) -> str | None:
    """'native' / 'TF1' when `path` holds a usable checkpoint, else None."""
    if path.is_file() and path.suffix == ".npz":
        return "native"
    if path.is_dir():
        if any(path.glob("deblur-*.npz")):
            return "native"
        if (path / "checkpoint").is_file() or any(path.glob("*.index")):
            return "TF1"
    return None


def train_demo_model(work: Path, seconds: int, args, env) -> Path:
    """Build the training clips, run the stage tools on them and train for `seconds`."""
    py = sys.executable
    tr = work / "train"
    ds, ts, logs = tr / "dataset", tr / "training_set", tr / "logs"
    ckpt = tr / "checkpoint"
    for seed in TRAIN_SEEDS:
        if not (ds / f"shake{seed}" / "sample.json").is_file():
            make_sample(ds, f"shake{seed}", SampleConfig(n_frames=args.frames, size=args.size, seed=seed))
    steps = [("landmarks", [py, "-m", "facePointDetection", "--dataset", str(ds)]),
             ("reconstruct", [py, "demo.py", "--input_path", str(ds), "--output_path", str(ts)]),
             ("render", [py, "demo_render.py", "--coeff_path", str(ts), "--data_path", str(ds)]),
             ("align", [py, "-m", "preprocess", "align", "--dataset", str(ds), "--out", str(ts), "--datalist",
                        str(tr / "datalist.txt"), "--align", "flow", "--flow", "dis"])]
    for name, cmd in steps:
        marker = tr / f".{name}.done"
        if marker.is_file():
            print(f"  training data: {name:<11} skipped (done in an earlier run)", flush=True)
            continue
        t0 = time.perf_counter()
        text = run_tool(cmd, logs / f"{name}.log", env)
        for line in model_lines(text):
            print("  NOTE: " + line)
        marker.write_text("ok\n")
        print(f"  training data: {name:<11} done in {time.perf_counter() - t0:.1f} s", flush=True)
    print(f"  training: run_model.py --phase train for at most {seconds} s "
          f"(channels {args.channels}, patch {args.patch}, batch {args.batch}) ...", flush=True)
    t0 = time.perf_counter()
    run_tool([py, "run_model.py", "--phase", "train", "--datalist", str(tr / "datalist.txt"), "--data_root",
               str(ds), "--train_root", str(ts), "--face", "both", "--levels", "1", "--channels", str(args.channels),
               "--patch_size", str(args.patch), "--batch_size", str(args.batch), "--lr", str(args.lr),
               "--max_steps", str(args.max_steps), "--time_limit", str(seconds), "--save_every", "200",
               "--checkpoint_dir", str(ckpt), "--gpu", "-1"], logs / "train.log", env)
    (tr / ".trained").write_text(f"{seconds}\n")
    print(f"  training: done in {time.perf_counter() - t0:.1f} s (log {logs / 'train.log'})", flush=True)
    return ckpt


def main(argv=None) -> int:
    """Exit statuses as every command (common/cli.py): 0 done, 2 bad input, 1 internal failure."""
    return run_cli(_main, argv, prog=PROG)


def _main(argv=None) -> int:
    ap = ArgumentParser(prog="demo/run_demo.py", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="demo_work", help="working folder (default demo_work/)")
    ap.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT,
                    help=f"use this trained model when it exists (default {DEFAULT_CHECKPOINT})")
    ap.add_argument("--train_seconds", type=int, default=420,
                    help="time box of the --retrain demo training (default 420)")
    ap.add_argument("--retrain", action="store_true",
                    help="train a short demo model (--train_seconds) instead of using the shipped one")
    ap.add_argument("--frames", type=int, default=24, help="frames per sample clip (default 24)")
    ap.add_argument("--size", type=int, default=192, help="sample frame size in pixels (default 192)")
    ap.add_argument("--channels", type=int, default=8, help="demo model base width (default 8)")
    ap.add_argument("--patch", type=int, default=64, help="demo training patch size (default 64)")
    ap.add_argument("--batch", type=int, default=8, help="demo training batch size (default 8)")
    ap.add_argument("--lr", type=float, default=1e-3, help="demo training learning rate (default 1e-3)")
    ap.add_argument("--max_steps", type=int, default=100000,
                    help="step budget = decay length of the learning rate (default 100000; the time box stops first)")
    args = ap.parse_args(argv)
    for flag, lowest in (("frames", 1), ("size", 32), ("channels", 1), ("patch", 16), ("batch", 1),
                         ("train_seconds", 1), ("max_steps", 1)):
        if getattr(args, flag) < lowest:
            ap.error(f"--{flag} must be at least {lowest}, got {getattr(args, flag)}")
    if not args.lr > 0:
        ap.error(f"--lr must be above 0, got {args.lr}")

    t_start = time.perf_counter()
    os.chdir(ROOT)
    work = Path(args.work).resolve()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    py = sys.executable
    label = "3D prior"
    ckpt = Path(args.checkpoint)
    kind = has_checkpoint(ckpt)
    if not kind and not args.retrain:  # before anything is written
        raise InputError(f"{ckpt}: no deblurring checkpoint there (the shipped model is "
                         f"{DEFAULT_CHECKPOINT}; restore it with `git checkout -- checkpoints/`, pass "
                         "--checkpoint PATH, or --retrain to train a short demo model)")
    try:
        banner("1/4  sample clip: scikit-image's astronaut photo, shaking virtual camera, true motion blur")
        ds = work / "dataset"
        cfg = SampleConfig(n_frames=args.frames, size=args.size, seed=0)
        clip = make_sample(ds, TEST_CLIP, cfg)
        print(f"  {cfg.n_frames} sharp/blurry pairs, {cfg.size}x{cfg.size}, {cfg.sub_frames} sub-frames per frame "
              f"-> {clip}")

        banner("2/4  deblurring model")
        trained_here = False
        if args.retrain:
            demo_ckpt = work / "train" / "checkpoint"
            print(f"  --retrain: training a SHORT DEMO MODEL ({args.train_seconds} s on this CPU) on the same "
                  "photo with other shake trajectories.\n  This is neither the shipped model nor the authors'; "
                  "expect a modest gain.", flush=True)
            shutil.rmtree(demo_ckpt, ignore_errors=True)  # a fresh model, not a resumed one
            ckpt, trained_here = train_demo_model(work, args.train_seconds, args, env), True
        else:
            shipped = ckpt.resolve() == Path(DEFAULT_CHECKPOINT).resolve()
            print(f"  using the {kind} checkpoint at {ckpt}"
                  + (" (the model this project trained and ships: checkpoints/MODEL_CARD.md)" if shipped else ""))

        banner("3/4  deblur_video.py on the blurry clip")
        out_mp4 = work / "astronaut_deblurred.mp4"
        result = work / "result" / TEST_CLIP
        shipped = not trained_here and Path(ckpt).resolve() == Path(DEFAULT_CHECKPOINT).resolve()
        # The shipped model is deblur_video.py's default: no flag, as a user would run it.
        cmd = [py, "deblur_video.py", str(clip / "blurry"), str(out_mp4),
               *([] if shipped else ["--checkpoint", str(ckpt)]),
               "--work_dir", str(work / "video_work"), "--frames_out", str(result), "--fps", "10"]
        print("  $ " + " ".join(c if " " not in c else repr(c) for c in cmd[1:]), flush=True)
        rc = subprocess.run(cmd, cwd=ROOT, env=env).returncode
        if rc != 0:
            print(f"error: deblur_video.py failed (status {rc})", file=sys.stderr)
            return 1

        banner("4/4  evaluation (evaluate.py)")
        cmp_dir = work / "compare"
        notes_file = work / "video_work" / "notes.json"
        label = prior_label(notes_file.read_text() if notes_file.is_file() else "")
        stored = checkpoint_config(ckpt)
        uses_prior = stored is None or stored.face != "none"
        # A model without a 3D prior gets no (empty) prior panel in the strips.
        cmd = [py, "evaluate.py", "--pred", str(work / "result"), "--gt", str(ds), "--blurry", str(ds),
               "--out", str(work / "eval"), "--compare", str(cmp_dir), "--fps", "10",
               *(["--render", str(work / "video_work" / "final_render"), "--render_label", label]
                 if uses_prior else [])]
        rc = subprocess.run(cmd, cwd=ROOT, env=env).returncode
        if rc != 0:
            print(f"error: evaluate.py failed (status {rc})", file=sys.stderr)
            return 1
    except StageError as e:  # a stage tool failed for another reason than the input: its log says why
        print(f"{PROG}: internal failure: {e}", file=sys.stderr)
        return EXIT_INTERNAL

    banner("done")
    which = (f"SHORT DEMO MODEL trained here ({args.train_seconds} s budget; NOT the shipped or the authors' model)"
             if trained_here else f"the shipped model {ckpt} (this project's; checkpoints/MODEL_CARD.md)"
             if shipped else f"checkpoint {ckpt}")
    print(f"  model:            {which}")
    if not uses_prior:
        print("  3D prior:         none (the model uses no 3D prior: --face none)")
    else:
        print(f"  3D prior:         {label} (which model: docs/ict.md)")
    print(f"  deblurred video:  {out_mp4}")
    print(f"  comparison PNG:   {cmp_dir / TEST_CLIP / f'{max(1, args.frames // 2):05d}.png'} (one strip per frame in {cmp_dir / TEST_CLIP})")
    print(f"  comparison MP4:   {cmp_dir / (TEST_CLIP + '.mp4')}")
    print(f"  report:           {work / 'eval.csv'}, {work / 'eval.json'}")
    print(f"  total time:       {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
