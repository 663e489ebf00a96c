"""The studio: what every front end (web UI, gradio_client API, later REST) calls.

It owns the job queue (one job on the device at a time, FIFO) and the persistent settings,
and turns A1111-style payloads into jobs. No gradio here, so the same service serves the
browser, the API and the tests.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from modules.a1111_options import A1111_OPTION_DEFAULTS
from modules.app import AppContext, load_scripts
from modules.extensions.api import ArgSpec, ImageSaveParams, JobModel
from modules.extensions.job_scripts import (
    JobScripts,
    build_job_scripts,
    check_job_scripts,
    extension_settings,
    run_with_scripts,
)
from modules.extensions.loader import ExtensionInfo, ScriptCatalog
from modules.extensions.manager import install_from_folder, install_from_git, read_disabled, write_disabled
from modules.families.base import FamilyDefaults, ModelPartError
from modules.families.registry import FAMILIES
from modules.job_records import json_record, result_record
from modules.model_references import check_model_references, is_checkpoint_failure, model_failure, part_failure
from modules.model_tools import ModelTools
from modules.models.files import ModelFileError, public_text
from modules.models.registry import CheckpointInfo, ModelNotFoundError, native_resolution
from modules.models.vae import AUTOMATIC, BUILTIN, find_vae_files
from modules.processing.editing.img2img import run_img2img
from modules.processing.editing.img2img_batch import (
    Img2ImgBatchRequest,
    batch_output,
    batch_request,
    batch_stand_in,
    run_img2img_batch,
)
from modules.processing.editing.img2img_request import Img2ImgRequest
from modules.processing.editing.outpainting import OUTPAINT_SCRIPTS
from modules.processing.errors import ProcessingError, RequestValidationError, StorageFullError
from modules.processing.extras.extras import EXTRAS_API_FIELDS, extras_request_from_api
from modules.processing.extras.extras_job import ExtrasJob, images_in_folder
from modules.processing.extras.upscaling import library_image_upscale
from modules.processing.generation.hires import LATENT_UPSCALE_MODES
from modules.processing.generation.txt2img import GenerationResult, OutputOptions, run_txt2img
from modules.processing.intake.api_fields import TXT2IMG_API_FIELDS, txt2img_request_from_api, unknown_fields
from modules.processing.intake.api_fields_img2img import IMG2IMG_API_FIELDS, img2img_request_from_api
from modules.processing.intake.image_input import decode_base64_image
from modules.processing.jobs.job import Job
from modules.processing.jobs.job_store import JobStore
from modules.processing.jobs.queue import JobQueue, JobStatus
from modules.processing.output.grids import GridOptions, add_batch_grid
from modules.processing.output.image_formats import ImageFormat
from modules.processing.output.saving import save_grid, save_image
from modules.processing.prompts.dynamic_prompts import run_with_dynamic_prompts
from modules.processing.prompts.styles import StyleStore
from modules.processing.sampling.hooks import HookDispatcher, StepHook
from modules.settings import SettingsStore, output_dir
from modules.submission import Submission, image_format, read_submission, setting_defaults
from modules.temp_files import remove_orphan_temp_files, startup_folders

__all__ = ["OwnerOptions", "Studio"]


def _id(job_id: str | None) -> dict[str, str]:
    """``Job`` keyword arguments that keep a recovered job's id (a new id otherwise)."""
    return {} if job_id is None else {"id": job_id}


def _save_images(payload: Mapping[str, Any]) -> bool | None:
    """A1111's ``save_images``: True/False when the payload says, None (the settings) otherwise."""
    value = payload.get("save_images")
    return value if isinstance(value, bool) else None


def _wants_grid(payload: Mapping[str, Any]) -> bool:
    """Whether a job may make A1111's batch grid: not with ``do_not_save_grid``, and not when
    ``save_images`` is false (A1111's API sets ``do_not_save_grid = not save_images``)."""
    return payload.get("do_not_save_grid") is not True and payload.get("save_images") is not False


logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class OwnerOptions:
    """What only the machine's owner may ask of one job (the CLI's flags), never a client's payload.

    ``checkpoint``: a checkpoint the owner named by its path, anywhere on the disk
    (``registry.find(..., allow_path=True)``); it stands where the settings' checkpoint would.
    ``output_folder``: save the images straight into this folder (no date folder) instead of the
    settings' output folder; the scripts' own images go there too.
    """

    checkpoint: CheckpointInfo | None = None
    output_folder: Path | None = None


