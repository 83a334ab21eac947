"""One command from a blurry face video to a deblurred H.264 video (not in the original repository).

The original (rwenqi/3Dfacedeblurring) needs five manual steps: extractFrames.m, the Windows
five-point detector, demo.py (R-Net coefficients), demo_render.py, generateAlignments.m and
run_model.py --phase test. `deblur_video` runs the same stages in ONE process, calling the
functions the stage tools call (each tool keeps writing the original on-disk layout for research
use); the landmark detector, the morphable model and the network are loaded once, and frames
stream through in chunks of `--chunk` frames (memory does not grow with the clip's length):

  landmarks    decode the clip once; MTCNN on a face-sized window every --detect_every frames,
               Lucas-Kanade tracking in between (facePointDetection/track.py), one face
               through the clip (facePointDetection.pipeline.finish_track)   -> landmarks.npy
  region       one clip <seg> per stretch of frames with a face; a face-centred window
               (pipeline/face_region.py) or the full frames (--full_frame)   -> boxes.txt
  reconstruct  only for a network with a 3D prior: the windows in the dataset layout
  render       (dataset/<seg>/{blurry,face}/), then demo.py's run_coefficients and
               demo_render.py's run_render                                   -> training_set/<seg>/
  deblur       per chunk: windows, neighbours warped onto each frame (preprocess.align.
               align_neighbour), the network in batches of --batch (Deblurrer.deblur_batch,
               --precision auto), the window pasted back with a feathered mask -> final/00001.png
  encode       H.264 with the input's frame times, size and audio (common/videoio.py),
               written atomically                                            -> OUTPUT.mp4

`--keep_intermediates` also writes the windows, warped neighbours and network outputs in the
original layout (dataset/<seg>/blurry/, training_set/<seg>/blur_-2..2/, result/<seg>/);
`--frames_out DIR` copies the final frames as PNGs, with `model.json` naming the network that made
them (evaluate.py labels its report with it).

What the output keeps (checked after encoding, by reading the output back):
* frame times: every frame keeps its input presentation timestamp (variable frame rate, exact
  rational rates such as 24000/1001); `--fps` re-times to a constant rate and says so;
* size: exactly the input's (4:4:4 chroma when a side is odd, which 4:2:0 cannot hold; said);
* audio: every audio stream copied unchanged and in sync (`--no_audio` drops them; said);
* frames without a face: runs of more than `--max_gap` (2) frames without a detection get
  no landmarks; those frames are not reconstructed, rendered or deblurred, but copied
  unchanged, and the summary lists them. Shorter runs are detector misses (motion blur) and
  are bridged by interpolated landmarks.

Resuming: `<work>/state.json` records, per finished stage, a key that hashes the stage's own
settings and the key of the stage before it. A re-run skips every stage whose key still
matches and re-runs a stage and everything after it when its settings changed. Inside the
deblur stage, `<work>/progress.json` lists the finished chunks (for that stage's key): a killed
run continues at the first unfinished chunk. Stage times (and the deblur stage's decode /
align / network / blend parts) are printed and written to `<work>/timings.json`.

Errors: the input and flags are checked before anything is written (InputError naming the
user's file: exit 2); a frame found unreadable while decoding is reported the same way; any
other stage failure is a StageError (exit 1).
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
from fractions import Fraction
from pathlib import Path

import numpy as np

from common import tracks, videoio
from common.errors import InputError
from common.flags import DEFAULT_FLOW, DEFAULT_GPU, DEFAULT_OCCLUSION
from common.frames import frame_folder_files, png_frames
from common.paths import check_output
from deblur.checkpoint import (MODEL_RECORD, SHIPPED_CHECKPOINT, model_record, provenance,
                               write_model_record)
from deblur.config import NetworkConfig
from facePointDetection.pipeline import MAX_GAP
from common.fileio import atomic_path, frame_name, read_image, write_image, write_points, write_text

ROOT = Path(__file__).resolve().parents[1]
# The model this project trained and ships (checkpoints/MODEL_CARD.md); --checkpoint for any other.
DEFAULT_CHECKPOINT = str(SHIPPED_CHECKPOINT)  # one constant: deblur/checkpoint.py
VIDEO_EXTS = videoio.VIDEO_EXTS
OUTPUT_EXTS = (".mp4", ".mov", ".m4v", ".mkv")


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
    flow: str = DEFAULT_FLOW
    occlusion: str = DEFAULT_OCCLUSION
    gpu: str = DEFAULT_GPU
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
    precision: str = "auto"
    xla: bool = False
    # None: what the checkpoint stores (deblur.checkpoint.inference_settings)
    self_ensemble: bool | None = None
    sharp_guard: float | None = None
    batch: int = 1
    chunk: int = 32
    detect_every: int = 5
    keep_intermediates: bool = False

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


def run_tool(cmd: list[str], log: Path, env=None) -> str:
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


def model_lines(text: str) -> list[str]:
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
        self.env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        self.source: videoio.VideoInfo | None = None
        stored = checkpoint_config(opt.checkpoint)
        self.prior = opt.face if opt.face is not None else (stored.face if stored else None)
        # seconds spent in each part of the deblur stage (they run interleaved, chunk by chunk)
        self.parts = {"decode": 0.0, "align": 0.0, "network": 0.0, "blend": 0.0}
        self.max_frames_held = 0
        self._deblur_key = ""

    def say(self, msg: str) -> None:
        if not self.o.quiet:
            print(msg, flush=True)

    # -- checks before anything is written
    def check_inputs(self) -> None:
        """Every problem with the user's input or flags, as one InputError, before any output.

        The input: a readable video with at least one frame, or a folder of readable images of
        one size. Output paths: a supported container, not the input itself.
        """
        from preprocess.video import check_frame_sizes

        o = self.o
        if not o.input.exists():
            raise InputError(f"{o.input}: input video not found")
        if o.output.is_dir():
            raise InputError(f"{o.output}: is a folder; give the output video's file name, e.g. "
                             f"{o.output / 'deblurred.mp4'}")
        if not o.output.suffix:
            raise InputError(f"{o.output}: no file extension, so no container to write (name it "
                             f"{o.output.name}.mp4, or use one of {', '.join(OUTPUT_EXTS)})")
        if o.output.suffix.lower() not in OUTPUT_EXTS:
            raise InputError(f"{o.output}: cannot write a '{o.output.suffix}' video (use one of "
                             f"{', '.join(OUTPUT_EXTS)})")
        check_output(o.output, [o.input], "output video")
        check_output(o.work_dir, [o.input], "working folder")
        if o.frames_out is not None:
            check_output(o.frames_out, [o.input], "--frames_out folder")
        for flag, v in (("--batch", o.batch), ("--chunk", o.chunk), ("--detect_every", o.detect_every)):
            if v < 1:
                raise InputError(f"{flag} must be at least 1, got {v}")
        network_flags(o.model_args)
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
        from deblur import checkpoint as ckpt

        kind, found = ckpt.resolve(o.checkpoint)  # InputError for a file that is no checkpoint
        if kind == "native":
            ckpt.read_meta(found)  # readable and ours (cheap: the JSON entry, no TensorFlow)
        if o.input.is_dir():
            files = frame_folder_files(o.input)
            check_frame_sizes(files[: o.max_frames])
        else:
            self.source = videoio.probe_video(o.input)

    def _source_id(self) -> dict:
        """What identifies the input for the frames stage: for a folder, its image files (the
        folder itself changes when the output or working folder is placed inside it)."""
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
        return [("landmarks", "decode; five landmarks per frame (MTCNN on the face, tracked between)",
                 {**self._source_id(), "fps": str(o.fps), "max_gap": o.max_gap, "every": o.detect_every},
                 self.run_landmarks),
                ("region", "full frames" if o.full_frame else "face-centred crop window",
                 {"full": o.full_frame, "margin": o.margin, "context": o.context, "multiple": o.multiple},
                 self.run_region),
                ("reconstruct", "3D face coefficients (demo.py's function, " + ("R-Net" if o.rnet else "landmark fitting")
                 + ")", {"rnet": str(o.rnet), "bfm": str(o.bfm), "prior": self.prior != "none"}, self.run_reconstruct),
                ("render", "render the 3D face prior (demo_render.py's function)",
                 {"bfm": str(o.bfm), "prior": self.prior != "none"}, self.run_render),
                ("deblur", f"align neighbours (--align {o.align}), network, " + ("collect frames" if o.full_frame else
                                                                                 "paste the face window back"),
                 {"align": o.align, "flow": o.flow, "occlusion": o.occlusion, "ckpt": str(o.checkpoint.resolve()),
                  "ckpt_mtime": _tree_mtime(o.checkpoint), "face": o.face, "levels": o.levels, "args": o.model_args,
                  "precision": o.precision, "xla": o.xla, "self_ensemble": o.self_ensemble,
                  "sharp_guard": o.sharp_guard,
                  "feather": o.feather, "chunk": o.chunk, "keep": o.keep_intermediates}, self.run_deblur),
                ("encode", "H.264 video with the input's frame times, size and audio",
                 {"out": str(o.output.resolve()), "frames_out": str(o.frames_out), "no_audio": o.no_audio},
                 self.run_encode)]

    def segments(self) -> list[dict]:
        """Stretches of consecutive frames with a face: [{'name', 'first', 'last'}] (0-based)."""
        path = self.work / "segments.json"
        return json.loads(path.read_text())["segments"] if path.is_file() else []

    def outputs(self, stage: str) -> list[Path]:
        """What a stage writes (removed before it re-runs with changed settings)."""
        segs = [s["name"] for s in self.segments()]
        return {"landmarks": [self.work / "landmarks.npy"],
                # new stretches of frames with a face: everything made from the old ones goes
                "region": [self.data, self.tset, self.result],
                "reconstruct": [self.tset / s / "face" for s in segs],
                "render": [self.tset / s / "render" for s in segs] + [self.data / s / "face_render" for s in segs],
                "deblur": [self.final, self.final_render, self.result, self.work / "progress.json"]
                + [self.tset / s / f"blur_{k}" for s in segs for k in range(-4, 5)],
                "encode": []}[stage]

    def run(self) -> dict:
        o = self.o
        self.check_inputs()
        fresh = not self.work.exists()
        self.work.mkdir(parents=True, exist_ok=True)
        if not fresh:
            # A killed run can leave the temp file of a write it never renamed
            # (common/fileio.atomic_path names them `.<stem>.<random>.tmp<ext>`); nothing
            # reads them, and a resumed run rewrites that file, so they are only litter.
            for tmp in self.work.rglob(".*.tmp*"):
                if tmp.is_file():
                    tmp.unlink()
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
        ran = False  # did any stage run (or were all done in an earlier run)?
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
                # settings changed since this stage last ran: the stages skip files that exist,
                # so outputs made with the old settings must go
                for d in self.outputs(name):
                    if d.is_dir():
                        shutil.rmtree(d)
                    elif d.is_file():
                        d.unlink()
            state.start(name, key)
            if name == "deblur":
                self._deblur_key = key  # finished chunks count only for these settings
            t0 = time.perf_counter()
            fn()
            ran = True
            dt = time.perf_counter() - t0
            timings[name] = dt
            state.mark(name, key, dt)
            self.say(f"{' ' * len(f'[{i}/{len(stages)}]')} {name:<11} done in {dt:.1f} s")
            if name == "deblur" and dt > 0:
                self.say(f"{' ' * len(f'[{i}/{len(stages)}]')} {'':<11} " + ", ".join(
                    f"{k} {v:.1f} s" for k, v in self.parts.items()))
        total = time.perf_counter() - t_all
        info = json.loads((self.work / "video.json").read_text())
        written = json.loads((self.work / "encoded.json").read_text())
        summary = self.summary_lines(info, written)
        if not ran:
            self.say(f"{o.output} is up to date: every stage was done in an earlier run; working folder {self.work}")
        else:
            self.say(f"wrote {o.output} in {total:.1f} s; working folder {self.work}")
        for line in summary:
            self.say("    " + line)
        for n in self._all_notes():
            self.say("NOTE: " + n)
        write_text(self.work / "timings.json", json.dumps({"stages": timings, "deblur_parts": self.parts,
                                                            "total_s": total}, indent=1) + "\n")
        return {"timings": timings, "deblur_parts": dict(self.parts), "total_s": total, "notes": self._all_notes(),
                "video": info, "encoded": written, "summary": summary, "max_frames_held": self.max_frames_held}

    def summary_lines(self, info: dict, enc: dict) -> list[str]:
        """What the output is, against the input: size, timing, audio, frames without a face."""
        n, (w, h) = enc["frames"], (enc["width"], enc["height"])
        chroma = {"yuv420p": "4:2:0", "yuv444p": "4:4:4 (High 4:4:4 profile)"}.get(enc["pix_fmt"], enc["pix_fmt"])
        sar = Fraction(enc.get("sar", "1"))
        aspect = (f", pixel aspect ratio {sar.numerator}:{sar.denominator} (the input's: shown "
                  f"{round(w * sar)}x{h})" if sar != 1 else "")
        lines = [f"video: {n} frames, {w}x{h} (the input's size){aspect}, H.264 {chroma}"]
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
    def run_landmarks(self) -> None:
        """Decode the clip once, frame by frame, and follow the face: (T, 5, 2) landmarks.

        MTCNN runs on a face-sized window every `--detect_every` frames and the points are
        tracked in between (facePointDetection/track.py); the detections end in the landmark
        stage's own `finish_track` (one face, gaps of at most --max_gap filled). Writes
        landmarks.npy (NaN rows: no face), video.json (frame count, size, timing).
        """
        from facePointDetection.detect import FivePointDetector
        from facePointDetection.pipeline import finish_track
        from facePointDetection.track import LandmarkTracker

        o = self.o
        tracker = LandmarkTracker(FivePointDetector(), every=o.detect_every)
        dets, size = [], None
        for _, frame in self.decode():
            if size is None:
                size = (frame.shape[1], frame.shape[0])
            dets.append(tracker(frame))
        if not dets:
            raise InputError(f"{o.input}: no frames could be decoded")
        n, (w, h) = len(dets), size
        c = tracker.counts
        self.say(f"    {n} frames: MTCNN on {c['window']} face windows and {c['whole']} whole frames, "
                 f"{c['tracked']} tracked, {c['none']} without a face")
        try:
            pts, _, keep, _ = finish_track(dets, 0.0, o.max_gap)
        except ValueError:
            raise InputError(f"{o.input}: no face detected in any of its {n} frames (MTCNN, faces of at "
                             "least 20 pixels); nothing to deblur") from None
        pts[..., 0] = np.clip(pts[..., 0], 0, w - 1)
        pts[..., 1] = np.clip(pts[..., 1], 0, h - 1)
        with atomic_path(self.work / "landmarks.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, pts)
        info = {"input": str(o.input), "name": self.name, "size": [w, h], "frames": n,
                "timing": self._timing(n, (w, h)), "audio": self.source.audio if self.source else [],
                "sar": str(self.source.sar) if self.source else "1", "detection": c}
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

    def decode(self):
        """(index, RGB uint8 frame) of the input in order, one at a time (preprocess's decoder:
        the frames stage's own; InputError naming the user's file or frame)."""
        from preprocess.video import iter_video

        return iter_video(self.o.input, self.o.max_frames)

    def _landmarks(self) -> np.ndarray:
        """(T, 5, 2) landmarks of the full frames, NaN where there is no face."""
        return np.load(self.work / "landmarks.npy")

    def run_region(self) -> None:
        """Cut the clip into stretches of frames with a face (segments) and place the face window.

        Frames without a face (more than --max_gap frames without a detection) are left out of
        every later stage and pass through unchanged. Writes boxes.txt and segments.json.
        """
        from pipeline import face_region as fr

        pts = self._landmarks()
        info = json.loads((self.work / "video.json").read_text())
        n, (w, h) = info["frames"], info["size"]
        has_face = np.isfinite(pts[:, 0, 0])
        if not has_face.any():
            raise InputError(f"{self.o.input}: no face was found in any frame (facePointDetection)")
        for d in (self.data, self.tset, self.result):
            if d.is_dir():
                shutil.rmtree(d)
        runs = tracks.runs(has_face)
        side = (w, h) if self.o.full_frame else fr.box_side(pts, (w, h), self.o.margin, self.o.context,
                                                             self.o.multiple)
        segments, box_lines = [], []
        for a, b in runs:
            seg = self.name if len(runs) == 1 and (a, b) == (0, n) else f"{self.name}_{a + 1:05d}-{b:05d}"
            boxes = np.tile([0, 0, w, h], (b - a, 1)) if self.o.full_frame else \
                fr.face_boxes(pts[a:b], (w, h), self.o.margin, self.o.context, self.o.multiple, side=side)
            box_lines += [f"{frame_name(k + 1)} {x0} {y0} {x1} {y1}\n" for k, (x0, y0, x1, y1) in zip(range(a, b), boxes)]
            segments.append({"name": seg, "first": a, "last": b - 1})
        no_face = [int(k) for k in np.flatnonzero(~has_face)]
        write_text(self.work / "boxes.txt", "".join(box_lines))
        write_text(self.work / "segments.json", json.dumps({"segments": segments, "no_face": no_face}) + "\n")
        info["no_face"] = no_face
        write_text(self.work / "video.json", json.dumps(info, indent=1) + "\n")
        if no_face:
            self._note([f"no face in frames {_span_text(no_face)} ({len(no_face)} of {n}; gaps longer "
                        f"than --max_gap {self.o.max_gap} frames): they pass through unchanged"])
        if not self.o.full_frame:
            bw, bh = side
            self.say(f"    face window {bw}x{bh} of {w}x{h} ({100.0 * bw * bh / (w * h):.0f}% of the frame)")

    def _boxes(self) -> dict:
        """{0-based frame index: (x0, y0, x1, y1)} of the frames with a face."""
        out = {}
        for line in (self.work / "boxes.txt").read_text().splitlines():
            name, *box = line.split()
            out[int(Path(name).stem) - 1] = tuple(int(v) for v in box)
        return out

    def _where(self) -> dict:
        """{frame index: (segment name, first, last, 1-based index in the segment)}."""
        where = {}
        for seg in self.segments():
            for j, k in enumerate(range(seg["first"], seg["last"] + 1)):
                where[k] = (seg["name"], seg["first"], seg["last"], j + 1)
        return where

    def _write_windows(self) -> None:
        """The face windows and their landmarks in the dataset layout (dataset/<seg>/{blurry,
        face}/), which the 3D-prior stages read; one decoding pass, one frame at a time."""
        from pipeline import face_region as fr

        boxes, where, pts = self._boxes(), self._where(), self._landmarks()
        for k, frame in self.decode():
            if k not in where:
                continue
            seg, _, _, j = where[k]
            dst = self.data / seg / "blurry" / frame_name(j)
            if not dst.is_file():
                write_image(dst, frame if self.o.full_frame else fr.crop(frame, boxes[k]), fast=True)
            write_points(self.data / seg / "face" / frame_name(j, ".txt"), fr.shift_points(pts[k], boxes[k]))

    def run_reconstruct(self) -> None:
        """3D face coefficients of every face window: demo.py's function, in this process."""
        if self.prior == "none":
            self.say("    not needed: the network uses no 3D face prior (--face none)")
            return
        from faceReconstruction.pipeline import CoefficientConfig, run_coefficients

        self._write_windows()
        lines = []
        run_coefficients(self.data, self.tset, CoefficientConfig(bfm=self.o.bfm, rnet=self.o.rnet), log=lines.append,
                         progress=False)
        self._log("reconstruct", lines)

    def run_render(self) -> None:
        """The 3D prior restored into every face window: demo_render.py's function, in this process."""
        if self.prior == "none":
            self.say("    not needed: the network uses no 3D face prior (--face none)")
            return
        from faceReconstruction.pipeline import run_render

        lines = []
        run_render(self.tset, self.data, bfm=self.o.bfm, log=lines.append, progress=False)
        self._log("render", lines)

    def _log(self, stage: str, lines: list[str]) -> None:
        write_text(self.logs / f"{stage}.log", "".join(f"{x}\n" for x in lines))
        self._note(model_lines("\n".join(lines)))

    def load_network(self):
        """The network, loaded once: (Deblurrer, NetworkConfig). The checkpoint's stored settings
        win over --face/--levels/--model_args (reported, as run_model.py does)."""
        import os

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++ logs: CUDA probing noise on CPUs; failures raise
        from common.flags import select_gpu
        from deblur.checkpoint import inference_label, inference_settings, load_generator, resolve
        from deblur.inference import Deblurrer
        from deblur.precision import gpu_note, precision_note, precision_scope

        o = self.o
        select_gpu(o.gpu)
        no_gpu = gpu_note(o.gpu)
        if no_gpu:
            self._note([no_gpu])
        slow = precision_note(o.precision)
        if slow:
            self._note([slow])
        flags = network_flags(o.model_args)
        if o.face is not None:
            flags["face"] = o.face
        if o.levels is not None:
            flags["levels"] = o.levels
        notes = []
        # Scoped: the global policy must not leak into the next run's MTCNN in this process.
        with precision_scope(o.precision) as precision:
            net, cfg, step = load_generator(o.checkpoint, flags, log=notes.append)
        for line in notes:
            self.say("    " + line)
        source = resolve(o.checkpoint)[1]
        use_ens, tau = inference_settings(source, o.self_ensemble, o.sharp_guard)
        ens = inference_label(use_ens, tau)
        self.say(f"    network {source} ({provenance(source, step)}): {cfg.to_dict()}, precision {precision}"
                 f"{' (auto)' if o.precision == 'auto' else ''}, {'XLA' if o.xla else 'no XLA'}, batch {o.batch}{ens}")
        self._note([f"network: {source}, precision {precision}{ens}"])
        # what made the frames, for --frames_out (evaluate.py labels its report with it)
        write_model_record(self.work, model_record(source, cfg, step, use_ens, tau))
        return Deblurrer(net, cfg, jit_compile=o.xla, source=str(source),
                         self_ensemble=use_ens, sharp_guard=tau), cfg

    def run_deblur(self) -> None:
        """Align, deblur and blend the clip chunk by chunk, in memory; `final/NNNNN.png` per frame.

        Frames are decoded in order into a `FrameWindow` that holds a chunk plus the temporal
        context the neighbour alignment needs, never the whole clip. Per chunk: the face window of
        every frame (`face_region.crop`), its neighbours warped onto it (`preprocess.align.
        align_neighbour`, the align stage's function, clamped to the frame's stretch of frames
        with a face as the stage tools clamp to a clip), the network in batches of --batch
        (`Deblurrer.deblur_batch`), the result pasted back (`face_region.blend`). A finished
        chunk is recorded in `progress.json`: a re-run after a kill starts at the first
        unfinished chunk. Frames without a face are the input frame.
        """
        from deblur.network import uses_coeff, uses_render
        from common.frames import frame_offsets
        from common.fileio import read_coeff
        from pipeline import face_region as fr
        from preprocess.align import align_neighbour

        o = self.o
        info = json.loads((self.work / "video.json").read_text())
        n = info["frames"]
        boxes, where = self._boxes(), self._where()
        progress = Progress(self.work / "progress.json", self._deblur_key)
        chunks = [(a, min(a + o.chunk, n)) for a in range(0, n, o.chunk)]
        if all(progress.done(c) for c in range(len(chunks))):
            return
        deblurrer, cfg = self.load_network()
        offsets = frame_offsets(cfg.n_frames)
        r = max(abs(x) for x in offsets)
        prior = self.prior != "none"
        parts = self.parts
        window = FrameWindow(self.decode(), n, keep=o.chunk + 2 * r)
        for c, (a, b) in enumerate(chunks):
            if progress.done(c):
                continue
            t0 = time.perf_counter()
            window.release_before(a - r)
            frames = {k: window.get(k) for k in range(max(0, a - r), min(n, b + r))}
            parts["decode"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            crops = {k: (f if o.full_frame else fr.crop(f, boxes[k])) for k, f in frames.items() if k in where}
            items, order = [], []
            for t in range(a, b):
                if t not in where:
                    continue
                seg, first, last, j = where[t]
                stack = []
                for off in offsets:
                    i = min(max(t + off, first), last)
                    stack.append(crops[t] if i == t else
                                 align_neighbour(crops[t], crops[i], o.align, o.flow, occlusion=o.occlusion)[0])
                render = read_image(self.tset / seg / "render" / frame_name(j)) if uses_render(cfg.face) else None
                coeff = read_coeff(self.tset / seg / "face" / frame_name(j, ".txt")) if uses_coeff(cfg.face) else None
                items.append((stack, render, coeff))
                order.append(t)
                if o.keep_intermediates:
                    for off, img in zip(offsets, stack):
                        write_image(self.tset / seg / f"blur_{off}" / frame_name(j), img, fast=True)
                    write_image(self.data / seg / "blurry" / frame_name(j), crops[t], fast=True)
            parts["align"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            results = []
            for i in range(0, len(items), o.batch):
                results += deblurrer.deblur_batch(items[i:i + o.batch], batch_size=o.batch)
            parts["network"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            res = dict(zip(order, results))
            for t in range(a, b):
                name = frame_name(t + 1)
                if t not in res:
                    # no face: the input frame itself, and no prior
                    write_image(self.final / name, frames[t], fast=True)
                    if prior:
                        write_image(self.final_render / name, np.zeros_like(frames[t]), fast=True)
                    continue
                seg, _, _, j = where[t]
                out = res[t] if o.full_frame else fr.blend(frames[t], res[t], boxes[t], o.feather)
                write_image(self.final / name, out, fast=True)
                if o.keep_intermediates:
                    write_image(self.result / seg / frame_name(j), res[t], fast=True)
                if prior and uses_render(cfg.face):
                    # the 3D prior in full-frame coordinates, for comparison strips (black outside)
                    canvas = np.zeros_like(frames[t])
                    x0, y0, x1, y1 = boxes[t]
                    canvas[y0:y1, x0:x1] = read_image(self.tset / seg / "render" / frame_name(j))
                    write_image(self.final_render / name, canvas, fast=True)
            progress.mark(c)
            parts["blend"] += time.perf_counter() - t0
            self.say(f"    frames {a + 1}-{b} of {n} done")
        self.max_frames_held = window.max_held

    def run_encode(self) -> None:
        o = self.o
        info = json.loads((self.work / "video.json").read_text())
        frames = png_frames(self.final)
        if len(frames) != info["frames"]:
            raise StageError(f"{self.final} holds {len(frames)} frames, expected {info['frames']}")
        t = info["timing"]
        if t["mode"] == "source":
            times, end = [Fraction(x) for x in t["times"]], Fraction(t["end"])
            kw = dict(times=times, end=end, timescale=t["timescale"], trim_audio=t["trim_audio"])
        else:
            kw = dict(fps=Fraction(t["rate"]), trim_audio=bool(o.max_frames))
        audio_from = o.input if (o.input.is_file() and not o.no_audio) else None
        sar = Fraction(info.get("sar", "1"))
        enc = videoio.encode_frames(o.output, frames, audio_from=audio_from, sar=sar, **kw)
        if enc.get("audio_note"):
            self._note([enc["audio_note"]])
        got = videoio.probe_video(o.output)
        want = (info["frames"], *info["size"], sar)
        if (got.frames, got.width, got.height, got.sar) != want:
            o.output.unlink(missing_ok=True)
            raise StageError(f"{o.output} came out with {got.frames} frames of {got.width}x{got.height} "
                             f"(pixel aspect {got.sar}), expected {want[0]} of {want[1]}x{want[2]} "
                             f"(pixel aspect {sar})")
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
            if (self.work / MODEL_RECORD).is_file():
                shutil.copyfile(self.work / MODEL_RECORD, dst / MODEL_RECORD)


class FrameWindow:
    """Frames of a decoder kept in memory by index, at most `keep` at a time.

    `get(k)` decodes forward until frame k (frames are never decoded twice: the video command
    asks for them in increasing order, a chunk plus its temporal context); `release_before(k)`
    forgets the frames before k. `max_held` is the most frames ever held (the test checks the
    bound: memory does not grow with the clip's length). RuntimeError when a frame before the
    window is asked for again, or when holding it would exceed `keep`.
    """

    def __init__(self, frames, n: int, keep: int):
        self._it, self.n, self.keep = iter(frames), n, keep
        self._held: dict = {}
        self._next = 0
        self._floor = 0  # frames before it are dropped as soon as they are decoded (skipped chunks)
        self.max_held = 0

    def release_before(self, k: int) -> None:
        self._floor = max(self._floor, k)
        for i in [i for i in self._held if i < k]:
            del self._held[i]

    def get(self, k: int) -> np.ndarray:
        if k in self._held:
            return self._held[k]
        if k < self._next or k < self._floor:
            raise RuntimeError(f"frame {k} was released already")
        while self._next <= k:
            try:
                _, frame = next(self._it)
            except StopIteration:
                raise StageError(f"the input ended at frame {self._next}, before frame {k + 1} of the "
                                 f"{self.n} counted in the landmark pass") from None
            if self._next >= self._floor:
                self._held[self._next] = frame
            self._next += 1
            if len(self._held) > self.keep:
                raise RuntimeError(f"{len(self._held)} frames held, more than {self.keep}")
            self.max_held = max(self.max_held, len(self._held))
        return self._held[k]


class Progress:
    """Finished chunks of the deblur stage (`<work>/progress.json`), valid for one settings key.

    Written atomically after a chunk's frames are all on disk, so a killed run loses at most
    the chunk it was in."""

    def __init__(self, path: Path, key: str):
        self.path, self.key = path, key
        try:
            data = json.loads(path.read_text()) if path.is_file() else {}
        except json.JSONDecodeError:
            data = {}
        self.chunks = set(data.get("chunks", [])) if data.get("key") == key else set()

    def done(self, c: int) -> bool:
        return c in self.chunks

    def mark(self, c: int) -> None:
        self.chunks.add(c)
        write_text(self.path, json.dumps({"key": self.key, "chunks": sorted(self.chunks)}) + "\n")


def network_flags(model_args) -> dict:
    """run_model.py network flags given through --model_args ("--channels 16 --model gray")
    as a dict for `load_generator` (the checkpoint's stored settings still win)."""
    import argparse

    from deblur.config import MODELS

    ap = argparse.ArgumentParser(prog="--model_args", add_help=False)
    ap.add_argument("--channels", type=int)
    ap.add_argument("--model", choices=MODELS)
    ap.add_argument("--n_frames", type=int)
    ap.add_argument("--residual", action="store_true", default=None)
    try:
        a, rest = ap.parse_known_args(list(model_args))
    except SystemExit:
        raise InputError(f"--model_args {' '.join(model_args)!r}: cannot parse") from None
    if rest:
        raise InputError(f"--model_args: unknown network flags {rest} (known: --channels, --model, --n_frames, "
                         "--residual)")
    return {k: v for k, v in vars(a).items() if v is not None}


def checkpoint_config(path) -> NetworkConfig | None:
    """The NetworkConfig stored in a native checkpoint (deblur-N.npz or the newest in a folder);
    None for TF1 checkpoints or when it cannot be read (run_model.py then decides and reports).
    Reads only the JSON `meta` entry (no TensorFlow import in this process)."""
    from deblur import checkpoint as ckpt

    try:
        kind, p = ckpt.resolve(path)
        return ckpt.stored_config(p, ckpt.read_meta(p)) if kind == "native" else None
    except InputError:  # CheckpointDamaged included
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
