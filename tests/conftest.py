"""Shared pytest fixtures: the data sets of ../shared (skipped with a reason when absent).
Paths and helpers are in tests/helpers.py."""
from __future__ import annotations

import pytest

from tests.helpers import shared_path


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
