"""One command from a blurry face video to a deblurred H.264 video (not in the original repository).

The original (rwenqi/3Dfacedeblurring) needs five manual steps: extractFrames.m, the Windows
five-point detector, demo.py (R-Net coefficients), demo_render.py, generateAlignments.m and
run_model.py --phase test. `deblur_video` runs the same stages, each through its command-line
tool in a subprocess (so every stage stays usable and debuggable on its own), inside a working
folder:

  <work>/full/<name>/blurry/00001.png     frames          python -m preprocess frames --subdir blurry
  <work>/full/<name>/face/00001.txt       landmarks       python -m facePointDetection
  <work>/dataset/<name>/{blurry,face}/    region          face-centred crop (deblur/face_region.py)
                                                          or the full frames (--full_frame); frames
                                                          without landmarks get interpolated ones
  <work>/training_set/<name>/face/        reconstruct     python demo.py  (R-Net with --rnet, else fitting)
  <work>/training_set/<name>/render/      render          python demo_render.py
  <work>/training_set/<name>/blur_-2..2/  align           python -m preprocess align
  <work>/result/<name>/00001.png          deblur          python run_model.py --phase test
  <work>/final/00001.png                  blend           crop pasted back with a feathered mask
  <work>/final_render/00001.png                           the render in full-frame coordinates
  OUTPUT.mp4                              encode          H.264 (libx264, yuv420p, CRF 18) at the
                                                          source frame rate, written atomically

Resuming: `<work>/state.json` records, per finished stage, a key that hashes the stage's own
settings and the key of the stage before it. A re-run skips every stage whose key still
matches (so an interrupted run resumes at the stage it was in; the stage tools themselves write
every file atomically) and re-runs a stage and everything after it when its settings changed.
Each stage's output is logged to `<work>/logs/<stage>.log`; a failing stage prints the end of
its log and the command exits with status 1 (bad input: status 2 with one message).
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from preprocess.fileio import InputError, atomic_path, frame_name, read_image, read_points, write_image, \
    write_points, write_text

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = "checkpoints/both_1_256"
VIDEO_EXTS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


# ----------------------------------------------------------------------------- video files
def probe(path) -> dict:
    """{'fps': float, 'size': (w, h), 'frames': int or None} of a video file (imageio-ffmpeg)."""
    import imageio_ffmpeg

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: video file not found")
    try:
        reader = imageio_ffmpeg.read_frames(str(path))
        meta = next(reader)
        reader.close()
        n = imageio_ffmpeg.count_frames_and_secs(str(path))[0]
    except (RuntimeError, OSError, StopIteration) as e:
        raise InputError(f"{path}: cannot read video ({str(e).strip().splitlines()[-1][:200]})") from None
    return {"fps": float(meta["fps"]), "size": tuple(meta["size"]), "frames": int(n),
            "codec": meta.get("codec", "")}


def write_video(path, frames, fps: float, crf: int = 18) -> int:
    """Write uint8 HxWx3 RGB frames (any iterable) as an H.264 (libx264, yuv420p) MP4, atomically.

    Odd widths/heights are padded by one black pixel (yuv420p needs even sizes). Returns the
    number of frames written. Nothing appears at `path` unless every frame was written.
    """
    import imageio_ffmpeg

    it = iter(frames)
    try:
        first = next(it)
    except StopIteration:
        raise ValueError(f"{path}: no frames to write") from None
    h, w = first.shape[:2]
    he, we = h + h % 2, w + w % 2
    n = 0
    with atomic_path(path) as tmp:
        writer = imageio_ffmpeg.write_frames(str(tmp), (we, he), fps=fps, codec="libx264",
                                             pix_fmt_in="rgb24", pix_fmt_out="yuv420p",
                                             quality=None, bitrate=None,
                                             output_params=["-crf", str(crf), "-preset", "veryfast"],
                                             macro_block_size=1, ffmpeg_log_level="error")
        writer.send(None)
        try:
            for f in _chain(first, it):
                if f.shape[:2] != (h, w):
                    raise ValueError(f"{path}: frame size changed from {w}x{h} to {f.shape[1]}x{f.shape[0]}")
                if (he, we) != (h, w):
                    f = np.pad(f, ((0, he - h), (0, we - w), (0, 0)))
                writer.send(np.ascontiguousarray(f[..., :3], dtype=np.uint8))
                n += 1
        finally:
            writer.close()
    return n


def _chain(first, rest):
    yield first
    yield from rest


# ----------------------------------------------------------------------------- options
@dataclass
class Options:
    """Settings of one `deblur_video` run (the CLI flags)."""

    input: Path
    output: Path
    checkpoint: Path = Path(DEFAULT_CHECKPOINT)
    work_dir: Path | None = None
    face: str | None = None
    levels: int | None = None
    align: str = "flow"
    flow: str = "dis"
    gpu: int = -1
    rnet: Path | None = None
    bfm: Path | None = None
    frames_out: Path | None = None
    full_frame: bool = False
    fps: float | None = None
    max_frames: int | None = None
    jobs: int = 1
    margin: float = 3.0
    context: int = 32
    multiple: int = 32
    feather: int = 16
    model_args: list = field(default_factory=list)
    quiet: bool = False

    def __post_init__(self):
        self.input, self.output = Path(self.input), Path(self.output)
        self.checkpoint = Path(self.checkpoint)
        if self.work_dir is None:
            self.work_dir = self.output.with_name(self.output.stem + "_work")
        self.work_dir = Path(self.work_dir)


def clip_name(path: Path) -> str:
    """Folder name of the clip inside the working folder: the file stem, filesystem-safe.

    For a folder of frames named like a dataset sub-folder (`<clip>/blurry`), the clip's name.
    """
    path = Path(path).absolute()
    stem = path.stem if path.is_file() else path.name
    if path.is_dir() and stem in ("blurry", "sharp", "blur_0", "frames", "image"):
        stem = path.parent.name
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
    return safe or "clip"


# ----------------------------------------------------------------------------- stage bookkeeping
class State:
    """Per-stage completion keys in `<work>/state.json`, chained so a change propagates downstream."""

    def __init__(self, work: Path):
        self.path = work / "state.json"
        self.done = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self.prev_key = ""

    def key(self, stage: str, settings: dict) -> str:
        blob = json.dumps([self.prev_key, stage, settings], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def is_done(self, stage: str, key: str) -> bool:
        return self.done.get(stage, {}).get("key") == key

    def stale(self, stage: str, key: str) -> bool:
        """True when the stage last started with other settings (its partial output is not reusable)."""
        started = self.done.get(stage, {}).get("started")
        return started is not None and started != key

    def start(self, stage: str, key: str) -> None:
        self.done[stage] = {"started": key}
        self._save()

    def mark(self, stage: str, key: str, seconds: float) -> None:
        self.done[stage] = {"started": key, "key": key, "seconds": round(seconds, 3)}
        self._save()

    def _save(self) -> None:
        write_text(self.path, json.dumps(self.done, indent=1) + "\n")


class StageError(RuntimeError):
    """A stage's tool failed; the message says which and where its log is."""


