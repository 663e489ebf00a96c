"""Extra networks: A1111's card browser under the prompt (pages Checkpoints, Textual Inversion, Lora).

Each card shows the model's preview (A1111's ``<name>.preview.png`` / ``<name>.png`` beside the
file; a placeholder without one), its name, and the description, notes and trigger words of the
Models catalog. Clicking a Lora card adds ``<lora:name:1>`` (the "preferred weight" note, else
A1111's ``extra_networks_default_multiplier``) and its activation text to the prompt, an
embedding card its name; ``javascript/extra_networks.js`` does that in the page, and searches and
sorts the cards there too. A checkpoint card goes to the server, which makes it the checkpoint of
new jobs and sets the quicksettings dropdown.

The cards are built by pure functions (``network_cards``, ``checkpoint_cards``, ``cards_html``)
from the catalog's ``ModelEntry`` rows; ``build_extra_networks`` reads the studio and wires them.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from modules.a1111_options import A1111_OPTION_DEFAULTS
from modules.models.catalog import PREVIEW_SUFFIXES, ModelEntry, read_user_metadata

if TYPE_CHECKING:
    from modules.studio import Studio

__all__ = ["PAGES", "Card", "PreviewThumbnails", "build_extra_networks", "cards_html", "checkpoint_cards",
           "controls_html", "format_weight", "lora_prompt", "network_cards", "page_html"]

#: A1111's page ids (its elem_id parts) and the tab labels, in the order the tabs show.
PAGES: Mapping[str, str] = {"checkpoints": "Checkpoints", "textual_inversion": "Textual Inversion", "lora": "Lora"}
#: The catalog kind behind each page.
_PAGE_KINDS = {"checkpoints": "checkpoints", "textual_inversion": "embeddings", "lora": "lora"}
#: Longest side of a card's preview thumbnail (CSS shows it at 9rem).
THUMBNAIL_SIDE = 256
PreviewUrl = Callable[[Path], "str | None"]


@dataclass(frozen=True)
class Card:
    """One card. ``prompt``/``negative_prompt``: the text a click adds to the tab's prompts;
    ``checkpoint``: the checkpoint name a click selects (checkpoint cards); ``preview``: an image
    URL, or None for the placeholder; ``mtime``: the file's modification time (sort by date)."""

    page: str
    name: str
    prompt: str = ""
    negative_prompt: str = ""
    checkpoint: str = ""
    preview: str | None = None
    description: str = ""
    notes: str = ""
    trigger_words: str = ""
    mtime: float = 0.0
    selected: bool = False

    @property
    def search_terms(self) -> str:
        """What the search box matches, lower case: the name, trigger words, description and notes."""
        return " ".join(part for part in (self.name, self.trigger_words, self.description, self.notes) if part).lower()


def format_weight(weight: float) -> str:
    """A weight as A1111's JavaScript writes a number: 1.0 -> "1", 0.8 -> "0.8"."""
    return f"{weight:g}"


def lora_prompt(alias: str, weight: float, activation_text: str = "") -> str:
    """A1111's Lora card text: ``<lora:alias:weight>``, then a space and the activation text."""
    tag = f"<lora:{alias}:{format_weight(weight)}>"
    return f"{tag} {activation_text}" if activation_text else tag


def _preferred_weight(entry: ModelEntry, default: float) -> float:
    """The "preferred weight" note when it is a usable number other than 0 (A1111), else ``default``."""
    try:
        weight = float(entry.user_metadata.get("preferred weight", "") or 0)
    except ValueError:
        return default
    return weight if weight and math.isfinite(weight) else default


def _texts(entry: ModelEntry) -> dict[str, str]:
    notes = entry.user_metadata
    return {"description": notes.get("description", ""), "notes": notes.get("notes", ""),
            "trigger_words": entry.trigger_words}


