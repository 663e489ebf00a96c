"""Train the demo model on procedural scenes: the VAE first, then text encoder + UNet.

Reproducible from one seed: every batch is drawn from generators seeded by (seed, phase,
step), so a run resumed from a saved state draws exactly the batches an uninterrupted run
would. State is saved to ``work_dir`` every ``save_every`` steps and at each phase's end.

Phase 1, VAE: L1 reconstruction (shape pixels weighted 4x) plus a small KL term (weight
1e-6, as in the LDM first-stage configs, Rombach et al. 2022). Most steps see many 32x32
crops, which is where colour fidelity is learned fastest per CPU second; the last
``vae_full_steps`` see whole 128x128 scenes so GroupNorm statistics match those at inference.
Its latent ``scaling_factor`` is set to 1/std of the training latents, as SD's 0.18215 was.

Phase 2, diffusion: epsilon prediction on the scaled-linear schedule, text encoder and UNet
trained together, 10 % of captions dropped to "" so classifier-free guidance works (Ho &
Salimans 2022). The loss weight of a timestep, in x0 terms, is its SNR clamped to
[``snr_floor``, ``min_snr_gamma``]: the upper clamp is Min-SNR-5 (Hang et al. 2023, "Efficient
Diffusion Training via Min-SNR Weighting Strategy"). The floor is ours: plain epsilon loss
weighs an x0 error by the SNR, 0.005 at t = 999, so the high-noise steps where the
background and layout are decided, from the prompt alone, hardly train; the floor gives them
a fixed share. Training noise carries an offset (multi-resolution noise is an option; see
:func:`training_noise`), and an exponential moving average of the weights is what gets exported.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from modules.demo.architecture import IMAGE_SIDE, build_text_encoder, build_unet, build_vae, scheduler_config
from modules.demo.scenes import caption, render, sample_scene

__all__ = ["TrainingPlan", "TrainedModel", "train"]

logger = logging.getLogger(__name__)
ProgressFactory = Callable[[int, int, str], object]


@dataclass(frozen=True)
class TrainingPlan:
    """Every knob of a training run; the defaults are the shipped model's."""

    seed: int = 0
    vae_steps: int = 3200
    vae_batch: int = 16
    vae_crop: int = 32
    vae_full_steps: int = 1400
    vae_full_batch: int = 4
    vae_lr: float = 2e-3
    scenes: int = 12000
    unet_steps: int = 2400
    unet_batch: int = 48
    unet_lr: float = 1e-3
    warmup_steps: int = 100
    caption_dropout: float = 0.1
    ema_decay: float = 0.995
    min_snr_gamma: float = 5.0
    snr_floor: float = 0.1
    noise_offset: float = 0.15
    pyramid_discount: float = 0.0
    save_every: int = 200


@dataclass
class TrainedModel:
    """The trained components, ready to export (EMA weights for text encoder and UNet)."""

    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    unet: torch.nn.Module


def _step_rng(plan: TrainingPlan, phase: str, step: int) -> tuple[random.Random, torch.Generator]:
    """Python and torch generators for one step, independent of what ran before it."""
    digest = hashlib.sha256(f"{plan.seed}:{phase}:{step}".encode()).digest()
    seed = int.from_bytes(digest[:8], "little") >> 1  # torch seeds must fit in 63 bits
    return random.Random(seed), torch.Generator().manual_seed(seed)


def _to_tensor(images: list) -> Tensor:
    """PIL RGB images -> float tensor (N, 3, H, W) in [-1, 1]."""
    array = np.stack([np.asarray(image, dtype=np.float32) for image in images])
    return torch.from_numpy(array).permute(0, 3, 1, 2) / 127.5 - 1.0


