"""The extension API: the only module user scripts and extensions import.

A script is a ``Script`` subclass in ``scripts/*.py`` or ``extensions/<name>/scripts/*.py``.
It keeps A1111's method names, with two differences (DESIGN.md "Scripts and extensions"):

* ``ui(is_img2img)`` returns a dict of NAMED argument descriptions (``Slider``, ``Checkbox``,
  ``Dropdown``, ``Number``, ``Textbox``), not Gradio components. That one description feeds
  the web UI, the REST API (``alwayson_scripts: {"Title": {"args": {...}}}``) and
  gradio_client, and every hook receives the values by name: ``process(p, strength=0.5)``.
* A script that raises is logged with its name, disabled for the rest of the job and named
  in the result's info; the job and the server go on.

``p`` is the job's request (a frozen ``Txt2ImgRequest`` or ``Img2ImgRequest``); a hook that
wants to change it returns ``dataclasses.replace(p, ...)``. Per-step hooks get a frozen
``StepParams`` and return a replacement or None. Nothing in a script patches a library or
the shared model: the request, the step parameters and the tensors handed to a hook are the
ways in, and ``patch_model(p, patches, **args)`` fills the job's ``ModelPatches`` (attention
processors, block hooks, FreeU, model-call wrappers), which go on a weight-sharing clone of
the UNet for that job alone (``modules.models.patches``).

Example::

    class Brighten(Script):
        def title(self): return "Brighten"
        def show(self, is_img2img): return AlwaysVisible
        def ui(self, is_img2img): return {"amount": Slider("Amount", 0.0, 0.5, 0.1, step=0.05)}
        def after_step(self, p, step, latents, amount):
            return latents + amount if step.step == step.total_steps - 1 else None
"""

from __future__ import annotations

import contextvars
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from modules.extensions.script_args import (
    ArgSpec,
    Checkbox,
    Dropdown,
    Group,
    ImageArg,
    Number,
    ScriptArgError,
    Slider,
    Textbox,
)
from modules.models.patches import (
    ModelCall,
    ModelFunction,
    ModelPatchError,
    ModelPatches,
    ModelWrapper,
    attention_modules,
)
from modules.processing.editing.img2img_request import Img2ImgRequest
from modules.processing.generation.txt2img import GenerationResult
from modules.processing.output.grids import image_grid
from modules.processing.requests import Txt2ImgRequest
from modules.processing.sampling.hooks import StepParams, UNetCall, UNetResiduals
from modules.processing.sampling.seeds import resolve_seed

if TYPE_CHECKING:
    from modules.families.base import ModelFamily
    from modules.models.controlnet import ControlNetLibrary
    from modules.models.upscalers import UpscalerLibrary
    from modules.processing.control.control_preprocess import Preprocessors

__all__ = [
    "CALLBACK_NAMES", "MAX_SCRIPT_IMAGES", "AlwaysVisible", "ArgSpec", "Checkbox", "Dropdown", "Group", "ImageArg",
    "ImageSaveParams",
    "Img2ImgRequest", "JobHandle", "JobModel", "ModelCall", "ModelFunction", "ModelPatchError", "ModelPatches",
    "ModelWrapper", "Number", "Processed", "Script", "ScriptArgError", "ScriptCheckError",
    "ScriptResources", "Slider",
    "StepParams", "Textbox", "TooManyImagesError", "append_image", "args_by_position", "attention_modules",
    "Txt2ImgRequest", "UNetCall", "UNetResiduals", "image_grid", "merge_results", "prepend_grid",
    "register_callback", "with_fixed_seeds",
]

#: The most images one script may make in one job (X/Y/Z plot cells times the batch size,
#: Prompt matrix combinations, the lines of Prompts from file times their batches): a request
#: over it is refused when it is submitted (422 naming ``script_args``), not after hours of work.
#: A plain request's own limit (100 batches of 8) stays under it.
MAX_SCRIPT_IMAGES = 1000


class TooManyImagesError(ValueError):
    """A script's job would make more than ``MAX_SCRIPT_IMAGES`` images: its ``check`` refuses it at
    submit time (``ScriptCheckError``), where other bad values are left to ``run`` to report."""

#: What a job produced (A1111 ``Processed``): images, seeds, infotexts, notices.
Processed = GenerationResult
Request = Txt2ImgRequest  # Img2ImgRequest is a subclass