def network_cards(page: str, entries: Sequence[ModelEntry], multiplier: float,
                  preview_url: PreviewUrl) -> list[Card]:
    """Cards of the "lora" or "textual_inversion" page, one per catalog entry, in entry order.

    A prompt names a Lora or an embedding by its file name without suffix, as A1111 does; a
    Lora whose file name another one in a subfolder shares is named by its path ("style/ink"),
    which the Lora lookup also accepts, so each card means its own file.
    """
    stems = Counter(entry.path.stem for entry in entries)
    cards = []
    for entry in entries:
        stem = entry.path.stem
        notes = entry.user_metadata
        if page == "lora":
            alias = stem if stems[stem] == 1 else entry.name
            prompt = lora_prompt(alias, _preferred_weight(entry, multiplier), notes.get("activation text", ""))
            negative = f"({notes['negative text']}:1)" if notes.get("negative text") else ""
        else:
            prompt, negative = stem, ""
        cards.append(Card(page, entry.name, prompt=prompt, negative_prompt=negative,
                          preview=_preview(entry.preview, preview_url), mtime=entry.mtime, **_texts(entry)))
    return cards


def checkpoint_cards(entries: Sequence[ModelEntry], current: str, preview_url: PreviewUrl) -> list[Card]:
    """Cards of the "checkpoints" page; the one named ``current`` is marked as selected."""
    return [Card("checkpoints", entry.name, checkpoint=entry.name, preview=_preview(entry.preview, preview_url),
                 mtime=entry.mtime, selected=entry.name == current, **_texts(entry))
            for entry in entries]


def _preview(path: Path | None, preview_url: PreviewUrl) -> str | None:
    return preview_url(path) if path is not None else None


def _attributes(values: Mapping[str, str]) -> str:
    return " ".join(f'{name}="{html.escape(value, quote=True)}"' for name, value in values.items())


def _card_html(card: Card) -> str:
    data = {"class": "aigen-card" + " aigen-card-selected" * card.selected, "role": "button", "tabindex": "0",
            "title": "\n".join(part for part in (card.name, card.description, card.notes) if part),
            "data-name": card.name.lower(), "data-date": f"{card.mtime:.0f}", "data-search": card.search_terms}
    if card.checkpoint:
        data["data-checkpoint"] = card.checkpoint
    else:
        data["data-prompt"] = card.prompt
        if card.negative_prompt:
            data["data-negative-prompt"] = card.negative_prompt
    if card.preview:
        image = f'<img class="aigen-card-preview" src="{html.escape(card.preview, quote=True)}" alt="" loading="lazy">'
    else:
        image = '<div class="aigen-card-preview aigen-card-placeholder">No preview</div>'
    lines = [f'<div class="aigen-card-name">{html.escape(card.name)}</div>']
    texts = (("description", "", card.description), ("triggers", "Trigger words: ", card.trigger_words),
             ("notes", "Notes: ", card.notes))
    for css, label, text in texts:
        if text:
            lines.append(f'<div class="aigen-card-{css}">{html.escape(label + text)}</div>')
    return f'<div {_attributes(data)}>{image}<div class="aigen-card-text">{"".join(lines)}</div></div>'


def cards_html(tab: str, page: str, cards: Sequence[Card], separator: str, folders: Sequence[Path] = ()) -> str:
    """The page's cards as HTML, every text escaped. ``separator`` goes between the prompt and the
    added text (A1111's ``extra_networks_add_text_separator``); without cards, the page says which
    ``folders`` to put files into (as A1111 does)."""
    container = {"class": "aigen-cards", "data-tab": tab, "data-page": page, "data-separator": separator,
                 "data-controls": f"{tab}_{page}_controls"}
    if not cards:
        where = ", ".join(str(folder) for folder in folders) or "the model folders"
        body = f'<div class="aigen-cards-empty">Nothing here. Add files to {html.escape(where)}, then press 🔄.</div>'
    else:
        body = "".join(_card_html(card) for card in cards)
    return f"<div {_attributes(container)}>{body}</div>"


