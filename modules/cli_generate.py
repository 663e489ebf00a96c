"""The work behind ``aigen generate``: the payload goes through the studio, as the web UI's and
the REST API's payloads do, so the same user scripts, saved settings (config.json) and extension
callbacks apply and the same payload makes the same image. What is the CLI's own: a progress bar
on stderr, the images written where ``--out`` says, and the machine's owner naming a checkpoint
by its path anywhere on the disk."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from modules.app import AppContext
from modules.families.base import FamilyDefaults
from modules.model_references import MODEL_OPTIONS, model_fields
from modules.models.files import ModelFileError
from modules.models.registry import CheckpointInfo, CheckpointRegistry, ModelNotFoundError
from modules.processing.errors import RequestValidationError
from modules.processing.generation.txt2img import GenerationResult
from modules.processing.intake.image_input import decode_base64_image
from modules.processing.jobs.queue import JobStatus
from modules.processing.output.saving import save_image
from modules.settings import SettingsStore
from modules.studio import OwnerOptions, Studio

__all__ = ["JobFailedError", "exit_code_for", "open_studio", "run_generate"]

logger = logging.getLogger(__name__)

#: The payload fields that name a model: a problem with one is a model problem (exit 1).
_MODEL_FIELDS = frozenset({"model", *MODEL_OPTIONS.values(),
                           *(f"override_settings.{option}" for option in MODEL_OPTIONS.values())})
_MODEL_FAILURE_STARTS = ("the model file", "no checkpoint", "no VAE")
_POLL_S = 0.1  # how often the progress bar reads the job's status


class JobFailedError(Exception):
    """The studio's job failed; ``code`` is the exit code, the message its one line."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def exit_code_for(error: Exception) -> tuple[int, str]:
    """Exit code and one-line message for an error raised while generating."""
    if isinstance(error, JobFailedError):
        return error.code, str(error)
    if isinstance(error, RequestValidationError):
        return (1 if error.field in _MODEL_FIELDS else 2), str(error)
    if isinstance(error, FileExistsError):
        return 2, f"--out: {error.filename} exists already; choose another file or a folder"
    if isinstance(error, (ModelNotFoundError, ModelFileError)):
        return 1, str(error).splitlines()[0]
    logger.exception("generation failed")
    return 1, f"{type(error).__name__}: {error}"


def open_studio(context: AppContext) -> Studio:
    """The studio of a CLI run: the data dir's settings, its own jobs (a server on the same
    data dir keeps its job store and temp files)."""
    return Studio(context, SettingsStore(context.paths.root / "config.json"), journal=False)


def run_generate(context: AppContext, payload: dict[str, Any], out: Path | None,
                 family_defaults: bool = False) -> dict[str, Any]:
    """Generate from an A1111-style payload through the studio; returns the summary printed as JSON.
    The studio is closed before this returns (its worker thread ends), also on Ctrl+C.
    A size left out is the checkpoint's own; with ``family_defaults`` (``generate``'s flags, not
    an A1111 JSON payload) so are a sampler, schedule type, steps and CFG scale left out.

    Raises:
        RequestValidationError, ModelNotFoundError, ModelFileError, FileExistsError, JobFailedError,
        KeyboardInterrupt (after the job was interrupted).
    """
    is_img2img = "init_images" in payload
    exact = out is not None and out.suffix.lower() == ".png"
    if exact and out is not None:  # refused before anything loads
        _exact_targets(out, _images_per_job(payload))
    payload, checkpoint = _owner_checkpoint(context.registry, payload)
    studio = open_studio(context)
    try:
        for warning in studio.settings_warnings:
            print(f"aigen: warning: config.json: {warning}", file=sys.stderr)
        payload = {**_defaults(studio, payload, checkpoint, family_defaults), **payload}
        folder = out if out is not None and not exact else None
        submit = studio.submit_img2img if is_img2img else studio.submit_txt2img
        job_id = submit({**payload, **_saving_fields(out, exact)}, owner=OwnerOptions(checkpoint, folder))
        status = studio.status(job_id)
        for warning in status.warnings:  # the tolerant reader ran without these
            print(f"aigen: warning: {warning}", file=sys.stderr)
        status = _follow(studio, job_id, "img2img" if is_img2img else "txt2img")
    finally:
        studio.close()
    result = _result_of(status)
    paths = _save_exact(result, out, studio.settings.enable_pnginfo) if exact and out is not None else None
    return {**_summary(result, paths), "warnings": list(status.warnings)}


