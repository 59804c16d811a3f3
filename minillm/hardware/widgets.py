"""One layout for the hardware lessons' widgets (07, 08, 09).

Each lesson builds ``interactive(show, name=Control(..., **WIDGET))`` over a pure function;
passing :data:`WIDGET` (or :data:`DROPDOWN` for a dropdown) to every control gives them all
the same look: the description is as wide as its text, so "device" or "context" is never
cut off, and a dropdown is as wide as its longest option. These are plain dicts (ipywidgets
accepts them for ``style`` and ``layout``), so importing this module needs no ipywidgets.
"""

from __future__ import annotations

__all__ = ["WIDGET", "DROPDOWN", "TOGGLE"]

#: Keyword arguments for any control: a description never truncated.
WIDGET: dict = {"style": {"description_width": "initial"}}

#: Keyword arguments for a Dropdown: as above, and wide enough for its longest option.
DROPDOWN: dict = {"style": {"description_width": "initial"}, "layout": {"width": "max-content"}}

#: Keyword arguments for ToggleButtons: every button as wide as its longest label (ipywidgets'
#: default 148 px cuts "seconds_per_million" off).
TOGGLE: dict = {"style": {"description_width": "initial", "button_width": "max-content"}}
