"""Issue 12's attacks on the grader, each a test: blank stubs behind the attack score 0, the grader
does not crash, and its output is its own.

The fast tests check the pieces without a kernel (the plain-data format, the static scan, the
secret seeds, the run-time watch). The kernel tests grade lesson 01 submissions that carry the
attacks, with the static scan switched off where the run-time defences are the ones under test.
"""

from __future__ import annotations

import json
import sys
import time

import nbformat
import pytest
import torch

from _course_helpers import ROOT, write_submission
from minillm.course import grade as grade_mod
from minillm.course.checks import get_task, grade_check, run_check
from minillm.course.checks.learner import _Learner, _UsedReference, salted_seeds
from minillm.course.grade import grade_paths
from minillm.course.protocol import PlainDataError, dumps, loads
from minillm.course.static import scan

pytestmark = pytest.mark.lesson01

STEM = "01_transformer"


# --------------------------------------------------------------------------- plain data


class _AllFalse(torch.Tensor):
    def __gt__(self, other):
        return torch.zeros(self.shape, dtype=torch.bool)

    def any(self, *a, **k):
        return torch.tensor(False)


class _Yes(int):
    def __ne__(self, other):
        return False

    def __eq__(self, other):
        return True

    __hash__ = int.__hash__


class _Str(str):
    def __eq__(self, other):
        return True

    __hash__ = str.__hash__


def test_values_come_back_as_exact_types_so_forged_comparisons_do_not_survive():
    x = torch.zeros(2, 3).as_subclass(_AllFalse)
    got = loads(dumps([x, _Yes(0), _Str("nope"), (1, 2.5), {"k": x}]))
    t, n, s, tup, d = got
    assert type(t) is torch.Tensor and bool((t > -1).all())  # the honest comparison
    assert type(n) is int and n != 7 and type(s) is str and s != "yes"
    assert type(tup) is tuple and d["k"] is t  # shared references survive the trip


@pytest.mark.parametrize("text", [
    "not json",
    json.dumps({"$T": "float32", "s": [2], "b": "AAAA"}),  # a bare tensor body outside a container
    json.dumps({"$k": 0, "v": {"$T": "float32", "s": [4], "b": "AAAA"}}),  # 3 bytes for 16
    json.dumps({"$dc": "collections:OrderedDict", "f": {}}),  # not a minillm dataclass
    json.dumps({"$p": "evil", "v": 1}),
    json.dumps({"$r": 5}),
    json.dumps({"$k": 0, "v": {"$T": "object", "s": [], "b": ""}}),
])
def test_forged_replies_are_refused(text):
    with pytest.raises(PlainDataError):
        loads(text)


def test_a_value_that_is_not_plain_data_is_named():
    with pytest.raises(PlainDataError, match="cannot be sent back"):
        dumps(object())


# --------------------------------------------------------------------------- hidden seeds


def test_a_lookup_table_of_the_fixed_inputs_fails_under_the_secret_seed():
    import torch.nn.functional as F

    table = {}

    def record(x, w, b, eps=1e-5):
        out = F.layer_norm(x, (x.shape[-1],), w, b, eps)
        table[(tuple(x.shape), x.sum().item(), float(eps))] = out
        return out

    assert grade_check("01.layer_norm", record, None).passed  # the fixed-seed cases, recorded

    def lookup(x, w, b, eps=1e-5):
        return table.get((tuple(x.shape), x.sum().item(), float(eps)), torch.zeros_like(x))

    assert grade_check("01.layer_norm", lookup, None).passed  # the table answers the fixed inputs
    res = grade_check("01.layer_norm", lookup, 12345)
    assert not res.passed and res.points == 0


def test_salted_seeds_change_every_seeded_draw_and_restore_torch():
    gen, seed = torch.Generator, torch.manual_seed
    plain = torch.randn(3, generator=torch.Generator().manual_seed(1))
    with salted_seeds(7):
        salted = torch.randn(3, generator=torch.Generator().manual_seed(1))
        torch.manual_seed(0)
        a = torch.randn(2)
    torch.manual_seed(0)
    b = torch.randn(2)
    assert not torch.equal(plain, salted) and not torch.equal(a, b)
    assert torch.Generator is gen and torch.manual_seed is seed
    with salted_seeds(None):
        assert torch.equal(torch.randn(3, generator=torch.Generator().manual_seed(1)), plain)


