"""No change for today's users: every tiny SD family, every sampler, txt2img / Hires. fix /
img2img / inpaint gives the images recorded before the engine's redesign (issue 21).

Bit-identical on the kind of machine they were recorded on (same torch build, same CPU
kernels). On another kind, float rounding differs in the last bits, so there they must agree to
within rounding noise instead: a real change to the engine moves pixels by tens of levels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modules.models.manager import ModelManager
from tests.processing.golden_cases import GOLDEN_FILE, golden_cases, golden_manager, machine_fingerprint, render
from tests.tiny_models import FAMILIES

FOREIGN_MACHINE_MAX_LEVELS = 8
FOREIGN_MACHINE_MEAN_LEVELS = 0.25


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN_FILE) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def manager(tmp_path_factory: pytest.TempPathFactory) -> ModelManager:
    return golden_manager(Path(tmp_path_factory.mktemp("golden")))


@pytest.mark.parametrize("family", FAMILIES)
def test_every_sampler_and_mode_gives_the_recorded_image(family: str, golden: dict[str, np.ndarray],
                                                         manager: ModelManager) -> None:
    exact = str(golden["fingerprint"]) == machine_fingerprint()
    cases = [case for case in golden_cases() if case.family == family]
    assert len(cases) >= 16 * 4 and all(case.key in golden for case in cases)
    changed = []
    for case in cases:
        expected, image = golden[case.key], render(manager, case)
        assert image.shape == expected.shape, case.key
        diff = np.abs(image.astype(np.int16) - expected.astype(np.int16))
        same = not diff.any() if exact else (diff.max() <= FOREIGN_MACHINE_MAX_LEVELS
                                             and diff.mean() <= FOREIGN_MACHINE_MEAN_LEVELS)
        if not same:
            changed.append(f"{case.key}: max {diff.max()} levels, {np.count_nonzero(diff.any(-1))} pixels")
    assert not changed, ("bit-identical expected" if exact else "near-identical expected") + ":\n" + "\n".join(changed)
