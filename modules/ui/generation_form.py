"""What txt2img and img2img share: the prompt row, the sampler/size/seed controls, the
results column with its live progress, and the Generate/Interrupt/Skip wiring.

Each tab builds it with its own name (``txt2img``/``img2img``: the elem_id prefix, as in
A1111), its own extra controls, and its own ``submit(payload) -> job id``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gradio as gr

from modules.families.base import FamilyDefaults
from modules.processing.errors import ProcessingError, RequestValidationError
from modules.processing.jobs.queue import JobStatus
from modules.processing.prompts.prompt_preview import preview_prompt, token_counter
from modules.processing.requests import DEFAULT_DISTILLED_CFG_SCALE, DISTILLED_CFG_SCALE_RANGE
from modules.processing.sampling.samplers import SAMPLERS, schedule_choices
from modules.ui.extra_networks import build_extra_networks
from modules.ui.image_format import IMAGE_FORMAT
from modules.ui.infotext_paste import build_override_dropdown, current_options, with_override_chips
from modules.ui.output_panel import OutputPanel, build_output_panel, gallery_entries, wire_save
from modules.ui.progress import preview_image, progress_html
from modules.ui.prompt_plan_view import plan_markdown
from modules.ui.script_controls import ScriptControls, build_script_controls, wire_script_choice, with_scripts
from modules.ui.style_editor import build_style_editor, wire_style_buttons

if TYPE_CHECKING:
    from modules.studio import Studio

__all__ = ["PAYLOAD_FIELDS", "GenerationTab", "build_generation_tab", "payload_from_values", "prompt_plan",
           "stream_job", "stream_outputs", "token_count"]

#: The A1111 API name of each shared control, in the order the Generate handler receives them.
PAYLOAD_FIELDS = (
    "prompt", "negative_prompt", "sampler_name", "scheduler", "steps", "width", "height", "n_iter",
    "batch_size", "cfg_scale", "distilled_cfg_scale", "seed", "subseed", "subseed_strength", "seed_resize_from_w",
    "seed_resize_from_h", "styles",
)
_INT_FIELDS = {"steps", "width", "height", "n_iter", "batch_size", "seed", "subseed", "seed_resize_from_w",
               "seed_resize_from_h", "mask_blur", "inpaint_full_res_padding", "pixels", "script_mask_blur",
               "hr_second_pass_steps", "hr_resize_x", "hr_resize_y"}
POLL_SECONDS = 0.25
Submit = Callable[[dict[str, Any]], str]


@dataclass
class GenerationTab:
    """The components other tabs and tests need to reach."""

    controls: dict[str, Any]
    generate: Any
    interrupt: Any
    skip: Any
    panel: OutputPanel
    progress: Any
    preview: Any
    job_id: Any
    outputs: list[Any]
    resume: Any
    scripts: ScriptControls = field(default_factory=ScriptControls)
    #: The options a pasted infotext's settings are compared with (``infotext_paste.current_options``).
    current_options: Callable[[], dict[str, Any]] = dict


def payload_from_values(values: tuple[Any, ...], fields: tuple[str, ...] = PAYLOAD_FIELDS) -> dict[str, Any]:
    """Control values (in ``fields`` order) to an A1111 payload.

    Sliders and number boxes deliver floats; whole-number fields become ints when they are
    whole, and anything else is left for request validation to reject by name.
    """
    payload = dict(zip(fields, values, strict=True))
    for name in _INT_FIELDS & set(payload):
        value = payload[name]
        if isinstance(value, float) and value.is_integer():
            payload[name] = int(value)
    return payload


@functools.cache
def _tokenizer() -> Any:
    from modules.models.loader import build_clip_tokenizer

    return build_clip_tokenizer()


def token_count(text: str) -> str:
    """A1111's counter: tokens used / capacity of the 75-token chunks they fill (BREAK and
    prompt editing counted as the prompt language says; the longest step counts).

    In the server, call ``Studio.ensure_libraries`` first (see ``count_tokens``).
    """
    return token_counter(_tokenizer(), text or "")


def prompt_plan(studio: Studio, text: str, steps: float) -> dict[str, Any]:
    """The prompt's schedule, sub-prompts, weights, chunks, LoRAs and embeddings (``preview_prompt``)
    for the API and for 🔍's tables; LoRA and embedding names are looked up in the studio's folders."""
    models = studio.context.models
    return preview_prompt(_tokenizer(), text or "", max(1, int(steps or 1)), models.loras, models.embeddings)


def stream_job(studio: Studio, job_id: str, preview_every: int,
               poll_seconds: float = POLL_SECONDS) -> Iterator[tuple[JobStatus, Any]]:
    """Yield (status, preview) while the job runs, then its final status once.

    A preview is decoded only every ``preview_every`` steps (0 or less: never).
    """
    last_preview_step = -1
    while True:
        status = studio.status(job_id)
        if status.position is None:
            yield status, None
            return
        preview = None
        if status.state == "running" and preview_every > 0 and status.step - last_preview_step >= preview_every:
            preview, last_preview_step = preview_image(status), status.step
        yield status, preview
        time.sleep(poll_seconds)


def _final_outputs(status: JobStatus) -> tuple[Any, Any, Any, Any]:
    """Gallery entries, info text, last seed and the per-image infotexts of a finished job.

    Generation info shows the first image's infotext (a batch grid's is the same), after the
    job's notices. A job that made no image (failed, cancelled in the queue, interrupted before
    its first step) leaves the previous results in the gallery, as A1111 does; a failure's
    message goes to the info box.
    """
    result = status.result
    if result is None or not result.images:
        notices = list(result.notices) if result is not None else []
        message = "\n\n".join([*notices, *([status.public_error] if status.public_error else [])])
        return gr.update(), message or gr.update(), gr.update(), gr.update()
    first = min(result.index_of_first_image, len(result.images) - 1)
    images = gallery_entries(result.images, result.seeds, result.index_of_first_image)
    info = "\n\n".join([*result.notices, result.infotexts[first]])
    if result.hook_errors:
        info += "\n\nScript errors:\n" + "\n".join(result.hook_errors)
    # Opened on the first result, large, as A1111's gallery does (the thumbnails below it).
    return gr.update(value=images, selected_index=0), info, result.seeds[first], list(result.infotexts)


def stream_outputs(studio: Studio, job_id: str) -> Iterator[tuple[Any, ...]]:
    """The tab's outputs (job id, progress, preview, gallery, info, last seed, infotexts) over a job's life."""
    settings = studio.settings
    every = settings.show_progress_every_n_steps if settings.live_previews_enable else 0
    bar = progress_html if settings.show_progressbar else (lambda status: "")
    for status, preview in stream_job(studio, job_id, every, settings.live_preview_refresh_period / 1000):
        if status.position is not None:
            preview_update = preview if preview is not None else gr.update()
            yield job_id, bar(status), preview_update, gr.update(), gr.update(), gr.update(), gr.update()
        else:
            images, info, last_seed, infotexts = _final_outputs(status)
            yield job_id, bar(status), None, images, info, last_seed, infotexts


def _generate_handler(studio: Studio, submit: Submit, fields: tuple[str, ...]):
    def generate(*values: Any) -> Iterator[tuple[Any, ...]]:
        try:
            job_id = submit(payload_from_values(values, fields))
        except RequestValidationError as error:
            raise gr.Error(f"{error.field}: {error.message}") from None
        except ProcessingError as error:
            raise gr.Error(str(error)) from None
        yield from stream_outputs(studio, job_id)

    return generate


def _resume_handler(studio: Studio):
    def resume(job_id: str) -> Iterator[tuple[Any, ...]]:
        """After a page reload: pick up the job this browser started last, running or finished."""
        try:
            studio.status(job_id)
        except KeyError:  # none, or too old to be kept
            return
        yield from stream_outputs(studio, job_id)

    return resume


def _prompt_row(c: dict[str, Any], tab: str, show_counters: bool, style_names: list[str]) -> None:
    with gr.Row():
        with gr.Column(scale=6):
            c["prompt"] = gr.Textbox(label="Prompt", lines=3, elem_id=f"{tab}_prompt",
                                     placeholder="Prompt (press Ctrl+Enter to generate)")
            with gr.Row():
                c["prompt_tokens"] = gr.Markdown("0/75", elem_id=f"{tab}_token_counter", visible=show_counters)
                c["preview_prompt"] = gr.Button("🔍 Show what the prompt does", elem_id=f"{tab}_prompt_preview",
                                                size="sm", scale=0, min_width=40)
            # Tables a person reads (modules.ui.prompt_plan_view); the API's /prompt_preview gives the JSON.
            # No LaTeX: a prompt's "$$" is text.
            c["prompt_plan"] = gr.Markdown("", visible=False, elem_id=f"{tab}_prompt_plan", latex_delimiters=[],
                                           elem_classes=["aigen-prompt-plan"])
            c["negative_prompt"] = gr.Textbox(label="Negative prompt", lines=2, elem_id=f"{tab}_neg_prompt")
            c["negative_tokens"] = gr.Markdown("0/75", elem_id=f"{tab}_negative_token_counter",
                                               visible=show_counters)
        with gr.Column(scale=1, min_width=160, elem_id=f"{tab}_actions_column"):
            c["generate"] = gr.Button("Generate", variant="primary", elem_id=f"{tab}_generate")
            with gr.Row():
                c["interrupt"] = gr.Button("Interrupt", elem_id=f"{tab}_interrupt")
                c["skip"] = gr.Button("Skip", elem_id=f"{tab}_skip")
            c["styles"] = gr.Dropdown(style_names, value=[], multiselect=True, label="Styles",
                                      elem_id=f"{tab}_styles")
            with gr.Row():
                c["apply_styles"] = gr.Button("📋 Apply", elem_id=f"{tab}_style_apply", min_width=40)
                c["save_style"] = gr.Button("💾 Save", elem_id=f"{tab}_style_save", min_width=40)
                c["edit_styles"] = gr.Button("✏️ Edit", elem_id=f"{tab}_styles_edit_button", min_width=40)
            c["style_name"] = gr.Textbox(show_label=False, placeholder="Name to save the prompts as a style",
                                         elem_id=f"{tab}_style_name")


def scheduler_choices(sampler_name: str, schedule_type: str) -> Any:
    """Schedule type dropdown update for a newly chosen sampler: its schedule types, keeping the
    current one where the sampler can run it, else "Automatic"."""
    choices = schedule_choices(sampler_name or "")
    return gr.update(choices=list(choices), value=schedule_type if schedule_type in choices else "Automatic")


def _sampler_and_size(c: dict[str, Any], tab: str, defaults: FamilyDefaults) -> None:
    side = defaults.size
    with gr.Row():
        c["sampler_name"] = gr.Dropdown([s.name for s in SAMPLERS], value=defaults.sampler, label="Sampling method",
                                        elem_id=f"{tab}_sampling")
        c["scheduler"] = gr.Dropdown(list(schedule_choices(defaults.sampler)), value=defaults.scheduler,
                                     label="Schedule type", elem_id=f"{tab}_scheduler")
    # Only the schedule types the chosen sampler can run are offered (A1111 offers all of them).
    c["sampler_name"].change(scheduler_choices, inputs=[c["sampler_name"], c["scheduler"]], outputs=[c["scheduler"]],
                             api_visibility="private", queue=False)
    # Steps on a row of its own, as in A1111: beside the two dropdowns its label wrapped at 1280 px.
    c["steps"] = gr.Slider(1, 150, value=defaults.steps, step=1, label="Sampling steps", elem_id=f"{tab}_steps")
    # A1111's layout: width over height, the ⇅ button beside them, batch count over size beside that,
    # so every label has room at 1280 px.
    with gr.Row(elem_id=f"{tab}_size_row"):
        with gr.Column(scale=3, min_width=200, elem_id=f"{tab}_column_size"):
            c["width"] = gr.Slider(64, 2048, value=side, step=8, label="Width", elem_id=f"{tab}_width")
            c["height"] = gr.Slider(64, 2048, value=side, step=8, label="Height", elem_id=f"{tab}_height")
        with gr.Column(scale=0, min_width=40, elem_id=f"{tab}_dimensions_row"):
            c["swap"] = gr.Button("⇅", elem_id=f"{tab}_res_switch_btn", min_width=40, scale=0)
        with gr.Column(scale=2, min_width=180, elem_id=f"{tab}_column_batch"):
            c["n_iter"] = gr.Slider(1, 100, value=1, step=1, label="Batch count", elem_id=f"{tab}_batch_count")
            c["batch_size"] = gr.Slider(1, 8, value=1, step=1, label="Batch size", elem_id=f"{tab}_batch_size")


def _guidance_and_seed(c: dict[str, Any], tab: str, defaults: FamilyDefaults) -> None:
    c["cfg_scale"] = gr.Slider(1.0, 30.0, value=defaults.cfg_scale, step=0.5, label="CFG Scale",
                               elem_id=f"{tab}_cfg_scale")
    # Forge's slider (name, range, default); always sent, and models without distilled guidance ignore it.
    c["distilled_cfg_scale"] = gr.Slider(*DISTILLED_CFG_SCALE_RANGE, value=DEFAULT_DISTILLED_CFG_SCALE, step=0.1,
                                         label="Distilled CFG Scale", elem_id=f"{tab}_distilled_cfg_scale",
                                         info="FLUX.1-dev only; other models ignore it")
    with gr.Row():
        c["seed"] = gr.Number(value=-1, label="Seed", precision=0, elem_id=f"{tab}_seed")
        c["random_seed"] = gr.Button("🎲", elem_id=f"{tab}_random_seed", min_width=40, scale=0)
        c["reuse_seed"] = gr.Button("♻️", elem_id=f"{tab}_reuse_seed", min_width=40, scale=0)
    with gr.Accordion("Extra", open=False, elem_id=f"{tab}_seed_extras"):
        with gr.Row():
            c["subseed"] = gr.Number(value=-1, label="Variation seed", precision=0, elem_id=f"{tab}_subseed")
            c["subseed_strength"] = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Variation strength",
                                              elem_id=f"{tab}_subseed_strength")
        with gr.Row():
            c["seed_resize_from_w"] = gr.Slider(0, 2048, value=0, step=8, label="Resize seed from width",
                                                elem_id=f"{tab}_seed_resize_from_w")
            c["seed_resize_from_h"] = gr.Slider(0, 2048, value=0, step=8, label="Resize seed from height",
                                                elem_id=f"{tab}_seed_resize_from_h")


Extra = Callable[[dict[str, Any]], None]


def build_generation_tab(studio: Studio, tab: str, submit: Submit, extra_fields: tuple[str, ...] = (),
                         above_settings: Extra | None = None, below_size: Extra | None = None,
                         builtin_scripts: tuple[str, ...] = (), after_scripts: Extra | None = None,
                         ) -> GenerationTab:
    """Build a generation tab (call inside a ``gr.Tab``) and wire it.

    ``above_settings(c)`` / ``below_size(c)`` add the tab's own controls to ``c`` in the left
    column (img2img: the input images above, denoising strength below the size); the values
    of ``extra_fields`` (keys of ``c``) reach ``submit`` by those names after the shared ones.
    The Script dropdown (``c["script_name"]``) offers ``builtin_scripts`` (the tab's own, whose
    controls ``after_scripts(c)`` adds) and the user scripts; always-on scripts get accordions.
    """
    c: dict[str, Any] = {}
    show_counters = not studio.settings.disable_token_counters
    _prompt_row(c, tab, show_counters, list(studio.styles.load()))
    build_extra_networks(studio, c, tab)  # A1111's card browser, under the prompts
    style_editor = build_style_editor(tab)
    with gr.Row():  # A1111's layout: settings on the left, results on the right
        with gr.Column(scale=1):
            if above_settings:
                above_settings(c)
            # The checkpoint's own size, not A1111's fixed 512: the demo model draws 128x128; and
            # its family's sampler, steps and CFG (A1111's for SD; Euler at CFG 1 for FLUX.1).
            defaults = studio.family_defaults()
            _sampler_and_size(c, tab, defaults)
            if below_size:
                below_size(c)
            _guidance_and_seed(c, tab, defaults)
            c["override_settings"] = build_override_dropdown(tab)  # filled by a pasted infotext
            scripts = build_script_controls(studio, c, tab, builtin_scripts)
            if after_scripts:
                after_scripts(c)
        with gr.Column(scale=1):
            progress = gr.HTML("", elem_id=f"{tab}_progress")
            preview = gr.Image(label="Live preview", type="pil", interactive=False, elem_id=f"{tab}_preview",
                               height=192, format=IMAGE_FORMAT)
            panel = build_output_panel(tab)
    # The last job id lives in the browser, so a reloaded page can restore its progress/result.
    job_id = gr.BrowserState("", storage_key=f"aigen-{tab}-job")
    fields = (PAYLOAD_FIELDS + extra_fields + ("script_name",) * ("script_name" not in extra_fields) + scripts.fields
              + ("override_settings",))
    submit = with_override_chips(with_scripts(submit, scripts, studio, tab == "img2img"))
    wire_script_choice(c, scripts)
    outputs = [job_id, progress, preview, panel.gallery, panel.info, gr.State(-1), panel.infotexts]
    for trigger in (c["generate"].click, c["prompt"].submit):
        trigger(_generate_handler(studio, submit, fields), inputs=[c[name] for name in fields], outputs=outputs,
                api_visibility="private", concurrency_limit=None)
    _wire_buttons(studio, c, job_id, last_seed=outputs[5], show_counters=show_counters)
    wire_style_buttons(studio.styles, c, style_editor)
    wire_save(panel, lambda: studio.output_folder("outdir_save"))
    return GenerationTab(c, c["generate"], c["interrupt"], c["skip"], panel, progress, preview, job_id, outputs,
                         _resume_handler(studio), scripts, lambda: current_options(studio))


def _wire_buttons(studio: Studio, c: dict[str, Any], job_id: Any, last_seed: Any, show_counters: bool) -> None:
    instant = {"api_visibility": "private", "queue": False}
    c["interrupt"].click(lambda jid: studio.interrupt(jid or None) and None, inputs=[job_id], outputs=None, **instant)
    c["skip"].click(lambda jid: studio.skip(jid or None) and None, inputs=[job_id], outputs=None, **instant)
    c["swap"].click(lambda w, h: (h, w), inputs=[c["width"], c["height"]], outputs=[c["width"], c["height"]],
                    **instant)
    c["random_seed"].click(lambda: -1, outputs=[c["seed"]], **instant)
    c["reuse_seed"].click(lambda s: s, inputs=[last_seed], outputs=[c["seed"]], **instant)

    def count_tokens(text: str) -> str:
        studio.ensure_libraries()
        return token_count(text)

    def show_plan(text: str, negative: str, steps: float) -> Any:
        studio.ensure_libraries()
        plan = plan_markdown(prompt_plan(studio, text, steps), prompt_plan(studio, negative, steps))
        return gr.update(value=plan, visible=True)

    c["preview_prompt"].click(show_plan, inputs=[c["prompt"], c["negative_prompt"], c["steps"]],
                              outputs=[c["prompt_plan"]], api_visibility="private")
    counters = (("prompt", "prompt_tokens"), ("negative_prompt", "negative_tokens")) if show_counters else ()
    for box, counter in counters:
        c[box].change(count_tokens, inputs=[c[box]], outputs=[c[counter]], trigger_mode="always_last", **instant)
