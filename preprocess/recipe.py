"""Training-data recipe: a folder of sharp face videos -> the original training layout.

    python -m preprocess recipe --videos ../shared/data/face_videos --out data/recipe --jobs 2

The paper trains on pairs made by averaging consecutive frames of 300VW clips. Hand-held face
video is blurred mostly by the camera, so this recipe adds a camera shake on top of the clip's
own motion and integrates it over a per-segment exposure:

1. **identity split** (`splits.json`): one dlib face descriptor per clip (ResNet-34 of
   `face-recognition-models`, mean over up to 5 frames); clips closer than 0.6 (dlib's
   same-person threshold) are linked into one person (connected components). Whole persons are
   drawn for validation (seeded) until `n_val` clips are held out, so no validation person
   appears in a training clip.
2. **source frames** (`<out>/source/<clip>/sharp/`): face-centred square crops of
   `size + 2 * margin` pixels (the `preprocess frames --face_crop` code, crop side
   `crop_scale * (size + 2 margin) / size` face boxes, so the face fills the final `size` crop as
   `--face_crop size --crop_scale crop_scale` would). The margin keeps the shaken view inside
   real pixels. With `fit_frame` (default) a crop never leaves the frame and is never upsampled
   (`preprocess.video.fit_box`): in a small frame (41 of the 69 shared clips are 224-256 px)
   the crop is the frame's smaller side at its own resolution, so the clip's segments are
   smaller than `size`, and a face that fills the frame fills the crop. Without it, those crops
   were 30-50% replicated border and every sharp target an upsampled (too smooth) image.
3. **segments** (`<out>/dataset/<clip>__sNN/{sharp,blurry}/`): up to `segments` runs of
   `segment_len` frames, evenly spread over the clip, each with its own random camera shake
   and exposure (`recipe.json` beside them records every parameter):
   - shake: a smooth random trajectory (each of dx, dy, rotation, zoom a sum of three sinusoids
     of 0.15-0.5 cycles/frame with random phases) scaled so that the RMS image speed of the
     translation is `speed` px/frame (log-uniform in `speed_range`); rotation and zoom move the
     face border by `rot_share` and `zoom_share` of that speed;
   - exposure `E` frame intervals (log-uniform in `exposure_range`);
   - blurry frame t = mean over sub-frame times tau in [t - E/2, t + E/2] (one sample per
     `sub_step_px` px of camera motion, at least 3) of the source frame at tau (the clip's
     own motion on a 1/4-frame grid, flow-interpolated between its two neighbouring frames:
     DIS flows, linear-motion intermediate flows as in Super SloMo, see blur.py) seen through
     the shaken camera at exactly tau; averaged in linear
     light (gamma 2.2) and re-encoded to sRGB;
   - sharp frame t = the source frame t through the camera at time t (mid-exposure);
   - still camera (`still_share` of the segments): no shake and a long exposure (log-uniform
     in `still_exposure_range` frame intervals), so only what moves in the clip blurs: the
     paper's own recipe (consecutive frames averaged in sRGB values, as the paper's were; here
     flow-interpolated). In such clips
     (the authors' vd001 among them) the background, a microphone or a still shoulder stay
     sharp; a network that only ever saw whole-frame shake over-sharpens those edges;
   - no blur (`sharp_share` of the segments): the blurry frame is the sharp one (then noise
     and compression as below), so the network also learns to leave a sharp (or naturally
     soft) face alone instead of sharpening it;
   - sensor noise and compression (`degrade_share` of the segments, blurry frames only): white
     Gaussian noise of sigma log-uniform in `noise_range` (8-bit levels), then JPEG at a
     quality uniform in `jpeg_range`, as a phone camera's encoder leaves them. Real clips are
     never noise- and artefact-free; a network trained only on clean inputs sharpens their
     noise.
4. **neighbour alignment** (`<out>/training_set/<seg>/blur_-2..blur_2/`): `preprocess align`
   with the options the video command uses (DIS flow at smaller side 200), as a user's clip.
5. **3D priors** (`--priors`): five points, 68 points and coefficients by fitting, renders
   (`facePointDetection`, `demo.py`, `demo_render.py` functions with the shipped model).
6. **datalists** `<out>/datalist_train.txt` and `<out>/datalist_val.txt` in the original
   8-column format (sharp relative to `<out>/dataset`, the rest to `<out>/training_set`).

Every step skips finished outputs, so a killed run resumes where it stopped; every random
draw is seeded by (seed, clip name, segment), so a resumed run makes the same bytes.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from common.flags import DEFAULT_OCCLUSION
from common.frames import IMAGE_EXTS, frame_offsets, list_frames
from common.names import safe_name
from common.paths import dlib_model_path

from .align import align_dataset, datalist_line
from .blur import from_linear, to_linear
from common.fileio import InputError, frame_name, read_image, write_image, write_text
from .flow import compute_flow, to_gray_u8, warp
from common.parallel import run_tasks
from .video import extract_frames, iter_video, video_name

VIDEO_EXTS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
SAME_PERSON = 0.6  # dlib's face-descriptor distance threshold for "same person"


@dataclass
class RecipeConfig:
    """Parameters of the recipe (all recorded in `<out>/recipe.json`)."""

    size: int = 256                     # final crop side, px
    margin: int = 40                    # extra source border on each side, px
    crop_scale: float = 2.0             # final crop side / face box side
    max_source_frames: int = 160        # frames decoded per clip (from the start)
    segment_len: int = 20               # frames per segment
    segments: int = 4                   # segments per clip (fewer when the clip is short)
    val_segments: int = 2               # segments per validation clip
    speed_range: tuple = (1.0, 24.0)    # RMS shake speed, px/frame at `size` (log-uniform)
    exposure_range: tuple = (0.4, 2.0)  # exposure, frame intervals (log-uniform)
    rot_share: float = 0.25             # rotation speed at the crop border / translation speed
    zoom_share: float = 0.15            # zoom speed at the crop border / translation speed
    sub_step_px: float = 1.0            # motion between two exposure sub-samples, px
    max_sub: int = 33                   # at most this many sub-samples per frame
    n_val: int = 6                      # validation clips (whole persons)
    n_frames: int = 5                   # frames per training sample (5 or 9)
    flow: str = "dis"                   # neighbour alignment flow (as the video command)
    flow_side: int = 200
    occlusion: str = DEFAULT_OCCLUSION  # neighbour pixels failing the forward-backward check (flow.py)
    still_share: float = 0.3            # share of segments with a still camera (the paper's blur)
    still_exposure_range: tuple = (2.0, 8.0)  # their exposure, frame intervals (log-uniform)
    still_linear: bool = False          # still segments averaged in linear light (else sRGB, the paper's)
    sharp_share: float = 0.1            # share of segments without blur (blurry = sharp + noise/JPEG)
    unblurred_repeat: int = 1           # training-list rows of each unblurred segment (oversampling)
    fit_frame: bool = True              # crops inside the frame, never upsampled (see step 2)
    degrade_share: float = 0.5          # share of segments with noise + JPEG on the blurry frames
    noise_range: tuple = (0.5, 3.0)     # Gaussian noise sigma, 8-bit levels (log-uniform)
    jpeg_range: tuple = (70, 95)        # JPEG quality (uniform integer)
    seed: int = 0
    val_clips: list = field(default_factory=list)  # explicit validation clips (overrides n_val)


# ----------------------------------------------------------------------------- clips
def find_clips(folder) -> list[Path]:
    """Video files and frame folders directly inside `folder`, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: folder of face videos not found")
    clips = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_file() and p.suffix.lower() in VIDEO_EXTS:
            clips.append(p)
        elif p.is_dir() and any(f.suffix.lower() in IMAGE_EXTS for f in p.iterdir()):
            clips.append(p)
    if not clips:
        raise InputError(f"{folder}: no video files ({', '.join(VIDEO_EXTS)}) or frame folders inside")
    return clips


