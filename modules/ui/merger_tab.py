"""The Checkpoint Merger tab (A1111's labels and elem_ids).

The merged model is written to the checkpoint folder as .safetensors (the pickle ``ckpt``
format A1111 also offers is not written: it can carry code). The checkpoint lists refresh
when the merge is done, so the new model can be chosen at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr

from modules.model_tools import MERGE_LOCKED
from modules.models.files import ModelFileError
from modules.models.merge import CONFIG_SOURCES, METHODS, MergeError

if TYPE_CHECKING:
    from modules.studio import Studio
    from modules.ui.checkpoint_lists import CheckpointLists

__all__ = ["MERGE_FIELDS", "build_merger_tab", "run_merge"]

#: The controls, in the order the Merge handler receives them.
MERGE_FIELDS = ("primary_model", "secondary_model", "tertiary_model", "custom_name", "multiplier",
                "interp_method", "save_as_half", "config_source", "bake_in_vae", "discard_weights")


def run_merge(studio: Studio, values: tuple[Any, ...], progress: Any = None) -> str:
    """Merge with the controls' ``values`` (``MERGE_FIELDS`` order); returns the result message.

    Raises:
        gr.Error: naming the setting that is wrong, or the file that could not be read.
    """
    fields = dict(zip(MERGE_FIELDS, values, strict=True))

    def report(done: int, total: int) -> None:
        if progress is not None:
            progress(done / max(total, 1), desc=f"Merging: {done}/{total} tensors")

    try:
        title = studio.model_tools.merge(fields, report)
    except MergeError as error:
        raise gr.Error(f"{error.field}: {error}") from None
    except ModelFileError as error:  # the file's name and what is wrong, never the server's folders
        raise gr.Error(error.public_message) from None
    return f"Checkpoint saved: {title}"


def build_merger_tab(studio: Studio, lists: CheckpointLists | None = None) -> None:
    """Build the tab's components and wire them; call inside a ``gr.Tab``. With ``lists``, the
    page's other checkpoint lists show the merged model as soon as the merge is done."""
    c: dict[str, Any] = {}
    titles = ["", *studio.checkpoint_titles()]
    vaes = ["None", *studio.vae_choices()[2:]]
    # Merging writes the server's disk: off where installing models is (``ModelTools.merge`` refuses too).
    allowed = studio.context.extension_install_allowed
    with gr.Row():
        with gr.Column():
            gr.Markdown("A merger of the checkpoints will be saved in your checkpoint folder as .safetensors."
                        if allowed else MERGE_LOCKED[0].upper() + MERGE_LOCKED[1:] + ".")
            with gr.Row():
                c["primary_model"] = gr.Dropdown(titles, value="", label="Primary model (A)",
                                                 elem_id="modelmerger_primary_model_name")
                c["secondary_model"] = gr.Dropdown(titles, value="", label="Secondary model (B)",
                                                   elem_id="modelmerger_secondary_model_name")
                c["tertiary_model"] = gr.Dropdown(titles, value="", label="Tertiary model (C)",
                                                  elem_id="modelmerger_tertiary_model_name")
                refresh = gr.Button("🔄", elem_id="modelmerger_refresh_checkpoint_names", min_width=40, scale=0)
            c["custom_name"] = gr.Textbox(label="Custom Name (Optional)", elem_id="modelmerger_custom_name")
            c["multiplier"] = gr.Slider(0.0, 1.0, value=0.3, step=0.05,
                                        label="Multiplier (M) - set to 0 to get model A",
                                        elem_id="modelmerger_interp_amount")
            c["interp_method"] = gr.Radio(list(METHODS), value="Weighted sum", label="Interpolation Method",
                                          elem_id="modelmerger_interp_method")
            c["save_as_half"] = gr.Checkbox(False, label="Save as float16", elem_id="modelmerger_save_as_half")
            c["config_source"] = gr.Radio(list(CONFIG_SOURCES), value=CONFIG_SOURCES[0], label="Copy config from",
                                          elem_id="modelmerger_config_method")
            c["bake_in_vae"] = gr.Dropdown(vaes, value="None", label="Bake in VAE", elem_id="modelmerger_bake_in_vae")
            c["discard_weights"] = gr.Textbox(label="Discard weights with matching name",
                                              elem_id="modelmerger_discard_weights")
            merge = gr.Button("Merge", variant="primary", elem_id="modelmerger_merge", interactive=allowed)
        with gr.Column():
            result = gr.Textbox(label="Result", interactive=False, elem_id="modelmerger_result")

    def do_merge(*values: Any, progress: Any = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008 - gradio idiom
        message = run_merge(studio, values, progress)
        choices = ["", *studio.checkpoint_titles()]
        return (message, *(gr.update(choices=choices) for _ in range(3)))

    models = [c["primary_model"], c["secondary_model"], c["tertiary_model"]]
    merged = merge.click(do_merge, inputs=[c[name] for name in MERGE_FIELDS], outputs=[result, *models],
                         api_visibility="private")

    def refresh_names() -> tuple[Any, ...]:
        choices = ["", *studio.refresh_checkpoints()]
        return tuple(gr.update(choices=choices) for _ in range(3))

    refreshed = refresh.click(refresh_names, outputs=models, api_visibility="private")
    if lists is not None:
        lists.optional.extend(models)
        lists.after(merged, refreshed)
