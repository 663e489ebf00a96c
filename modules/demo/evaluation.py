"""Score a loaded demo model on held-out prompts, through the same engine users run.

Each held-out scene's caption is generated at 128x128 with the given sampler, steps, CFG
and seeds; :func:`modules.demo.scorer.read_scene` reads the image back and the report
counts how often each attribute matches the prompt.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from modules.demo.architecture import IMAGE_SIDE
from modules.demo.scenes import Scene, caption, evaluation_scenes
from modules.demo.scorer import Reading, read_scene
from modules.models.hashing import HashCache
from modules.models.loader import LoadedModel
from modules.models.manager import ModelManager, Placement, choose_placement
from modules.models.registry import CheckpointRegistry
from modules.processing.generation.txt2img import run_txt2img
from modules.processing.jobs.job import Job
from modules.processing.requests import Txt2ImgRequest

__all__ = ["ATTRIBUTES", "EvaluationReport", "evaluate", "evaluation_subset", "load_checkpoint_in"]

ATTRIBUTES = ("colour", "background", "position", "shape")


@dataclass
class EvaluationReport:
    """Fraction of images whose attribute matches the prompt, per attribute (0..1)."""

    samples: int = 0
    hits: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ATTRIBUTES, 0))
    readings: list[tuple[str, int, Reading]] = field(default_factory=list)

    def score(self, attribute: str) -> float:
        return self.hits[attribute] / self.samples if self.samples else 0.0

    def add(self, scene: Scene, seed: int, reading: Reading) -> None:
        obj = scene.objects[0]
        self.samples += 1
        self.hits["colour"] += reading.colour == obj.colour
        self.hits["background"] += reading.background == scene.background
        self.hits["position"] += reading.position == obj.position
        self.hits["shape"] += reading.shape == obj.shape
        self.readings.append((caption(scene), seed, reading))

    def summary(self) -> str:
        return ", ".join(f"{name} {self.score(name):.0%}" for name in ATTRIBUTES) + f" (n={self.samples})"


def load_checkpoint_in(directory: Path, placement: Placement | None = None) -> LoadedModel:
    """The default checkpoint of ``directory``, loaded through the registry and ModelManager as the
    app loads it (on the CPU in float32 unless ``placement`` says otherwise). Its hash goes to a
    throwaway cache, so scoring or timing a model leaves nothing behind."""
    with tempfile.TemporaryDirectory() as scratch:
        registry = CheckpointRegistry([Path(directory)], HashCache(Path(scratch) / "hashes.json"))
        return ModelManager(registry, placement or choose_placement(device="cpu")).get(None)


def evaluation_subset(count: int) -> list[Scene]:
    """``count`` held-out scenes spread evenly over all of them (a fixed, ordered choice)."""
    scenes = evaluation_scenes()
    if count >= len(scenes):
        return scenes
    return [scenes[i * len(scenes) // count] for i in range(count)]


def evaluate(model: LoadedModel, scenes: Sequence[Scene], seeds: Sequence[int], cfg_scale: float = 7.0,
             steps: int = 20, sampler: str = "Euler a") -> EvaluationReport:
    """Generate every scene's caption with every seed and score what comes out.

    Args:
        model: The loaded demo checkpoint.
        scenes: Single-object scenes (see :func:`evaluation_subset`).
        seeds: Seeds per prompt; image ``k`` of a prompt uses ``seeds[k]``.
        cfg_scale / steps / sampler: as the A1111 fields ``cfg_scale``, ``steps``, ``sampler_name``.

    Returns:
        The per-attribute hit counts and every reading, for the model card.
    """
    report = EvaluationReport()
    for scene in scenes:
        for seed in seeds:
            request = Txt2ImgRequest(prompt=caption(scene), sampler_name=sampler, num_inference_steps=steps,
                                     guidance_scale=cfg_scale, seed=seed, width=IMAGE_SIDE, height=IMAGE_SIDE)
            result = run_txt2img(model, Job(request))
            report.add(scene, seed, read_scene(result.images[0]))
    return report
