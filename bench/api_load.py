"""API under load: 32 clients × 4 txt2img requests on the tiny model, with /health probed
throughout; prints accepted/refused counts, job throughput and /health latency percentiles.

    .venv/bin/python bench/api_load.py [--clients 32] [--requests 4] [--queue 64]

Target (issue 9): /health p95 < 250 ms while jobs run. The server is a real subprocess on
loopback with a tiny random-weight SD1.x checkpoint in a temp data dir.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import modules  # noqa: E402,F401  (offline environment first)


def _client(url: str, index: int, requests: int) -> list[int]:
    import httpx

    codes = []
    with httpx.Client(base_url=url + "sdapi/v1", timeout=120) as client:
        for k in range(requests):
            response = client.post("/txt2img", json={"prompt": "load", "steps": 2, "width": 64, "height": 64,
                                                     "seed": index * requests + k})
            codes.append(response.status_code)
    return codes


def _probe(url: str, stop: threading.Event, latencies: list[float]) -> None:
    import httpx

    with httpx.Client(base_url=url, timeout=10) as client:
        while not stop.is_set():
            started = time.perf_counter()
            client.get("/health")
            latencies.append(time.perf_counter() - started)
            time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=4)
    parser.add_argument("--queue", type=int, default=64)
    args = parser.parse_args()
    import httpx

    from tests.tiny_models import write_tiny_checkpoint
    from tests.ui.live_server import start_server

    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder)
        write_tiny_checkpoint(data / "models" / "Stable-diffusion", "sd15")
        for url in start_server(data):
            httpx.post(url + "sdapi/v1/options", json={"queue_max_pending": args.queue}, timeout=30)
            _client(url, 10_000, 1)  # warm: the model loads on the first job
            latencies: list[float] = []
            stop = threading.Event()
            probe = threading.Thread(target=_probe, args=(url, stop, latencies))
            probe.start()
            started = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                runs = list(pool.map(_client, [url] * args.clients, range(args.clients),
                                     [args.requests] * args.clients))
            took = time.perf_counter() - started
            stop.set()
            probe.join()
    codes = [code for run in runs for code in run]
    quantiles = statistics.quantiles(latencies, n=100)
    done, refused = codes.count(200), codes.count(429)
    print(f"{args.clients} clients x {args.requests} requests, queue limit {args.queue}: "
          f"{done} done, {refused} refused (429), {len(codes) - done - refused} other")
    print(f"wall {took:.1f} s, {done / took:.1f} jobs/s")
    print(f"/health while jobs ran ({len(latencies)} probes): p50 {quantiles[49] * 1000:.1f} ms, "
          f"p95 {quantiles[94] * 1000:.1f} ms (target < 250 ms), max {max(latencies) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
