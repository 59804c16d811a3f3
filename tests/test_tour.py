"""minillm.tour: the story sample ends at a sentence boundary; the model step's numbers."""

from pathlib import Path

import pytest

from minillm.tour import STEPS, _whole_sentences, step_model

pytestmark = pytest.mark.lesson01


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Lily went to the park. She saw a dog and", "Lily went to the park."),
        ('He said "Yes!" Then they', 'He said "Yes!"'),
        ("Where is it? It is under the bed. The", "Where is it? It is under the bed."),
        ("no sentence end at all", "no sentence end at all"),
        ("Mr. Tom", "Mr."),  # a period before a space counts: the course's stories have no abbreviations
    ],
)
def test_whole_sentences(text, expected):
    assert _whole_sentences(text) == expected


def test_model_step_names_both_counts_and_ends_the_story(tmp_path: Path, capsys):
    md = step_model(tmp_path)
    out = capsys.readouterr().out
    assert "parameters without the position embedding wpe" in out and "with it" in out
    sample = next(line for line in out.splitlines() if line.strip().startswith("sample:"))
    assert sample.rstrip().endswith((".", "!", "?", '"')), sample
    assert (tmp_path / "parameters.png").stat().st_size > 1000  # the bar chart was drawn and saved
    assert "## The model" in md


def test_the_cli_help_names_every_tour_step():
    """`minillm tour --help` lists the steps --skip accepts; a new step must be added there too."""
    import contextlib
    import io

    from minillm.cli import build_parser

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args(["tour", "--help"])  # what the learner types, without a subprocess
    text = out.getvalue()
    for name, _, _ in STEPS:
        assert name in text, f"`minillm tour --help` does not name the step {name!r}"
