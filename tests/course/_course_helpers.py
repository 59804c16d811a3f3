"""Shared helpers of the course-engine tests (not a test module)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MUTANTS_DIR = Path(__file__).resolve().parent / "mutants"


def lesson_of(stem: str) -> str:
    return re.match(r"(\d\d)_", stem).group(1)


def solution_params():
    """One pytest.param per solution notebook, marked with its lesson."""
    return [
        pytest.param(p.stem, marks=getattr(pytest.mark, f"lesson{lesson_of(p.stem)}"), id=p.stem)
        for p in sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
    ]


def load_mutant_modules() -> dict[str, object]:
    """{lesson: module} for tests/course/mutants/lessonNN.py, loaded by path. Each module has
    ``MUTANTS`` ({task: [wrong functions]}) and may have ``HINTS`` ({function name: the phrase
    its verdict must contain})."""
    out = {}
    for path in sorted(MUTANTS_DIR.glob("lesson[0-9][0-9].py")):
        spec = importlib.util.spec_from_file_location(f"_course_mutants_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        out[path.stem[-2:]] = module
    return out


def load_mutants() -> dict[str, dict[str, list]]:
    """{lesson: MUTANTS} from tests/course/mutants/lessonNN.py, loaded by path."""
    return {lesson: module.MUTANTS for lesson, module in load_mutant_modules().items()}


def write_submission(path: Path, notebook: Path, lesson: str, answers: dict[str, str], extra=()) -> None:
    """Write to ``path`` a copy of ``notebook`` (a release or a solution of ``lesson``) whose answer
    cells for ``answers`` ({task name: new source}) are replaced and with the ``extra`` cells
    inserted before the first answer cell: a submission as a learner (or a cheat) hands it in."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    for c in nb.cells:
        gid = c.metadata.get("nbgrader", {}).get("grade_id", "")
        for task, src in answers.items():
            if gid == f"answer-{lesson}_{task}":
                c.source = src
    at = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("solution"))
    for src in extra:
        nb.cells.insert(at, nbformat.v4.new_code_cell(src))
    nbformat.write(nb, path)

