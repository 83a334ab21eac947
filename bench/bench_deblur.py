"""Speed and accuracy of the deblurring generator, every precision side by side, in ONE run.

Prints (and writes with --out) one JSON object:
* `params`: parameter count of the chosen flags;
* `forward`: per frame size and setting (fp32, fp32+xla, bf16, bf16+xla, fp16... as available):
  median ms over --repeats runs after --warmup runs, ratio to fp32, and PSNR of the setting's
  output against the fp32 output (same weights, same inputs);
* `train_step`: the same for one optimisation step (Adam, multi-scale MSE) on
  --train_batch x --train_patch^2 patches, plus the loss;
* `original_tf1_graph`: the fp32 forward time of an independent TF1/slim graph of the original
  generator (deblur/testing/tf1_oracle.py) holding the same weights, and each setting's ratio to it;
* `train_compare` (with --compare_steps N): final losses of N training steps run by the
  project's own training command from the same initial weights, fp32 vs each low precision.

Weights: with --weights DIR (or --train_weights N, which trains N steps on ../shared/data/vd001
with run_model.py first and caches the checkpoint in bench/out/), accuracy is the error users
would see; otherwise seeded random weights. Inputs: real vd001 frames resized to each size when
../shared is present, else seeded noise.

    python bench/bench_deblur.py                       # quick: fp32 vs available settings
    python bench/bench_deblur.py --train_weights 300 --compare_steps 200 --out bench/out/deblur.json
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from common.cli import ArgumentParser  # noqa: E402
from common import metrics  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "bench" / "out"


def parse():
    from deblur.config import add_face_flag

    p = ArgumentParser(description=__doc__.split("\n")[0])
    add_face_flag(p)
    p.add_argument("--levels", type=int, default=1)
    p.add_argument("--model", default="color")
    p.add_argument("--n_frames", type=int, default=5)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--sizes", default="336x352,720x1280", help="HxW list")
    p.add_argument("--settings", default="auto",
                   help="comma list of fp32,fp32+xla,bf16,bf16+xla,fp16,fp16+xla; auto = those "
                        "this machine supports")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--train_batch", type=int, default=4)
    p.add_argument("--train_patch", type=int, default=256)
    p.add_argument("--weights", default=None, help="checkpoint to use (native or TF1)")
    p.add_argument("--train_weights", type=int, default=0,
                   help="train this many steps on vd001 first (cached in bench/out/)")
    p.add_argument("--compare_steps", type=int, default=0,
                   help="also train N steps per precision from the same start and compare losses")
    p.add_argument("--compare_patch", type=int, default=128)
    p.add_argument("--no_original", action="store_true", help="skip the TF1 original graph")
    p.add_argument("--out", default=None, help="also write the JSON here")
    return p.parse_args()


def default_settings():
    from deblur.precision import cpu_has_bf16, gpu_kind

    s = ["fp32", "fp32+xla"]
    kind = gpu_kind()
    if kind == "bf16" or (kind is None and cpu_has_bf16()):
        s += ["bf16", "bf16+xla"]
    if kind is not None:
        s += ["fp16", "fp16+xla"]
    return s


def vd001_dataset(root: Path):
    """vd001 in the original layout with unwarped neighbours and STAND-IN priors (bench only)."""
    from deblur.testing import datasets as deblur_data

    if not (root / "datalist_train.txt").is_file():
        deblur_data.build(root, video="vd001", source=SHARED / "vd001", n=25)
    return root


def real_inputs(h, w, n_frames, seed=0):
    """Five consecutive vd001 blurry frames (+ a render stand-in) resized to HxW, in [0, 1]."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    src = SHARED / "vd001" / "blurry"
    if src.is_dir():
        names = sorted(src.glob("*.png"))[10:10 + n_frames]
        frames = [np.asarray(Image.open(p).convert("RGB").resize((w, h), Image.BICUBIC))
                  for p in names]
        blur = np.concatenate(frames, -1)[None].astype(np.float32) / 255
        sharp = np.asarray(Image.open(SHARED / "vd001" / "sharp" / names[n_frames // 2].name)
                           .convert("RGB").resize((w, h), Image.BICUBIC))
        render = (sharp[None].astype(np.float32) / 255) * 0.8
    else:
        blur = rng.random((1, h, w, 3 * n_frames), dtype=np.float32)
        render = rng.random((1, h, w, 3), dtype=np.float32)
    coeff = rng.normal(size=(1, 9, 9)).astype(np.float32)
    return {"blur": blur, "render": render, "coeff": coeff}


def build(setting, config, arrays):
    import keras

    from deblur.checkpoint import assign_by_name
    from deblur.network import build_network
    from deblur.precision import set_precision

    set_precision(setting.split("+")[0])
    net = build_network(config)
    assign_by_name(net, arrays, "bench weights")
    keras.config.set_dtype_policy("float32")
    return net


def timed(fn, repeats, warmup):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts) * 1000), [round(t * 1000, 1) for t in ts]


