"""common/videoio.py: exact frame times (24000/1001, variable), odd sizes, audio copy and its
fallback, probing errors. The situations of ../shared/cases/ are in tests/test_cases.py."""
from __future__ import annotations

import subprocess
from fractions import Fraction

import cv2
import numpy as np
import pytest

from common import videoio
from common.errors import InputError


def _clip(tmp_path, name, *args):
    path = tmp_path / name
    subprocess.run([videoio.ffmpeg_exe(), "-v", "error", "-y", *args, str(path)], check=True)
    return path


def _packets(path):
    """The video packets as the demuxer hands them out, in presentation order, and their time
    base: [(pts, duration)], Fraction."""
    out = subprocess.run([videoio.ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:v:0", "-c", "copy",
                          "-f", "framecrc", "-"], capture_output=True, text=True, check=True).stdout
    tb = Fraction(next(ln for ln in out.splitlines() if ln.startswith("#tb 0:")).split(":", 1)[1].strip())
    rows = [[int(x) for x in ln.split(",")[2:4]] for ln in out.splitlines() if ln and not ln.startswith("#")]
    return sorted(map(tuple, rows)), tb


def _header_fps(path):
    err = subprocess.run([videoio.ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    line = next(ln for ln in err.splitlines() if "Video:" in ln)
    return next(p.strip() for p in line.split(",") if p.strip().endswith(" fps"))


def _frames(tmp_path, src):
    d = tmp_path / (src.stem + "_frames")
    d.mkdir()
    subprocess.run([videoio.ffmpeg_exe(), "-v", "error", "-i", str(src), "-fps_mode", "passthrough",
                    str(d / "%05d.png")], check=True)
    return sorted(d.glob("*.png"))


def test_rational_rate_24000_1001_stays_exact(tmp_path):
    """1001/24000 s steps come back exactly (no 23.98 rounding, no drift over 48 frames)."""
    src = _clip(tmp_path, "ntsc.mp4", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=24000/1001", "-frames:v", "48",
                "-c:v", "libx264", "-pix_fmt", "yuv420p", "-video_track_timescale", "24000")
    s = videoio.probe_video(src)
    assert s.rate == Fraction(24000, 1001) and not s.variable_rate
    out = tmp_path / "out.mp4"
    videoio.encode_frames(out, _frames(tmp_path, src), s.times(), s.end_time(), timescale=s.time_base.denominator)
    o = videoio.probe_video(out)
    assert [p * o.time_base for p in o.pts] == [Fraction(1001 * k, 24000) for k in range(48)]
    assert o.rate == Fraction(24000, 1001) and o.end_time() == Fraction(48 * 1001, 24000)
    pk, tb = _packets(out)
    assert len(pk) == 48 and pk[-1][1] * tb == Fraction(1001, 24000) and _header_fps(out) == "23.98 fps"


def test_constant_rate_round_trip_keeps_duration_and_packet_count(tmp_path):
    """A 25 fps clip (with audio, as a user's talking-face MP4) comes back with as many packets as
    frames, the same times, and a last frame one interval long: the stream lasts as long as the
    input's and ffmpeg reports 25 fps (a stand-in end frame once made 21 packets, 26.25 fps)."""
    src = _clip(tmp_path, "cfr.mp4", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-f", "lavfi", "-i",
                "sine=duration=1", "-frames:v", "20", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
                "-video_track_timescale", "12800")
    s = videoio.probe_video(src)
    assert (s.frames, s.rate, s.end_time()) == (20, 25, Fraction(4, 5))
    out = tmp_path / "out.mp4"
    res = videoio.encode_frames(out, _frames(tmp_path, src), s.times(), s.end_time(), audio_from=src,
                                timescale=s.time_base.denominator)
    assert res["frames"] == 20 and res["audio"]
    o = videoio.probe_video(out)
    assert [p * o.time_base for p in o.pts] == [p * s.time_base for p in s.pts]
    assert o.frames == 20 and o.rate == 25 and o.end_time() == Fraction(4, 5) and not o.variable_rate
    (pk_in, tb_in), (pk, tb) = _packets(src), _packets(out)
    assert len(pk) == len(pk_in) == 20
    assert [(p * tb, d * tb) for p, d in pk] == [(p * tb_in, d * tb_in) for p, d in pk_in]
    assert (pk[-1][0] + pk[-1][1] - pk[0][0]) * tb == Fraction(4, 5)  # the stream's duration
    assert _header_fps(out) == _header_fps(src) == "25 fps"


def test_irregular_times_and_odd_size(tmp_path):
    rng = np.random.default_rng(0)
    files = []
    for k in range(6):
        p = tmp_path / f"{k:05d}.png"
        from PIL import Image

        Image.fromarray(rng.integers(0, 255, (37, 51, 3), dtype=np.uint8)).save(p)
        files.append(p)
    times = [Fraction(0), Fraction(1, 30), Fraction(1, 10), Fraction(7, 60), Fraction(1, 2), Fraction(31, 60)]
    out = tmp_path / "odd.mp4"
    res = videoio.encode_frames(out, files, times, Fraction(3, 5), timescale=600)
    assert res["pix_fmt"] == "yuv444p" and (res["width"], res["height"]) == (51, 37)
    o = videoio.probe_video(out)
    assert (o.width, o.height, o.frames) == (51, 37, 6) and o.variable_rate
    assert [p * o.time_base for p in o.pts] == times
    # one packet per frame (no stand-in end frame). With B-frames an MP4 sample's duration is
    # a decode-order difference, so the last frame's own duration is not checked here.
    pk, tb = _packets(out)
    assert [p * tb for p, _ in pk] == times


def test_frame_times_are_relative_to_the_container_start(tmp_path):
    # Video alone, starting 1/3 s into its own timeline (the container starts with it): its
    # frames start at 0 (they came out at -1/3 s when the start was subtracted twice).
    files = _frames(tmp_path, _clip(tmp_path, "src.mp4", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25",
                                    "-frames:v", "6", "-c:v", "libx264"))
    times = [Fraction(1, 3) + Fraction(k, 25) for k in range(6)]
    videoio.encode_frames(tmp_path / "late.mp4", files, times, times[-1] + Fraction(1, 25))
    o = videoio.probe_video(tmp_path / "late.mp4")
    assert abs(float(o.start) - 1 / 3) < 1e-6  # the container starts with the video
    assert o.times() == [t - Fraction(1, 3) for t in times] and o.end_time() == Fraction(6, 25)
    # Video 1/3 s after the audio (the container starts with the audio): the offset stays.
    av = _clip(tmp_path, "av.mkv", "-f", "lavfi", "-i", "sine=duration=1", "-itsoffset", "0.333333",
               "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-map", "0:a", "-map", "1:v", "-frames:v", "6",
               "-c:v", "libx264", "-c:a", "aac")
    t0 = videoio.probe_video(av).times()[0]
    assert abs(float(t0) - 1 / 3) <= 1 / 25, float(t0)  # lavfi's 1/25 s time base rounds the offset


def test_audio_is_copied_or_reencoded_with_a_note(tmp_path):
    src = _clip(tmp_path, "a.mkv", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-f", "lavfi", "-i",
                "sine=duration=1", "-frames:v", "10", "-c:v", "libx264", "-c:a", "aac")
    s = videoio.probe_video(src)
    files = _frames(tmp_path, src)
    res = videoio.encode_frames(tmp_path / "o.mp4", files, s.times(), s.end_time(), audio_from=src)
    assert res["audio"] and res["audio_note"] == ""
    assert videoio.probe_audio(tmp_path / "o.mp4")[0].startswith("aac")
    # a codec MP4 cannot hold: re-encoded to AAC, and said
    odd = _clip(tmp_path, "b.mkv", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-f", "lavfi", "-i",
                "sine=duration=1", "-frames:v", "10", "-c:v", "libx264", "-c:a", "adpcm_ms")
    res = videoio.encode_frames(tmp_path / "p.mp4", files, s.times(), s.end_time(), audio_from=odd)
    assert "adpcm_ms" in res["audio_note"] and "re-encoded to AAC" in res["audio_note"]
    assert videoio.probe_audio(tmp_path / "p.mp4")[0].startswith("aac")
    res = videoio.encode_frames(tmp_path / "q.mp4", files, fps=25, audio_from=src, audio=False)
    assert res["audio"] == [] and videoio.probe_audio(tmp_path / "q.mp4") == []


def test_probe_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="video file not found"):
        videoio.probe_video(tmp_path / "none.mp4")
    (tmp_path / "x.mp4").write_bytes(b"no video here" * 20)
    with pytest.raises(InputError, match=r"x\.mp4: cannot read as a video"):
        videoio.probe_video(tmp_path / "x.mp4")
    audio = _clip(tmp_path, "s.m4a", "-f", "lavfi", "-i", "sine=duration=0.3", "-c:a", "aac")
    with pytest.raises(InputError, match="has no video stream"):
        videoio.probe_video(audio)


def test_sample_aspect_ratio_is_read_and_kept(tmp_path):
    """Anamorphic video (non-square pixels): probed, written back, and inverted when rotation
    metadata turns the frame (the pixels turn with it)."""
    src = _clip(tmp_path, "sar.mp4", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-frames:v", "4",
                "-vf", "setsar=4/3", "-c:v", "libx264", "-pix_fmt", "yuv420p")
    info = videoio.probe_video(src)
    assert (info.width, info.height, info.sar) == (64, 48, Fraction(4, 3))
    assert videoio.VideoInfo.from_json(info.to_json()).sar == Fraction(4, 3)
    rot = _clip(tmp_path, "rot.mp4", "-display_rotation:v:0", "90", "-i", str(src), "-c", "copy")
    r = videoio.probe_video(rot)
    assert (r.width, r.height, r.sar) == (48, 64, Fraction(3, 4))
    frames = _frames(tmp_path, src)
    out = tmp_path / "out.mp4"
    enc = videoio.encode_frames(out, frames, fps=10, sar=info.sar)
    assert enc["sar"] == "4/3" and videoio.probe_video(out).sar == Fraction(4, 3)
    plain = tmp_path / "plain.mp4"
    videoio.encode_frames(plain, frames, fps=10)  # square pixels unless asked
    assert videoio.probe_video(plain).sar == 1


def _stream_line(path) -> str:
    run = subprocess.run([videoio.ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    return next(ln for ln in run.stderr.splitlines() if "Video:" in ln)


def test_written_videos_are_tagged_bt709_matrix_primaries_and_transfer(tmp_path):
    """Both writers tag what they encode: BT.709 matrix, primaries and transfer, limited range
    (ffmpeg prints `(tv, bt709, ...)` only when all three are set; an untagged primaries or
    transfer reads `bt709/unknown/unknown`)."""
    frames = [np.full((48, 64, 3), 40 * i, np.uint8) for i in range(4)]
    videoio.write_video(tmp_path / "a.mp4", frames, 10)
    files = []
    for i, f in enumerate(frames):
        files.append(tmp_path / f"{i:05d}.png")
        cv2.imwrite(str(files[-1]), f)
    videoio.encode_frames(tmp_path / "b.mp4", files, fps=10)
    for name in ("a.mp4", "b.mp4"):
        line = _stream_line(tmp_path / name)
        assert "(tv, bt709," in line and "unknown" not in line, line