def _run_tool(cmd: list[str], log: Path, env=None) -> str:
    """Run one stage tool, output to `log`; return its output, raise StageError on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        f.write("$ " + " ".join(shlex.quote(c) for c in cmd) + "\n")
        f.flush()
        proc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env)
    text = log.read_text(errors="replace")
    if proc.returncode != 0:
        tail = "\n".join(text.strip().splitlines()[-15:])
        raise StageError(f"{cmd[1] if cmd[1] != '-m' else cmd[2]} exited with status {proc.returncode}; "
                         f"last lines of {log}:\n{tail}")
    return text


def _model_lines(text: str) -> list[str]:
    """The lines of a stage's log that say which 3D face model made its output (and any
    STAND-IN warning), once each: they go into the run's notes and summary."""
    seen = []
    for line in text.splitlines():
        if ("STAND-IN" in line.upper() or line.strip().startswith("3D face model:")) and line.strip() not in seen:
            seen.append(line.strip())
    return seen


def prior_label(notes: str) -> str:
    """Label of a render panel from a run's notes (its '3D face model: ...' line), e.g.
    '3D prior (ICT Face Model)'; a stand-in is always named as such."""
    up = notes.upper()
    if "STAND-IN" in up:
        return "3D prior (STAND-IN)"
    if "ICT FACE MODEL" in up:
        return "3D prior (ICT Face Model)"
    if "BASEL FACE MODEL" in up:
        return "3D prior (Basel Face Model)"
    return "3D prior"


def _frames(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix == ".png" and not p.name.startswith("."))


