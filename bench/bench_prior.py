"""3D prior without the BFM: the shipped ICT Face Model (and the test stand-in) against the
original BFM renders of ../shared/data/vd001 (issue 9's "done when" figures). Prints JSON.

    python -m bench.bench_prior [--frames 25] [--models ict,standin] [--figure PNG]

For each model: demo.py's fitting (`pipeline.run_coefficients`, dlib's 68 points, one identity
per clip, temporal smoothing) on the blurry frames with the clip's own five points
(vd001/face/) for the alignment crop, then demo_render.py (`pipeline.run_render`) into
dataset/vd001/face_render/. Each 224x224 render is compared with the authors' render of the same
frame and crop (vd001/face_render/, R-Net + BFM + tf_mesh_renderer): alpha IoU, SSIM of the grey
images and PSNR of RGB inside the common mask (`faceReconstruction.prior_metrics`), and the
NME of the 68 projected model landmarks against dlib's 68 points (both in crop coordinates,
normalised by dlib's outer-eye-corner distance). Means over the frames; wall times per frame.
--figure writes a comparison picture (under bench/out/, not committed: it shows vd001's frames):
blurry crop | original BFM render | ICT render of one frame.
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from common.cli import ArgumentParser  # noqa: E402
from faceReconstruction import align, pipeline  # noqa: E402
from faceReconstruction import bfm as B  # noqa: E402
from faceReconstruction.prior_metrics import compare_renders, landmark_nme  # noqa: E402
from common.fileio import read_coeff, read_image, read_points  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def make_dataset(root: Path, clip: Path, n: int) -> Path:
    """<root>/dataset/<clip>/{blurry,face}/ with the first n frames of the clip."""
    dst = root / "dataset" / clip.name
    for sub in ("blurry", "face"):
        (dst / sub).mkdir(parents=True)
        for f in sorted((clip / sub).iterdir())[:n]:
            shutil.copy(f, dst / sub / f.name)
    return root / "dataset"


def evaluate_model(clip: Path, work: Path, n: int, bfm=None, lm3d=None, log=lambda m: None) -> dict:
    """Fit + render the first n frames of `clip` with a model; compare with clip/face_render/.

    bfm None: the model demo.py would choose (the shipped ICT model when no BFM is installed).
    Returns the mean figures, per-frame lists, timings and the model's label.
    """
    data = make_dataset(work, clip, n)
    ts = work / "training_set"
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", B.StandinWarning)
        pipeline.run_coefficients(data, ts, pipeline.CoefficientConfig(bfm=bfm, lm3d=lm3d, landmarks="68"), log=log,
                                  progress=False)
        t1 = time.perf_counter()
        pipeline.run_render(ts, data, bfm=bfm, lm3d=lm3d, log=log, progress=False)
        t2 = time.perf_counter()
        path, _ = B.find_bfm(bfm)
        model = B.load_bfm(path)
    lm3d_pts = align.find_lm3d(lm3d, path, model, warn=False)
    from facePointDetection.landmarks68 import Predictor68

    predictor = Predictor68()
    rows = []
    for f in sorted((data / clip.name / "face").glob("*.txt")):
        ours = read_image(data / clip.name / "face_render" / f"{f.stem}.png", "RGBA")
        ref = read_image(clip / "face_render" / f"{f.stem}.png", "RGBA")
        img = read_image(clip / "blurry" / f"{f.stem}.png")
        pts5 = read_points(f)
        t, s = align.pos(pts5, lm3d_pts, img.shape[0])
        dlib68 = align.frame_to_crop(predictor(img, pts5), (img.shape[1], img.shape[0]), t, s) + 0.5
        coeff = read_coeff(ts / clip.name / "face" / f"{f.stem}.txt")
        proj = B.reconstruct(model, coeff)["landmarks68_uv"]
        rows.append({"frame": f.stem, **compare_renders(ours, ref), "nme": landmark_nme(proj, dlib68)})
    keys = ("iou", "ssim", "psnr", "nme")
    return {
        "model": model.label, "file": str(path), "frames": len(rows),
        **{k: round(float(np.mean([r[k] for r in rows])), 4) for k in keys},
        "min_iou": round(min(r["iou"] for r in rows), 4), "min_ssim": round(min(r["ssim"] for r in rows), 4),
        "fit_s_per_frame": round((t1 - t0) / len(rows), 3), "render_s_per_frame": round((t2 - t1) / len(rows), 3),
        "per_frame": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
    }


def figure(clip: Path, work: Path, frame: str, out: Path, lm3d) -> None:
    """blurry crop | original BFM render | ICT render of one frame, 224 px each, labelled."""
    img = read_image(clip / "blurry" / f"{frame}.png")
    crop, _, _ = align.align_crop(img, read_points(clip / "face" / f"{frame}.txt"), align.load_lm3d(lm3d))
    panels = [("vd001 frame (blurry crop)", crop),
              ("original BFM render (R-Net)", read_image(clip / "face_render" / f"{frame}.png")),
              ("3D prior (ICT Face Model)", read_image(work / "dataset" / clip.name / "face_render" / f"{frame}.png"))]
    band = 18
    canvas = Image.new("RGB", (224 * len(panels), 224 + band), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (label, arr) in enumerate(panels):
        canvas.paste(Image.fromarray(arr[..., :3]), (224 * i, band))
        draw.text((224 * i + 4, 3), label, fill="black")
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out, optimize=True)


def main(argv=None) -> int:
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clip", default=str(SHARED / "vd001"), help="clip with blurry/, face/, face_render/ (default vd001)")
    p.add_argument("--frames", type=int, default=25, help="first N frames (default: %(default)s)")
    p.add_argument("--models", default="ict,standin", help="comma list of ict, standin, bfm (default: %(default)s)")
    p.add_argument("--bfm", default=None, help="model file for 'bfm' (a user's BFM_model_front.mat)")
    p.add_argument("--figure", default=None, help="write the README picture here (frame --figure_frame)")
    p.add_argument("--figure_frame", default="00013", help="frame of the picture (default: %(default)s)")
    a = p.parse_args(argv)
    clip = Path(a.clip)
    lm3d = SHARED / "bfm_index" / "similarity_Lm3D_all.mat"
    if not (clip / "face_render").is_dir() or not lm3d.is_file():
        raise SystemExit(f"needs {clip}/face_render and {lm3d} (../shared)")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models.split(","):
            work = Path(tmp) / name
            if name == "ict":
                bfm = B.SHIPPED_MODEL
            elif name == "standin":
                bfm = B.write_standin_bfm(Path(tmp) / "standin.mat")
            elif name == "bfm":
                bfm = a.bfm
            else:
                raise SystemExit(f"unknown model {name!r}")
            results[name] = evaluate_model(clip, work, a.frames, bfm=bfm, lm3d=lm3d)
            if name == "ict" and a.figure:
                figure(clip, work, a.figure_frame, Path(a.figure), lm3d)
    summary = {k: {kk: v for kk, v in r.items() if kk != "per_frame"} for k, r in results.items()}
    print(json.dumps({"clip": str(clip), "results": summary,
                      "per_frame": {k: r["per_frame"] for k, r in results.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