def controls_html(tab: str, page: str) -> str:
    """The page's search box and sort controls (the page's JavaScript applies them)."""
    prefix = f"{tab}_{page}"
    return (f'<div class="aigen-en-controls" id="{prefix}_controls" data-cards="{prefix}_cards_html">'
            f'<input type="search" class="aigen-en-search" id="{prefix}_extra_search" placeholder="Search..." '
            f'aria-label="Search {PAGES[page]}">'
            f'<select class="aigen-en-sort" id="{prefix}_extra_sort" aria-label="Sort by">'
            '<option value="name">Name</option><option value="date">Date modified</option></select>'
            f'<button type="button" class="aigen-en-sort-dir" id="{prefix}_extra_sort_dir" data-descending="0" '
            'title="Sort direction">↑ Ascending</button></div>')


class PreviewThumbnails:
    """Preview images as small inline (data URL) thumbnails, kept while the file is unchanged, so
    a card needs no file route and reading a big preview happens once."""

    def __init__(self, side: int = THUMBNAIL_SIDE) -> None:
        self.side = side
        self._cache: dict[Path, tuple[tuple[int, int], str | None]] = {}

    def __call__(self, path: Path) -> str | None:
        """The thumbnail's data URL, or None when the file cannot be read as an image."""
        try:
            stat = path.stat()
        except OSError:
            return None
        stamp = (stat.st_mtime_ns, stat.st_size)
        cached = self._cache.get(path)
        if cached is None or cached[0] != stamp:
            cached = (stamp, self._encode(path))
            self._cache[path] = cached
        return cached[1]

    def _encode(self, path: Path) -> str | None:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                image.thumbnail((self.side, self.side))
                buffer = io.BytesIO()
                image.convert("RGBA" if "A" in image.getbands() else "RGB").save(buffer, "WEBP", quality=80)
        except (OSError, UnidentifiedImageError, ValueError):
            return None
        return "data:image/webp;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# -- the studio's models --------------------------------------------------------------------


def _a1111_option(studio: Studio, key: str) -> Any:
    """An A1111 option this studio has no setting of its own for: the stored value (``/sdapi/v1/options``
    writes it), else A1111's default."""
    return studio.store.extra().get(key, A1111_OPTION_DEFAULTS[key])


def _checkpoint_entries(studio: Studio) -> list[ModelEntry]:
    """Every usable checkpoint (the bundled fallback ones too), with the catalog's notes and preview."""
    catalog = {entry.path: entry for entry in studio.model_tools.entries("checkpoints")}
    entries = []
    for info in studio.checkpoints():
        entry = catalog.get(info.path)
        if entry is None:  # a fallback folder the catalog does not list
            stem = info.path.name if info.is_diffusers_folder else info.path.stem
            preview = next((p for p in (info.path.with_name(stem + s) for s in PREVIEW_SUFFIXES) if p.is_file()),
                           None)
            entry = ModelEntry("checkpoints", info.name, info.path, info.size, _mtime(info.path), preview=preview,
                               user_metadata=read_user_metadata(info.path))
        entries.append(replace(entry, name=info.name))  # the name a click sends back
    return entries


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _current_checkpoint_name(studio: Studio) -> str:
    try:
        return studio.context.models.resolve(studio.settings.sd_model_checkpoint or None).name
    except LookupError:
        return ""


def page_html(studio: Studio, tab: str, page: str, thumbnails: PreviewUrl) -> str:
    """One page's cards from the studio's folders as they are now."""
    if page == "checkpoints":
        cards = checkpoint_cards(_checkpoint_entries(studio), _current_checkpoint_name(studio), thumbnails)
    else:
        multiplier = float(_a1111_option(studio, "extra_networks_default_multiplier"))
        cards = network_cards(page, studio.model_tools.entries(_PAGE_KINDS[page]), multiplier, thumbnails)
    separator = str(_a1111_option(studio, "extra_networks_add_text_separator"))
    return cards_html(tab, page, cards, separator, studio.model_tools.folders(_PAGE_KINDS[page])[:1])


