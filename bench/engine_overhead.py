"""Engine overhead: our txt2img loop against a bare diffusers loop on the same components.

    .venv/bin/python bench/engine_overhead.py [--device cpu|cuda] [--steps 20] [--repeats 7]

Part 1 (always): a tiny random-weight SD1.x checkpoint is written to a temp dir and loaded
through the real registry and ModelManager. Then, with the same components, seed and sampler
("Euler"), runs alternate between

* ours: ``modules.processing.generation.txt2img.run_txt2img`` (output=None: nothing is saved), and
* bare: encode the prompts once, a fresh ``EulerDiscreteScheduler`` from
  ``modules.processing.sampling.samplers.build_scheduler``, a loop of batched-CFG UNet calls and
  ``scheduler.step``, then the same VAE decode,

and the medians are printed side by side with the ratio ours/bare (target >= 0.97). "loop
only" times the denoising steps alone (from the end of step 1 to the end of the last step, the
same points in both loops), which leaves out prompt encoding, noise and decoding. A tiny model
makes every per-step cost of the engine visible, so this is the strict version of the ratio.

Part 2 (only when CUDA is available, unless --skip-full): full-size SD1.5 (512x512) and SDXL
(1024x1024) with random weights in fp16, built from the shipped configs, exported as LDM
single files and loaded through our loader; ``run_txt2img`` against diffusers'
``StableDiffusionPipeline`` / ``StableDiffusionXLPipeline.__call__`` on the same components,
same sampler and steps.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import modules.offline  # noqa: E402,F401 - before diffusers/transformers
from modules.models.hashing import HashCache  # noqa: E402
from modules.models.loader import LoadedModel  # noqa: E402
from modules.models.manager import ModelManager, Placement  # noqa: E402
from modules.models.registry import CheckpointRegistry  # noqa: E402
from modules.paths import CONFIGS_DIR  # noqa: E402
from modules.processing.generation.txt2img import run_txt2img  # noqa: E402
from modules.processing.generation.vae import decode_latents, to_pil_images  # noqa: E402
from modules.processing.jobs.job import Job  # noqa: E402
from modules.processing.requests import Txt2ImgRequest  # noqa: E402
from modules.processing.sampling.samplers import build_scheduler, resolve_sampler  # noqa: E402

PROMPT = "a lighthouse on a cliff at dusk, oil painting"
NEGATIVE = "blurry, low quality"  # non-empty, so SDXL's pipeline encodes it as we do
SAMPLER = "Euler"
GUIDANCE = 7.0
SEED = 1234


@dataclass
class Timings:
    """Wall times of the runs of one contender."""

    total_s: list[float] = field(default_factory=list)
    loop_s: list[float] = field(default_factory=list)

    def rate(self, steps: int) -> float:
        """Median steps per second, whole run."""
        return steps / statistics.median(self.total_s)

    def loop_rate(self, steps: int) -> float:
        """Median steps per second over steps 2..N (NaN without per-step times)."""
        return (steps - 1) / statistics.median(self.loop_s) if self.loop_s else float("nan")


class StepClock:
    """Timestamps at the end of each sampling step (synchronising CUDA so they are real).

    With ``per_step=False`` only the whole run is timed, so nothing syncs inside the loop.
    """

    def __init__(self, device: torch.device, per_step: bool = True) -> None:
        self.device = device
        self.per_step = per_step
        self.stamps: list[float] = []

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def step_done(self, *_: Any) -> None:
        if self.per_step:
            self.stamps.append(self.now())

    def loop_seconds(self) -> float:
        return self.stamps[-1] - self.stamps[0]


def _request(steps: int, size: int) -> Txt2ImgRequest:
    return Txt2ImgRequest(prompt=PROMPT, negative_prompt=NEGATIVE, sampler_name=SAMPLER, num_inference_steps=steps,
                          guidance_scale=GUIDANCE, seed=SEED, width=size, height=size)


def run_ours(model: LoadedModel, request: Txt2ImgRequest, clock: StepClock) -> np.ndarray:
    """Our engine, end to end, nothing saved; returns the image as (H, W, 3) uint8."""
    result = run_txt2img(model, Job(request, on_progress=clock.step_done), None)
    return np.asarray(result.images[0])


def _encode(pipeline: Any, text: str, device: torch.device) -> torch.Tensor:
    """SD1.x prompt encoding as diffusers does it: the text encoder's last_hidden_state."""
    tokenizer = pipeline.tokenizer
    ids = tokenizer([text], padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids.to(device)
    return pipeline.text_encoder(ids)[0]


@torch.inference_mode()
def run_bare(model: LoadedModel, request: Txt2ImgRequest, clock: StepClock) -> np.ndarray:
    """The same work as a bare loop over the same UNet, scheduler class and VAE (SD1.x only)."""
    pipeline, device, dtype = model.pipeline, model.device, model.dtype
    embeds = torch.cat([_encode(pipeline, request.negative_prompt, device), _encode(pipeline, request.prompt, device)])
    spec, schedule = resolve_sampler(request.sampler_name, request.scheduler)
    scheduler = build_scheduler(spec, schedule, model.scheduler_config, [request.seed])
    scheduler.set_timesteps(request.num_inference_steps, device=device)
    generator = torch.Generator("cpu").manual_seed(request.seed)
    shape = (1, 4, request.height // model.vae_scale_factor, request.width // model.vae_scale_factor)
    latents = torch.randn(shape, generator=generator).to(device, dtype) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(latents, t)
        noise = pipeline.unet(torch.cat([model_input] * 2), t, encoder_hidden_states=embeds, return_dict=False)[0]
        uncond, cond = noise.chunk(2)
        noise = uncond + request.guidance_scale * (cond - uncond)
        latents = scheduler.step(noise, t, latents, generator=[generator], return_dict=False)[0]
        clock.step_done()
    return np.asarray(to_pil_images(decode_latents(pipeline.vae, latents))[0])


Contender = Callable[[StepClock], np.ndarray]


def race(contenders: dict[str, Contender], device: torch.device, warmup: int, repeats: int, per_step: bool = True,
         ) -> tuple[dict[str, Timings], dict[str, np.ndarray]]:
    """Alternate the contenders (order flipped every round); warm-up rounds are not kept."""
    timings = {name: Timings() for name in contenders}
    images: dict[str, np.ndarray] = {}
    names = list(contenders)
    for round_index in range(warmup + repeats):
        for name in names if round_index % 2 == 0 else names[::-1]:
            clock = StepClock(device, per_step)
            started = clock.now()
            images[name] = contenders[name](clock)
            finished = clock.now()
            if round_index >= warmup:
                timings[name].total_s.append(finished - started)
                if len(clock.stamps) >= 2:
                    timings[name].loop_s.append(clock.loop_seconds())
    return timings, images


def _print_table(title: str, timings: dict[str, Timings], steps: int) -> None:
    (ours_name, ours), (ref_name, ref) = timings.items()
    print(f"\n{title}")
    print(f"  {'':12}{ours_name + ' it/s':>14}{ref_name + ' it/s':>18}{'ratio ours/' + ref_name:>22}")
    ratio = ours.rate(steps) / ref.rate(steps)
    print(f"  {'whole run':12}{ours.rate(steps):14.2f}{ref.rate(steps):18.2f}{ratio:22.3f}")
    # Runs of one round sit next to each other in time, so their ratio shrugs off load drift.
    paired = statistics.median(r / o for o, r in zip(ours.total_s, ref.total_s, strict=True))
    print(f"  {'paired':12}{'':32}{paired:22.3f}   (median of per-round ratios, whole run)")
    if ours.loop_s and ref.loop_s:
        ratio = ours.loop_rate(steps) / ref.loop_rate(steps)
        print(f"  {'loop only':12}{ours.loop_rate(steps):14.2f}{ref.loop_rate(steps):18.2f}{ratio:22.3f}")
    for name, t in timings.items():
        runs = ", ".join(f"{s * 1000:.0f}" for s in t.total_s)
        print(f"  {name} run times (ms): {runs}")


def _load(folder: Path, name: str, placement: Placement) -> LoadedModel:
    registry = CheckpointRegistry([folder], HashCache(folder / "hashes.json"))
    return ModelManager(registry, placement).get(name)


def bench_tiny(args: argparse.Namespace) -> None:
    """Part 1: tiny SD1.x, ours against the bare loop."""
    from tests.tiny_models import write_tiny_checkpoint

    device = torch.device(args.device)
    placement = Placement(device, torch.float32 if device.type == "cpu" else torch.float16)
    with tempfile.TemporaryDirectory(prefix="aigen-bench-") as scratch:
        write_tiny_checkpoint(Path(scratch), "sd15")
        model = _load(Path(scratch), "tiny-sd15", placement)
        request = _request(args.steps, 64)
        timings, images = race({
            "ours": lambda clock: run_ours(model, request, clock),
            "bare": lambda clock: run_bare(model, request, clock),
        }, device, args.warmup, args.repeats)
    dtype = str(placement.dtype).removeprefix("torch.")
    _print_table(f"tiny SD1.x, 64x64, {args.steps} steps, {SAMPLER}, CFG {GUIDANCE}, {device} {dtype}, "
                 f"median of {args.repeats} runs (target ratio >= 0.97)", timings, args.steps)
    diff = np.abs(images["ours"].astype(int) - images["bare"].astype(int)).max()
    verdict = "yes" if diff == 0 else f"NO, max pixel difference {diff}/255: the engine's maths differ from the loop's"
    print(f"  same image from both loops: {verdict}")


# Part 2: full-size random-weight models on a GPU.


def _random_components(family: str, device: torch.device) -> dict[str, Any]:
    """UNet, VAE and text encoder(s) from the shipped configs, random normal weights, fp16."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    folder = CONFIGS_DIR / family
    torch.manual_seed(0)
    with torch.device(device):
        components: dict[str, Any] = {
            "unet": UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet")),
            "vae": AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae")),
            "text_encoder": CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder")),
        }
        if (folder / "text_encoder_2").is_dir():
            config_2 = CLIPTextConfig.from_pretrained(folder / "text_encoder_2")
            components["text_encoder_2"] = CLIPTextModelWithProjection(config_2)
    with torch.no_grad():
        for module in components.values():
            for param in module.parameters():
                torch.nn.init.normal_(param, mean=0.0, std=0.02)
            module.to(torch.float16).eval()
    return components


def _export_random_checkpoint(family: str, folder: Path, device: torch.device) -> str:
    """Write a random-weight fp16 LDM checkpoint of ``family``; returns its registry name."""
    from modules.models.ldm_export import save_ldm_checkpoint

    components = _random_components(family, device)
    save_ldm_checkpoint(SimpleNamespace(**components), folder / f"random-{family}.safetensors", dtype=torch.float16)
    del components
    torch.cuda.empty_cache()
    return f"random-{family}"


def _diffusers_pipeline(model: LoadedModel, request: Txt2ImgRequest) -> Any:
    """A plain diffusers pipeline over the loaded components with the same sampler."""
    spec, schedule = resolve_sampler(request.sampler_name, request.scheduler)
    components = dict(model.pipeline.components)
    components["scheduler"] = build_scheduler(spec, schedule, model.scheduler_config, [request.seed])
    extra = {"add_watermarker": False} if model.family.is_xl else {"requires_safety_checker": False}
    pipeline = type(model.pipeline)(**components, **extra)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def run_diffusers(pipeline: Any, request: Txt2ImgRequest) -> np.ndarray:
    """``pipeline.__call__`` with the request's values and an A1111-style CPU generator."""
    image = pipeline(
        prompt=request.prompt, negative_prompt=request.negative_prompt,
        num_inference_steps=request.num_inference_steps, guidance_scale=request.guidance_scale,
        width=request.width, height=request.height,
        generator=[torch.Generator("cpu").manual_seed(request.seed)], output_type="pil",
    ).images[0]
    return np.asarray(image)


def bench_full_size(args: argparse.Namespace) -> None:
    """Part 2: full-size SD1.5 and SDXL in fp16 on CUDA, ours against diffusers' __call__."""
    device = torch.device(args.device if args.device.startswith("cuda") else "cuda")
    placement = Placement(device, torch.float16)
    for family, size in (("sd15", 512), ("sdxl", 1024)):
        with tempfile.TemporaryDirectory(prefix="aigen-bench-full-") as scratch:
            name = _export_random_checkpoint(family, Path(scratch), device)
            model = _load(Path(scratch), name, placement)
        request = _request(args.steps, size)
        pipeline = _diffusers_pipeline(model, request)
        timings, _ = race({
            "ours": lambda clock, m=model, r=request: run_ours(m, r, clock),
            "diffusers": lambda clock, p=pipeline, r=request: run_diffusers(p, r),
        }, device, args.warmup, args.full_repeats, per_step=False)  # no per-step syncs in either
        _print_table(f"full-size {family} random weights, {size}x{size}, {args.steps} steps, {SAMPLER}, "
                     f"{torch.cuda.get_device_name(device)} fp16, median of {args.full_repeats} runs",
                     timings, args.steps)
        del model, pipeline
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per contender, tiny model")
    parser.add_argument("--full-repeats", type=int, default=3, help="timed runs per contender, full-size models")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--skip-full", action="store_true", help="skip the full-size GPU part")
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be at least 2")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {args.device}")
    bench_tiny(args)
    if torch.cuda.is_available() and not args.skip_full:
        bench_full_size(args)
    elif not args.skip_full:
        print("\nfull-size SD1.5/SDXL part skipped: CUDA is not available")
    return 0


if __name__ == "__main__":
    sys.exit(main())
