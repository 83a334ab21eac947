"""The two 3D-prior stages of the pipeline: coefficients (`demo.py`) and renders (`demo_render.py`).

Correspond to the original `demo.py` and `demo_render.py` of rwenqi/3Dfacedeblurring (same
folder layout and file formats; the top-level scripts are thin CLIs around `demo_main` and
`render_main`).

demo.py (`run_coefficients`), per video `<input_path>/<video>/`:
  reads  blurry/NNNNN.png + face/NNNNN.txt (five `x y` rows), optionally face68/NNNNN.txt
  writes <output_path>/<video>/face/NNNNN.txt, one row of 239 (or 257) coefficients.
  With `--type gt` the sharp frames are used: sharp/NNNNN.png + faceGT/NNNNN.txt (face/ when
  there is no faceGT/; blurry and sharp frames are aligned pairs) -> <output>/<video>/faceGT/.
  Coefficients come from the R-Net (`--rnet model.pb`) as in the original, or, without it,
  from fitting the morphable model to landmarks and colours (`fit.py`).
demo_render.py (`run_render`), per coefficient file `<coeff_path>/<video>/face/NNNNN.txt`:
  writes <coeff_path>/<video>/face_render/NNNNN.png (224x224 RGBA, binary alpha) and
  <coeff_path>/<video>/render/NNNNN.png (the render restored into the frame, RGB, black
  background), using the frame size and five points of <data_path>/<video>/{blurry,face}/.
  (The original wrote face_render/ under dataset/<video>/; the datalist only names render/.)
"""
from __future__ import annotations

import argparse
import sys
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from preprocess.fileio import (InputError, read_coeff, read_image, read_points, write_coeff,
                               write_image)
from preprocess.parallel import chunks, run_tasks

from faceReconstruction import align
from faceReconstruction import bfm as bfm_mod

CHUNK = 8
# A 68-point detection is used only when its five derived points agree with the five-point
# file: mean distance <= 0.2, max <= 0.4 inter-ocular distances (dlib's eye centres and mouth
# corners differ from a CNN cascade's by about 0.05-0.2 on vd001's blurry frames).
AGREE_MEAN, AGREE_MAX = 0.2, 0.4


