"""Five landmarks through a clip held in no more than one frame at a time: detect, then track.

Not in the original (which runs its detector on every full frame). MTCNN on a full 720p frame
costs most of a landmark pass (163 of 702 s of the video command on a 10-s 720p clip, see
docs/benchmarks.md), so the video command runs it
  * on a window around the face it tracks (`ROI` x the last face box), scaled so the face
    is about `face_side` pixels (MTCNN's networks see faces of 12-48 px; a 400-px face adds
    pyramid levels, not accuracy). `min_face_size` stays 20: mtcnn 1.0 sizes its pyramid
    from the image alone, so a larger minimum sends images under 12 px to its first network,
    which fails;
  * on the whole frame scaled to `search_side` pixels (longer side) only while no face is
    known (the first frame, after a loss);
  * every `every` frames; in between, the five points follow pyramidal Lucas-Kanade optical
    flow (OpenCV) from the previous frame. A point whose forward-backward error exceeds
    `max_fb` x the inter-ocular distance, or that is lost, ends the track: that frame is
    detected again.
Coordinates are full-frame pixels as in detect.py. `every=1` detects every frame (still on
the face window). Limitation: a face hidden by a textured scene between two detections can be
followed for up to `every - 1` frames before the next detection notices (a flat frame fails the
forward-backward check at once: Lucas-Kanade refuses untextured patches).
"""
from __future__ import annotations

import cv2
import numpy as np

ROI = 2.5          # side of the search window around the last face box, in box sides
FACE_SIDE = 80     # face box side (px) the detector sees
SEARCH_SIDE = 640  # longer side (px) of a whole frame searched for a face
EVERY = 5          # frames between detections while tracking
MAX_FB = 0.05      # largest forward-backward error of a tracked point, inter-ocular distances


class LandmarkTracker:
    """Feed frames in order (`__call__(frame)`); each call returns that frame's detections:
    a list of dict(box, confidence, points) as `FivePointDetector.detect` (empty when there
    is none), from MTCNN or tracked. `counts` says how many frames were detected on the face
    window, on the whole frame, tracked, or had no face.
    """

    def __init__(self, detector, every: int = EVERY, face_side: int = FACE_SIDE,
                 search_side: int = SEARCH_SIDE, max_fb: float = MAX_FB):
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        self.det, self.every, self.face_side = detector, every, face_side
        self.search_side, self.max_fb = search_side, max_fb
        self.last = None        # dict(box, points, confidence) of the previous frame's face
        self.last_gray = None
        self.since = 0          # frames since the last detection
        self.counts = {"window": 0, "whole": 0, "tracked": 0, "none": 0}

    def __call__(self, frame: np.ndarray) -> list[dict]:
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        found = None
        if self.last is not None and self.since < self.every:
            found = self._track(gray)
            if found is not None:
                self.counts["tracked"] += 1
                self.since += 1
        if found is None:
            dets = self._detect(frame)
            found = dets[0] if dets else None
            self.since = 1
        else:
            dets = [found]
        if found is None:
            self.counts["none"] += 1
        self.last, self.last_gray = found, gray
        return dets

    def _detect(self, frame: np.ndarray) -> list[dict]:
        h, w = frame.shape[:2]
        if self.last is not None:
            box = self.last["box"]
            side = max(box[2] - box[0], box[3] - box[1], 1.0)
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            half = ROI * side / 2
            x0, y0 = int(max(0, cx - half)), int(max(0, cy - half))
            x1, y1 = int(min(w, cx + half)), int(min(h, cy + half))
            scale = min(1.0, self.face_side / side)
            dets = self._run(frame[y0:y1, x0:x1], scale, (x0, y0))
            # the face nearest the one followed (another person may enter the window)
            if dets:
                self.counts["window"] += 1
                c = np.array([cx, cy])
                dets.sort(key=lambda d: np.hypot(*((d["box"][:2] + d["box"][2:]) / 2 - c)))
                return dets
        scale = min(1.0, self.search_side / max(h, w))
        dets = self._run(frame, scale, (0, 0))
        if dets:
            self.counts["whole"] += 1
        return dets

    def _run(self, img, scale, offset) -> list[dict]:
        if min(img.shape[:2]) * min(scale, 1.0) < 24:  # smaller than MTCNN's smallest face
            return []
        sx = sy = 1.0
        if scale < 1.0:
            size = (max(12, round(img.shape[1] * scale)), max(12, round(img.shape[0] * scale)))
            sx, sy = size[0] / img.shape[1], size[1] / img.shape[0]
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        dets = self.det.detect(np.ascontiguousarray(img))
        ox, oy = offset
        s2, o2 = np.array([sx, sy]), np.array([ox, oy], float)
        out = []
        for d in dets:
            # back to full-frame pixels (pixel centres at integers: x -> (x + 0.5) / s - 0.5)
            pts = (d["points"] + 0.5) / s2 - 0.5 + o2
            box = (d["box"] + 0.5) / np.tile(s2, 2) - 0.5 + np.tile(o2, 2)
            out.append(dict(box=box, confidence=d["confidence"], points=pts))
        return out

    def _track(self, gray: np.ndarray):
        prev = self.last["points"].astype(np.float32).reshape(-1, 1, 2)
        lk = dict(winSize=(21, 21), maxLevel=3,
                  criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03))
        nxt, st, _ = cv2.calcOpticalFlowPyrLK(self.last_gray, gray, prev, None, **lk)
        if nxt is None or not st.all():
            return None
        back, st2, _ = cv2.calcOpticalFlowPyrLK(gray, self.last_gray, nxt, None, **lk)
        if back is None or not st2.all():
            return None
        iod = max(float(np.linalg.norm(prev[1, 0] - prev[0, 0])), 1.0)
        if np.linalg.norm(back - prev, axis=2).max() > self.max_fb * iod:
            return None
        pts = nxt.reshape(-1, 2).astype(np.float64)
        move = np.median(pts - prev.reshape(-1, 2), axis=0)
        box = self.last["box"] + np.concatenate([move, move])
        return dict(box=box, confidence=self.last["confidence"], points=pts)