def psnr(a, b):
    """PSNR in dB of two network outputs, both clipped to the image range [0, 1]."""
    return metrics.psnr(np.clip(a, 0, 1), np.clip(b, 0, 1), data_range=1.0)


def select(x, face):
    from deblur.network import uses_coeff, uses_render

    return {k: v for k, v in x.items()
            if k == "blur" or (k == "render" and uses_render(face))
            or (k == "coeff" and uses_coeff(face))}


def bench_forward(settings, config, arrays, sizes, args):
    import tensorflow as tf

    res = {}
    for h, w in sizes:
        x = select(real_inputs(h, w, config.n_frames), config.face)
        key = f"{h}x{w}"
        res[key] = {}
        ref = None
        for s in settings:
            net = build(s, config, arrays)
            f = tf.function(lambda d, net=net: net(d, training=False),
                            jit_compile="+xla" in s)
            xt = {k: tf.constant(v) for k, v in x.items()}

            def run():
                out = f(xt)
                out = out[-1] if isinstance(out, (list, tuple)) else out
                return out.numpy()

            ms, all_ms = timed(run, args.repeats, args.warmup)
            y = run()
            if s == "fp32":
                ref = y
            res[key][s] = {"ms": round(ms, 1), "runs_ms": all_ms,
                           "psnr_vs_fp32_db": None if ref is None else round(psnr(y, ref), 2)}
            print(f"forward {key} {s}: {ms:.1f} ms", file=sys.stderr, flush=True)
        base = res[key].get("fp32", {}).get("ms")
        for s in res[key]:
            res[key][s]["ratio_to_fp32"] = round(res[key][s]["ms"] / base, 3) if base else None
    return res


def bench_train_step(settings, config, arrays, args):
    import tensorflow as tf

    from deblur.train import build_train_step, make_optimizer

    b, p = args.train_batch, args.train_patch
    x = select(real_inputs(p, p, config.n_frames, seed=1), config.face)
    x = {k: np.repeat(v, b, axis=0) for k, v in x.items()}
    y = x["blur"][..., 6:9] if config.n_frames == 5 else x["blur"][..., :3]
    res = {}
    for s in settings:
        net = build(s, config, arrays)
        opt, _ = make_optimizer(1e-4, 1000, s.split("+")[0])
        opt.build(net.trainable_variables)
        step = build_train_step(net, opt, jit_compile="+xla" in s)
        xt = {k: tf.constant(v) for k, v in x.items()}
        yt = tf.constant(y)
        ms, all_ms = timed(lambda: float(step(xt, yt)[0]), args.repeats, args.warmup)
        res[s] = {"ms": round(ms, 1), "runs_ms": all_ms}
        print(f"train step {b}x{p}^2 {s}: {ms:.1f} ms", file=sys.stderr, flush=True)
    base = res.get("fp32", {}).get("ms")
    for s in res:
        res[s]["ratio_to_fp32"] = round(res[s]["ms"] / base, 3) if base else None
    return res


def bench_original(config, arrays, sizes, args):
    """fp32 forward of the independent TF1/slim graph of the original, same weights."""
    import tensorflow as tf
    from deblur.testing import tf1_oracle

    v1 = tf.compat.v1
    res = {}
    for h, w in sizes:
        x = real_inputs(h, w, config.n_frames)
        graph = tf.Graph()
        with graph.as_default():
            pb, pr, pc = tf1_oracle._placeholders(1, h, w, model=config.model,
                                                  n_frames=config.n_frames)
            outs = tf1_oracle._generator(pb, pr, pc, face=config.face, levels=config.levels,
                                         model=config.model, n_frames=config.n_frames,
                                         channels=config.channels)
            assigns = [v.assign(arrays[v.op.name]) for v in v1.global_variables()
                       if v.op.name in arrays]
            with v1.Session(graph=graph) as sess:
                sess.run(assigns)
                feed = {pb: x["blur"], pr: x["render"], pc: x["coeff"]}
                ms, all_ms = timed(lambda: sess.run(outs[-1], feed), args.repeats, args.warmup)
        res[f"{h}x{w}"] = {"ms": round(ms, 1), "runs_ms": all_ms}
        print(f"original TF1 graph {h}x{w}: {ms:.1f} ms", file=sys.stderr, flush=True)
    return res