class _ImageSavedCallbacks(StepHook):
    """Passes each image of a job to the extensions' ``on_before_image_saved`` and ``on_image_saved``."""

    name = "image-saving callbacks"

    def __init__(self, catalog: ScriptCatalog) -> None:
        self.catalog = catalog

    def before_image_saved(self, image: Image.Image, infotext: str) -> tuple[Image.Image, str] | None:
        params = ImageSaveParams(image, infotext)
        self.catalog.run_callbacks("on_before_image_saved", params)
        return params.image, params.infotext

    def image_saved(self, path: Path, image: Image.Image, infotext: str) -> None:
        self.catalog.run_callbacks("on_image_saved", path, image, infotext)


class Studio:
    """Jobs, models and settings behind one small, thread-safe interface."""

    def __init__(self, context: AppContext, store: SettingsStore, *, journal: bool = True) -> None:
        """``journal`` False is for a one-shot front end (the CLI) that may share the data dir
        with a running server: its jobs are not recorded in the durable job store (``jobs`` is
        None), it does not take over the jobs a stopped server left there, and it leaves the
        temp files of the server's saves alone."""
        self.context = context
        self.store = store
        self.settings, warnings = store.load()
        # Extensions' settings and the A1111 options a client stored are the file's keys this
        # version does not use: not worth a warning.
        kept = {*extension_settings(context.scripts), *A1111_OPTION_DEFAULTS}
        self.settings_warnings = [w for w in warnings if not any(f"setting {key!r}" in w for key in kept)]
        self._apply_memory_settings()
        self._settings_lock = threading.Lock()
        self.styles = StyleStore(context.paths.styles)
        self.jobs = JobStore(context.paths.root / "cache" / "jobs.sqlite") if journal else None
        self.queue = JobQueue(self._run, max_pending=self.settings.queue_max_pending, on_state=self._record_state)
        self.model_tools = ModelTools(context)
        self.model_error: str | None = None
        self._import_lock = threading.Lock()
        self._announced_models: set[int] = set()  # pipelines already given to on_model_loaded
        self._owner_options: dict[str, OwnerOptions] = {}  # by job id, until the job ends
        if journal:
            # What a crash cut short (saves, merges, downloads, settings writes), before anything writes.
            remove_orphan_temp_files(startup_folders(context.paths, self.model_tools.all_folders()))
        self.recovered_jobs = self._recover_jobs() if journal else []
        self.queue.start()

    # -- jobs -------------------------------------------------------------------------------

    def ensure_libraries(self) -> None:
        """Import diffusers and transformers once, under a lock.

        Their lazy modules are not safe to import from two threads at once (an attribute
        looked up mid-import is missing), and the model loader, the job worker and the token
        counter run on different threads.
        """
        with self._import_lock:
            import diffusers  # noqa: F401
            import transformers  # noqa: F401

    def _run(self, job: Job) -> GenerationResult:
        self.ensure_libraries()
        result = self._run_job(job)
        if job.notices:  # what the submission asked for that did not run, first
            result.notices[:0] = job.notices
        return result

    def _run_job(self, job: Job) -> GenerationResult:
        request = job.request
        if isinstance(request, ExtrasJob):
            return request.run(self.context.upscalers)
        is_img2img = isinstance(request, (Img2ImgRequest, Img2ImgBatchRequest))
        owner = self._owner_options.get(job.id, OwnerOptions())
        saver, styles = self._image_saver(is_img2img, owner.output_folder), self._style_applier()
        if isinstance(request, Img2ImgBatchRequest):
            # As in A1111, each file is a job of its own for the scripts: a selected script runs per file.
            generate = self._generator(job, True, batch_output(request))
            return run_img2img_batch(request, lambda r: run_with_scripts(job.scripts, r, generate, saver, styles))
        # A1111's batch grid, unless a selected script runs the job: it makes its own grids.
        grid = self._grid_options(job, is_img2img) if job.scripts is None or job.scripts.selected is None else None
        output = None if owner.output_folder is None else OutputOptions(
            owner.output_folder, save=job.save is not False, date_subfolder=False)
        return run_with_scripts(job.scripts, request, self._generator(job, is_img2img, output, grid), saver, styles)

    def _grid_options(self, job: Job, is_img2img: bool) -> GridOptions:
        """A1111's batch-grid options for ``job``: the settings (with the job's overrides), the tab's grids folder."""
        settings = dataclasses.replace(self.settings, **job.output_overrides)
        folder = self.output_folder("outdir_img2img_grids" if is_img2img else "outdir_txt2img_grids")
        return GridOptions(show=job.grid and settings.return_grid, save=job.grid and settings.grid_save,
                           folder=folder, date_subfolder=settings.save_to_dirs, embed_infotext=settings.enable_pnginfo,
                           only_if_multiple=settings.grid_only_if_multiple, n_rows=settings.n_rows,
                           prevent_empty_spots=settings.grid_prevent_empty_spots)

    def _default_checkpoint(self, owner: OwnerOptions | None) -> str | CheckpointInfo | None:
        """The checkpoint of a job whose request names none: the owner's file, else the setting's."""
        if owner is not None and owner.checkpoint is not None:
            return owner.checkpoint
        return self.settings.sd_model_checkpoint or None

    def _model_for(self, request: Any, job: Job) -> Any:
        """The loaded model a request names (checkpoint and VAE), or the job's default; the
        first time a pipeline is seen, extensions' ``on_model_loaded`` callbacks get it. A model
        that fails to load is reported against the field that named it (``job.model_fields``)."""
        models, checkpoint = self.context.models, request.checkpoint or self._default_checkpoint(
            self._owner_options.get(job.id))
        modules = request.modules if request.modules is not None else self.settings.forge_additional_modules
        try:
            model = models.get(checkpoint, request.vae if request.vae is not None else self.settings.sd_vae, modules)
        except ModelPartError as error:
            name = checkpoint.name if isinstance(checkpoint, CheckpointInfo) else models.resolve(checkpoint).name
            raise part_failure(error, request, name, job.model_fields) from None
        except (ModelNotFoundError, ModelFileError) as error:
            # The owner's file is reported as named by the request (not as the server's setting).
            named = dataclasses.replace(request, checkpoint=checkpoint.name) if isinstance(
                checkpoint, CheckpointInfo) else request
            failed_checkpoint = is_checkpoint_failure(error, checkpoint, models)
            raise model_failure(error, named, failed_checkpoint, job.model_fields) from None
        if id(model.pipeline) not in self._announced_models:
            self._announced_models.add(id(model.pipeline))
            self.context.scripts.run_callbacks("on_model_loaded", model.pipeline)
        return model

    def _generator(self, job: Job, is_img2img: bool, output: OutputOptions | None = None,
                   grid: GridOptions | None = None) -> Any:
        """One generation of the job: ``(request, extra hooks, save) -> result``. The model is
        looked up per request, so a script may vary the checkpoint or VAE (X/Y/Z plot).
        ``output`` None: the tab's output folder from the settings. ``grid``: make A1111's batch
        grid of the images, before the always-on scripts' ``postprocess`` adds theirs (as A1111)."""
        settings = dataclasses.replace(self.settings, **job.output_overrides)
        if output is None:
            folder = self.output_folder("outdir_img2img_samples" if is_img2img else "outdir_txt2img_samples")
            save = settings.samples_save if job.save is None else job.save
            output = OutputOptions(folder, save=save, date_subfolder=settings.save_to_dirs)
        output = dataclasses.replace(output, embed_infotext=settings.enable_pnginfo,
                                     image_format=image_format(settings))
        run = run_img2img if is_img2img else functools.partial(
            run_txt2img, upscale=library_image_upscale(self.context.upscalers))

        def generate(request: Any, hooks: list[StepHook], save: bool) -> GenerationResult:
            saved_hook = [_ImageSavedCallbacks(self.context.scripts)] if self.context.scripts.callbacks else []
            part = Job(request, [*job.hooks, *hooks, *saved_hook], job.on_progress, job.id, job.cancel)
            options = dataclasses.replace(output, save=output.save and save)
            result = run_with_dynamic_prompts(run, self._model_for(request, job), part, options,
                                              self.context.paths.wildcards)
            saved_grid = add_batch_grid(result, grid, HookDispatcher(saved_hook)) if grid is not None else None
            if saved_grid is not None:
                result.grid_paths.append(saved_grid)
            return result

        return generate

    def _image_saver(self, is_img2img: bool, owner_folder: Path | None = None) -> Any:
        """Where scripts' own images and grids go: ``(image, request, infotext, is_grid) -> path``;
        into ``owner_folder`` when the owner chose one (``OwnerOptions.output_folder``)."""
        settings = self.settings

        def save_script_image(image: Image.Image, request: Any, infotext: str, is_grid: bool) -> Path | None:
            if not (settings.grid_save if is_grid else settings.samples_save):
                return None
            tab = "img2img" if is_img2img else "txt2img"
            if owner_folder is not None:
                target = owner_folder
            else:
                folder = self.output_folder(f"outdir_{tab}_{'grids' if is_grid else 'samples'}")
                target = OutputOptions(folder, date_subfolder=settings.save_to_dirs).target()
            if is_grid:
                return save_grid(image, target, infotext or None)
            return save_image(image, target, str(request.seed), infotext or None)

        return save_script_image

    def _style_applier(self) -> Any:
        def apply_styles(request: Any, names: Any) -> Any:
            prompt, negative = self.styles.apply(list(names), request.prompt, request.negative_prompt)
            return dataclasses.replace(request, prompt=prompt, negative_prompt=negative)

        return apply_styles

    def image_format(self, overrides: Any = None) -> ImageFormat:
        """The file format of images and API answers (A1111's ``samples_format``...), with the
        output options of a request's ``override_settings`` (already checked at submit)."""
        return image_format(self.settings, overrides if isinstance(overrides, Mapping) else None)

    def output_folder(self, key: str) -> Path:
        """The folder an output setting (``outdir_txt2img_samples``, ``outdir_save``) names, in the data dir."""
        return output_dir(self.settings, key, self.context.paths.root)

    def submit_txt2img(self, payload: Mapping[str, Any], *, job_id: str | None = None,
                       owner: OwnerOptions | None = None) -> str:
        """Validate an A1111 txt2img payload and queue it; returns the job id.

        Settings fill what the payload leaves out (clip skip, eta); they are copied into the
        request, never changed by it.

        Raises:
            RequestValidationError: naming the bad field. QueueFullError: too many waiting.

        ``job_id`` is for jobs recovered from the store: they keep their id and are not recorded again.
        ``owner``: what the machine's owner asked beyond the payload (the CLI's ``--model`` path, ``--out``).
        """
        record = {"payload": payload}
        submission = self._read_submission(payload, TXT2IMG_API_FIELDS, "txt2img")
        payload, scripts = self._job_scripts(submission.payload, is_img2img=False)
        request = txt2img_request_from_api(payload, **setting_defaults(payload, self.settings))
        if request.hires is not None and request.hires.upscaler not in self.hires_upscalers():
            raise RequestValidationError("hr_upscaler", f"no upscaler {request.hires.upscaler!r}; available: "
                                                        f"{', '.join(self.hires_upscalers())}")
        fields = check_model_references(payload, request, self.context.registry, self.context.models.vae_roots)
        self._check_scripts(scripts, request, owner)
        job = self._job(request, submission, scripts=scripts, save=_save_images(record["payload"]),
                        grid=_wants_grid(record["payload"]), model_fields=fields, **_id(job_id))
        return self._enqueue(job, "txt2img", record, job_id, owner)

    def _check_scripts(self, scripts: JobScripts, request: Any, owner: OwnerOptions | None = None) -> None:
        """The scripts' submit-time checks against the checkpoint the job will use (the request's,
        else the owner's or the setting's, as ``_model_for`` picks it); RequestValidationError if
        one refuses."""
        try:
            info = self.context.models.resolve(request.checkpoint or self._default_checkpoint(owner))
        except LookupError:  # no such checkpoint: the job reports it when it loads the model
            info = None
        # A pickled checkpoint's family is known only once it is loaded: None, the job checks then.
        model = JobModel(info.name, info.family) if info is not None and info.family is not None else None
        check_job_scripts(scripts, request, model)

    def _read_submission(self, payload: Any, known: frozenset[str], kind: str) -> Submission:
        return read_submission(payload, known, kind, self.styles, frozenset(self.extension_settings()))

    @staticmethod
    def _job(request: Any, submission: Submission, **fields: Any) -> Job:
        """A job with what the tolerant reader noted about its submission (also written to the log)."""
        job = Job(request, warnings=submission.warnings, notices=submission.notices,
                  output_overrides=submission.output_overrides, **fields)
        if job.warnings:
            logger.warning("job %s: %s", job.id, "; ".join(job.warnings))
        return job

    def hires_upscalers(self) -> list[str]:
        """Hires. fix's upscaler choices: the latent modes, then the image upscalers."""
        return [*LATENT_UPSCALE_MODES, *self.context.upscalers.names()]


    def submit_img2img(self, payload: Mapping[str, Any], *, job_id: str | None = None,
                       owner: OwnerOptions | None = None) -> str:
        """Validate an A1111 img2img payload (``init_images``, optional ``mask``, as PIL images or
        base64) and queue it; returns the job id. Errors and ``owner`` as ``submit_txt2img``."""
        record = {"payload": payload}
        submission = self._read_submission(payload, IMG2IMG_API_FIELDS, "img2img")
        payload, scripts = self._job_scripts(submission.payload, is_img2img=True)
        request = img2img_request_from_api(payload, **setting_defaults(payload, self.settings))
        fields = check_model_references(payload, request, self.context.registry, self.context.models.vae_roots)
        self._check_scripts(scripts, request, owner)
        job = self._job(request, submission, scripts=scripts, save=_save_images(record["payload"]),
                        grid=_wants_grid(record["payload"]), model_fields=fields, **_id(job_id))
        return self._enqueue(job, "img2img", record, job_id, owner)

    def _job_scripts(self, payload: Mapping[str, Any], is_img2img: bool) -> tuple[dict[str, Any], JobScripts]:
        """Take the script fields out of a payload: ``alwayson_scripts``, and ``script_name`` /
        ``script_args`` unless they name a built-in outpainting mode (the img2img request
        handles those). Raises RequestValidationError naming a bad script field."""
        if not isinstance(payload, Mapping):
            raise RequestValidationError("payload", "must be a JSON object")
        rest = dict(payload)
        alwayson = rest.pop("alwayson_scripts", None) or {}
        if not isinstance(alwayson, Mapping):
            raise RequestValidationError("alwayson_scripts", "must be an object keyed by script title")
        name = rest.get("script_name") or None
        if name is not None and not isinstance(name, str):
            raise RequestValidationError("script_name", f"must be a script title, got {name!r}")
        if name is not None and name.strip().lower() == "none":  # what the UI's dropdown shows for no script
            rest.pop("script_name")
            name = None
        outpainting = is_img2img and name is not None and name.lower() in {t.lower() for t in OUTPAINT_SCRIPTS}
        args = None
        if name is not None and not outpainting:
            rest.pop("script_name")
            args = rest.pop("script_args", None)
        scripts = build_job_scripts(self.context.scripts, is_img2img, None if outpainting else name, args, alwayson,
                                    self.extension_setting_values())
        return rest, scripts

    def submit_img2img_batch(self, payload: Mapping[str, Any], input_dir: str, output_dir: str = "",
                             mask_dir: str = "", *, job_id: str | None = None) -> str:
        """Queue img2img over every image of ``input_dir`` (A1111's Batch "From directory").

        ``payload`` is an img2img payload without ``init_images``; an empty ``output_dir``
        means the img2img output folder; ``mask_dir`` (optional) holds masks named like the inputs.

        Raises:
            ProcessingError: the server is reachable by others (``--listen``/``--share``) and
                was not started with ``--enable-insecure-extension-access``.
            RequestValidationError: a bad field or folder, named.
        """
        if not self.context.server_folders_allowed:
            raise ProcessingError("Batch from a directory is off on a server others can reach; start it with "
                                  "--enable-insecure-extension-access to allow it, or upload the images instead.")
        record = {"payload": payload, "input_dir": input_dir, "output_dir": output_dir, "mask_dir": mask_dir}
        # The settings are checked now, on a stand-in image; each file replaces it when its turn comes.
        submission = self._read_submission({**payload, "init_images": [batch_stand_in()]}, IMG2IMG_API_FIELDS,
                                           "img2img")
        payload, scripts = self._job_scripts(submission.payload, is_img2img=True)
        template = img2img_request_from_api(payload, **setting_defaults(payload, self.settings))
        fields = check_model_references(payload, template, self.context.registry, self.context.models.vae_roots)
        self._check_scripts(scripts, template)
        target = Path(output_dir.strip()).expanduser() if output_dir.strip() else self.output_folder(
            "outdir_img2img_samples")
        masks = Path(mask_dir.strip()).expanduser() if mask_dir.strip() else None
        request = batch_request(template, Path(input_dir.strip()).expanduser(), target, masks)
        return self._enqueue(self._job(request, submission, scripts=scripts, model_fields=fields, **_id(job_id)),
                             "img2img_batch", record, job_id)

    def submit_extras(self, payload: Mapping[str, Any], images: Sequence[tuple[str, Image.Image]],
                      output_dir: str = "", *, job_id: str | None = None,
                      record: tuple[str, dict[str, Any]] | None = None) -> str:
        """Queue Extras upscaling of ``(name, image)`` pairs with A1111's extras fields; returns
        the job id. Results go to the extras folder (dated), or straight into ``output_dir``.

        Raises:
            RequestValidationError: a bad field, an upscaler that is not installed, no image.
        """
        kind, stored = record or ("extras", {"payload": payload, "images": images, "output_dir": output_dir})
        request = extras_request_from_api(payload, self.context.upscalers.names())
        if not images:
            raise RequestValidationError("image", "no image to process")
        file_format = {"image_format": image_format(self.settings), "embed_infotext": self.settings.enable_pnginfo}
        if output_dir.strip():
            output = OutputOptions(self._server_folder(output_dir, "output_dir"), date_subfolder=False, **file_format)
        else:
            output = OutputOptions(self.output_folder("outdir_extras_samples"),
                                   date_subfolder=self.settings.save_to_dirs, **file_format)
        submission = Submission(dict(payload), tuple(unknown_fields(payload, EXTRAS_API_FIELDS, "extras")),
                                tuple(request.notices()))
        job = self._job(ExtrasJob(request, tuple(images), output), submission, **_id(job_id))
        return self._enqueue(job, kind, stored, job_id)

    def submit_extras_directory(self, payload: Mapping[str, Any], input_dir: str, output_dir: str = "", *,
                                job_id: str | None = None) -> str:
        """Extras over every image of ``input_dir`` (A1111's "Batch from Directory"); errors as
        ``submit_extras``, and ProcessingError where server folders are off."""
        images = images_in_folder(self._server_folder(input_dir, "input_dir"))
        record = {"payload": payload, "input_dir": input_dir, "output_dir": output_dir}
        return self.submit_extras(payload, images, output_dir, job_id=job_id, record=("extras_directory", record))

    def _record_state(self, job_id: str, state: str, status: JobStatus | None) -> None:
        """The queue's journal: every start and end goes to the durable store."""
        if state != "running":
            self._owner_options.pop(job_id, None)
        if self.jobs is None:
            return
        if state == "running":
            self.jobs.mark_running(job_id)
        else:
            self.jobs.mark_finished(job_id, state, status.public_error if status else None,
                                    result_record(status.result if status else None),
                                    status.error_kind if status else None)

    def _recover_jobs(self) -> list[str]:
        """Queue again what the store says was waiting (or running) when the server stopped;
        a job that no longer validates (its model was removed) fails with the reason."""
        recovered = []
        for stored in self.jobs.recover():
            record = stored.payload
            try:
                submit = self._resubmitter(stored.kind, record)
                recovered.append(submit(stored.id))
            except (ProcessingError, KeyError, TypeError, ValueError) as error:
                self.jobs.mark_finished(stored.id, "failed", f"could not be queued again after a restart: {error}")
        if recovered:
            logger.warning("queued %d job(s) again after a restart", len(recovered))
        return recovered

    def _resubmitter(self, kind: str, record: Mapping[str, Any]) -> Any:
        payload = record["payload"]
        if kind == "txt2img":
            return lambda job_id: self.submit_txt2img(payload, job_id=job_id)
        if kind == "img2img":
            return lambda job_id: self.submit_img2img(payload, job_id=job_id)
        if kind == "img2img_batch":
            return lambda job_id: self.submit_img2img_batch(payload, record["input_dir"], record["output_dir"],
                                                            record["mask_dir"], job_id=job_id)
        if kind == "extras":
            images = [(name, decode_base64_image(data, "image")) for name, data in record["images"]]
            return lambda job_id: self.submit_extras(payload, images, record["output_dir"], job_id=job_id)
        if kind == "extras_directory":
            return lambda job_id: self.submit_extras_directory(payload, record["input_dir"], record["output_dir"],
                                                               job_id=job_id)
        raise ValueError(f"unknown job kind {kind!r}")

    def _enqueue(self, job: Job, kind: str, record: Mapping[str, Any], recovered_id: str | None,
                 owner: OwnerOptions | None = None) -> str:
        """Record the job in the durable store (unless it came from there, or there is none), then queue it."""
        journal = self.jobs if recovered_id is None else None
        if journal is not None:
            journal.add(job.id, kind, json_record(record))
        if owner is not None:
            self._owner_options[job.id] = owner
        try:
            return self.queue.submit(job)
        except Exception:
            self._owner_options.pop(job.id, None)
            if journal is not None:
                journal.forget(job.id)  # refused (queue full, closed): it was never accepted
            raise

    def _server_folder(self, folder: str, field: str) -> Path:
        """A folder on this machine that a request names, where the exposure rules allow it."""
        if not self.context.server_folders_allowed:
            raise ProcessingError("Folders on the server are off on a server others can reach; start it with "
                                  "--enable-insecure-extension-access to allow them, or upload the images instead.")
        path = Path(folder.strip()).expanduser()
        if not path.is_absolute():
            raise RequestValidationError(field, f"must be an absolute folder path, got {folder!r}")
        return path

    def status(self, job_id: str) -> JobStatus:
        return self.queue.status(job_id)

    def wait(self, job_id: str, timeout: float | None = None) -> JobStatus:
        return self.queue.wait(job_id, timeout)

    def interrupt(self, job_id: str | None = None) -> bool:
        """Interrupt ``job_id`` (or the running job); True if there was one to stop.

        An id the queue no longer knows (a page from before a restart) is simply nothing to stop.
        """
        job_id = job_id or self.queue.current_id()
        try:
            return bool(job_id) and self.queue.interrupt(job_id)
        except KeyError:
            return False

    def skip(self, job_id: str | None = None) -> bool:
        """Skip the current batch of ``job_id`` (or of the running job); True if it was running."""
        job_id = job_id or self.queue.current_id()
        try:
            return bool(job_id) and self.queue.skip(job_id)
        except KeyError:
            return False

    # -- models -----------------------------------------------------------------------------

    def checkpoints(self) -> list[CheckpointInfo]:
        """The checkpoints a job can load (blocked files are left out: ``registry.blocked``)."""
        return self.context.registry.usable()

    def checkpoint_titles(self) -> list[str]:
        """A1111 titles; hashes appear once computed (listing never hashes gigabytes)."""
        return [self.context.registry.title(info) for info in self.checkpoints()]

    def refresh_checkpoints(self) -> list[str]:
        self.context.registry.refresh()
        return self.checkpoint_titles()

    def current_checkpoint(self) -> str:
        """Title of the checkpoint new jobs use (the setting, else the default one)."""
        try:
            info = self.context.models.resolve(self.settings.sd_model_checkpoint or None)
            return self.context.registry.title(info)
        except LookupError:
            return ""

    def family_defaults(self, checkpoint: CheckpointInfo | None = None) -> FamilyDefaults:
        """The sampler, schedule, steps, CFG and size the UI and ``aigen generate`` start with:
        the family's of ``checkpoint`` (default: the current one): A1111's for SD, FLUX.1's Euler
        at CFG 1; SD1.x's when there is none. The size is the checkpoint's own (512 if none)."""
        if checkpoint is None:
            try:
                checkpoint = self.context.models.resolve(self.settings.sd_model_checkpoint or None)
            except LookupError:
                return FAMILIES["sd15"].defaults
        defaults = (checkpoint.family or FAMILIES["sd15"]).defaults
        return dataclasses.replace(defaults, size=native_resolution(checkpoint))

    def vae_choices(self) -> list[str]:
        return [AUTOMATIC, BUILTIN, *[v.name for v in find_vae_files(self.context.models.vae_roots)]]

    def module_choices(self) -> list[str]:
        """Forge's "VAE / Text Encoder" choices: the part files in models/VAE and models/text_encoder."""
        return self.context.models.part_file_names()

    def set_checkpoint(self, title: str) -> str:
        """Make ``title`` the checkpoint of new jobs (persisted like A1111's quicksetting)."""
        info = self.context.registry.find(title)  # a name: a client never names a path
        reason = self.context.registry.blocked(info)
        if reason is not None:
            raise ModelNotFoundError(f"the checkpoint {info.name!r} is blocked: {reason}")
        full_title = self.context.registry.title(info, compute_hash=True)
        self.update_settings({"sd_model_checkpoint": full_title})
        return full_title

    def load_default_in_background(self) -> threading.Thread:
        """Load the default checkpoint off the request path so the server answers at once."""

        def load() -> None:
            self.ensure_libraries()
            try:
                self.context.models.get(self.settings.sd_model_checkpoint or None, self.settings.sd_vae)
            except Exception as error:  # reported in the UI and /health; the server keeps running
                message = error.public_message if isinstance(error, ModelFileError) else public_text(str(error))
                self.model_error = message.splitlines()[0] if message else type(error).__name__
                logger.warning("default checkpoint not loaded: %s", self.model_error)

        thread = threading.Thread(target=load, name="aigen-model-load", daemon=True)
        thread.start()
        return thread

    # -- extensions -------------------------------------------------------------------------

    def extensions(self) -> list[ExtensionInfo]:
        """The extensions found at the last (re)load, in hook order, with their state and errors."""
        return list(self.context.scripts.extensions)

    def reload_scripts(self) -> list[str]:
        """Import the scripts again (new jobs use the new set at once); returns the load errors."""
        with self._settings_lock:
            self.context.scripts = load_scripts(self.context.paths, self.context.disable_extensions,
                                                self.context.script_resources())
        return list(self.context.scripts.errors)

    def set_extensions_enabled(self, enabled: Mapping[str, bool]) -> list[str]:
        """Switch extensions on or off by name (remembered across restarts), then reload."""
        root = self.context.paths.root
        disabled = set(read_disabled(root))
        for name, on in enabled.items():
            (disabled.discard if on else disabled.add)(name)
        write_disabled(root, frozenset(disabled))
        return self.reload_scripts()

    def install_extension(self, source: str, name: str = "") -> Path:
        """Install from a git URL or a local folder into the data folder's ``extensions/``, then reload.

        Raises:
            ProcessingError: installing is off on a server others can reach.
            ExtensionInstallError: a bad source, a failed clone, or a name already taken.
        """
        if not self.context.extension_install_allowed:
            raise ProcessingError("Installing extensions is off on a server others can reach; start it with "
                                  "--enable-insecure-extension-access to allow it.")
        source = source.strip()
        extensions_dir = self.context.paths.extensions
        is_url = "://" in source or source.startswith("git@")
        installed = install_from_git(source, extensions_dir, name) if is_url else \
            install_from_folder(Path(source), extensions_dir, name)
        self.reload_scripts()
        return installed

    def extension_settings(self) -> dict[str, ArgSpec]:
        """The settings extensions declare (``on_ui_settings``), by key."""
        return extension_settings(self.context.scripts)

    def extension_setting_values(self) -> dict[str, Any]:
        """Each extension setting's stored value, or its default when none is stored or it no
        longer fits the declaration."""
        stored = self.store.extra()
        values = {}
        for key, spec in self.extension_settings().items():
            try:
                values[key] = spec.coerce(stored[key], key) if key in stored else spec.default
            except ValueError:
                values[key] = spec.default
        return values

    def update_extension_settings(self, changes: Mapping[str, Any]) -> list[str]:
        """Validate and save extension settings; returns a warning per rejected or unknown key."""
        specs = self.extension_settings()
        accepted, warnings = {}, []
        for key, value in changes.items():
            if key not in specs:
                warnings.append(f"{key}: no extension declares this setting")
                continue
            try:
                accepted[key] = specs[key].coerce(value, key)
            except ValueError as error:
                warnings.append(str(error))
        if accepted:
            try:
                self.store.set_extra(accepted)
            except StorageFullError:
                raise  # answered as a full disk (507), not as one warning among others
            except OSError as error:
                warnings.append(f"Could not save settings ({error.strerror or type(error).__name__}); "
                                "nothing was changed.")
        return warnings

    # -- settings ---------------------------------------------------------------------------

    def update_settings(self, changes: Mapping[str, Any]) -> list[str]:
        """Validate, persist and apply setting changes; returns warnings (bad keys/values)."""
        with self._settings_lock:
            merged = {**dataclasses.asdict(self.settings), **changes}
            self.settings, warnings = self.store.apply(merged)
            self._apply_memory_settings()
        return warnings

    def _apply_memory_settings(self) -> None:
        models = self.context.models
        models.keep_loaded = self.settings.sd_checkpoints_limit
        models.keep_in_cpu = self.settings.sd_checkpoints_keep_in_cpu
        if hasattr(self, "queue"):
            self.queue.max_pending = self.settings.queue_max_pending

    def close(self) -> None:
        self.queue.close(timeout=10)
        if self.jobs is not None:
            self.jobs.close()
