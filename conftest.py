"""Repository-wide pytest hooks.

nbval collects every cell of ``lessons/NN_*.ipynb`` and ``solutions/NN_*.ipynb`` as
a test item; here each such item gets the marker of its lesson (``NN_...`` ->
``lessonNN``), so ``pytest -m lesson01`` runs lesson 01's unit tests, its notebooks
and its grader tests together.
"""

from __future__ import annotations

import re

import pytest

_STEM = re.compile(r"^(\d\d)_")


@pytest.hookimpl(tryfirst=True)  # before -m deselects anything
def pytest_collection_modifyitems(config, items):
    for item in items:
        path = getattr(item, "path", None)
        if path is None or path.suffix != ".ipynb":
            continue
        m = _STEM.match(path.name)
        if m:
            item.add_marker(getattr(pytest.mark, f"lesson{m.group(1)}"))