def train_weights(steps, config, data_root):
    """Train the full network on vd001 with the project's own training command (cached)."""
    import run_model

    ckdir = OUT / f"vd001_{config.face}_{config.channels}_{steps}"
    from deblur.checkpoint import native_checkpoints

    if not any(int(p.stem.split("-")[1]) >= steps for p in native_checkpoints(ckdir)):
        rc = run_model.main([
            "--phase", "train", "--datalist", str(data_root / "datalist_train.txt"),
            "--data_root", str(data_root / "dataset"), "--train_root",
            str(data_root / "training_set"), "--checkpoint_dir", str(ckdir),
            "--face", config.face, "--channels", str(config.channels),
            "--batch_size", "4", "--patch_size", "128", "--max_steps", str(steps),
            "--lr", "1e-4", "--save_every", str(steps), "--precision", "auto", "--gpu", "-1"])
        if rc != 0:
            raise SystemExit("training the bench weights failed")
    return ckdir


def train_compare(settings, config, data_root, init, steps, patch):
    import run_model
    from deblur.config import TrainConfig
    from deblur.train import train

    res = {}
    for s in [s for s in settings if "+xla" not in s]:
        ckdir = OUT / f"compare_{s}_{steps}"
        for p in ckdir.glob("deblur-*.npz"):
            p.unlink()
        args = run_model.parse_args([
            "--phase", "train", "--datalist", str(data_root / "datalist_train.txt"),
            "--data_root", str(data_root / "dataset"), "--train_root",
            str(data_root / "training_set"), "--checkpoint_dir", str(ckdir),
            "--face", config.face, "--channels", str(config.channels),
            "--batch_size", "4", "--patch_size", str(patch), "--max_steps", str(steps),
            "--save_every", str(steps), "--precision", s, "--init_checkpoint", str(init),
            "--gpu", "-1"])
        t = time.time()
        r = train(TrainConfig.from_args(args))
        losses = np.asarray(r["losses"])
        res[s] = {"final_loss_mean_last20": float(losses[-20:].mean()),
                  "first_loss": float(losses[0]), "seconds": round(time.time() - t, 1)}
        import keras

        keras.config.set_dtype_policy("float32")
    base = res.get("fp32", {}).get("final_loss_mean_last20")
    for s in res:
        if base:
            res[s]["rel_diff_to_fp32"] = round(abs(res[s]["final_loss_mean_last20"] - base) / base, 4)
    return res


def main():
    args = parse()
    import keras
    import tensorflow as tf

    from deblur.checkpoint import load_generator, network_arrays
    from deblur.config import NetworkConfig
    from deblur.network import build_network

    OUT.mkdir(parents=True, exist_ok=True)
    config = NetworkConfig.from_args(args)
    settings = default_settings() if args.settings == "auto" else args.settings.split(",")
    if "fp32" not in settings:
        settings = ["fp32"] + settings
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    data_root = vd001_dataset(OUT / "vd001_data") if (SHARED / "vd001").is_dir() else None

    weights_src = args.weights
    if args.train_weights:
        if data_root is None:
            raise SystemExit("--train_weights needs ../shared/data/vd001")
        weights_src = str(train_weights(args.train_weights, config, data_root))
    if weights_src:
        net, config, step = load_generator(weights_src, config)
        weights_desc = f"{weights_src} (step {step})"
    else:
        keras.utils.set_random_seed(0)
        net = build_network(config)
        weights_desc = "random (seed 0, Xavier-uniform)"
    arrays = network_arrays(net)

    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               "unknown")
    report = {
        "machine": {"cpu": cpu, "cores": os.cpu_count(),
                    "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
                    "tensorflow": tf.__version__, "keras": keras.__version__},
        "config": config.to_dict(), "params": int(net.count_params()), "weights": weights_desc,
        "inputs": "vd001 frames resized" if (SHARED / "vd001").is_dir() else "seeded noise",
        "repeats": args.repeats, "warmup": args.warmup, "settings": settings,
    }
    report["forward"] = bench_forward(settings, config, arrays, sizes, args)
    report["train_step"] = {f"{args.train_batch}x{args.train_patch}^2":
                            bench_train_step(settings, config, arrays, args)}
    if not args.no_original and config.model != "gray":
        orig = bench_original(config, arrays, sizes, args)
        for key, o in orig.items():
            o["ours_ratio_to_original"] = {s: round(v["ms"] / o["ms"], 3)
                                           for s, v in report["forward"][key].items()}
        report["original_tf1_graph"] = orig
    if args.compare_steps:
        if data_root is None:
            raise SystemExit("--compare_steps needs ../shared/data/vd001")
        init = OUT / "compare_init" / "deblur-0.npz"
        keras.utils.set_random_seed(1)
        from deblur.checkpoint import save_native

        save_native(init, build_network(config), 0)
        report["train_compare"] = {"steps": args.compare_steps,
                                   "batch": f"4x{args.compare_patch}^2",
                                   "runs": train_compare(settings, config, data_root, init,
                                                         args.compare_steps, args.compare_patch)}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
