r"""Check: does handing the low frequencies back to the blurry input help the network's output?

Motion blur keeps a frame's local mean, so a deblurred frame should have the blurry frame's low
frequencies. This scores, against the sharp frame (PSNR, common.metrics), the network output
`out` and `out - G_s(out) + G_s(blurry)` (G_s: Gaussian of sigma s px, OpenCV, reflected border)
for several s, and s = 0 meaning a per-channel mean shift only. Two sets:

- `--recipe DIR`: every `--every`-th frame of the recipe's validation segments
  (`DIR/datalist_val.txt`), deblurred here with deblur.inference (fp32), per clip and overall;
- `--vd001 RESULTS`: the frames `run_model.py --phase test` wrote for vd001 (RESULTS/vd001/*.png)
  against `--vd001_dataset` (a dataset folder with vd001/blurry and vd001/sharp).

    python -m bench.low_frequency_check --checkpoint checkpoints/facedeblur.npz \
        --recipe data/recipe2 --every 4 --vd001 T/res --vd001_dataset T/dataset \
        --out bench/results/low_frequency_check.json

Also reports `bias`: the mean of output minus sharp frame in grey levels.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from common.cli import ArgumentParser

SIGMAS = (2.0, 4.0, 8.0, 16.0, 32.0, 0.0)


def low_frequency_fix(out: np.ndarray, blurry: np.ndarray, sigma: float) -> np.ndarray:
    """uint8 HxWx3: `out` with the low frequencies (Gaussian sigma px; 0: the per-channel mean)
    of `blurry`."""
    import cv2

    o, b = out.astype(np.float32), blurry.astype(np.float32)
    if sigma == 0:
        fixed = o - o.mean(axis=(0, 1)) + b.mean(axis=(0, 1))
    else:
        g = lambda x: cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)  # noqa: E731
        fixed = o - g(o) + g(b)
    return np.clip(np.round(fixed), 0, 255).astype(np.uint8)


def score(triples) -> dict:
    """Mean PSNR (dB) over (out, blurry, sharp) triples: blurry, out and each fix; mean bias."""
    from common import metrics

    rows = {"blurry": [], "output": [], **{f"sigma_{s:g}": [] for s in SIGMAS}}
    bias = []
    for out, blurry, sharp in triples:
        rows["blurry"].append(metrics.psnr(blurry, sharp))
        rows["output"].append(metrics.psnr(out, sharp))
        bias.append(float(out.astype(np.float64).mean() - sharp.astype(np.float64).mean()))
        for s in SIGMAS:
            rows[f"sigma_{s:g}"].append(metrics.psnr(low_frequency_fix(out, blurry, s), sharp))
    res = {k: round(float(np.mean(v)), 3) for k, v in rows.items()}
    return {"frames": len(bias), "psnr_db": res, "bias_grey_levels": round(float(np.mean(bias)), 2)}


def recipe_triples(recipe: Path, checkpoint: str, every: int) -> dict:
    from bench.validate_models import _clip_of, _val_segments
    from common.fileio import read_image
    from deblur.checkpoint import load_generator
    from deblur.inference import Deblurrer, frame_names, read_inputs
    from deblur.precision import set_precision

    set_precision("fp32")
    net, cfg, _ = load_generator(checkpoint, verbose=False)
    deblurrer = Deblurrer(net, cfg)
    by_clip: dict = {}
    for seg in _val_segments(recipe):
        for name in frame_names(recipe / "training_set" / seg)[::every]:
            frames, render, coeff = read_inputs(recipe / "training_set" / seg, name, cfg)
            out = deblurrer.deblur(frames, render, coeff)
            by_clip.setdefault(_clip_of(seg), []).append(
                (out, frames[len(frames) // 2], read_image(recipe / "dataset" / seg / "sharp" / name)))
    return by_clip


def main(argv=None) -> int:
    ap = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="checkpoints/facedeblur.npz")
    ap.add_argument("--recipe", type=Path)
    ap.add_argument("--every", type=int, default=4)
    ap.add_argument("--vd001", type=Path, help="run_model.py --phase test output folder holding vd001/")
    ap.add_argument("--vd001_dataset", type=Path, help="dataset folder holding vd001/blurry and vd001/sharp")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    from common.fileio import read_image

    res = {"checkpoint": a.checkpoint, "sigmas_px": list(SIGMAS)}
    if a.recipe:
        by_clip = recipe_triples(a.recipe, a.checkpoint, a.every)
        res["validation"] = {"every": a.every, "all": score([t for v in by_clip.values() for t in v]),
                             "clips": {c: score(v) for c, v in by_clip.items()}}
        print("validation", json.dumps(res["validation"]["all"]))
    if a.vd001:
        trip = [(read_image(p), read_image(a.vd001_dataset / "vd001" / "blurry" / p.name),
                 read_image(a.vd001_dataset / "vd001" / "sharp" / p.name))
                for p in sorted((a.vd001 / "vd001").glob("*.png"))]
        res["vd001"] = {"results": str(a.vd001), **score(trip)}
        print("vd001", json.dumps(res["vd001"]))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
