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
  step and the training arguments.
Files are written under a temporary name and renamed, so an interrupted save never leaves a
truncated checkpoint behind.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from deblur.network import build_generator, tf1_names
from preprocess.fileio import InputError, atomic_path

NATIVE_RE = re.compile(r"^deblur-(\d+)\.npz$")
# Variables of a TF1 training checkpoint that are not generator weights.
_TF1_IGNORED = re.compile(r"(/Adam(_\d+)?$|^beta[12]_power|^global_step|^Variable(_\d+)?$)")


class CheckpointMismatch(InputError):
    """A checkpoint whose variable names or shapes do not match the network."""


# ----------------------------------------------------------------------------- name-based loading

def assign_by_name(net, arrays: dict, source: str) -> None:
    """Assign arrays to the network's variables by TF1 name; stop on any mismatch.

    Reports every missing, unexpected and shape-mismatched name at once (BasicSR-style), so a
    user loading a checkpoint built with other flags sees what differs.
    """
    targets = tf1_names(net)
    missing = sorted(set(targets) - set(arrays))
    unexpected = sorted(set(arrays) - set(targets))
    mismatched = sorted(f"{k}: checkpoint {tuple(arrays[k].shape)} vs network {tuple(targets[k].shape)}"
                        for k in set(targets) & set(arrays)
                        if tuple(arrays[k].shape) != tuple(targets[k].shape))
    if missing or unexpected or mismatched:
        lines = [f"{source}: checkpoint does not match the network "
                 f"(face/levels/model/n_frames/channels flags?)"]
        for title, items in (("missing", missing), ("unexpected", unexpected),
                             ("shape mismatch", mismatched)):
            if items:
                lines.append(f"  {title} ({len(items)}): " + ", ".join(items[:12])
                             + (" ..." if len(items) > 12 else ""))
        raise CheckpointMismatch("\n".join(lines))
    for k, var in targets.items():
        var.assign(np.asarray(arrays[k], dtype=var.dtype))


def network_arrays(net) -> dict:
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


def save_native(path, net, config: dict, step: int, optimizer=None, extra: dict | None = None):
    """Write a native checkpoint atomically. `config` = build_generator keyword arguments."""
    payload = {f"weights/{k}": v for k, v in network_arrays(net).items()}
    if optimizer is not None:
        for v in optimizer.variables:
            payload[f"optimizer/{_opt_key(v.path)}"] = np.asarray(v)
    meta = {"format": "facedeblur-native-1", "config": config, "step": int(step), **(extra or {})}
    payload["meta"] = np.array(json.dumps(meta))
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **payload)
    return Path(path)


def export_weights(src, dst, dtype: str = "float16", extra: dict | None = None) -> Path:
    """Write an inference-only copy of a native checkpoint: weights (cast to `dtype`), no
    optimizer state, the stored meta plus `extra` (e.g. validation figures). Loads like any
    native checkpoint (weights are cast back to the network's float32 on assignment)."""
    weights, _, meta = read_native(src)
    meta = {**meta, **(extra or {}), "exported_from": Path(src).name, "weights_dtype": dtype}
    payload = {f"weights/{k}": np.asarray(v).astype(dtype) for k, v in weights.items()}
    payload["meta"] = np.array(json.dumps(meta))
    with atomic_path(dst, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **payload)
    return Path(dst)


def read_native(path) -> tuple[dict, dict, dict]:
    """Returns (weights by TF1 name, optimizer arrays by path, meta)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            weights = {k[len("weights/"):]: z[k] for k in z.files if k.startswith("weights/")}
            opt = {k[len("optimizer/"):]: z[k] for k in z.files if k.startswith("optimizer/")}
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"{path}: not a readable native checkpoint ({e})") from None
    return weights, opt, meta


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


def load_generator(path, config: dict | None = None, verbose: bool = True):
    """Build the generator matching a checkpoint and load its weights.

    `config` holds the flags the user gave (face, levels, model, n_frames, channels). For a
    native checkpoint the stored configuration wins over the flags (they are reported when they
    differ), except `levels`, which a checkpoint does not fix (the weights are shared by all
    scales). For a TF1 checkpoint the configuration is read off the variable shapes.
    Returns (net, config, step).
    """
    kind, p = resolve(path)
    config = dict(config or {})
    if kind == "native":
        weights, _, meta = read_native(p)
        stored = dict(meta["config"])
        step = int(meta.get("step", 0))
    else:
        weights, prefix = read_tf1_checkpoint(p)
        stored = infer_config_from_tf1(weights)
        m = re.search(r"-(\d+)$", prefix)
        step = int(m.group(1)) if m else 0
        p = Path(prefix)
    for k, v in stored.items():
        if k == "levels":
            continue
        if k in config and config[k] != v and verbose:
            print(f"note: checkpoint {p.name} was built with {k}={v}; using it instead of {config[k]}")
        config[k] = v
    config.setdefault("levels", stored.get("levels", 1))
    net = build_generator(**{k: config[k] for k in ("face", "levels", "model", "n_frames", "channels")
                             if k in config})
    assign_by_name(net, weights, str(p))
    return net, config, step


def import_tf1(src, dst, levels: int = 1) -> Path:
    """Convert a TF1 checkpoint into a native one (weights only, step kept)."""
    net, config, step = load_generator(src, {"levels": levels}, verbose=False)
    cfg = {k: config[k] for k in ("face", "levels", "model", "n_frames", "channels")}
    dst = Path(dst)
    if dst.suffix != ".npz":
        dst = dst / f"deblur-{step}.npz"
    return save_native(dst, net, cfg, step, extra={"imported_from": str(src)})
