"""AIGen Studio: a local image-generation studio in the A1111 style, on diffusers + PyTorch."""

__version__ = "0.1.0"
