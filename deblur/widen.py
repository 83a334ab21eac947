"""Function-preserving widening of a trained generator (Net2WiderNet, Chen et al., ICLR 2016).

Continues a network trained at `--channels c` as one of `--channels C >= c` that computes the
same function at the start: every feature channel of the wider network copies a channel of the
narrow one, and each layer's weights from copied inputs are split between the copies so they sum
to the original. The split is random per (input, output) pair rather than an even 1/k, so the
copies receive different gradients and can learn different features (an even split keeps them
identical forever). The 3D prior's channels (the render at full resolution, the coefficient
channel at the bottleneck) are not copied; they keep their place after the feature channels.

The arrays are TF1-named (`g_net/enc1_2/conv1/weights`, as `deblur.network.tf1_names`), so this
works on any checkpoint `deblur.checkpoint.load_generator` reads. Shapes: Conv2D kernels are
[k, k, in, out]; Conv2DTranspose kernels (`dec2_4`, `dec1_4`) are [k, k, out, in].
"""
from __future__ import annotations

import numpy as np

from common.fileio import InputError
from deblur.config import NetworkConfig
from deblur.network import SCOPE, image_channels, uses_coeff, uses_render


def channel_map(old: int, new: int, extra: int = 0) -> np.ndarray:
    """Old channel index of every new channel: [0..old) in place, then copies j mod old, then the
    `extra` prior channels (old + k -> new + k). Shape [new + extra], int."""
    if new < old:
        raise ValueError(f"cannot narrow {old} channels to {new}")
    return np.concatenate([np.arange(new) % old, old + np.arange(extra)])


def _split(mapping: np.ndarray, n_out: int, rng) -> np.ndarray:
    """[n_in_new, n_out] positive factors that sum to 1 over the copies of each old input."""
    u = rng.uniform(0.5, 1.5, size=(len(mapping), n_out))
    total = np.zeros((mapping.max() + 1, n_out))
    np.add.at(total, mapping, u)
    return u / total[mapping]


def _widen_kernel(w: np.ndarray, in_map, out_map, rng, transpose: bool = False) -> np.ndarray:
    """Kernel [k, k, in, out] ([k, k, out, in] if transpose) re-indexed by the maps (None = the
    axis keeps its size), inputs split between their copies."""
    if transpose:
        w = np.swapaxes(w, 2, 3)
    if in_map is not None:
        w = w[:, :, in_map, :] * _split(in_map, w.shape[3], rng)[None, None]
    if out_map is not None:
        w = w[:, :, :, out_map]
    return np.swapaxes(w, 2, 3) if transpose else w


# Single convolutions; every other layer of layer_streams is a ResBlock (conv1, conv2).
PLAIN_CONVS = ("enc1_1", "enc2_1", "enc3_1", "dec2_4", "dec1_4", "dec1_0")


def layer_streams() -> dict:
    """Layer name -> (input stream, output stream, transposed) for every conv of the generator.

    Streams: "image" (the stacked frames, or the restored frame: never widened), "s1" (enc1_1's
    output, full resolution), "s1r" (s1 plus the render's channels), "s2" (1/2 resolution),
    "s3" (enc3_1's output, 1/4) and "s3c" (s3 plus the coefficient channel)."""
    out = {"enc1_1": ("image", "s1", False), "enc2_1": ("s1r", "s2", False),
           "enc3_1": ("s2", "s3", False), "dec2_4": ("s3c", "s2", True),
           "dec1_4": ("s2", "s1r", True), "dec1_0": ("s1r", "image", False)}
    for k in (2, 3, 4):
        out[f"enc1_{k}"] = ("s1r", "s1r", False)
        out[f"enc2_{k}"] = ("s2", "s2", False)
        out[f"enc3_{k}"] = ("s3", "s3", False)
    for k in (1, 2, 3):
        out[f"dec3_{k}"] = ("s3c", "s3c", False)
        out[f"dec2_{k}"] = ("s2", "s2", False)
        out[f"dec1_{k}"] = ("s1r", "s1r", False)
    return out


def widen_arrays(arrays: dict, src: NetworkConfig, dst: NetworkConfig, seed: int = 0) -> dict:
    """TF1-named arrays of a `src` network -> arrays of the wider `dst` network, same function.

    Only `channels` may differ (dst.channels >= src.channels); anything else raises InputError.
    Not defined for the conv-LSTM model (its gates would need the same treatment; refused).
    Returns float32 arrays; the network they load into computes the source network's outputs up
    to float rounding (tests/deblur/test_widen.py checks < 1e-4 on random inputs).
    """
    other = [k for k in NetworkConfig.keys() if k != "channels" and getattr(src, k) != getattr(dst, k)]
    if other:
        raise InputError(f"widening changes only --channels; these differ: "
                         + ", ".join(f"{k} {getattr(src, k)} -> {getattr(dst, k)}" for k in other))
    if dst.channels < src.channels:
        raise InputError(f"cannot narrow a --channels {src.channels} network to {dst.channels}")
    if src.model == "lstm":
        raise InputError("widening the conv-LSTM model is not supported")
    C = image_channels(src.model)
    r = C if uses_render(src.face) else 0
    c = 1 if uses_coeff(src.face) else 0
    a, b = src.channels, dst.channels
    maps = {"image": None, "s1": channel_map(a, b), "s1r": channel_map(a, b, r),
            "s2": channel_map(2 * a, 2 * b), "s3": channel_map(4 * a, 4 * b),
            "s3c": channel_map(4 * a, 4 * b, c)}
    rng = np.random.default_rng(seed)
    out = {}
    for layer, (s_in, s_out, transpose) in layer_streams().items():
        for conv in ((None,) if layer in PLAIN_CONVS else ("conv1", "conv2")):
            prefix = f"{SCOPE}/{layer}" + (f"/{conv}" if conv else "")
            w = np.asarray(arrays[f"{prefix}/weights"], dtype=np.float32)
            bias = np.asarray(arrays[f"{prefix}/biases"], dtype=np.float32)
            out[f"{prefix}/weights"] = _widen_kernel(w, maps[s_in], maps[s_out], rng, transpose)
            out[f"{prefix}/biases"] = bias if maps[s_out] is None else bias[maps[s_out]]
    missing = sorted(set(arrays) - set(out))
    if missing:  # a layer this map does not know: better to stop than to drop weights
        raise InputError(f"widening does not know these arrays: {', '.join(missing[:6])}")
    return out
