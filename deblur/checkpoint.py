"""Checkpoints: the project's own format, and import of the authors' TF1 checkpoints.

The original (`DEBLUR.save/load` in `models/model.py`) keeps `tf.train.Saver` checkpoints in
`checkpoints/<face>_<levels>_<patch>/` (`checkpoint` + `deblur.model-N.index/.data-*`), with
variables named by TF1 scopes (`g_net/enc1_2/conv1/weights`). The authors released
`checkpoints/both_1_256/deblur.model-501000`.

Our native checkpoint is one `.npz` file, `deblur-<step>.npz`, holding
* `weights/<TF1 name>`: every generator variable under its original TF1 name (so a native and a
  TF1 checkpoint are loaded by the same name-by-name code, never by order);
* `optimizer/<path>`: the optimizer state (Adam moments, iteration count) for exact resume;
* `meta`: JSON with the network configuration (face, levels, model, n_frames, channels), the
  step and the training arguments; checkpoints written by training since issue 13 add
  `loss` (the training loss of the step that produced the weights) and `checked_loss` (the
  loss of the saved weights on that step's batch), both finite by construction. Files
  without them (written before) are read the same way.
Files are written under a temporary name, flushed to disk and renamed, so an interrupted save
(crash, kill, power loss) leaves the previous checkpoints intact. A file damaged afterwards
(truncated copy, full disk) is reported by name (`CheckpointDamaged`); one holding NaN/inf
values is refused (`CheckpointNotFinite`); `usable_checkpoints` finds the newest sound one.
"""
from __future__ import annotations

import json
import numbers
import os
import re
import zipfile
import zlib
from pathlib import Path

import numpy as np

from common.fileio import InputError, atomic_path, write_text
from deblur.config import LEGACY_DEFAULTS, NetworkConfig

# deblur.network (Keras) is imported inside the functions that build or read a network, so the
# file-level functions (resolve, read_meta, stored_config) serve the video command and tools
# that only read a checkpoint's settings without loading TensorFlow.

# The deblurring model this project trained and ships (checkpoints/MODEL_CARD.md): the default of
# run_model.py --phase test (when the original's checkpoints/<face>_<levels>_<patch>/ is absent),
# deblur_video.py and make demo.
SHIPPED_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "facedeblur.npz"
NATIVE_RE = re.compile(r"^deblur-(\d+)\.npz$")
# Variables of a TF1 training checkpoint that are not generator weights.
_TF1_IGNORED = re.compile(r"(/Adam(_\d+)?$|^beta[12]_power|^global_step|^Variable(_\d+)?$)")


class CheckpointMismatch(InputError):
    """A checkpoint whose variable names or shapes do not match the network."""


class CheckpointDamaged(InputError):
    """A checkpoint file that cannot be read (truncated, not a zip, missing entries)."""


class CheckpointNotFinite(InputError):
    """A checkpoint whose weights or optimizer state hold NaN or infinite values."""




# ----------------------------------------------------------------------------- name-based loading

# The prior's new channels start at this fraction of a fresh initialisation (assign_by_name's widen).
WIDEN_SCALE = 0.1


