"""Where things live on disk, relative to the checkout (A1111 layout, data dir = repo root)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIGS_DIR = Path(__file__).resolve().parent / "models" / "configs"
# The demo checkpoint trained by tools/train_demo_model.py ships here; it is the default only
# when no other checkpoint is present.
DEMO_MODEL_DIR = REPO_ROOT / "models" / "Stable-diffusion" / "demo"
# The scripts that ship with the studio (X/Y/Z plot, ...); they load whatever --data-dir says.
BUILTIN_SCRIPTS_DIR = REPO_ROOT / "scripts"
# Extensions that ship with the checkout (the documented example); the data dir may add more.
BUILTIN_EXTENSIONS_DIR = REPO_ROOT / "extensions"


@dataclass(frozen=True)
class DataPaths:
    """The folders a running instance reads and writes; tests point them at a temp dir."""

    root: Path = REPO_ROOT

    @property
    def checkpoints(self) -> Path:
        return self.root / "models" / "Stable-diffusion"

    @property
    def vae(self) -> Path:
        return self.root / "models" / "VAE"

    @property
    def text_encoder(self) -> Path:
        """Text encoders used beside a transformer-only checkpoint (FLUX.1's ``clip_l.safetensors``,
        ``t5xxl_fp16.safetensors``), Forge's folder."""
        return self.root / "models" / "text_encoder"

    @property
    def lora(self) -> Path:
        """``<lora:name:w>`` finds ``name`` here (subfolders too)."""
        return self.root / "models" / "Lora"

    @property
    def embeddings(self) -> Path:
        """Textual-inversion embeddings, used by writing their file name in a prompt."""
        return self.root / "models" / "embeddings"

    @property
    def upscalers(self) -> list[Path]:
        """Upscaler models (ESRGAN, Real-ESRGAN, SwinIR, DAT, HAT…), as A1111 keeps them."""
        return [self.root / "models" / "ESRGAN", self.root / "models" / "RealESRGAN"]

    @property
    def controlnet(self) -> Path:
        return self.root / "models" / "ControlNet"

    @property
    def annotators(self) -> Path:
        """Weights of the ControlNet preprocessors that need them (HED, OpenPose, ...), named as upstream."""
        return self.root / "models" / "annotators"

    @property
    def scripts(self) -> Path:
        """User scripts (``*.py`` with ``Script`` subclasses); the shipped ones live in the checkout."""
        return self.root / "scripts"

    @property
    def extensions(self) -> Path:
        """One folder per extension: ``extension.json`` and ``scripts/``."""
        return self.root / "extensions"

    @property
    def styles(self) -> Path:
        return self.root / "styles.csv"

    @property
    def wildcards(self) -> Path:
        """``__name__`` in a prompt picks a line of ``wildcards/name.txt`` (subfolders: ``__dir/name__``)."""
        return self.root / "wildcards"

    @property
    def outputs(self) -> Path:
        return self.root / "outputs"

    @property
    def cache(self) -> Path:
        return self.root / "cache"
