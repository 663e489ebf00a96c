"""FLUX.1 (Black Forest Labs; dev, schnell): a 12 B rectified-flow transformer with CLIP-L and
T5-XXL text encoders and a 16-channel autoencoder."""