def assign_by_name(net, arrays: dict, source: str, widen: float | None = None) -> list[str]:
    """Assign arrays to the network's variables by TF1 name; stop on any mismatch.

    Reports every missing, unexpected and shape-mismatched name at once (BasicSR-style), so a
    user loading a checkpoint built with other flags sees what differs.

    `widen` loads a network trained without (some of) the 3D prior into one that uses it. The
    prior widens layers rather than adding any: the render makes every full-resolution block 3
    channels wider (`enc1_*`, `dec1_*`, `enc2_1`'s input), the coefficient channel the bottleneck
    blocks 1 wider (`dec3_*`, `dec2_4`'s input). Each array then only has to fit inside its
    variable: it is copied into the leading slice (the prior's channels come last, as
    concatenated) and the entries it does not cover keep the network's fresh initialisation
    times `widen`. At 0 the wider network computes exactly what the checkpoint's did (the prior
    is ignored), but its new channels could never learn (a zero-in, zero-out ReLU channel gets
    no gradient); WIDEN_SCALE (0.1) keeps it close to the checkpoint's function and trainable (Net2Net-style
    widening, Chen et al., ICLR 2016). Returns the names that were widened.
    """
    from deblur.network import tf1_names

    targets = tf1_names(net)
    missing = sorted(set(targets) - set(arrays))
    unexpected = sorted(set(arrays) - set(targets))

    def fits(a, t):
        if widen is None:
            return a == t
        return len(a) == len(t) and all(x <= y for x, y in zip(a, t))

    bad = sorted(f"{k}: checkpoint {tuple(arrays[k].shape)} vs network {tuple(targets[k].shape)}"
                 for k in set(targets) & set(arrays)
                 if not fits(tuple(arrays[k].shape), tuple(targets[k].shape)))
    if missing or unexpected or bad:
        lines = [f"{source}: checkpoint does not match the network "
                 f"(face/levels/model/n_frames/channels flags?)" if widen is None else
                 f"{source}: checkpoint cannot be widened into the network (only the 3D prior's "
                 f"channels may differ; face/levels/model/n_frames/channels flags?)"]
        for title, items in (("missing", missing), ("unexpected", unexpected),
                             ("shape mismatch" if widen is None else "larger than the network", bad)):
            if items:
                lines.append(f"  {title} ({len(items)}): " + ", ".join(items[:12])
                             + (" ..." if len(items) > 12 else ""))
        raise CheckpointMismatch("\n".join(lines))
    widened = []
    for k, var in targets.items():
        src = np.asarray(arrays[k], dtype=np.float32)
        if src.shape != tuple(var.shape):
            value = np.asarray(var.numpy(), dtype=np.float32) * widen
            value[tuple(slice(0, n) for n in src.shape)] = src
            src = value
            widened.append(k)
        var.assign(src.astype(var.dtype))
    return sorted(widened)


def network_arrays(net) -> dict:
    from deblur.network import tf1_names

    return {k: np.asarray(v) for k, v in tf1_names(net).items()}


# ----------------------------------------------------------------------------- TF1

def is_tf1_checkpoint(path) -> bool:
    p = Path(path)
    if p.is_dir():
        return (p / "checkpoint").is_file() or any(p.glob("*.index"))
    return Path(str(p) + ".index").is_file()


def read_tf1_checkpoint(path) -> tuple[dict, str]:
    """Read the `g_net/...` variables of a TF1 checkpoint (directory or prefix).

    Optimizer slots (`.../Adam`, `.../Adam_1`), `beta*_power` and `global_step` are ignored;
    any other variable outside `g_net/` is reported as unexpected by `assign_by_name`.
    Returns (name -> array, resolved prefix).
    """
    import tensorflow as tf

    p = Path(path)
    prefix = str(p)
    if p.is_dir():
        latest = tf.train.latest_checkpoint(str(p))
        if latest is not None and not Path(latest + ".index").is_file():
            # The `checkpoint` file of a released model names paths on the authors' machine;
            # as the original load(), use the basename inside this folder.
            latest = str(p / Path(latest).name)
            if not Path(latest + ".index").is_file():
                latest = None
        if latest is None:
            idx = sorted(p.glob("*.index"), key=_step_of)
            if not idx:
                raise InputError(f"{p}: no TF1 checkpoint found (no 'checkpoint' file or *.index)")
            latest = str(idx[-1])[: -len(".index")]
        prefix = latest
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.NotFoundError, tf.errors.DataLossError, ValueError) as e:
        raise InputError(f"{prefix}: cannot read TF1 checkpoint ({e.__class__.__name__}: "
                         f"{str(e).splitlines()[0]})") from None
    arrays = {}
    for name in reader.get_variable_to_shape_map():
        if _TF1_IGNORED.search(name):
            continue
        arrays[name] = reader.get_tensor(name)
    return arrays, prefix


