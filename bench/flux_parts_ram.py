"""Peak host RAM while loading FLUX.1's T5-XXL from a file: fp16 -> bf16, and fp8 storage.

    .venv/bin/python bench/flux_parts_ram.py [--layers 2]

Writes random T5 encoder files with T5-XXL's real widths (d_model 4096, 64 heads, d_ff 10240,
the 32,128-row embedding) and ``--layers`` blocks (the real model has 24), in a temp dir, then
loads each in a fresh subprocess and prints the rise of its peak resident memory over the
baseline after imports, as a multiple of the file size. Target (issue 21): <= 1.3x.
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

_MEASURE = """
import json, sys, torch
from modules.families.flux.t5 import load_t5_encoder
import diffusers.hooks, transformers.models.t5.modeling_t5  # imported before the baseline
def status(field):  # this process's own figures (getrusage's maxrss would carry the parent's over exec)
    line = next(l for l in open("/proc/self/status") if l.startswith(field + ":"))
    return int(line.split()[1]) * 1024
base = status("VmRSS")
model = load_t5_encoder(sys.argv[1], dtype=torch.bfloat16)
print(json.dumps({"rise": status("VmHWM") - base}))
"""


def _write(path: Path, layers: int, fp8: bool) -> None:
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(0)
    dtype = torch.float8_e4m3fn if fp8 else torch.float16

    def tensor(*shape: int) -> torch.Tensor:
        return (torch.randn(shape, generator=generator) * 0.02).to(dtype)

    state = {"shared.weight": tensor(32128, 4096), "encoder.final_layer_norm.weight": tensor(4096),
             "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight": tensor(32, 64)}
    for n in range(layers):
        block = f"encoder.block.{n}.layer."
        state.update({f"{block}0.SelfAttention.{p}.weight": tensor(4096, 4096) for p in "qkvo"})
        state.update({f"{block}1.DenseReluDense.wi_0.weight": tensor(10240, 4096),
                      f"{block}1.DenseReluDense.wi_1.weight": tensor(10240, 4096),
                      f"{block}1.DenseReluDense.wo.weight": tensor(4096, 10240),
                      f"{block}0.layer_norm.weight": tensor(4096), f"{block}1.layer_norm.weight": tensor(4096)})
    save_file(state, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as folder:
        for name, fp8 in (("t5xxl_fp16", False), ("t5xxl_fp8_e4m3fn", True)):
            path = Path(folder) / f"{name}.safetensors"
            _write(path, args.layers, fp8)
            out = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], cwd=root, check=True,
                                 capture_output=True, text=True).stdout
            rise = json.loads(out.strip().splitlines()[-1])["rise"]
            size = path.stat().st_size
            print(f"{name} ({args.layers} layers, {size / 2**20:.0f} MiB) -> bf16 compute: peak RSS rise "
                  f"{rise / 2**20:.0f} MiB = {rise / size:.2f}x the file")
            path.unlink()


if __name__ == "__main__":
    main()