# --------------------------------------------------------------------------- run-time watch


def test_switching_the_profile_hook_off_is_caught():
    import torch.nn.functional as F

    def sneaky(x, w, b, eps=1e-5):
        sys.setprofile(None)
        return F.layer_norm(x, (x.shape[-1],), w, b, eps)

    refs = {"torch.nn.functional.layer_norm": F.layer_norm}
    with pytest.raises(_UsedReference):
        _Learner(sneaky, refs)(torch.randn(2, 4), torch.ones(4), torch.zeros(4))
    assert run_check("01.layer_norm", sneaky).points == 0


def test_a_reference_called_from_a_new_thread_is_caught():
    import threading

    import torch.nn.functional as F

    def threaded(x, w, b, eps=1e-5):
        out = []
        t = threading.Thread(target=lambda: out.append(F.layer_norm(x, (x.shape[-1],), w, b, eps)))
        t.start()
        t.join()
        return out[0]

    res = run_check("01.layer_norm", threaded)
    assert res.points == 0 and "reference" in res.message


# --------------------------------------------------------------------------- static scan

_SETUP = ["import math\nimport torch\nimport torch.nn.functional as F\nfrom minillm.course import check\n"
          "from minillm.train import AdamW, adamw_update\n"]

STATIC_ATTACKS = {
    "exec of a reference's source": "import inspect\nexec(inspect.getsource(F.layer_norm))",
    "eval": "layer_norm = eval('F.layer_norm')",
    "compile": "code = compile('1', 'x', 'eval')",
    "dunder import": "m = __import__('minillm.model')",
    "importlib": "import importlib\nm = importlib.import_module('minillm.model')",
    "switching the profile off": "import sys\nsys.setprofile(None)",
    "settrace": "import threading\nthreading.settrace(None)",
    "running the solution notebook": "src = open('solutions/01_transformer.ipynb').read()",
    "the solution's path in a string": "p = '../solutions/01_transformer.ipynb'",
    "minillm.kernels": "def layer_norm(x, w, b, eps=1e-5):\n    import minillm.kernels as K\n    return K.layer_norm(x, w, b)",
    "torch.ops.aten": "def layer_norm(x, w, b, eps=1e-5):\n    return torch.ops.aten.native_layer_norm(x, [x.shape[-1]], w, b, eps)[0]",
    "torch._C": "def cross_entropy(l, t):\n    return torch._C._nn.cross_entropy_loss(l, t)",
    "patching torch.Tensor.any": "torch.Tensor.any = lambda self, *a: torch.tensor(False)",
    "patching math.isclose": "math.isclose = lambda *a, **k: True",
    "patching builtins.min": "import builtins\nbuiltins.min = lambda *a: 0",
    "patching run_check": "import minillm.course.checks as C\nC.run_check = None",
    "a pre_run_cell hook": "get_ipython().events.register('pre_run_cell', lambda *a: None)",
    "an input transformer": "ip = get_ipython()\nip.input_transformers_post.append(lambda lines: lines)",
    "the real communicator": "def ring(comm, chunks):\n    comm._comm.all_gather(chunks, chunks[0])",
    "a setsid child": "import os\nif os.fork() == 0:\n    os.setsid()",
    "killing the grader": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
    "reading /proc": "import os\nargs = os.listdir('/proc')",
    "subprocess": "import subprocess\nsubprocess.run(['sleep', '1'])",
    "a shell escape": "!cat ../solutions/01_transformer.ipynb",
    "%run of the solution": "%run ../solutions/01_transformer.ipynb",
    "getattr with a computed name": "f = getattr(F, 'layer' + '_norm')",
    "code objects": "def f():\n    pass\nf.__code__ = None",
}


@pytest.mark.parametrize("source", list(STATIC_ATTACKS.values()), ids=list(STATIC_ATTACKS))
def test_static_scan_catches_tampering_in_any_learner_cell(source):
    found = scan([(None, source)], _SETUP, {})
    assert found and found[0].task is None, found
    assert "0 points" in found[0].message and "a cell you added" in found[0].message


