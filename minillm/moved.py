"""Names and modules that moved: a clear error that says where they live now.

A module that gave a name away sets ``__getattr__ = moved_names(__name__, {...})``;
``from minillm.old import name`` then fails with an ImportError that names the new
home, instead of a bare "cannot import name". A module that was renamed or split is
listed in :data:`MOVED_MODULES`; importing it raises an ImportError that names its
successor (installed by ``minillm/__init__.py``), so an old notebook in a learner's
workspace fails with a message that says what to change.
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Callable, Mapping

__all__ = ["moved_names", "MOVED_MODULES", "install_module_redirects"]

#: old module -> where its contents went (one line a learner can act on).
MOVED_MODULES: dict[str, str] = {
    "minillm.compress.int8_ops": (
        "renamed minillm.compress.int8_linear (Int8Linear, LLMInt8Linear, vectorwise_int8_matmul, llm_int8_matmul); "
        "int8_matmul, int8_kernel and cpu_int8_features are in minillm.compress.int8_gemm; quantize_per_token and "
        "check_weight are in minillm.compress.quant_core; all of them also import from minillm.compress.quantize"
    ),
    "minillm.compress.explore": (
        "renamed minillm.compress.quant_widget (fake_quant_weights, quant_view, plot_quant_view, quant_widget); "
        "also importable from minillm.compress.quantize"
    ),
    "minillm.compress.qmodel": (
        "renamed minillm.compress.model_quant (quantize_model, size_report, quality_table, linear_sites); eval_loss is "
        "minillm.evaluate.evaluate_loss (minillm.compress.quantize.eval_loss still works)"
    ),
}


def moved_names(module: str, new_homes: Mapping[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` that raises for each name in ``new_homes`` ({name: new module})."""

    def __getattr__(name: str):
        if name in new_homes:
            raise ImportError(f"{module}.{name} has moved: use `from {new_homes[name]} import {name}`")
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Turns an import of a module in MOVED_MODULES into an ImportError naming its new home."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED_MODULES:
            raise ImportError(f"{fullname} no longer exists: {MOVED_MODULES[fullname]}", name=fullname)
        return None


def install_module_redirects() -> None:
    """Put the finder on ``sys.meta_path`` once (idempotent)."""
    if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())
