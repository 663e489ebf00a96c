"""What a per-job model patch costs: the weight-sharing clone of the UNet (time, memory).

    .venv/bin/python bench/model_patches.py [--repeats 5] [--threads 2] [--skip-sd15]

Three UNets, built from the configs the studio ships:

* tiny: the tests' tiny SD1.x UNet (random weights);
* sd15: a real-size SD1.5 UNet (860 M parameters, 3.4 GB in fp32) with random weights on the
  CPU: building it takes a while and needs about 4 GB of RAM;
* sdxl: a real-size SDXL UNet (2.6 B parameters) on the meta device (no memory for weights):
  the clone never touches weights, so its structure is what is timed.

For each, ``weight_sharing_clone`` runs ``--repeats`` times; printed are the median seconds,
the Python memory the clone allocates (tracemalloc peak), the process's resident memory
before and after (sd15), and the check that every tensor of the clone is the original's.
A job without patches makes no clone at all (``patched_unet`` yields the shared UNet).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import modules  # noqa: E402,F401  (offline environment first)

CONFIGS = Path(__file__).resolve().parents[1] / "modules" / "models" / "configs"


def _resident_mib() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _build(name: str):
    import torch
    from diffusers import UNet2DConditionModel

    if name == "tiny":
        from tests.tiny_models import build_tiny_pipeline

        return build_tiny_pipeline("sd15").unet
    config = UNet2DConditionModel.load_config(CONFIGS / name / "unet")
    if name == "sdxl":
        with torch.device("meta"):
            return UNet2DConditionModel.from_config(config)
    return UNet2DConditionModel.from_config(config)  # random initial weights, on the CPU


def _measure(name: str, repeats: int) -> None:
    from modules.models.patches import weight_sharing_clone

    started = time.perf_counter()
    unet = _build(name)
    built_s = time.perf_counter() - started
    params = sum(p.numel() for p in unet.parameters())
    originals = {id(t) for t in [*unet.parameters(), *unet.buffers()]}
    times = []
    for _ in range(repeats):
        gc.collect()
        started = time.perf_counter()
        clone = weight_sharing_clone(unet)
        times.append(time.perf_counter() - started)
        del clone
    gc.collect()
    resident_before = _resident_mib()
    tracemalloc.start()
    clone = weight_sharing_clone(unet)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    resident_after = _resident_mib()
    shared = all(id(t) in originals for t in [*clone.parameters(), *clone.buffers()])
    modules_count = sum(1 for _ in clone.modules())
    print(f"{name:5s} {params / 1e6:8.1f} M params, {modules_count} modules (built in {built_s:.1f} s): "
          f"clone median {statistics.median(times) * 1000:.1f} ms (min {min(times) * 1000:.1f}, "
          f"max {max(times) * 1000:.1f}); Python memory peak {peak / 2**20:.1f} MiB; "
          f"resident {resident_before:.0f} -> {resident_after:.0f} MiB; every tensor shared: {shared}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-sd15", action="store_true", help="leave out the 3.4 GB real-size SD1.5 UNet")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    for name in ("tiny", "sdxl", *(() if args.skip_sd15 else ("sd15",))):
        _measure(name, args.repeats)


if __name__ == "__main__":
    main()
