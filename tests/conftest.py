"""Shared fixtures. Real data lives in ../shared/data (beside the checkout, never committed);
tests that need it skip cleanly when it is absent. Override the location with MUSETAG_SHARED_DATA."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MUSETAG_SHARED_DATA", REPO.parent / "shared" / "data"))
SHARED_MODELS = SHARED_DATA.parent / "models"


@pytest.fixture(scope="session", autouse=True)
def _private_model_cache(tmp_path_factory):
    """Pretrained pulls go to a cache of this session (never the user's ~/.cache/musetag), from the
    offline mirror ../shared/models when it is there (nothing is downloaded in tests)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MUSETAG_HOME", str(tmp_path_factory.mktemp("musetag-home")))
    if SHARED_MODELS.is_dir():
        mp.setenv("MUSETAG_MODEL_MIRROR", str(SHARED_MODELS))
    else:
        mp.delenv("MUSETAG_MODEL_MIRROR", raising=False)
    yield
    mp.undo()


def pretrained_package(name: str):
    """The converted package of a pretrained model, pulled from the mirror; skip when it is absent."""
    if not SHARED_MODELS.is_dir():
        pytest.skip(f"pretrained weights mirror not available: {SHARED_MODELS}")
    from musetag.inference.hub import pull

    return pull(name, progress=False)


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


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: one intra-op thread is fastest and immune to a busy machine. Modules that want it
    use ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    """A small backbone package for the labelling tests (64-frame windows), one per test module."""
    from test_package import make_package

    return make_package(tmp_path_factory.mktemp("backbone") / "pkg", frames=64, hop=64)
