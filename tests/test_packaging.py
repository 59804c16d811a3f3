"""The install files agree with each other, and the command line behaves."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.foundation

ROOT = Path(__file__).resolve().parents[1]


def _name(spec: str) -> str:
    return re.split(r"[<>=!~\[ ;]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _env_pip() -> list[str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    out, inside = [], False
    for line in lines:
        if line.strip() == "- pip:":
            inside = True
            continue
        if inside and line.strip().startswith("- "):
            out.append(line.strip()[2:].strip())
    return out


def test_environment_yml_agrees_with_pyproject():
    proj = _pyproject()["project"]
    wanted = {_name(s): s.replace(" ", "") for s in proj["dependencies"] + proj["optional-dependencies"]["dev"]}
    env = [s for s in _env_pip() if not s.startswith("-e")]
    have = {_name(s): s.replace(" ", "") for s in env}
    assert have == wanted, "environment.yml's pip section must list pyproject's dependencies with the same versions"
    assert "-e .[dev]" in _env_pip()
    assert "python=3.11" in (ROOT / "environment.yml").read_text()


def test_readme_quick_start_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -e ".[dev]" && minillm tour' in readme
    assert 'pip install -e ".[dev]"' in ci and "minillm tour" in ci and "pytest" in ci


def _cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "minillm.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.mark.parametrize("cmd", [[], ["tour"], ["train"], ["generate"]])
def test_help_everywhere(cmd):
    r = _cli(*cmd, "--help")
    assert r.returncode == 0 and "usage: minillm" in r.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["train", "--steps", "zero"], "'zero' is not a whole number"),
        (["train", "--steps", "0"], "0 must be at least 1"),
        (["generate", "--temperature", "-1"], "must be >= 0"),
        (["train", "--preset", "huge"], "invalid choice: 'huge'"),
        (["train", "--text", "no/such/file.txt", "--steps", "1"], "no/such/file.txt"),
        (["generate", "--model", "no/such/model.pt"], "does not exist"),
        (["tour", "--skip", "nothing"], "is not a tour step"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message):
    r = _cli(*args)
    assert r.returncode == 2
    err = r.stderr.strip()
    assert message in err and "Traceback" not in err
    assert len(err.splitlines()) == 1, err


def test_train_on_user_text_then_generate(tmp_path):
    text = tmp_path / "poem.txt"
    text.write_text("the cat sat on the mat. 猫坐在垫子上。\n" * 60, encoding="utf-8")
    out = tmp_path / "m.pt"
    r = _cli("train", "--text", str(text), "--steps", "3", "--block-size", "32", "--batch-size", "2", "--out", str(out))
    assert r.returncode == 0, r.stderr
    r = _cli("generate", "--model", str(out), "--prompt", "the cat", "--max-new-tokens", "5")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("the cat")


def test_generate_from_the_zoo():
    r = _cli("generate", "--prompt", "Lily went to the", "--max-new-tokens", "20", "--temperature", "0")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Lily went to the") and len(r.stdout) > len("Lily went to the") + 10


def test_tour_writes_a_report(tmp_path):
    """The tour's own steps (the other parts test their tour steps in their own folders)."""
    out = tmp_path / "report"
    from minillm.tour import STEPS

    skip = [arg for name, _, _ in STEPS if name not in ("model", "speed") for arg in ("--skip", name)]
    r = _cli("tour", "--out", str(out), *skip, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "validation loss" in report and "fact recall" in report and "MFU" in report
    assert (out / "parameters.png").stat().st_size > 1000
