"""Training (`run_model.py --phase train`): the original `DEBLUR.train` with exact resume.

As the original: Adam, learning rate `lr` with polynomial decay (power 0.3) to 0 over
max_steps = epoch * len(datalist) // batch_size; loss = sum over scales of the MSE between each
scale's output and the sharp frame resized (TF1 bilinear) to that scale. `--loss psnr` (not in
the paper; NAFNet's PSNR loss) replaces each scale's batch MSE by the batch mean of each sample's
10 log10(MSE + eps), i.e. minus its PSNR in dB: the objective is then the metric validation
reports (mean PSNR over frames), which weights a sample by 1 / its MSE, so nearly sharp samples
are not left to the rounding error of the blurred ones (`multiscale_loss`). Checkpoints go to
`checkpoints/<face>_<levels>_<patch>/` (native format, see deblur/checkpoint.py).

Added: exact resume (weights, Adam state, step, hence learning rate, and the data order, which
is a function of the step), keep-last-K checkpoints, TensorBoard scalars and images, a progress
bar, NaN detection (stop, keep the last good checkpoint), time limit, several GPUs through
MirroredStrategy, and mixed precision (deblur/precision.py).

Settings that cannot work together (`check_settings`: --patch_size against --levels and
--face; --n_frames against the datalist's columns) are refused before any file is read.
A checkpoint is written only when it is good: its weights and optimizer state are finite, the
loss of the step that produced it is finite, and so is the loss of the saved weights on that
step's batch (finite weights can still overflow to inf/NaN outputs after a too-large step).
Resume takes the newest checkpoint that passes the same test (read back, finite, finite loss
on its batch); damaged or ruined newer ones are named and moved aside (`.damaged`,
`.nonfinite`), never deleted.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np

from deblur import checkpoint as ckpt
from deblur.data import make_dataset, parse_datalist, validate
from deblur.config import NetworkConfig, TrainConfig
from deblur.network import build_network, min_size, resize_bilinear_tf1, size_multiple, uses_coeff
from deblur.widen import widen_arrays
from common.fileio import InputError, atomic_path


class TrainingDiverged(InputError):
    """Training stopped on a non-finite loss or weights; nothing bad was saved. The settings
    (usually --lr) are the cause and a re-run with them diverges again, so it is reported like
    bad input (one line naming the last good checkpoint, exit status 2)."""


# Training arguments whose change on resume alters the run (reported, not refused: lowering
# --lr is the advised recovery after a divergence).
RUN_ARGS = ("lr", "batch_size", "patch_size", "seed", "datalist", "data_root", "train_root", "precision",
            "neighbour_dropout", "mirror", "loss")

LOSSES = ("mse", "psnr")

# The PSNR loss's floor: the variance of rounding to 8 bits, (1/255)^2 / 12 (59 dB). Frames are
# stored as 8-bit PNG, so an error below it is not an error the saved output can show, and
# without a floor a sample whose input already equals its target (an unblurred, noiseless
# segment under --residual) would get an unbounded weight 1 / MSE.
PSNR_LOSS_EPS = (1.0 / 255.0) ** 2 / 12.0


def check_settings(cfg: TrainConfig) -> None:
    """Refuse flag values that cannot work together, before any file is read.

    --patch_size must be a multiple of `size_multiple(levels)` (each scale is downsampled 4x
    by two stride-2 convolutions) and, when the identity coefficients are used (--face both or
    coeff), at least `min_size(levels)` = 36 * 2**(levels-1): below it the coarsest scale's
    bottleneck is smaller than the 9x9 identity patch, so the network would train on a cropped
    patch while testing (which pads frames to that size) sees all 81 values.
    With --val_every, --val_datalist or both --val_input_path and --val_gt_path are needed.
    Raises InputError naming the flag.
    """
    if cfg.val_every and not cfg.val_datalist:
        missing = [f"--{k}" for k in ("val_input_path", "val_gt_path") if not getattr(cfg, k)]
        if missing:
            raise InputError(f"--val_every {cfg.val_every} needs {' and '.join(missing)}")
    if not 0.0 <= cfg.neighbour_dropout <= 1.0:
        raise InputError(f"--neighbour_dropout must be a probability in [0, 1], got "
                         f"{cfg.neighbour_dropout}")
    if cfg.loss not in LOSSES:
        raise InputError(f"--loss must be one of {', '.join(LOSSES)}, got {cfg.loss!r}")
    if not 0.0 <= cfg.mirror <= 1.0:
        raise InputError(f"--mirror must be a probability in [0, 1], got {cfg.mirror}")
    if cfg.neighbour_dropout and cfg.network.n_frames < 2:
        raise InputError("--neighbour_dropout needs neighbour frames; this network has "
                         f"n_frames={cfg.network.n_frames}")
    for flag in ("batch_size", "patch_size", "save_every", "keep", "log_every"):
        v = getattr(cfg, flag)
        if v < 1:
            raise InputError(f"--{flag} must be at least 1, got {v}")
    levels, face, patch = cfg.network.levels, cfg.network.face, cfg.patch_size
    m = size_multiple(levels)
    if patch % m:
        raise InputError(f"--patch_size {patch} is not a multiple of {m}, which --levels {levels} "
                         f"needs (each of the {levels} scales is downsampled 4x); use "
                         f"{max(m, patch // m * m)} or {(patch // m + 1) * m}")
    lo = min_size(levels, face)
    if uses_coeff(face) and patch < lo:
        bott = patch // 2 ** (levels - 1) // 4
        raise InputError(
            f"--patch_size {patch} is below the minimum {lo} for --levels {levels} with --face "
            f"{face}: the coarsest scale's bottleneck would be {bott}x{bott}, so only the central "
            f"{min(bott, 9)}x{min(bott, 9)} of the 9x9 identity patch would reach the network "
            f"(testing pads frames to {lo} and sees all 81 values). Use --patch_size {lo} or more, "
            f"fewer --levels, or --face render/none")


def default_train_dir(face, levels, patch_size) -> Path:
    return Path("checkpoints") / f"{face}_{levels}_{patch_size}"


def multiscale_loss(outputs, target, kind: str = "mse"):
    """Training loss of a scale-recurrent network's outputs (float32): (total, per-scale list).

    outputs: one (N, H_s, W_s, C) image per scale, values in [0, 1]; target: (N, H, W, C), the
    sharp crop, resized (TF1 bilinear) to each scale. The total is the sum over scales of:
      kind "mse"  (the paper's, SRN-Deblur's) mean squared error over the batch;
      kind "psnr" the batch mean of 10 log10(MSE_i + PSNR_LOSS_EPS), MSE_i the mean squared error
                  of sample i: minus its PSNR in dB for peak 1 (NAFNet's PSNR loss), so a step
                  follows the gradient of the mean PSNR over samples, which weights each sample
                  by 1 / (MSE_i + eps) relative to "mse".
    Raises ValueError for another kind.
    """
    from keras import ops

    if kind not in LOSSES:
        raise ValueError(f"loss kind must be one of {LOSSES}, got {kind!r}")
    total = 0.0
    per_scale = []
    for out in outputs:
        out = ops.cast(out, "float32")
        gt = resize_bilinear_tf1(target, ops.shape(out)[1], ops.shape(out)[2])
        if kind == "mse":
            loss = ops.mean(ops.square(gt - out))
        else:
            mse = ops.mean(ops.square(gt - out), axis=(1, 2, 3))
            loss = ops.mean(ops.log(mse + PSNR_LOSS_EPS)) * (10.0 / math.log(10.0))
        per_scale.append(loss)
        total = total + loss
    return total, per_scale


def build_train_step(net, opt, strategy=None, jit_compile: bool = False, loss: str = "mse"):
    """One optimisation step as a tf.function: (inputs, target) -> (loss, per-scale losses,
    finest output); `loss` is multiscale_loss's kind. Losses are reduced over replicas under a
    distribution strategy."""
    import tensorflow as tf

    strategy = strategy or tf.distribute.get_strategy()

    def step_fn(x, y):
        with tf.GradientTape() as tape:
            outs = net(x, training=True)
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            loss_v, per_scale = multiscale_loss(outs, y, loss)
            scaled = opt.scale_loss(loss_v) if hasattr(opt, "scale_loss") else loss_v
        grads = tape.gradient(scaled, net.trainable_variables)
        opt.apply_gradients(zip(grads, net.trainable_variables))
        return loss_v, per_scale, outs[-1]

    @tf.function(jit_compile=jit_compile)
    def train_step(x, y):
        loss, per_scale, out = strategy.run(step_fn, args=(x, y))
        reduce = lambda t: strategy.reduce(tf.distribute.ReduceOp.MEAN, t, axis=None)  # noqa: E731
        return reduce(loss), [reduce(p) for p in per_scale], out

    return train_step


def make_optimizer(lr: float, max_steps: int, precision: str, power: float = 0.3):
    """Adam with the learning rate `lr * (1 - step / max_steps) ** power` (0 from max_steps on)."""
    import keras

    schedule = keras.optimizers.schedules.PolynomialDecay(
        lr, decay_steps=max(1, max_steps), end_learning_rate=0.0, power=power)
    opt = keras.optimizers.Adam(learning_rate=schedule)
    if precision == "fp16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt, schedule


def train(cfg: TrainConfig) -> dict:
    """Run the training described by `cfg` (run_model.py: `TrainConfig.from_args`).

    Returns {"step", "max_steps", "loss", "losses" (this run's per-step totals), "checkpoint",
    "seconds", "precision", "validation_log"} (with --val_every: one {"step", psnr, ssim, psnr_y,
    ssim_y, "frames"} per validation, ALL = mean over all validation frames, also written to
    TensorBoard as val/*; "validation" = the last one).
    """
    import tensorflow as tf
    from tqdm import tqdm

    from deblur.precision import set_precision

    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"train() takes a TrainConfig (TrainConfig.from_args(flags) for parsed "
                        f"run_model.py flags), got {type(cfg).__name__}")
    check_settings(cfg)
    config = cfg.network  # the one network configuration of this run
    n_frames, face = config.n_frames, config.face
    train_dir = Path(cfg.checkpoint_dir or default_train_dir(face, config.levels, cfg.patch_size))
    _check_resume_settings(train_dir, config)
    samples = parse_datalist(cfg.datalist, cfg.data_root, cfg.train_root, n_frames, face)
    patches = validate(samples, face, cfg.patch_size, str(cfg.datalist))
    max_steps = int(cfg.epoch * len(samples) // cfg.batch_size)
    if cfg.max_steps:
        max_steps = int(cfg.max_steps)
    if max_steps < 1:
        raise InputError(f"{cfg.datalist}: {len(samples)} samples with batch {cfg.batch_size} "
                         f"and epoch {cfg.epoch} give no training step")
    train_dir.mkdir(parents=True, exist_ok=True)

    precision = set_precision(cfg.precision)
    gpus = tf.config.list_physical_devices("GPU")
    strategy = (tf.distribute.MirroredStrategy() if len(gpus) > 1
                else tf.distribute.get_strategy())
    import keras

    keras.utils.set_random_seed(cfg.seed)  # same initial weights for the same --seed
    with strategy.scope():
        net = build_network(config)
        opt, schedule = make_optimizer(cfg.lr, max_steps, precision, cfg.lr_power)
        opt.build(net.trainable_variables)
    eval_loss = build_eval_loss(net, strategy, cfg.loss)
    validator = None
    if cfg.val_every:
        from deblur.inference import Validator

        n_val = cfg.val_frames or None
        if cfg.val_datalist:
            validator = Validator.from_datalist(cfg.val_datalist, cfg.data_root, cfg.train_root,
                                                config, max_frames=n_val)
        else:
            validator = Validator(cfg.val_input_path, cfg.val_gt_path, config, max_frames=n_val)
        blurry = validator.blurry()["all_frames"]
        print(f"Validation: {len(validator.items)} frames of {validator.source} every "
              f"{cfg.val_every} steps (blurry input: PSNR {blurry['psnr']:.3f} dB, "
              f"SSIM {blurry['ssim']:.4f})")

    def batch_of(step):
        """The (inputs, target) batch of 0-based `step` (batches are a function of seed, step)."""
        ds1 = make_dataset(samples, patches, face=face, model=config.model,
                           batch_size=cfg.batch_size, patch_size=cfg.patch_size,
                           seed=cfg.seed, start_step=step, end_step=step + 1,
                           neighbour_dropout=cfg.neighbour_dropout, mirror=cfg.mirror)
        return next(iter(strategy.experimental_distribute_dataset(ds1)))

    start = 0
    resumed = None
    if ckpt.native_checkpoints(train_dir):
        resumed, start = _resume(train_dir, net, opt, config, cfg, max_steps, eval_loss, batch_of)
    elif cfg.init_checkpoint:
        src_net, src_cfg, _ = ckpt.load_generator(cfg.init_checkpoint, config, verbose=False)
        src_arrays = ckpt.network_arrays(src_net)
        if src_cfg.channels < config.channels:
            # A narrower model continued at the wider --channels: Net2WiderNet, same function.
            wider = NetworkConfig.from_dict({**src_cfg.to_dict(), "channels": config.channels})
            src_arrays = widen_arrays(src_arrays, src_cfg, wider, seed=cfg.seed)
            print(f"note: {cfg.init_checkpoint} has --channels {src_cfg.channels}; widened to "
                  f"{config.channels} (every new channel copies one of the trained ones, so the "
                  f"network starts computing what the checkpoint did)")
            src_cfg = wider
        if src_cfg.face != config.face:
            # e.g. a --face none model continued as --face both: the prior's channels are new.
            # Widening would also accept a narrower network's weights, so the rest must agree.
            other = [f"{k}={getattr(src_cfg, k)}" for k in ("model", "n_frames", "channels")
                     if getattr(src_cfg, k) != getattr(config, k)]
            if other:
                raise InputError(f"{cfg.init_checkpoint}: trained with {', '.join(other)}; starting "
                                 f"a --face {config.face} run from a --face {src_cfg.face} model "
                                 f"needs the same network otherwise")
            widened = ckpt.assign_by_name(net, src_arrays, str(cfg.init_checkpoint),
                                          widen=ckpt.WIDEN_SCALE)
            print(f"note: {cfg.init_checkpoint} was trained with --face {src_cfg.face}; "
                  f"{len(widened)} arrays widened for --face {config.face} (the prior's "
                  f"channels start small and random)")
        else:
            ckpt.assign_by_name(net, src_arrays, str(cfg.init_checkpoint))
        if src_cfg.levels != config.levels:
            print(f"note: {cfg.init_checkpoint} was trained with levels={src_cfg.levels}; its "
                  f"weights (shared by all scales) start a --levels {config.levels} network")
        print(f"Initialised weights from {cfg.init_checkpoint}")
    if start >= max_steps:
        print(f"Training already finished: step {start} of {max_steps}")
        return {"step": start, "max_steps": max_steps, "losses": [],
                "checkpoint": str(resumed) if resumed else None}
    end = min(max_steps, start + cfg.stop_after) if cfg.stop_after else max_steps

    ds = make_dataset(samples, patches, face=face, model=config.model, batch_size=cfg.batch_size,
                      patch_size=cfg.patch_size, seed=cfg.seed, start_step=start,
                      end_step=end, neighbour_dropout=cfg.neighbour_dropout, mirror=cfg.mirror)
    ds = strategy.experimental_distribute_dataset(ds)

    train_step = build_train_step(net, opt, strategy, jit_compile=bool(cfg.xla), loss=cfg.loss)

    writer = tf.summary.create_file_writer(str(train_dir))
    meta_extra = {"max_steps": max_steps, "train_config": cfg.to_dict()}

    def last_good() -> str:
        good = ckpt.native_checkpoints(train_dir)
        return (f"Last good checkpoint: {good[-1]} (its weights and loss are finite); rerun with "
                f"a lower --lr and the same --checkpoint_dir to resume from it" if good else
                "No checkpoint was saved; rerun with a lower --lr (or check the data)")

    def save(step, x, y, loss_v):
        # Only a good state becomes a checkpoint: finite weights and optimizer state, and a
        # finite loss of the saved weights on the batch that produced them.
        bad = ckpt.nonfinite_arrays(ckpt.network_arrays(net))
        bad += ckpt.nonfinite_arrays({v.path: np.asarray(v) for v in opt.variables})
        checked = float(eval_loss(x, y)) if not bad else float("nan")
        if bad or not math.isfinite(checked):
            why = (f"{len(bad)} variable(s) hold NaN/inf ({', '.join(bad[:3])})" if bad else
                   f"the new weights give loss {checked} on their batch (training loss was {loss_v:.5g})")
            raise TrainingDiverged(f"training diverged at step {step}: {why}; not saved. {last_good()}")
        path = ckpt.save_native(train_dir / f"deblur-{step}.npz", net, step, opt,
                                extra={**meta_extra, "loss": loss_v, "checked_loss": checked})
        for old in ckpt.native_checkpoints(train_dir)[:-cfg.keep]:
            old.unlink()
        return path

    def run_validation(step):
        from deblur.inference import NonFiniteOutput, format_means

        try:
            doc = validator(net, config)
        except NonFiniteOutput as e:
            raise TrainingDiverged(f"validation at step {step}: {e}. {last_good()}") from None
        m = doc["all_frames"]
        with writer.as_default(step=step):
            for k in ("psnr", "ssim", "psnr_y", "ssim_y"):
                if m[k] is not None:
                    tf.summary.scalar(f"val/{k}", m[k])
            tf.summary.scalar("val/psnr_gain", m["psnr"] - blurry["psnr"])
        best = log_validation(train_dir, step, time.time() - t0, m, blurry, last_path)
        bar.write(f"validation at step {step}: " + format_means("ALL (all frames)", m).strip()
                  + f"; input PSNR {blurry['psnr']:.3f} dB" + (" [best -> best.npz]" if best else ""))
        val_log.append({"step": step, **m})

    val_log = []
    t0 = time.time()
    last_path = None
    bar = tqdm(total=max_steps, initial=start, desc="train", unit="step", dynamic_ncols=True)
    step = start
    losses = []
    loss_v = float("nan")
    try:
        for x, y in ds:
            t_step = time.time()
            loss, per_scale, out = train_step(x, y)
            loss_v = float(loss)
            if not math.isfinite(loss_v):
                raise TrainingDiverged(f"loss became {loss_v} at step {step + 1}; stopped without "
                                       f"saving. {last_good()}")
            step += 1
            losses.append(loss_v)
            dt = time.time() - t_step
            bar.update(1)
            bar.set_postfix(loss=f"{loss_v:.5f}", samples_s=f"{cfg.batch_size / max(dt, 1e-9):.1f}")
            if step % cfg.log_every == 0 or step == max_steps:
                with writer.as_default(step=step):
                    tf.summary.scalar("loss_total", loss_v)
                    for i, p in enumerate(per_scale):
                        tf.summary.scalar(f"loss_{i}", float(p))
                    tf.summary.scalar("learning_rate", float(schedule(step)))
                    if step % (cfg.log_every * 10) == 0:
                        local = strategy.experimental_local_results(out)[0]
                        tf.summary.image("out", tf.clip_by_value(local[..., :3], 0, 1), max_outputs=2)
            timed_out = cfg.time_limit and time.time() - t0 > cfg.time_limit
            validate_now = validator is not None and (step % cfg.val_every == 0 or step == end
                                                      or timed_out)
            if step % cfg.save_every == 0 or step == end or timed_out or validate_now:
                last_path = save(step, x, y, loss_v)
            if validate_now:
                run_validation(step)
            if timed_out:
                print(f"\nTime limit of {cfg.time_limit:.0f}s reached at step {step}; "
                      f"checkpoint {last_path}")
                break
    finally:
        bar.close()
        writer.flush()
    summary = {"step": step, "max_steps": max_steps, "loss": loss_v, "checkpoint": str(last_path),
               "seconds": round(time.time() - t0, 1), "precision": precision}
    if val_log:
        summary["validation"] = val_log[-1]
    print(json.dumps(summary))
    return {**summary, "losses": losses, "validation_log": val_log}


VALIDATION_FIELDS = ("step", "seconds", "psnr", "ssim", "psnr_y", "ssim_y", "psnr_blurry",
                     "ssim_blurry", "frames")


def log_validation(train_dir, step, seconds, m, blurry, checkpoint) -> bool:
    """Append one row to `<train_dir>/validation.csv` (means over all validation frames, the
    blurry input's beside them); copy `checkpoint` to `best.npz` when its PSNR is the best so
    far (also over earlier runs of the same folder). Returns whether it was the best."""
    import csv
    import shutil

    path = Path(train_dir) / "validation.csv"
    best_before = -math.inf
    if path.is_file():
        with path.open() as f:
            best_before = max((float(r["psnr"]) for r in csv.DictReader(f) if r.get("psnr")),
                              default=-math.inf)
    row = {"step": step, "seconds": f"{seconds:.1f}", "frames": m["frames"],
           "psnr_blurry": f"{blurry['psnr']:.4f}", "ssim_blurry": f"{blurry['ssim']:.4f}",
           **{k: f"{m[k]:.4f}" for k in ("psnr", "ssim", "psnr_y", "ssim_y")}}
    new = not path.is_file()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=VALIDATION_FIELDS)
        if new:
            w.writeheader()
        w.writerow(row)
    if checkpoint is None or m["psnr"] <= best_before:
        return False
    with atomic_path(Path(train_dir) / "best.npz") as tmp:
        shutil.copyfile(checkpoint, tmp)
    return True


def build_eval_loss(net, strategy=None, loss: str = "mse"):
    """Forward-only multiscale loss (`loss`: its kind) of the current weights on a batch
    (tf.function), reduced over replicas: the check that the weights about to be saved (or
    resumed) are usable."""
    import tensorflow as tf

    strategy = strategy or tf.distribute.get_strategy()

    def fn(x, y):
        outs = net(x, training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        return multiscale_loss(outs, y, loss)[0]

    @tf.function
    def eval_loss(x, y):
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, strategy.run(fn, args=(x, y)), axis=None)

    return eval_loss


def _check_resume_settings(train_dir, config) -> None:
    """Before any work: refuse flags that differ from the network settings stored in the
    newest readable checkpoint of `train_dir` (they would be refused at resume anyway)."""
    for path in reversed(ckpt.native_checkpoints(train_dir)):
        try:
            meta = ckpt.read_meta(path)
        except ckpt.CheckpointDamaged:
            continue  # reported (and skipped) when resuming
        _refuse_other_network(path, meta, config)
        return


def _refuse_other_network(path, meta, config) -> None:
    stored = ckpt.stored_config(path, meta)
    diff = stored.differences(config)
    if diff:
        raise InputError(
            f"{path}: was trained with " + " ".join(f"--{k} {getattr(stored, k)}" for k in diff)
            + ", the flags give " + " ".join(f"--{k} {getattr(config, k)}" for k in diff)
            + "; pass the checkpoint's values to resume it, or use another --checkpoint_dir")


def _resume(train_dir, net, opt, config, cfg: TrainConfig, max_steps, eval_loss, batch_of):
    """Load the newest good checkpoint of `train_dir` into (net, opt); returns (path, step).

    Newest first, a checkpoint is taken when it reads back, its weights and optimizer state
    are finite and the loss of its weights on the batch that produced it is finite; others are
    named and moved aside. A stored network setting that differs from the flags is refused
    (naming the flags); a changed training argument (--lr, --batch_size, ...) is reported.
    """
    newest = ckpt.native_checkpoints(train_dir)[-1]
    for path, weights, opt_state, meta in ckpt.usable_checkpoints(train_dir, set_aside=True):
        _refuse_other_network(path, meta, config)
        ckpt.assign_by_name(net, weights, str(path))
        ckpt.restore_optimizer(opt, opt_state, str(path))
        step = int(meta["step"])
        if step > 0:
            x, y = batch_of(step - 1)
            checked = float(eval_loss(x, y))
            if not math.isfinite(checked):
                os.replace(path, path.with_name(path.name + ".nonfinite"))
                print(f"warning: {path}: its weights give loss {checked} on the batch of step "
                      f"{step} (ruined by a diverging step); moved aside to {path.name}.nonfinite")
                continue
        if path != newest:
            print(f"note: falling back to {path.name}, the newest sound checkpoint")
        # checkpoints written before TrainConfig stored the command's flags as `args`
        old = meta.get("train_config") or meta.get("args") or {}
        for k in RUN_ARGS:
            if k in old and str(old[k]) != str(getattr(cfg, k)):
                print(f"note: resuming with --{k} {getattr(cfg, k)}; {path.name} was trained with "
                      f"--{k} {old[k]}")
        if meta.get("max_steps") not in (None, max_steps):
            print(f"note: the learning-rate schedule now decays over {max_steps} steps "
                  f"({path.name}'s run: {meta['max_steps']})")
        print(f"Resuming from {path} at step {step}")
        return path, step
    raise InputError(f"{train_dir}: no sound checkpoint left to resume from (the unusable ones "
                     f"were moved aside, see above); rerun to start from scratch, or use another "
                     f"--checkpoint_dir")