def _lr_factor(step: int, plan_warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to 10 % of the peak learning rate."""
    if step < plan_warmup:
        return (step + 1) / plan_warmup
    progress = (step - plan_warmup) / max(total - plan_warmup, 1)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def _vae_batch(plan: TrainingPlan, step: int) -> Tensor:
    """Small random crops (cheap, many per step), then whole images for the last steps."""
    rng, _ = _step_rng(plan, "vae", step)
    whole = step >= plan.vae_steps - plan.vae_full_steps
    crop, batch = (IMAGE_SIDE, plan.vae_full_batch) if whole else (plan.vae_crop, plan.vae_batch)
    crops = []
    for _ in range(batch):
        image = render(sample_scene(rng), IMAGE_SIDE, jitter=rng)
        x, y = rng.randrange(IMAGE_SIDE - crop + 1), rng.randrange(IMAGE_SIDE - crop + 1)
        crops.append(image.crop((x, y, x + crop, y + crop)))
    return _to_tensor(crops)


def _save(path: Path, state: dict) -> None:
    """Write ``state`` atomically so an interrupted save never breaks a resume."""
    scratch = path.with_suffix(".tmp")
    torch.save(state, scratch)
    scratch.replace(path)


def _start_with_small_posterior_variance(vae: torch.nn.Module) -> None:
    """Start the encoder's log-variance outputs at -8 (std 0.02) instead of 0 (std 1).

    With std 1 the sampled latents are mostly noise and the decoder learns nothing until the
    weak KL-weighted gradient has shrunk the variance; starting small lets reconstruction
    learn from the first step, and the KL term still keeps the variance from collapsing.
    """
    latent_channels = vae.config.latent_channels
    with torch.no_grad():
        vae.encoder.conv_out.bias[latent_channels:].fill_(-8.0)


def _reconstruction_loss(reconstruction: Tensor, pixels: Tensor) -> Tensor:
    """L1 with shape pixels weighted 4x: a small object is a few hundred of 16,384 pixels, and
    plain L1 lets the VAE blur its colour into the background's, which is what the prompt named."""
    dominant = pixels.flatten(2).median(dim=2).values[..., None, None]
    foreground = (pixels - dominant).abs().sum(dim=1, keepdim=True) > 0.3
    weight = 1.0 + 3.0 * foreground.float()
    return (weight * (reconstruction - pixels).abs()).mean() / weight.mean()


def train_vae(plan: TrainingPlan, work_dir: Path, progress: ProgressFactory) -> torch.nn.Module:
    """Phase 1; returns the trained VAE (``config.scaling_factor`` still the default)."""
    final = work_dir / "vae_final.pt"
    torch.manual_seed(plan.seed)
    vae = build_vae()
    if final.is_file():
        vae.load_state_dict(torch.load(final, weights_only=True))
        return vae
    _start_with_small_posterior_variance(vae)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=plan.vae_lr, weight_decay=0.0)
    start = _resume(work_dir / "vae_state.pt", {"vae": vae, "optimizer": optimizer})
    bar = progress(plan.vae_steps, start, "VAE")
    vae.train()
    for step in range(start, plan.vae_steps):
        for group in optimizer.param_groups:
            group["lr"] = plan.vae_lr * _lr_factor(step, plan.warmup_steps, plan.vae_steps)
        pixels = _vae_batch(plan, step)
        _, noise = _step_rng(plan, "vae-noise", step)
        posterior = vae.encode(pixels).latent_dist
        latents = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=noise)
        loss = _reconstruction_loss(vae.decode(latents).sample, pixels) + 1e-6 * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if (step + 1) % plan.save_every == 0:
            _save(work_dir / "vae_state.pt", {"step": step + 1, "vae": vae.state_dict(),
                                              "optimizer": optimizer.state_dict()})
    bar.close()
    vae.eval()
    _save(final, vae.state_dict())
    return vae


def _resume(path: Path, modules: dict) -> int:
    """Load ``modules``' states from ``path`` if it exists; returns the step to start at."""
    if not path.is_file():
        return 0
    state = torch.load(path, weights_only=True)
    for name, module in modules.items():
        module.load_state_dict(state[name])
    logger.info("resuming %s at step %d", path.name, state["step"])
    return int(state["step"])


