"""Pixel-space preparation for img2img and inpainting, with A1111's semantics.

Resize modes, masks (binary, inverted, blurred), the "Only masked" crop region, the "fill"
masked-content pre-fill and the final composite of the original over the unmasked area.
Masks are PIL ``L`` images: 255 marks pixels to repaint, 0 pixels to keep.
"""

from __future__ import annotations

from PIL import Image, ImageFilter, ImageOps

__all__ = [
    "RESIZE_MODES",
    "binary_mask",
    "blur_mask",
    "composite_original",
    "crop_region",
    "expand_canvas",
    "fill_masked",
    "flatten",
    "invert_mask",
    "resize_image",
]

#: A1111's resize modes, in the order of the API's integer ``resize_mode``.
RESIZE_MODES = ("Just resize", "Crop and resize", "Resize and fill", "Just resize (latent upscale)")
_LANCZOS = Image.Resampling.LANCZOS


def flatten(image: Image.Image, background: str = "#ffffff") -> Image.Image:
    """RGB copy of ``image``; transparent pixels become ``background`` (A1111's default white)."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, background)
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def resize_image(image: Image.Image, width: int, height: int, mode: str) -> Image.Image:
    """Fit ``image`` to ``width`` x ``height`` the way the resize mode says.

    * Just resize (and its latent-upscale variant, whose latents are resized later): stretch.
    * Crop and resize: scale to cover the target, then cut the centre.
    * Resize and fill: scale to fit inside, then fill the empty bands by stretching the
      image's edge rows/columns outward (A1111), so no flat border appears.
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r}; expected one of {', '.join(RESIZE_MODES)}")
    if mode in (RESIZE_MODES[0], RESIZE_MODES[3]) or image.size == (width, height):
        return image.resize((width, height), _LANCZOS)
    ratio, source_ratio = width / height, image.width / image.height
    if mode == RESIZE_MODES[1]:
        scale = width / image.width if ratio > source_ratio else height / image.height
        resized = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), _LANCZOS)
        left, top = (resized.width - width) // 2, (resized.height - height) // 2
        return resized.crop((left, top, left + width, top + height))
    return _resize_and_fill(image, width, height, ratio < source_ratio)


