"""Evaluation of deblurred face videos: PSNR/SSIM (RGB and Y), dlib identity distance, strips.

The original repository (rwenqi/3Dfacedeblurring) ships no evaluation code; the paper (Ren et
al., "Face Video Deblurring using 3D Facial Priors", ICCV 2019, Tables 1-3) reports PSNR and
SSIM of restored frames against the sharp frames and an identity distance from a face
recognition network. This module reproduces those measurements with public tools:

- PSNR, SSIM and their Y (BT.601 luma) variants, and how frames are averaged into per-video and
  ALL figures: common/metrics.py, the one implementation shared with `run_model.py --gt_path`
  and training validation. ALL is the mean over all frames (frame-weighted), not the mean of
  the per-video means; the table, CSV and JSON say so.
- Identity distance: Euclidean distance between dlib's 128-d face descriptors
  (dlib_face_recognition_resnet_model_v1.dat, 5-point alignment with
  shape_predictor_5_face_landmarks.dat, both from the face-recognition-models package) of the
  restored and the sharp frame; dlib's same-person threshold is 0.6. The face box comes from
  dlib's HOG detector on the SHARP frame (largest face) and is used for every image of that
  frame, so all compared images are aligned identically; when no face is found on the sharp
  frame the whole frame is used as the box (counted in `id_fallback`).

Folder layouts accepted (per video `<v>`, frames named like 00001.png):
  pred:    `<pred>/<v>/NNNNN.png` (run_model.py --phase test output) or PNGs directly in <pred>
  gt:      `<gt>/<v>/sharp/` (the dataset layout) or `<gt>/<v>/`, or PNGs directly in <gt>
  blurry:  `<blurry>/<v>/blurry/`, `<blurry>/<v>/blur_0/`, `<blurry>/<v>/`, or directly
  render:  `<render>/<v>/render/` or `<render>/<v>/` (the pasted-back 3D prior, for strips)
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from common import metrics
from common.videoio import write_video
from common.frames import image_files
from common.fileio import InputError, atomic_path, read_image, write_image, write_text
from common.paths import dlib_model_path
from deblur.checkpoint import MODEL_RECORD, read_model_record

METRICS = ("psnr", "ssim", "psnr_y", "ssim_y", "id_dist")


# ----------------------------------------------------------------------------- identity
class IdentityScorer:
    """dlib 128-d face descriptors; `distance(img, ref, box)` in descriptor space (same person < 0.6)."""

    def __init__(self):
        import dlib  # imported lazily: only identity scoring needs it

        files = {}
        for name in ("shape_predictor_5_face_landmarks.dat", "dlib_face_recognition_resnet_model_v1.dat"):
            files[name] = dlib_model_path(name)
            if files[name] is None:
                raise InputError(f"dlib model file {name} not found (pip install face-recognition-models)")
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._shape = dlib.shape_predictor(str(files["shape_predictor_5_face_landmarks.dat"]))
        self._net = dlib.face_recognition_model_v1(str(files["dlib_face_recognition_resnet_model_v1.dat"]))

    def face_box(self, rgb: np.ndarray):
        """Largest HOG face on a uint8 RGB image -> (dlib.rectangle, found: bool)."""
        rects = self._detector(np.ascontiguousarray(rgb), 1)
        if len(rects) == 0:
            h, w = rgb.shape[:2]
            return self._dlib.rectangle(0, 0, w - 1, h - 1), False
        return max(rects, key=lambda r: r.area()), True

    def descriptor(self, rgb: np.ndarray, box) -> np.ndarray:
        img = np.ascontiguousarray(rgb)
        shape = self._shape(img, box)
        return np.asarray(self._net.compute_face_descriptor(img, shape), dtype=np.float64)


# ----------------------------------------------------------------------------- folders
def _has_images(folder: Path) -> bool:
    return folder.is_dir() and len(image_files(folder)) > 0


def _video_dirs(pred: Path) -> dict[str, Path]:
    """{video name: folder of predicted frames}."""
    if not pred.is_dir():
        raise InputError(f"{pred}: prediction folder not found")
    if _has_images(pred):
        return {pred.name: pred}
    vids = {p.name: p for p in sorted(pred.iterdir()) if _has_images(p)}
    if not vids:
        raise InputError(f"{pred}: no images found (expected <pred>/<video>/00001.png or PNGs in <pred>)")
    return vids


def _resolve(root: Path, video: str, subdirs: tuple[str, ...], single: bool) -> Path | None:
    """Folder of one video's frames under `root`, trying the known layouts in order."""
    if single and _has_images(root):
        return root
    for sub in subdirs:
        cand = root / video / sub if sub else root / video
        if _has_images(cand):
            return cand
    return None


