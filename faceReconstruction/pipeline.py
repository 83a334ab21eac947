"""The two 3D-prior stages of the pipeline: coefficients (`demo.py`) and renders (`demo_render.py`).

Correspond to the original `demo.py` and `demo_render.py` of rwenqi/3Dfacedeblurring (same
folder layout and file formats; the top-level scripts are thin CLIs around `demo_main` and
`render_main`, and `run_coefficients` / `run_render` are the Python entry points).

Model (both stages, `bfm.find_bfm`): `--bfm` when given, else the user's Basel Face Model
(./faceReconstruction/BFM/BFM_model_front.mat or ./BFM/), else the shipped ICT Face Model
(faceReconstruction/ICT/ict_face_model.npz). Each run logs one `3D face model: ...` line.

demo.py (`run_coefficients`), per video `<input_path>/<video>/`:
  reads  blurry/NNNNN.png + face/NNNNN.txt (five `x y` rows), optionally face68/NNNNN.txt
  writes <output_path>/<video>/face/NNNNN.txt, one row of 239 (or 257) coefficients;
         <output_path>/<video>/face_model.json: which model and method made them (kind,
         label, file, fingerprint; demo_render.py refuses another model);
         <output_path>/<video>/face_albedo.npy: the clip's per-vertex albedo (N, 3) float32
         RGB 0-255, for a model without texture (ICT; `albedo.py`).
  With `--type gt` the sharp frames are used: sharp/NNNNN.png + faceGT/NNNNN.txt (face/ when
  there is no faceGT/; blurry and sharp frames are aligned pairs) -> <output>/<video>/faceGT/
  (faceGT_model.json, faceGT_albedo.npy).
  Coefficients come from the R-Net (`--rnet model.pb`: Basel Face Model coefficients) as in
  the original, or, without it, from fitting the morphable model to landmarks and colours
  (`fit.py`).
demo_render.py (`run_render`), per coefficient file `<coeff_path>/<video>/face/NNNNN.txt`:
  writes <data_path>/<video>/face_render/NNNNN.png (224x224 RGBA, binary alpha; where the
  original writes it) and <coeff_path>/<video>/render/NNNNN.png (the render restored into the
  frame, RGB, black background), using the frame size and five points of
  <data_path>/<video>/{blurry,face}/. An existing face_render/NNNNN.png is only restored.
"""
from __future__ import annotations

import json
import sys
import time
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from common.cli import ArgumentParser
from common.fileio import (InputError, atomic_path, read_coeff, read_image, read_points, write_coeff,
                               write_image, write_text)
from common.parallel import chunks, run_tasks

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
    """(model path, loaded model, (5, 3) alignment points); logs which model it is.

    Order (`bfm.find_bfm`): --bfm, the user's BFM_model_front.mat, the shipped ICT Face Model.
    """
    path, kind = bfm_mod.find_bfm(bfm_path)
    model = _load_bfm_quiet(str(path))
    if kind == "standin":
        log(f"WARNING: {bfm_mod.STANDIN_MESSAGE} ({path}). Coefficients and renders are NOT those of a face "
            "model (tests only); leave --bfm out for the shipped ICT Face Model.")
    log(f"3D face model: {model.label}, {path}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lm3d = align.find_lm3d(lm3d_path, path, model)
    for w in caught:
        log(f"WARNING: {w.message}")
    return path, model, lm3d


# --------------------------------------------------------------------------------------------
# Which model made the coefficients: <output>/<video>/face_model.json (faceGT_model.json)

META_VERSION = 1
RNET_KIND = "bfm"  # the R-Net regresses Basel Face Model coefficients


def meta_path(video_out: Path, sub: str = "face") -> Path:
    """`<output>/<video>/face_model.json` beside the `face/` folder (`faceGT_model.json` for gt)."""
    return Path(video_out) / f"{sub}_model.json"


def albedo_path(video_out: Path, sub: str = "face") -> Path:
    """`<output>/<video>/face_albedo.npy`: per-vertex albedo (N, 3) float32 RGB 0-255 of the clip."""
    return Path(video_out) / f"{sub}_albedo.npy"


def model_record(model, path) -> dict:
    return {"kind": model.kind, "label": model.label, "file": str(Path(path).resolve()),
            "fingerprint": bfm_mod.model_fingerprint(model), "n_vertices": model.n_vertices}


def write_meta(path: Path, record: dict) -> None:
    write_text(path, json.dumps(record, indent=1) + "\n")


def read_meta(path: Path):
    """The metadata dict, or None when the file does not exist; InputError when unreadable."""
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
        meta["model"]["kind"]
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: cannot read the coefficients' model record ({e}); delete it or re-run "
                         "demo.py") from None
    return meta


