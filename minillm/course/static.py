"""Static checks of the learner's code before grading: references, escapes and tampering by name.

The grader parses every cell the learner wrote (answer cells and added cells, after IPython's
own transformation of magics) with :mod:`ast`. Two kinds of findings:

* **A task's references** (``@register(..., references=...)``) and their aliases: the dotted
  name resolved through the imports of the release's set-up cells and the learner's own cells
  (``import torch.nn.functional as F``; ``F.cross_entropy``), the same leaf name under ``torch``
  or ``minillm`` (``torch.layer_norm`` for ``torch.nn.functional.layer_norm``), and known
  twins (:data:`TWINS`: ``nll_loss`` where cross-entropy is the reference, ``native_layer_norm``,
  ...). Found in that task's answer cell, they score the task 0. (Another task's answer, or a
  cell the learner added to compare with the reference, may use them: a function that calls
  the reference from there is caught at run time by the profile hook.)
* **Tampering** (:data:`BANNED_CALLS`, :data:`BANNED_MODULES`, :data:`BANNED_ATTRS`): running
  code from strings (``exec``, ``eval``, ``compile``, ``__import__``), introspection and import
  machinery (``inspect``, ``importlib``, ``sys.modules``), profilers and tracers
  (``sys.setprofile``, ``threading.settrace``), processes and signals (``os.kill``,
  ``subprocess``, ``os.setsid``, ``ctypes``), IPython's hooks (``get_ipython``), private
  attributes (``comm._comm``, ``torch._C``), assigning to a module's or a library class's
  attribute (``torch.Tensor.any = ...``), and file names of the course (``solutions/``,
  ``.ipynb``). Any of them scores every task 0: such code can reach any task.

A name built at run time (``getattr(torch, "lay" + "er_norm")``) escapes the first kind;
``getattr`` with a computed name is therefore a finding too. The run-time profile hook of
:class:`~minillm.course.checks.learner._Learner` is the second net.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

__all__ = ["Finding", "scan", "names_used", "BANNED_CALLS", "BANNED_MODULES", "BANNED_ATTRS", "IMPORT_ONLY", "TWINS"]

#: Built-ins that run code from strings or reach into frames and namespaces.
BANNED_CALLS = frozenset({"exec", "eval", "compile", "__import__", "breakpoint", "globals", "vars", "locals",
                          "setattr", "delattr", "get_ipython", "open"})
#: Modules whose use in graded code is tampering (or reads files), whatever is called.
BANNED_MODULES = ("inspect", "importlib", "ctypes", "subprocess", "multiprocessing", "signal", "gc", "builtins",
                  "nbformat", "nbclient", "jupyter_client", "ipykernel", "pickle", "marshal", "runpy",
                  "pty", "socket", "shutil", "pathlib", "io", "glob", "minillm.kernels", "torch.ops", "torch._C", "torch._refs", "torch._prims", "torch._decomp", "torch.library")
#: Modules graded code may not import itself (the release's set-up cells may: ``check`` comes from there).
IMPORT_ONLY = ("minillm.course", "IPython")
#: Dotted names (after resolving imports) that are tampering.
BANNED_ATTRS = ("sys.setprofile", "sys.settrace", "sys.modules", "sys._getframe", "sys.meta_path", "sys.path_hooks",
                "threading.setprofile", "threading.settrace", "threading.setprofile_all_threads",
                "threading.settrace_all_threads", "os.kill", "os.killpg", "os.fork", "os.forkpty", "os.setsid",
                "os.setpgid", "os.system", "os.popen", "os.execv", "os.execve", "os.execvp", "os.execl", "os.spawnv",
                "os.posix_spawn", "os.getppid", "os.open", "os.remove", "os.unlink", "os.rename", "os.replace",
                "os.environ", "os.chdir", "os.listdir", "os.scandir", "os.walk", "torch.load", "torch.save")
#: Dunder attributes that reach code objects, frames or other modules' namespaces.
_DUNDERS = frozenset({"__globals__", "__code__", "__closure__", "__subclasses__", "__dict__", "__builtins__",
                      "__bases__", "__mro__", "__func__", "__self__", "__wrapped__", "__loader__", "__spec__",
                      "__import__", "__getattribute__", "__setattr__", "__class__", "__kwdefaults__", "__defaults__"})
#: More dotted names that compute what a reference computes, keyed by the reference's leaf name.
TWINS = {
    "cross_entropy": ("torch.nn.functional.nll_loss", "torch.nn.CrossEntropyLoss", "torch.nn.NLLLoss",
                      "torch.nn.functional.cross_entropy"),
    "cross_entropy_loss": ("torch.nn.functional.nll_loss", "torch.nn.CrossEntropyLoss"),
    "vocab_parallel_cross_entropy": ("torch.nn.functional.nll_loss", "torch.nn.functional.cross_entropy"),
    "layer_norm": ("torch.native_layer_norm", "torch.layer_norm", "torch.nn.LayerNorm", "torch.nn.functional.layer_norm",
                   "torch.nn.functional.group_norm", "torch.group_norm"),
    "LayerNorm": ("torch.native_layer_norm", "torch.layer_norm", "torch.nn.functional.layer_norm"),
    "scaled_dot_product_attention": ("torch.nn.MultiheadAttention", "torch.nn.functional.multi_head_attention_forward"),
    "causal_attention": ("torch.nn.functional.scaled_dot_product_attention", "torch.nn.MultiheadAttention"),
    "adamw": ("torch.optim.AdamW", "torch.optim.Adam", "torch.optim.adamw", "torch.optim.adam"),
    "adamw_update": ("torch.optim.AdamW", "torch.optim.Adam"),
}
#: Method names too common to forbid as ``x.name`` when a reference is ``Class.name``.
_COMMON_METHODS = frozenset({"step", "forward", "matmul", "__call__", "dequantize", "generate", "num_params"})
#: Private names that are only a crash, which the grader survives and blames on the task (not tampering).
_PRIVATE_OK = frozenset({"os._exit"})
#: Fragments of the course's file names that graded code has no business naming.
_COURSE_PATHS = ("solutions", ".ipynb", "exercises/", "lessons/", "minillm/")


@dataclass(frozen=True)
class Finding:
    """One static finding: ``task`` is the task it costs (None: every task)."""

    task: str | None
    cell: str  # "your answer cell for 01.layer_norm", "a cell you added"
    line: int
    what: str

    @property
    def message(self) -> str:
        return f"{self.cell}, line {self.line}: {self.what}; graded code may not do that: 0 points"


def _transform(source: str) -> str:
    """The Python IPython would run for ``source`` (magics become ``get_ipython()`` calls)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except Exception:  # no IPython, or a cell it cannot transform: parse it as it is
        return source


