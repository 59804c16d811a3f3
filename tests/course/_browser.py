"""JupyterLab in headless Chromium, for tests/course/test_browser.py (not a test module).

``JupyterLabServer`` starts JupyterLab on 127.0.0.1 with a token, a temporary root folder
and temporary settings, and stops it, its kernels and everything they started. ``Lab`` drives
one notebook tab through Playwright: open, Run → Run All Cells, wait for the kernel, read the
widgets. The JavaScript snippets read what a learner sees: rendered text, images, label widths.

Chromium is Debian's ``/usr/bin/chromium``, launched by Playwright (from PyPI) with
``executable_path``; nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM = os.environ.get("MINILLM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Wide enough that a widget's natural width, not the window, limits what it shows.
VIEWPORT = {"width": 1400, "height": 1000}
# JupyterLab settings written into a fresh settings folder: no news toast over the page.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
}

# ----------------------------------------------------------------------------- browser-side reads

# True once every code cell shows an execution count and the kernel is idle.
JS_ALL_RAN = """() => {
  const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]
      .map(e => e.textContent.trim());
  return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p)) && /\\| Idle/.test((document.getElementById('jp-main-statusbar') || document.body).textContent);
}"""

# Sets window.__minillmRunStarted once any code cell's prompt shows [*].
JS_WATCH_RUN_START = """() => {
  window.__minillmRunStarted = false;
  const running = () => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]
      .some(e => e.textContent.includes('*'));
  const obs = new MutationObserver(() => {
    if (running()) { window.__minillmRunStarted = true; obs.disconnect(); }
  });
  obs.observe(document.querySelector('.jp-Notebook'), {subtree: true, childList: true, characterData: true});
}"""

# The rendered output of widget i: text and images (an image's data URL changes with its pixels).
JS_WIDGET_OUTPUT = """(w) => {
  const out = w.querySelector('.widget-output');
  if (!out) return null;
  return {text: out.textContent, images: [...out.querySelectorAll('img')].map(i => i.src)};
}"""

# Every description label, slider readout, toggle button and dropdown in widget w, with what it shows and the
# width its text needs. A label is cut off when its text needs more than its box
# (scrollWidth > clientWidth: the browser's own ellipsis test). A dropdown's <select> has no
# scrollWidth for its text, so the selected option's text is measured with the select's font
# against its content box (clientWidth less padding; the arrow sits in the right padding).
JS_LABELS = """(w) => {
  const ctx = document.createElement('canvas').getContext('2d');
  const rows = [];
  for (const l of w.querySelectorAll('.widget-label, .widget-readout')) {
    if (!l.textContent.trim()) continue;
    rows.push({kind: l.classList.contains('widget-label') ? 'label' : 'readout', text: l.textContent,
               need: l.scrollWidth, have: l.clientWidth});
  }
  for (const b of w.querySelectorAll('.widget-toggle-buttons button')) {
    rows.push({kind: 'button', text: b.textContent, need: b.scrollWidth, have: b.clientWidth});
  }
  for (const s of w.querySelectorAll('select')) {
    const cs = getComputedStyle(s);
    ctx.font = cs.font;
    const text = s.options[s.selectedIndex] ? s.options[s.selectedIndex].text : '';
    for (const o of s.options) {
      rows.push({kind: 'dropdown option', text: o.text, need: Math.ceil(ctx.measureText(o.text).width),
                 have: Math.floor(s.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight))});
    }
  }
  return rows;
}"""

# The controls of widget w: sliders (by their noUiSlider handle) and dropdowns.
JS_CONTROLS = """(w) => {
  const sliders = [...w.querySelectorAll('.widget-slider')].map(s => {
    const h = s.querySelector('.noUi-handle');
    const label = s.querySelector('.widget-label');
    return {description: label ? label.textContent : '', now: h && h.getAttribute('aria-valuenow'),
            max: h && h.getAttribute('aria-valuemax')};
  });
  const dropdowns = [...w.querySelectorAll('.widget-dropdown')].map(d => {
    const label = d.querySelector('.widget-label');
    const s = d.querySelector('select');
    return {description: label ? label.textContent : '', n: s.options.length, selected: s.selectedIndex};
  });
  return {sliders, dropdowns};
}"""

# What a learner would call an error on the page: tracebacks and exceptions in any output
# (stderr-styled outputs: streams and errors), and ipywidgets' own rendering errors.
JS_ERRORS = """() => {
  const found = [];
  for (const o of document.querySelectorAll('.jp-OutputArea-output')) {
    const t = o.textContent || '';
    if (/Traceback \\(most recent call last\\)|^\\w*(Error|Exception)\\b.*$/m.test(t) &&
        (o.dataset.mimeType === 'application/vnd.jupyter.stderr' || /Traceback/.test(t)))
      found.push(t.slice(0, 400));
  }
  const body = (document.getElementById('jp-main-dock-panel') || document.body).textContent;
  for (const m of body.matchAll(/Error displaying widget(: [a-z ]+)?/g)) found.push(m[0]);
  return found;
}"""


# ----------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterLabServer:
    """JupyterLab on 127.0.0.1:<free port> with a token, serving ``root`` (a temporary folder).

    Settings, workspaces and runtime files (kernels' connection files) live under ``home``, so
    nothing in the repository or the user's Jupyter folders is read or written. ``stop()`` shuts
    the kernels down, terminates the server's process group, and kills any process left whose
    command line names this server's runtime folder (a kernel survives its server otherwise:
    jupyter_client starts each kernel in a session of its own).
    """

    def __init__(self, root: Path, home: Path, repo: Path):
        self.root, self.home, self.repo = root, home, repo
        self.port = free_port()
        self.token = os.urandom(16).hex()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = home / "jupyterlab.log"

    def env(self) -> dict:
        env = dict(os.environ)
        settings = self.home / "settings"
        for rel, values in LAB_SETTINGS.items():
            path = settings / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        env.update(
            JUPYTERLAB_SETTINGS_DIR=str(settings),
            JUPYTERLAB_WORKSPACES_DIR=str(self.home / "workspaces"),
            JUPYTER_RUNTIME_DIR=str(self.home / "runtime"),
            JUPYTER_CONFIG_DIR=str(self.home / "config"),
            IPYTHONDIR=str(self.home / "ipython"),
            # The repository's minillm wins inside the kernels; plots go inline (not Agg).
            PYTHONPATH=os.pathsep.join([str(self.repo)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]),
            MPLBACKEND="module://matplotlib_inline.backend_inline",
            PYTHONHASHSEED="0",
        )
        return env

    def start(self, timeout: float = 90) -> None:
        cmd = [
            sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
            "--LabApp.news_url=", "--ServerApp.open_browser=False",
        ]  # fmt: skip
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                self.api("GET", "/api/status")
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"JupyterLab did not answer within {timeout} s:\n{self.log.read_text()[-3000:]}")

    def api(self, method: str, path: str):
        req = urllib.request.Request(self.url + path, method=method, headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        """Shut down every session and kernel (the server stays up)."""
        try:
            for s in self.api("GET", "/api/sessions"):
                self.api("DELETE", f"/api/sessions/{s['id']}")
            for k in self.api("GET", "/api/kernels"):
                self.api("DELETE", f"/api/kernels/{k['id']}")
        except OSError:
            pass

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.shutdown_kernels()
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        for pid in self.leftover_pids():
            try:
                os.killpg(pid, signal.SIGKILL)  # a kernel leads its own session; take its children too
            except (ProcessLookupError, PermissionError):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def leftover_pids(self) -> list[int]:
        """Processes whose command line names this server's runtime folder (its kernels)."""
        marker = str(self.home / "runtime").encode()
        pids = []
        for d in Path("/proc").glob("[0-9]*"):
            try:
                if marker in (d / "cmdline").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                continue
        return pids


