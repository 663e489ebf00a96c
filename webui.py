"""AIGen Studio entry point (the composition root).

    python webui.py [--port 7860 --listen --gradio-auth u:p ...]  # the web UI
    python webui.py generate --prompt "a red circle"               # txt2img from the command line
    python webui.py generate-from-json --config cfg.json           # same, A1111 API fields in JSON
"""

from __future__ import annotations

import sys

import modules.offline  # noqa: F401 - must run before diffusers/transformers are imported


def main() -> int:
    from modules.cli import main as cli_main

    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
