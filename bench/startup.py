"""Time to ready: seconds from process start to HTTP 200 on ``/`` (median of 5).

    .venv/bin/python bench/startup.py [--runs 5]

Each run starts ``webui.py`` in a fresh process on a temporary data dir that holds one tiny
checkpoint (the model loads in the background, so it should not delay the page), polls the
page every 50 ms (tests/ui/live_server.py), then stops the server.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def time_to_ready(data_dir: Path) -> float:
    """Start the server, return seconds until GET / answers 200, stop it."""
    from tests.ui.live_server import start_server

    started = time.monotonic()
    server = start_server(data_dir)
    next(server)  # returns once GET / answers 200
    elapsed = time.monotonic() - started
    server.close()  # stops the server
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from tests.tiny_models import write_tiny_checkpoint

    with tempfile.TemporaryDirectory(prefix="aigen-startup-") as tmp:
        data_dir = Path(tmp)
        write_tiny_checkpoint(data_dir / "models" / "Stable-diffusion", "sd15")
        times = [time_to_ready(data_dir) for _ in range(args.runs)]
    print("time to ready (process start -> HTTP 200 on /), seconds:", ", ".join(f"{t:.2f}" for t in times))
    print(f"median of {args.runs}: {statistics.median(times):.2f} s")


if __name__ == "__main__":
    main()
