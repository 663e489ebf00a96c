"""The denoising loop and what it runs on: the denoiser view (sigma, x, denoised), hooks, A1111
sampler names on diffusers schedulers, sigma schedules, seeds and noise, live previews.
"""
