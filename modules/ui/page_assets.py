"""The page's own CSS and JavaScript, read from files beside this module.

``style.css`` holds the styles; each ``javascript/*.js`` file is one behaviour of the page
(keys, drops, theme ...), loaded in name order into the page's ``<head>``, as A1111 loads
its ``javascript/`` folder. Kept as files so they are read, linted and edited as CSS and JS.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["JAVASCRIPT_DIR", "STYLE_FILE", "page_css", "page_head", "theme_js"]

STYLE_FILE = Path(__file__).with_name("style.css")
JAVASCRIPT_DIR = Path(__file__).with_name("javascript")


def page_css() -> str:
    """The CSS that gradio adds to the page (``launch(css=...)``)."""
    return STYLE_FILE.read_text(encoding="utf-8")


def page_head() -> str:
    """``<script>`` elements for every file in ``javascript/`` (``launch(head=...)``)."""
    scripts = []
    for path in sorted(JAVASCRIPT_DIR.glob("*.js")):
        source = path.read_text(encoding="utf-8")
        scripts.append(f"<script>/* {path.name} */\n{source}\n</script>")
    return "\n".join(scripts)


def theme_js(run_default: str | None = None) -> str:
    """A gradio event's ``js``: applies the Theme setting it gets as input (``theme.js``).
    ``run_default`` (``--theme light|dark``) is the theme while the setting says "system"."""
    fallback = json.dumps(run_default if run_default in ("light", "dark") else "system")
    return (f"(theme) => {{ const wanted = theme === 'system' ? {fallback} : theme; "
            "if (window.aigenTheme) window.aigenTheme.apply(wanted); return []; }")