def _imports(tree: ast.AST, aliases: dict[str, str]) -> None:
    """Add ``local name -> dotted name`` for every import in ``tree``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    aliases[a.asname] = a.name
                else:
                    root = a.name.split(".")[0]
                    aliases[root] = root
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                if a.name != "*":
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """``F.layer_norm`` -> ``torch.nn.functional.layer_norm`` (through ``aliases``), or None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    root = aliases.get(node.id, node.id)
    return ".".join([root, *reversed(parts)])


def _matches(name: str, prefixes) -> str | None:
    for p in prefixes:
        if name == p or name.startswith(p + "."):
            return p
    return None


def _forbidden(references: tuple[str, ...]) -> tuple[set[str], set[str], set[str]]:
    """(dotted names, leaf names under torch/minillm, attribute names) that a task's references forbid."""
    dotted, leaves, attrs = set(), set(), set()
    for ref in references:
        dotted.add(ref)
        parts = ref.split(".")
        leaf = parts[-1]
        is_method = len(parts) >= 2 and parts[-2][:1].isupper()
        if is_method:
            dotted.add(".".join(parts[:-1]) + "." + leaf)
            if leaf not in _COMMON_METHODS and not leaf.startswith("_"):
                attrs.add(leaf)
        else:
            leaves.add(leaf)
        for twin in TWINS.get(leaf, ()):
            dotted.add(twin)
            leaves.add(twin.split(".")[-1])
    return dotted, leaves, attrs


