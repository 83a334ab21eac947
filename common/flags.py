"""Flags shared by several commands: one definition each (name, choices, default, help).

Defaults, the same for every command that has the flag:
  --gpu -1         the CPU; a GPU (or several, comma separated) only when asked. The network is
                   small enough for CPUs and a default GPU id fails on machines without one.
  --flow dis       OpenCV DIS optical flow for neighbour alignment: ~100x faster than TV-L1 at a
                   similar accuracy (docs/preprocess.md, *Measured*); the video command and the
                   training-data recipe use it. `--flow tvl1` is the original's
                   (generateAlignments.m) for exact reproduction.
  --occlusion centre  neighbour pixels that fail the flow's forward-backward check take frame
                   t's (centre; preprocess/flow.py) or stay as warped (warp, the original); the
                   video command, the align stage and the recipe use the same.
  --precision      per command: training fp32 unless asked; inference (run_model.py --phase test,
                   deblur_video.py) auto, which is fp32 on CPUs without bf16 units. Choices PRECISIONS.
The `--face` choices are deblur/config.py's FACE_MODES (no Keras import), added by
deblur.config.add_face_flag.
"""
from __future__ import annotations

import argparse
import os

FLOW_METHODS = ("tvl1", "dis", "dis_fine")
DEFAULT_FLOW = "dis"
OCCLUSION_MODES = ("centre", "warp")
DEFAULT_OCCLUSION = "centre"
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
DEFAULT_GPU = "-1"


def gpu_ids(value: str) -> str:
    """argparse type of --gpu: '-1' (CPU) or comma-separated GPU ids ('0', '0,1')."""
    v = str(value).strip()
    if v == "-1" or (v and all(p.strip().isdigit() for p in v.split(","))):
        return v.replace(" ", "")
    raise argparse.ArgumentTypeError(f"--gpu {value!r}: expected -1 (CPU) or GPU ids such as 0 or 0,1")


def add_gpu_flag(parser, several: bool = False) -> None:
    more = " (several, e.g. 0,1: one replica per GPU)" if several else ""
    parser.add_argument("--gpu", type=gpu_ids, default=DEFAULT_GPU,
                        help=f"GPU id{more}; -1 = CPU (default -1: the CPU unless a GPU is asked for)")


def select_gpu(gpu: str) -> None:
    """Make only the --gpu devices visible to TensorFlow (call before importing it)."""
    os.environ["CUDA_VISIBLE_DEVICES"] = "" if str(gpu) == "-1" else str(gpu)


def add_flow_flag(parser) -> None:
    parser.add_argument("--flow", default=DEFAULT_FLOW, choices=FLOW_METHODS,
                        help=f"optical flow for --align flow (default {DEFAULT_FLOW}: fast; dis_fine: DIS "
                             "refined to full resolution, ~3.4x slower, more accurate, but the shipped "
                             "model does 0.4 dB worse with it; tvl1 is the original's, ~80x slower)")


def add_occlusion_flag(parser) -> None:
    parser.add_argument("--occlusion", default=DEFAULT_OCCLUSION, choices=OCCLUSION_MODES,
                        help="neighbour pixels that fail the forward-backward flow check (occluded or "
                             "outside the frame): centre = frame t's pixel instead (one more flow per "
                             f"neighbour), warp = kept as warped (the original); default {DEFAULT_OCCLUSION}")


def add_precision_flag(parser, default: str | None = "fp32", help_default: str | None = None) -> None:
    parser.add_argument("--precision", choices=PRECISIONS, default=default,
                        help=f"fp32, bf16/fp16 mixed precision, or auto (bf16 on AMX/AVX512-BF16 CPUs, "
                             f"mixed on GPUs, else fp32); default {help_default or default}")
