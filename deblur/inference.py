"""Testing (`run_model.py --phase test`): the original `DEBLUR.test`, for any frame size.

Input layout (original): `<input_path>/<video>/{blur_-2,blur_-1,blur_0,blur_1,blur_2}/NNNNN.png`,
`<video>/face/NNNNN.txt` (coefficients) and `<video>/render/NNNNN.png` (restored render); output
`<output_path>/<video>/NNNNN.png` at the input size.

As the original, portrait frames are transposed so the network sees width >= height (the
authors' weights were trained that way round) and transposed back; unlike the original (which
pads to a fixed placeholder size and downscales larger frames), every frame is processed at its
own resolution: edge-padded at the bottom/right to a valid size and cropped back.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from common import metrics
from common.frames import frame_offsets, list_frames, list_videos
from deblur.config import NetworkConfig
from deblur.network import (coeff_patch, crop_back, image_channels, pad_to_valid, uses_coeff,
                            uses_render)
from common.errors import Interrupted
from common.fileio import InputError, read_coeff, read_image, write_image, write_text
from deblur.checkpoint import check_sharp_guard, read_model_record, write_model_record


class NonFiniteOutput(InputError):
    """The network produced NaN/inf: the checkpoint's weights are ruined (e.g. saved by a
    diverging run). Nothing is written for that frame."""


class Deblurrer:
    """A loaded generator applied frame by frame.

    `deblur(frames, render=None, coeff=None)`: frames = n_frames uint8 HxWx3 arrays (t-2..t+2),
    render uint8 HxWx3, coeff the 239/257 coefficient vector -> uint8 HxWx3 restored frame.
    Raises NonFiniteOutput (naming `source`, the checkpoint) when the network output holds
    NaN or infinite values, instead of returning a black or saturated frame.

    `self_ensemble`: each frame is also deblurred mirrored left-right (frames and render
    mirrored, the coefficients as they are) and the two outputs, the mirrored one mirrored back,
    are averaged before rounding to 8 bits: the geometric self-ensemble of EDSR (Lim et al.,
    CVPRW 2017) restricted to the mirror, the one transform under which a face stays a face the
    right way up. Twice the network time; not in the paper or the original code.

    `sharp_guard` (tau, grey levels; 0 = off): each restored frame's correction is scaled down
    when it is small (`apply_sharp_guard`), after the self-ensemble's average.
    """

    def __init__(self, net, config: NetworkConfig, transpose_portrait: bool = True,
                 jit_compile: bool = False, source: str | None = None, self_ensemble: bool = False,
                 sharp_guard: float = 0.0):
        self.net = net
        self.config = config
        self.transpose_portrait = transpose_portrait
        self.jit_compile = jit_compile
        self.source = source or "the network"
        self.self_ensemble = self_ensemble
        self.sharp_guard = check_sharp_guard(sharp_guard)
        self._fn = None

    def _predict(self, inputs):
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            if self._fn is None:
                # One trace for every frame size: spatial dims are left unknown.
                self._fn = tf.function(lambda d: self.net(d, training=False),
                                       reduce_retracing=True, jit_compile=self.jit_compile)
            out = self._fn({k: tf.constant(v) for k, v in inputs.items()})
        else:
            out = self.net(inputs, training=False)
        out = out[-1] if isinstance(out, (list, tuple)) else out
        return np.asarray(keras.ops.convert_to_numpy(out), dtype=np.float32)

    def deblur(self, frames, render=None, coeff=None) -> np.ndarray:
        return self.deblur_batch([(frames, render, coeff)])[0]

    def deblur_batch(self, items, batch_size: int | None = None) -> list[np.ndarray]:
        """`deblur` for several frames in one forward pass: items = [(frames, render, coeff)].

        Frames of one size (a clip's face window) go through the network together; a batch
        smaller than `batch_size` is filled with copies of its last item so every call has
        the same shape (an XLA-compiled forward pass is traced once per input shape). Items of
        another size, or a gray model (whose colour channels already form the batch), are run
        one by one. Returns one uint8 HxWx3 frame per item, as `deblur` would.
        """
        return [np.round(o * 255.0).astype(np.uint8) for o in self.restore_batch(items, batch_size)]

    def restore_batch(self, items, batch_size: int | None = None) -> list[np.ndarray]:
        """`deblur_batch` before rounding: float32 HxWx3 frames in [0, 1]."""
        items = list(items)
        centres = [it[0][len(it[0]) // 2] for it in items]
        if self.self_ensemble:
            # mirrored copies run in the same pass: twice the items, so twice the padded batch
            items = items + [_mirrored(*it) for it in items]
            batch_size = 2 * batch_size if batch_size else None
        prepared = [self._prepare(*it) for it in items]
        out: list = [None] * len(prepared)
        groups: dict = {}
        for i, (inputs, meta) in enumerate(prepared):
            key = None if meta["gray"] else tuple((k, v.shape) for k, v in sorted(inputs.items()))
            groups.setdefault(key if key is not None else ("single", i), []).append(i)
        for idx in groups.values():
            n = len(idx)
            fill = max(batch_size or n, n) - n
            stacked = {k: np.concatenate([prepared[i][0][k] for i in idx]
                                         + [prepared[idx[-1]][0][k]] * fill, axis=0)
                       for k in prepared[idx[0]][0]}
            res = self._predict(stacked)
            for j, i in enumerate(idx):
                meta = prepared[i][1]
                part = res[j * meta["batch"]:(j + 1) * meta["batch"]]
                out[i] = self._finish(part, meta)
        if self.self_ensemble:
            n = len(items) // 2
            out = [(a + b[:, ::-1]) / 2 for a, b in zip(out[:n], out[n:])]
        if self.sharp_guard:
            out = [apply_sharp_guard(o, c, self.sharp_guard) for o, c in zip(out, centres)]
        return out

    def _prepare(self, frames, render=None, coeff=None):
        """Network inputs (batch axis first) of one frame and what `_finish` needs to undo."""
        cfg = self.config
        face, levels = cfg.face, cfg.levels
        if len(frames) != cfg.n_frames:
            raise ValueError(f"expected {cfg.n_frames} frames, got {len(frames)}")
        blur = np.concatenate(frames, axis=-1).astype(np.float32) / 255.0
        h, w = blur.shape[:2]
        rot = self.transpose_portrait and h > w
        rend = None
        if uses_render(face):
            if render is None:
                raise ValueError("this checkpoint uses the render prior: render is required")
            if render.shape[:2] != (h, w):
                raise InputError(f"render is {render.shape[1]}x{render.shape[0]}, "
                                 f"frames are {w}x{h}")
            rend = render.astype(np.float32) / 255.0
        if rot:
            blur = blur.transpose(1, 0, 2)
            rend = None if rend is None else rend.transpose(1, 0, 2)
        gray = image_channels(cfg.model) == 1
        if gray:
            # Gray model: each colour channel is deblurred as its own batch item (original).
            n = cfg.n_frames
            blur = blur.reshape(blur.shape[0], blur.shape[1], n, 3).transpose(3, 0, 1, 2)
            rend = None if rend is None else rend.transpose(2, 0, 1)[..., None]
        else:
            blur = blur[None]
            rend = None if rend is None else rend[None]
        batch = blur.shape[0]
        blur_p, size = pad_to_valid(blur, levels, face)
        inputs = {"blur": blur_p}
        if rend is not None:
            inputs["render"] = pad_to_valid(rend, levels, face)[0]
        if uses_coeff(face):
            if coeff is None:
                raise ValueError("this checkpoint uses the coefficient prior: coeff is required")
            inputs["coeff"] = np.repeat(coeff_patch(coeff)[None], batch, axis=0)
        return inputs, {"size": size, "rot": rot, "gray": gray, "batch": batch}

    def _finish(self, out, meta) -> np.ndarray:
        """Network output of one frame (its batch items) -> float32 HxWx3 in [0, 1] at the
        frame's size (deblur_batch rounds it to 8 bits, after averaging a self-ensemble)."""
        out = crop_back(out, meta["size"])
        bad = int(np.size(out) - np.count_nonzero(np.isfinite(out)))
        if bad:
            # np.clip/astype would turn NaN into 0 (a black frame) without a word.
            raise NonFiniteOutput(
                f"{self.source}: network output has {bad} NaN/infinite values of {np.size(out)}; "
                f"the checkpoint's weights are ruined (saved after training diverged?) - use an "
                f"earlier checkpoint")
        # Gray: the three channel batches back onto channels; colour: the single batch item.
        out = out[..., 0].transpose(1, 2, 0) if meta["gray"] else out[0]
        if meta["rot"]:
            out = out.transpose(1, 0, 2)
        return np.clip(out, 0.0, 1.0)


def apply_sharp_guard(restored: np.ndarray, centre: np.ndarray, tau: float) -> np.ndarray:
    """The sharp-frame guard: blurry centre + g * correction, g = rms^2 / (rms^2 + tau^2).

    restored: float HxWx3 in [0, 1] (the network's frame); centre: uint8 HxWx3, the blurry frame
    it restores; tau: grey levels (0-255 scale), 0 returns `restored` unchanged. rms is the root
    mean square of (restored - centre) over the frame, in grey levels. Returns float32 HxWx3.

    Why: the network cannot tell from a patch whether soft edges are blurred or simply soft, so
    on frames that are already sharp it still sharpens, by about a grey level (rms) - enough to
    turn a 52-57 dB frame into a 47-48 dB one (checkpoints/MODEL_CARD.md, "Sharp-frame guard"). Those are the
    frames it changes least: a correction of rms tau is halved, one of 3 tau kept at 90%, so
    blurred frames keep their correction. One number per frame, so no seam or flicker inside
    a frame. This project's addition: not in the paper or the original code.
    """
    tau = check_sharp_guard(tau)
    restored = np.asarray(restored, dtype=np.float32)
    if tau == 0:
        return restored
    c = np.asarray(centre, dtype=np.float32) / 255.0
    r = restored - c
    rms2 = float(np.mean(np.square(r, dtype=np.float64))) * 255.0 ** 2
    g = rms2 / (rms2 + tau * tau)
    return np.clip(c + np.float32(g) * r, 0.0, 1.0)


def _mirrored(frames, render=None, coeff=None):
    """The inputs of one frame mirrored left-right (the coefficients as they are)."""
    return ([np.ascontiguousarray(f[:, ::-1]) for f in frames],
            None if render is None else np.ascontiguousarray(render[:, ::-1]), coeff)


def frame_names(video: Path) -> list[str]:
    """Names of a testing-set clip's frames (those of its blur_0/ folder)."""
    return [p.name for p in list_frames(video / "blur_0", "frames")]


def read_inputs(video: Path, name: str, config: NetworkConfig):
    """(frames t-r..t+r, render or None, coefficients or None) of one testing-set frame."""
    offsets = frame_offsets(config.n_frames)
    frames = [read_image(video / f"blur_{o}" / name) for o in offsets]
    shape = frames[0].shape
    for o, f in zip(offsets, frames):
        if f.shape != shape:
            raise InputError(f"{video / f'blur_{o}' / name}: size {f.shape[1]}x{f.shape[0]} "
                             f"differs from blur_0 ({shape[1]}x{shape[0]})")
    render = read_image(video / "render" / name) if uses_render(config.face) else None
    if render is not None and render.shape[:2] != shape[:2]:
        raise InputError(f"{video / 'render' / name}: render size {render.shape[1]}x{render.shape[0]} "
                         f"differs from the frames ({shape[1]}x{shape[0]})")
    coeff = (read_coeff(video / "face" / name.replace(".png", ".txt"))
             if uses_coeff(config.face) else None)
    return frames, render, coeff


def score_frame(result: np.ndarray, gt_path: Path) -> dict:
    """common.metrics.frame_metrics of a result against its ground-truth file."""
    try:
        return metrics.frame_metrics(result, read_image(gt_path))
    except ValueError as e:
        raise InputError(f"{gt_path}: {e}") from None


def summary(rows: list[dict]) -> dict:
    """The metrics document of a scored run: per-frame rows, per-video means, ALL (all frames)."""
    videos, overall = metrics.summarize(rows)
    return {"averaging": metrics.AVERAGING, "definitions": metrics.DEFINITIONS,
            "videos": videos, "all_frames": overall, "frames": rows}


def format_means(name: str, m: dict) -> str:
    return (f"{name:>24s}  PSNR {_fmt(m['psnr'])} dB  SSIM {_fmt(m['ssim'], 4)}  "
            f"PSNR-Y {_fmt(m['psnr_y'])} dB  SSIM-Y {_fmt(m['ssim_y'], 4)}  ({m['frames']} frames)")


def check_test_inputs(input_path, output_path, gt_path=None, config: NetworkConfig | None = None) -> int:
    """What `run_test` needs, checked before a model is loaded or a file written: the testing
    set's clips and, per frame, every input the network reads (blur_*, render/, face/ when
    `config` uses them), the ground truth of every frame when `gt_path` is given, and an output
    folder that can be one (not an existing file, nor a file where a clip's folder goes).
    Returns the number of frames; InputError naming the first problem.
    """
    out = Path(output_path)
    for p in (out, *out.parents):
        if p.exists() and not p.is_dir():
            raise InputError(f"{p}: exists and is not a folder (--output_path must be a folder)")
        if p.exists():
            break
    offsets = frame_offsets(config.n_frames) if config is not None else [0]
    n = 0
    for vid in list_videos(input_path, "blur_0"):
        if (out / vid.name).exists() and not (out / vid.name).is_dir():
            raise InputError(f"{out / vid.name}: exists and is not a folder (the results of {vid.name} go there)")
        needed = [f"blur_{o}" for o in offsets]
        if config is not None and uses_render(config.face):
            needed.append("render")
        for name in frame_names(vid):
            for sub in needed:
                if not (vid / sub / name).is_file():
                    raise InputError(f"{vid / sub / name}: input frame not found")
            if config is not None and uses_coeff(config.face):
                txt = vid / "face" / name.replace(".png", ".txt")
                if not txt.is_file():
                    raise InputError(f"{txt}: face coefficients not found (--face {config.face} reads them)")
            if gt_path is not None:
                _find_gt(Path(gt_path), vid.name, name)
            n += 1
    return n


def run_test(deblurrer: Deblurrer, input_path, output_path, gt_path=None,
             skip_existing: bool = False, log=print, model: dict | None = None) -> dict:
    """Deblur every video of a testing_set-style folder.

    With `gt_path`, every written frame is scored with common/metrics.py (PSNR/SSIM, RGB and Y)
    and `<output_path>/metrics.json` holds the per-frame values, the per-video means and ALL,
    the mean over all frames (frame-weighted; the averaging is written beside it). Returns
    {"videos": {video: means}, "all_frames": means, "frames": rows, "averaging": ...} or {}
    without ground truth. A frame whose network output is not finite stops the run
    (NonFiniteOutput naming the checkpoint and the frame); nothing is written for it.

    `model` (deblur.checkpoint.model_record) says what produced the frames: written as
    `<output_path>/model.json` (evaluate.py labels its report with it) and into metrics.json.
    With `skip_existing`, frames recorded as another model's are refused (InputError) rather
    than mixed into this model's results. Ctrl-C raises common.errors.Interrupted saying how to
    keep the finished frames (`--skip_existing`).
    """
    if model is not None:
        _record_model(Path(output_path), model, skip_existing)
    try:
        return _run_test(deblurrer, input_path, output_path, gt_path, skip_existing, log, model)
    except KeyboardInterrupt:
        how = ("running the same command again continues where it stopped" if skip_existing else
               "run the same command with --skip_existing to keep them and do the rest (without it, "
               "every frame is deblurred again, as in the original)")
        raise Interrupted(f"The frames written to {output_path} so far are complete; {how}.") from None


def _record_model(output_path: Path, model: dict, skip_existing: bool) -> None:
    old = read_model_record(output_path)
    same = old is not None and all(old.get(k) == model.get(k) for k in ("checkpoint", "step", "config"))
    if skip_existing and old is not None and not same:
        raise InputError(f"{output_path}: --skip_existing would keep frames of {old['model']} among "
                         f"those of {model['model']}; use another --output_path or drop --skip_existing")
    write_model_record(output_path, model)


def _run_test(deblurrer, input_path, output_path, gt_path, skip_existing, log, model) -> dict:
    cfg = deblurrer.config
    rows = []
    times = []
    for vid in list_videos(input_path, "blur_0"):
        out_dir = Path(output_path) / vid.name
        for name in frame_names(vid):
            dst = out_dir / name
            if not (skip_existing and dst.is_file()):
                frames, render, coeff = read_inputs(vid, name, cfg)
                t = time.time()
                try:
                    res = deblurrer.deblur(frames, render, coeff)
                except NonFiniteOutput as e:
                    raise NonFiniteOutput(f"{e} (first bad frame: {vid.name}/{name}; "
                                          f"{len(times)} frame(s) written before it)") from None
                times.append(time.time() - t)
                write_image(dst, res)
                log(f"{dst}  {times[-1]:.3f}s")
            if gt_path is not None:
                m = score_frame(read_image(dst), _find_gt(Path(gt_path), vid.name, name))
                rows.append({"video": vid.name, "frame": name, **m})
    results = {}
    if rows:
        results = summary(rows)
        if model is not None:
            results["model"] = model["model"]
        who = f" of {model['model']}" if model is not None else ""
        log(f"PSNR/SSIM{who} against {gt_path} (common/metrics.py; {metrics.AVERAGING}):")
        for k, v in [*results["videos"].items(), ("ALL (all frames)", results["all_frames"])]:
            log(format_means(k, v))
        write_text(Path(output_path) / "metrics.json",
                   json.dumps(metrics.json_safe(results), indent=1) + "\n")
    if times:
        log(f"mean time per frame: {np.mean(times):.3f}s over {len(times)} frames")
    return results


class Validator:
    """Scores a network on a small testing-set-layout folder during training (no files written).

    `input_path`: `<video>/blur_-2..blur_2, face/, render/` as for --phase test; `gt_path`:
    `<video>/NNNNN.png` or `<video>/sharp/`. Inputs and ground truth are read once and kept in
    memory (validation sets are small). `__call__(net, config)` deblurs every frame exactly as
    the test phase does (padding, transposition, uint8 rounding) and returns `summary(rows)`.
    """

    def __init__(self, input_path, gt_path, config: NetworkConfig, max_frames: int | None = None):
        self.items = []
        for vid in list_videos(input_path, "blur_0"):
            for name in frame_names(vid):
                if max_frames and len(self.items) >= max_frames:
                    break
                gt = read_image(_find_gt(Path(gt_path), vid.name, name))
                self.items.append((vid.name, name, read_inputs(vid, name, config), gt))
        self.source = str(input_path)
        self._deblurrer = None

    @classmethod
    def from_datalist(cls, datalist, data_root, train_root, config: NetworkConfig,
                      max_frames: int | None = None) -> "Validator":
        """Validation samples from a datalist (the format of training, e.g. the recipe's
        `datalist_val.txt`); with `max_frames`, that many samples evenly spread over the list."""
        from deblur.data import parse_datalist

        samples = parse_datalist(datalist, data_root, train_root, config.n_frames, config.face)
        if max_frames and len(samples) > max_frames:
            samples = [samples[int(i)] for i in np.linspace(0, len(samples) - 1, max_frames).round()]
        self = cls.__new__(cls)
        self.items, self.source, self._deblurrer = [], str(datalist), None
        for s in samples:
            frames = [read_image(p) for p in s.blur]
            render = read_image(s.render) if uses_render(config.face) else None
            coeff = read_coeff(s.coeff) if uses_coeff(config.face) else None
            self.items.append((Path(s.sharp).parent.parent.name, Path(s.sharp).name,
                               (frames, render, coeff), read_image(s.sharp)))
        return self

    def blurry(self) -> dict:
        """`summary` of the centre blurry frames against the ground truth (the input's score)."""
        rows = [{"video": v, "frame": n, **metrics.frame_metrics(f[len(f) // 2], gt)}
                for v, n, (f, _, _), gt in self.items]
        return summary(rows)

    def __call__(self, net, config: NetworkConfig, source: str = "the network being trained") -> dict:
        if self._deblurrer is None or self._deblurrer.net is not net:
            self._deblurrer = Deblurrer(net, config, source=source)
        rows = []
        for video, name, (frames, render, coeff), gt in self.items:
            res = self._deblurrer.deblur(frames, render, coeff)
            try:
                m = metrics.frame_metrics(res, gt)
            except ValueError as e:
                raise InputError(f"validation ground truth {video}/{name}: {e}") from None
            rows.append({"video": video, "frame": name, **m})
        return summary(rows)


def _fmt(v, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _find_gt(gt_root: Path, video: str, name: str) -> Path:
    for cand in (gt_root / video / name, gt_root / video / "sharp" / name):
        if cand.is_file():
            return cand
    raise InputError(f"{gt_root}: no ground truth for {video}/{name} "
                     f"(looked in {video}/ and {video}/sharp/)")