def infer_config_from_tf1(arrays: dict) -> dict:
    """Read face/model/n_frames/channels off the variable shapes of a TF1 checkpoint."""
    k = arrays.get("g_net/enc1_1/weights")
    if k is None:
        raise InputError("checkpoint has no g_net/enc1_1/weights: not a checkpoint of this network")
    channels = int(k.shape[3])
    c_out = int(arrays["g_net/dec1_0/weights"].shape[3])
    n_frames = int(k.shape[2]) // (2 * c_out)
    w1r = int(arrays["g_net/enc1_2/conv1/weights"].shape[2])
    w3c = int(arrays["g_net/dec3_3/conv1/weights"].shape[2])
    render = w1r > channels
    coeff = w3c > 4 * channels
    face = {(True, True): "both", (True, False): "render", (False, True): "coeff",
            (False, False): "none"}[(render, coeff)]
    lstm = any("/convLSTM/" in n for n in arrays)
    model = "lstm" if lstm else ("gray" if c_out == 1 else "color")
    return dict(face=face, model=model, n_frames=n_frames, channels=channels)


# ----------------------------------------------------------------------------- native

def _step_of(path) -> int:
    m = re.search(r"-(\d+)(\.npz|\.index)?$", str(path))
    return int(m.group(1)) if m else -1


def native_checkpoints(directory) -> list[Path]:
    d = Path(directory)
    if not d.is_dir():
        return []
    return sorted((p for p in d.iterdir() if NATIVE_RE.match(p.name)), key=_step_of)


def save_native(path, net, step: int, optimizer=None, extra: dict | None = None):
    """Write a native checkpoint atomically and durably (flushed to disk before the rename).

    The meta's `config` is the network's own NetworkConfig (`net.deblur_config`, set by
    build_network) as a dict; `extra` = more meta entries (JSON types).
    """
    config = net.deblur_config.to_dict()
    payload = {f"weights/{k}": v for k, v in network_arrays(net).items()}
    if optimizer is not None:
        for v in optimizer.variables:
            payload[f"optimizer/{_opt_key(v.path)}"] = np.asarray(v)
    meta = {"format": "facedeblur-native-1", "config": config, "step": int(step), **(extra or {})}
    payload["meta"] = np.array(json.dumps(meta))
    with atomic_path(path, suffix=".npz", durable=True) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **payload)
    return Path(path)


