"""FLUX.1 (Black Forest Labs; dev, schnell): a 12 B rectified-flow transformer with CLIP-L and
T5-XXL text encoders and a 16-channel autoencoder.

The parts besides the transformer: ``parts`` chooses them (embedded, chosen, or the one file
that fits in ``models/text_encoder/`` / ``models/VAE/``) and loads them; ``part_files``
classifies files by their keys; ``text_encoders`` (CLIP-L, prompt encoding), ``t5`` (T5-XXL,
fp16 and fp8 files), ``autoencoder`` (the VAE, latent scale and shift) and ``tokenizers`` (the
shipped CLIP and T5 tokenizers) load them; ``weights`` reads a part's tensors one at a time.
"""
