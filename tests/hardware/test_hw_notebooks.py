"""Lessons and exercises 07-09 as a learner meets them (issue 11): objectives first, answers only after the run."""

import pathlib
import re

import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
STEMS = ["07_roofline", "08_hardware", "09_cost_models"]


def _marks(stem):
    return getattr(pytest.mark, f"lesson{stem[:2]}")


@pytest.mark.parametrize("stem", [pytest.param(s, marks=_marks(s)) for s in STEMS])
def test_lesson_opens_with_what_the_learner_will_be_able_to_do(stem):
    title = nbformat.read(ROOT / "lessons" / f"{stem}.ipynb", as_version=4).cells[0].source
    assert "you will be able to" in title
    objectives = re.findall(r"^- (\w+)", title.split("you will be able to", 1)[1], re.M)
    assert len(objectives) >= 3 and all(o.islower() for o in objectives)  # each a verb: "compute", "derive", ...


@pytest.mark.parametrize("stem", [pytest.param(s, marks=_marks(s)) for s in STEMS])
def test_exercise_reveals_each_predict_answer_only_after_the_check(stem):
    cells = nbformat.read(ROOT / "exercises" / f"{stem}.ipynb", as_version=4).cells
    tasks = [i for i, c in enumerate(cells) if c.cell_type == "markdown" and c.source.startswith("## Task")]
    assert len(tasks) >= 4  # three or more graded tasks and the stretch task
    assert any("Stretch" in cells[i].source for i in tasks)
    for i in tasks:
        text = cells[i].source
        predict = text.split("**Predict before you run:**", 1)[1] if "**Predict before you run:**" in text else ""
        # No answer inside the predict paragraph: the old ones were sentences in brackets, "(About 1.5 µs.)",
        # "(14 cycles; ... too.)", or "The check knows: 327,680 with GQA."
        given_away = re.search(r"\([^()]*\.\)", predict) or re.search(r"^\(.*\.\)\s*$", predict, re.M)
        assert not given_away, f"{stem}: an answer is given away in {predict!r}"
        assert "check knows" not in predict
        check = next(j for j in range(i + 1, len(cells)) if cells[j].source.startswith("check("))
        reveal = cells[check + 1]
        assert reveal.cell_type == "markdown" and reveal.source.startswith("<details><summary>Answer"), (stem, i)
        assert reveal.source.rstrip().endswith("</details>")