#: App-level events a script file may register for at import time (A1111 ``script_callbacks``):
#: ``on_app_started(demo, app)`` (``app`` is a FastAPI ``APIRouter`` served with the REST API;
#: ``demo`` the Gradio Blocks, None with --nowebui), ``on_ui_tabs()`` returning
#: ``[(blocks, title, elem_id), ...]``, ``on_model_loaded(pipeline)`` and
#: ``on_before_image_saved(ImageSaveParams)`` (change ``params.image``/``params.infotext``),
#: ``on_image_saved(path, image, infotext)``, ``on_infotext_pasted(infotext, fields)`` (may
#: edit the parsed ``fields`` dict before PNG Info sends them to txt2img) and ``on_ui_settings()``
#: returning ``{setting key: ArgSpec}``: options shown in the Settings tab, read by scripts with
#: ``self.option(key)``.
CALLBACK_NAMES = ("on_app_started", "on_ui_tabs", "on_ui_settings", "on_model_loaded", "on_before_image_saved",
                  "on_image_saved", "on_infotext_pasted")


@dataclass
class ImageSaveParams:
    """What ``on_before_image_saved`` callbacks may change: the image and the infotext saved with it."""

    image: Image.Image
    infotext: str


# Which script file is being imported: the loader sets it around each import, so a file's
# register_callback calls go to that loader's catalog. A context variable, not shared state:
# two loaders in two threads never see each other's registrations.
_REGISTRATION: contextvars.ContextVar[Callable[[str, Callable[..., Any]], None] | None] = contextvars.ContextVar(
    "aigen_callback_registration", default=None)


def register_callback(name: str, callback: Callable[..., Any]) -> None:
    """Call ``callback`` on an app-level event (see ``CALLBACK_NAMES``); only while the studio
    imports your script file, i.e. at module level.

    Raises:
        ValueError: an unknown event name (the message lists them).
        RuntimeError: called outside a script import.
    """
    if name not in CALLBACK_NAMES:
        raise ValueError(f"unknown callback {name!r}; available: {', '.join(CALLBACK_NAMES)}")
    register = _REGISTRATION.get()
    if register is None:
        raise RuntimeError("register_callback() works only at the top level of a script file, while it is loaded")
    register(name, callback)


def with_fixed_seeds(p: Request) -> Request:
    """``p`` with its random (-1) seed and variation seed drawn now, so that the many
    generations of a script share them (A1111 fixes seeds before a script runs)."""
    return dataclasses.replace(p, seed=resolve_seed(p.seed), subseed=resolve_seed(p.subseed))


def merge_results(parts: list[Processed]) -> Processed:
    """One result holding the images, seeds, infotexts and messages of several generations, in order.

    Raises:
        ValueError: no parts.
    """
    if not parts:
        raise ValueError("nothing to merge: the script made no generations")
    merged = Processed(request=parts[0].request, extra_parameters=dict(parts[0].extra_parameters))
    for part in parts:
        merged.extend(part)
        merged.duration_s += part.duration_s
    return merged


def prepend_grid(result: Processed, grid: Image.Image, infotext: str = "") -> Processed:
    """Put ``grid`` first, as A1111 shows a script's grid before its images (with the first
    image's seeds, and its infotext unless another is given)."""
    result.prepend_grid(grid, infotext)
    return result


def append_image(result: Processed, image: Image.Image, infotext: str = "") -> Processed:
    """Add ``image`` after the generated ones without saving it (ControlNet's detected maps),
    with the first image's seeds so every per-image list stays the same length."""
    result.images.append(image)
    result.seeds.append(result.seeds[0] if result.seeds else -1)
    result.subseeds.append(result.subseeds[0] if result.subseeds else -1)
    result.infotexts.append(infotext)
    return result


def args_by_position(title: str, names: Sequence[str], positional: Sequence[Any]) -> dict[str, Any]:
    """``positional`` paired with ``names`` in order (for ``Script.api_args``); fewer values leave
    the last names out.

    Raises:
        ScriptArgError: more values than names (the message lists the names, in order).
    """
    if len(positional) > len(names):
        raise ScriptArgError(f"{title}: expected at most {len(names)} arguments ({', '.join(names) or 'none'}), "
                             f"got {len(positional)}")
    return dict(zip(names, positional, strict=False))


class _AlwaysVisibleType:
    """The type of ``AlwaysVisible``: one immutable sentinel, as A1111's ``scripts.AlwaysVisible``."""

    def __repr__(self) -> str:
        return "AlwaysVisible"


#: What ``show()`` returns for an always-on script (its own accordion, runs on every job).
AlwaysVisible = _AlwaysVisibleType()


