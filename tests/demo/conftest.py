"""The shipped demo model, loaded once for every test module of this folder that uses it."""

from __future__ import annotations

import pytest

from modules.demo.evaluation import load_checkpoint_in
from modules.models.loader import LoadedModel
from modules.paths import DEMO_MODEL_DIR
from tests.conftest import CPU_FP32


@pytest.fixture(scope="session")
def demo_model() -> LoadedModel:
    return load_checkpoint_in(DEMO_MODEL_DIR, CPU_FP32)
