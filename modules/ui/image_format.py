"""How the page's image components carry pixels between the server and the browser.

Gradio 6 saves a PIL/numpy image it sends to the page (a result, a Send-to image, the
editor's background) as WEBP unless told otherwise, and WEBP is lossy: an inpainted image
would change outside its mask. Every ``gr.Image``, ``gr.ImageEditor`` and ``gr.Gallery`` of
the page takes ``format=IMAGE_FORMAT`` so that what the user sees, sends and edits keeps its
exact pixels (and PNG keeps the infotext chunk too).
"""

from __future__ import annotations

__all__ = ["IMAGE_FORMAT"]

#: The file format of every image the server hands to the page: lossless PNG.
IMAGE_FORMAT = "png"
