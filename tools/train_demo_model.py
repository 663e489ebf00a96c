"""Train the demo checkpoint from scratch on procedural scenes and export it.

    .venv/bin/python tools/train_demo_model.py                      # the shipped model, ~50 min on 2 cores
    .venv/bin/python tools/train_demo_model.py --resume             # continue an interrupted run
    .venv/bin/python tools/train_demo_model.py --unet-steps 50 ...  # a quick smoke run

Resumable state lives in ``--work-dir``; the checkpoint goes to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import modules  # noqa: E402,F401  (sets the offline environment first)
from modules.paths import REPO_ROOT  # noqa: E402

DEFAULT_OUT = REPO_ROOT / "models" / "Stable-diffusion" / "demo"
DEFAULT_WORK = REPO_ROOT / "cache" / "demo-training"
STATE_FILES = ("plan.txt", "vae_state.pt", "vae_final.pt", "latents.pt", "unet_state.pt")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    from modules.demo.training import TrainingPlan

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the exported checkpoint")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK, help="folder for resumable state")
    parser.add_argument("--resume", action="store_true", help="continue from the state in --work-dir")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    for field in dataclasses.fields(TrainingPlan):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=field.default)
    return parser.parse_args(argv)


def _progress(total: int, initial: int, name: str):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=name, unit="step", dynamic_ncols=True)


def main(argv: list[str] | None = None) -> int:
    import torch

    from modules.demo.export import export_checkpoint
    from modules.demo.training import TrainingPlan, train
    from modules.models.loader import build_clip_tokenizer

    args = _parse(argv)
    torch.set_num_threads(args.threads)
    plan = TrainingPlan(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainingPlan)})
    if not args.resume:  # a fresh run: drop our own state files, never anything else there
        for name in STATE_FILES:
            (args.work_dir / name).unlink(missing_ok=True)
    started = time.perf_counter()
    model = train(plan, args.work_dir, build_clip_tokenizer(), _progress)
    path = export_checkpoint(model, args.out)
    minutes = (time.perf_counter() - started) / 60
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB) after {minutes:.1f} min of training")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
