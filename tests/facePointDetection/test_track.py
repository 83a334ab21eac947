"""facePointDetection/track.py: detection on the face window plus tracking stays on the face that
detection on every whole frame finds (a real talking-head clip of ../shared/data/face_videos)."""
from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import CLIP, shared_path

N = 12


@pytest.fixture(scope="module")
def frames():
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(shared_path("face_videos", CLIP)))
    w, h = next(reader)["size"]
    out = [np.frombuffer(b, np.uint8).reshape(h, w, 3).copy() for _, b in zip(range(N), reader)]
    reader.close()
    return out


@pytest.fixture(scope="module")
def detector():
    from facePointDetection.detect import FivePointDetector

    return FivePointDetector()


def test_tracked_points_follow_the_detected_ones(frames, detector):
    from facePointDetection.track import LandmarkTracker

    ref = [detector.detect(f)[0]["points"] for f in frames]
    tracker = LandmarkTracker(detector, every=5)
    got = [tracker(f)[0]["points"] for f in frames]
    # one whole-frame search, then the face window every 5th frame, tracking in between
    assert tracker.counts == {"window": 2, "whole": 1, "tracked": N - 3, "none": 0}
    iod = np.array([np.linalg.norm(p[1] - p[0]) for p in ref])
    err = np.array([np.linalg.norm(g - r, axis=1).mean() for g, r in zip(got, ref)]) / iod
    # MTCNN's own frame-to-frame jitter on this clip is a few percent of the inter-ocular distance
    assert err.mean() < 0.06 and err.max() < 0.12, err.round(3)


def test_every_frame_detection_on_the_window_matches_the_whole_frame(frames, detector):
    from facePointDetection.track import LandmarkTracker

    tracker = LandmarkTracker(detector, every=1)
    for f in frames[:4]:
        got = tracker(f)[0]
        ref = detector.detect(f)[0]
        iod = np.linalg.norm(ref["points"][1] - ref["points"][0])
        assert np.linalg.norm(got["points"] - ref["points"], axis=1).max() < 0.1 * iod
    assert tracker.counts["tracked"] == 0 and tracker.counts["window"] == 3


def test_a_frame_without_a_face_is_reported_and_the_search_restarts(frames, detector):
    from facePointDetection.track import LandmarkTracker

    tracker = LandmarkTracker(detector, every=5)
    assert tracker(frames[0])
    grey = np.full_like(frames[0], 128)
    assert tracker(grey) == []  # tracking fails on a flat frame, detection finds nothing
    assert tracker(frames[2]) and tracker.counts["whole"] == 2 and tracker.counts["none"] == 1


def test_detector_built_under_a_mixed_precision_policy_stays_float32(frames, detector):
    """A process that built the deblurring network in bf16 first (run_model.py, the video
    command) still gets float32 MTCNN outputs, the same points, and its policy back."""
    import keras

    from facePointDetection.detect import FivePointDetector

    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        late = FivePointDetector()
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    finally:
        keras.config.set_dtype_policy("float32")
    got, ref = late.detect(frames[0]), detector.detect(frames[0])
    assert len(got) == len(ref) == 1
    np.testing.assert_allclose(got[0]["points"], ref[0]["points"], atol=1e-3)