def _resize_and_fill(image: Image.Image, width: int, height: int, bands_top_bottom: bool) -> Image.Image:
    if bands_top_bottom:
        inner = (width, max(1, round(image.height * width / image.width)))
    else:
        inner = (max(1, round(image.width * height / image.height)), height)
    resized = image.resize(inner, _LANCZOS)
    canvas = Image.new(image.mode, (width, height))
    offset = ((width - inner[0]) // 2, (height - inner[1]) // 2)
    canvas.paste(resized, offset)
    if bands_top_bottom and offset[1] > 0:
        canvas.paste(resized.crop((0, 0, width, 1)).resize((width, offset[1])), (0, 0))
        bottom = height - offset[1] - inner[1]
        if bottom > 0:
            canvas.paste(resized.crop((0, inner[1] - 1, width, inner[1])).resize((width, bottom)),
                         (0, offset[1] + inner[1]))
    elif not bands_top_bottom and offset[0] > 0:
        canvas.paste(resized.crop((0, 0, 1, height)).resize((offset[0], height)), (0, 0))
        right = width - offset[0] - inner[0]
        if right > 0:
            canvas.paste(resized.crop((inner[0] - 1, 0, inner[0], height)).resize((right, height)),
                         (offset[0] + inner[0], 0))
    return canvas


def binary_mask(mask: Image.Image, size: tuple[int, int] | None = None) -> Image.Image:
    """A mask image as 0/255 ``L``: white (> 128) means repaint.

    An RGBA mask with any transparency is read from its alpha (a painted layer); anything
    else from its grey level. ``size``: a mask of another size is first stretched to it,
    so a mask drawn on a scaled copy of the image still lines up.
    """
    if mask.mode in ("RGBA", "LA") and mask.getchannel("A").getextrema()[0] < 255:
        grey = mask.getchannel("A")
    else:
        grey = mask.convert("L")
    if size is not None and grey.size != size:
        grey = grey.resize(size, Image.Resampling.BILINEAR)
    return grey.point(lambda value: 255 if value > 128 else 0)


def blur_mask(mask: Image.Image, blur_x: int, blur_y: int) -> Image.Image:
    """Gaussian blur with standard deviations ``blur_x``/``blur_y`` px (A1111 "Mask blur")."""
    if blur_x <= 0 and blur_y <= 0:
        return mask
    return mask.filter(ImageFilter.GaussianBlur((max(blur_x, 0), max(blur_y, 0))))


def invert_mask(mask: Image.Image) -> Image.Image:
    """"Inpaint not masked": repaint everything except what was painted."""
    return ImageOps.invert(mask.convert("L"))


def crop_region(mask: Image.Image, padding: int, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The box "Only masked" generates in: the mask's bounding box grown by ``padding`` px,
    then widened or heightened to the ``width``:``height`` aspect ratio, clamped to the image.

    Returns (left, top, right, bottom), or None when the mask is empty.
    """
    box = mask.point(lambda value: 255 if value > 0 else 0).getbbox()
    if box is None:
        return None
    left, top = max(box[0] - padding, 0), max(box[1] - padding, 0)
    right, bottom = min(box[2] + padding, mask.width), min(box[3] + padding, mask.height)
    left, right = _grow_span(left, right, (bottom - top) * width / height, mask.width)
    top, bottom = _grow_span(top, bottom, (right - left) * height / width, mask.height)
    return left, top, right, bottom


def _grow_span(start: int, end: int, wanted: float, limit: int) -> tuple[int, int]:
    """Grow [start, end) evenly to ``wanted`` length (when shorter), shifting it to stay in [0, limit)."""
    missing = round(wanted) - (end - start)
    if missing <= 0:
        return start, end
    start, end = start - missing // 2, end + missing - missing // 2
    if start < 0:
        end, start = end - start, 0
    if end > limit:
        start, end = max(start - (end - limit), 0), limit
    return start, end


def fill_masked(image: Image.Image, mask: Image.Image) -> Image.Image:
    """"fill": paint the masked area with the surrounding colours before encoding.

    Blurs of the kept pixels, from wide to narrow, are layered into the hole (A1111's
    approach), so the model starts from the neighbourhood's colours instead of the old
    content. Blurring happens premultiplied by alpha ("RGBa"), so the hole's transparent
    pixels do not darken the colours they are averaged with.
    """
    holes = image.convert("RGBA")
    holes.putalpha(ImageOps.invert(mask.convert("L")))
    filled = Image.new("RGBA", holes.size)
    for radius, repeats in ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)):
        blurred = holes.convert("RGBa").filter(ImageFilter.GaussianBlur(radius)).convert("RGBA") if radius else holes
        for _ in range(repeats):
            filled.alpha_composite(blurred)
    result = image.convert("RGB")
    result.paste(filled.convert("RGB"), mask=mask.convert("L"))
    return result


def composite_original(generated: Image.Image, original: Image.Image, blurred_mask: Image.Image) -> Image.Image:
    """Put the original back wherever the (blurred) mask is below full strength, so pixels
    outside the mask are the input's own, not a VAE round trip of them."""
    return Image.composite(generated.convert("RGB"), original.convert("RGB"), blurred_mask.convert("L"))


def expand_canvas(image: Image.Image, pixels: int, directions: tuple[str, ...]) -> tuple[Image.Image, Image.Image]:
    """Outpainting's canvas: ``image`` grown by ``pixels`` on each of ``directions``
    (left, right, up, down), the new bands pre-filled from the edge, and the mask of the bands.

    Returns (canvas RGB, mask L with 255 on the new bands).
    """
    unknown = set(directions) - {"left", "right", "up", "down"}
    if unknown or not directions:
        raise ValueError(f"outpainting directions must be among left, right, up, down; got {directions!r}")
    grow = {d: pixels if d in directions else 0 for d in ("left", "right", "up", "down")}
    size = (image.width + grow["left"] + grow["right"], image.height + grow["up"] + grow["down"])
    canvas = Image.new("RGB", size)
    canvas.paste(image.convert("RGB"), (grow["left"], grow["up"]))
    mask = Image.new("L", size, 255)
    mask.paste(0, (grow["left"], grow["up"], grow["left"] + image.width, grow["up"] + image.height))
    return fill_masked(canvas, mask), mask
