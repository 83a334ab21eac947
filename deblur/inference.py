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

from deblur.network import (coeff_patch, crop_back, image_channels, pad_to_valid, uses_coeff,
                            uses_render)
from preprocess.fileio import InputError, read_coeff, read_image, write_image


class Deblurrer:
    """A loaded generator applied frame by frame.

    `deblur(frames, render=None, coeff=None)`: frames = n_frames uint8 HxWx3 arrays (t-2..t+2),
    render uint8 HxWx3, coeff the 239/257 coefficient vector -> uint8 HxWx3 restored frame.
    """

    def __init__(self, net, config: dict, transpose_portrait: bool = True,
                 jit_compile: bool = False):
        self.net = net
        self.config = config
        self.transpose_portrait = transpose_portrait
        self.jit_compile = jit_compile
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
        cfg = self.config
        face, levels = cfg["face"], cfg["levels"]
        if len(frames) != cfg["n_frames"]:
            raise ValueError(f"expected {cfg['n_frames']} frames, got {len(frames)}")
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
        gray = image_channels(cfg["model"]) == 1
        if gray:
            # Gray model: each colour channel is deblurred as its own batch item (original).
            n = cfg["n_frames"]
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
        out = crop_back(self._predict(inputs), size)
        # Gray: the three channel batches back onto channels; colour: the single batch item.
        out = out[..., 0].transpose(1, 2, 0) if gray else out[0]
        if rot:
            out = out.transpose(1, 0, 2)
        return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)


def frame_offsets(n_frames: int) -> list[int]:
    r = n_frames // 2
    return list(range(-r, r + 1))


def list_videos(input_path) -> list[Path]:
    root = Path(input_path)
    if not root.is_dir():
        raise InputError(f"{root}: input folder not found")
    vids = sorted(p for p in root.iterdir() if (p / "blur_0").is_dir())
    if not vids:
        raise InputError(f"{root}: no <video>/blur_0/ folders (expected the testing_set layout)")
    return vids


def run_test(deblurrer: Deblurrer, input_path, output_path, gt_path=None,
             skip_existing: bool = False, log=print) -> dict:
    """Deblur every video of a testing_set-style folder; returns per-video metrics when gt."""
    cfg = deblurrer.config
    offsets = frame_offsets(cfg["n_frames"])
    results = {}
    times = []
    for vid in list_videos(input_path):
        out_dir = Path(output_path) / vid.name
        names = sorted(p.name for p in (vid / "blur_0").glob("*.png") if not p.name.startswith("."))
        if not names:
            raise InputError(f"{vid / 'blur_0'}: no PNG frames")
        scores = []
        for name in names:
            dst = out_dir / name
            if not (skip_existing and dst.is_file()):
                frames = [read_image(vid / f"blur_{o}" / name) for o in offsets]
                shape = frames[0].shape
                for o, f in zip(offsets, frames):
                    if f.shape != shape:
                        raise InputError(f"{vid / f'blur_{o}' / name}: size {f.shape[1]}x{f.shape[0]} "
                                         f"differs from blur_0 ({shape[1]}x{shape[0]})")
                render = (read_image(vid / "render" / name) if uses_render(cfg["face"]) else None)
                if render is not None and render.shape[:2] != shape[:2]:
                    raise InputError(f"{vid / 'render' / name}: render size {render.shape[1]}x{render.shape[0]} "
                                     f"differs from the frames ({shape[1]}x{shape[0]})")
                coeff = (read_coeff(vid / "face" / name.replace(".png", ".txt"))
                         if uses_coeff(cfg["face"]) else None)
                t = time.time()
                res = deblurrer.deblur(frames, render, coeff)
                times.append(time.time() - t)
                write_image(dst, res)
                log(f"{dst}  {times[-1]:.3f}s")
            if gt_path is not None:
                gt = _find_gt(Path(gt_path), vid.name, name)
                scores.append(_psnr_ssim(read_image(dst), read_image(gt)))
        if scores:
            s = np.asarray(scores)
            results[vid.name] = {"psnr": float(s[:, 0].mean()), "ssim": float(s[:, 1].mean()),
                                 "frames": len(scores)}
    if results:
        results["mean"] = {"psnr": float(np.mean([v["psnr"] for v in results.values()])),
                           "ssim": float(np.mean([v["ssim"] for v in results.values()]))}
        for k, v in results.items():
            log(f"{k:>24s}  PSNR {v['psnr']:.3f} dB  SSIM {v['ssim']:.4f}")
        Path(output_path).mkdir(parents=True, exist_ok=True)
        (Path(output_path) / "metrics.json").write_text(json.dumps(results, indent=2))
    if times:
        log(f"mean time per frame: {np.mean(times):.3f}s over {len(times)} frames")
    return results


def _find_gt(gt_root: Path, video: str, name: str) -> Path:
    for cand in (gt_root / video / name, gt_root / video / "sharp" / name):
        if cand.is_file():
            return cand
    raise InputError(f"{gt_root}: no ground truth for {video}/{name} "
                     f"(looked in {video}/ and {video}/sharp/)")


def _psnr_ssim(a, b):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    if a.shape != b.shape:
        raise InputError(f"result {a.shape} and ground truth {b.shape} differ in size")
    return (peak_signal_noise_ratio(b, a, data_range=255),
            structural_similarity(b, a, channel_axis=-1, data_range=255))
