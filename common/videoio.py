"""Video files in and out, keeping what the user's video is: frame times, size, audio.

Everything goes through the ffmpeg binary that ships with imageio-ffmpeg
(`imageio_ffmpeg.get_ffmpeg_exe()`); no container is parsed or written here.

Reading (`probe_video`): one decoding pass of the first video stream with
`-fps_mode passthrough -enc_time_base demux -f framecrc`, which lists every decoded frame with
its presentation timestamp in the stream's own time base (so 24000/1001 stays 1001/24000 s per
frame, exactly) plus the decoded (display, i.e. rotated) size; the stream header lines give
the container start time and the audio streams.

Writing (`encode_frames`): the frames are PNG files; an ffconcat list gives each one its
duration, so a variable-frame-rate input keeps every frame's time (durations are whole
microseconds taken as differences of the rounded cumulative times, so they never drift, and the
MP4 track gets the source's time scale, so exact rational times come back exactly); the last
frame's duration, which no next frame gives, is set on the encoded packets (`setts`), so the
stream ends where the source's does and holds one packet per frame. H.264
(libx264, CRF 18): 4:2:0 (yuv420p, plays everywhere) when width and height are even, else 4:4:4
(yuv444p; 4:2:0 cannot hold an odd size) so the size is kept exactly. RGB -> YUV with the BT.709
matrix, limited range, and the stream is tagged so players convert it back the same way.
Audio streams of the source are copied unchanged (`-c:a copy`), with the video placed at the
source's offset between video and container start, so they stay in sync; a codec the output
container cannot hold is re-encoded to AAC and reported.

`write_video` writes in-memory frames at a constant rate (comparison strips).
"""
from __future__ import annotations

import re
import shlex
import subprocess
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from common.errors import InputError
from common.fileio import atomic_path

VIDEO_EXTS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
CRF = 18
# BT.709 matrix, primaries and transfer, limited range: what HD players assume and what the
# tags tell every other player.
_COLOUR_TAGS = ["-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709",
                "-color_range", "tv"]
# Since ffmpeg 7 the encoder takes the frames' own colour properties, which the scale filter
# leaves unspecified for primaries and transfer: the options above alone tag only the matrix.
_TO_BT709 = ("scale=out_color_matrix=bt709:out_range=tv,format={chroma},"
             "setparams=colorspace=bt709:color_primaries=bt709:color_trc=bt709:range=tv")


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


