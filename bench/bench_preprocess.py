"""Throughput of every preprocessing step on a 256x256 face clip (frames/s, one process).

Usage: python bench/bench_preprocess.py [--clip PATH] [--frames 40] [--tvl1_frames 8] [--jobs 1]
Default clip: ../shared/data/face_videos/dreamtalk__..._angry_level3_001.mp4 (256x256, 25 fps).
Each step runs on a fresh folder under bench/out/ (deleted first), with the public Python API
and `jobs` worker processes; TV-L1 alignment runs on the first `tvl1_frames` frames only (it is
~100x slower than DIS). MTCNN timings exclude the one-off model load and
use the pipeline's batches of 8 frames. Prints one JSON object.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from common.cli import ArgumentParser  # noqa: E402
from preprocess.align import align_dataset  # noqa: E402
from preprocess.blur import blur_dataset  # noqa: E402
from preprocess.video import extract_frames  # noqa: E402

DEFAULT_CLIP = ROOT.parent / "shared" / "data" / "face_videos" / \
    "dreamtalk__data_style_clip_video_M030_front_angry_level3_001.mp4"


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default=str(DEFAULT_CLIP))
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--tvl1_frames", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "preprocess"))
    a = ap.parse_args()
    out = Path(a.out)
    shutil.rmtree(out, ignore_errors=True)
    n, res = a.frames, {}

    def fps(key, frames, fn):
        res[key] = round(frames / timed(fn), 2)

    ds = out / "dataset"
    fps("frames", n, lambda: extract_frames(a.clip, ds, "clip", n))
    fps("frames_face_crop_256", n, lambda: extract_frames(a.clip, out / "crop", "clip", n, face_crop=256))
    fps("blur_n7", n, lambda: blur_dataset(ds, 7, jobs=a.jobs))
    fps("blur_n7_linear_upsample4", n,
        lambda: blur_dataset(ds, 7, linear=True, upsample=4, jobs=a.jobs, out_sub="blurry_up4"))

    from facePointDetection.detect import FivePointDetector
    from facePointDetection.pipeline import BATCH

    for flip in (True, False):
        det = FivePointDetector(flip=flip)
        from common.fileio import read_image

        imgs = [read_image(p) for p in sorted((ds / "clip" / "blurry").glob("*.png"))]
        det.detect_many(imgs[:BATCH])  # graph tracing / warm-up
        fps("landmarks_mtcnn" + ("_flip" if flip else ""), n,
            lambda: [det.detect_many(imgs[i:i + BATCH]) for i in range(0, len(imgs), BATCH)])

    for method, flow, occlusion, frames in (("none", "dis", "warp", n), ("flow", "dis", "warp", n),
                                            ("flow", "dis", "centre", n), ("homography", "dis", "warp", n),
                                            ("flow", "tvl1", "warp", a.tvl1_frames)):
        key = f"align_{method}" + (f"_{flow}" if method == "flow" else "") + \
            ("_occlusion" if occlusion == "centre" else "")
        sub = out / f"ds_{key}"
        (sub / "clip").mkdir(parents=True)
        shutil.copytree(ds / "clip" / "blurry", sub / "clip" / "blurry",
                        ignore=lambda d, names: sorted(names)[frames:])
        fps(key, frames, lambda: align_dataset(sub, out / f"ts_{key}", None, method, flow, 5, a.jobs,
                                               occlusion=occlusion))

    print(json.dumps(dict(unit="frames/s", clip=Path(a.clip).name, size="256x256", frames=n,
                          tvl1_frames=a.tvl1_frames, jobs=a.jobs, cpu=platform.processor() or platform.machine(),
                          cores=os.cpu_count(), fps=res), indent=1))


if __name__ == "__main__":
    main()
