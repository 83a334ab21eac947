"""Synthetic motion-blurred face clip from a photo that ships with scikit-image (the `make demo` sample).

Not part of the original repository (rwenqi/3Dfacedeblurring), whose training pairs come from
averaging consecutive frames of high-frame-rate video (see preprocess `blur`). A fresh clone has
no video, so the demo builds one: a virtual camera looks at `skimage.data.astronaut()` (512x512
RGB, public domain NASA photo of Eileen Collins, face centred near x=220, y=121) and moves along
a smooth random shake trajectory; each output frame averages `sub_frames` renders spread over the
exposure, which is true motion blur (spatially varying for rotation and zoom), and the sharp frame
is the render at mid-exposure.

Trajectory (continuous time t in frames): every parameter is a sum of three sinusoids with
random frequency (0.04-0.25 cycles/frame), phase and weight, normalised to a unit peak and
scaled to its amplitude:
  dx, dy   translation of the camera in output pixels (+x right, +y down), amplitude `shake_px`
  rot      in-plane rotation in degrees (counter-clockwise), amplitude `shake_deg`
  zoom     scale factor 1 + z, amplitude `shake_zoom`
Sub-frames are averaged in linear light (sRGB decoded with gamma 2.2, averaged, re-encoded),
as a sensor integrates light. Everything is drawn from numpy's default_rng(seed): the same
arguments always give the same bytes.

Output, in the original dataset layout: `<dataset>/<name>/sharp/00001.png ...` and
`<dataset>/<name>/blurry/00001.png ...` (size x size RGB), plus `<dataset>/<name>/sample.json`
with the arguments and the per-frame poses.

    python -m preprocess.sample --dataset ./dataset --name astronaut --frames 24 --size 192 --seed 0
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from common.cli import ArgumentParser
from common.fileio import InputError, frame_name, write_image, write_text

FACE_CENTRE = (220.0, 121.0)  # (x, y) of the astronaut's face in the 512x512 photo, pixels


@dataclass
class SampleConfig:
    n_frames: int = 24        # frames in the clip
    size: int = 192           # output frames are size x size pixels
    scale: float = 1.0        # output pixels per photo pixel (face is ~90 px wide at 1.0)
    sub_frames: int = 15      # renders averaged per blurry frame
    exposure: float = 1.0     # exposure time in frame intervals (1.0 = shutter open all frame)
    shake_px: float = 12.0    # translation amplitude, output pixels
    shake_deg: float = 3.0    # rotation amplitude, degrees
    shake_zoom: float = 0.04  # zoom amplitude (relative)
    seed: int = 0


def load_photo() -> np.ndarray:
    """The astronaut photo, uint8 512x512x3 RGB (read from scikit-image's installed data)."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[..., :3])


class Trajectory:
    """Smooth random camera shake; `pose(t) -> (dx, dy, rot_deg, zoom)` at time t (frames)."""

    def __init__(self, cfg: SampleConfig):
        rng = np.random.default_rng(cfg.seed)
        self.amp = np.array([cfg.shake_px, cfg.shake_px, cfg.shake_deg, cfg.shake_zoom])
        self.freq = rng.uniform(0.04, 0.25, (4, 3))
        self.phase = rng.uniform(0, 2 * np.pi, (4, 3))
        w = rng.uniform(0.3, 1.0, (4, 3))
        self.weight = w / w.sum(axis=1, keepdims=True)

    def pose(self, t: float) -> np.ndarray:
        s = np.sum(self.weight * np.sin(2 * np.pi * self.freq * t + self.phase), axis=1)
        return self.amp * s


def render(photo: np.ndarray, pose, cfg: SampleConfig) -> np.ndarray:
    """One pinhole-free (affine) view of the photo, float32 size x size x 3 in 0..255."""
    dx, dy, rot, zoom = pose
    c = cfg.size / 2.0
    # output = R*S*(photo - face_centre) + centre + shift: the face stays near the frame centre
    m = cv2.getRotationMatrix2D(FACE_CENTRE, rot, cfg.scale * (1.0 + zoom))
    m[:, 2] += np.array([c + dx, c + dy]) - np.array(FACE_CENTRE)
    return cv2.warpAffine(photo.astype(np.float32), m, (cfg.size, cfg.size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT101)


def _to_linear(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0, 255) / 255.0) ** 2.2


def _to_srgb8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(255.0 * np.clip(x, 0, 1) ** (1 / 2.2)), 0, 255).astype(np.uint8)