def copy_lessons(lesson_dir: Path, root: Path, stems: list[str]) -> None:
    """Copy ``lesson_dir/<stem>.ipynb`` into ``root/lessons`` (the lessons' own folder layout)."""
    (root / "lessons").mkdir(parents=True, exist_ok=True)
    for stem in stems:
        shutil.copy2(lesson_dir / f"{stem}.ipynb", root / "lessons" / f"{stem}.ipynb")


# ----------------------------------------------------------------------------- one notebook tab


class Lab:
    """One notebook open in JupyterLab, in a Playwright page."""

    def __init__(self, page, server: JupyterLabServer):
        self.page, self.server = page, server
        self.opened = 0

    def open(self, rel_path: str, timeout_ms: int = 120_000) -> None:
        """Open ``rel_path`` (relative to the server root) and wait until its kernel is idle.

        Each opening gets a fresh JupyterLab workspace, so no tab of an earlier lesson is
        restored (and starts a kernel) beside it.
        """
        self.opened += 1
        workspace = f"{Path(rel_path).stem}-{self.opened}-{id(self)}"
        self.page.goto(f"{self.server.url}/lab/workspaces/{workspace}/tree/{rel_path}?reset&token={self.server.token}")
        self.page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=timeout_ms)
        self.page.wait_for_function("() => /\\| Idle/.test((document.getElementById('jp-main-statusbar') || document.body).textContent)", timeout=timeout_ms, polling=500)

    def wait_rendered(self, n_cells: int, cells: list[int], timeout_ms: int = 60_000) -> bool:
        """Wait until the notebook shows ``n_cells`` cells and each of ``cells`` shows output
        (text, an image, a widget, or an error: not ipywidgets' "Loading widget..." placeholder,
        which stays until the widget manager has asked the kernel for its models); False when
        ``timeout_ms`` passes first."""
        try:
            self.page.wait_for_function(
                """([n, idx]) => { const cells = [...document.querySelectorAll('.jp-Notebook .jp-Cell')];
                     return cells.length === n && idx.every(i => { const o = cells[i].querySelector('.jp-Cell-outputArea');
                       return o && !/Loading widget/.test(o.textContent) &&
                              (o.textContent.trim() || o.querySelector('img, .widget-interact')); }); }""",
                arg=[n_cells, cells], timeout=timeout_ms, polling=250,
            )
            return True
        except Exception:  # playwright's TimeoutError; the caller records what shows
            return False

    def run_all(self, timeout_ms: int) -> None:
        """Run → Run All Cells, as a learner would, and wait until every code cell has run."""
        # A lesson opens with its stored execution counts, the same ones a fresh run gives: a
        # MutationObserver notes the run's start ([*]), however short the run, so that stored
        # counts are not taken for a finished run.
        self.page.evaluate(JS_WATCH_RUN_START)
        self.page.click(".lm-MenuBar-itemLabel:text-is('Run')")
        self.page.click(".lm-Menu-item[data-command='runmenu:run-all']")
        self.page.wait_for_function("() => window.__minillmRunStarted === true", timeout=30_000, polling=100)
        self.page.wait_for_function(JS_ALL_RAN, timeout=timeout_ms, polling=1000)

    def save(self) -> None:
        self.page.keyboard.press("Control+s")
        self.page.wait_for_function("() => !document.querySelector('.jp-mod-dirty')", timeout=30_000)

    def widgets(self):
        """The ``interactive`` widgets on the page (their root boxes), in page order."""
        loc = self.page.locator(".widget-interact")
        return [loc.nth(i) for i in range(loc.count())]

    def errors(self) -> list[str]:
        return self.page.evaluate(JS_ERRORS)

    def wait_idle(self, timeout_ms: int = 60_000) -> None:
        self.page.wait_for_function("() => /\\| Idle/.test((document.getElementById('jp-main-statusbar') || document.body).textContent)", timeout=timeout_ms, polling=250)

    def change_and_wait(self, widget, control: str, index: int, timeout_ms: int = 60_000) -> dict:
        """Move one control of ``widget`` one step and wait for its output to change.

        ``control`` is ``"slider"`` (the ``index``-th slider: one arrow-key step, right, or left
        when it sits at its maximum) or ``"dropdown"`` (the next option, wrapping round).
        Returns ``{"description", "before", "after", "changed"}``; ``after`` is read once the
        kernel is idle and the output differs from ``before`` or ``timeout_ms`` has passed.
        """
        before = widget.evaluate(JS_WIDGET_OUTPUT)
        controls = widget.evaluate(JS_CONTROLS)
        if control == "slider":
            info = controls["sliders"][index]
            handle = widget.locator(".widget-slider").nth(index).locator(".noUi-handle")
            handle.focus()
            handle.press("ArrowLeft" if info["now"] == info["max"] else "ArrowRight")
        else:
            info = controls["dropdowns"][index]
            select = widget.locator(".widget-dropdown select").nth(index)
            select.select_option(index=(info["selected"] + 1) % info["n"])
        deadline = time.monotonic() + timeout_ms / 1000
        after = before
        while time.monotonic() < deadline:
            self.page.wait_for_timeout(250)
            after = widget.evaluate(JS_WIDGET_OUTPUT)
            if after and after != before and (after["text"].strip() or after["images"]):
                self.wait_idle()
                after = widget.evaluate(JS_WIDGET_OUTPUT)
                break
        return {"description": info["description"], "before": before, "after": after, "changed": after != before}