@dataclass(frozen=True)
class ScriptResources:
    """Model libraries the studio shares with every script (``Script.resources``).

    ``controlnets``: the ControlNets in ``models/ControlNet`` (``names()``, ``load(name, device,
    dtype, context_width, pooled_width)``, ``short_hash(name)``, ``problem(name)``,
    ``mismatch(name, family)``); ``preprocessors``: the
    ControlNet preprocessors (``run(module, image, resolution, threshold_a, threshold_b, seed)``,
    ``problem(module)``), reading annotator weights from ``models/annotators``; ``upscalers``:
    the upscalers ("None", "Lanczos", "Nearest", then the models of ``models/ESRGAN``, in the
    order ``/sdapi/v1/upscalers`` lists them: ``names()``, ``get(name).upscale(image, scale)``).
    None where the studio has none (tests).
    """

    controlnets: ControlNetLibrary | None = None
    preprocessors: Preprocessors | None = None
    upscalers: UpscalerLibrary | None = None


@dataclass(frozen=True)
class JobModel:
    """The checkpoint a job will run on, as known when it is submitted (``Script.check``): its
    name and family (``family.id`` "sd15", "sd2", "sdxl", "sdxl_inpaint" ...; ``family.label``
    "SD1.x", "SDXL" ...)."""

    checkpoint: str
    family: ModelFamily


class ScriptCheckError(ScriptArgError):
    """What ``Script.check`` raises to refuse a request; ``argument`` is the path of the argument
    at fault inside the script's ``args`` (``"args[0].model"``), which the 422 names."""

    def __init__(self, message: str, argument: str = "") -> None:
        super().__init__(message)
        self.argument = argument


@dataclass(frozen=True)
class JobHandle:
    """What a selectable script's ``run`` may do with its job (bound by the studio per job).

    ``process_images(request, save)`` generates; ``save_image(image, request, infotext,
    is_grid)`` saves into the tab's image or grid folder when the settings say so;
    ``apply_styles(request, names)`` adds saved styles to its prompts.
    """

    process_images: Callable[[Request, bool], Processed]
    save_image: Callable[[Image.Image, Request, str, bool], Path | None]
    apply_styles: Callable[[Request, Sequence[str]], Request] = lambda p, names: p


