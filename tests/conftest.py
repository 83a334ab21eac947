"""Shared pytest fixtures: the data sets of ../shared (skipped with a reason when absent).
Paths and helpers are in tests/helpers.py."""
from __future__ import annotations

import sys

import pytest

from tests.helpers import shared_path


@pytest.fixture(autouse=True)
def _float32_policy_after_each_test():
    """A test that sets a mixed-precision Keras policy (set_precision) must not change the
    networks later tests build in this process."""
    yield
    keras = sys.modules.get("keras")
    if keras is not None and keras.config.dtype_policy().name != "float32":
        keras.config.set_dtype_policy("float32")


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