# ----------------------------------------------------------------------------- evaluation
@dataclass
class Report:
    """Per-frame rows and per-video / overall means of every metric."""

    rows: list = field(default_factory=list)        # one dict per (video, frame)
    videos: dict = field(default_factory=dict)      # video -> {metric: mean}
    overall: dict = field(default_factory=dict)     # {"result": {...}, "blurry": {...}}
    notes: list = field(default_factory=list)
    model: str | None = None                        # what produced the results (<pred>/model.json)


def _score(img: np.ndarray, gt: np.ndarray) -> dict:
    return metrics.frame_metrics(img, gt)


def _load_pair(path: Path, ref_shape, what: str) -> np.ndarray:
    img = read_image(path)
    if img.shape != ref_shape:
        raise InputError(f"{path}: {what} frame is {img.shape[1]}x{img.shape[0]}, "
                         f"ground truth is {ref_shape[1]}x{ref_shape[0]}")
    return img


def _recorded_model(pred: Path, vids: dict) -> str | None:
    """The model named by `<pred>/model.json` (run_model.py --phase test), else by the video
    folders' own records (deblur_video.py --frames_out into `<pred>/<video>/`); several different
    ones are listed per video. None when no folder has a record."""
    rec = read_model_record(pred)
    if rec is not None:
        return rec["model"]
    per_video = {v: read_model_record(d) for v, d in vids.items()}
    names = {r["model"] for r in per_video.values() if r is not None}
    if not names:
        return None
    if len(names) == 1 and all(per_video.values()):
        return names.pop()
    return "; ".join(f"{v}: {r['model'] if r else 'not recorded'}" for v, r in per_video.items())


def evaluate(pred, gt, blurry=None, identity: bool = True, progress=None) -> Report:
    """Score every predicted frame against its ground-truth frame of the same name.

    Returns a Report; `rows` hold, per frame, `psnr ssim psnr_y ssim_y id_dist` of the result and
    (when `blurry` is given) the same with a `blurry_` prefix. A frame missing from gt or blurry
    raises InputError naming it.
    """
    pred, gt = Path(pred), Path(gt)
    blurry = Path(blurry) if blurry is not None else None
    vids = _video_dirs(pred)
    single = len(vids) == 1  # one video: gt/blurry/render may also be given as a plain folder of frames
    scorer = IdentityScorer() if identity else None
    rep = Report(model=_recorded_model(pred, vids))
    n_fallback = 0
    for video, pdir in vids.items():
        gdir = _resolve(gt, video, ("sharp", ""), single)
        if gdir is None:
            raise InputError(f"{gt}: no ground-truth frames for video '{video}' "
                             f"(looked for {gt / video / 'sharp'} and {gt / video})")
        bdir = None
        if blurry is not None:
            bdir = _resolve(blurry, video, ("blurry", "blur_0", ""), single)
            if bdir is None:
                raise InputError(f"{blurry}: no blurry frames for video '{video}'")
        for p in image_files(pdir):
            g = gdir / p.name
            if not g.is_file():
                raise InputError(f"{g}: ground-truth frame missing for prediction {p}")
            gimg = read_image(g)
            pimg = _load_pair(p, gimg.shape, "predicted")
            row = {"video": video, "frame": p.name, **_score(pimg, gimg)}
            bimg = None
            if bdir is not None:
                b = bdir / p.name
                if not b.is_file():
                    raise InputError(f"{b}: blurry frame missing for prediction {p}")
                bimg = _load_pair(b, gimg.shape, "blurry")
                row.update({f"blurry_{k}": v for k, v in _score(bimg, gimg).items()})
            if scorer is not None:
                box, found = scorer.face_box(gimg)
                n_fallback += not found
                ref = scorer.descriptor(gimg, box)
                row["id_dist"] = float(np.linalg.norm(scorer.descriptor(pimg, box) - ref))
                if bimg is not None:
                    row["blurry_id_dist"] = float(np.linalg.norm(scorer.descriptor(bimg, box) - ref))
                row["id_fallback"] = int(not found)
            rep.rows.append(row)
            if progress is not None:
                progress(video, p.name)
    keys = [k for k in rep.rows[0] if k not in ("video", "frame", "id_fallback")]
    # The project's one averaging rule (common/metrics.py): per video = mean over its frames,
    # ALL = mean over every frame (frame-weighted), +inf PSNR left out.
    rep.videos, rep.overall = metrics.summarize(rep.rows, keys)
    for m in [*rep.videos.values(), rep.overall]:
        m.pop("inf_psnr_frames", None)
    if any(math.isinf(r["psnr"]) for r in rep.rows):
        rep.notes.append("some frames are identical to the ground truth (PSNR = inf); "
                         "they are left out of the PSNR means")
    if scorer is not None and n_fallback:
        rep.notes.append(f"identity: no face found by dlib on {n_fallback} sharp frame(s); "
                         "the whole frame was used as the face box there")
    return rep


