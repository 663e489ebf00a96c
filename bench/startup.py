"""Time to ready: seconds from process start to HTTP 200 on ``/`` (median of 5).

    .venv/bin/python bench/startup.py [--runs 5] [--port 7890]

Each run starts ``webui.py`` in a fresh process on a temporary data dir that holds one tiny
checkpoint (the model loads in the background, so it should not delay the page), polls the
page every 50 ms, then stops the server.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def time_to_ready(data_dir: Path, port: int, limit_s: float = 120.0) -> float:
    """Start the server, return seconds until GET / answers 200, stop it."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "webui.py"), "--port", str(port), "--data-dir", str(data_dir)],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ},
    )
    try:
        while time.monotonic() - started < limit_s:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
                    if response.status == 200:
                        return time.monotonic() - started
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if process.poll() is not None:
                raise RuntimeError(f"server exited with code {process.returncode}")
            time.sleep(0.05)
        raise TimeoutError(f"not ready after {limit_s} s")
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--port", type=int, default=7890)
    args = parser.parse_args()
    from tests.tiny_models import write_tiny_checkpoint

    with tempfile.TemporaryDirectory(prefix="aigen-startup-") as tmp:
        data_dir = Path(tmp)
        write_tiny_checkpoint(data_dir / "models" / "Stable-diffusion", "sd15")
        times = [time_to_ready(data_dir, args.port + i) for i in range(args.runs)]
    print("time to ready (process start -> HTTP 200 on /), seconds:", ", ".join(f"{t:.2f}" for t in times))
    print(f"median of {args.runs}: {statistics.median(times):.2f} s")


if __name__ == "__main__":
    main()
