"""Demo model speed: one 20-step 128x128 txt2img on the CPU, as a fresh install runs it.

    .venv/bin/python bench/demo_generation.py [--threads 2] [--repeats 5] [--sampler "Euler a"]

Loads the shipped demo checkpoint through the real registry and ModelManager (the load time is
printed too), warms up once, then prints the median wall time of ``--repeats`` generations
(prompt encoding, 20 steps with CFG 7, VAE decode; nothing saved) against the 5 s target, and
the UNet steps per second.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import modules  # noqa: E402,F401  (offline environment first)

TARGET_S = 5.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--sampler", default="Euler a")
    args = parser.parse_args()

    import torch

    from modules.demo.architecture import IMAGE_SIDE
    from modules.demo.evaluation import load_checkpoint_in
    from modules.paths import DEMO_MODEL_DIR
    from modules.processing.generation.txt2img import run_txt2img
    from modules.processing.jobs.job import Job
    from modules.processing.requests import Txt2ImgRequest

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    model = load_checkpoint_in(DEMO_MODEL_DIR)  # folder scan + load, as at start-up
    load_s = time.perf_counter() - started
    request = Txt2ImgRequest(prompt="a large red circle in the center on a blue background", seed=1,
                             sampler_name=args.sampler, num_inference_steps=args.steps,
                             width=IMAGE_SIDE, height=IMAGE_SIDE)
    run_txt2img(model, Job(request))  # warm-up: first-call allocations and lazy imports
    times = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        run_txt2img(model, Job(request))
        times.append(time.perf_counter() - started)
    median = statistics.median(times)
    print(f"demo model: {model.info.name}, {args.threads} threads, {args.sampler}, {args.steps} steps, "
          f"{IMAGE_SIDE}x{IMAGE_SIDE}")
    print(f"load            {load_s:6.2f} s")
    print(f"generation      {median:6.2f} s median of {args.repeats}   target < {TARGET_S:.0f} s   "
          f"ratio {median / TARGET_S:.2f}")
    print(f"UNet throughput {args.steps / median:6.1f} steps/s (each step one batched cond+uncond call)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
