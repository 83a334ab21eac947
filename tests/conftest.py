"""Shared pytest fixtures: where ../shared is, skip reasons, small helpers."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

SHARED = Path(os.environ.get("FACEDEBLUR_SHARED", ROOT.parent / "shared")).resolve()


def shared_path(*parts) -> Path:
    """Path inside ../shared/data, skipping the calling test when it is absent."""
    p = SHARED.joinpath("data", *parts)
    if not p.exists():
        pytest.skip(f"shared data not available: {p} (tests that need ../shared skip without it)")
    return p


@pytest.fixture
def vd001():
    return shared_path("vd001")


@pytest.fixture
def faces5pt():
    return shared_path("faces5pt")


@pytest.fixture
def bfm_index():
    return shared_path("bfm_index")


@pytest.fixture
def face_videos():
    return shared_path("face_videos")
