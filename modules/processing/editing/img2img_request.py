"""The img2img / inpainting request: a txt2img request plus the input image(s), mask and
how to use them. A1111 names (``denoising_strength``, ``inpainting_fill``,
``inpaint_full_res``) appear only at the edges; see ``api_fields``."""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

from modules.processing.editing.image_ops import RESIZE_MODES
from modules.processing.errors import RequestValidationError
from modules.processing.intake.image_input import check_input_pixels
from modules.processing.requests import Txt2ImgRequest, check_float, check_int

__all__ = ["INPAINT_AREAS", "MASK_MODES", "MASKED_CONTENT", "Img2ImgRequest"]

#: A1111's "Masked content" choices, in the order of the API's integer ``inpainting_fill``.
MASKED_CONTENT = ("fill", "original", "latent noise", "latent nothing")
MASK_MODES = ("Inpaint masked", "Inpaint not masked")
INPAINT_AREAS = ("Whole picture", "Only masked")


@dataclass(frozen=True)
class Img2ImgRequest(Txt2ImgRequest):
    """img2img when ``mask`` is None, inpainting otherwise.

    Attributes:
        init_images: input images; image ``k`` of the job starts from ``init_images[k % n]``.
        mask: white = repaint (``inpaint_not_masked`` swaps that); any size, stretched to
            the first input image's size.
        strength: 0 returns the input unchanged, 1 ignores it (A1111 "Denoising strength");
            ``int(steps * strength)`` steps run, the last ones of a ``steps``-step schedule.
        resize_mode: one of ``RESIZE_MODES``.
        mask_blur_x / mask_blur_y: Gaussian standard deviation of the mask edge, px.
        masked_content: one of ``MASKED_CONTENT``: what the masked area starts from.
        inpaint_only_masked: "Only masked": generate the masked area's padded box at full
            size and paste it back, so the output keeps the input's size.
        only_masked_padding: px around the mask's bounding box for "Only masked".
        initial_noise_multiplier: A1111's "Noise multiplier for img2img", 0 to 1.5: scales the
            noise added to the input (below 1 keeps more of it, smoother results).
    """

    init_images: tuple[Image.Image, ...] = field(default=(), compare=False)
    mask: Image.Image | None = field(default=None, compare=False)
    strength: float = 0.75
    resize_mode: str = RESIZE_MODES[0]
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    inpaint_not_masked: bool = False
    masked_content: str = "original"
    inpaint_only_masked: bool = False
    only_masked_padding: int = 32
    initial_noise_multiplier: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hires is not None:
            raise RequestValidationError("enable_hr", "Hires. fix is a txt2img option; img2img sets its size directly")
        images = self.init_images
        if isinstance(images, Image.Image):
            images = (images,)
        if not isinstance(images, (tuple, list)) or not images:
            raise RequestValidationError("init_images", "must hold at least one image")
        for image in (*images, *((self.mask,) if self.mask is not None else ())):
            name = "mask" if image is self.mask else "init_images"
            if not isinstance(image, Image.Image):
                raise RequestValidationError(name, f"must be an image, got {type(image).__name__}")
            check_input_pixels(image.size, name)  # base64 ones were checked from their header already
        object.__setattr__(self, "init_images", tuple(images))
        check_float("denoising_strength", self.strength, 0.0, 1.0)
        check_int("mask_blur_x", self.mask_blur_x, 0, 64)
        check_int("mask_blur_y", self.mask_blur_y, 0, 64)
        check_int("inpaint_full_res_padding", self.only_masked_padding, 0, 256)
        check_float("initial_noise_multiplier", self.initial_noise_multiplier, 0.0, 1.5)
        for name, value, choices in (("resize_mode", self.resize_mode, RESIZE_MODES),
                                     ("inpainting_fill", self.masked_content, MASKED_CONTENT)):
            if value not in choices:
                raise RequestValidationError(name, f"must be one of {', '.join(choices)}; got {value!r}")
        for name, value in (("inpainting_mask_invert", self.inpaint_not_masked),
                            ("inpaint_full_res", self.inpaint_only_masked)):
            if not isinstance(value, bool):
                raise RequestValidationError(name, f"must be true or false, got {value!r}")

    @property
    def is_inpaint(self) -> bool:
        return self.mask is not None

    def steps_to_run(self) -> int:
        """Sampling steps actually run: ``int(steps * strength)``, at least 1 unless strength is 0."""
        if self.strength <= 0:
            return 0
        return max(1, min(int(self.num_inference_steps * self.strength), self.num_inference_steps))
