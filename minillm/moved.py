"""Names that moved: a clear error that says where a name lives now.

A module that gave a name away sets ``__getattr__ = moved_names(__name__, {...})``;
``from minillm.old import name`` then fails with an ImportError that names the new
home, instead of a bare "cannot import name".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

__all__ = ["moved_names"]


def moved_names(module: str, new_homes: Mapping[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` that raises for each name in ``new_homes`` ({name: new module})."""

    def __getattr__(name: str):
        if name in new_homes:
            raise ImportError(f"{module}.{name} has moved: use `from {new_homes[name]} import {name}`")
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
