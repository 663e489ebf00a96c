"""The Extras tab: upscaling finished images (single, batch, folder)."""
