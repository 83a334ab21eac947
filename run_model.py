r"""Train or test the face-video deblurring network (the original `run_model.py`).

    python run_model.py --phase train --datalist datalist_train.txt --face both --levels 1
    python run_model.py --phase test  --input_path ./testing_set --output_path ./testing_res
                        [--checkpoint checkpoints/both_1_256]   (default: the shipped model,
                        checkpoints/facedeblur.npz, unless checkpoints/<face>_<levels>_<patch>/ exists)
    python run_model.py --phase import --checkpoint checkpoints/both_1_256 \
                        --output_path checkpoints/both_1_256_native
    python run_model.py --phase export --checkpoint RUN_DIR/best.npz --output_path model.npz

The logic lives in deblur/ (network.py, data.py, train.py, inference.py, checkpoint.py).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from common.cli import ArgumentParser, DefaultsHelpFormatter, nonnegative_float
from common.flags import add_gpu_flag, add_precision_flag, select_gpu
from deblur.config import MODELS, add_face_flag


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="run_model.py", description=__doc__.split("\n")[0],
                       formatter_class=DefaultsHelpFormatter)
    p.add_argument("--phase", choices=("train", "test", "import", "export"), default="test",
                   help="train a model, deblur a testing set, import a TF1 checkpoint, or export "
                        "a checkpoint's weights for shipping (float16, no optimizer state)")
    g = p.add_argument_group("network (training; when testing, the settings a checkpoint stores win "
                             "and a flag given that differs is reported)")
    add_face_flag(g)
    g.add_argument("--levels", type=int, default=1, help="number of scales (scale-recurrent)")
    g.add_argument("--model", choices=MODELS, default="color",
                   help="colour network, gray (per-channel) network, or conv-LSTM bottleneck")
    g.add_argument("--n_frames", type=int, default=5, choices=(5, 9),
                   help="blurry frames per input (t-2..t+2, or t-4..t+4)")
    g.add_argument("--channels", type=int, default=32,
                   help="base width (channels, 2x, 4x); 32 is the original network")
    g.add_argument("--residual", action="store_true",
                   help="predict a correction added to the blurry centre frame (not in the paper; "
                        "the shipped model uses it, see checkpoints/MODEL_CARD.md)")
    g = p.add_argument_group("training")
    g.add_argument("--datalist", default="./datalist_train.txt", help="8-column training list")
    g.add_argument("--data_root", default="./dataset", help="root of the sharp column")
    g.add_argument("--train_root", default="./training_set",
                   help="root of the blurry, coefficient and render columns")
    g.add_argument("--batch_size", type=int, default=16, help="samples (random crops) per step")
    g.add_argument("--patch_size", type=int, default=256, help="random square crop size")
    g.add_argument("--epoch", type=int, default=4000,
                   help="epochs; steps = epoch * len(datalist) // batch_size")
    g.add_argument("--lr", "--learning_rate", dest="lr", type=float, default=1e-4,
                   help="initial learning rate (polynomial decay to 0, see --lr_power)")
    g.add_argument("--lr_power", type=float, default=0.3,
                   help="power of the learning-rate decay: 0.3 as SRN-Deblur (stays high for "
                        "long), 1.0 linear (to fine-tune from --init_checkpoint)")
    g.add_argument("--max_steps", type=int, default=0,
                   help="override the number of steps (also the decay length); 0 = from epochs")
    g.add_argument("--time_limit", type=float, default=0,
                   help="stop (and save) after this many seconds; 0 = no limit")
    g.add_argument("--stop_after", type=int, default=0,
                   help="stop (and save) after N steps of this run, keeping the schedule of "
                        "max_steps; rerun to resume. 0 = run to the end")
    g.add_argument("--checkpoint_dir", default=None,
                   help="where to save/resume; default checkpoints/<face>_<levels>_<patch>")
    g.add_argument("--init_checkpoint", default=None,
                   help="start from these weights (native or TF1) instead of random ones; a "
                        "narrower network's (smaller --channels) are widened to the same function, "
                        "a --face none model's get the prior's channels added")
    g.add_argument("--save_every", type=int, default=1000, help="checkpoint every N steps")
    g.add_argument("--keep", type=int, default=5, help="keep the last K checkpoints")
    g.add_argument("--log_every", type=int, default=20, help="TensorBoard scalars every N steps")
    g.add_argument("--seed", type=int, default=0, help="seed of the data order and crops")
    g.add_argument("--neighbour_dropout", type=float, default=0.0,
                   help="probability that each neighbour frame of a training sample is replaced "
                        "by the centre frame, as at a clip's first and last frame, so the network "
                        "also learns to deblur a frame from itself (not in the paper; default 0 = "
                        "off)")
    g.add_argument("--mirror", type=float, default=0.0,
                   help="probability that a training sample (frames, target, render) is mirrored "
                        "left-right, the transform --self_ensemble uses at test time (not in the "
                        "paper; default 0 = off)")
    g.add_argument("--loss", choices=("mse", "psnr"), default="mse",
                   help="training loss per scale: mse (the paper's) or psnr (the batch mean of "
                        "each sample's 10 log10 MSE, i.e. minus its PSNR: the mean PSNR that "
                        "validation reports, which weights nearly sharp samples up; not in the "
                        "paper)")
    g.add_argument("--val_every", type=int, default=0,
                   help="validate every N steps and at the end (PSNR/SSIM, common/metrics.py, "
                        "TensorBoard val/*); 0 = no validation")
    g.add_argument("--val_datalist", default=None,
                   help="validation samples as a datalist (training format, e.g. the recipe's "
                        "datalist_val.txt, roots --data_root/--train_root); else --val_input_path")
    g.add_argument("--val_input_path", default=None,
                   help="validation frames in the testing_set layout (<video>/blur_-2..blur_2, "
                        "face/, render/)")
    g.add_argument("--val_gt_path", default=None,
                   help="sharp frames of the validation videos (<video>/NNNNN.png or <video>/sharp/)")
    g.add_argument("--val_frames", type=int, default=0,
                   help="validate on N frames only (first N of --val_input_path, N evenly "
                        "spread over --val_datalist); 0 = all. Each validation appends to "
                        "<checkpoint_dir>/validation.csv and keeps the best as best.npz")
    g = p.add_argument_group("testing / import")
    g.add_argument("--input_path", default="./testing_set",
                   help="<video>/blur_-2..blur_2, face/, render/ folders")
    g.add_argument("--output_path", default="./testing_res",
                   help="test: output folder; import: native checkpoint file or folder; "
                        "export: the .npz to write")
    g.add_argument("--checkpoint", default=None,
                   help="native deblur-N.npz, a folder of them, or a TF1 checkpoint folder/prefix; "
                        "default checkpoints/<face>_<levels>_<patch> when it exists, else the "
                        "shipped model checkpoints/facedeblur.npz")
    g.add_argument("--gt_path", default=None,
                   help="sharp frames (<video>/NNNNN.png or <video>/sharp/) for PSNR/SSIM")
    g.add_argument("--skip_existing", action="store_true", help="test: keep finished outputs")
    g.add_argument("--no_transpose", action="store_true",
                   help="test: do not transpose portrait frames (the original does)")
    g.add_argument("--self_ensemble", nargs="?", const="on", choices=("on", "off"), default=None,
                   help="test: also deblur each frame mirrored left-right and average the two "
                        "(twice the time; not in the paper; checkpoints/MODEL_CARD.md has its gain); "
                        "'--self_ensemble' alone = on; default: what the checkpoint stores (off if "
                        "nothing). export: the setting to store")
    g.add_argument("--sharp_guard", type=nonnegative_float, default=None, metavar="TAU",
                   help="test: scale each frame's correction by rms^2/(rms^2+TAU^2), rms its root mean "
                        "square in grey levels, so frames that are already sharp stay as they are "
                        "(0 = off; default: the value the checkpoint stores, 0 if none; "
                        "checkpoints/MODEL_CARD.md). export: the value to store")
    g = p.add_argument_group("hardware")
    add_gpu_flag(g, several=True)
    add_precision_flag(g, default=None, help_default="fp32 for training, auto for testing")
    g.add_argument("--xla", action="store_true",
                   help="compile the training step / forward pass with XLA (see docs/benchmarks.md's "
                        "speed table for where it helps)")
    return p


def parse_args(argv=None):
    args = build_parser().parse_args(argv)
    if args.precision is None:
        # inference gains from bf16 units where the machine has them and changes nothing where
        # it does not (auto = fp32 there); training stays fp32 unless asked, as before, since
        # the precision changes what a training run learns
        args.precision = "auto" if args.phase == "test" else "fp32"
    return args


def main(argv=None) -> int:
    """Exit statuses as every command (common/cli.py): 0 done, 2 bad input, 1 internal failure."""
    from common.cli import run_cli

    return run_cli(_main, argv, prog="run_model.py")


def _main(argv=None) -> int:
    args = parse_args(argv)
    select_gpu(args.gpu)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++ logs: CUDA probing noise on CPUs; failures raise

    from common.errors import InputError
    from deblur.checkpoint import (SHIPPED_CHECKPOINT, export_weights, import_tf1, load_generator,
                                   inference_label, inference_meta, inference_settings,
                                   model_record, provenance, resolve)
    from deblur.config import NetworkConfig, TrainConfig
    from deblur.precision import gpu_note, precision_note
    from deblur.train import default_train_dir, train

    no_gpu = gpu_note(args.gpu)
    if no_gpu:
        print("NOTE: " + no_gpu, flush=True)
    slow = precision_note(args.precision) if args.phase in ("train", "test") else None
    if slow:
        print("NOTE: " + slow, flush=True)

    # CheckpointMismatch and TrainingDiverged are InputErrors: run_cli reports them, exit 2
    if args.phase == "train":
        train(TrainConfig.from_args(args))
    elif args.phase == "import":
        if not args.checkpoint:
            raise InputError("--phase import needs --checkpoint (the TF1 checkpoint)")
        out = import_tf1(args.checkpoint, args.output_path, levels=args.levels)
        print(f"Imported {args.checkpoint} -> {out}")
    elif args.phase == "export":
        if not args.checkpoint or not args.output_path.endswith(".npz"):
            raise InputError("--phase export needs --checkpoint SRC and --output_path FILE.npz")
        src = resolve(args.checkpoint)[1]
        ens, tau = inference_settings(src, _on(args.self_ensemble), args.sharp_guard)
        out = export_weights(src, args.output_path, extra=inference_meta(ens, tau))
        print(f"Exported the weights of {args.checkpoint} -> {out} "
              f"(float16{inference_label(ens, tau)})")
    else:
        from deblur.inference import Deblurrer, check_test_inputs, run_test
        from deblur.precision import set_precision

        path = args.checkpoint
        if path is None:
            # The original's location (e.g. the authors' both_1_256) when it is there,
            # otherwise the model this project ships.
            own = Path(default_train_dir(args.face, args.levels, args.patch_size))
            path = own if own.exists() else SHIPPED_CHECKPOINT
            if path == SHIPPED_CHECKPOINT:
                print(f"No --checkpoint and no {own}/: using the shipped model {path} "
                      f"(checkpoints/MODEL_CARD.md)")
        # the paths first (cheap): a wrong one must not wait for the model, nor leave results behind
        resolve(path)
        check_test_inputs(args.input_path, args.output_path, args.gt_path)
        set_precision(args.precision)
        # only the network flags given on the command line are compared with the checkpoint's
        # settings (a default is no request: no "using it instead of --face both" note for it)
        given = build_parser().given(argv)
        flags = {k: v for k, v in NetworkConfig.from_args(args).to_dict().items() if k in given}
        net, config, step = load_generator(path, flags)
        source = resolve(path)[1]
        print(f"Loaded {path} ({provenance(source, step)}): {config.to_dict()}")
        check_test_inputs(args.input_path, args.output_path, args.gt_path, config)  # its inputs, now known
        ens, tau = inference_settings(path, _on(args.self_ensemble), args.sharp_guard)
        if ens:
            print("Mirror self-ensemble (--self_ensemble off turns it off)")
        if tau:
            print(f"Sharp-frame guard {tau:g} grey levels (--sharp_guard 0 turns it off)")
        run_test(Deblurrer(net, config, transpose_portrait=not args.no_transpose,
                           jit_compile=args.xla, source=str(source), self_ensemble=ens,
                           sharp_guard=tau),
                 args.input_path, args.output_path, args.gt_path, args.skip_existing,
                 model=model_record(source, config, step, ens, tau))
    return 0


def _on(flag: str | None) -> bool | None:
    """--self_ensemble on|off|absent -> True|False|None (None: what the checkpoint stores)."""
    return None if flag is None else flag == "on"


if __name__ == "__main__":
    sys.exit(main())
