"""FLUX.1 transformer loading: peak host RAM while loading vs the file's size, side by side.

    .venv/bin/python bench/flux_load_memory.py [--double 7 --single 14] [--fp8-double 19 --fp8-single 38]
                                               [--gguf-double 3 --gguf-single 6] [--skip-large]

Target (issue 21): peak host RAM while loading <= 1.3x the file size (no second copy). Each load
runs in a fresh process; "peak" is that process's high-water resident set (VmHWM) minus its
resident set just before the load (after imports and a meta-device model build, so library code
is not counted). The files are random-weight transformers in BFL's layout written by this script:
the tiny test model in each layout, then full-width (3072, 24 heads x 128) ones: FLUX.1-dev's
full 19 double + 38 single blocks in fp8 (e4m3fn, as fp8 files ship: 12 B parameters, 12 GB),
and fewer blocks in bf16 (the full model is 24 GB, more than a 22 GB machine holds) and GGUF
Q8_0 (random blocks). A file that would not fit in the RAM available is skipped, and said so.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import modules  # noqa: E402,F401  (offline environment first)

TARGET_RATIO = 1.3
FLUX1_DEV_BLOCKS = (19, 38)


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _measure_child(path: str) -> None:
    """In a fresh process: warm imports, then load ``path`` and print the RSS figures as JSON."""
    import time

    import torch
    from diffusers import FluxTransformer2DModel, GGUFQuantizationConfig  # noqa: F401  (imports not counted)
    from diffusers.quantizers.gguf.utils import GGUFParameter  # noqa: F401

    from modules.families.flux.transformer import load_flux_transformer
    from modules.families.flux.transformer_layouts import detect_flux_transformer

    torch.set_num_threads(2)
    found = detect_flux_transformer(path)
    with torch.device("meta"):
        FluxTransformer2DModel(**found.config.diffusers_kwargs())
    before = _rss_kib("VmRSS")
    started = time.perf_counter()
    model = load_flux_transformer(found)
    took = time.perf_counter() - started
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({"before_kib": before, "peak_kib": _rss_kib("VmHWM"), "seconds": took,
                      "layout": found.layout, "storage": found.storage_dtype, "params": params}))


def _measure(path: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(path)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _write_large_bfl(path: Path, double: int, single: int, fp8: bool) -> None:
    """A full-width BFL-layout file written one tensor at a time (never all in memory):
    random bf16 values, 2-d weights in float8_e4m3fn when ``fp8``."""
    import torch

    from tests.families.flux.tiny_flux import full_size_bfl_shapes

    shapes = full_size_bfl_shapes(True, double, single)
    dtypes = {name: ("F8_E4M3" if fp8 and t.ndim == 2 else "BF16") for name, t in shapes.items()}
    header, offset = {}, 0
    for name, tensor in shapes.items():
        size = tensor.numel() * (1 if dtypes[name] == "F8_E4M3" else 2)
        header[name] = {"dtype": dtypes[name], "shape": list(tensor.shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as handle:
        handle.write(len(raw).to_bytes(8, "little") + raw)
        for name, tensor in shapes.items():
            values = torch.randn(tensor.shape, dtype=torch.bfloat16) * 0.02
            values = values.to(torch.float8_e4m3fn) if dtypes[name] == "F8_E4M3" else values
            handle.write(values.contiguous().view(torch.uint8).numpy().tobytes())


def _write_large_gguf(path: Path, double: int, single: int) -> None:
    """A full-width GGUF file: random Q8_0 blocks (fp16 scale + 32 int8) for every 2-d weight,
    F32 for 1-d tensors, as city96's FLUX Q8_0 files; spooled through a temp file by GGUFWriter."""
    import gguf
    import numpy as np

    from tests.families.flux.tiny_flux import full_size_bfl_shapes

    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(path, arch="flux", use_temp_file=True)
    for name, tensor in full_size_bfl_shapes(True, double, single).items():
        if tensor.ndim == 2:
            rows, cols = tensor.shape
            blocks = rng.integers(-127, 128, size=(rows, cols // 32, 34), dtype=np.int8).view(np.uint8)
            blocks[:, :, :2] = np.full((rows, cols // 32), 1e-3, np.float16).view(np.uint8).reshape(rows, -1, 2)
            writer.add_tensor(name, blocks.reshape(rows, -1), raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(name, rng.standard_normal(tensor.shape, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def _tiny_files(folder: Path) -> list[tuple[str, Path, None]]:
    import torch

    from tests.families.flux.tiny_flux import write_flux_bfl_file, write_tiny_flux

    files = [(f"tiny {layout}", write_tiny_flux(layout, folder / layout), None)
             for layout in ("bfl", "comfy", "diffusers_folder", "gguf")]
    files.append(("tiny bfl fp8", write_flux_bfl_file(folder / "fp8" / "f.safetensors", dtype=torch.bfloat16,
                                                      fp8=torch.float8_e4m3fn), None))
    return files


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*.safetensors")) if path.is_dir() else path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--double", type=int, default=7, help="double blocks of the large bf16 file")
    parser.add_argument("--single", type=int, default=14, help="single blocks of the large bf16 file")
    parser.add_argument("--fp8-double", type=int, default=FLUX1_DEV_BLOCKS[0])
    parser.add_argument("--fp8-single", type=int, default=FLUX1_DEV_BLOCKS[1])
    parser.add_argument("--gguf-double", type=int, default=3)
    parser.add_argument("--gguf-single", type=int, default=6)
    parser.add_argument("--skip-large", action="store_true")
    args = parser.parse_args()
    if args.child:
        _measure_child(args.child)
        return
    with tempfile.TemporaryDirectory(prefix="flux-load-memory-") as tmp:
        folder = Path(tmp)
        files = _tiny_files(folder)
        if not args.skip_large:
            for fp8, (double, single) in ((False, (args.double, args.single)),
                                          (True, (args.fp8_double, args.fp8_single))):
                full = " (FLUX.1-dev's full size)" if (double, single) == FLUX1_DEV_BLOCKS else ""
                name = f"3072 wide, {double} double + {single} single, {'fp8' if fp8 else 'bf16'}{full}"
                path = folder / f"large-{'fp8' if fp8 else 'bf16'}.safetensors"
                files.append((name, path, lambda p=path, d=double, s=single, f=fp8: _write_large_bfl(p, d, s, f)))
            path = folder / "large-q8_0.gguf"
            files.append((f"3072 wide, {args.gguf_double} double + {args.gguf_single} single, GGUF Q8_0", path,
                          lambda p=path: _write_large_gguf(p, args.gguf_double, args.gguf_single)))
        print(f"FLUX.1 transformer load, peak host RAM vs file size (target <= {TARGET_RATIO:.1f}x); "
              f"FLUX.1-dev has {FLUX1_DEV_BLOCKS[0]} double + {FLUX1_DEV_BLOCKS[1]} single blocks, "
              "the large files fewer so the machine holds them")
        print(f"{'file':64} {'layout':9} {'stored':8} {'params':>8} {'file MiB':>10} {'peak MiB':>10} "
              f"{'ratio':>6} {'load s':>7}")
        for name, path, write in files:
            if write is not None:
                write()  # one large file on disk at a time
            size = _size(path)
            available = _available_bytes()
            if size * TARGET_RATIO + 2 * 2**30 > available:
                print(f"{name:64} skipped: {size / 2**20:.0f} MiB file, {available / 2**20:.0f} MiB RAM available")
                path.unlink()
                continue
            result = _measure(path)
            peak = (result["peak_kib"] - result["before_kib"]) * 1024
            print(f"{name:64} {result['layout']:9} {result['storage']:8} {result['params'] / 1e6:7.1f}M "
                  f"{size / 2**20:10.1f} {peak / 2**20:10.1f} {peak / size:6.2f} {result['seconds']:7.2f}", flush=True)
            if write is not None:
                path.unlink()
    print("tiny files are ~1-2 MiB: there, fixed allocator and Python object overheads dominate the ratio")


if __name__ == "__main__":
    main()
