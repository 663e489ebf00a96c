"""Wildcards and variants (the ``dynamicprompts`` package, as A1111's sd-dynamic-prompts uses):
``__name__`` picks a line of ``wildcards/name.txt`` (``__dir/name__`` for subfolders, nested
wildcards resolved), ``{a|b|c}`` picks one, ``{2$$a|b|c}`` two, ``{0.5::a|b}`` by weight.

Each image's prompt is drawn with that image's seed, so a seed reproduces its prompt whatever
the batch. Images whose prompts differ run one by one: the engine's noise depends on each
image's seed only, so the pixels are the same as in a shared batch. The prompts as written
go into the infotext as ``Template`` / ``Negative Template``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path

from modules.models.loader import LoadedModel
from modules.processing.editing.img2img_request import Img2ImgRequest
from modules.processing.generation.txt2img import GenerationResult, OutputOptions
from modules.processing.jobs.job import Job, ProgressUpdate
from modules.processing.requests import Txt2ImgRequest
from modules.processing.sampling.seeds import ImageSeeds, resolve_seed

__all__ = ["expand_prompts", "has_dynamic_syntax", "run_with_dynamic_prompts"]

_WILDCARD = re.compile(r"__([\w./-]+?)__")
_VARIANT = re.compile(r"\{[^{}]*\|[^{}]*\}|\{[^{}]*\$\$[^{}]*\}")
Runner = Callable[[LoadedModel, Job, OutputOptions | None], GenerationResult]


def has_dynamic_syntax(prompt: str) -> bool:
    """Whether ``prompt`` uses wildcards or ``{...|...}`` variants (A1111 syntax alone does not)."""
    return bool(_WILDCARD.search(prompt) or _VARIANT.search(prompt))


def expand_prompts(template: str, seeds: list[int], wildcard_dir: Path) -> tuple[list[str], list[str]]:
    """One prompt per seed, and notices for wildcards that name no file.

    Returns:
        (prompts, notices); a wildcard without a file stays as written in the prompt.
    """
    from dynamicprompts.generators import RandomPromptGenerator
    from dynamicprompts.wildcards import WildcardManager

    if not has_dynamic_syntax(template):
        return [template] * len(seeds), []
    generator = RandomPromptGenerator(WildcardManager(wildcard_dir))
    prompts = generator.generate(template, num_images=len(seeds), seeds=list(seeds))
    missing = sorted({name for prompt in prompts for name in _WILDCARD.findall(prompt)})
    notices = [f"No wildcard file for __{name}__ in {wildcard_dir}" for name in missing]
    return prompts, notices


def _image_request(request: Txt2ImgRequest, k: int, seeds: ImageSeeds, prompt: str, negative: str) -> Txt2ImgRequest:
    """Image ``k`` of the job as a one-image request with its own prompts and seeds."""
    fields = {"prompt": prompt, "negative_prompt": negative, "seed": seeds.seeds[k], "subseed": seeds.subseeds[k],
              "batch_size": 1, "batch_count": 1,
              "template": request.prompt if prompt != request.prompt else "",
              "negative_template": request.negative_prompt if negative != request.negative_prompt else ""}
    if isinstance(request, Img2ImgRequest):
        fields["init_images"] = (request.init_images[k % len(request.init_images)],)
    return dataclasses.replace(request, **fields)


def _progress_of_image(job: Job, k: int, count: int) -> Callable[[ProgressUpdate], None] | None:
    """Report a one-image part's progress as image ``k`` of ``count`` (the queue's batches)."""
    if job.on_progress is None:
        return None

    def report(update: ProgressUpdate) -> None:
        job.on_progress(dataclasses.replace(update, batch_index=k, batch_count=count, elapsed_s=job.elapsed_s()))

    return report


def run_with_dynamic_prompts(run: Runner, model: LoadedModel, job: Job, output: OutputOptions | None,
                             wildcard_dir: Path | None) -> GenerationResult:
    """``run`` the job; with wildcards or variants in its prompts, image by image with drawn prompts."""
    request = job.request
    dynamic = has_dynamic_syntax(request.prompt) or has_dynamic_syntax(request.negative_prompt)
    if wildcard_dir is None or not dynamic:
        return run(model, job, output)
    request = dataclasses.replace(request, seed=resolve_seed(request.seed), subseed=resolve_seed(request.subseed))
    job.request = request
    count = request.images_per_job
    seeds = ImageSeeds(request.seed, request.subseed, count)
    prompts, notices = expand_prompts(request.prompt, seeds.seeds, wildcard_dir)
    negatives, negative_notices = expand_prompts(request.negative_prompt, seeds.seeds, wildcard_dir)
    result = GenerationResult(request=request, notices=notices + negative_notices)
    for k in range(count):
        part_request = _image_request(request, k, seeds, prompts[k], negatives[k])
        part = run(model, Job(part_request, job.hooks, _progress_of_image(job, k, count), job.id, job.cancel), output)
        part.skipped_batches = [k] if part.skipped_batches else []  # image k was the part's only batch
        result.extend(part)
        if part.interrupted:
            break
    return result