REFERENCE_ATTACKS = {
    "01.layer_norm": "def layer_norm(x, w, b, eps=1e-5):\n    return torch.native_layer_norm(x, [x.shape[-1]], w, b, eps)[0]",
    "01.cross_entropy": "def cross_entropy(logits, targets):\n    return F.nll_loss(F.log_softmax(logits, -1), targets)",
    "01.causal_attention": "def causal_attention(q, k, v):\n    return F.scaled_dot_product_attention(q, k, v, is_causal=True)",
    "01.adamw_step": "def adamw_step(p, g, m, v, step, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):\n"
                     "    return adamw_update(p, g, m, v, step, lr, betas, eps, weight_decay)",
}


@pytest.mark.parametrize("task", list(REFERENCE_ATTACKS))
def test_static_scan_catches_a_task_s_reference_and_its_twins_in_its_answer_cell(task):
    refs = {t: get_task(t).references for t in REFERENCE_ATTACKS}
    found = scan([(task, REFERENCE_ATTACKS[task])], _SETUP, refs)
    assert [f.task for f in found] == [task], found
    assert "forbids" in found[0].message


def test_static_scan_passes_every_solution():
    from minillm.course.grade import _static_findings, find_release, merge

    for path in sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb")):
        sub = nbformat.read(path, as_version=4)
        rel = nbformat.read(find_release(sub, path, ROOT), as_version=4)
        run = merge(rel, sub)
        assert _static_findings(run, [rc.task for rc in run if rc.role == "check"]) == {}, path.name


# --------------------------------------------------------------------------- in real kernels


def _submission(path, answers: dict[str, str], extra: list[str] = ()):
    write_submission(path, ROOT / "exercises" / f"{STEM}.ipynb", "01", answers, extra)


@pytest.mark.slow
def test_statically_caught_attacks_score_zero_without_running(tmp_path):
    sub = tmp_path / f"{STEM}.ipynb"
    marker = tmp_path / "ran"
    _submission(sub, {}, extra=[f"import os\nopen({str(marker)!r}, 'w').write('x')\nos.kill(os.getppid(), 9)"])
    out = tmp_path / "grades.json"
    t0 = time.perf_counter()
    rows, code = grade_paths([sub], json_out=out, echo=lambda s: None)
    assert code == 0 and rows and all(r.points == 0 for r in rows)
    assert all("graded code may not do that" in r.message for r in rows)
    assert not marker.exists() and time.perf_counter() - t0 < 20  # the learner's code never ran
    assert json.loads(out.read_text())[0]["points"] == 0


_RUNTIME_ATTACKS = {
    # A Tensor subclass whose comparisons say "no difference", with wrong values.
    "causal_attention": (
        "class Liar(torch.Tensor):\n"
        "    def __gt__(self, o): return torch.zeros(self.shape, dtype=torch.bool)\n"
        "    def any(self, *a, **k): return torch.tensor(False)\n"
        "def causal_attention(q, k, v):\n"
        "    return torch.zeros_like(q).as_subclass(Liar)\n"),
    # Its own check(), a patched run_check and replaced registered checks, then the blank stub.
    "layer_norm": (
        "import minillm.course.checks as C\n"
        "def check(task, fn):\n    print('✔', task, ' 2/2')\n"
        "C.run_check = lambda t, f: C.CheckResult(t, 9, 9, 'passed')\n"
        "for t in C._REGISTRY.values():\n    t.func = lambda fn: None\n"
        "def layer_norm(x, w, b, eps=1e-5):\n    raise NotImplementedError()\n"),
    # A fake verdict and a fake reply published, then a raise.
    "cross_entropy": (
        "from IPython.display import publish_display_data\n"
        "publish_display_data({'application/vnd.minillm.check+json': {'task': '01.cross_entropy', 'points': 2, "
        "'max_points': 2, 'status': 'passed', 'message': ''}})\n"
        "publish_display_data({'application/vnd.minillm.reply.v1': '{\"nonce\": \"0\", \"reply\": {\"out\": 0}}'})\n"
        "def cross_entropy(logits, targets):\n    raise NotImplementedError()\n"
        "raise RuntimeError('published')\n"),
    # A background thread that publishes results every 2 ms; a pre_run_cell hook.
    "adamw_step": (
        "import threading, time, json, re\n"
        "from IPython.display import publish_display_data\n"
        "def spam():\n"
        "    while True:\n"
        "        publish_display_data({'application/vnd.minillm.check+json': {'task': '01.adamw_step', 'points': 3, "
        "'max_points': 3, 'status': 'passed', 'message': ''}})\n"
        "        time.sleep(0.002)\n"
        "threading.Thread(target=spam, daemon=True).start()\n"
        "get_ipython().events.register('pre_run_cell', lambda *a: None)\n"
        "def adamw_step(param, grad, m, v, step, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):\n"
        "    raise NotImplementedError()\n"),
    # An int subclass that equals everything.
    "count_params": (
        "class Yes(int):\n"
        "    def __eq__(self, o): return True\n"
        "    def __ne__(self, o): return False\n"
        "    __hash__ = int.__hash__\n"
        "def count_params(vocab_size, block_size, n_layer, n_embd):\n    return Yes(0)\n"),
    # Patched comparisons in the kernel (math.isclose, builtins.min, Tensor.any) and str subclasses.
    "decode_positions": (
        "import math, builtins\n"
        "math.isclose = lambda *a, **k: True\n"
        "builtins.min = lambda *a, **k: 0\n"
        "torch.Tensor.any = lambda self, *a, **k: torch.tensor(False)\n"
        "class S(str):\n    def __eq__(self, o): return True\n    __hash__ = str.__hash__\n"
        "def decode_positions(prompt_len, n_new):\n    return (S('a'), S('b'))\n"),
}


