"""Keep the Hugging Face libraries offline.

These variables are read when diffusers, transformers, huggingface_hub and gradio are first
imported; setting them later has no effect. Without them every hub lookup is retried for about
23 s, and ``CLIPTokenizer.from_pretrained(<hub id>)`` "succeeds" with a broken 2-token tokenizer.
Import this module before any of those libraries (webui.py and the tests do).
"""

from __future__ import annotations

import os

OFFLINE_ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "DIFFUSERS_OFFLINE": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}


def enforce_offline_environment() -> None:
    """Set the offline variables in this process (and so in its children)."""
    for name, value in OFFLINE_ENVIRONMENT.items():
        os.environ[name] = value


enforce_offline_environment()
