"""The lessons' widgets in a real browser: JupyterLab in headless Chromium (issue 11).

For each lesson with an ``interactive`` widget, one JupyterLab tab (one server and one browser
for the whole module; the lessons are copies in a temporary folder, so the repository is never
written):

1. opens the lesson as a learner finds it, before running anything, and reads what each widget
   cell shows;
2. runs Run → Run All Cells and waits until every cell has run and the kernel is idle;
3. moves one slider and one dropdown of every widget, and waits for the widget's output to change;
4. measures every description label, readout and dropdown option against its box;
5. saves, shuts the kernel down and reloads: a learner coming back the next day.

The tests then assert what a learner would see: no traceback or "Error displaying widget",
every widget rendered and responding, no description cut off, and a static picture (not
``interactive(children=…)``) in a lesson opened without running it.

Needs Debian's ``chromium`` at /usr/bin/chromium (or ``MINILLM_CHROMIUM``) and ``playwright``
from PyPI; skips without them. ``MINILLM_BROWSER_SHOTS=<folder>`` saves screenshots there.
Run time: 2 to 3 minutes for the seven lessons on 2 shared cores (127 s and 166 s measured).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import nbformat
import pytest

from _browser import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, JS_CONTROLS, JS_LABELS, JupyterLabServer, Lab, copy_lessons

ROOT = Path(__file__).resolve().parents[2]
# The lessons to open: the repository's, or (to try a build change) a folder of rebuilt copies.
LESSON_DIR = Path(os.environ.get("MINILLM_BROWSER_LESSONS", ROOT / "lessons"))
SHOTS = os.environ.get("MINILLM_BROWSER_SHOTS")

if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (or set MINILLM_CHROMIUM)", allow_module_level=True)
sync_playwright = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed: pip install -e '.[dev]'"
).sync_playwright

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# The line a widget cell shows in a lesson opened before running (the build's static picture).
RUN_TO_INTERACT = "run the cell to make it interactive"
RUN_ALL_TIMEOUT_MS = 420_000  # the slowest lesson runs in about 40 s on 2 cores; 10x headroom


def widget_cells(nb) -> list[int]:
    """Indices of the code cells that build an ``interactive`` widget (by source or stored output)."""
    out = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        texts = ["".join(o.get("data", {}).get("text/plain", "")) + "".join(o.get("data", {}).get("text/markdown", "")) for o in cell.outputs]
        if re.search(r"\binteractive\(", cell.source) or any(t.startswith("interactive(") or RUN_TO_INTERACT in t.lower() for t in texts):
            out.append(i)
    return out


def _lessons() -> tuple[dict[str, list[int]], dict[str, int]]:
    found, n_cells = {}, {}
    for path in sorted(LESSON_DIR.glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        if cells := widget_cells(nb):
            found[path.stem], n_cells[path.stem] = cells, len(nb.cells)
    return found, n_cells


LESSONS, N_CELLS = _lessons()
FROZEN = any(RUN_TO_INTERACT in (LESSON_DIR / f"{s}.ipynb").read_text().lower() for s in LESSONS)
# JupyterLab saves widget state into the notebook on save when this setting is on (default off),
# so a reopened notebook shows its widgets' last state without a kernel. Set for every user of
# this Python environment by <app dir>/settings/overrides.json; the app dir is $JUPYTERLAB_DIR
# or <sys.prefix>/share/jupyter/lab (both seen to work in Chromium).
APP_DIR = Path(os.environ.get("JUPYTERLAB_DIR") or Path(sys.prefix) / "share" / "jupyter" / "lab")
OVERRIDES = APP_DIR / "settings" / "overrides.json"
SAVES_WIDGET_STATE = OVERRIDES.exists() and json.loads(OVERRIDES.read_text()).get(
    "@jupyter-widgets/jupyterlab-manager:plugin", {}
).get("saveState") is True


def _param(stem: str, marks=()):
    return pytest.param(stem, id=stem, marks=[getattr(pytest.mark, f"lesson{stem[:2]}"), *marks])


def test_widget_lessons_found():
    """The lessons that issue 11 lists as having widgets are among those found (guards the discovery)."""
    assert {"01", "04", "07", "08", "09", "10", "11"} <= {s[:2] for s in LESSONS}


# ----------------------------------------------------------------------------- one run per lesson


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """(server, browser context) for the module; every process is stopped, also on failure."""
    home = tmp_path_factory.mktemp("jupyterlab")
    root = home / "root"
    copy_lessons(LESSON_DIR, root, list(LESSONS))
    server = JupyterLabServer(root, home, ROOT)
    pw = context = None
    try:
        server.start()
        pw = sync_playwright().start()
        context = pw.chromium.launch_persistent_context(
            str(home / "chromium-profile"), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, viewport=VIEWPORT
        )
        yield server, context
    finally:
        if context is not None:
            context.close()
        if pw is not None:
            pw.stop()
        server.stop()
        assert not server.leftover_pids(), "a kernel of the test's JupyterLab survived its shutdown"


_RESULTS: dict[str, dict] = {}


def _shot(target, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        target.screenshot(path=str(Path(SHOTS) / f"{name}.png"))


def _cell_views(page, cells: list[int]) -> list[dict]:
    """What the given notebook cells show in their output area: text and image count."""
    return page.evaluate(
        """(idx) => { const cells = [...document.querySelectorAll('.jp-Notebook .jp-Cell')];
             return idx.map(i => { const o = cells[i] && cells[i].querySelector('.jp-Cell-outputArea');
               return {text: o ? o.textContent : null, images: o ? o.querySelectorAll('img').length : 0}; }); }""",
        cells,
    )


def run_lesson(stem: str, server: JupyterLabServer, context) -> dict:
    """Steps 1-5 of the module docstring for one lesson; plain data for the tests."""
    cells = LESSONS[stem]
    page = context.new_page()
    lab = Lab(page, server)
    res: dict = {"stem": stem, "expected_widgets": len(cells)}
    try:
        lab.open(f"lessons/{stem}.ipynb")
        res["unrun_rendered"] = lab.wait_rendered(N_CELLS[stem], cells)
        res["unrun"] = _cell_views(page, cells)
        res["unrun_errors"] = lab.errors()
        if SHOTS:
            for j, i in enumerate(cells):
                page.locator(".jp-Notebook .jp-Cell").nth(i).scroll_into_view_if_needed()
                _shot(page.locator(".jp-Notebook .jp-Cell").nth(i), f"{stem}_unrun_{j}")
        lab.run_all(RUN_ALL_TIMEOUT_MS)
        res["run_errors"] = lab.errors()
        widgets = lab.widgets()
        res["widgets"] = []
        for j, w in enumerate(widgets):
            w.scroll_into_view_if_needed()
            _shot(w, f"{stem}_w{j}_first")
            controls = w.evaluate(JS_CONTROLS)
            row = {"labels": w.evaluate(JS_LABELS), "changes": []}
            for kind, key in (("slider", "sliders"), ("dropdown", "dropdowns")):
                if controls[key]:
                    row["changes"].append({"kind": kind, **lab.change_and_wait(w, kind, 0)})
            _shot(w, f"{stem}_w{j}_changed")
            res["widgets"].append(row)
        res["after_change_errors"] = lab.errors()
        # A learner saves, closes JupyterLab (the kernel stops) and opens the lesson again.
        lab.save()
        server.shutdown_kernels()
        lab.open(f"lessons/{stem}.ipynb")
        res["reopen_rendered"] = lab.wait_rendered(N_CELLS[stem], cells)
        res["reopened"] = _cell_views(page, cells)
        res["reopen_errors"] = lab.errors()
        if SHOTS and cells:
            page.locator(".jp-Notebook .jp-Cell").nth(cells[0]).scroll_into_view_if_needed()
            _shot(page, f"{stem}_reopened")
    finally:
        page.close()
        server.shutdown_kernels()
    return res


@pytest.fixture
def result(request, lab) -> dict:
    stem = request.node.callspec.params["stem"]
    if stem not in _RESULTS:
        try:
            _RESULTS[stem] = run_lesson(stem, *lab)
        except Exception as exc:  # recorded once, reported by every test of the lesson
            _RESULTS[stem] = {"failed": f"{type(exc).__name__}: {exc}"}
    res = _RESULTS[stem]
    if "failed" in res:
        pytest.fail(f"{stem}: the browser run failed: {res['failed']}")
    return res


# ----------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("stem", [_param(s) for s in LESSONS])
def test_lesson_runs_without_error(result, stem):
    assert result["run_errors"] == [], f"{stem}: after Run All Cells the page shows: {result['run_errors']}"


@pytest.mark.parametrize("stem", [_param(s) for s in LESSONS])
def test_every_widget_renders_and_responds(result, stem):
    """Each widget cell renders one widget; moving a slider or dropdown changes its output."""
    assert len(result["widgets"]) == result["expected_widgets"], (
        f"{stem}: {result['expected_widgets']} widget cells, {len(result['widgets'])} widgets rendered"
    )
    for j, w in enumerate(result["widgets"]):
        assert w["changes"], f"{stem} widget {j}: no slider or dropdown to move"
        for ch in w["changes"]:
            assert ch["before"] and (ch["before"]["text"].strip() or ch["before"]["images"]), (
                f"{stem} widget {j}: its output is empty before any change"
            )
            assert ch["changed"], f"{stem} widget {j}: moving {ch['kind']} {ch['description']!r} did not change the output"
    assert result["after_change_errors"] == [], f"{stem}: after moving the controls the page shows: {result['after_change_errors']}"


# Lessons whose descriptions are cut off today (seen in Chromium 156, JupyterLab 4.6, ipywidgets
# 8.1): the fixes (wider descriptions) land on other branches of issue 11.
CUT_OFF_TODAY: dict[str, str] = {}  # lesson -> what a browser showed cut off, while its fix is pending


@pytest.mark.parametrize(
    "stem",
    [_param(s, [pytest.mark.xfail(reason=f"issue 11, fixed on another branch: {CUT_OFF_TODAY[s]}", strict=False)] if s in CUT_OFF_TODAY else [])
     for s in LESSONS],
)  # fmt: skip
def test_no_description_is_cut_off(result, stem):
    """Every description, readout, toggle button and dropdown option fits its box.

    Tolerance 0 px: scrollWidth and clientWidth are whole pixels, and the browser adds its
    ellipsis exactly when the first exceeds the second. For a dropdown option the canvas width
    of its text is rounded up and the content box down, so a fit by less than 1 px may count as
    cut off (the safe side).
    """
    cut = [
        f"widget {j}: {r['kind']} {r['text']!r} needs {r['need']} px, has {r['have']} px"
        for j, w in enumerate(result["widgets"])
        for r in w["labels"]
        if r["need"] > r["have"]
    ]
    assert not cut, f"{stem}: cut off: " + "; ".join(cut)


@pytest.mark.parametrize("stem", [_param(s) for s in LESSONS])
@pytest.mark.xfail(
    not FROZEN,
    reason="issue 11: the build does not yet store a static first state for widget cells "
    "(the minillm/course/notebooks.py change is on another branch)",
    strict=False,
)
def test_unrun_lesson_shows_a_static_picture(result, stem):
    """Opened before running: each widget cell shows an image of its first state and says how
    to make it interactive, not ``interactive(children=…)`` or an error."""
    assert result["unrun_errors"] == [], f"{stem}: opened before running, the page shows: {result['unrun_errors']}"
    assert result["unrun_rendered"], f"{stem}: opened before running, a widget cell shows nothing within 60 s"
    for i, view in zip(LESSONS[stem], result["unrun"]):
        assert "interactive(children=" not in (view["text"] or ""), f"{stem} cell {i} shows interactive(children=…)"
        assert RUN_TO_INTERACT in (view["text"] or "").lower(), f"{stem} cell {i} does not say {RUN_TO_INTERACT!r}"
        assert view["images"] >= 1, f"{stem} cell {i} shows no picture of the widget's first state"


@pytest.mark.parametrize("stem", [_param(s) for s in LESSONS])
@pytest.mark.xfail(
    not SAVES_WIDGET_STATE,
    reason="issue 11: after save and reopen the widget views find no model ('Error displaying widget: "
    f"model not found'): JupyterLab does not save widget state ({OVERRIDES} lacks "
    "@jupyter-widgets/jupyterlab-manager:plugin saveState: true)",
    strict=False,
)
def test_reopened_lesson_shows_no_widget_error(result, stem):
    """Run, saved, kernel stopped, opened again: no "Error displaying widget" and no traceback."""
    assert result["reopen_rendered"], f"{stem}: reopened, a widget cell shows nothing within 60 s"
    assert result["reopen_errors"] == [], f"{stem}: reopened, the page shows: {result['reopen_errors']}"