def _rng(cfg: RecipeConfig, *key) -> np.random.Generator:
    digest = hashlib.sha256(repr((cfg.seed, *key)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


# ----------------------------------------------------------------------------- identities
def clip_descriptor(clip: Path, n: int = 5, max_frames: int = 60) -> np.ndarray | None:
    """Mean 128-d dlib face descriptor of the largest face over up to `n` frames, or None."""
    import dlib

    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(str(dlib_model_path("shape_predictor_5_face_landmarks.dat")))
    rec = dlib.face_recognition_model_v1(str(dlib_model_path("dlib_face_recognition_resnet_model_v1.dat")))
    descs = []
    for i, frame in iter_video(clip, max_frames, max(1, max_frames // n)):
        s = min(1.0, 480 / max(frame.shape[:2]))
        img = frame if s == 1.0 else cv2.resize(frame, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        rects = list(det(img, 1))
        if not rects:
            continue
        r = max(rects, key=lambda r: r.width() * r.height())
        descs.append(np.asarray(rec.compute_face_descriptor(img, sp(img, r))))
    return np.mean(descs, axis=0) if descs else None


def group_people(names: list[str], descs: dict) -> list[list[str]]:
    """Connected components of clips whose descriptors are closer than SAME_PERSON."""
    parent = {n: n for n in names}

    def root(n):
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    with_desc = [n for n in names if descs.get(n) is not None]
    for i, a in enumerate(with_desc):
        for b in with_desc[i + 1:]:
            if np.linalg.norm(descs[a] - descs[b]) < SAME_PERSON:
                parent[root(a)] = root(b)
    groups: dict = {}
    for n in names:
        groups.setdefault(root(n), []).append(n)
    return sorted((sorted(g) for g in groups.values()), key=lambda g: g[0])


def make_split(clips: list[Path], cfg: RecipeConfig, out: Path, jobs: int = 1) -> dict:
    """Identity-disjoint train/validation split, cached in `<out>/splits.json`."""
    path = out / "splits.json"
    if path.exists():
        split = json.loads(path.read_text())
        names = {safe_name(video_name(c)) for c in clips}
        if set(split["train"]) | set(split["val"]) == names:
            return split
    names = [safe_name(video_name(c)) for c in clips]
    descs = run_tasks(clip_descriptor, clips, jobs, desc="face descriptors", unit="clip")
    descs = dict(zip(names, descs))
    people = group_people(names, descs)
    if cfg.val_clips:
        val = sorted(safe_name(v) for v in cfg.val_clips)
        unknown = set(val) - set(names)
        if unknown:
            raise InputError(f"--val_clips: not among the clips: {', '.join(sorted(unknown))}")
        for g in people:
            if set(g) & set(val) and not set(g) <= set(val):
                raise InputError(f"--val_clips: {sorted(set(g) & set(val))} show the same person as "
                                 f"training clips {sorted(set(g) - set(val))}")
    else:
        rng = _rng(cfg, "split")
        order = rng.permutation(len(people))
        val = []
        for k in order:
            g = people[k]
            # Small persons only: holding out a person with many clips would starve training.
            if len(g) <= 2 and all(descs.get(n) is not None for n in g):
                val += g
            if len(val) >= cfg.n_val:
                break
        val = sorted(val)
    train = sorted(n for n in names if n not in val)
    split = dict(train=train, val=val, people=people, threshold=SAME_PERSON,
                 no_face=[n for n in names if descs.get(n) is None])
    write_text(path, json.dumps(split, indent=1) + "\n")
    return split


# ----------------------------------------------------------------------------- shake
@dataclass
class Shake:
    """A smooth random camera shake: `matrix(t)` maps output pixels to source pixels at time t."""

    size: int
    margin: int
    amp: np.ndarray    # (4,) dx px, dy px, rotation rad, log-zoom
    freq: np.ndarray   # (4, 3) cycles/frame
    phase: np.ndarray  # (4, 3) rad
    weight: np.ndarray  # (4, 3)

    @classmethod
    def random(cls, rng, size: int, margin: int, speed: float, rot_share: float, zoom_share: float,
               n_frames: int) -> "Shake":
        freq = rng.uniform(0.15, 0.5, (4, 3))
        phase = rng.uniform(0, 2 * np.pi, (4, 3))
        weight = rng.uniform(0.3, 1.0, (4, 3))
        unit = cls(size, margin, np.ones(4), freq, phase, weight)
        t = np.linspace(0, max(n_frames - 1, 1), 400)
        v = np.gradient(unit.params(t), t, axis=1)  # (4, T) unit-amplitude speeds
        rms = lambda x: float(np.sqrt(np.mean(x ** 2)))  # noqa: E731
        r = size / 2
        shift = speed / max(math.hypot(rms(v[0]), rms(v[1])), 1e-9)
        amp = np.array([shift, shift,
                        rot_share * speed / r / max(rms(v[2]), 1e-9),
                        zoom_share * speed / r / max(rms(v[3]), 1e-9)])
        # Keep the view inside the margin: translation + rotation/zoom at the corners.
        peak = np.abs(unit.params(t)).max(axis=1) * amp
        reach = np.hypot(peak[0], peak[1]) + (peak[2] + peak[3]) * r * np.sqrt(2)
        if reach > margin * 0.9:
            amp *= margin * 0.9 / reach
        return cls(size, margin, amp, freq, phase, weight)

    def params(self, t) -> np.ndarray:
        t = np.atleast_1d(np.asarray(t, float))
        s = np.einsum("pk,pkt->pt", self.weight / self.weight.sum(1, keepdims=True),
                      np.sin(2 * np.pi * self.freq[..., None] * t + self.phase[..., None]))
        return self.amp[:, None] * s

    def matrix(self, t: float) -> np.ndarray:
        """2x3 affine, output (size x size) pixel -> source ((size + 2 margin)^2) pixel."""
        dx, dy, rot, logz = self.params(t)[:, 0]
        c = (self.size - 1) / 2
        z = math.exp(logz)
        a, b = z * math.cos(rot), z * math.sin(rot)
        src_c = c + self.margin
        return np.array([[a, -b, src_c + dx - a * c + b * c],
                         [b, a, src_c + dy - b * c - a * c]], np.float64)


def view(img: np.ndarray, m: np.ndarray, size: int, interpolation: int = cv2.INTER_CUBIC) -> np.ndarray:
    """Sample `img` (float32 HxWx3) through the camera matrix `m` (output -> source).

    Sharp frames use bicubic resampling; the exposure sub-samples use bilinear (3x faster,
    and the difference vanishes in their average)."""
    return cv2.warpAffine(img, m, (size, size), flags=interpolation | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT101)


class Interpolator:
    """Source frame at time tau (frames) in linear light (float32), flow-interpolated.

    Intermediate frames are made on a grid of `grid` steps per frame interval and cached:
    a talking head moves a few pixels per frame, so its own motion is sampled finely enough
    at 1/4 frame, while the camera shake (the larger motion) is applied exactly per
    sub-sample by `view`.
    """

    def __init__(self, frames: list[np.ndarray], grid: int = 4):
        self.srgb = frames
        self.lin = [to_linear(f) for f in frames]
        self.grid = grid
        self.flows: dict = {}
        self.cache: dict = {}

    def __call__(self, tau: float) -> np.ndarray:
        n = len(self.lin)
        q = int(round(min(max(float(tau), 0.0), n - 1.0) * self.grid))
        i, m = divmod(q, self.grid)
        if m == 0:
            return self.lin[i]
        if q not in self.cache:
            if len(self.cache) > 4 * self.grid:
                self.cache.pop(next(iter(self.cache)))
            self.cache[q] = self._between(i, m / self.grid)
        return self.cache[q]

    def _between(self, i: int, a: float) -> np.ndarray:
        if i not in self.flows:
            g0, g1 = to_gray_u8(self.srgb[i]), to_gray_u8(self.srgb[i + 1])
            # Flow at smaller side 200 (as the alignment): the clip's own motion is smooth.
            self.flows[i] = (compute_flow(g0, g1, "dis", 200), compute_flow(g1, g0, "dis", 200))
        f01, f10 = self.flows[i]
        # Linear-motion intermediate flows (Super SloMo), as preprocess/blur.py.
        ft0 = (-(1 - a) * a * f01 + a * a * f10).astype(np.float32)
        ft1 = ((1 - a) ** 2 * f01 - a * (1 - a) * f10).astype(np.float32)
        return ((1 - a) * warp(self.lin[i], ft0, cv2.INTER_LINEAR)
                + a * warp(self.lin[i + 1], ft1, cv2.INTER_LINEAR))


def synthesize(frames: list[np.ndarray], shake: Shake, exposure: float, sub_step_px: float,
               speed: float, max_sub: int, targets=None,
               linear: bool = True) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """(sharp, blurry, sub-samples per frame) for a segment of source frames (uint8 RGB).

    targets: indices of `frames` to produce (default all); the frames around them only feed
    the exposure windows, so a long exposure near the segment's ends still sees real motion.
    The camera time of target t is t - targets[0]. `linear=False` averages the sub-samples'
    sRGB values (as the paper's frame averaging does) instead of linear light. `exposure` 0:
    the blurry frame is the sharp one."""
    interp = Interpolator(frames)
    size = shake.size
    targets = list(range(len(frames))) if targets is None else list(targets)
    # One sub-sample per `sub_step_px` of camera motion and per grid step of the clip's own
    # motion (a still camera with a long exposure still needs its frames interpolated).
    n_sub = int(np.clip(max(math.ceil(exposure * speed / sub_step_px),
                            math.ceil(exposure * interp.grid)) + 1, 3, max_sub))
    offsets = (np.arange(n_sub) / (n_sub - 1) - 0.5) * exposure
    sharp, blurry = [], []
    for t in targets:
        c = t - targets[0]
        sharp.append(_encode(view(interp.lin[t], shake.matrix(c), size)))
        if exposure <= 0:
            blurry.append(sharp[-1].copy())
            continue
        acc = np.zeros((size, size, 3), np.float32)
        for o in offsets:
            x = view(interp(t + o), shake.matrix(c + o), size, cv2.INTER_LINEAR)
            acc += x if linear else from_linear(x)
        blurry.append(_encode(acc / n_sub) if linear else
                      np.clip(np.rint(acc / n_sub), 0, 255).astype(np.uint8))
    return sharp, blurry, n_sub


def _encode(lin: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(from_linear(lin)), 0, 255).astype(np.uint8)


def degrade(img: np.ndarray, sigma: float, quality: int, rng) -> np.ndarray:
    """Sensor noise then compression: uint8 RGB -> uint8 RGB.

    sigma: white Gaussian noise, 8-bit levels (0 = none); quality: JPEG quality 1-100 (0 = none),
    through OpenCV's libjpeg (4:2:0 chroma, as camera and video encoders subsample colour)."""
    out = img
    if sigma > 0:
        out = np.clip(np.rint(img + rng.normal(0.0, sigma, img.shape)), 0, 255).astype(np.uint8)
    if quality > 0:
        ok, buf = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    return np.ascontiguousarray(out)


# ----------------------------------------------------------------------------- steps
def _source_task(task) -> dict:
    clip, out, name, cfg = task
    big = cfg.size + 2 * cfg.margin
    try:
        return extract_frames(clip, out / "source", name, cfg.max_source_frames, 1, big, "sharp",
                              cfg.crop_scale * big / cfg.size, 5.0, fit_frame=cfg.fit_frame)
    except InputError as e:
        return dict(name=name, error=str(e))


def segment_starts(n: int, cfg: RecipeConfig, count: int) -> list[int]:
    """Evenly spread segment starts over n source frames (at most `count`, no overlap)."""
    L = cfg.segment_len
    k = min(count, n // L)
    if k <= 0:
        return []
    if k == 1:
        return [(n - L) // 2]
    return [int(round(i * (n - L) / (k - 1))) for i in range(k)]


def segment_params(cfg: RecipeConfig, clip: str, index: int) -> dict:
    rng = _rng(cfg, clip, index)
    lo, hi = cfg.speed_range
    speed = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    lo, hi = cfg.exposure_range
    exposure = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    p = dict(speed=speed, exposure=exposure, shake_seed=int(rng.integers(2 ** 31)))
    # Drawn after the shake so segments of older recipes keep their shake and exposure.
    noisy = rng.uniform() < cfg.degrade_share
    lo, hi = cfg.noise_range
    sigma = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    quality = int(rng.integers(cfg.jpeg_range[0], cfg.jpeg_range[1] + 1))
    p.update(noise_sigma=sigma if noisy else 0.0, jpeg_quality=quality if noisy else 0,
             noise_seed=int(rng.integers(2 ** 31)))
    if rng.uniform() < cfg.still_share:
        lo, hi = cfg.still_exposure_range
        p.update(speed=0.0, exposure=float(math.exp(rng.uniform(math.log(lo), math.log(hi)))))
    p["still"] = p["speed"] == 0.0
    # Drawn last, so the draws above keep their values when these shares change.
    if rng.uniform() < cfg.sharp_share:
        p.update(exposure=0.0)
    return p


def _segment_task(task) -> dict:
    out, clip, index, start, cfg = task
    seg = f"{clip}__s{index:02d}"
    root = out / "dataset" / seg
    names = [frame_name(k) for k in range(1, cfg.segment_len + 1)]
    if all((root / d / n).exists() for d in ("sharp", "blurry") for n in names) and \
            (root / "recipe.json").exists():
        return dict(segment=seg, written=0)
    p = segment_params(cfg, clip, index)
    # Source frames around the segment feed the exposure windows of its first and last frames.
    pad = math.ceil(p["exposure"] / 2) + 1
    every = list_frames(out / "source" / clip / "sharp", "source frames")
    lo, hi = max(0, start - pad), min(len(every), start + cfg.segment_len + pad)
    src = every[lo:hi]
    frames = [read_image(q) for q in src]
    targets = range(start - lo, start - lo + min(cfg.segment_len, len(every) - start))
    # The source crops are `size + 2 margin` square, or smaller for a small frame (fit_frame).
    size = frames[0].shape[0] - 2 * cfg.margin
    if size < 32:
        raise InputError(f"{src[0]}: source crop {frames[0].shape[0]} px leaves {size} px inside the "
                         f"{cfg.margin}-px margin")
    shake = Shake.random(np.random.default_rng(p["shake_seed"]), size, cfg.margin, p["speed"],
                         cfg.rot_share, cfg.zoom_share, len(targets))
    sharp, blurry, n_sub = synthesize(frames, shake, p["exposure"], cfg.sub_step_px, p["speed"], cfg.max_sub,
                                      targets, linear=cfg.still_linear or not p["still"])
    if p["noise_sigma"] > 0 or p["jpeg_quality"] > 0:
        rng = np.random.default_rng(p["noise_seed"])
        blurry = [degrade(b, p["noise_sigma"], p["jpeg_quality"], rng) for b in blurry]
    for n, s, b in zip(names, sharp, blurry):
        write_image(root / "sharp" / n, s)
        write_image(root / "blurry" / n, b)
    meta = dict(clip=clip, segment=index, size=size, source_frames=[start + 1, start + len(sharp)], **p,
                sub_samples=n_sub, shake=dict(amp=shake.amp.tolist(), freq=shake.freq.tolist(),
                                              phase=shake.phase.tolist(), weight=shake.weight.tolist()))
    write_text(root / "recipe.json", json.dumps(meta, indent=1) + "\n")
    return dict(segment=seg, written=len(names))


def write_lists(out: Path, segments: dict, n_frames: int, priors: bool = False,
                unblurred_repeat: int = 1) -> dict:
    """`datalist_train.txt` / `datalist_val.txt`: every frame of every finished segment.

    With `priors`, only frames that also have their coefficients and render (a frame where the
    detector found no face has neither) are listed, so `--face both` trains on the list as it
    is; the rows left out are counted as `<part>_without_prior`.

    `unblurred_repeat` > 1 lists each frame of an unblurred segment (`exposure == 0` in its
    `recipe.json`) that many times in the training list, so the network sees more frames it must
    leave alone (the validation list is never repeated); the repeated rows are counted as
    `train_repeated`. The segments themselves do not change.
    """
    if unblurred_repeat < 1:
        raise InputError(f"unblurred_repeat must be 1 or more, got {unblurred_repeat}")
    offsets = frame_offsets(n_frames)
    counts = {}
    for part, segs in segments.items():
        lines, dropped, repeated = [], 0, 0
        for seg in segs:
            tset = out / "training_set" / seg
            copies = 1
            if part == "train" and unblurred_repeat > 1 and _unblurred(out / "dataset" / seg):
                copies = unblurred_repeat
            for p in list_frames(out / "dataset" / seg / "blurry", "blurry frames"):
                if not all((tset / f"blur_{o}" / p.name).exists() for o in offsets):
                    continue
                if priors and not ((tset / "face" / (p.stem + ".txt")).exists()
                                   and (tset / "render" / p.name).exists()):
                    dropped += 1
                    continue
                lines.extend([datalist_line(seg, p.name, offsets)] * copies)
                repeated += copies - 1
        write_text(out / f"datalist_{part}.txt", "".join(line + "\n" for line in lines))
        counts[part] = len(lines)
        if priors:
            counts[f"{part}_without_prior"] = dropped
        if repeated:
            counts[f"{part}_repeated"] = repeated
    return counts


def _unblurred(segment_dir: Path) -> bool:
    """True when the segment's `recipe.json` says it was left without blur (`exposure == 0`)."""
    meta = segment_dir / "recipe.json"
    try:
        return float(json.loads(meta.read_text())["exposure"]) == 0.0
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"{meta}: cannot read the segment's exposure ({e})") from None


def make_priors(out: Path, segments: list[str], jobs: int = 1, bfm=None) -> dict:
    """Step 5: the 3D priors of every segment, made by the stage tools exactly as for a user's clip.

    Runs `python -m facePointDetection` (five points on the blurry frames), `demo.py`
    (coefficients by landmark fitting) and `demo_render.py` (renders) as subprocesses: the
    recipe sits in `preprocess` (stage 1) and does not import the later stages. Each tool skips
    finished outputs. Returns {tool: seconds}.
    """
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[1]
    data, tset = out / "dataset", out / "training_set"
    extra = ["--bfm", str(bfm)] if bfm else []
    steps = [("landmarks", [sys.executable, "-m", "facePointDetection", "--dataset", str(data),
                            "--jobs", str(jobs)]),
             ("coefficients", [sys.executable, str(root / "demo.py"), "--input_path", str(data),
                               "--output_path", str(tset), "--jobs", str(jobs), *extra]),
             ("renders", [sys.executable, str(root / "demo_render.py"), "--coeff_path", str(tset),
                          "--data_path", str(data), "--jobs", str(jobs), *extra])]
    times = {}
    for name, cmd in steps:
        t0 = time.time()
        done = subprocess.run(cmd, cwd=root)
        if done.returncode != 0:
            raise InputError(f"{out}: the {name} step failed (exit {done.returncode}): {' '.join(cmd)}")
        times[name] = round(time.time() - t0, 1)
    return times


def run_recipe(videos, out, cfg: RecipeConfig, jobs: int = 1, priors: bool = False, bfm=None) -> dict:
    """Run every step (see the module docstring); returns a summary dict."""
    out = Path(out)
    clips = find_clips(videos)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "recipe.json", json.dumps(dict(videos=str(videos), **asdict(cfg)), indent=1) + "\n")
    split = make_split(clips, cfg, out, jobs)
    names = {safe_name(video_name(c)): c for c in clips}
    res = run_tasks(_source_task, [(names[n], out, n, cfg) for n in sorted(names)], jobs,
                    desc="source crops", unit="clip")
    failed = {r["name"]: r["error"] for r in res if "error" in r}
    tasks, segments = [], {"train": [], "val": []}
    for n in sorted(names):
        if n in failed:
            continue
        part = "val" if n in split["val"] else "train"
        count = cfg.val_segments if part == "val" else cfg.segments
        n_src = len(list_frames(out / "source" / n / "sharp", "source frames"))
        for i, s in enumerate(segment_starts(n_src, cfg, count)):
            tasks.append((out, n, i, s, cfg))
            segments[part].append(f"{n}__s{i:02d}")
    run_tasks(_segment_task, tasks, jobs, desc="blur synthesis", unit="segment")
    all_segs = segments["train"] + segments["val"]
    align = align_dataset(out / "dataset", out / "training_set", None, "flow", cfg.flow, cfg.n_frames,
                          jobs, flow_side=cfg.flow_side or None, videos=all_segs, occlusion=cfg.occlusion)
    summary = dict(clips=len(clips), failed=failed, train_clips=len(split["train"]),
                   val_clips=split["val"], segments={k: len(v) for k, v in segments.items()},
                   align=align)
    if priors:
        summary["priors"] = make_priors(out, all_segs, jobs, bfm)
    summary["datalists"] = write_lists(out, segments, cfg.n_frames, priors, cfg.unblurred_repeat)
    write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    return summary
