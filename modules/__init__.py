"""AIGen Studio: a local image-generation studio in the A1111 style, on diffusers + PyTorch."""

# Every entry point (webui.py, the `aigen` console script, tests, extensions) imports this
# package before diffusers or transformers, so the offline switches are always in place.
from modules import offline as _offline  # noqa: F401

__version__ = "0.1.0"
