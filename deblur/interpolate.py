r"""Weight-space interpolation of two trained generators (not in the paper).

    theta = alpha * theta_a + (1 - alpha) * theta_b, per array, alpha in [0, 1]

WiSE-FT (Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022) interpolates a
fine-tuned network with the network it started from: when one run continues the other, the two
lie in one basin of the loss, and points between them often keep most of what the continuation
learned while giving back some of what it lost. Here the use is a width-32 continuation of the
shipped width-16 model (checkpoints/training/README.md) against that model.

Both checkpoints must be the same network (face, levels, model, n_frames, residual). Only
`channels` may differ: the narrower one is first widened to the wider one's width
(`deblur.widen.widen_arrays`, the same function). The widening splits weights at random, so a
continuation lies near the widening it started from and nowhere near another one:
`widen_seed` must be the `--seed` of the training run that widened it (`run_model.py --phase
train --init_checkpoint` widens with its `--seed`), and is required when the widths differ.
Any convex combination of two widenings of one network is itself a widening of it (the split
factors of each copied input still sum to 1), so alpha = 1 computes the narrow network's outputs
exactly, whatever the seed.

    python -m deblur.interpolate checkpoints/facedeblur.npz \
        checkpoints/training/wide32_v2/wide32_v2-5500-weights.npz --alpha 0.5 --widen_seed 2 \
        --out soup50.npz

The output is a weights-only native checkpoint (float32 unless `--dtype float16`) loadable
everywhere a checkpoint is; its meta records both sources (as given on the command line), their
steps, alpha and the seed under `interpolated`, and results of it say so (model.json:
`deblur.checkpoint.model_record`). Exit status 2 (one line naming the file) for an unreadable checkpoint or
settings that do not match.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from common.cli import ArgumentParser, run_cli
from common.fileio import InputError
from deblur.checkpoint import check_finite, read_native, resolve, stored_config, write_weights
from deblur.config import NetworkConfig


def interpolate_arrays(a: dict, b: dict, alpha: float) -> dict:
    """alpha * a + (1 - alpha) * b for every name; float32 arrays of the inputs' shapes.
    InputError when the names or shapes differ or alpha is outside [0, 1]."""
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha must be in [0, 1], got {alpha}")
    if set(a) != set(b):
        only = sorted(set(a) ^ set(b))
        raise InputError(f"the two networks have different arrays: {', '.join(only[:6])}")
    bad = [k for k in a if np.shape(a[k]) != np.shape(b[k])]
    if bad:
        raise InputError(f"array shapes differ: " + ", ".join(
            f"{k} {np.shape(a[k])} vs {np.shape(b[k])}" for k in sorted(bad)[:6]))
    return {k: (alpha * np.asarray(a[k], np.float32)
                + (1.0 - alpha) * np.asarray(b[k], np.float32)).astype(np.float32) for k in a}


def _read(path) -> tuple[dict, NetworkConfig, dict]:
    kind, p = resolve(path)
    if kind != "native":
        raise InputError(f"{path}: a native checkpoint (.npz) is needed; import a TF1 checkpoint "
                         f"first (run_model.py --phase import)")
    weights, _, meta = read_native(p)
    check_finite(p, weights)
    return weights, stored_config(p, meta), meta


def interpolate_checkpoints(path_a, path_b, alpha: float, widen_seed: int | None = None):
    """Read two native checkpoints and interpolate them (module docstring).

    Returns (arrays by TF1 name, NetworkConfig of the result, meta entry `interpolated`).
    InputError naming the files when the networks differ in anything but `channels`, or when
    the widths differ and `widen_seed` is None."""
    wa, ca, ma = _read(path_a)
    wb, cb, mb = _read(path_b)
    other = [k for k in NetworkConfig.keys() if k != "channels" and getattr(ca, k) != getattr(cb, k)]
    if other:
        raise InputError(f"{path_a} and {path_b} are different networks: "
                         + ", ".join(f"{k} {getattr(ca, k)} vs {getattr(cb, k)}" for k in other))
    if ca.channels != cb.channels:
        if widen_seed is None:
            raise InputError(f"{path_a} has {ca.channels} channels and {path_b} {cb.channels}: "
                             f"give --widen_seed, the --seed of the run that widened the narrower one")
        # imported here: deblur.widen reads the network's layout, which imports Keras and
        # TensorFlow (seconds, and C++ log lines even for --help)
        from deblur.widen import widen_arrays

        if ca.channels < cb.channels:
            wa, ca = widen_arrays(wa, ca, cb, seed=widen_seed), cb
        else:
            wb, cb = widen_arrays(wb, cb, ca, seed=widen_seed), ca
    record = {"a": str(path_a), "b": str(path_b), "alpha": float(alpha),
              "widen_seed": None if widen_seed is None else int(widen_seed),
              "a_step": int(ma.get("step", 0)), "b_step": int(mb.get("step", 0))}
    return interpolate_arrays(wa, wb, alpha), ca, record


def write_interpolated(path_a, path_b, alpha: float, out, widen_seed: int | None = None,
                       dtype: str = "float32") -> Path:
    """interpolate_checkpoints written as a weights-only native checkpoint at `out` (atomically).
    Its step is 0: it was not reached by training."""
    arrays, config, record = interpolate_checkpoints(path_a, path_b, alpha, widen_seed)
    meta = {"format": "facedeblur-native-1", "config": config.to_dict(), "step": 0,
            "dtype": dtype, "interpolated": record}
    return write_weights(out, arrays, meta, dtype)


def _main(argv=None) -> int:
    ap = ArgumentParser(prog="python -m deblur.interpolate",
                        description="alpha * A + (1 - alpha) * B of two generators' weights (WiSE-FT)")
    ap.add_argument("a", help="native checkpoint A (e.g. the model a run started from)")
    ap.add_argument("b", help="native checkpoint B (e.g. the run's result)")
    ap.add_argument("--alpha", type=float, required=True, help="weight of A, 0..1")
    ap.add_argument("--widen_seed", type=int, default=None,
                    help="when the widths differ: the --seed of the run that widened the narrower one")
    ap.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    out = write_interpolated(a.a, a.b, a.alpha, a.out, a.widen_seed, a.dtype)
    print(f"{out}: {a.alpha:g} x {a.a} + {1 - a.alpha:g} x {a.b}")
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv, prog="python -m deblur.interpolate")


if __name__ == "__main__":
    sys.exit(main())
