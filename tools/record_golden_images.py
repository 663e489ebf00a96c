"""Record the golden images of ``tests/processing/golden_cases.py`` (run once, before a change to
the engine that must not change any image): ``.venv/bin/python tools/record_golden_images.py``."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.processing.golden_cases import GOLDEN_FILE, golden_cases, golden_manager, machine_fingerprint, render


def main() -> None:
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        manager = golden_manager(Path(folder))
        images = {case.key: render(manager, case) for case in golden_cases()}
    GOLDEN_FILE.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(GOLDEN_FILE, fingerprint=np.array(machine_fingerprint()), **images)
    print(f"{len(images)} golden images ({machine_fingerprint()}) -> {GOLDEN_FILE} "
          f"({GOLDEN_FILE.stat().st_size // 1024} KiB) in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
