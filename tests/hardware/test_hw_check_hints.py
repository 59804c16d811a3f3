"""The stretch tasks and the boundary case of lessons 07-09: each wrong answer gets the hint that names its mistake.

tests/course/test_course_mutants.py checks that every mutant scores 0; here each mutant
listed in its module's ``HINTS`` must also get a verdict whose text contains the phrase that
names its mistake (issue 11: "diagnose the common mistakes by name").
"""

import importlib.util
import pathlib

import pytest

from minillm.course.checks import run_check

MUTANTS_DIR = pathlib.Path(__file__).resolve().parents[1] / "course" / "mutants"


def _load(lesson: str):
    spec = importlib.util.spec_from_file_location(f"hw_mutants_{lesson}", MUTANTS_DIR / f"lesson{lesson}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _params():
    out = []
    for lesson in ("07", "08", "09"):
        module = _load(lesson)
        for task, fns in module.MUTANTS.items():
            for fn in fns:
                if fn.__name__ in module.HINTS:
                    out.append(pytest.param(task, fn, module.HINTS[fn.__name__], marks=getattr(pytest.mark, f"lesson{lesson}"),
                                            id=f"{task}-{fn.__name__}"))
    return out


@pytest.mark.parametrize("task, mutant, phrase", _params())
def test_mutant_gets_the_hint_that_names_its_mistake(task, mutant, phrase):
    res = run_check(task, mutant)
    assert res.points == 0 and res.status == "failed", res.line
    assert phrase in res.message, res.line


def test_every_hinted_mutant_exists():
    for lesson in ("07", "08", "09"):
        module = _load(lesson)
        names = {fn.__name__ for fns in module.MUTANTS.values() for fn in fns}
        assert set(module.HINTS) <= names, set(module.HINTS) - names