@torch.no_grad()
def encode_scenes(plan: TrainingPlan, vae: torch.nn.Module, work_dir: Path,
                  progress: ProgressFactory) -> dict[str, object]:
    """Render ``plan.scenes`` scenes and encode them once (cached in ``work_dir``).

    Returns:
        ``{"mean": (N, 4, 16, 16), "std": (N, 4, 16, 16), "captions": [str] * N,
        "scaling_factor": float}``; latents are unscaled VAE posteriors.
    """
    cache = work_dir / "latents.pt"
    if cache.is_file():
        return torch.load(cache, weights_only=True)
    rng = random.Random(f"{plan.seed}:scenes")
    scenes = [sample_scene(rng) for _ in range(plan.scenes)]
    means, stds = [], []
    bar = progress(plan.scenes, 0, "encode")
    for first in range(0, plan.scenes, 64):
        chunk = scenes[first:first + 64]
        posterior = vae.encode(_to_tensor([render(s, IMAGE_SIDE, jitter=rng) for s in chunk])).latent_dist
        means.append(posterior.mean)
        stds.append(posterior.std)
        bar.update(len(chunk))
    bar.close()
    mean, std = torch.cat(means), torch.cat(stds)
    # SD scales latents to unit variance before diffusion (LDM paper, section 4.3.2).
    data = {"mean": mean, "std": std, "captions": [caption(s) for s in scenes],
            "scaling_factor": float(1.0 / mean.std())}
    _save(cache, data)
    return data


