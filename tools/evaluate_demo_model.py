"""Score a demo checkpoint on held-out prompts, as the quality-gate tests do, and print the table
for its model card.

    .venv/bin/python tools/evaluate_demo_model.py [--dir models/Stable-diffusion/demo] [--prompts 50]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import modules  # noqa: E402,F401  (offline environment first)
from modules.paths import DEMO_MODEL_DIR  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=DEMO_MODEL_DIR, help="folder holding the checkpoint")
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cfg", type=float, nargs="+", default=[7.0, 1.0])
    parser.add_argument("--show", type=int, default=0, help="print what the scorer read for this many samples")
    args = parser.parse_args()

    import torch

    from modules.demo.evaluation import ATTRIBUTES, evaluate, evaluation_subset, load_checkpoint_in

    torch.set_num_threads(2)
    model = load_checkpoint_in(args.dir)
    scenes = evaluation_subset(args.prompts)
    print(f"{model.info.name}: {len(scenes)} held-out prompts x {len(args.seeds)} seeds, Euler a, 20 steps")
    print("| CFG | " + " | ".join(ATTRIBUTES) + " | seconds |")
    print("|---|" + "---|" * (len(ATTRIBUTES) + 1))
    for cfg in args.cfg:
        started = time.perf_counter()
        report = evaluate(model, scenes, args.seeds, cfg_scale=cfg)
        cells = " | ".join(f"{report.score(a):.0%}" for a in ATTRIBUTES)
        print(f"| {cfg:g} | {cells} | {time.perf_counter() - started:.0f} |", flush=True)
        for prompt, seed, reading in report.readings[:args.show]:
            print(f"    {prompt!r} seed {seed}: {reading}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