# ----------------------------------------------------------------------------- the pipeline
class Pipeline:
    """Runs the stages in order with a progress line each; see the module docstring."""

    def __init__(self, opt: Options):
        self.o = opt
        self.name = clip_name(opt.input)
        self.work = opt.work_dir
        self.full = self.work / "full"
        self.data = self.work / "dataset"
        self.tset = self.work / "training_set"
        self.result = self.work / "result"
        self.final = self.work / "final"
        self.final_render = self.work / "final_render"
        self.logs = self.work / "logs"
        self.py = sys.executable
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    def say(self, msg: str) -> None:
        if not self.o.quiet:
            print(msg, flush=True)

    # -- stage list: (name, description, settings, function)
    def stages(self):
        o = self.o
        src = o.input.resolve()
        src_id = {"path": str(src), "size": src.stat().st_size if src.is_file() else None,
                  "mtime": int(src.stat().st_mtime) if src.exists() else None, "max_frames": o.max_frames}
        st = [("frames", "decode the video to PNG frames", src_id, self.run_frames),
              ("landmarks", "five facial landmarks per frame (facePointDetection)", {}, self.run_landmarks),
              ("region", "full frames" if o.full_frame else "face-centred crop window",
               {"full": o.full_frame, "margin": o.margin, "context": o.context, "multiple": o.multiple},
               self.run_region),
              ("reconstruct", "3D face coefficients (demo.py, " + ("R-Net" if o.rnet else "landmark fitting") + ")",
               {"rnet": str(o.rnet), "bfm": str(o.bfm)}, self.run_reconstruct),
              ("render", "render the 3D face prior (demo_render.py)", {"bfm": str(o.bfm)}, self.run_render),
              ("align", f"warp neighbours onto every frame (--align {o.align})",
               {"align": o.align, "flow": o.flow}, self.run_align),
              ("deblur", "deblurring network (run_model.py --phase test)",
               {"ckpt": str(o.checkpoint.resolve()), "ckpt_mtime": _tree_mtime(o.checkpoint), "face": o.face,
                "levels": o.levels, "args": o.model_args}, self.run_deblur),
              ("blend", "paste the face window back (feathered)" if not o.full_frame else "collect frames",
               {"feather": o.feather}, self.run_blend),
              ("encode", "H.264 video at the source frame rate",
               {"out": str(o.output.resolve()), "fps": o.fps, "frames_out": str(o.frames_out)}, self.run_encode)]
        return st

    def outputs(self, stage: str) -> list[Path]:
        """Folders a stage writes (removed before it re-runs with changed settings)."""
        v = self.name
        t = self.tset / v
        return {"frames": [self.full / v / "blurry"], "landmarks": [self.full / v / "face"],
                "region": [self.data / v], "reconstruct": [t / "face"], "render": [t / "render", self.data / v / "face_render"],
                "align": [t / f"blur_{k}" for k in range(-4, 5)], "deblur": [self.result / v],
                "blend": [self.final, self.final_render], "encode": []}[stage]

    def run(self) -> dict:
        o = self.o
        if not o.input.exists():
            raise InputError(f"{o.input}: input video not found")
        if not o.checkpoint.exists():
            raise InputError(f"{o.checkpoint}: no deblurring checkpoint there. Train one (python run_model.py "
                             "--phase train ...), import the authors' TF1 checkpoint (see README), or pass "
                             "--checkpoint PATH")
        if o.rnet is not None and not Path(o.rnet).is_file():
            raise InputError(f"{o.rnet}: R-Net .pb file not found")
        if o.bfm is not None and not Path(o.bfm).is_file():
            raise InputError(f"{o.bfm}: BFM file not found")
        if o.rnet is not None:
            from faceReconstruction.bfm import find_bfm

            path, kind = find_bfm(o.bfm)
            if kind != "bfm":
                raise InputError(f"{o.rnet}: the R-Net regresses Basel Face Model coefficients, which only the BFM "
                                 f"can render, but the model found is {path}; give --bfm BFM_model_front.mat, or "
                                 "leave --rnet out to fit the shipped ICT Face Model")
        self.work.mkdir(parents=True, exist_ok=True)
        state = State(self.work)
        stages = self.stages()
        timings = {}
        t_all = time.perf_counter()
        for i, (name, desc, settings, fn) in enumerate(stages, 1):
            key = state.key(name, settings)
            state.prev_key = key
            head = f"[{i}/{len(stages)}] {name:<11} {desc}"
            if state.is_done(name, key):
                self.say(f"{head} ... skipped (done in an earlier run)")
                timings[name] = 0.0
                continue
            self.say(f"{head} ...")
            if state.stale(name, key):
                # settings changed since this stage last ran: the tools skip files that exist,
                # so outputs made with the old settings must go
                for d in self.outputs(name):
                    if d.is_dir():
                        shutil.rmtree(d)
            state.start(name, key)
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            timings[name] = dt
            state.mark(name, key, dt)
            self.say(f"{' ' * len(f'[{i}/{len(stages)}]')} {name:<11} done in {dt:.1f} s")
        total = time.perf_counter() - t_all
        info = json.loads((self.work / "video.json").read_text())
        self.say(f"wrote {o.output} ({info['frames']} frames, {info['size'][0]}x{info['size'][1]}, "
                 f"{info['fps']:.3f} fps, H.264) in {total:.1f} s; working folder {self.work}")
        for n in self._all_notes():
            self.say("NOTE: " + n)
        return {"timings": timings, "total_s": total, "notes": self._all_notes(), "video": info}

    def _all_notes(self) -> list[str]:
        path = self.work / "notes.json"
        return json.loads(path.read_text()) if path.is_file() else []

    def _note(self, lines) -> None:
        notes = self._all_notes()
        for n in lines:
            if n not in notes:
                notes.append(n)
                self.say("NOTE: " + n)
        write_text(self.work / "notes.json", json.dumps(notes, indent=1) + "\n")

    # -- stages
    def run_frames(self) -> None:
        o = self.o
        out = self.full / self.name / "blurry"
        cmd = [self.py, "-m", "preprocess", "frames", "--video", str(o.input.resolve()), "--dataset",
               str(self.full), "--name", self.name, "--subdir", "blurry"]
        if o.max_frames:
            cmd += ["--max_frames", str(o.max_frames)]
        _run_tool(cmd, self.logs / "frames.log", self.env)
        frames = _frames(out)
        if not frames:
            raise InputError(f"{o.input}: no frames could be decoded")
        h, w = read_image(frames[0]).shape[:2]
        if o.input.is_file():
            fps = o.fps or probe(o.input)["fps"]
        else:
            fps = o.fps or 25.0
        write_text(self.work / "video.json", json.dumps({"input": str(o.input), "name": self.name, "fps": fps,
                                                         "size": [w, h], "frames": len(frames)}) + "\n")

    def run_landmarks(self) -> None:
        text = _run_tool([self.py, "-m", "facePointDetection", "--dataset", str(self.full), "--points", "5"],
                         self.logs / "landmarks.log", self.env)
        self._note(_model_lines(text))

    def _landmarks(self, n: int) -> np.ndarray:
        """(T, 5, 2) landmarks of the full frames, NaN where the detector found no face."""
        pts = np.full((n, 5, 2), np.nan)
        for k in range(n):
            p = self.full / self.name / "face" / frame_name(k + 1, ".txt")
            if p.is_file():
                pts[k] = read_points(p)
        return pts

    def run_region(self) -> None:
        from deblur import face_region as fr

        frames = _frames(self.full / self.name / "blurry")
        pts = self._landmarks(len(frames))
        missing = int(np.isnan(pts[:, 0, 0]).sum())
        if missing == len(frames):
            raise InputError(f"{self.o.input}: no face was found in any frame (facePointDetection)")
        if missing:
            self._note([f"no face found in {missing} of {len(frames)} frames; their landmarks were interpolated "
                        "from the neighbouring frames"])
        t = np.arange(len(frames))
        ok = ~np.isnan(pts[:, 0, 0])
        filled = pts.copy()
        for j in range(5):
            for c in range(2):
                filled[:, j, c] = np.interp(t, t[ok], pts[ok, j, c])
        out = self.data / self.name
        if out.is_dir():
            shutil.rmtree(out)
        h, w = read_image(frames[0]).shape[:2]
        if self.o.full_frame:
            boxes = np.tile([0, 0, w, h], (len(frames), 1))
        else:
            boxes = fr.face_boxes(filled, (w, h), self.o.margin, self.o.context, self.o.multiple)
        for k, f in enumerate(frames):
            box = boxes[k]
            if self.o.full_frame:
                _link_or_copy(f, out / "blurry" / f.name)
            else:
                write_image(out / "blurry" / f.name, fr.crop(read_image(f), box))
            write_points(out / "face" / frame_name(k + 1, ".txt"), fr.shift_points(filled[k], box))
        write_text(self.work / "boxes.txt", "".join(f"{frame_name(k + 1)} {b[0]} {b[1]} {b[2]} {b[3]}\n"
                                                    for k, b in enumerate(boxes)))
        if not self.o.full_frame:
            bw, bh = boxes[0, 2] - boxes[0, 0], boxes[0, 3] - boxes[0, 1]
            self.say(f"    face window {bw}x{bh} of {w}x{h} ({100.0 * bw * bh / (w * h):.0f}% of the frame)")

    def run_reconstruct(self) -> None:
        cmd = [self.py, "demo.py", "--input_path", str(self.data), "--output_path", str(self.tset)]
        if self.o.rnet:
            cmd += ["--rnet", str(Path(self.o.rnet).resolve())]
        if self.o.bfm:
            cmd += ["--bfm", str(Path(self.o.bfm).resolve())]
        self._note(_model_lines(_run_tool(cmd, self.logs / "reconstruct.log", self.env)))

    def run_render(self) -> None:
        cmd = [self.py, "demo_render.py", "--coeff_path", str(self.tset), "--data_path", str(self.data)]
        if self.o.bfm:
            cmd += ["--bfm", str(Path(self.o.bfm).resolve())]
        self._note(_model_lines(_run_tool(cmd, self.logs / "render.log", self.env)))

    def run_align(self) -> None:
        cmd = [self.py, "-m", "preprocess", "align", "--dataset", str(self.data), "--out", str(self.tset),
               "--datalist", "", "--align", self.o.align, "--flow", self.o.flow,
               "--jobs", str(self.o.jobs)]
        _run_tool(cmd, self.logs / "align.log", self.env)

    def run_deblur(self) -> None:
        out = self.result / self.name
        if out.is_dir():
            shutil.rmtree(out)
        cmd = [self.py, "run_model.py", "--phase", "test", "--input_path", str(self.tset), "--output_path",
               str(self.result), "--checkpoint", str(self.o.checkpoint.resolve()), "--gpu", str(self.o.gpu)]
        if self.o.face is not None:
            cmd += ["--face", self.o.face]
        if self.o.levels is not None:
            cmd += ["--levels", str(self.o.levels)]
        cmd += list(self.o.model_args)
        self._note(_model_lines(_run_tool(cmd, self.logs / "deblur.log", self.env)))
        n_in = len(_frames(self.data / self.name / "blurry"))
        n_out = len(_frames(out))
        if n_out != n_in:
            raise StageError(f"run_model.py wrote {n_out} frames to {out}, expected {n_in}")

    def run_blend(self) -> None:
        from deblur import face_region as fr

        for d in (self.final, self.final_render):
            if d.is_dir():
                shutil.rmtree(d)
        frames = _frames(self.full / self.name / "blurry")
        boxes = np.loadtxt(self.work / "boxes.txt", usecols=(1, 2, 3, 4), dtype=int, ndmin=2)
        render_dir = self.tset / self.name / "render"
        for k, f in enumerate(frames):
            res = self.result / self.name / f.name
            if self.o.full_frame:
                _link_or_copy(res, self.final / f.name)
            else:
                write_image(self.final / f.name, fr.blend(read_image(f), read_image(res), boxes[k], self.o.feather))
            if (render_dir / f.name).is_file():
                # the 3D prior in full-frame coordinates, for comparison strips (black outside the window)
                frame = read_image(f)
                canvas = np.zeros_like(frame)
                x0, y0, x1, y1 = boxes[k]
                canvas[y0:y1, x0:x1] = read_image(render_dir / f.name)
                write_image(self.final_render / f.name, canvas)

    def run_encode(self) -> None:
        o = self.o
        info = json.loads((self.work / "video.json").read_text())
        frames = _frames(self.final)
        n = write_video(o.output, (read_image(f) for f in frames), info["fps"])
        if n != info["frames"]:
            raise StageError(f"encoded {n} frames, expected {info['frames']}")
        if o.frames_out:
            dst = Path(o.frames_out)
            dst.mkdir(parents=True, exist_ok=True)
            for f in frames:
                shutil.copyfile(f, dst / f.name)


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _tree_mtime(path: Path):
    path = Path(path)
    if not path.exists():
        return None
    if path.is_file():
        return int(path.stat().st_mtime)
    return max([int(p.stat().st_mtime) for p in path.rglob("*") if p.is_file()] or [0])


def deblur_video(opt: Options) -> dict:
    """Run the whole pipeline; returns {'timings': {stage: s}, 'total_s', 'notes', 'video'}."""
    return Pipeline(opt).run()