def sub_frame_times(i: int, cfg: SampleConfig) -> np.ndarray:
    """Times (in frames) of the renders averaged into frame i (0-based), centred on i."""
    if cfg.sub_frames == 1:
        return np.array([float(i)])
    return i + cfg.exposure * (np.linspace(0.0, 1.0, cfg.sub_frames) - 0.5)


def make_frame(photo: np.ndarray, traj: Trajectory, i: int, cfg: SampleConfig):
    """(sharp uint8, blurry uint8) for 0-based frame i."""
    sharp = np.clip(np.round(render(photo, traj.pose(float(i)), cfg)), 0, 255).astype(np.uint8)
    acc = np.zeros((cfg.size, cfg.size, 3), np.float64)
    times = sub_frame_times(i, cfg)
    for t in times:
        acc += _to_linear(render(photo, traj.pose(float(t)), cfg))
    return sharp, _to_srgb8(acc / len(times))


def make_sample(dataset, name: str = "astronaut", cfg: SampleConfig | None = None, photo=None) -> Path:
    """Write the clip to `<dataset>/<name>/{sharp,blurry}/` and return that folder."""
    cfg = cfg or SampleConfig()
    if cfg.n_frames < 1 or cfg.size < 32 or cfg.sub_frames < 1 or not 0 <= cfg.exposure <= 4:
        raise InputError(f"sample: invalid settings {asdict(cfg)} (frames >= 1, size >= 32, "
                         "sub_frames >= 1, 0 <= exposure <= 4)")
    photo = load_photo() if photo is None else photo
    traj = Trajectory(cfg)
    out = Path(dataset) / name
    poses = []
    for i in range(cfg.n_frames):
        sharp, blurry = make_frame(photo, traj, i, cfg)
        write_image(out / "sharp" / frame_name(i + 1), sharp)
        write_image(out / "blurry" / frame_name(i + 1), blurry)
        poses.append([round(float(v), 6) for v in traj.pose(float(i))])
    meta = {"source": "skimage.data.astronaut() (public domain, NASA)", "config": asdict(cfg),
            "pose_columns": ["dx_px", "dy_px", "rot_deg", "zoom"], "poses_mid_exposure": poses}
    write_text(out / "sample.json", json.dumps(meta, indent=1) + "\n")
    return out


def main(argv=None) -> int:
    """Exit statuses as every command (common/cli.py): 0 done, 2 bad input, 1 internal failure."""
    from common.cli import run_cli

    return run_cli(_main, argv, prog="python -m preprocess.sample")


def _main(argv=None) -> int:
    ap = ArgumentParser(prog="python -m preprocess.sample", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    d = SampleConfig()
    ap.add_argument("--dataset", default="./dataset", help="dataset root (default ./dataset)")
    ap.add_argument("--name", default="astronaut", help="clip name (default astronaut)")
    ap.add_argument("--frames", type=int, default=d.n_frames, help=f"number of frames (default {d.n_frames})")
    ap.add_argument("--size", type=int, default=d.size, help=f"frame size in pixels (default {d.size})")
    ap.add_argument("--scale", type=float, default=d.scale, help=f"output px per photo px (default {d.scale})")
    ap.add_argument("--sub_frames", type=int, default=d.sub_frames, help=f"renders averaged per frame (default {d.sub_frames})")
    ap.add_argument("--exposure", type=float, default=d.exposure, help=f"exposure in frame intervals (default {d.exposure})")
    ap.add_argument("--shake_px", type=float, default=d.shake_px, help=f"translation amplitude px (default {d.shake_px})")
    ap.add_argument("--shake_deg", type=float, default=d.shake_deg, help=f"rotation amplitude deg (default {d.shake_deg})")
    ap.add_argument("--shake_zoom", type=float, default=d.shake_zoom, help=f"zoom amplitude (default {d.shake_zoom})")
    ap.add_argument("--seed", type=int, default=d.seed, help="random seed of the trajectory (default 0)")
    a = ap.parse_args(argv)
    cfg = SampleConfig(a.frames, a.size, a.scale, a.sub_frames, a.exposure, a.shake_px, a.shake_deg,
                       a.shake_zoom, a.seed)
    out = make_sample(a.dataset, a.name, cfg)
    print(f"wrote {cfg.n_frames} sharp/blurry frame pairs ({cfg.size}x{cfg.size}) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