def _images_per_job(payload: Mapping[str, Any]) -> int:
    """batch_size x n_iter as the payload says (1 each where it says nothing usable; the studio
    names a bad value)."""
    counts = [payload.get(key, 1) for key in ("batch_size", "n_iter")]
    return max(1, counts[0] if isinstance(counts[0], int) else 1) * max(1, counts[1] if isinstance(counts[1], int)
                                                                            else 1)


def _exact_targets(out: Path, count: int) -> list[Path]:
    """File names for ``--out something.png``: that name, or name-1.png, name-2.png, ..."""
    if count == 1:
        targets = [out]
    else:
        targets = [out.with_name(f"{out.stem}-{k + 1}{out.suffix}") for k in range(count)]
    for target in targets:
        if target.exists():
            raise FileExistsError(0, "exists", str(target))
    return targets


def _checkpoint_reference(payload: Mapping[str, Any]) -> str | None:
    """The checkpoint the payload names (the field the request reader takes), or None."""
    field = model_fields(payload).get("checkpoint")
    if field is None:
        return None
    value = payload["override_settings"].get(MODEL_OPTIONS["checkpoint"]) if field.startswith(
        "override_settings.") else payload[field]
    return value if isinstance(value, str) and value.strip() else None


def _owner_checkpoint(registry: CheckpointRegistry, payload: dict[str, Any]) -> tuple[dict[str, Any],
                                                                                     CheckpointInfo | None]:
    """The payload and the owner's checkpoint file: the CLI's user owns the machine, so their
    ``--model`` (or the JSON's checkpoint) may be a path to a file anywhere. A name the model
    folders know stays in the payload, as any client's; a path is taken out of it and handed to
    the studio as ``OwnerOptions.checkpoint``, since a payload never names a path.

    Raises:
        ModelNotFoundError: no such checkpoint, or a blocked one (a refused pickle, a broken file).
    """
    reference = _checkpoint_reference(payload)
    if reference is None:
        return payload, None
    info = registry.find(reference, allow_path=True)
    reason = registry.blocked(info)
    if reason is not None:
        raise ModelNotFoundError(f"the checkpoint {info.name!r} is blocked: {reason}")
    try:
        if registry.find(reference).path == info.path:
            return payload, None
    except ModelNotFoundError:
        pass
    rest = {key: value for key, value in payload.items() if key not in ("model", "sd_model_checkpoint")}
    overrides = rest.get("override_settings")
    if isinstance(overrides, Mapping):
        rest["override_settings"] = {k: v for k, v in overrides.items() if k != MODEL_OPTIONS["checkpoint"]}
    return rest, info


def _defaults(studio: Studio, payload: Mapping[str, Any], checkpoint: CheckpointInfo | None,
              family: bool) -> dict[str, Any]:
    """The payload's defaults that are the checkpoint's own (``payload`` overrides them).

    Unlike A1111's fixed 512, a size left out is the checkpoint's native one (128 for the demo
    model); img2img keeps the input's size, rounded down to a multiple of 8. With ``family``,
    also the family's sampler, schedule type, steps and CFG (FLUX.1: Euler at CFG 1).
    """
    defaults = _checkpoint_defaults(studio, payload, checkpoint)
    if defaults is None:
        return {}  # the studio names the unknown checkpoint
    if "width" in payload or "height" in payload:
        size = {}
    elif "init_images" in payload:
        size = _input_size(payload["init_images"])
    else:
        size = {"width": defaults.size, "height": defaults.size}
    fields = {"sampler_name": defaults.sampler, "scheduler": defaults.scheduler, "steps": defaults.steps,
              "cfg_scale": defaults.cfg_scale} if family else {}
    return {**size, **fields}


