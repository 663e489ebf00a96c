"""Peak device memory and time of a 4x upscaler, whole image against tiles, side by side.

    .venv/bin/python bench/upscaler_tiling.py [--device cuda] [--sizes 512,1024,2048] [--tiles 0,192,512]

A full-size ESRGAN (RRDB: 64 filters, 23 blocks, 4x; random weights: speed and memory do not
depend on their values) is saved as a user's .safetensors file and loaded through
``UpscalerLibrary``, as the Extras tab does. Each input size runs once per tile setting
(0 = the whole image in one call) after a warm-up; "OOM" marks a run that did not fit.
The claim it checks: tiles keep peak device memory flat as the image grows, so a 4x upscale
of 2048² fits where the whole-image call does not.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import modules  # noqa: E402,F401  (offline environment first)


def _measure(library: object, size: int, device: str) -> tuple[str, str]:
    import torch
    from PIL import Image

    image = Image.frombytes("RGB", (size, size), torch.randint(0, 256, (size * size * 3,), dtype=torch.uint8)
                            .numpy().tobytes())
    upscaler = library.get(  # type: ignore[attr-defined]
        "esrgan-4x")
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    try:
        upscaler.upscale(image, 4)
    except torch.OutOfMemoryError:
        return "OOM", "-"
    if device == "cuda":
        torch.cuda.synchronize()
        peak = f"{torch.cuda.max_memory_allocated() / 2**20:,.0f} MiB"
    else:
        peak = "n/a (CPU)"
    return peak, f"{time.perf_counter() - started:.2f} s"


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", default="512,1024,2048")
    parser.add_argument("--tiles", default="0,192,512")
    args = parser.parse_args()
    from safetensors.torch import save_file
    from spandrel.architectures.ESRGAN import ESRGAN

    from modules.models.upscalers import UpscalerLibrary

    sizes = [int(s) for s in args.sizes.split(",")]
    tiles = [int(t) for t in args.tiles.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        weights = ESRGAN(num_filters=64, num_blocks=23, scale=4).state_dict()
        save_file({k: v.contiguous() for k, v in weights.items()}, str(Path(folder) / "esrgan-4x.safetensors"))
        print(f"device: {args.device}; ESRGAN RRDB 64x23, 4x; peak device memory / time per upscale")
        print(f"{'input':>8} | " + " | ".join(f"{'whole' if t == 0 else f'tile {t}':>22}" for t in tiles))
        for size in sizes:
            cells = []
            for tile in tiles:
                library = UpscalerLibrary([Path(folder)], allow_pickle=False, device=args.device, tile_size=tile)
                _measure(library, 64, args.device)  # warm-up: load and first kernels
                peak, took = _measure(library, size, args.device)
                cells.append(f"{peak:>12} {took:>9}")
                library.unload()
                if args.device == "cuda":
                    torch.cuda.empty_cache()
            print(f"{size:>6}² | " + " | ".join(cells))


if __name__ == "__main__":
    main()
