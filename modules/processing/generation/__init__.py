"""Running a txt2img job: batches, Hires. fix, VAE encode/decode."""