# ----------------------------------------------------------------------------- output
def _fmt(v, key: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    if key.endswith("psnr") or key.endswith("psnr_y"):
        return f"{v:.3f}"
    return f"{v:.4f}"


def format_table(rep: Report) -> str:
    """Plain-text table: one line per video and `ALL`, result and (if scored) blurry columns."""
    have_blur = "blurry_psnr" in rep.overall
    have_id = "id_dist" in rep.overall
    cols = ["psnr", "ssim", "psnr_y", "ssim_y"] + (["id_dist"] if have_id else [])
    heads = ["video", "frames"]
    keys = []
    for who in (["blurry_"] if have_blur else []) + [""]:
        for c in cols:
            keys.append(who + c)
            heads.append(("blurry " if who else "result ") + c.replace("_", " "))
    lines = []
    entries = list(rep.videos.items()) + [("ALL", rep.overall)]
    table = [heads] + [[name, str(m["frames"])] + [_fmt(m.get(k), k) for k in keys] for name, m in entries]
    widths = [max(len(r[i]) for r in table) for i in range(len(heads))]
    for i, r in enumerate(table):
        lines.append("  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths))))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append(f"result = {rep.model}" if rep.model else
                 f"result = frames of an unrecorded model (no {MODEL_RECORD} in the --pred folder; "
                 "run_model.py --phase test writes one)")
    lines.append("PSNR in dB (data range 255); Y = BT.601 luma (MATLAB rgb2ycbcr); "
                 "id dist = dlib 128-d descriptor distance to the sharp frame (same person < 0.6)")
    lines.append("averaging: " + metrics.AVERAGING)
    lines.extend("note: " + n for n in rep.notes)
    return "\n".join(lines)


# Frame column of the CSV's mean rows: names the averaging (per video: over its frames; ALL: over
# every frame of every video).
MEAN_ROW = "mean_over_frames"


def write_reports(rep: Report, out_prefix) -> tuple[Path, Path]:
    """Write `<prefix>.csv` (per-frame rows + per-video and ALL mean rows, frame column
    `mean_over_frames`) and `<prefix>.json` (with the metric definitions and the averaging)."""
    out_prefix = Path(out_prefix)
    csv_path = out_prefix.with_name(out_prefix.name + ".csv")
    json_path = out_prefix.with_name(out_prefix.name + ".json")
    keys = list(rep.rows[0].keys())
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rep.rows:
            w.writerow({k: _csv_val(r.get(k)) for k in keys})
        for name, m in list(rep.videos.items()) + [("ALL", rep.overall)]:
            w.writerow({"video": name, "frame": MEAN_ROW, **{k: _csv_val(m.get(k)) for k in keys
                                                           if k not in ("video", "frame", "id_fallback")}})
    doc = {"metric_definitions": {**metrics.DEFINITIONS, "id_dist": "Euclidean distance of dlib "
        "128-d descriptors to the sharp frame (same person < 0.6)"},
        "averaging": metrics.AVERAGING, "model": rep.model, "overall": rep.overall, "videos": rep.videos, "frames": rep.rows, "notes": rep.notes}
    write_text(json_path, json.dumps(metrics.json_safe(doc), indent=1) + "\n")
    return csv_path, json_path


def _csv_val(v):
    if isinstance(v, float):
        return "inf" if math.isinf(v) else f"{v:.6f}"
    return v


# ----------------------------------------------------------------------------- comparison strips
def _label(img: np.ndarray, text: str) -> np.ndarray:
    import cv2  # drawing only

    out = img.copy()
    scale = max(0.35, img.shape[1] / 400.0)
    thick = max(1, int(round(scale * 1.5)))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    cv2.rectangle(out, (0, 0), (tw + 6, th + base + 6), (0, 0, 0), -1)
    cv2.putText(out, text, (3, th + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick,
                cv2.LINE_AA)
    return out


def _caption(strip: np.ndarray, text: str) -> np.ndarray:
    """`strip` with a black band below it holding `text` (shrunk, then cut, to fit the width)."""
    import cv2  # drawing only

    w = strip.shape[1]
    scale = max(0.35, min(0.6, w / 1200.0))
    while cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > w - 8 and len(text) > 4:
        text = text[:-4] + "..."
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    band = np.zeros((th + base + 8, w, 3), np.uint8)
    cv2.putText(band, text, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([strip, band], axis=0)


def _strip(panels: list[tuple[str, np.ndarray | None]], shape) -> np.ndarray:
    h, w = shape[:2]
    gap = np.full((h, 4, 3), 255, np.uint8)
    parts = []
    for name, img in panels:
        if img is None:
            img = np.full((h, w, 3), 64, np.uint8)
            name = name + " (n/a)"
        parts += [_label(img, name), gap]
    return np.concatenate(parts[:-1], axis=1)


def write_comparison(pred, gt, out_dir, blurry=None, render=None, fps: float = 10.0,
                     rep: Report | None = None, render_label: str = "3D prior") -> dict:
    """Side-by-side strips `blurry | render prior | result | sharp` per frame.

    Writes `<out_dir>/<video>/NNNNN.png` for every frame and `<out_dir>/<video>.mp4` (H.264,
    `fps` frames per second, the strip's exact size). The render panel is there only when
    `render` is given (a model without a 3D prior has none to show); a panel whose frame is
    missing is drawn grey and labelled "(n/a)". `render_label` names the prior panel (say
    "3D prior (STAND-IN)" when the renders come from the stand-in morphable model). When `rep`
    is given the result panel is labelled with its PSNR, and when the report knows which model
    made the results (`<pred>/model.json`), a caption under the strip names it.
    Returns {video: {"pngs": [...], "mp4": path}}.
    """
    pred, gt, out_dir = Path(pred), Path(gt), Path(out_dir)
    vids = _video_dirs(pred)
    single = len(vids) == 1  # one video: gt/blurry/render may also be given as a plain folder of frames
    psnrs = {(r["video"], r["frame"]): r["psnr"] for r in rep.rows} if rep is not None else {}
    written = {}
    for video, pdir in vids.items():
        gdir = _resolve(gt, video, ("sharp", ""), single)
        if gdir is None:
            raise InputError(f"{gt}: no ground-truth frames for video '{video}'")
        bdir = _resolve(Path(blurry), video, ("blurry", "blur_0", ""), single) if blurry else None
        rdir = _resolve(Path(render), video, ("render", ""), single) if render else None
        frames = []
        for p in image_files(pdir):
            gimg = read_image(gdir / p.name)
            pimg = _load_pair(p, gimg.shape, "predicted")
            bimg = _load_pair(bdir / p.name, gimg.shape, "blurry") if bdir and (bdir / p.name).is_file() else None
            rimg = _load_pair(rdir / p.name, gimg.shape, "render") if rdir and (rdir / p.name).is_file() else None
            ptxt = "result"
            if (video, p.name) in psnrs and math.isfinite(psnrs[(video, p.name)]):
                ptxt += f" {psnrs[(video, p.name)]:.2f}dB"
            panels = [("blurry", bimg)] + ([(render_label, rimg)] if render else []) + [(ptxt, pimg), ("sharp", gimg)]
            strip = _strip(panels, gimg.shape)
            if rep is not None and rep.model:
                strip = _caption(strip, f"result: {rep.model}")
            path = out_dir / video / p.name
            write_image(path.with_suffix(".png"), strip)
            frames.append(strip)
        mp4 = out_dir / f"{video}.mp4"
        write_video(mp4, frames, fps)  # common/videoio.py: H.264, atomic
        written[video] = {"pngs": [str(out_dir / video / p.with_suffix(".png").name) for p in image_files(pdir)],
                          "mp4": str(mp4)}
    return written
