r"""Choose the sharp-frame guard's tau for a checkpoint on held-out frames.

The guard (deblur.inference.apply_sharp_guard) scales each frame's correction by
rms^2 / (rms^2 + tau^2). This runs the network once over every frame of a recipe's validation
segments (`<recipe>/datalist_val.txt`, at full size, as bench.validate_models does), keeps the
unrounded outputs, and scores each candidate tau: mean PSNR over frames (RGB, 8-bit, as
evaluate.py), leaving out frames whose blurry input already equals the sharp frame (their PSNR
is infinite before deblurring: no tau can be scored against them). Prints one line per tau and
the best; writes JSON.

    python -m bench.sharp_guard --recipe data/recipe_conf --checkpoint checkpoints/facedeblur.npz \
        --out bench/results/sharp_guard_shipped.json [--taus 0,0.5,1,1.5] [--self_ensemble]

Choose tau on frames that are not the ones it will be judged on (the model card chooses it on
the confirmation recipe and reports the validation recipe with it), then store it in the
checkpoint: `run_model.py --phase export --checkpoint C --output_path C2.npz --sharp_guard TAU`.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from common.cli import ArgumentParser, nonnegative_float

DEFAULT_TAUS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0)


def _taus(text: str) -> list[float]:
    try:
        taus = [nonnegative_float(t) for t in text.split(",") if t.strip()]
    except argparse.ArgumentTypeError as e:
        raise argparse.ArgumentTypeError(f"--taus: {e}") from None
    if not taus:
        raise argparse.ArgumentTypeError("--taus: give at least one value")
    return taus


def restore_segments(checkpoint, recipe: Path, segments, precision: str = "fp32",
                     self_ensemble: bool = False):
    """Yield (segment, frame name, blurry centre uint8, restored float32 HxWx3 in [0, 1], sharp
    uint8) for every frame of `segments`, the network run without the guard."""
    from common.fileio import read_image
    from deblur.checkpoint import load_generator
    from deblur.inference import Deblurrer, frame_names, read_inputs
    from deblur.precision import set_precision

    set_precision(precision)
    net, config, _ = load_generator(checkpoint, verbose=False)
    d = Deblurrer(net, config, source=str(checkpoint), self_ensemble=self_ensemble)
    for seg in segments:
        video = recipe / "training_set" / seg
        for name in frame_names(video):
            frames, render, coeff = read_inputs(video, name, config)
            restored = d.restore_batch([(frames, render, coeff)])[0]
            sharp = read_image(recipe / "dataset" / seg / "sharp" / name)
            yield seg, name, frames[len(frames) // 2], restored, sharp


def score_taus(frames, taus) -> dict:
    """{tau: (mean PSNR, frames scored)} over (blurry, restored, sharp) triples; frames whose
    blurry input equals the sharp frame are left out."""
    from common import metrics
    from deblur.inference import apply_sharp_guard

    sums = {t: [] for t in taus}
    for blurry, restored, sharp in frames:
        if np.array_equal(blurry, sharp):
            continue
        for t in taus:
            out = np.round(apply_sharp_guard(restored, blurry, t) * 255.0).astype(np.uint8)
            sums[t].append(metrics.psnr(out, sharp))
    return {t: (float(np.mean([v for v in vals if np.isfinite(v)])) if vals else None, len(vals))
            for t, vals in sums.items()}


def main(argv=None) -> int:
    from bench.validate_models import _val_segments
    from common.flags import add_precision_flag

    ap = ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", required=True, type=Path, help="output folder of `preprocess recipe`")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--taus", type=_taus, default=list(DEFAULT_TAUS),
                    help="comma-separated candidates in grey levels (0 = no guard)")
    ap.add_argument("--self_ensemble", action="store_true", help="the mirror self-ensemble too")
    ap.add_argument("--out", type=Path, default=Path("bench/out/sharp_guard.json"))
    add_precision_flag(ap, default="fp32")
    a = ap.parse_args(argv)
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    segments = _val_segments(a.recipe)
    t0 = time.time()
    triples = ((b, r, s) for _, _, b, r, s in restore_segments(a.checkpoint, a.recipe, segments,
                                                                 a.precision, a.self_ensemble))
    scores = score_taus(triples, a.taus)
    best = max((t for t in scores if scores[t][0] is not None), key=lambda t: scores[t][0])
    for t, (m, n) in scores.items():
        print(f"tau {t:5g}: PSNR {m:.3f} dB over {n} frames" + ("  <- best" if t == best else ""))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(command=" ".join(sys.argv), machine=platform.processor() or platform.machine(),
                precision=a.precision, checkpoint=str(a.checkpoint), self_ensemble=a.self_ensemble,
                segments=segments, seconds=round(time.time() - t0, 1))
    a.out.write_text(json.dumps(dict(meta=meta, best=best, scores={str(t): {"psnr": m, "frames": n}
                                                                    for t, (m, n) in scores.items()}),
                                indent=1) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