def _tokenize(captions: list[str], tokenizer) -> Tensor:
    return tokenizer(captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids


class _Ema:
    """Exponential moving average of a module's weights, with the usual warm-up of the decay."""

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        self.average = copy.deepcopy(module).eval().requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update(self, module: torch.nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        for average, current in zip(self.average.parameters(), module.parameters(), strict=True):
            average.lerp_(current, 1 - decay)


def training_noise(shape: tuple[int, ...], generator: torch.Generator, offset: float = 0.0,
                   pyramid_discount: float = 0.0) -> Tensor:
    """The noise added to training latents, shape ``(B, C, H, W)``.

    SD's scaled-linear schedule ends at alpha_bar = 0.0047, not 0, so at t = 999 a latent
    keeps 6.9 % of its signal (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample
    Steps are Flawed"). On a 16x16 latent the mean of i.i.d. noise has std only 1/16, about
    what that leak of a plain background is, so the model learns to read the background
    colour (and where a large shape sits) off the noise instead of the prompt; sampling starts
    from pure noise, where that reading is random. Keeping the schedule, so that every A1111
    sampler still applies, the leak is drowned instead:

    * ``pyramid_discount``: noise also drawn at 1/2, 1/4, ... 1/16 resolution, upsampled and
      weighted ``discount ** level``, then rescaled to unit std (Whitaker 2023,
      "Multi-resolution noise for diffusion model training"): it hides layout at every scale,
      but did not make v2's shapes follow the position words, so the shipped plan leaves it off;
    * ``offset``: a per-channel constant of std ``offset`` (Guttenberg 2023, "Diffusion with
      Offset Noise"): it hides the mean.
    """
    batch, channels, height, width = shape
    noise = torch.randn(shape, generator=generator)
    if pyramid_discount > 0:
        level, side = 1, height // 2
        while side >= 1:
            coarse = torch.randn((batch, channels, side, max(width * side // height, 1)), generator=generator)
            upsampled = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear")
            noise = noise + pyramid_discount**level * upsampled
            level, side = level + 1, side // 2
        noise = noise / noise.std(dim=(1, 2, 3), keepdim=True)
    if offset > 0:
        noise = noise + offset * torch.randn((batch, channels, 1, 1), generator=generator)
    return noise


def _diffusion_loss(plan: TrainingPlan, unet, text_encoder, batch: dict[str, Tensor],
                    alphas_cumprod: Tensor, noise_rng: torch.Generator) -> Tensor:
    """Epsilon-prediction loss of one batch, each timestep weighted by clamp(SNR, floor, gamma) / SNR."""
    latents = (batch["mean"] + batch["std"] * torch.randn(batch["mean"].shape, generator=noise_rng)) * batch["scale"]
    timesteps = torch.randint(0, len(alphas_cumprod), (latents.shape[0],), generator=noise_rng)
    noise = training_noise(tuple(latents.shape), noise_rng, plan.noise_offset, plan.pyramid_discount)
    alpha_bar = alphas_cumprod[timesteps].view(-1, 1, 1, 1)
    noisy = alpha_bar.sqrt() * latents + (1 - alpha_bar).sqrt() * noise
    context = text_encoder(batch["ids"]).last_hidden_state
    prediction = unet(noisy, timesteps, context).sample
    snr = alpha_bar.flatten() / (1 - alpha_bar.flatten())
    weight = torch.clamp(snr, min=plan.snr_floor, max=plan.min_snr_gamma) / snr
    return (weight * (prediction - noise).pow(2).mean(dim=(1, 2, 3))).mean()


def _alphas_cumprod() -> Tensor:
    """SD's scaled-linear schedule: betas linear in sqrt space from 0.00085 to 0.012."""
    config = scheduler_config()
    betas = torch.linspace(config["beta_start"] ** 0.5, config["beta_end"] ** 0.5,
                           config["num_train_timesteps"], dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, dim=0).float()


def _diffusion_batch(plan: TrainingPlan, data: dict, ids: Tensor, empty_ids: Tensor, step: int) -> dict[str, Tensor]:
    rng, _ = _step_rng(plan, "unet", step)
    index = torch.tensor([rng.randrange(len(ids)) for _ in range(plan.unet_batch)])
    batch_ids = ids[index].clone()
    for row in range(plan.unet_batch):
        if rng.random() < plan.caption_dropout:
            batch_ids[row] = empty_ids
    return {"mean": data["mean"][index], "std": data["std"][index], "ids": batch_ids,
            "scale": torch.tensor(data["scaling_factor"])}


def train_diffusion(plan: TrainingPlan, data: dict, tokenizer, work_dir: Path,
                    progress: ProgressFactory) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Phase 2; returns the EMA text encoder and UNet."""
    torch.manual_seed(plan.seed)
    text_encoder, unet = build_text_encoder(), build_unet()
    ema_text, ema_unet = _Ema(text_encoder, plan.ema_decay), _Ema(unet, plan.ema_decay)
    parameters = [*text_encoder.parameters(), *unet.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=plan.unet_lr, weight_decay=0.0)
    start = _resume(work_dir / "unet_state.pt", {"text_encoder": text_encoder, "unet": unet, "optimizer": optimizer,
                                                 "ema_text": ema_text.average, "ema_unet": ema_unet.average})
    ids, empty_ids = _tokenize(list(data["captions"]), tokenizer), _tokenize([""], tokenizer)[0]
    alphas_cumprod = _alphas_cumprod()
    bar = progress(plan.unet_steps, start, "UNet")
    text_encoder.train()
    unet.train()
    for step in range(start, plan.unet_steps):
        for group in optimizer.param_groups:
            group["lr"] = plan.unet_lr * _lr_factor(step, plan.warmup_steps, plan.unet_steps)
        _, noise_rng = _step_rng(plan, "unet-noise", step)
        batch = _diffusion_batch(plan, data, ids, empty_ids, step)
        loss = _diffusion_loss(plan, unet, text_encoder, batch, alphas_cumprod, noise_rng)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        ema_text.update(text_encoder, step)
        ema_unet.update(unet, step)
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if (step + 1) % plan.save_every == 0 or step + 1 == plan.unet_steps:
            _save(work_dir / "unet_state.pt", {
                "step": step + 1, "text_encoder": text_encoder.state_dict(), "unet": unet.state_dict(),
                "optimizer": optimizer.state_dict(), "ema_text": ema_text.average.state_dict(),
                "ema_unet": ema_unet.average.state_dict()})
    bar.close()
    return ema_text.average, ema_unet.average


def train(plan: TrainingPlan, work_dir: Path, tokenizer, progress: ProgressFactory) -> TrainedModel:
    """Run (or resume) both phases in ``work_dir``.

    Args:
        plan: The hyper-parameters and seed.
        work_dir: Where resumable state lives (created).
        tokenizer: The CLIP BPE tokenizer the loader uses.
        progress: ``progress(total, initial, name)`` returning a tqdm-like bar.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "plan.txt").write_text(repr(asdict(plan)) + "\n", encoding="utf-8")
    vae = train_vae(plan, work_dir, progress)
    data = encode_scenes(plan, vae, work_dir, progress)
    vae.register_to_config(scaling_factor=data["scaling_factor"])
    text_encoder, unet = train_diffusion(plan, data, tokenizer, work_dir, progress)
    return TrainedModel(vae.eval(), text_encoder.eval(), unet.eval())