class Script:
    """Base class of user scripts; every hook is a no-op until overridden.

    Selectable scripts (``show`` returns True) appear in the "Script" dropdown and replace
    the job with ``run``; always-on scripts (``show`` returns ``AlwaysVisible``) run their
    hooks on every job where they are enabled.

    Arguments reach a script by name (``ui``'s keys). A1111 clients send them as a list
    instead (``script_args: [...]``, ``alwayson_scripts: {"Title": {"args": [...]}}``), in the
    order of the values the A1111 script's ``ui()`` returns; ``api_args`` turns that list into
    names. Its default pairs the list with ``ui``'s names in order, which is right when ``ui``
    lists them in the A1111 order; a port whose names, order, index-valued choices or
    placeholders differ from its A1111 original overrides it (the built-in scripts do).
    """

    def title(self) -> str:
        """The name in the UI; the API finds scripts by it, case-insensitively."""
        return type(self).__name__

    def show(self, is_img2img: bool) -> bool | _AlwaysVisibleType:
        """False: hidden on this tab; True: in the Script dropdown; ``AlwaysVisible``: always on."""
        return True

    def ui(self, is_img2img: bool) -> Mapping[str, ArgSpec]:
        """The script's named arguments (see ``Slider``, ``Checkbox``, ...)."""
        return {}

    def api_args(self, positional: Sequence[Any], is_img2img: bool) -> dict[str, Any]:
        """A1111's positional arguments (``script_args`` as a list) as ``{name: value}``.

        ``positional`` is in the order of the A1111 script's ``run(p, *args)``; a shorter list
        (older A1111 versions sent fewer) leaves the rest at their defaults. Return only what
        was given: the studio fills in the defaults and checks every value against ``ui``
        afterwards. The default pairs the list with ``ui``'s names in order.

        Raises:
            ScriptArgError: more values than the script takes, or a value that means nothing
                here; say which (``script_args[2]``) and why.
        """
        return args_by_position(self.title(), tuple(self.ui(is_img2img)), positional)

    def run(self, p: Request, **args: Any) -> Processed | None:
        """Selectable scripts: do the whole job, calling ``self.process_images(request)`` for
        each generation it needs, and return what to show."""
        return None

    def process_images(self, p: Request, save: bool = True) -> Processed:
        """Run one request to the end with this job's model, progress, cancel token and always-on
        scripts; ``save=False`` keeps its images out of the output folder (tiles, drafts).
        Only inside ``run``: the studio gives each job its own script instance."""
        return self._handle().process_images(p, save)

    def save_image(self, image: Image.Image, p: Request, infotext: str = "") -> Path | None:
        """Save an image the script made to the tab's folder ("Always save all generated images")."""
        return self._handle().save_image(image, p, infotext, False)

    def save_grid(self, grid: Image.Image, p: Request, infotext: str = "") -> Path | None:
        """Save a grid to the tab's grid folder (``outputs/txt2img-grids/DATE``) if the "Always
        save all generated image grids" setting is on; returns the file, or None. Only inside ``run``."""
        return self._handle().save_image(grid, p, infotext, True)

    def apply_styles(self, p: Request, names: Sequence[str]) -> Request:
        """``p`` with the saved styles ``names`` applied to its prompts, in order (styles.csv).

        Raises:
            ValueError: a style that does not exist (the message names it).
        """
        return self._handle().apply_styles(p, names)

    @property
    def resources(self) -> ScriptResources:
        """The studio's shared model libraries (ControlNets, preprocessors), in ``ui`` and every hook."""
        return getattr(self, "_resources", None) or ScriptResources()

    def option(self, key: str, default: Any = None) -> Any:
        """The value of an extension setting (declared through ``on_ui_settings``) for this job."""
        return getattr(self, "_options", {}).get(key, default)

    def _handle(self) -> JobHandle:
        handle = getattr(self, "_job", None)
        if handle is None:
            raise RuntimeError(f"{self.title()}: only available while the script runs a job")
        return handle

    def check(self, p: Request, model: JobModel | None, **args: Any) -> None:
        """When the job is submitted, before it is queued: raise ``ScriptCheckError`` (or
        ``ScriptArgError``) to refuse it with a 422 naming the script, e.g. for an argument that
        does not fit the checkpoint ``model`` the job will use (None: not known before it loads)."""
        return None

    def setup(self, p: Request, **args: Any) -> Request | None:
        """First of the job hooks (A1111 order: setup, before_process, process): may return a changed request."""
        return None

    def before_process(self, p: Request, **args: Any) -> Request | None:
        """After ``setup`` of every script: may return a changed request."""
        return None

    def process(self, p: Request, **args: Any) -> Request | None:
        """Before the job runs: may return a changed request (seeds are already fixed)."""
        return None

    def infotext(self, p: Request, **args: Any) -> Mapping[str, Any] | None:
        """Keys to add to each image's infotext (after ``process``), e.g. ``{"My script": 0.5}``."""
        return None

    def paste_fields(self) -> Mapping[str, str]:
        """Infotext key -> argument name: what pasting an image's infotext sets back."""
        return {}

    def patch_model(self, p: Request, patches: ModelPatches, **args: Any) -> None:
        """Once before the job (after ``process``): add this job's model patches to ``patches``
        (``patches.family`` names the model family). They apply to a clone of the UNet that
        shares its weights, for this job only; a patch that does not fit the model raises here
        (``ModelPatchError``) and disables the script for the job."""
        return None

    def before_step(self, p: Request, step: StepParams, **args: Any) -> StepParams | None:
        """Before each UNet call (A1111 ``on_cfg_denoiser``): may replace latents, conds, guidance."""
        return None

    def unet_residuals(self, p: Request, step: StepParams, call: UNetCall, **args: Any) -> UNetResiduals | None:
        """Just before the UNet call: residuals for its skip connections (a ControlNet unit's
        output for ``call.sample``); those of several scripts add up."""
        return None

    def after_unet(self, p: Request, step: StepParams, noise_pred: torch.Tensor, **args: Any) -> torch.Tensor | None:
        """After the model and CFG (A1111 ``on_cfg_after_cfg``): may replace the (B, C, h, w) model
        output (noise, v or flow prediction, as the model makes it)."""
        return None

    def after_denoise(self, p: Request, step: StepParams, denoised: torch.Tensor, **args: Any) -> torch.Tensor | None:
        """After ``after_unet``: the (B, C, h, w) prediction of the clean latents x0, the same for
        every sampler and family (with ``step.x`` and ``step.sigma``); may return a replacement x0."""
        return None

    def after_step(self, p: Request, step: StepParams, latents: torch.Tensor, **args: Any) -> torch.Tensor | None:
        """After the sampler step: may replace the (B, C, h, w) latents."""
        return None

    def before_process_batch(self, p: Request, batch_index: int, seeds: tuple[int, ...], **args: Any) -> None:
        """Before each batch, ahead of ``process_batch``."""
        return None

    def process_batch(self, p: Request, batch_index: int, seeds: tuple[int, ...], **args: Any) -> None:
        """Before each batch is denoised (0-based ``batch_index``, the seeds of its images)."""
        return None

    def postprocess_image(self, p: Request, image: Image.Image, **args: Any) -> Image.Image | None:
        """Each finished image, before its infotext is written and it is saved: may return a replacement."""
        return None

    def postprocess_batch(self, p: Request, batch_index: int, images: list[Image.Image], **args: Any) -> None:
        """After every image of a batch is finished and saved (read-only)."""
        return None

    def postprocess(self, p: Request, processed: Processed, **args: Any) -> None:
        """After the job, with everything it produced (may add ``processed.extra_parameters``)."""
        return None