def check_model(meta, meta_file: Path, model, model_path) -> None:
    """Refuse (InputError) coefficients made with another model than `model`."""
    made = meta["model"]
    fp = made.get("fingerprint")
    if made["kind"] == model.kind and (fp is None or fp == bfm_mod.model_fingerprint(model)):
        return
    if made["kind"] == model.kind:
        raise InputError(f"{meta_file}: these coefficients were made with another {model.label} file "
                         f"({made.get('file')}, fingerprint {fp}) than this run's ({model_path}, fingerprint "
                         f"{bfm_mod.model_fingerprint(model)}); give --bfm {made.get('file')}, or re-run demo.py")
    hint = ("--bfm with the BFM_model_front.mat they were made with" if made["kind"] == "bfm"
            else f"--bfm {made.get('file')}" if made["kind"] != "ict" else "no --bfm (the shipped ICT model)")
    raise InputError(f"{meta_file}: these coefficients were made with {made.get('label', made['kind'])} "
                     f"({made.get('file') or 'R-Net'}), but this run uses {model.label} ({model_path}); give "
                     f"{hint}, or re-run demo.py with this model")


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


def convert_coeff(coeff, n_coeff: int) -> np.ndarray:
    """Convert (T, 239|257) coefficients to n_coeff: 27 RGB SH -> 9 mono (mean), or repeated."""
    c = np.asarray(coeff, np.float64)
    if c.shape[1] == n_coeff:
        return c
    p = bfm_mod.split_coeff(c)
    g = p["gamma"]
    gamma = g.reshape(len(c), 3, 9).mean(1) if n_coeff == 239 else np.tile(g, (1, 3))
    return np.concatenate([p["id"], p["ex"], p["tex"], p["angles"], gamma, p["trans"]], axis=1)


@dataclass(frozen=True)
class CoefficientConfig:
    """How demo.py makes 3D face coefficients: the method, not the folders (`run_coefficients`).

    bfm         morphable model file (None: the user's BFM_model_front.mat, else the shipped
                ICT Face Model; `bfm.find_bfm`)
    lm3d        similarity_Lm3D_all.mat for the 224x224 crops (None: beside the model / stored in it)
    rnet        the authors' R-Net frozen graph (.pb): regress BFM coefficients as the original
                demo.py; None: fit the model to landmarks and colours (`fit.py`)
    rnet_input, rnet_output, batch_size   the graph's tensor names and batch
    kind        'in': blurry frames -> face/; 'gt': sharp frames -> faceGT/
    n_coeff     239 (9 mono SH, the paper's layout) or 257 (27 RGB SH, the R-Net's)
    landmarks   'auto' (68 points from face68/ or dlib when they agree with the five points,
                else the five), '68' (dlib required) or '5'
    shared_id   one identity for the whole clip (False: one per frame)
    smooth      temporal Gaussian sigma in frames (None: 1 when fitting, 0 for the R-Net)

    Impossible values raise ValueError (demo.py's flags cannot produce them).
    """

    bfm: str | Path | None = None
    lm3d: str | Path | None = None
    rnet: str | Path | None = None
    rnet_input: str = "input_imgs:0"
    rnet_output: str = "coeff:0"
    batch_size: int = 16
    kind: str = "in"
    n_coeff: int = 239
    landmarks: str = "auto"
    shared_id: bool = True
    smooth: float | None = None

    def __post_init__(self):
        if self.kind not in ("in", "gt"):
            raise ValueError("kind must be 'in' (blurry frames) or 'gt' (sharp frames)")
        if self.n_coeff not in (239, 257):
            raise ValueError("n_coeff must be 239 or 257")
        if self.landmarks not in ("auto", "68", "5"):
            raise ValueError("landmarks must be 'auto', '68' or '5'")

    @classmethod
    def from_args(cls, a) -> "CoefficientConfig":
        """From demo.py's parsed flags."""
        return cls(bfm=a.bfm, lm3d=a.lm3d, rnet=a.rnet, rnet_input=a.rnet_input, rnet_output=a.rnet_output,
                   batch_size=a.batch_size, kind=a.kind, n_coeff=a.n_coeff, landmarks=a.landmarks,
                   shared_id=not a.per_frame_id, smooth=a.smooth)

    @property
    def sub(self) -> str:
        """The coefficient folder's name: face (blurry frames) or faceGT (sharp frames)."""
        return "face" if self.kind == "in" else "faceGT"