def _input_size(images: Any) -> dict[str, int]:
    """img2img's default size: the first input image's, rounded down to a multiple of 8."""
    first = images[0] if isinstance(images, list) and images else None
    try:
        image = first if isinstance(first, Image.Image) else decode_base64_image(first, "init_images[0]")
    except RequestValidationError:
        return {}  # the studio names the bad image
    return {"width": max(64, image.width // 8 * 8), "height": max(64, image.height // 8 * 8)}


def _checkpoint_defaults(studio: Studio, payload: Mapping[str, Any],
                         checkpoint: CheckpointInfo | None) -> FamilyDefaults | None:
    """The family defaults of the checkpoint the job runs (the owner's file, the one the payload
    names, else the current one); None when the payload names no known checkpoint."""
    if checkpoint is None and (reference := _checkpoint_reference(payload)) is not None:
        try:
            checkpoint = studio.context.registry.find(reference)
        except ModelNotFoundError:
            return None
    return studio.family_defaults(checkpoint)


def _saving_fields(out: Path | None, exact: bool) -> dict[str, Any]:
    """A1111's saving fields for the CLI: it always writes its images, the studio itself unless
    ``--out`` names one exact file; a batch grid only into the settings' grid folder."""
    if exact:
        return {"save_images": False, "do_not_save_grid": True}
    return {"save_images": True, **({"do_not_save_grid": True} if out is not None else {})}


class _ProgressBar:
    """A tqdm bar on stderr over all steps of all batches, as the job's status reports them."""

    def __init__(self, label: str) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=None, file=sys.stderr, unit="it", desc=label, leave=False)

    def show(self, status: JobStatus) -> None:
        total = status.total_steps * status.batch_count
        if total and self._bar.total != total:
            self._bar.total = total
            self._bar.refresh()
        done = status.batch_index * status.total_steps + status.step
        if done != self._bar.n:
            self._bar.update(done - self._bar.n)

    def close(self) -> None:
        self._bar.close()


def _follow(studio: Studio, job_id: str, label: str) -> JobStatus:
    """Wait for the job, showing its progress; Ctrl+C interrupts the job and is raised again
    (closing the studio then waits for the job to stop, at most ``Studio.close``'s time)."""
    bar = _ProgressBar(label)
    try:
        status = studio.wait(job_id, timeout=_POLL_S)
        while not status.is_finished:
            bar.show(status)
            status = studio.wait(job_id, timeout=_POLL_S)
        bar.show(status)
        return status
    except KeyboardInterrupt:
        studio.interrupt(job_id)
        raise
    finally:
        bar.close()


def _result_of(status: JobStatus) -> GenerationResult:
    """The job's result, or the reason it has none as a ``JobFailedError``."""
    if status.state == "failed":
        message = status.error or "generation failed"
        if status.error_kind == "invalid_request":
            model_problem = message.split(":", 1)[0] in _MODEL_FIELDS or message.startswith(_MODEL_FAILURE_STARTS)
            raise JobFailedError(1 if model_problem else 2, message)
        raise JobFailedError(1, message)
    if status.result is None:
        raise JobFailedError(1, f"the job was {status.state} before it started")
    return status.result


def _save_exact(result: GenerationResult, out: Path, embed_infotext: bool) -> list[Path]:
    """Write the job's images to ``--out``'s exact file names (PNG)."""
    first = result.index_of_first_image
    images, infotexts = result.images[first:], result.infotexts[first:]
    targets = _exact_targets(out, len(images))
    return [save_image(image, target.parent, "", info if embed_infotext else None, exact_path=target)
            for image, info, target in zip(images, infotexts, targets, strict=True)]


def _summary(result: GenerationResult, exact_paths: list[Path] | None) -> dict[str, Any]:
    """The JSON summary: the images (a grid shown first is left out of the lists), their files,
    and the batch grid's file apart."""
    first = result.index_of_first_image
    infotexts = result.infotexts[first:]
    return {
        "paths": [str(p) for p in (result.paths if exact_paths is None else exact_paths)],
        "seeds": result.seeds[first:],
        "infotexts": infotexts,
        "infotext": infotexts[0] if infotexts else "",
        "interrupted": result.interrupted,
        "hook_errors": result.hook_errors,
        "notices": result.notices,
        "grid": str(result.grid_paths[0]) if result.grid_paths else None,
    }
