"""Shared fixtures. Real data lives in ../shared/data (beside the checkout, never committed);
tests that need it skip cleanly when it is absent. Override the location with MUSETAG_SHARED_DATA."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MUSETAG_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_path(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


@pytest.fixture
def shared_data():
    return shared_path


@pytest.fixture
def rng():
    return np.random.default_rng(0)
