"""Model families, one package each (sd1, sd2, sdxl, flux, ...).

A family knows everything that differs between model architectures: how to recognise its files,
the configs it ships, how to load it from each file layout, its text encoding, latent format,
denoiser call, prediction type, defaults and capabilities. Processing runs every family through
one loop; see docs/architecture.md. Layer: below processing, above models (files, registry).
"""
