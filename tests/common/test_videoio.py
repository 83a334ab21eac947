"""common/videoio.py: exact frame times (24000/1001, variable), odd sizes, audio copy and its
fallback, probing errors. The situations of ../shared/cases/ are in tests/test_cases.py."""
from __future__ import annotations

import subprocess
from fractions import Fraction

import numpy as np
import pytest

from common import videoio
from common.errors import InputError


def _clip(tmp_path, name, *args):
    path = tmp_path / name
    subprocess.run([videoio.ffmpeg_exe(), "-v", "error", "-y", *args, str(path)], check=True)
    return path


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
