"""img2img, inpainting and outpainting: the request, its inputs and masks, batch folders."""