def run_coefficients(input_path="./dataset", output_path="./training_set",
                     config: CoefficientConfig = CoefficientConfig(), *, jobs=1, overwrite=False,
                     videos=None, log=print, progress=True) -> dict:
    """Write `<output_path>/<video>/face|faceGT/NNNNN.txt` for every video of `input_path`.

    config: the method (`CoefficientConfig`). Beside the coefficient folder go `face_model.json`
    (which model and method made them; `demo_render.py` checks it) and, for a model without
    texture (ICT), the clip's albedo `face_albedo.npy` (N, 3) float32 (`albedo.py`; `faceGT_*`
    for kind 'gt'). videos: names of the videos to do (default all); videos whose outputs all
    exist are skipped unless overwrite; jobs: worker processes. Returns {video name: number of
    frames written}. Bad input -> InputError naming the file.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.is_dir():
        raise InputError(f"{input_path}: input dataset folder not found")
    folders = sorted(d for d in input_path.iterdir()
                     if d.is_dir() and ((d / "face").is_dir() or (config.kind == "gt" and (d / "faceGT").is_dir())))
    if videos is not None:
        wanted = set(videos)
        missing = wanted - {d.name for d in folders}
        if missing:
            raise InputError(f"{input_path}: no <video>/face/ folder for {sorted(missing)}")
        folders = [d for d in folders if d.name in wanted]
    if not folders:
        raise InputError(f"{input_path}: no <video>/face/ folder inside (expected "
                         f"{input_path}/<video>/face/00001.txt and <video>/blurry/00001.png)")
    net = None
    if config.rnet is not None:
        from faceReconstruction.rnet import RNet

        net = RNet(config.rnet, config.rnet_input, config.rnet_output, batch_size=config.batch_size)
    try:
        return _coefficients(output_path, folders, config, net, jobs, overwrite, log, progress)
    finally:
        if net is not None:
            net.close()


def _coefficients(output_path, videos, cfg, net, jobs, overwrite, log, progress):
    rnet, kind, sub, n_coeff = cfg.rnet, cfg.kind, cfg.sub, cfg.n_coeff
    if net is not None and cfg.lm3d is not None:
        bfm_path = model = None  # the R-Net path needs the alignment points only
        lm3d_pts = align.load_lm3d(cfg.lm3d)
    else:
        # Without --lm3d the R-Net crops use the points beside the user's BFM or those the
        # shipped ICT model stores (the same similarity_Lm3D_all.mat numbers).
        bfm_path, model, lm3d_pts = resolve_model(cfg.bfm, cfg.lm3d, log)
    if net is not None:
        log(f"coefficients: R-Net {rnet} (Basel Face Model coefficients; render them with the BFM)")
    smooth = cfg.smooth if cfg.smooth is not None else 0.0 if net is not None else 1.0
    done = {}
    for video in videos:
        frames = _video_frames(video, kind)
        out_video = output_path / video.name
        out_dir = out_video / sub
        outs = [out_dir / f"{stem}.txt" for stem, *_ in frames]
        if not overwrite and all(p.is_file() for p in outs):
            log(f"{video.name}: all {len(outs)} coefficient files exist, skipped")
            continue
        for _, img_path, _, _ in frames:
            if not img_path.is_file():
                raise InputError(f"{img_path}: frame image not found (landmarks exist for it)")
        mode = "5" if net is not None else cfg.landmarks
        prepared = [x for part in run_tasks(_prepare_chunk, [(c, lm3d_pts, mode) for c in chunks(frames, CHUNK)],
                                             jobs=jobs, desc=f"{video.name} align", unit="frame",
                                             weights=lambda t: len(t[0]), disable_bar=not progress)
                    for x in part]
        albedo, info = None, {}
        if net is not None:
            coeff = convert_coeff(net(np.stack([p["crop"] for p in prepared])), n_coeff)
            if smooth > 0:
                from faceReconstruction.fit import smooth_coeffs

                coeff = smooth_coeffs(coeff, smooth)
            record = {"kind": RNET_KIND, "label": "Basel Face Model coefficients regressed by the R-Net",
                      "file": None, "fingerprint": None}
            info["method"] = f"R-Net {Path(rnet).resolve()}"
        else:
            coeff, albedo, info = _fit_video(bfm_path, model, prepared, n_coeff, smooth, cfg.shared_id, jobs,
                                             video.name, log, progress)
            record = model_record(model, bfm_path)
        if not np.all(np.isfinite(coeff)):
            raise InputError(f"{video}: the coefficients came out non-finite (bad landmarks?)")
        for path, c in zip(outs, coeff):
            write_coeff(path, c)
        a_path = albedo_path(out_video, sub)
        if albedo is not None:
            with atomic_path(a_path) as tmp:
                np.save(tmp, albedo.astype(np.float32))
        elif a_path.is_file():
            a_path.unlink()  # a stale albedo of another model must not colour these coefficients
        write_meta(meta_path(out_video, sub), {
            "version": META_VERSION, "tool": "demo.py", "written": time.strftime("%Y-%m-%d %H:%M:%S"),
            "model": record, "frames": len(outs), "coefficients": n_coeff,
            "source": str(video / ("blurry" if kind == "in" else "sharp")),
            "albedo": a_path.name if albedo is not None else None, **info})
        log(f"{video.name}: {len(outs)} coefficient files by {record['label']}"
            + (f", albedo {a_path.name}" if albedo is not None else ""))
        done[video.name] = len(outs)
    return done


def _fit_video(bfm_path, model, prepared, n_coeff, smooth, shared_id, jobs, name, log, progress):
    """Fit one clip: (coefficients (T, n_coeff), per-vertex albedo (N, 3) or None, info dict)."""
    from faceReconstruction import fit

    geom = fit.fit_geometry(model, [p["uv"] for p in prepared], shared_id=shared_id)
    n68 = sum(len(p["uv"]) == 68 for p in prepared)
    log(f"{name}: geometry fitted to {n68} frames with 68 points, {len(prepared) - n68} with 5; "
        f"landmark rms median {np.median(geom['rms']):.2f} px (224 crop)")
    parts = np.concatenate([geom["ex"], geom["angles"], geom["trans"]], axis=1)
    parts = fit.smooth_coeffs(parts, smooth)
    ex, angles, trans = parts[:, :64], parts[:, 64:67], parts[:, 67:70]
    bounds = model.extra.get("exBounds")
    if bounds is not None:  # smoothing keeps weights inside their range; make it exact
        ex = np.clip(ex, bounds[:, 0], bounds[:, 1])
    ids = geom["id"] if shared_id else fit.smooth_coeffs(geom["id"], smooth)
    n_sh = 9 if n_coeff == 239 else 27
    info = {"method": f"fit to {'dlib 68 points' if n68 else 'five points'} ({n68} of {len(prepared)} frames "
                      f"with 68), {'one identity per clip' if shared_id else 'identity per frame'}, "
                      f"temporal sigma {smooth} frames",
            "landmark_rms_px": round(float(np.median(geom["rms"])), 3)}
    if not model.has_texture:
        coeff, alb, extra = _albedo_video(model, prepared, ids, ex, angles, trans, n_sh, smooth, name, log)
        return coeff, alb, {**info, **extra}
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
    return fit.assemble(ids, ex, tex, angles, gamma, trans), None, info


def _albedo_video(model, prepared, ids, ex, angles, trans, n_sh, smooth, name, log):
    """Coefficients (texture zeros) and the clip's albedo for a model without texture."""
    from faceReconstruction import albedo as albedo_mod
    from faceReconstruction import fit

    obs = [albedo_mod.frame_observations(model, p["crop"], ids[i], ex[i], angles[i], trans[i])
           for i, p in enumerate(prepared)]
    if all(len(o["idx"]) < 20 for o in obs):
        raise InputError(f"{name}: no frame of this video shows the fitted face inside its crop")
    sharp = [albedo_mod.sharpness(p["crop"], o["uv"][o["idx"]]) for p, o in zip(prepared, obs)]
    alb, gamma, used = albedo_mod.estimate_albedo(model, obs, n_sh=n_sh, sharp=sharp)
    gamma = fit.smooth_coeffs(gamma, smooth)
    tex = np.zeros((len(prepared), model.texBase.shape[1]))
    if used.any():
        log(f"{name}: albedo from the {int(used.sum())} sharpest of {len(prepared)} frames")
    else:
        log(f"{name}: one frame: mean skin albedo (an albedo from the frame itself would copy its blur)")
    return fit.assemble(ids, ex, tex, angles, gamma, trans), (alb if used.any() else None), {
        "albedo_frames": [p["stem"] for p, u in zip(prepared, used) if u]}