def read_native(path) -> tuple[dict, dict, dict]:
    """Returns (weights by TF1 name, optimizer arrays by path, meta).

    Every array is read (and its CRC checked), so a truncated or corrupted file raises
    CheckpointDamaged naming it, never a zipfile/zlib traceback.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            weights = {k[len("weights/"):]: z[k] for k in z.files if k.startswith("weights/")}
            opt = {k[len("optimizer/"):]: z[k] for k in z.files if k.startswith("optimizer/")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        size = os.path.getsize(path) if os.path.isfile(path) else 0
        raise CheckpointDamaged(f"{path}: damaged checkpoint, cannot be read ({size} bytes; "
                                f"{e.__class__.__name__}: {e}) - truncated copy or full disk?") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise CheckpointDamaged(f"{path}: not a native checkpoint of this project (no config in meta)")
    return weights, opt, meta


def read_meta(path) -> dict:
    """Only the `meta` entry of a native checkpoint (cheap: the arrays are not read).
    Raises CheckpointDamaged naming the file when it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise CheckpointDamaged(f"{path}: damaged checkpoint, cannot be read "
                                f"({e.__class__.__name__}: {e})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise CheckpointDamaged(f"{path}: not a native checkpoint of this project (no config in meta)")
    return meta


def nonfinite_arrays(arrays: dict) -> list[str]:
    """Names of the arrays holding NaN or infinite values (floating arrays only)."""
    return sorted(k for k, v in arrays.items()
                  if np.issubdtype(np.asarray(v).dtype, np.floating) and not np.isfinite(v).all())


def check_finite(path, weights: dict, opt: dict | None = None) -> None:
    """Raise CheckpointNotFinite naming `path` and the first bad variables."""
    bad = nonfinite_arrays(weights) + [f"optimizer/{k}" for k in nonfinite_arrays(opt or {})]
    if bad:
        raise CheckpointNotFinite(
            f"{path}: {len(bad)} variable(s) hold NaN or infinite values ({', '.join(bad[:4])}"
            f"{' ...' if len(bad) > 4 else ''}); saved after training diverged - use an earlier "
            f"checkpoint")


def usable_checkpoints(directory, log=print, set_aside: bool = False):
    """Newest first: (path, weights, optimizer arrays, meta) of every sound native checkpoint.

    A generator: checkpoints are read one by one, newest first, and only as far as the caller
    goes. Damaged (unreadable) or non-finite ones are reported through `log` by name and
    skipped; with `set_aside` they are also renamed to `<name>.damaged` / `<name>.nonfinite`
    (kept for inspection, no longer found as checkpoints), which training resume does so the
    folder's newest checkpoint is a sound one again.
    """
    for p in reversed(native_checkpoints(directory)):
        try:
            weights, opt, meta = read_native(p)
            check_finite(p, weights, opt)
        except (CheckpointDamaged, CheckpointNotFinite) as e:
            tag = ".damaged" if isinstance(e, CheckpointDamaged) else ".nonfinite"
            msg = f"warning: {e}"
            if set_aside:
                os.replace(p, p.with_name(p.name + tag))
                msg += f"\n  moved aside to {p.name + tag}"
            log(msg)
            continue
        yield p, weights, opt, meta


def _opt_key(path: str) -> str:
    """Optimizer variable path without Keras' per-process uniquifier (`adam_2/` -> `adam/`),
    so a resumed run in a new or the same process finds the same names."""
    return "/".join(re.sub(r"^(adam|loss_scale_optimizer)_\d+$", r"\1", part)
                    for part in path.split("/"))


def restore_optimizer(optimizer, arrays: dict, source: str) -> None:
    """Assign saved optimizer variables by path (optimizer must be built for the network)."""
    own = {_opt_key(v.path): v for v in optimizer.variables}
    missing = sorted(set(own) - set(arrays))
    unexpected = sorted(set(arrays) - set(own))
    if missing or unexpected:
        raise CheckpointMismatch(f"{source}: optimizer state does not match "
                                 f"(missing {missing[:6]}, unexpected {unexpected[:6]})")
    for k, v in own.items():
        v.assign(np.asarray(arrays[k]).astype(v.dtype))


def resolve(path) -> tuple[str, Path]:
    """Classify a --checkpoint argument: ('native', file) or ('tf1', dir/prefix)."""
    p = Path(path)
    if p.is_file() and p.suffix == ".npz":
        return "native", p
    if p.is_dir():
        natives = native_checkpoints(p)
        if natives:
            return "native", natives[-1]
    if is_tf1_checkpoint(p):
        return "tf1", p
    raise InputError(f"{p}: no checkpoint found (expected deblur-<step>.npz, a directory of them, "
                     f"or a TF1 checkpoint directory/prefix with 'checkpoint' and *.index files)")


def stored_config(path, meta: dict) -> NetworkConfig:
    """The NetworkConfig a native checkpoint's meta stores (settings added later take their
    LEGACY_DEFAULTS value); CheckpointDamaged naming `path` when it is incomplete."""
    try:
        return NetworkConfig.from_dict(meta["config"])
    except (ValueError, TypeError) as e:
        raise CheckpointDamaged(f"{path}: the network settings it stores are unusable ({e})") from None


def load_generator(path, config: NetworkConfig | dict | None = None, verbose: bool = True, log=print):
    """Build the generator matching a checkpoint and load its weights.

    `config` holds the flags the user gave: a NetworkConfig, or a dict of some of its fields
    (e.g. {"levels": 3}). Every
    setting the checkpoint stores wins over the flags, the same way for all of them; each flag
    that differs is reported (`verbose`). A native checkpoint stores all five (`levels`
    included: the weights are shared by all scales, but a network trained with 3 levels gives
    other results with 1). A TF1 checkpoint's face/model/n_frames/channels are read off its
    variable shapes; its `levels` is not stored anywhere, so the flag is used and that is said.
    Refuses (InputError subclasses, naming the file) damaged checkpoints and ones with
    non-finite weights; for a folder whose newest checkpoint is unusable, the message names the
    newest sound one. Returns (net, NetworkConfig, step); `net.deblur_config` is that config.
    """
    kind, p = resolve(path)
    config = config.to_dict() if isinstance(config, NetworkConfig) else dict(config or {})
    if kind == "native":
        try:
            weights, _, meta = read_native(p)
            check_finite(p, weights)
        except (CheckpointDamaged, CheckpointNotFinite) as e:
            if Path(path).is_dir():
                sound = next(usable_checkpoints(path, log=lambda m: None), None)
                hint = (f"the newest sound checkpoint there is {sound[0]} (pass it as --checkpoint)"
                        if sound else "no other checkpoint there is sound")
                raise type(e)(f"{e}\n  {hint}") from None
            raise
        stored = stored_config(p, meta).to_dict()
        step = int(meta.get("step", 0))
    else:
        weights, prefix = read_tf1_checkpoint(p)
        stored = {**infer_config_from_tf1(weights), **LEGACY_DEFAULTS}  # the paper's network
        m = re.search(r"-(\d+)$", prefix)
        step = int(m.group(1)) if m else 0
        p = Path(prefix)
        check_finite(p, weights)
    for k in NetworkConfig.keys():
        if k in stored:
            if k in config and config[k] != stored[k] and verbose:
                log(f"note: checkpoint {p.name} stores {k}={stored[k]}; using it instead of "
                    f"--{k} {config[k]}")
            config[k] = stored[k]
    if "levels" not in stored:
        config.setdefault("levels", 1)
        if verbose:
            log(f"note: {p.name} is a TF1 checkpoint, which does not store the number of scales; "
                f"using --levels {config['levels']}")
    from deblur.network import build_network

    cfg = NetworkConfig.from_dict(config)
    net = build_network(cfg)
    assign_by_name(net, weights, str(p))
    return net, cfg, step


# What produced a folder of results: `run_model.py --phase test` writes it as
# <output_path>/model.json (deblur_video.py beside its --frames_out), evaluate.py reads it to
# label its table and report.
MODEL_RECORD = "model.json"


INFERENCE_DEFAULTS = {"self_ensemble": False, "sharp_guard": 0.0}


def check_sharp_guard(tau) -> float:
    """A sharp-frame guard tau (grey levels, 0 = off) as a float; ValueError unless it is a real
    number (not a bool or a string), finite and >= 0. The one rule for a given or a stored tau."""
    if isinstance(tau, bool) or not isinstance(tau, numbers.Real) or not (0 <= tau < float("inf")):
        raise ValueError(f"sharp_guard must be a number of grey levels >= 0 (0 = off), got {tau!r}")
    return float(tau)


def inference_label(self_ensemble: bool, sharp_guard: float) -> str:
    """", mirror self-ensemble, sharp-frame guard TAU" (the parts that apply): how a model was
    run, as result records and console lines name it."""
    return ((", mirror self-ensemble" if self_ensemble else "")
            + (f", sharp-frame guard {float(sharp_guard):g}" if sharp_guard else ""))


def stored_inference(path) -> dict:
    """How a checkpoint is meant to be run: {"self_ensemble": bool, "sharp_guard": tau}.

    A native file's `self_ensemble` and `sharp_guard` meta entries (set by `run_model.py --phase
    export --self_ensemble on --sharp_guard TAU`, chosen on held-out frames for those weights;
    checkpoints/MODEL_CARD.md); INFERENCE_DEFAULTS (plain network, no guard) for what has none:
    TF1 checkpoints, training checkpoints. Commands use these unless their flags say otherwise.
    CheckpointDamaged naming `path` when an entry has the wrong type.
    """
    kind, src = resolve(path)
    out = dict(INFERENCE_DEFAULTS)
    if kind != "native":
        return out
    meta = read_meta(src)
    ens = meta.get("self_ensemble", False)
    tau = meta.get("sharp_guard", 0.0)
    if not isinstance(ens, bool):
        raise CheckpointDamaged(f"{src}: its self_ensemble entry {ens!r} is not true or false")
    try:
        tau = check_sharp_guard(tau)
    except ValueError:
        raise CheckpointDamaged(f"{src}: its sharp_guard entry {tau!r} is not a number of grey "
                                f"levels >= 0") from None
    out.update(self_ensemble=ens, sharp_guard=tau)
    return out


def inference_settings(path, self_ensemble: bool | None = None,
                       sharp_guard: float | None = None) -> tuple[bool, float]:
    """(self-ensemble, sharp-frame guard tau) to run `path` with: each value given, else what
    the checkpoint stores (`stored_inference`). The one rule every command follows.
    ValueError for a given tau that is not a finite number >= 0."""
    if sharp_guard is not None:
        sharp_guard = check_sharp_guard(sharp_guard)
    stored = stored_inference(path)
    return (stored["self_ensemble"] if self_ensemble is None else bool(self_ensemble),
            stored["sharp_guard"] if sharp_guard is None else sharp_guard)


def inference_meta(self_ensemble: bool, sharp_guard: float) -> dict:
    """The meta entries `stored_inference` reads back (none for the defaults)."""
    out = {}
    if self_ensemble:
        out["self_ensemble"] = True
    if sharp_guard:
        out["sharp_guard"] = float(sharp_guard)
    return out


def model_record(path, config: NetworkConfig, step: int, self_ensemble: bool = False,
                 sharp_guard: float = 0.0) -> dict:
    """{"model": one line naming the checkpoint, "checkpoint", "step", "config", "shipped"}.

    The line says "the shipped model ..." for checkpoints/facedeblur.npz, so no result of it is
    presented as the authors' model or the other way round. With `self_ensemble` (the frames
    were deblurred mirrored too and averaged, deblur.inference.Deblurrer) the line says so and
    the record has "self_ensemble": true; with a `sharp_guard` tau > 0 (deblur.inference.
    apply_sharp_guard) the line names it and the record has "sharp_guard": tau. For a file made
    by deblur.interpolate the line names
    its two sources, their steps and alpha instead of the step (0), and the record has
    "interpolated" (the file's meta entry)."""
    p = Path(path)
    shipped = p.resolve() == SHIPPED_CHECKPOINT
    name = f"the shipped model {SHIPPED_CHECKPOINT.name} (checkpoints/MODEL_CARD.md)" if shipped else str(p)
    mix = _interpolation_of(p)
    line = f"{name}, {_provenance_line(mix, step)}, --face {config.face}, {config.channels} channels"
    extra = {}
    line += inference_label(self_ensemble, sharp_guard)
    if self_ensemble:
        extra["self_ensemble"] = True
    if sharp_guard:
        extra["sharp_guard"] = float(sharp_guard)
    if mix:
        extra["interpolated"] = mix
    return {"model": line, "checkpoint": str(p.resolve()), "step": int(step),
            "config": config.to_dict(), "shipped": shipped, **extra}


def provenance(path, step: int) -> str:
    """How a checkpoint's weights were reached, for logs and records: "step N", or for a file
    made by deblur.interpolate "weight interpolation 0.25 x A.npz (step 2500) + 0.75 x B.npz
    (step 5500)" (its own step, 0, would read as an untrained network)."""
    return _provenance_line(_interpolation_of(Path(path)), step)


def _provenance_line(mix: dict | None, step: int) -> str:
    if not mix:
        return f"step {int(step)}"
    return (f"weight interpolation {mix['alpha']:g} x {Path(mix['a']).name} (step {mix.get('a_step', '?')})"
            f" + {1 - mix['alpha']:g} x {Path(mix['b']).name} (step {mix.get('b_step', '?')})")


def _interpolation_of(p: Path) -> dict | None:
    """The `interpolated` meta entry (deblur.interpolate) of a native checkpoint file, else None.
    A file interpolated from two runs has step 0: naming its sources is what identifies it."""
    if p.suffix != ".npz" or not p.is_file():
        return None
    try:
        mix = read_meta(p).get("interpolated")
    except CheckpointDamaged:
        return None  # already loaded by the caller; a record is not the place to refuse it
    ok = isinstance(mix, dict) and {"a", "b", "alpha"} <= set(mix)
    return mix if ok else None


def write_model_record(folder, record: dict) -> Path:
    """Write `record` (model_record's) as `<folder>/model.json`, atomically."""
    path = Path(folder) / MODEL_RECORD
    write_text(path, json.dumps(record, indent=1) + "\n")
    return path


def read_model_record(folder) -> dict | None:
    """The record `model_record` wrote into a results folder, or None when there is none (or it
    is unreadable: results are then unlabelled, never mislabelled)."""
    f = Path(folder) / MODEL_RECORD
    try:
        rec = json.loads(f.read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and isinstance(rec.get("model"), str) else None


def export_weights(src, dst, dtype: str = "float16", extra: dict | None = None) -> Path:
    """Weights-only copy of a checkpoint for shipping: no optimizer state, arrays cast to `dtype`
    (float16 halves the size; loading casts back to the network's float32 variables, a change
    of at most 2**-11 relative per weight). The meta keeps the configuration, the step and
    `exported_from`; `extra` adds entries (e.g. the validation figures). Written atomically."""
    net, config, step = load_generator(src, {}, verbose=False)
    meta = {"format": "facedeblur-native-1", "config": config.to_dict(), "step": int(step),
            "exported_from": Path(src).name, "dtype": dtype, **(extra or {})}
    return write_weights(dst, network_arrays(net), meta, dtype, source=src)


def write_weights(dst, arrays: dict, meta: dict, dtype: str = "float16", source=None) -> Path:
    """A weights-only native checkpoint: `arrays` (by TF1 name) cast to `dtype`, `meta` as given,
    compressed, written atomically. CheckpointNotFinite naming `source` (or `dst`) when a weight
    does not fit `dtype`."""
    payload = {f"weights/{k}": np.asarray(v).astype(dtype) for k, v in arrays.items()}
    payload["meta"] = np.array(json.dumps(meta))
    bad = nonfinite_arrays(payload)
    if bad:
        raise CheckpointNotFinite(f"{source or dst}: {', '.join(bad[:4])} do not fit {dtype} (overflow)")
    with atomic_path(dst, suffix=".npz", durable=True) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **payload)
    return Path(dst)


def import_tf1(src, dst, levels: int = 1) -> Path:
    """Convert a TF1 checkpoint into a native one (weights only, step kept)."""
    net, _, step = load_generator(src, {"levels": levels}, verbose=False)
    dst = Path(dst)
    if dst.suffix != ".npz":
        dst = dst / f"deblur-{step}.npz"
    return save_native(dst, net, step, extra={"imported_from": str(src)})