# ----------------------------------------------------------------------------- probing
@dataclass
class VideoInfo:
    """What a video file is. Times are exact: `pts[k] * time_base` seconds.

    width, height : decoded frame size as shown (rotation metadata applied), pixels
    pts           : presentation timestamp of every decoded frame, in `time_base` units,
                    strictly increasing
    end_pts       : end of the last frame (its pts + its duration), same units
    start         : container start time, seconds (audio and video are placed relative to it)
    audio         : one description per audio stream, e.g. "aac (LC), 16000 Hz, mono"
    other_streams : descriptions of subtitle/data streams (not carried into outputs)
    sar           : sample (pixel) aspect ratio of the decoded frames, width/height of one pixel
                    (1 = square pixels; anamorphic video shows width * sar x height)
    """

    path: str
    width: int
    height: int
    time_base: Fraction
    pts: list = field(default_factory=list)
    end_pts: int = 0
    start: Fraction = Fraction(0)
    codec: str = ""
    pix_fmt: str = ""
    audio: list = field(default_factory=list)
    other_streams: list = field(default_factory=list)
    sar: Fraction = Fraction(1)

    @property
    def frames(self) -> int:
        return len(self.pts)

    @property
    def intervals(self) -> list[int]:
        ends = self.pts[1:] + [self.end_pts]
        return [b - a for a, b in zip(self.pts, ends)]

    @property
    def variable_rate(self) -> bool:
        """True when the frame intervals differ by more than one time-base tick.

        Rates such as 30000/1001 in a 1/1000 time base alternate 33/34 ms: still constant.
        The last frame's duration (often a guess of the muxer) is not considered.
        """
        iv = self.intervals[:-1]
        return bool(iv) and max(iv) - min(iv) > 1

    @property
    def rate(self) -> Fraction:
        """Frames per second as an exact fraction: frames / (end - first), e.g. 24000/1001."""
        span = (self.end_pts - self.pts[0]) * self.time_base if self.pts else 0
        if not span:
            return Fraction(25)
        r = Fraction(len(self.pts)) / span
        # 1000/1001 rates whose times were rounded to the time base: snap to the exact value
        for exact in (Fraction(24000, 1001), Fraction(30000, 1001), Fraction(60000, 1001)):
            if abs(r - exact) < Fraction(1, 1000):
                return exact
        return r.limit_denominator(1001)

    @property
    def fps(self) -> float:
        return float(self.rate)

    def times(self) -> list[Fraction]:
        """Start time of every frame in seconds, relative to the container start.

        `pts` are already relative to it: ffmpeg (without -copyts) shifts every stream's
        timestamps by the container's start time, the earliest start of any stream. (Subtracting
        `start` again made the times negative when the video is the earliest stream and does
        not start at 0, e.g. an MPEG-TS clip, and the output's video would have been placed
        that much before its audio.)"""
        return [p * self.time_base for p in self.pts]

    def end_time(self) -> Fraction:
        return self.end_pts * self.time_base

    def to_json(self) -> dict:
        return {"path": self.path, "width": self.width, "height": self.height,
                "time_base": str(self.time_base), "pts": self.pts, "end_pts": self.end_pts,
                "start": str(self.start), "codec": self.codec, "pix_fmt": self.pix_fmt,
                "audio": self.audio, "other_streams": self.other_streams, "sar": str(self.sar)}

    @classmethod
    def from_json(cls, d: dict) -> "VideoInfo":
        return cls(d["path"], d["width"], d["height"], Fraction(d["time_base"]), list(d["pts"]),
                   d["end_pts"], Fraction(d["start"]), d.get("codec", ""), d.get("pix_fmt", ""),
                   list(d.get("audio", [])), list(d.get("other_streams", [])), Fraction(d.get("sar", "1")))


_STREAM = re.compile(r"^\s*Stream #0:(\d+)(?:\[[^\]]*\])?(?:\([^)]*\))?: (\w+): (.*)$")
_START = re.compile(r"start: (-?\d+\.\d+)")
_SAR = re.compile(r"\b(\d+)x(\d+) \[SAR (\d+):(\d+) DAR")


def _sar(desc: str, shown: tuple[int, int]) -> Fraction:
    """Sample aspect ratio from ffmpeg's stream line ("270x356 [SAR 8:9 DAR ...]") for frames
    shown at `shown` (w, h): when rotation metadata turned the coded frame by 90 degrees, the
    pixels turned with it, so the ratio inverts. 1 when absent or unknown (0:1)."""
    m = _SAR.search(desc)
    if not m or int(m.group(3)) == 0 or int(m.group(4)) == 0:
        return Fraction(1)
    sar = Fraction(int(m.group(3)), int(m.group(4)))
    coded = (int(m.group(1)), int(m.group(2)))
    return 1 / sar if coded != shown and coded == shown[::-1] else sar


