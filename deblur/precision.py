"""Numeric precision for the generator: fp32, bf16 or fp16 mixed precision, chosen or automatic.

Not in the original (TF1, fp32 only). Weights always stay float32 (checkpoints are unchanged);
with bf16/fp16 the convolutions run in the low-precision type (Keras `mixed_*` policies) and the
network's final outputs and the loss are float32 (see the `out*` layers of `build_generator`).

`auto` picks bf16 on CPUs whose flags report AMX-BF16 or AVX512-BF16 (oneDNN then runs bf16
convolutions on the AMX tiles), mixed precision on GPUs (bf16 where the GPU supports it, else
fp16), and fp32 everywhere else.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from common.flags import PRECISIONS
_POLICY = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU reports AMX-BF16 or AVX512-BF16 (Linux /proc/cpuinfo flags).

    The environment variable FACEDEBLUR_NO_BF16=1 forces False (to test the fallback, or to
    opt out on a machine where bf16 is slower).
    """
    if os.environ.get("FACEDEBLUR_NO_BF16") == "1":
        return False
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return bool(flags & {"amx_bf16", "avx512_bf16"})


def gpu_kind() -> str | None:
    """'bf16' when a visible GPU supports bf16 (compute capability >= 8), 'fp16' for older
    GPUs, None without a GPU."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    cc = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0))
    return "bf16" if cc and cc[0] >= 8 else "fp16"


def gpu_note(gpu: str) -> str | None:
    """The line to show when --gpu asked for GPUs TensorFlow cannot see (no GPU, no driver, or a
    CPU-only TensorFlow build; the run then uses the CPU), else None. Call after `select_gpu`."""
    import tensorflow as tf

    if str(gpu) == "-1" or tf.config.list_physical_devices("GPU"):
        return None
    return (f"--gpu {gpu}: TensorFlow sees no GPU on this machine (none installed, no driver, or a "
            f"CPU-only TensorFlow); running on the CPU")


def precision_note(precision: str, cpuinfo: str | None = None, on_gpu: bool | None = None) -> str | None:
    """The line to show when `precision` (a --precision value) asks for bf16/fp16 on a CPU that has
    no bf16 instructions (neither AMX-BF16 nor AVX512-BF16) and no GPU is used, else None.

    TensorFlow then emulates the low-precision convolutions: a width-32 training step (96 px,
    batch 8) took 77 s in bf16 against 4.9 s in fp32 + XLA on a 2-core AVX2-only AMD EPYC VM
    (2026-12-02, tqdm's step time of `run_model.py --phase train` after warm-up). `auto` never
    picks it there. `on_gpu` None asks TensorFlow whether a GPU is visible."""
    if precision not in ("bf16", "fp16") or cpu_has_bf16(cpuinfo):
        return None
    if on_gpu is None:
        on_gpu = gpu_kind() is not None
    if on_gpu:
        return None
    return (f"--precision {precision} on a CPU without AVX512-BF16 or AMX-BF16: TensorFlow emulates "
            f"it, many times slower than fp32 (a training step 77 s against 4.9 s measured); "
            f"use --precision auto or fp32 here")


def resolve_precision(precision: str, on_gpu: bool | None = None) -> str:
    """Map fp32|bf16|fp16|auto to a concrete fp32|bf16|fp16."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    kind = gpu_kind() if on_gpu is not False else None
    if kind is not None:
        return kind
    return "bf16" if cpu_has_bf16() else "fp32"


def set_precision(precision: str) -> str:
    """Set the global Keras dtype policy BEFORE building the network; returns the concrete one."""
    import keras

    p = resolve_precision(precision)
    keras.config.set_dtype_policy(_POLICY[p])
    return p


@contextlib.contextmanager
def precision_scope(precision: str):
    """`set_precision` for the networks built inside the block; the previous global policy after it.

    Layers keep the policy they were built with, so a generator built inside runs in the chosen
    precision afterwards, while a Keras model built later in the same process (MTCNN in a
    second `deblur_video` call, say) gets the default float32 again. Yields the concrete
    precision.
    """
    import keras

    before = keras.config.dtype_policy()
    try:
        yield set_precision(precision)
    finally:
        keras.config.set_dtype_policy(before)