# --------------------------------------------------------------------------------------------
# demo_render.py: renders


def render_frame(model, coeff, albedo=None) -> np.ndarray:
    """One 224x224 RGBA render (uint8, binary alpha) of coefficients (239|257,) with a model,
    coloured by `albedo` (N, 3) when given (a model without texture), else by its texture."""
    from faceReconstruction.render import render_rgba

    rec = bfm_mod.reconstruct(model, coeff, albedo=albedo)
    return render_rgba(rec["vertices_cam"], model.tri, rec["colors"])


def _render_chunk(task):
    bfm_path, items, lm3d, fix_small, overwrite, albedo_file = task
    albedo = None if albedo_file is None else np.load(albedo_file)
    written = 0
    for coeff_path, face_render_path, render_path, img_path, lm_path in items:
        if not overwrite and render_path.is_file() and face_render_path.is_file():
            continue
        if face_render_path.is_file() and not overwrite:
            rgba = read_image(face_render_path, mode="RGBA")
            if rgba.shape != (224, 224, 4):
                raise InputError(f"{face_render_path}: expected a 224x224 render, got {rgba.shape[1]}x{rgba.shape[0]}")
        else:
            rgba = render_frame(_load_bfm_quiet(bfm_path), read_coeff(coeff_path), albedo)
            write_image(face_render_path, rgba)
        size = _frame_size(img_path)
        pts5 = read_points(lm_path)
        write_image(render_path, align.restore(rgba[..., :3], size, pts5, lm3d, fix_small=fix_small))
        written += 1
    return written


