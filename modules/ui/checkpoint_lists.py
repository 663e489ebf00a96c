"""Every checkpoint list of the page, kept in step with the checkpoint folders.

The quicksettings dropdown, the Settings tab's checkpoint dropdown, the Checkpoint Merger's
A/B/C dropdowns, the Models tab's Checkpoints table and the Extra Networks "Checkpoints" cards
all show the registry's list (``studio.checkpoint_titles()``, the demo model included). They are
registered here while the page is built; ``wire`` then makes them fresh on every page load,
when a dropdown gets focus (a file added on disk or by another browser appears without 🔄),
and after every event that changes the folders (a merge, an install, a delete, a 🔄): that
event's ``.then`` updates every list at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gradio as gr

from modules.ui.extra_networks import PreviewThumbnails, page_html
from modules.ui.models_tab import table_rows

if TYPE_CHECKING:
    from modules.studio import Studio

__all__ = ["CheckpointLists"]

_PRIVATE = {"api_visibility": "private"}


@dataclass
class CheckpointLists:
    """The page's checkpoint lists (see the module docstring).

    ``current``: dropdowns that show the checkpoint the next job uses (the quicksettings one);
    ``plain``: dropdowns whose value the user owns (the Settings tab's; only choices change);
    ``optional``: dropdowns with an empty first choice (the merger's models); ``cards``: the
    Extra Networks checkpoint pages by tab; ``models``: the Models tab's kind, table and name.
    """

    studio: Studio
    current: list[Any] = field(default_factory=list)
    plain: list[Any] = field(default_factory=list)
    optional: list[Any] = field(default_factory=list)
    cards: dict[str, Any] = field(default_factory=dict)
    models: tuple[Any, Any, Any] | None = None
    changes: list[Any] = field(default_factory=list)
    thumbnails: PreviewThumbnails = field(default_factory=PreviewThumbnails)

    def after(self, *events: Any) -> None:
        """Update every list when each of ``events`` (gradio event dependencies) is done."""
        self.changes.extend(events)

    def dropdowns(self) -> list[Any]:
        return [*self.current, *self.plain, *self.optional]

    def outputs(self) -> list[Any]:
        """Every registered component, in the order ``updates`` returns their updates."""
        models = list(self.models[1:]) if self.models is not None else []
        return [*self.dropdowns(), *self.cards.values(), *models]

    def choices(self, component: Any) -> list[str]:
        """The choices ``component`` offers: the titles, after an empty one for the merger's."""
        titles = self.studio.checkpoint_titles()
        return ["", *titles] if component in self.optional else titles

    def dropdown_update(self, component: Any) -> Any:
        """Fresh choices; the quicksettings dropdown also shows the checkpoint the next job uses
        (the demo model's title when none is set, never blank while one exists)."""
        if component in self.current:
            return gr.update(choices=self.choices(component), value=self.studio.current_checkpoint() or None)
        return gr.update(choices=self.choices(component))

    def updates(self, kind: str = "Checkpoints") -> list[Any]:
        """Updates for ``outputs()`` from the registry as it is now (``kind``: the Models tab's
        Kind radio; its table is left alone while it shows another kind of model)."""
        result = [self.dropdown_update(component) for component in self.dropdowns()]
        result += [page_html(self.studio, tab, "checkpoints", self.thumbnails) for tab in self.cards]
        if self.models is not None:
            result += _models_updates(self.studio, kind)
        return result

    def rescan(self, kind: str = "Checkpoints") -> list[Any]:
        """``updates`` after rescanning the checkpoint folders."""
        self.studio.context.registry.refresh()
        return self.updates(kind)

    def wire(self, demo: gr.Blocks) -> None:
        """Wire the lists' refreshes; call once, after every list and change is registered."""
        inputs = [self.models[0]] if self.models is not None else []
        outputs = self.outputs()
        quiet = {"show_progress": "hidden", **_PRIVATE}
        demo.load(self.rescan, inputs=inputs, outputs=outputs, **quiet)
        for event in self.changes:
            event.then(self.updates, inputs=inputs, outputs=outputs, **quiet)
        for component in self.dropdowns():
            component.focus(lambda component=component: self._focused(component), outputs=[component],
                            queue=False, **quiet)

    def _focused(self, component: Any) -> Any:
        self.studio.context.registry.refresh()
        return gr.update(choices=self.choices(component))


def _models_updates(studio: Studio, kind: str) -> list[Any]:
    """The Models tab's table rows and name choices when it shows checkpoints, else no change."""
    if kind != "Checkpoints":
        return [gr.update(), gr.update()]
    entries = studio.model_tools.entries("checkpoints")
    return [table_rows(entries), gr.update(choices=[e.name for e in entries])]
