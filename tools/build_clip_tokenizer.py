"""Build the CLIP BPE tokenizer files (vocab.json, merges.txt) from open_clip's BPE table.

No model hub is reachable, so the tokenizer every SD family needs ships in the repository.
Its source of truth is ``bpe_simple_vocab_16e6.txt.gz`` from the ``open_clip_torch`` package
(the same table OpenAI's CLIP was trained with). Run once; the output is committed:

    pip install --no-deps open_clip_torch
    python tools/build_clip_tokenizer.py

The vocabulary layout follows the CLIP paper's tokenizer (Radford et al. 2021, Sec. 2.5):
256 byte symbols, the same 256 with the end-of-word marker, then one token per merge,
then the two special tokens, for 49,408 entries in all.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

VOCAB_SIZE = 49408
MERGE_COUNT = VOCAB_SIZE - 2 * 256 - 2  # 48,894 merges
OUT_DIR = Path(__file__).resolve().parent.parent / "modules" / "models" / "configs" / "clip_tokenizer"


def byte_symbols() -> list[str]:
    """Printable unicode stand-ins for the 256 byte values, in CLIP's vocabulary order.

    Printable bytes map to themselves and come first; the other bytes follow, mapped to
    code points from 256 up, so that BPE never sees whitespace or control characters.
    """
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]


def build(bpe_path: Path, out_dir: Path = OUT_DIR) -> None:
    """Write vocab.json and merges.txt for transformers' CLIPTokenizer into ``out_dir``."""
    lines = gzip.open(bpe_path, "rt", encoding="utf-8").read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : MERGE_COUNT + 1]]
    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    assert len(tokens) == VOCAB_SIZE, len(tokens)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = {token: index for index, token in enumerate(tokens)}
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges_text = "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)
    (out_dir / "merges.txt").write_text(merges_text, encoding="utf-8")


if __name__ == "__main__":
    import importlib.util

    # Locate the package without importing it (its import needs ftfy and timm, which we don't).
    spec = importlib.util.find_spec("open_clip")
    assert spec is not None and spec.origin is not None, "pip install --no-deps open_clip_torch"
    build(Path(spec.origin).parent / "bpe_simple_vocab_16e6.txt.gz")
    print(f"wrote {OUT_DIR}")