def _clip_albedo(video: Path, model, meta, log):
    """Path of the clip's albedo file to render with, or None (model texture / mean skin)."""
    path = albedo_path(video)
    if model.has_texture or meta is None or not meta.get("albedo") or not path.is_file():
        if not model.has_texture:
            log(f"{video.name}: no clip albedo ({path.name}): mean skin albedo of the model")
        return None
    try:
        alb = np.load(path)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"{path}: cannot read the clip's albedo ({e}); re-run demo.py") from None
    if alb.shape != (model.n_vertices, 3) or not np.all(np.isfinite(alb)):
        raise InputError(f"{path}: albedo of shape {alb.shape}, expected ({model.n_vertices}, 3) finite values "
                         "for this model; re-run demo.py")
    return str(path)


def run_render(coeff_path="./training_set", data_path="./dataset", bfm=None, lm3d=None, jobs=1,
               restore="fixed", overwrite=False, log=print, progress=True, videos=None) -> dict:
    """Write the renders of every `<coeff_path>/<video>/face/NNNNN.txt`:
    `<data_path>/<video>/face_render/NNNNN.png` (224x224 RGBA, where the original writes them)
    and `<coeff_path>/<video>/render/NNNNN.png` (restored into the frame, the datalist's column).

    The model is chosen as in demo.py (`bfm.find_bfm`) and must be the one that made the
    coefficients (`face_model.json`; otherwise InputError). Colour: the clip's albedo
    (`face_albedo.npy`) for a model without texture, else the texture coefficients.
    restore: 'fixed' (default; renders land on the face also when the scaled frame is at most
    224 pixels wide or high) or 'original' (the original's behaviour in that case). Finished
    outputs are skipped and an existing face_render/NNNNN.png is reused (only restored) unless
    overwrite, so renders made elsewhere restore bit-exactly. videos: names to do (default all).
    Returns {video name: number of frames rendered or restored}.
    """
    if restore not in ("fixed", "original"):
        raise ValueError("restore must be 'fixed' or 'original'")
    coeff_path, data_path = Path(coeff_path), Path(data_path)
    if not coeff_path.is_dir():
        raise InputError(f"{coeff_path}: coefficient folder not found")
    folders = sorted(d for d in coeff_path.iterdir() if d.is_dir() and (d / "face").is_dir())
    if videos is not None:
        folders = [d for d in folders if d.name in set(videos)]
    if not folders:
        raise InputError(f"{coeff_path}: no <video>/face/ folder of coefficient files inside")
    bfm_path, model, lm3d_pts = resolve_model(bfm, lm3d, log)
    # Check every clip before writing anything: a mismatch is refused as a whole.
    metas = {}
    for video in folders:
        meta = read_meta(meta_path(video))
        if meta is not None:
            check_model(meta, meta_path(video), model, bfm_path)
        else:
            log(f"{video.name}: no {meta_path(video).name} (coefficients from another tool): assuming they "
                f"belong to {model.label}")
        metas[video.name] = meta
    done = {}
    for video in folders:
        files = sorted(p for p in (video / "face").glob("*.txt") if not p.name.startswith("."))
        data = data_path / video.name
        items = []
        for f in files:
            item = (f, data / "face_render" / f"{f.stem}.png", video / "render" / f"{f.stem}.png",
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
        albedo_file = _clip_albedo(video, model, metas[video.name], log)
        tasks = [(str(bfm_path), c, lm3d_pts, restore == "fixed", overwrite, albedo_file)
                 for c in chunks(items, CHUNK)]
        n = run_tasks(_render_chunk, tasks, jobs=jobs, desc=f"{video.name} render", unit="frame",
                      weights=lambda t: len(t[1]), disable_bar=not progress)
        done[video.name] = int(sum(n))
        meta = metas[video.name] or {"version": META_VERSION, "model": model_record(model, bfm_path)}
        meta["render"] = {"tool": "demo_render.py", "written": time.strftime("%Y-%m-%d %H:%M:%S"),
                          "model": model_record(model, bfm_path), "face_render": str(data / "face_render"),
                          "albedo": Path(albedo_file).name if albedo_file else "model texture" if model.has_texture
                          else "mean skin albedo", "restore": restore}
        write_meta(meta_path(video), meta)
        log(f"{video.name}: {done[video.name]} renders by {model.label} -> {data / 'face_render'}, "
            f"{video / 'render'}")
    return done


# --------------------------------------------------------------------------------------------
# Command lines


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


def demo_parser():
    ap = ArgumentParser(
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
    ap.add_argument("--bfm", default=None, help="morphable model file (default: BFM_model_front.mat in "
                                                "./faceReconstruction/BFM/ or ./BFM/, else the shipped ICT Face Model "
                                                "faceReconstruction/ICT/ict_face_model.npz)")
    ap.add_argument("--lm3d", default=None, help="similarity_Lm3D_all.mat (default: next to the BFM file, else "
                                                 "the points stored in the model file (ICT), else the model's 68 "
                                                 "keypoints with a warning)")
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
    done = run_coefficients(a.input_path, a.output_path, CoefficientConfig.from_args(a), jobs=a.jobs,
                            overwrite=a.overwrite, log=_log)
    _log(f"coefficients written: {sum(done.values())} frames in {len(done)} videos")
    return 0


def render_parser():
    ap = ArgumentParser(
        prog="demo_render.py",
        description="Render the coefficients of <coeff_path>/<video>/face/NNNNN.txt with the model that made "
                    "them: 224x224 RGBA -> <data_path>/<video>/face_render/ (an existing render there is only "
                    "restored), restored into the frame -> <coeff_path>/<video>/render/.")
    ap.add_argument("--coeff_path", default="./training_set", help="folder with <video>/face/*.txt (default ./training_set)")
    ap.add_argument("--data_path", default="./dataset", help="folder with <video>/blurry/ and face/ (default ./dataset)")
    ap.add_argument("--bfm", default=None, help="morphable model file (default as demo.py; must be the model "
                                                "that made the coefficients, see <video>/face_model.json)")
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
    done = run_render(a.coeff_path, a.data_path, bfm=a.bfm, lm3d=a.lm3d, jobs=a.jobs, restore=a.restore,
                      overwrite=a.overwrite, log=_log)
    _log(f"renders written: {sum(done.values())} frames in {len(done)} videos")
    return 0
