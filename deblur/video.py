"""One command from a blurry face video to a deblurred H.264 video (not in the original repository).

The original (rwenqi/3Dfacedeblurring) needs five manual steps: extractFrames.m, the Windows
five-point detector, demo.py (R-Net coefficients), demo_render.py, generateAlignments.m and
run_model.py --phase test. `deblur_video` runs the same stages, each through its command-line
tool in a subprocess (so every stage stays usable and debuggable on its own), inside a working
folder:

  <work>/full/<name>/blurry/00001.png     frames          python -m preprocess frames --subdir blurry
  <work>/full/<name>/face/00001.txt       landmarks       python -m facePointDetection --max_gap G
  <work>/dataset/<seg>/{blurry,face}/     region          one clip <seg> per stretch of frames with a
                                                          face; face-centred crop (deblur/face_region.py)
                                                          or the full frames (--full_frame)
  <work>/training_set/<seg>/face/         reconstruct     python demo.py  (R-Net with --rnet, else fitting)
  <work>/training_set/<seg>/render/       render          python demo_render.py
  <work>/training_set/<seg>/blur_-2..2/   align           python -m preprocess align
  <work>/result/<seg>/00001.png           deblur          python run_model.py --phase test
  <work>/final/00001.png                  blend           crop pasted back with a feathered mask;
  <work>/final_render/00001.png                           frames without a face: the input frame
  OUTPUT.mp4                              encode          H.264 with the input's frame times, size and
                                                          audio (common/videoio.py), written atomically

What the output keeps (checked after encoding, by reading the output back):
* frame times: every frame keeps its input presentation timestamp (variable frame rate, exact
  rational rates such as 24000/1001); `--fps` re-times to a constant rate and says so;
* size: exactly the input's (4:4:4 chroma when a side is odd, which 4:2:0 cannot hold; said);
* audio: every audio stream copied unchanged and in sync (`--no_audio` drops them; said);
* frames without a face: facePointDetection leaves runs of more than `--max_gap` (2) frames
  without a detection without landmarks; those frames are not reconstructed, rendered or
  deblurred, but copied unchanged, and the summary lists them. Shorter runs are detector misses
  (motion blur) and are bridged by interpolated landmarks.

Resuming: `<work>/state.json` records, per finished stage, a key that hashes the stage's own
settings and the key of the stage before it. A re-run skips every stage whose key still
matches (so an interrupted run resumes at the stage it was in; the stage tools themselves write
every file atomically and skip finished files) and re-runs a stage and everything after it when
its settings changed. Each stage's output is logged to `<work>/logs/<stage>.log`.

Errors: the input and flags are checked before anything is written (InputError naming the
user's file: exit 2); a stage tool that rejects its input (its exit status 2) is reported the
same way, in terms of the user's input; any other stage failure is a StageError (exit 1) with
the end of its log.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from common import videoio
from common.errors import InputError
from common.paths import check_output
from facePointDetection.pipeline import MAX_GAP
from preprocess.fileio import frame_name, read_image, read_points, write_image, write_points, write_text

ROOT = Path(__file__).resolve().parents[1]
# The model this project trained and ships (checkpoints/MODEL_CARD.md); --checkpoint for any other.
DEFAULT_CHECKPOINT = str(ROOT / "checkpoints" / "facedeblur.npz")
VIDEO_EXTS = videoio.VIDEO_EXTS
OUTPUT_EXTS = (".mp4", ".mov", ".m4v", ".mkv")


# ----------------------------------------------------------------------------- video files
def probe(path) -> dict:
    """{'fps', 'size': (w, h), 'frames', 'codec', 'pix_fmt', 'audio', 'variable_rate'} of a video
    (common.videoio.probe_video, which has the exact per-frame times)."""
    info = videoio.probe_video(path)
    return {"fps": info.fps, "size": (info.width, info.height), "frames": info.frames, "codec": info.codec,
            "pix_fmt": info.pix_fmt, "audio": info.audio, "variable_rate": info.variable_rate}


write_video = videoio.write_video


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
    fps: str | float | None = None
    max_frames: int | None = None
    jobs: int = 1
    margin: float = 3.0
    context: int = 32
    multiple: int = 32
    feather: int = 16
    model_args: list = field(default_factory=list)
    quiet: bool = False
    no_audio: bool = False
    max_gap: int = MAX_GAP

    def __post_init__(self):
        self.input, self.output = Path(self.input), Path(self.output)
        self.checkpoint = Path(self.checkpoint)
        if self.work_dir is None:
            self.work_dir = self.output.with_name(self.output.stem + "_work")
        # absolute: the stage tools run with the repository as their working directory
        self.work_dir = Path(self.work_dir).absolute()


def parse_rate(value) -> Fraction:
    """'25', '29.97', '30000/1001' -> an exact positive Fraction; InputError otherwise."""
    try:
        r = Fraction(str(value).strip())
    except (ValueError, ZeroDivisionError):
        raise InputError(f"--fps {value!r}: not a frame rate (e.g. 25, 29.97 or 30000/1001)") from None
    if r <= 0:
        raise InputError(f"--fps {value!r}: the frame rate must be positive")
    return r


def clip_name(path: Path) -> str:
    """Folder name of the clip inside the working folder: the file stem, filesystem-safe.

    For a folder of frames named like a dataset sub-folder (`<clip>/blurry`), the clip's name.
    Never `.`/`..` or a hidden name, so nothing is written outside the working folder.
    """
    path = Path(path).absolute()
    stem = path.stem if path.is_file() else path.name
    if path.is_dir() and stem in ("blurry", "sharp", "blur_0", "frames", "image"):
        stem = path.parent.name
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem).lstrip(".")
    return safe or "clip"


def _span_text(indices) -> str:
    """[0, 1, 2, 9, 10] -> '1-3, 10-11' (1-based frame numbers)."""
    out, run = [], []
    for i in sorted(indices):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            out.append(f"{run[0] + 1}-{run[-1] + 1}" if len(run) > 1 else f"{run[0] + 1}")
        run = [i]
    if run:
        out.append(f"{run[0] + 1}-{run[-1] + 1}" if len(run) > 1 else f"{run[0] + 1}")
    return ", ".join(out)


# ----------------------------------------------------------------------------- stage bookkeeping
class State:
    """Per-stage completion keys in `<work>/state.json`, chained so a change propagates downstream."""

    def __init__(self, work: Path):
        self.path = work / "state.json"
        try:
            self.done = json.loads(self.path.read_text()) if self.path.is_file() else {}
        except json.JSONDecodeError:
            self.done = {}  # written atomically, so only a hand-edited file gets here: start over
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
    """A stage's tool failed for a reason that is not the input (a bug, the machine); the
    message says which tool and where its log is. Exit status 1."""


class ToolInputError(InputError):
    """A stage's tool rejected its input (exit status 2). `message` is the tool's own error line
    (it names working-folder files; the pipeline rewrites it in terms of the user's input)."""

    def __init__(self, tool: str, message: str, log: Path):
        super().__init__(f"{tool}: {message}")
        self.tool, self.message, self.log = tool, message, log


def _run_tool(cmd: list[str], log: Path, env=None) -> str:
    """Run one stage tool, output to `log`; return its output.

    Exit status 2 (bad input, see common/cli.py) raises ToolInputError with the tool's `error:`
    line; any other failure raises StageError with the end of the log.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        f.write("$ " + " ".join(shlex.quote(c) for c in cmd) + "\n")
        f.flush()
        proc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env)
    text = log.read_text(errors="replace")
    tool = cmd[1] if cmd[1] != "-m" else cmd[2]
    if proc.returncode == 2:
        errors = [ln[len("error: "):] for ln in text.splitlines() if ln.startswith("error: ")]
        if errors:
            raise ToolInputError(tool, errors[-1], log)
    if proc.returncode != 0:
        tail = "\n".join(text.strip().splitlines()[-15:])
        raise StageError(f"{tool} exited with status {proc.returncode}; last lines of {log}:\n{tail}")
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
        self.source: videoio.VideoInfo | None = None
        self.prior = opt.face if opt.face is not None else checkpoint_face(opt.checkpoint)

    def say(self, msg: str) -> None:
        if not self.o.quiet:
            print(msg, flush=True)

    # -- checks before anything is written
    def check_inputs(self) -> None:
        """Every problem with the user's input or flags, as one InputError, before any output.

        The input: a readable video with at least one frame, or a folder of readable images of
        one size. Output paths: a supported container, not the input itself.
        """
        from preprocess.video import check_frame_sizes, frame_folder_files

        o = self.o
        if not o.input.exists():
            raise InputError(f"{o.input}: input video not found")
        if o.output.suffix.lower() not in OUTPUT_EXTS:
            raise InputError(f"{o.output}: cannot write a '{o.output.suffix}' video (use one of "
                             f"{', '.join(OUTPUT_EXTS)})")
        check_output(o.output, [o.input], "output video")
        check_output(o.work_dir, [o.input], "working folder")
        if o.frames_out is not None:
            check_output(o.frames_out, [o.input], "--frames_out folder")
        if o.max_frames is not None and o.max_frames < 1:
            raise InputError(f"--max_frames must be at least 1, got {o.max_frames}")
        if o.max_gap < -1:
            raise InputError(f"--max_gap must be -1 (fill every gap) or more, got {o.max_gap}")
        if o.fps is not None:
            parse_rate(o.fps)
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
        if o.input.is_dir():
            files = frame_folder_files(o.input)
            check_frame_sizes(files[: o.max_frames])
        else:
            self.source = videoio.probe_video(o.input)

    def _source_id(self) -> dict:
        """What identifies the input for the frames stage: for a folder, its image files (the
        folder itself changes when the output or working folder is placed inside it)."""
        from preprocess.video import frame_folder_files

        src = self.o.input.resolve()
        if src.is_dir():
            files = frame_folder_files(src)
            ident = [(f.name, f.stat().st_size, int(f.stat().st_mtime)) for f in files]
            return {"path": str(src), "files": hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:16],
                    "max_frames": self.o.max_frames}
        return {"path": str(src), "size": src.stat().st_size, "mtime": int(src.stat().st_mtime),
                "max_frames": self.o.max_frames}

    # -- stage list: (name, description, settings, function)
    def stages(self):
        o = self.o
        st = [("frames", "decode the video to PNG frames", {**self._source_id(), "fps": str(o.fps)},
               self.run_frames),
              ("landmarks", "five facial landmarks per frame (facePointDetection)", {"max_gap": o.max_gap},
               self.run_landmarks),
              ("region", "full frames" if o.full_frame else "face-centred crop window",
               {"full": o.full_frame, "margin": o.margin, "context": o.context, "multiple": o.multiple},
               self.run_region),
              ("reconstruct", "3D face coefficients (demo.py, " + ("R-Net" if o.rnet else "landmark fitting") + ")",
               {"rnet": str(o.rnet), "bfm": str(o.bfm), "prior": self.prior != "none"}, self.run_reconstruct),
              ("render", "render the 3D face prior (demo_render.py)", {"bfm": str(o.bfm), "prior": self.prior != "none"},
               self.run_render),
              ("align", f"warp neighbours onto every frame (--align {o.align})",
               {"align": o.align, "flow": o.flow}, self.run_align),
              ("deblur", "deblurring network (run_model.py --phase test)",
               {"ckpt": str(o.checkpoint.resolve()), "ckpt_mtime": _tree_mtime(o.checkpoint), "face": o.face,
                "levels": o.levels, "args": o.model_args}, self.run_deblur),
              ("blend", "paste the face window back (feathered)" if not o.full_frame else "collect frames",
               {"feather": o.feather}, self.run_blend),
              ("encode", "H.264 video with the input's frame times, size and audio",
               {"out": str(o.output.resolve()), "frames_out": str(o.frames_out), "no_audio": o.no_audio},
               self.run_encode)]
        return st

    def segments(self) -> list[dict]:
        """Stretches of consecutive frames with a face: [{'name', 'first', 'last'}] (0-based)."""
        path = self.work / "segments.json"
        return json.loads(path.read_text())["segments"] if path.is_file() else []

    def outputs(self, stage: str) -> list[Path]:
        """Folders a stage writes (removed before it re-runs with changed settings)."""
        v = self.name
        segs = [s["name"] for s in self.segments()]
        return {"frames": [self.full / v / "blurry"],
                "landmarks": [self.full / v / "face", self.full / v / "face68"],
                # new stretches of frames with a face: everything made from the old ones goes
                "region": [self.data, self.tset, self.result],
                "reconstruct": [self.tset / s / "face" for s in segs],
                "render": [self.tset / s / "render" for s in segs] + [self.data / s / "face_render" for s in segs],
                "align": [self.tset / s / f"blur_{k}" for s in segs for k in range(-4, 5)],
                "deblur": [self.result], "blend": [self.final, self.final_render], "encode": []}[stage]

    def run(self) -> dict:
        o = self.o
        self.check_inputs()
        fresh = not self.work.exists()
        self.work.mkdir(parents=True, exist_ok=True)
        try:
            return self._run_stages()
        except InputError:
            if fresh:  # bad input found by a stage: leave nothing behind that this run created
                shutil.rmtree(self.work, ignore_errors=True)
            raise

    def _run_stages(self) -> dict:
        o = self.o
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
            try:
                fn()
            except ToolInputError as e:
                raise InputError(self._user_message(e)) from None
            dt = time.perf_counter() - t0
            timings[name] = dt
            state.mark(name, key, dt)
            self.say(f"{' ' * len(f'[{i}/{len(stages)}]')} {name:<11} done in {dt:.1f} s")
        total = time.perf_counter() - t_all
        info = json.loads((self.work / "video.json").read_text())
        written = json.loads((self.work / "encoded.json").read_text())
        summary = self.summary_lines(info, written)
        self.say(f"wrote {o.output} in {total:.1f} s; working folder {self.work}")
        for line in summary:
            self.say("    " + line)
        for n in self._all_notes():
            self.say("NOTE: " + n)
        return {"timings": timings, "total_s": total, "notes": self._all_notes(), "video": info,
                "encoded": written, "summary": summary}

    def summary_lines(self, info: dict, enc: dict) -> list[str]:
        """What the output is, against the input: size, timing, audio, frames without a face."""
        n, (w, h) = enc["frames"], (enc["width"], enc["height"])
        chroma = {"yuv420p": "4:2:0", "yuv444p": "4:4:4 (High 4:4:4 profile)"}.get(enc["pix_fmt"], enc["pix_fmt"])
        lines = [f"video: {n} frames, {w}x{h} (the input's size), H.264 {chroma}"]
        t = info["timing"]
        if t["mode"] == "source":
            r = Fraction(t["rate"])
            kind = ("variable frame rate" if t["variable"] else
                    f"constant {float(r):g} fps" + (f" = {r}" if r.denominator != 1 else ""))
            lines.append(f"timing: every frame keeps its input timestamp ({kind})")
        else:
            lines.append(f"timing: constant {float(Fraction(t['rate'])):.3f} fps ({t['rate']}; {t['why']})")
        if enc["audio"]:
            how = "re-encoded to AAC" if enc.get("audio_note") else "copied unchanged, in sync"
            lines.append(f"audio: {len(enc['audio'])} stream(s) {how}: " + "; ".join(a.split(" (default)")[0]
                                                                            for a in enc["audio"]))
        elif info.get("audio"):
            lines.append(f"audio: the input's {len(info['audio'])} audio stream(s) were DROPPED (--no_audio)")
        else:
            lines.append("audio: none in the input")
        noface = info.get("no_face", [])
        if noface:
            lines.append(f"frames without a face, passed through unchanged: {_span_text(noface)} "
                         f"({len(noface)} of {info['frames']})")
        else:
            lines.append("frames without a face: none")
        return lines

    def _user_message(self, e: ToolInputError) -> str:
        """A stage tool's bad-input message in terms of the user's input, not the working folder."""
        msg = e.message
        frames = str(self.full / self.name / "blurry")
        msg = re.sub(re.escape(frames) + r"/(\d{5})\.png", lambda m: f"frame {int(m.group(1))}", msg)
        msg = msg.replace(frames, "its frames").replace(str(self.work), "<working folder>")
        if "no face detected in any" in msg:
            n = len(_frames(self.full / self.name / "blurry"))
            return (f"{self.o.input}: no face detected in any of its {n} frames (MTCNN, faces of at least "
                    "20 pixels); nothing to deblur")
        src = str(self.o.input.resolve())
        if msg.startswith(src):  # the tool already names the user's file (e.g. one frame of a folder)
            return str(self.o.input) + msg[len(src):]
        return f"{self.o.input}: {msg} ({e.tool})"

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
        info = {"input": str(o.input), "name": self.name, "size": [w, h], "frames": len(frames),
                "timing": self._timing(len(frames), (w, h)),
                "audio": self.source.audio if self.source else []}
        write_text(self.work / "video.json", json.dumps(info, indent=1) + "\n")

    def _timing(self, n: int, size) -> dict:
        """How output frames are timed: the source's own timestamps, or a constant rate (and why)."""
        o, src = self.o, self.source
        if o.fps is not None:
            rate = parse_rate(o.fps)
            if src is not None:
                self._note([f"--fps {o.fps}: frames re-timed to a constant {float(rate):.3f} fps instead of the "
                            "input's own timestamps" + ("; the audio is kept as it is, so it is only in sync if "
                                                        "that is the input's rate" if src.audio else "")])
            return {"mode": "constant", "rate": str(rate), "why": "--fps"}
        if src is None:
            return {"mode": "constant", "rate": "25", "why": "a folder of frames has no timestamps; --fps sets it"}
        if (src.width, src.height) != tuple(size):
            raise StageError(f"decoded frames are {size[0]}x{size[1]} but ffmpeg reports {src.width}x{src.height} "
                             f"for {o.input}")
        if n > src.frames or (n < src.frames and not o.max_frames):
            self._note([f"{n} frames were decoded but the video lists {src.frames} timestamps; they cannot be "
                        f"matched, so the output is timed at a constant {src.fps:.3f} fps"])
            return {"mode": "constant", "rate": str(src.rate), "why": "timestamps could not be matched"}
        times = src.times()[:n]
        end = src.times()[n] if n < src.frames else src.end_time()
        return {"mode": "source", "variable": src.variable_rate, "rate": str(src.rate),
                "times": [str(t) for t in times], "end": str(end), "timescale": src.time_base.denominator,
                "trim_audio": n < src.frames}

    def run_landmarks(self) -> None:
        text = _run_tool([self.py, "-m", "facePointDetection", "--dataset", str(self.full), "--points", "5",
                          "--max_gap", str(self.o.max_gap)], self.logs / "landmarks.log", self.env)
        self._note(_model_lines(text))

    def _landmarks(self, n: int) -> np.ndarray:
        """(T, 5, 2) landmarks of the full frames, NaN where there is no face."""
        pts = np.full((n, 5, 2), np.nan)
        for k in range(n):
            p = self.full / self.name / "face" / frame_name(k + 1, ".txt")
            if p.is_file():
                pts[k] = read_points(p)
        return pts

    def run_region(self) -> None:
        """Cut the clip into stretches of frames with a face; each becomes one clip of the dataset.

        Frames without a face (facePointDetection wrote no landmarks: more than --max_gap frames
        without a detection) are left out of every later stage and pass through unchanged.
        """
        from deblur import face_region as fr
        from facePointDetection.pipeline import _runs

        frames = _frames(self.full / self.name / "blurry")
        pts = self._landmarks(len(frames))
        has_face = np.isfinite(pts[:, 0, 0])
        if not has_face.any():
            raise InputError(f"{self.o.input}: no face was found in any frame (facePointDetection)")
        for d in (self.data, self.tset, self.result):
            if d.is_dir():
                shutil.rmtree(d)
        h, w = read_image(frames[0]).shape[:2]
        runs = _runs(has_face)
        side = (w, h) if self.o.full_frame else fr.box_side(pts, (w, h), self.o.margin, self.o.context,
                                                             self.o.multiple)
        segments, box_lines = [], []
        for a, b in runs:
            seg = self.name if len(runs) == 1 and (a, b) == (0, len(frames)) else f"{self.name}_{a + 1:05d}-{b:05d}"
            boxes = np.tile([0, 0, w, h], (b - a, 1)) if self.o.full_frame else \
                fr.face_boxes(pts[a:b], (w, h), self.o.margin, self.o.context, self.o.multiple, side=side)
            for j, (k, box) in enumerate(zip(range(a, b), boxes)):
                src, dst = frames[k], self.data / seg / "blurry" / frame_name(j + 1)
                if self.o.full_frame:
                    _link_or_copy(src, dst)
                else:
                    write_image(dst, fr.crop(read_image(src), box))
                write_points(self.data / seg / "face" / frame_name(j + 1, ".txt"), fr.shift_points(pts[k], box))
                box_lines.append(f"{frame_name(k + 1)} {box[0]} {box[1]} {box[2]} {box[3]}\n")
            segments.append({"name": seg, "first": a, "last": b - 1})
        no_face = [int(k) for k in np.flatnonzero(~has_face)]
        write_text(self.work / "boxes.txt", "".join(box_lines))
        write_text(self.work / "segments.json", json.dumps({"segments": segments, "no_face": no_face}) + "\n")
        info = json.loads((self.work / "video.json").read_text())
        info["no_face"] = no_face
        write_text(self.work / "video.json", json.dumps(info, indent=1) + "\n")
        if no_face:
            self._note([f"no face in frames {_span_text(no_face)} ({len(no_face)} of {len(frames)}; gaps longer "
                        f"than --max_gap {self.o.max_gap} frames): they pass through unchanged"])
        if not self.o.full_frame:
            bw, bh = side
            self.say(f"    face window {bw}x{bh} of {w}x{h} ({100.0 * bw * bh / (w * h):.0f}% of the frame)")

    def run_reconstruct(self) -> None:
        if self.prior == "none":
            self.say("    not needed: the network uses no 3D face prior (--face none)")
            return
        cmd = [self.py, "demo.py", "--input_path", str(self.data), "--output_path", str(self.tset)]
        if self.o.rnet:
            cmd += ["--rnet", str(Path(self.o.rnet).resolve())]
        if self.o.bfm:
            cmd += ["--bfm", str(Path(self.o.bfm).resolve())]
        self._note(_model_lines(_run_tool(cmd, self.logs / "reconstruct.log", self.env)))

    def run_render(self) -> None:
        if self.prior == "none":
            self.say("    not needed: the network uses no 3D face prior (--face none)")
            return
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
        if self.result.is_dir():
            shutil.rmtree(self.result)
        cmd = [self.py, "run_model.py", "--phase", "test", "--input_path", str(self.tset), "--output_path",
               str(self.result), "--checkpoint", str(self.o.checkpoint.resolve()), "--gpu", str(self.o.gpu)]
        if self.o.face is not None:
            cmd += ["--face", self.o.face]
        if self.o.levels is not None:
            cmd += ["--levels", str(self.o.levels)]
        cmd += list(self.o.model_args)
        self._note(_model_lines(_run_tool(cmd, self.logs / "deblur.log", self.env)))
        for seg in self.segments():
            n_in = len(_frames(self.data / seg["name"] / "blurry"))
            n_out = len(_frames(self.result / seg["name"]))
            if n_out != n_in:
                raise StageError(f"run_model.py wrote {n_out} frames to {self.result / seg['name']}, expected {n_in}")

    def run_blend(self) -> None:
        from deblur import face_region as fr

        for d in (self.final, self.final_render):
            if d.is_dir():
                shutil.rmtree(d)
        frames = _frames(self.full / self.name / "blurry")
        boxes = {}
        for line in (self.work / "boxes.txt").read_text().splitlines():
            name, *box = line.split()
            boxes[name] = [int(v) for v in box]
        where = {}
        for seg in self.segments():
            for j, k in enumerate(range(seg["first"], seg["last"] + 1)):
                where[k] = (seg["name"], frame_name(j + 1))
        for k, f in enumerate(frames):
            if k not in where:
                # no face: the input frame itself, and no prior
                _link_or_copy(f, self.final / f.name)
                if self.prior != "none":
                    write_image(self.final_render / f.name, np.zeros_like(read_image(f)))
                continue
            seg, local = where[k]
            res = self.result / seg / local
            if self.o.full_frame:
                _link_or_copy(res, self.final / f.name)
            else:
                write_image(self.final / f.name, fr.blend(read_image(f), read_image(res), boxes[f.name],
                                                          self.o.feather))
            render = self.tset / seg / "render" / local
            if render.is_file():
                # the 3D prior in full-frame coordinates, for comparison strips (black outside the window)
                frame = read_image(f)
                canvas = np.zeros_like(frame)
                x0, y0, x1, y1 = boxes[f.name]
                canvas[y0:y1, x0:x1] = read_image(render)
                write_image(self.final_render / f.name, canvas)

    def run_encode(self) -> None:
        o = self.o
        info = json.loads((self.work / "video.json").read_text())
        frames = _frames(self.final)
        t = info["timing"]
        if t["mode"] == "source":
            times, end = [Fraction(x) for x in t["times"]], Fraction(t["end"])
            kw = dict(times=times, end=end, timescale=t["timescale"], trim_audio=t["trim_audio"])
        else:
            kw = dict(fps=Fraction(t["rate"]), trim_audio=bool(o.max_frames))
        audio_from = o.input if (o.input.is_file() and not o.no_audio) else None
        enc = videoio.encode_frames(o.output, frames, audio_from=audio_from, **kw)
        if enc.get("audio_note"):
            self._note([enc["audio_note"]])
        got = videoio.probe_video(o.output)
        want = (info["frames"], *info["size"])
        if (got.frames, got.width, got.height) != want:
            o.output.unlink(missing_ok=True)
            raise StageError(f"{o.output} came out with {got.frames} frames of {got.width}x{got.height}, "
                             f"expected {want[0]} of {want[1]}x{want[2]}")
        if t["mode"] == "source":
            rel = [x - times[0] for x in times]
            out_rel = [x - got.times()[0] for x in got.times()]
            if out_rel != rel:
                o.output.unlink(missing_ok=True)
                raise StageError(f"{o.output}: frame times were not kept (first differences: "
                                 f"{[str(a) for a, b in zip(out_rel, rel) if a != b][:3]})")
        write_text(self.work / "encoded.json", json.dumps({**enc, "output": str(o.output)}) + "\n")
        if o.frames_out:
            dst = Path(o.frames_out)
            dst.mkdir(parents=True, exist_ok=True)
            for f in frames:
                shutil.copyfile(f, dst / f.name)


def checkpoint_face(path) -> str | None:
    """The --face mode stored in a native checkpoint (deblur-N.npz or the newest in a folder);
    None for TF1 checkpoints or when it cannot be read (run_model.py then decides and reports).
    Reads only the JSON `meta` entry (no TensorFlow import in this process)."""
    p = Path(path)
    if p.is_dir():
        natives = sorted((q for q in p.iterdir() if re.match(r"^deblur-(\d+)\.npz$", q.name)),
                         key=lambda q: int(re.findall(r"\d+", q.name)[-1]))
        p = natives[-1] if natives else p
    if not (p.is_file() and p.suffix == ".npz"):
        return None
    try:
        with np.load(p, allow_pickle=False) as z:
            return json.loads(str(z["meta"])).get("config", {}).get("face")
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


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
    """Run the whole pipeline; returns {'timings': {stage: s}, 'total_s', 'notes', 'video',
    'encoded', 'summary'}. Raises InputError (bad input, before anything is written when the
    input itself is the problem) or StageError (internal failure of a stage tool)."""
    return Pipeline(opt).run()