def probe_video(path) -> VideoInfo:
    """Decode the first video stream once and return its frames' exact times, size and streams.

    Raises InputError naming `path` when it is missing, not a video, or holds no video frame.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: video file not found")
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0",
           "-fps_mode", "passthrough", "-enc_time_base:v", "demux", "-f", "framecrc", "-"]
    proc = subprocess.run(cmd, capture_output=True)
    out = proc.stdout.decode("utf-8", "replace")
    err = proc.stderr.decode("utf-8", "replace")
    header = err.split("Stream mapping:")[0]
    streams = [m.groups() for m in map(_STREAM.match, header.splitlines()) if m]
    if proc.returncode != 0 or not any(kind == "Video" for _, kind, _ in streams):
        last = [ln for ln in err.strip().splitlines() if ln.strip()][-1:] or ["no output"]
        if not any(kind == "Video" for _, kind, _ in streams) and streams:
            raise InputError(f"{path}: has no video stream (only {', '.join(k for _, k, _ in streams)})")
        if "Input #0" in header and not streams:
            raise InputError(f"{path}: holds no video frame (a container without any stream)")
        raise InputError(f"{path}: cannot read as a video ({last[0].strip()[:200]})")
    tb = Fraction(1)
    size = (0, 0)
    rows = []
    for line in out.splitlines():
        if line.startswith("#tb 0:"):
            tb = Fraction(line.split(":", 1)[1].strip())
        elif line.startswith("#dimensions 0:"):
            w, h = line.split(":", 1)[1].strip().split("x")
            size = (int(w), int(h))
        elif line and not line.startswith("#"):
            parts = [p.strip() for p in line.split(",")]
            rows.append((int(parts[2]), int(parts[3])))
    if not rows:
        raise InputError(f"{path}: the video stream holds no frame (0 frames decoded)")
    video = next(desc for _, kind, desc in streams if kind == "Video")
    m = _START.search(header)
    pts = [p for p, _ in rows]
    if any(b <= a for a, b in zip(pts, pts[1:])):
        # no usable timestamps (raw streams, broken muxers): a constant rate is all there is
        step = max(1, round(np.median([d for _, d in rows if d > 0] or [1])))
        pts = [pts[0] + k * step for k in range(len(pts))]
        end = pts[-1] + step
    else:
        last_dur = rows[-1][1]
        if last_dur <= 0:
            last_dur = int(np.median(np.diff(pts))) if len(pts) > 1 else 1
        end = pts[-1] + last_dur
    return VideoInfo(
        path=str(path), width=size[0], height=size[1], time_base=tb, pts=pts, end_pts=end,
        start=Fraction(m.group(1)) if m else Fraction(0),
        codec=video.split(",")[0].split()[0], pix_fmt=_pix_fmt(video),
        audio=[desc.strip() for _, kind, desc in streams if kind == "Audio"],
        other_streams=[f"{kind}: {desc.split(',')[0]}" for _, kind, desc in streams
                       if kind not in ("Video", "Audio")],
        sar=_sar(video, size))


def _pix_fmt(desc: str) -> str:
    # "h264 (High) (avc1 / 0x31637661), yuv420p(progressive), 224x224 ..." -> yuv420p
    parts = re.split(r",\s*(?![^()]*\))", desc)
    return parts[1].split("(")[0].strip() if len(parts) > 1 else ""


# ----------------------------------------------------------------------------- writing
def probe(path) -> dict:
    """Summary of a video: {'fps', 'size': (w, h), 'frames', 'codec', 'pix_fmt', 'audio',
    'variable_rate'} (from `probe_video`, which also has the exact per-frame times)."""
    info = probe_video(path)
    return {"fps": info.fps, "size": (info.width, info.height), "frames": info.frames, "codec": info.codec,
            "pix_fmt": info.pix_fmt, "audio": info.audio, "variable_rate": info.variable_rate}


def chroma_for(width: int, height: int) -> str:
    """yuv420p when both sides are even (plays everywhere), else yuv444p (keeps an odd size)."""
    return "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"


def _concat_list(files, times_us: list[int], end_us: int) -> str:
    def q(p):
        return "'" + str(Path(p).resolve()).replace("'", "'\\''") + "'"

    lines = ["ffconcat version 1.0"]
    ends = times_us[1:] + [end_us]
    for f, a, b in zip(files, times_us, ends):
        d = max(b - a, 1)
        # the image demuxer's time base is 1/framerate: 1 MHz so the concat's microsecond
        # times pass through unrounded (its default 1/25 would snap every frame to 40 ms)
        lines += [f"file {q(f)}", "option framerate 1000000", f"duration {d // 1_000_000}.{d % 1_000_000:06d}"]
    # Every entry is one frame, the last one too. The durations place the frames, but the
    # packets themselves last 1 us (the image demuxer's rate), so the last frame's own duration
    # is set on the encoded packets by `_run_encode`. (Listing the last frame again, as a
    # stand-in end, would be encoded as an extra zero-length sample: n+1 packets and a wrong
    # frame rate.)
    return "\n".join(lines) + "\n"


def _ticks(us: int, timescale: int) -> int:
    """Microseconds -> 1/timescale ticks, rounded to nearest as ffmpeg rescales timestamps."""
    return (2 * us * timescale + 1_000_000) // 2_000_000


def encode_frames(path, files, times=None, end=None, fps=None, audio_from=None, audio=True,
                  timescale: int | None = None, crf: int = CRF, trim_audio: bool = False,
                  sar: Fraction = Fraction(1)) -> dict:
    """Encode PNG frame files into an H.264 video at `path`, atomically; return what was written.

    times : start time of each frame in seconds (Fractions; first frame may start after 0),
            with `end` the end of the last frame. Without `times`, a constant `fps`
            (a number or Fraction, e.g. Fraction(24000, 1001)).
    audio_from : a video file whose audio streams are copied in (all of them, unchanged);
            `audio=False` drops them. `trim_audio`: cut audio at the end of the video
            (when only part of the source's frames were kept).
    timescale : the MP4 track time scale (the source's time-base denominator keeps its
            timestamps exact).
    sar : sample aspect ratio written into the stream (an anamorphic source's, so players show
          the output as they show the input).
    Returns {"frames", "width", "height", "pix_fmt", "sar", "audio": [kept streams], "audio_note"}.
    Nothing appears at `path` unless the whole video was written.
    """
    from PIL import Image

    files = [Path(f) for f in files]
    if not files:
        raise ValueError(f"{path}: no frames to write")
    with Image.open(files[0]) as im:
        w, h = im.size
    chroma = chroma_for(w, h)
    if times is None:
        rate = Fraction(fps if fps is not None else 25).limit_denominator(1001) if not isinstance(fps, Fraction) \
            else fps
        times = [Fraction(k) / rate for k in range(len(files))]
        end = Fraction(len(files)) / rate
    times = [Fraction(t) for t in times]
    if len(times) != len(files):
        raise ValueError(f"{path}: {len(files)} frames but {len(times)} timestamps")
    end = Fraction(end) if end is not None else times[-1] + (times[-1] - times[-2] if len(times) > 1
                                                             else Fraction(1, 25))
    offset = times[0]
    us = [round((t - offset) * 1_000_000) for t in times]
    end_us = round((end - offset) * 1_000_000)
    if timescale is None or timescale > 1_000_000:
        timescale = 90000
    path = Path(path)
    streams = probe_audio(audio_from) if (audio and audio_from is not None) else []
    with tempfile.TemporaryDirectory(prefix=".encode-", dir=path.parent if path.parent.exists() else None) as td:
        lst = Path(td) / "frames.ffconcat"
        lst.write_text(_concat_list(files, us, end_us), encoding="utf-8")
        with atomic_path(path) as tmp:
            # the last frame's duration in the track's ticks, measured the way ffmpeg places
            # the frames (microsecond times shifted by the offset, then rounded to ticks)
            off_us = round(offset * 1_000_000)
            last_ticks = max(_ticks(end_us + off_us, timescale) - _ticks(us[-1] + off_us, timescale), 1)
            note = _run_encode(tmp, lst, offset, chroma, crf, timescale, audio_from if streams else None,
                               trim_audio, last_ticks, Fraction(sar))
    return {"frames": len(files), "width": w, "height": h, "pix_fmt": chroma, "sar": str(Fraction(sar)),
            "audio": streams, "audio_note": note}


def _run_encode(tmp, lst, offset, chroma, crf, timescale, audio_from, trim_audio, last_ticks,
                sar: Fraction = Fraction(1)) -> str:
    """Run ffmpeg on the concat list `lst`. `last_ticks`: the last frame's duration in
    1/`timescale` units."""
    vf = _TO_BT709.format(chroma=chroma) + f",setsar={sar.numerator}/{sar.denominator}"
    base = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    if offset:
        base += ["-itsoffset", f"{float(offset):.6f}"]
    base += ["-f", "concat", "-safe", "0", "-i", str(lst)]
    if audio_from is not None:
        base += ["-i", str(audio_from)]
    video = ["-map", "0:v:0", "-fps_mode", "passthrough", "-vf", vf,
             "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf), *_COLOUR_TAGS,
             "-enc_time_base:v", f"1/{timescale}", "-video_track_timescale", str(timescale),
             # Packets come out of the encoder lasting ~0 (the image demuxer's 1 us). The MP4
             # muxer times every sample but the last by the next one's dts; the last sample lasts
             # its packet's duration (track duration: last dts + it), and the edit list ends at
             # the largest pts + duration. Every packet gets the last frame's duration, so both
             # end one frame after the last frame's start (for a constant rate exactly the
             # input's end); pts and dts are kept as they are.
             "-bsf:v", f"setts=pts=PTS:dts=DTS:duration={last_ticks}"]
    note = ""
    for audio_codec in (["-c:a", "copy"], ["-c:a", "aac", "-b:a", "192k"]):
        cmd = base + video
        if audio_from is not None:
            cmd += ["-map", "1:a", *audio_codec] + (["-shortest"] if trim_audio else [])
        cmd += [str(tmp)]
        proc = subprocess.run(cmd, capture_output=True)
        if proc.returncode == 0:
            return note
        msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        Path(tmp).unlink(missing_ok=True)
        if audio_from is None or audio_codec[1] != "copy":
            raise RuntimeError(f"ffmpeg failed ({shlex.join(cmd)}): {' | '.join(msg[-3:])}")
        codecs = ", ".join(sorted({a.split()[0] for a in probe_audio(audio_from)}))
        note = (f"the input's audio ({codecs}) cannot be stored unchanged in a {Path(tmp).suffix.split('.')[-1]} "
                "file; it was re-encoded to AAC 192 kb/s (write an .mkv output to keep it unchanged)")
    return note


def probe_audio(path) -> list[str]:
    """Descriptions of the audio streams of a media file (empty when none or unreadable)."""
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True)
    err = proc.stderr.decode("utf-8", "replace")
    return [desc.strip() for _, kind, desc in (m.groups() for m in map(_STREAM.match, err.splitlines()) if m)
            if kind == "Audio"]


def write_video(path, frames, fps: float, crf: int = CRF) -> int:
    """Write uint8 HxWx3 RGB frames (any iterable) as H.264 at a constant rate, atomically.

    Same encoding as `encode_frames` (4:2:0, or 4:4:4 for an odd width or height, so the size
    is kept). Returns the number of frames written; nothing appears at `path` unless every frame
    was written. Raises ValueError when there is no frame or the size changes.
    """
    import imageio_ffmpeg

    it = iter(frames)
    try:
        first = next(it)
    except StopIteration:
        raise ValueError(f"{path}: no frames to write") from None
    h, w = first.shape[:2]
    chroma = chroma_for(w, h)
    n = 0
    with atomic_path(path) as tmp:
        writer = imageio_ffmpeg.write_frames(
            str(tmp), (w, h), fps=fps, codec="libx264", pix_fmt_in="rgb24", pix_fmt_out=chroma,
            quality=None, bitrate=None, macro_block_size=1, ffmpeg_log_level="error",
            output_params=["-crf", str(crf), "-preset", "veryfast", "-vf",
                           _TO_BT709.format(chroma=chroma), *_COLOUR_TAGS])
        writer.send(None)
        try:
            for f in _chain(first, it):
                if f.shape[:2] != (h, w):
                    raise ValueError(f"{path}: frame size changed from {w}x{h} to {f.shape[1]}x{f.shape[0]}")
                writer.send(np.ascontiguousarray(f[..., :3], dtype=np.uint8))
                n += 1
        finally:
            writer.close()
    return n


def _chain(first, rest):
    yield first
    yield from rest
