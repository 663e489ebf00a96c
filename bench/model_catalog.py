"""Time to list a LoRA folder for the Models tab, with and without reading safetensors headers.

    .venv/bin/python bench/model_catalog.py [--count 1000] [--tags 300]

Writes ``--count`` LoRA files shaped like kohya's SD1.5 LoRAs (792 tensors: 264 modules x
down/up/alpha, the real header size; the tensors themselves are tiny) with kohya training
metadata including an ``ss_tag_frequency`` of ``--tags`` tags, a third of them with a preview
and a sidecar, then times ``list_models`` three times each way. The claim it checks: a folder
of 1,000 files lists in under 1 s without hashing. The files were just written, so they are
in the page cache; a cold cache (first listing after boot) adds disk reads on top.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import modules  # noqa: E402,F401  (offline environment first)


def _kohya_module_names() -> list[str]:
    """264 module names in kohya's SD1.5 layout: 16 UNet transformer blocks, 12 CLIP layers."""
    blocks = ([f"down_blocks_{b}_attentions_{a}" for b in range(3) for a in range(2)]
              + ["mid_block_attentions_0"] + [f"up_blocks_{b}_attentions_{a}" for b in range(1, 4) for a in range(3)])
    unet = [f"lora_unet_{block}_{layer}" for block in blocks for layer in
            ("proj_in", "proj_out", *(f"transformer_blocks_0_{a}_{p}" for a in ("attn1", "attn2")
                                      for p in ("to_q", "to_k", "to_v", "to_out_0")),
             "transformer_blocks_0_ff_net_0_proj", "transformer_blocks_0_ff_net_2")]
    text = [f"lora_te_text_model_encoder_layers_{i}_{p}" for i in range(12)
            for p in ("self_attn_q_proj", "self_attn_k_proj", "self_attn_v_proj", "self_attn_out_proj",
                      "mlp_fc1", "mlp_fc2")]
    return unet + text


def _write_template(path: Path, tags: int) -> None:
    import torch
    from safetensors.torch import save_file

    state = {}
    for module in _kohya_module_names():
        width = 768 if module.endswith("attn2_to_k") else 1  # the family is read from this width
        state.update({f"{module}.lora_down.weight": torch.zeros(1, width),
                      f"{module}.lora_up.weight": torch.zeros(1, 1), f"{module}.alpha": torch.tensor(1.0)})
    frequency = {"10_style": {f"tag number {i}": tags - i for i in range(tags)}}
    metadata = {f"ss_setting_{i}": str(i) for i in range(50)}
    metadata.update({"ss_sd_model_name": "v1-5-pruned-emaonly.safetensors", "ss_base_model_version": "sd_v1",
                     "ss_num_epochs": "10", "ss_tag_frequency": json.dumps(frequency)})
    save_file(state, str(path), metadata=metadata)


def _populate(folder: Path, count: int, tags: int) -> int:
    template = folder / "lora0000.safetensors"
    _write_template(template, tags)
    for i in range(1, count):
        target = folder / (f"set{i % 10}" if i % 2 else "") / f"lora{i:04d}.safetensors"
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(template, target)
        if i % 3 == 0:
            target.with_name(target.stem + ".preview.png").write_bytes(b"\x89PNG")
            target.with_suffix(".json").write_text(json.dumps({"activation text": "style", "notes": "n"}))
    return template.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--tags", type=int, default=300, help="tags in ss_tag_frequency (header size)")
    args = parser.parse_args()

    from modules.models.catalog import list_models
    from modules.models.hashing import HashCache

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "Lora"
        folder.mkdir()
        size = _populate(folder, args.count, args.tags)
        hashes = HashCache(Path(tmp) / "hashes.json")
        print(f"{args.count} LoRA files of {size:,} bytes each (header and tiny tensors)")
        for read_headers in (False, True):
            times = []
            for _ in range(3):
                started = time.perf_counter()
                entries = list_models("lora", [folder], hashes, read_headers=read_headers)
                times.append(time.perf_counter() - started)
            assert len(entries) == args.count and not (Path(tmp) / "hashes.json").exists()
            families = {e.family for e in entries}
            print(f"read_headers={read_headers!s:5}: best {min(times):.3f} s, worst {max(times):.3f} s "
                  f"(families {sorted(families)})")


if __name__ == "__main__":
    main()