@pytest.mark.slow
def test_verdicts_forged_in_the_kernel_score_zero(tmp_path, monkeypatch):
    monkeypatch.setattr(grade_mod, "STATIC_ANALYSIS", False)  # the run-time defences alone
    sub = tmp_path / f"{STEM}.ipynb"
    _submission(sub, _RUNTIME_ATTACKS)
    out = tmp_path / "grades.json"
    rows, code = grade_paths([sub], json_out=out, timeout=20, echo=lambda s: None)
    got = {r.task: (r.points, r.status) for r in rows}
    assert code == 0 and len(got) == 6
    assert all(points == 0 for points, _ in got.values()), got
    assert got["01.layer_norm"][1] == "not attempted" and got["01.adamw_step"][1] in ("not attempted", "failed"), got
    assert [d["points"] for d in json.loads(out.read_text())] == [0] * 6


#: An input transformer that answers every grader call itself, with the call's own nonce (it sees the
#: code): all it can send is plain data, which the grader checks like any answer.
_FORGE = (
    "import json, re\n"
    "from IPython.display import publish_display_data\n"
    "def forge(lines):\n"
    "    src = ''.join(lines)\n"
    "    m = re.search(r\"serve\\('([0-9a-f]+)'\", src)\n"
    "    if not m: return lines\n"
    "    reply = json.dumps({'nonce': m.group(1), 'reply': {'out': {'$t': [0, 0, 0]}, 'args': []}})\n"
    "    return [f'publish_display_data({{\"application/vnd.minillm.reply.v1\": {reply!r}}})\\n']\n"
    "get_ipython().input_transformers_post.append(forge)\n"
)


@pytest.mark.slow
def test_replies_forged_with_the_right_nonce_are_only_answers(tmp_path, monkeypatch):
    monkeypatch.setattr(grade_mod, "STATIC_ANALYSIS", False)
    sub = tmp_path / f"{STEM}.ipynb"
    _submission(sub, {}, extra=[_FORGE])
    rows, code = grade_paths([sub], timeout=20, echo=lambda s: None)
    assert code == 0 and len(rows) == 6 and all(r.points == 0 for r in rows), rows
    assert any("tuple of 3" in r.message for r in rows)  # the forged (0, 0, 0) was read and judged


# --------------------------------------------------------------------------- attacks on the grader's processes


@pytest.mark.slow
def test_a_setsid_daemon_cannot_outlive_grading_or_rewrite_the_json(tmp_path, monkeypatch):
    from minillm.course.isolate import descendants

    monkeypatch.setattr(grade_mod, "STATIC_ANALYSIS", False)
    out = tmp_path / "grades.json"
    sub = tmp_path / f"{STEM}.ipynb"
    daemon = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(4)\n"
        f"        open({str(out)!r}, 'w').write('[{{\"points\": 7}}]')\n"
        "    os._exit(0)\n"
    )
    _submission(sub, {}, extra=[daemon])
    before = set(descendants())
    t0 = time.perf_counter()
    rows, code = grade_paths([sub], json_out=out, timeout=20, echo=lambda s: None)
    assert time.perf_counter() - t0 < 60  # no pipe held open by the daemon
    assert set(descendants()) <= before  # every process of the submission is gone
    time.sleep(5)
    assert [d["points"] for d in json.loads(out.read_text())] == [0] * 6