def _refresh_folders(studio: Studio) -> None:
    """Rescan, so files added since the last scan are listed (and usable) at once."""
    studio.context.registry.refresh()
    studio.context.models.loras.refresh()
    studio.context.models.embeddings.refresh()


# -- the components -------------------------------------------------------------------------

#: Runs when a checkpoint page mounts: hands clicks on its cards to the server (extra_networks.js).
_CHECKPOINT_BRIDGE = ("(function bind() { if (window.aigenExtraNetworks) "
                      "window.aigenExtraNetworks.bindCheckpointCards(element, trigger); "
                      "else setTimeout(bind, 100); })();")


def build_extra_networks(studio: Studio, c: dict[str, Any], tab: str) -> None:
    """The card browser (call under the prompt row); adds ``extra_networks`` (the accordion),
    ``extra_refresh``, ``<page>_cards`` and ``checkpoint_chosen`` (the event of a checkpoint card's
    click, which the page chains its checkpoint lists' update to) to ``c``."""
    thumbnails = PreviewThumbnails()
    pages: dict[str, Any] = {}
    refreshes = []
    with gr.Accordion("🎴 Extra networks", open=False, elem_id=f"{tab}_extra_networks") as accordion:
        with gr.Tabs(elem_id=f"{tab}_extra_tabs"):
            for page, label in PAGES.items():
                with gr.Tab(label, elem_id=f"{tab}_{page}"):
                    with gr.Row(elem_classes="aigen-en-toolbar"):
                        gr.HTML(controls_html(tab, page), js_on_load=None, elem_id=f"{tab}_{page}_controls_html")
                        refreshes.append(gr.Button("🔄 Refresh", elem_id=f"{tab}_{page}_extra_refresh", size="sm",
                                                   scale=0, min_width=100))
                    # Fresh when the (closed) accordion opens, on 🔄, and, for checkpoints, on
                    # every page load (the page's checkpoint lists update it).
                    pages[page] = gr.HTML(
                        page_html(studio, tab, page, thumbnails), elem_id=f"{tab}_{page}_cards_html",
                        js_on_load=_CHECKPOINT_BRIDGE if page == "checkpoints" else None)
    c["extra_networks"], c["extra_refresh"] = accordion, refreshes
    c.update({f"{page}_cards": component for page, component in pages.items()})
    c["checkpoint_chosen"] = _wire(studio, tab, accordion, refreshes, pages, thumbnails)


def _wire(studio: Studio, tab: str, accordion: Any, refreshes: list[Any], pages: dict[str, Any],
          thumbnails: PreviewUrl) -> Any:
    """Wire the refreshes and the checkpoint cards' click; returns the click's event."""
    outputs = list(pages.values())

    def refresh() -> list[str]:
        _refresh_folders(studio)
        return [page_html(studio, tab, page, thumbnails) for page in pages]

    private = {"api_visibility": "private", "queue": False}
    for trigger in (accordion.expand, *(button.click for button in refreshes)):
        trigger(refresh, outputs=outputs, **private)

    def choose_checkpoint(event: gr.EventData) -> str:
        name = str(getattr(event, "checkpoint", "") or "")
        info = next((info for info in studio.checkpoints() if info.name == name), None)
        if info is None:
            raise gr.Error(f"No checkpoint named {name!r} any more: press 🔄 Refresh.")
        try:
            studio.set_checkpoint(info.name)
        except LookupError as error:
            raise gr.Error(str(error)) from None
        return page_html(studio, tab, "checkpoints", thumbnails)

    return pages["checkpoints"].click(choose_checkpoint, outputs=[pages["checkpoints"]], api_visibility="private")
