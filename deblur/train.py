"""Training (`run_model.py --phase train`): the original `DEBLUR.train` with exact resume.

As the original: Adam, learning rate `lr` with polynomial decay (power 0.3) to 0 over
max_steps = epoch * len(datalist) // batch_size; loss = sum over scales of the MSE between each
scale's output and the sharp frame resized (TF1 bilinear) to that scale. Checkpoints go to
`checkpoints/<face>_<levels>_<patch>/` (native format, see deblur/checkpoint.py).

Added: exact resume (weights, Adam state, step, hence learning rate, and the data order, which
is a function of the step), keep-last-K checkpoints, TensorBoard scalars and images, a progress
bar, NaN detection (stop, keep the last good checkpoint), time limit, several GPUs through
MirroredStrategy, and mixed precision (deblur/precision.py).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from deblur import checkpoint as ckpt
from deblur.data import make_dataset, parse_datalist, validate
from deblur.network import build_generator, resize_bilinear_tf1
from preprocess.fileio import InputError


class TrainingDiverged(RuntimeError):
    pass


def default_train_dir(face, levels, patch_size) -> Path:
    return Path("checkpoints") / f"{face}_{levels}_{patch_size}"


def multiscale_loss(outputs, target):
    """Sum over scales of mean squared error to the target resized to each scale (float32)."""
    from keras import ops

    total = 0.0
    per_scale = []
    for out in outputs:
        out = ops.cast(out, "float32")
        gt = resize_bilinear_tf1(target, ops.shape(out)[1], ops.shape(out)[2])
        loss = ops.mean(ops.square(gt - out))
        per_scale.append(loss)
        total = total + loss
    return total, per_scale


def build_train_step(net, opt, strategy=None, jit_compile: bool = False):
    """One optimisation step as a tf.function: (inputs, target) -> (loss, per-scale losses,
    finest output). Losses are reduced over replicas under a distribution strategy."""
    import tensorflow as tf

    strategy = strategy or tf.distribute.get_strategy()

    def step_fn(x, y):
        with tf.GradientTape() as tape:
            outs = net(x, training=True)
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            loss, per_scale = multiscale_loss(outs, y)
            scaled = opt.scale_loss(loss) if hasattr(opt, "scale_loss") else loss
        grads = tape.gradient(scaled, net.trainable_variables)
        opt.apply_gradients(zip(grads, net.trainable_variables))
        return loss, per_scale, outs[-1]

    @tf.function(jit_compile=jit_compile)
    def train_step(x, y):
        loss, per_scale, out = strategy.run(step_fn, args=(x, y))
        reduce = lambda t: strategy.reduce(tf.distribute.ReduceOp.MEAN, t, axis=None)  # noqa: E731
        return reduce(loss), [reduce(p) for p in per_scale], out

    return train_step


def make_optimizer(lr: float, max_steps: int, precision: str):
    import keras

    schedule = keras.optimizers.schedules.PolynomialDecay(
        lr, decay_steps=max(1, max_steps), end_learning_rate=0.0, power=0.3)
    opt = keras.optimizers.Adam(learning_rate=schedule)
    if precision == "fp16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt, schedule


def train(args) -> dict:
    """Run training from parsed run_model.py arguments.

    Returns {"step", "max_steps", "loss", "losses" (this run's per-step totals), "checkpoint",
    "seconds", "precision"}.
    """
    import tensorflow as tf
    from tqdm import tqdm

    from deblur.precision import set_precision

    n_frames, face = args.n_frames, args.face
    samples = parse_datalist(args.datalist, args.data_root, args.train_root, n_frames, face)
    patches = validate(samples, face, args.patch_size, str(args.datalist))
    max_steps = int(args.epoch * len(samples) // args.batch_size)
    if args.max_steps:
        max_steps = int(args.max_steps)
    if max_steps < 1:
        raise InputError(f"{args.datalist}: {len(samples)} samples with batch {args.batch_size} "
                         f"and epoch {args.epoch} give no training step")
    train_dir = Path(args.checkpoint_dir or default_train_dir(face, args.levels, args.patch_size))
    train_dir.mkdir(parents=True, exist_ok=True)

    precision = set_precision(args.precision)
    gpus = tf.config.list_physical_devices("GPU")
    strategy = (tf.distribute.MirroredStrategy() if len(gpus) > 1
                else tf.distribute.get_strategy())
    config = dict(face=face, levels=args.levels, model=args.model, n_frames=n_frames,
                  channels=args.channels)
    import keras

    keras.utils.set_random_seed(args.seed)  # same initial weights for the same --seed
    with strategy.scope():
        net = build_generator(**config)
        opt, schedule = make_optimizer(args.lr, max_steps, precision)
        opt.build(net.trainable_variables)

    start = 0
    existing = ckpt.native_checkpoints(train_dir)
    if existing:
        weights, opt_state, meta = ckpt.read_native(existing[-1])
        if meta["config"] != config:
            raise InputError(f"{existing[-1]}: was trained with {meta['config']}, "
                             f"flags give {config}; use another --checkpoint_dir")
        ckpt.assign_by_name(net, weights, str(existing[-1]))
        ckpt.restore_optimizer(opt, opt_state, str(existing[-1]))
        start = int(meta["step"])
        print(f"Resuming from {existing[-1]} at step {start}")
    elif args.init_checkpoint:
        src_net, _, _ = ckpt.load_generator(args.init_checkpoint, dict(config), verbose=True)
        ckpt.assign_by_name(net, ckpt.network_arrays(src_net), str(args.init_checkpoint))
        print(f"Initialised weights from {args.init_checkpoint}")
    if start >= max_steps:
        print(f"Training already finished: step {start} of {max_steps}")
        return {"step": start, "max_steps": max_steps, "losses": [],
                "checkpoint": str(existing[-1]) if existing else None}
    end = min(max_steps, start + args.stop_after) if args.stop_after else max_steps

    ds = make_dataset(samples, patches, face=face, model=args.model, batch_size=args.batch_size,
                      patch_size=args.patch_size, seed=args.seed, start_step=start,
                      end_step=end)
    ds = strategy.experimental_distribute_dataset(ds)

    train_step = build_train_step(net, opt, strategy, jit_compile=bool(args.xla))
    validator = None
    if getattr(args, "val_datalist", None):
        from deblur.validate import Validator, load_validation

        val = load_validation(args.val_datalist, args.data_root, args.train_root, n_frames, face,
                              getattr(args, "val_frames", 0))
        validator = Validator(val, train_dir, getattr(args, "val_every", 1000))
        print(f"Validation: {len(val)} frames of {args.val_datalist} every {validator.every} steps "
              f"(blurry input: PSNR {val.psnr_blurry:.3f} dB, SSIM {val.ssim_blurry:.4f})")

    writer = tf.summary.create_file_writer(str(train_dir))
    meta_extra = {"max_steps": max_steps, "args": {k: (str(v) if isinstance(v, Path) else v)
                                                    for k, v in vars(args).items()}}

    def save(step):
        path = ckpt.save_native(train_dir / f"deblur-{step}.npz", net, config, step, opt,
                                extra=meta_extra)
        for old in ckpt.native_checkpoints(train_dir)[:-args.keep]:
            old.unlink()
        return path

    t0 = time.time()
    last_path = None
    bar = tqdm(total=max_steps, initial=start, desc="train", unit="step", dynamic_ncols=True)
    step = start
    losses = []
    loss_v = float("nan")
    for x, y in ds:
        t_step = time.time()
        loss, per_scale, out = train_step(x, y)
        loss_v = float(loss)
        if not math.isfinite(loss_v):
            bar.close()
            good = ckpt.native_checkpoints(train_dir)
            raise TrainingDiverged(
                f"loss became {loss_v} at step {step + 1}; stopped without saving. "
                f"Last good checkpoint: {good[-1] if good else 'none'} "
                f"(lower --lr or check the data)")
        step += 1
        losses.append(loss_v)
        dt = time.time() - t_step
        bar.update(1)
        bar.set_postfix(loss=f"{loss_v:.5f}", samples_s=f"{args.batch_size / max(dt, 1e-9):.1f}")
        if step % args.log_every == 0 or step == max_steps:
            with writer.as_default(step=step):
                tf.summary.scalar("loss_total", loss_v)
                for i, p in enumerate(per_scale):
                    tf.summary.scalar(f"loss_{i}", float(p))
                tf.summary.scalar("learning_rate", float(schedule(step)))
                if step % (args.log_every * 10) == 0:
                    local = strategy.experimental_local_results(out)[0]
                    tf.summary.image("out", tf.clip_by_value(local[..., :3], 0, 1), max_outputs=2)
        timed_out = args.time_limit and time.time() - t0 > args.time_limit
        validate_now = validator is not None and validator.due(step, step == end or bool(timed_out))
        if step % args.save_every == 0 or step == end or timed_out or validate_now:
            last_path = save(step)
        if validate_now:
            row = validator(net, step, time.time() - t0, last_path, writer)
            tqdm.write(f"step {step}: val PSNR {row['psnr']:.3f} dB (input {row['psnr_blurry']:.3f}), "
                       f"SSIM {row['ssim']:.4f} (input {row['ssim_blurry']:.4f})"
                       + (" [best]" if row.get("best") else ""))
        if timed_out:
            print(f"\nTime limit of {args.time_limit:.0f}s reached at step {step}; "
                  f"checkpoint {last_path}")
            break
    bar.close()
    writer.flush()
    summary = {"step": step, "max_steps": max_steps, "loss": loss_v, "checkpoint": str(last_path),
               "seconds": round(time.time() - t0, 1), "precision": precision}
    print(json.dumps(summary))
    return {**summary, "losses": losses}

