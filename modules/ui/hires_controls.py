"""txt2img's "Hires. fix" accordion (A1111's labels and elem_ids): a second pass at a larger size.

The controls carry A1111's payload names, so their values reach ``Studio.submit_txt2img`` as
an A1111 client would send them, and PNG Info / Send to fill them back from an infotext.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gradio as gr

from modules.processing.guidance import CFG_SCALE_RANGE, DISTILLED_CFG_SCALE_RANGE
from modules.processing.sampling.samplers import SAMPLERS, SCHEDULE_TYPES

__all__ = ["HIRES_FIELDS", "build_hires_controls"]

#: The accordion's controls by A1111 payload name, in the order the Generate handler gets them.
HIRES_FIELDS = ("enable_hr", "hr_upscaler", "hr_second_pass_steps", "denoising_strength", "hr_scale",
                "hr_resize_x", "hr_resize_y", "hr_sampler_name", "hr_scheduler", "hr_prompt", "hr_negative_prompt",
                "hr_cfg", "hr_distilled_cfg")


def build_hires_controls(c: dict[str, Any], upscalers: Sequence[str]) -> None:
    """Add the Hires. fix controls to ``c``; ``upscalers``: latent modes, then image upscalers."""
    with gr.Accordion("Hires. fix", open=False, elem_id="txt2img_hr"):
        c["enable_hr"] = gr.Checkbox(label="Hires. fix", value=False, elem_id="txt2img_enable_hr")
        with gr.Row():
            c["hr_upscaler"] = gr.Dropdown(list(upscalers), value="Latent", label="Upscaler",
                                           elem_id="txt2img_hr_upscaler")
            c["hr_second_pass_steps"] = gr.Slider(0, 150, value=0, step=1, label="Hires steps",
                                                  elem_id="txt2img_hires_steps")
            c["denoising_strength"] = gr.Slider(0.0, 1.0, value=0.7, step=0.01, label="Denoising strength",
                                                elem_id="txt2img_denoising_strength")
        with gr.Row():
            c["hr_scale"] = gr.Slider(1.0, 4.0, value=2.0, step=0.05, label="Upscale by", elem_id="txt2img_hr_scale")
            c["hr_resize_x"] = gr.Slider(0, 2048, value=0, step=8, label="Resize width to",
                                         elem_id="txt2img_hr_resize_x")
            c["hr_resize_y"] = gr.Slider(0, 2048, value=0, step=8, label="Resize height to",
                                         elem_id="txt2img_hr_resize_y")
        with gr.Row():
            c["hr_sampler_name"] = gr.Dropdown(["Use same sampler", *(s.name for s in SAMPLERS)],
                                               value="Use same sampler", label="Hires sampling method",
                                               elem_id="hr_sampler")
            c["hr_scheduler"] = gr.Dropdown(["Use same scheduler", *SCHEDULE_TYPES], value="Use same scheduler",
                                            label="Hires schedule type", elem_id="hr_scheduler")
        with gr.Row():  # Forge's two hires guidance sliders; 0 keeps the first pass's value
            c["hr_cfg"] = gr.Slider(0.0, CFG_SCALE_RANGE[1], value=0.0, step=0.5, label="Hires CFG Scale",
                                    info="0: the same as CFG Scale", elem_id="txt2img_hr_cfg")
            c["hr_distilled_cfg"] = gr.Slider(0.0, DISTILLED_CFG_SCALE_RANGE[1], value=0.0, step=0.1,
                                              label="Hires Distilled CFG Scale",
                                              info="0: the same as Distilled CFG Scale (FLUX.1-dev)",
                                              elem_id="txt2img_hr_distilled_cfg")
        with gr.Row():
            c["hr_prompt"] = gr.Textbox(label="Hires prompt", lines=2, elem_id="hires_prompt",
                                        placeholder="Prompt for hires fix pass.\nLeave empty to use the same prompt.")
            c["hr_negative_prompt"] = gr.Textbox(label="Hires negative prompt", lines=2, elem_id="hires_neg_prompt",
                                                 placeholder="Leave empty to use the same negative prompt.")
