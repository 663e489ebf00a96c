"""Per-step cost of script hooks: the tiny model with no scripts against three no-op scripts.

    .venv/bin/python bench/script_hooks.py [--steps 20] [--repeats 9] [--threads 2]

A tiny random-weight SD1.x checkpoint is written to a temp dir and loaded through the real
registry and ModelManager. Runs alternate between

* bare: ``run_txt2img`` with no hooks, and
* scripts: the same request through ``run_job_hooks`` with three always-on scripts that
  override ``before_step``, ``after_unet`` and ``after_step`` and return None (the worst
  case for dispatch: every hook of every script is called at every step),

and the median time per step of each is printed with the overhead in percent (target: at
most 2 % of a step). A second figure times the dispatch alone (three scripts' three hooks,
through ``HookDispatcher``) against one step of the tiny model, without the noise of whole
runs. The tiny model's steps are the shortest we have, so this is the strict version.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import modules  # noqa: E402,F401  (offline environment first)


def _no_op_scripts() -> list:
    from modules.extensions.api import AlwaysVisible, Script
    from modules.extensions.runner import ScriptCall

    class NoOp(Script):
        def show(self, is_img2img: bool) -> object:
            return AlwaysVisible

        def before_step(self, p, step, **args):
            return None

        def after_unet(self, p, step, noise_pred, **args):
            return None

        def after_step(self, p, step, latents, **args):
            return None

    return [ScriptCall(NoOp(), {}) for _ in range(3)]


def _dispatch_seconds(request, calls, iterations: int) -> float:
    """Seconds per step of the dispatch alone: 3 scripts x 3 hooks through HookDispatcher."""
    import torch

    from modules.extensions.runner import ScriptHook
    from modules.processing.prompts.conditioning import Conditioning
    from modules.processing.sampling.hooks import HookDispatcher, StepParams

    latents = torch.zeros(1, 4, 8, 8)
    step = StepParams("bench", 0, 20, 0, torch.tensor(999), 14.6, latents, Conditioning(torch.zeros(1, 77, 32)),
                      None, 7.0)
    hooks = HookDispatcher([ScriptHook(call, request) for call in calls])
    started = time.perf_counter()
    for _ in range(iterations):
        step = hooks.before_step(step)
        hooks.after_unet(step, latents)
        hooks.after_step(step, latents)
    return (time.perf_counter() - started) / iterations


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from modules.demo.evaluation import load_checkpoint_in
    from modules.extensions.runner import run_job_hooks
    from modules.processing.generation.txt2img import run_txt2img
    from modules.processing.jobs.job import Job
    from modules.processing.requests import Txt2ImgRequest
    from tests.tiny_models import write_tiny_checkpoint

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        write_tiny_checkpoint(Path(folder), "sd15")
        model = load_checkpoint_in(Path(folder))
    request = Txt2ImgRequest(prompt="a cat", seed=1, sampler_name="Euler", num_inference_steps=args.steps,
                             width=64, height=64)
    calls = _no_op_scripts()
    runs = {
        "bare": lambda: run_txt2img(model, Job(request)),
        "3 no-op scripts": lambda: run_job_hooks(calls, request, lambda r, hooks: run_txt2img(model, Job(r, hooks))),
    }
    for run in runs.values():
        run()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():  # alternating, so drift hits both alike
            started = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - started) / args.steps)
    bare, scripts = (statistics.median(times[name]) for name in runs)
    dispatch = _dispatch_seconds(request, calls, 2000)
    print(f"tiny SD1.x, 64x64, {args.steps} steps, Euler, CFG 7, {args.threads} threads, median of {args.repeats}")
    print(f"  {'':18}{'ms/step':>10}")
    print(f"  {'bare':18}{bare * 1000:10.3f}")
    print(f"  {'3 no-op scripts':18}{scripts * 1000:10.3f}")
    print(f"  whole-run overhead: {(scripts / bare - 1) * 100:+.2f} % of a step (noisy: run-to-run spread)")
    print(f"  dispatch alone: {dispatch * 1e6:.1f} us per step = {dispatch / bare * 100:.2f} % of a step"
          "  (target <= 2 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