@lru_cache(maxsize=4)
def _load_bfm_quiet(path: str):
    """Load a model once per process; the stand-in warning is given once by the main process."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bfm_mod.StandinWarning)
        return bfm_mod.load_bfm(path)


def resolve_model(bfm_path=None, lm3d_path=None, log=print):
    """(model path, loaded BFM, (5, 3) alignment points); shouts when the model is a stand-in."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bfm_mod.StandinWarning)
        path, standin = bfm_mod.find_bfm(bfm_path)
    if standin:
        log(f"WARNING: {bfm_mod.STANDIN_MESSAGE} ({path}). Coefficients and renders are NOT "
            "Basel Face Model ones; put BFM_model_front.mat in ./faceReconstruction/BFM/ or pass --bfm.")
    model = _load_bfm_quiet(str(path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lm3d = align.find_lm3d(lm3d_path, path, model)
    for w in caught:
        log(f"WARNING: {w.message}")
    return path, model, lm3d


# --------------------------------------------------------------------------------------------
# demo.py: coefficients


def _frame_size(path) -> tuple[int, int]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: image file not found")
    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(f"{path}: cannot read image ({e})") from None


def _video_frames(video: Path, kind: str):
    """[(stem, image path, five-point path, 68-point path or None)] of a video, sorted."""
    if kind == "in":
        lm_dir, img_dir = video / "face", video / "blurry"
    else:
        lm_dir = video / "faceGT" if (video / "faceGT").is_dir() else video / "face"
        img_dir = video / "sharp"
    files = sorted(p for p in lm_dir.glob("*.txt") if not p.name.startswith("."))
    if not files:
        raise InputError(f"{lm_dir}: no landmark files (NNNNN.txt) in this folder")
    out = []
    for f in files:
        lm68 = video / "face68" / f.name
        out.append((f.stem, img_dir / f"{f.stem}.png", f, lm68 if kind == "in" and lm68.is_file() else None))
    return out


@lru_cache(maxsize=1)
def _predictor68():
    from facePointDetection.landmarks68 import Predictor68

    return Predictor68()


def _landmarks68(img, pts5, lm68_path, mode):
    """68 points (68, 2) in frame pixels agreeing with the five points, or None."""
    if mode == "5":
        return None
    if lm68_path is not None:
        pts = read_points(lm68_path, n=68)
    else:
        try:
            pts = _predictor68()(img, pts5)
        except InputError:
            if mode == "68":
                raise
            return None
    iod = max(np.linalg.norm(pts5[1] - pts5[0]), 1.0)
    err = np.linalg.norm(align.five_from_68(pts) - pts5, axis=1) / iod
    if err.mean() > AGREE_MEAN or err.max() > AGREE_MAX:
        return None
    return pts


def _prepare_chunk(task):
    """Read, align and (optionally) get 68 points for a chunk of frames (worker task)."""
    frames, lm3d, mode = task
    out = []
    for stem, img_path, lm_path, lm68_path in frames:
        img = read_image(img_path)
        pts5 = read_points(lm_path, image_size=(img.shape[1], img.shape[0]))
        crop, t, s = align.align_crop(img, pts5, lm3d)
        size = (img.shape[1], img.shape[0])
        pts = _landmarks68(img, pts5, lm68_path, mode)
        pts = pts5 if pts is None else pts
        # Frame pixels -> crop pixels -> projection coordinates (+0.5, see align.py).
        uv = align.frame_to_crop(pts, size, t, s) + 0.5
        out.append(dict(stem=stem, crop=crop, t=t, s=s, size=size, uv=uv))
    return out


def _color_chunk(task):
    from faceReconstruction import fit

    bfm_path, items, n_sh = task
    model = _load_bfm_quiet(bfm_path)
    return [fit.fit_color(model, crop, *geom, n_sh=n_sh) for crop, geom in items]


def _has_bfm() -> bool:
    """Whether find_bfm would find a real model file (without generating a stand-in)."""
    root = Path(__file__).resolve().parents[1]
    return any((base / rel / bfm_mod.MODEL_NAME).is_file() for base in (Path.cwd(), root)
               for rel in (Path("faceReconstruction") / "BFM", Path("BFM")))


def convert_coeff(coeff, n_coeff: int) -> np.ndarray:
    """Convert (T, 239|257) coefficients to n_coeff: 27 RGB SH -> 9 mono (mean), or repeated."""
    c = np.asarray(coeff, np.float64)
    if c.shape[1] == n_coeff:
        return c
    p = bfm_mod.split_coeff(c)
    g = p["gamma"]
    gamma = g.reshape(len(c), 3, 9).mean(1) if n_coeff == 239 else np.tile(g, (1, 3))
    return np.concatenate([p["id"], p["ex"], p["tex"], p["angles"], gamma, p["trans"]], axis=1)


def run_coefficients(input_path="./dataset", output_path="./training_set", bfm=None, lm3d=None, rnet=None,
                     rnet_input="input_imgs:0", rnet_output="coeff:0", kind="in", jobs=1, smooth=None,
                     n_coeff=239, landmarks="auto", shared_id=True, overwrite=False, batch_size=16,
                     log=print, progress=True) -> dict:
    """Write `<output_path>/<video>/face|faceGT/NNNNN.txt` for every video of `input_path`.

    smooth: Gaussian sigma in frames over the clip (default 1 for fitting, 0 for the R-Net).
    landmarks: 'auto' (68 points from face68/ or dlib when they agree with the five points,
    else the five), '68' (dlib required) or '5'. Videos whose outputs all exist are skipped
    unless overwrite. Returns {video name: number of frames written}.
    """
    if kind not in ("in", "gt"):
        raise ValueError("kind must be 'in' (blurry frames) or 'gt' (sharp frames)")
    if n_coeff not in (239, 257):
        raise ValueError("n_coeff must be 239 or 257")
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.is_dir():
        raise InputError(f"{input_path}: input dataset folder not found")
    sub = "face" if kind == "in" else "faceGT"
    videos = sorted(d for d in input_path.iterdir()
                    if d.is_dir() and ((d / "face").is_dir() or (kind == "gt" and (d / "faceGT").is_dir())))
    if not videos:
        raise InputError(f"{input_path}: no <video>/face/ folder inside (expected "
                         f"{input_path}/<video>/face/00001.txt and <video>/blurry/00001.png)")
    net = None
    if rnet is not None:
        from faceReconstruction.rnet import RNet

        net = RNet(rnet, rnet_input, rnet_output, batch_size=batch_size)
    try:
        return _coefficients(input_path, output_path, videos, sub, bfm, lm3d, net, kind, jobs, smooth, n_coeff,
                             landmarks, shared_id, overwrite, log, progress)
    finally:
        if net is not None:
            net.close()


def _coefficients(input_path, output_path, videos, sub, bfm, lm3d, net, kind, jobs, smooth, n_coeff, landmarks,
                  shared_id, overwrite, log, progress):
    if net is not None and lm3d is None and bfm is None and not _has_bfm():
        raise InputError("the R-Net needs the 3D alignment points of the crops it was trained on: give "
                         "--lm3d similarity_Lm3D_all.mat (Deep3DFaceReconstruction BFM/ folder) or put it "
                         "next to ./faceReconstruction/BFM/BFM_model_front.mat")
    if net is not None and lm3d is not None:
        bfm_path = model = None  # the R-Net path needs the alignment points only
        lm3d_pts = align.load_lm3d(lm3d)
    else:
        bfm_path, model, lm3d_pts = resolve_model(bfm, lm3d, log)
    if smooth is None:
        smooth = 0.0 if net is not None else 1.0
    done = {}
    for video in videos:
        frames = _video_frames(video, kind)
        out_dir = output_path / video.name / sub
        outs = [out_dir / f"{stem}.txt" for stem, *_ in frames]
        if not overwrite and all(p.is_file() for p in outs):
            log(f"{video.name}: all {len(outs)} coefficient files exist, skipped")
            continue
        for _, img_path, _, _ in frames:
            if not img_path.is_file():
                raise InputError(f"{img_path}: frame image not found (landmarks exist for it)")
        mode = "5" if net is not None else landmarks
        prepared = [x for part in run_tasks(_prepare_chunk, [(c, lm3d_pts, mode) for c in chunks(frames, CHUNK)],
                                             jobs=jobs, desc=f"{video.name} align", unit="frame",
                                             weights=lambda t: len(t[0]), disable_bar=not progress)
                    for x in part]
        if net is not None:
            coeff = convert_coeff(net(np.stack([p["crop"] for p in prepared])), n_coeff)
            if smooth > 0:
                from faceReconstruction.fit import smooth_coeffs

                coeff = smooth_coeffs(coeff, smooth)
        else:
            coeff = _fit_video(bfm_path, model, prepared, n_coeff, smooth, shared_id, jobs, video.name, log, progress)
        if not np.all(np.isfinite(coeff)):
            raise InputError(f"{video}: the coefficients came out non-finite (bad landmarks?)")
        for path, c in zip(outs, coeff):
            write_coeff(path, c)
        done[video.name] = len(outs)
    return done


def _fit_video(bfm_path, model, prepared, n_coeff, smooth, shared_id, jobs, name, log, progress):
    from faceReconstruction import fit

    geom = fit.fit_geometry(model, [p["uv"] for p in prepared], shared_id=shared_id)
    n68 = sum(len(p["uv"]) == 68 for p in prepared)
    log(f"{name}: geometry fitted to {n68} frames with 68 points, {len(prepared) - n68} with 5; "
        f"landmark rms median {np.median(geom['rms']):.2f} px (224 crop)")
    parts = np.concatenate([geom["ex"], geom["angles"], geom["trans"]], axis=1)
    parts = fit.smooth_coeffs(parts, smooth)
    ex, angles, trans = parts[:, :64], parts[:, 64:67], parts[:, 67:70]
    ids = geom["id"] if shared_id else fit.smooth_coeffs(geom["id"], smooth)
    n_sh = 9 if n_coeff == 239 else 27
    items = [(p["crop"], (ids[i], ex[i], angles[i], trans[i])) for i, p in enumerate(prepared)]
    colors = [x for part in run_tasks(_color_chunk, [(str(bfm_path), c, n_sh) for c in chunks(items, CHUNK)],
                                      jobs=jobs, desc=f"{name} colour", unit="frame", weights=lambda t: len(t[1]),
                                      disable_bar=not progress)
              for x in part]
    tex = np.stack([c[0] for c in colors])
    gamma = np.stack([c[1] for c in colors])
    # Frames without a visible face in the crop get the clip's mean colour terms.
    bad = np.array([not np.isfinite(c[2]) for c in colors])
    if bad.all():
        raise InputError(f"{name}: no frame of this video shows the fitted face inside its crop")
    tex[bad], gamma[bad] = tex[~bad].mean(0), gamma[~bad].mean(0)
    tex, gamma = fit.smooth_coeffs(tex, smooth), fit.smooth_coeffs(gamma, smooth)
    return fit.assemble(ids, ex, tex, angles, gamma, trans)


# --------------------------------------------------------------------------------------------
# demo_render.py: renders


def _render_chunk(task):
    from faceReconstruction.render import render_rgba

    bfm_path, items, lm3d, fix_small, overwrite = task
    written = 0
    for coeff_path, face_render_path, render_path, img_path, lm_path in items:
        if not overwrite and render_path.is_file() and face_render_path.is_file():
            continue
        if face_render_path.is_file() and not overwrite:
            rgba = read_image(face_render_path, mode="RGBA")
            if rgba.shape != (224, 224, 4):
                raise InputError(f"{face_render_path}: expected a 224x224 render, got {rgba.shape[1]}x{rgba.shape[0]}")
        else:
            coeff = read_coeff(coeff_path)
            model = _load_bfm_quiet(bfm_path)
            rec = bfm_mod.reconstruct(model, coeff)
            rgba = render_rgba(rec["vertices_cam"], model.tri, rec["colors"])
            write_image(face_render_path, rgba)
        size = _frame_size(img_path)
        pts5 = read_points(lm_path)
        write_image(render_path, align.restore(rgba[..., :3], size, pts5, lm3d, fix_small=fix_small))
        written += 1
    return written


def run_render(coeff_path="./training_set", data_path="./dataset", bfm=None, lm3d=None, jobs=1,
               restore="fixed", overwrite=False, log=print, progress=True) -> dict:
    """Write face_render/ and render/ for every `<coeff_path>/<video>/face/NNNNN.txt`.

    restore: 'fixed' (default; renders land on the face also when the scaled frame is at most
    224 pixels wide or high) or 'original' (the original's behaviour in that case). Finished
    outputs are skipped and an existing face_render/NNNNN.png is reused (only restored) unless
    overwrite. Returns {video name: number of frames rendered or restored}.
    """
    if restore not in ("fixed", "original"):
        raise ValueError("restore must be 'fixed' or 'original'")
    coeff_path, data_path = Path(coeff_path), Path(data_path)
    if not coeff_path.is_dir():
        raise InputError(f"{coeff_path}: coefficient folder not found")
    videos = sorted(d for d in coeff_path.iterdir() if d.is_dir() and (d / "face").is_dir())
    if not videos:
        raise InputError(f"{coeff_path}: no <video>/face/ folder of coefficient files inside")
    bfm_path, model, lm3d_pts = resolve_model(bfm, lm3d, log)
    done = {}
    for video in videos:
        files = sorted(p for p in (video / "face").glob("*.txt") if not p.name.startswith("."))
        data = data_path / video.name
        items = []
        for f in files:
            item = (f, video / "face_render" / f"{f.stem}.png", video / "render" / f"{f.stem}.png",
                    data / "blurry" / f"{f.stem}.png", data / "face" / f"{f.stem}.txt")
            if not overwrite and item[1].is_file() and item[2].is_file():
                continue
            for p in item[3:]:
                if not p.is_file():
                    raise InputError(f"{p}: needed to restore {f} into its frame, but not found")
            items.append(item)
        if not items:
            log(f"{video.name}: all {len(files)} renders exist, skipped")
            continue
        tasks = [(str(bfm_path), c, lm3d_pts, restore == "fixed", overwrite) for c in chunks(items, CHUNK)]
        n = run_tasks(_render_chunk, tasks, jobs=jobs, desc=f"{video.name} render", unit="frame",
                      weights=lambda t: len(t[1]), disable_bar=not progress)
        done[video.name] = int(sum(n))
    return done


# --------------------------------------------------------------------------------------------
# Command lines


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


def demo_parser():
    ap = argparse.ArgumentParser(
        prog="demo.py",
        description="3D face coefficients (239 per frame: 80 id, 64 exp, 80 tex, 3 angles, 9 SH, "
                    "3 translation) for every <input_path>/<video>/ -> <output_path>/<video>/face/NNNNN.txt. "
                    "With --rnet, the authors' R-Net as in the original; otherwise fitting of the "
                    "morphable model to landmarks and colours.")
    ap.add_argument("--input_path", default="./dataset", help="dataset folder with <video>/blurry|sharp/ and face/ (default ./dataset)")
    ap.add_argument("--output_path", default="./training_set", help="where <video>/face/NNNNN.txt go (default ./training_set)")
    ap.add_argument("--type", default="in", choices=("in", "gt"), dest="kind",
                    help="in: blurry frames -> face/ (default); gt: sharp frames (landmarks from faceGT/, "
                         "else face/) -> faceGT/")
    ap.add_argument("--bfm", default=None, help="BFM_model_front.mat (default: ./faceReconstruction/BFM/ or ./BFM/; "
                                                "a STAND-IN model with a warning when absent)")
    ap.add_argument("--lm3d", default=None, help="similarity_Lm3D_all.mat (default: next to the BFM file, "
                                                 "else the model's 68 keypoints with a warning)")
    ap.add_argument("--rnet", default=None, help="R-Net frozen graph .pb (e.g. faceReconstruction/network/"
                                                 "model_deblurfinetune_iter40000.pb); without it: fitting")
    ap.add_argument("--rnet_input", default="input_imgs:0", help="input tensor of the graph (default input_imgs:0)")
    ap.add_argument("--rnet_output", default="coeff:0", help="output tensor of the graph (default coeff:0)")
    ap.add_argument("--batch_size", type=int, default=16, help="R-Net batch size (default 16)")
    ap.add_argument("--n_coeff", type=int, default=239, choices=(239, 257),
                    help="239 (9 mono SH, the paper's layout; default) or 257 (27 RGB SH)")
    ap.add_argument("--landmarks", default="auto", choices=("auto", "68", "5"),
                    help="fitting landmarks: auto (face68/ files or dlib 68 points when they agree with "
                         "the five points, else five), 68 or 5 (default auto)")
    ap.add_argument("--per_frame_id", action="store_true",
                    help="fit an identity per frame instead of one for the whole clip")
    ap.add_argument("--smooth", type=float, default=None,
                    help="temporal Gaussian sigma in frames (default 1 when fitting, 0 with --rnet)")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    ap.add_argument("--overwrite", action="store_true", help="redo videos whose files all exist")
    return ap


def demo_main(argv=None) -> int:
    """demo.py; exit statuses as every command (common/cli.py): 0, 2 bad input, 1 internal failure."""
    from common.cli import run_cli

    return run_cli(_demo_main, argv, prog="demo.py")


def _demo_main(argv=None) -> int:
    a = demo_parser().parse_args(argv)
    try:
        done = run_coefficients(a.input_path, a.output_path, bfm=a.bfm, lm3d=a.lm3d, rnet=a.rnet,
                                rnet_input=a.rnet_input, rnet_output=a.rnet_output, kind=a.kind, jobs=a.jobs,
                                smooth=a.smooth, n_coeff=a.n_coeff, landmarks=a.landmarks,
                                shared_id=not a.per_frame_id, overwrite=a.overwrite, batch_size=a.batch_size,
                                log=_log)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    _log(f"coefficients written: {sum(done.values())} frames in {len(done)} videos")
    return 0


def render_parser():
    ap = argparse.ArgumentParser(
        prog="demo_render.py",
        description="Render the coefficients of <coeff_path>/<video>/face/NNNNN.txt: 224x224 RGBA -> "
                    "<coeff_path>/<video>/face_render/, restored into the frame -> <coeff_path>/<video>/render/.")
    ap.add_argument("--coeff_path", default="./training_set", help="folder with <video>/face/*.txt (default ./training_set)")
    ap.add_argument("--data_path", default="./dataset", help="folder with <video>/blurry/ and face/ (default ./dataset)")
    ap.add_argument("--bfm", default=None, help="BFM_model_front.mat (default as demo.py)")
    ap.add_argument("--lm3d", default=None, help="similarity_Lm3D_all.mat (default as demo.py)")
    ap.add_argument("--restore", default="fixed", choices=("fixed", "original"),
                    help="fixed (default): renders land on the face also for frames at most 224 px wide/high "
                         "after scaling; original: the original code's behaviour there")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    ap.add_argument("--overwrite", action="store_true", help="re-render even when outputs exist")
    return ap


def render_main(argv=None) -> int:
    """demo_render.py; exit statuses as every command (common/cli.py)."""
    from common.cli import run_cli

    return run_cli(_render_main, argv, prog="demo_render.py")


def _render_main(argv=None) -> int:
    a = render_parser().parse_args(argv)
    try:
        done = run_render(a.coeff_path, a.data_path, bfm=a.bfm, lm3d=a.lm3d, jobs=a.jobs, restore=a.restore,
                          overwrite=a.overwrite, log=_log)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    _log(f"renders written: {sum(done.values())} frames in {len(done)} videos")
    return 0