@pytest.mark.slow
def test_killing_its_worker_costs_a_submission_its_own_row_only(tmp_path, monkeypatch):
    monkeypatch.setattr(grade_mod, "STATIC_ANALYSIS", False)
    bad, good = tmp_path / "bad", tmp_path / "good"
    bad.mkdir(), good.mkdir()
    _submission(bad / f"{STEM}.ipynb", {}, extra=["import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"])
    (good / "07_roofline.ipynb").write_bytes((ROOT / "solutions" / "07_roofline.ipynb").read_bytes())
    out = tmp_path / "grades.json"
    rows, code = grade_paths([bad, good], json_out=out, echo=lambda s: None)
    by = {(r.submission.split("/")[-2], r.task): r for r in rows}
    assert code == 1
    assert all(r.points == 0 and r.max > 0 and "worker" in r.message for (s, _), r in by.items() if s == "bad")
    assert all(r.status == "passed" for (s, _), r in by.items() if s == "good")
    assert len(json.loads(out.read_text())) == len(rows)


@pytest.mark.slow
def test_overwriting_the_release_does_not_change_the_next_student_s_grade(tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(grade_mod, "STATIC_ANALYSIS", False)
    root = tmp_path / "course"
    shutil.copytree(ROOT / "exercises", root / "exercises")
    release = root / "exercises" / f"{STEM}.ipynb"
    a, b = tmp_path / "class" / "a", tmp_path / "class" / "b"
    a.mkdir(parents=True), b.mkdir(parents=True)
    _submission(a / f"{STEM}.ipynb", {}, extra=[f"open({str(release)!r}, 'w').write('{{}}')"])
    (b / f"{STEM}.ipynb").write_bytes((ROOT / "solutions" / f"{STEM}.ipynb").read_bytes())
    rows, code = grade_paths([tmp_path / "class"], root=root, echo=lambda s: None)
    assert release.read_text() == "{}"  # the attack did write (no --sandbox here) ...
    got = {r.task: r.status for r in rows if "/b/" in r.submission}
    assert len(got) == 6 and set(got.values()) == {"passed"}  # ... but the next student is graded as released


def _sandbox_ok() -> bool:
    import shutil

    if shutil.which("bwrap") is None:
        return False
    from minillm.course.isolate import sandbox_argv, sandbox_works

    return sandbox_works(sandbox_argv(ROOT, [])) is None


@pytest.mark.slow
@pytest.mark.skipif(not _sandbox_ok(), reason="bubblewrap (Debian's bubblewrap) is not installed or cannot start here")
def test_under_the_sandbox_a_submission_sees_no_solutions_no_grader_and_cannot_write(tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(grade_mod, "STATIC_ANALYSIS", False)
    root = tmp_path / "course"
    shutil.copytree(ROOT / "exercises", root / "exercises")
    (root / "solutions").mkdir()
    (root / "solutions" / "secret.txt").write_text("answers")
    release = root / "exercises" / f"{STEM}.ipynb"
    before = release.read_bytes()
    probe = (
        "import os\n"
        f"seen = os.listdir({str(root / 'solutions')!r})\n"
        "pids = [p for p in os.listdir('/proc') if p.isdigit()]\n"
        f"try:\n    open({str(release)!r}, 'w').write('{{}}')\nexcept OSError:\n    pass\n"
        "def count_params(vocab_size, block_size, n_layer, n_embd):\n"
        "    return len(seen) * 1000 + len(pids)\n"
    )
    sub = tmp_path / "class" / "a" / f"{STEM}.ipynb"
    sub.parent.mkdir(parents=True)
    _submission(sub, {"count_params": probe})
    rows, code = grade_paths([sub], root=root, sandbox=True, echo=lambda s: None)
    assert release.read_bytes() == before  # read-only course tree
    msg = next(r.message for r in rows if r.task == "01.count_params")
    import re

    got = int(re.search(r" is (\d+), expected", msg).group(1))  # what the probe saw, as its "count"
    assert code == 0 and all(r.points == 0 for r in rows)
    assert got < 10, msg  # no file of solutions/ and only the sandbox's own few processes


def test_sandbox_without_bubblewrap_is_a_clear_error(monkeypatch):
    import shutil

    from minillm.course.isolate import SandboxError, sandbox_argv

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SandboxError, match="apt-get install bubblewrap"):
        sandbox_argv(ROOT, [])


def _solution_params():
    from _course_helpers import solution_params

    return solution_params()


@pytest.mark.parametrize("stem", _solution_params())
def test_every_solution_passes_its_checks_under_secret_seeds(stem):
    # The grader mixes every seed a check sets with a secret salt: a check must pass an honest
    # solution whatever the salt (and fail a lookup table of the fixed-seed cases).
    from minillm.course.notebooks import read, task_functions

    fns = task_functions(read(ROOT / "solutions" / f"{stem}.ipynb"), f"solutions/{stem}")
    for salt in (1, 2**61 + 12345):
        for task, fn in fns.items():
            res = grade_check(task, _Learner(fn, {}), salt)
            assert res.passed, (salt, res.line)


@pytest.mark.slow
def test_the_kernel_runs_under_the_memory_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(grade_mod, "STATIC_ANALYSIS", False)
    probe = ("import resource\n"
             "def count_params(vocab_size, block_size, n_layer, n_embd):\n"
             "    return resource.getrlimit(resource.RLIMIT_AS)[0]\n")
    sub = tmp_path / f"{STEM}.ipynb"
    _submission(sub, {"count_params": probe})
    rows, _ = grade_paths([sub], memory=3 * 2**30, echo=lambda s: None)
    msg = next(r.message for r in rows if r.task == "01.count_params")
    assert f"is {3 * 2**30:,}" in msg, msg


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and os.execv hiding are Linux only")
def test_no_process_a_kernel_can_see_names_the_output_files(tmp_path):
    import subprocess

    from minillm.course.isolate import descendants

    out = tmp_path / "secret-grades.json"
    proc = subprocess.Popen([sys.executable, "-m", "minillm.cli", "grade", str(ROOT / "solutions" / "07_roofline.ipynb"),
                             "--json", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen = []
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        kids = descendants(proc.pid)
        if kids:  # a worker (and soon a kernel) exists: what can they read in /proc?
            for pid in [proc.pid, *kids]:
                try:
                    seen.append(open(f"/proc/{pid}/cmdline", "rb").read().decode("utf-8", "replace"))
                except OSError:
                    pass
        time.sleep(0.2)
    assert proc.wait(timeout=120) == 0 and out.exists()
    assert seen and not any(out.name in c for c in seen), seen


def _can_read_cwd_of(hide: bool) -> bool:
    """Can one process read another's /proc/<pid>/cwd, both running as one ordinary user?

    As root the two children drop to uid/gid 65534 first: root itself may read any process,
    which is why an instructor should grade as an ordinary user."""
    import os

    from minillm.course.isolate import hide_from_same_user

    def ordinary_user() -> None:
        if os.getuid() == 0:
            os.setgid(65534)
            os.setuid(65534)

    r, w = os.pipe()
    target = os.fork()
    if target == 0:  # the grader's process
        try:
            ordinary_user()
            if hide:
                hide_from_same_user()
            else:  # changing uid made it non-dumpable; a process started by that user would not be
                import ctypes

                ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE, 1
            os.write(w, b"x")
            time.sleep(30)
        finally:
            os._exit(0)
    os.read(r, 1)
    prober = os.fork()
    if prober == 0:  # a kernel of the same user
        code = 1
        try:
            ordinary_user()
            os.readlink(f"/proc/{target}/cwd")
            code = 0
        except OSError:
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(prober, 0)
    os.kill(target, 9)
    os.waitpid(target, 0)
    os.close(r)
    os.close(w)
    return os.waitstatus_to_exitcode(status) == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_DUMPABLE) is Linux only")
def test_the_grader_processes_keep_their_proc_entries_from_a_kernel():
    # Without the defence a kernel reads the main process's working directory (where the
    # output files usually are); with it, /proc/<pid>/cwd, fd, environ and mem are refused.
    assert _can_read_cwd_of(hide=False)
    assert not _can_read_cwd_of(hide=True)