def scan(learner_cells: list[tuple[str | None, str]], setup_sources: list[str],
         references: dict[str, tuple[str, ...]]) -> list[Finding]:
    """Findings in the learner's cells.

    ``learner_cells``: (task, source) for each answer cell (task None for a cell the learner added);
    ``setup_sources``: the release's read-only cells (their imports name things);
    ``references``: task id -> its registered references.
    """
    aliases: dict[str, str] = {}
    for src in setup_sources:
        try:
            _imports(ast.parse(_transform(src)), aliases)
        except SyntaxError:
            pass
    trees = []
    for task, src in learner_cells:
        try:
            tree = ast.parse(_transform(src))
        except SyntaxError:
            continue  # it fails when it runs, and scores what a failing cell scores
        _imports(tree, aliases)
        trees.append((task, tree))
    forbidden = {t: _forbidden(refs) for t, refs in references.items()}
    findings: list[Finding] = []
    for task, tree in trees:
        where = f"your answer cell for {task}" if task else "a cell you added"
        defined = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
        for node in ast.walk(tree):
            findings.extend(_tamper(node, aliases, where))
            if task in forbidden:  # a task's references, in its own answer cell (elsewhere they may be demos)
                findings.extend(_reference(node, aliases, where, {task: forbidden[task]}, defined))
    seen, out = set(), []
    for f in findings:
        key = (f.task, f.cell, f.line, f.what)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def names_used(source: str) -> set[str]:
    """The plain names a cell reads (``ring_reduce_scatter`` in ``ring_reduce_scatter(comm, chunks)``); empty if it does not parse."""
    try:
        tree = ast.parse(_transform(source))
    except SyntaxError:
        return set()
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _tamper(node: ast.AST, aliases: dict[str, str], where: str) -> list[Finding]:
    line = getattr(node, "lineno", 0)
    out = []
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        if isinstance(node, ast.ImportFrom):
            names += [f"{node.module}.{a.name}" for a in node.names]
        for n in names:
            hit = _matches(n, BANNED_MODULES) or _matches(n, BANNED_ATTRS) or _matches(n, IMPORT_ONLY)
            if hit:
                out.append(Finding(None, where, line, f"it imports {hit}"))
                break
    elif isinstance(node, ast.Call):
        if isinstance(node.func, ast.Name) and node.func.id in BANNED_CALLS and aliases.get(node.func.id, node.func.id) == node.func.id:
            out.append(Finding(None, where, line, f"it calls {node.func.id}()"))
        elif isinstance(node.func, ast.Name) and node.func.id == "getattr" and len(node.args) >= 2 \
                and not isinstance(node.args[1], ast.Constant):
            out.append(Finding(None, where, line, "it calls getattr() with a computed name"))
    elif isinstance(node, (ast.Attribute, ast.Name)) and isinstance(getattr(node, "ctx", None), ast.Load):
        name = _dotted(node, aliases)
        if name is not None:
            hit = _matches(name, BANNED_MODULES) or _matches(name, BANNED_ATTRS)
            if hit and (isinstance(node, ast.Attribute) or name != node.id):
                out.append(Finding(None, where, line, f"it uses {hit}"))
    if isinstance(node, ast.Attribute) and (node.attr in _DUNDERS or (node.attr.startswith("_") and not node.attr.startswith("__"))):
        base = node.value
        if not (isinstance(base, ast.Name) and (base.id == "self" or _dotted(node, aliases) in _PRIVATE_OK)):
            out.append(Finding(None, where, line, f"it reaches the private attribute .{node.attr}"))
    if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
        targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
        for t in targets:
            if isinstance(t, ast.Attribute):
                name = _dotted(t, aliases)
                root = t
                while isinstance(root, ast.Attribute):
                    root = root.value
                if name and isinstance(root, ast.Name) and root.id in aliases:
                    out.append(Finding(None, where, line, f"it assigns to {name}, a library's attribute"))
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and any(p in node.value for p in _COURSE_PATHS):
        out.append(Finding(None, where, line, f"it names the course's files ({node.value[:40]!r})"))
    return out


def _reference(node: ast.AST, aliases: dict[str, str], where: str, forbidden: dict, defined: set[str]) -> list[Finding]:
    out = []
    if isinstance(node, ast.ImportFrom) and node.module:
        names = [f"{node.module}.{a.name}" for a in node.names]
    elif isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, (ast.Attribute, ast.Name)) and isinstance(getattr(node, "ctx", None), ast.Load):
        if isinstance(node, ast.Name) and (node.id in defined or node.id not in aliases):
            return out  # the learner's own function, or a plain local name
        names = [_dotted(node, aliases)]
    else:
        return out
    line = getattr(node, "lineno", 0)
    for task, (dotted, leaves, attrs) in forbidden.items():
        for name in filter(None, names):
            leaf = name.split(".")[-1]
            root = name.split(".")[0]
            if name in dotted or (leaf in leaves and root in ("torch", "minillm")) or \
                    (isinstance(node, ast.Attribute) and node.attr in attrs):
                out.append(Finding(task, where, line, f"it uses {name}, which {task} forbids (it is the reference or its twin)"))
                break
    return out
