"""Issue 12's last two items, graded through ``minillm grade``: the rank-code checks of lessons 10-12.

1. Every value a learner's rank code is compared against is computed in the grader, from inputs
   the check draws itself: a submission that patches the simulator (its collectives, or the
   random draws of the rank functions) in its kernel, past the static scan, cannot forge the
   expected values any more. Before this change each of the attacks below scored full marks
   for its task (the expected value came back from the kernel beside the learner's answer).
2. ``10.ring_all_reduce`` blames the earlier task at fault while grading, as the learner's own
   ``check()`` does.
"""

from __future__ import annotations

import pytest
import torch

from _course_helpers import ROOT, write_submission
from minillm.course.checks import get_task
from minillm.course.checks.learner import salted_seeds
from minillm.course.grade import grade_paths
from minillm.course.static import scan

STEMS = {"10": "10_collectives", "11": "11_data_parallel", "12": "12_tensor_parallel"}

#: Patches the simulator's class through a plain assignment (no import alias, no getattr), which the
#: static scan does not see: every collective it runs in the kernel is then a no-op.
_PATCH_COLLECTIVES = (
    "from minillm.parallel.sim import SimComm\n"
    "Sim = SimComm\n"
    "Sim.all_reduce = lambda self, tensor, op='sum': tensor\n"
    "Sim.all_gather = lambda self, tensor_list, tensor: tensor_list\n"
)
#: Patches torch's normal draws in the kernel (all zeros): the rank functions' data, drawn in the kernel.
_PATCH_RANDN = (
    "import torch\n"
    "T = torch\n"
    "T.randn = lambda *shape, generator=None, dtype=None, **kw: T.zeros(*shape, dtype=dtype or T.float32)\n"
)


def _submission(path, lesson: str, answers: dict[str, str], extra: list[str] = ()) -> None:
    """The solution of ``lesson`` with some answers replaced and cells added before the first answer."""
    write_submission(path, ROOT / "solutions" / f"{STEMS[lesson]}.ipynb", lesson, answers, extra)


def _grade(tmp_path, lesson: str, answers: dict[str, str], extra: list[str] = ()) -> dict[str, tuple[int, int, str, str]]:
    sub = tmp_path / f"{STEMS[lesson]}.ipynb"
    _submission(sub, lesson, answers, extra)
    rows, code = grade_paths([sub], timeout=60, echo=lambda s: None)
    assert code == 0
    return {r.task: (r.points, r.max, r.status, r.message) for r in rows}


def _passes_static_scan(*sources: str) -> bool:
    return scan([(None, s) for s in sources], ["import torch\n"], {}) == []


# --------------------------------------------------------------------------- item 1: forged expected values


#: Exchanges the chunks round the ring as the task asks (so the message log and the simulated time
#: are right) but never adds them: chunk r keeps only this rank's own values.
_RS_NO_SUM = (
    "def ring_reduce_scatter(comm, chunks):\n"
    "    p, r = comm.world_size, comm.rank\n"
    "    for s in range(p - 1):\n"
    "        buf = torch.empty_like(chunks[(r - s - 2) % p])\n"
    "        req = comm.isend(chunks[(r - s - 1) % p], (r + 1) % p)\n"
    "        comm.recv(buf, (r - 1) % p)\n"
    "        req.wait()\n"
    "    return chunks[r]\n"
)
#: A tree all-reduce that never adds: partial sums go up the tree into scratch buffers, then rank 0's own
#: data comes down. Log and time are a tree's; every rank ends with rank 0's data, which the patched
#: all_reduce (a broadcast from rank 0) also gave the old check as "the sum".
_TREE_NO_SUM = (
    "def tree_all_reduce(comm, tensor):\n"
    "    p, r = comm.world_size, comm.rank\n"
    "    d = 1\n"
    "    while d < p:\n"
    "        if r % (2 * d) == d:\n"
    "            comm.send(tensor, r - d)\n"
    "        elif r % (2 * d) == 0 and r + d < p:\n"
    "            comm.recv(torch.empty_like(tensor), r + d)\n"
    "        d *= 2\n"
    "    while d > 1:\n"
    "        d //= 2\n"
    "        if r % (2 * d) == 0 and r + d < p:\n"
    "            comm.send(tensor, r + d)\n"
    "        elif r % (2 * d) == d:\n"
    "            comm.recv(tensor, r - d)\n"
    "    return tensor\n"
)
_PATCH_TO_BROADCAST = (
    "from minillm.parallel.sim import SimComm\n"
    "Sim = SimComm\n"
    "Sim.all_reduce = lambda self, tensor, op='sum': Sim.broadcast(self, tensor, 0)\n"
)


@pytest.mark.slow
@pytest.mark.lesson10
def test_lesson10_a_patched_simulator_cannot_forge_the_expected_sums(tmp_path):
    assert _passes_static_scan(_PATCH_COLLECTIVES, _RS_NO_SUM, _PATCH_TO_BROADCAST, _TREE_NO_SUM)
    got = _grade(tmp_path, "10", {"ring_reduce_scatter": _RS_NO_SUM}, extra=[_PATCH_COLLECTIVES])
    assert got["10.ring_reduce_scatter"][:3] == (0, 3, "failed"), got["10.ring_reduce_scatter"]
    assert "expected" in got["10.ring_reduce_scatter"][3], got["10.ring_reduce_scatter"]  # a value verdict
    assert got["10.ring_all_gather"][0] == 3 and got["10.tree_all_reduce"][0] == 2, got  # the honest answers still pass
    got = _grade(tmp_path, "10", {"tree_all_reduce": _TREE_NO_SUM}, extra=[_PATCH_TO_BROADCAST])
    assert got["10.tree_all_reduce"][:3] == (0, 2, "failed"), got["10.tree_all_reduce"]
    assert got["10.ring_all_reduce"][0] == 3, got


@pytest.mark.lesson10
def test_lesson10_rank_data_is_the_same_in_the_grader_and_the_kernel_under_one_salt():
    # The check draws its expected values with the seeds the kernel's rank function uses: the same salt
    # gives the same tensors (salted_seeds patches torch.Generator on both sides), another salt others.
    # Across processes, test_honest_rank_code_still_scores_full_marks shows it: the kernel's inputs and
    # the grader's expected values agree to the tolerances for every task of lessons 10-12.
    from minillm.course.checks.lesson10 import _rank_data

    with salted_seeds(99):
        a = _rank_data(3, 2, 10)
    with salted_seeds(99):
        b = _rank_data(3, 2, 10)
    with salted_seeds(100):
        c = _rank_data(3, 2, 10)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.lesson10
def test_lesson10_expected_sums_are_the_simulator_s_bits():
    # The grader's reference adds the ranks' data in rank order, exactly as the simulator's all_reduce:
    # the tolerances derived for "a ring's order against rank order" still hold.
    from minillm.course.checks.lesson10 import _rank_data, _rank_sum
    from minillm.parallel import run

    for seed, (p, n) in enumerate([(3, 10), (5, 23), (8, 40)]):
        def rank(comm, seed=seed, n=n):
            t = _rank_data(seed, comm.rank, n)
            comm.all_reduce(t)
            return t

        res = run(rank, p)
        assert all(torch.equal(t, _rank_sum(seed, n, p)) for t in res.results)


@pytest.mark.slow
@pytest.mark.lesson11
def test_lesson11_a_patched_simulator_cannot_forge_the_expected_gradients(tmp_path):
    # Lesson 11's expected gradients, losses and parameters were already computed in the grader
    # (the inputs travel grader -> kernel); this guards that, with every collective a no-op and
    # every normal draw zero in the kernel.
    stub = "def allreduce_gradients(comm, model):\n    for p in model.parameters():\n        comm.all_reduce(p.grad)\n"
    assert _passes_static_scan(_PATCH_COLLECTIVES, _PATCH_RANDN, stub)
    got = _grade(tmp_path, "11", {"allreduce_gradients": stub}, extra=[_PATCH_COLLECTIVES, _PATCH_RANDN])
    assert got["11.allreduce_gradients"][:3] == (0, 2, "failed"), got["11.allreduce_gradients"]
    assert "expected" in got["11.allreduce_gradients"][3], got  # judged on its values: the scan let it through
    assert got["11.zero1_step"][0] == 0, got["11.zero1_step"]  # its state is drawn in the kernel: zeros there
    assert got["11.zero_memory"][0] == 2 and got["11.fewest_devices"][0] == 2, got


_ROW_ZEROS = "def row_parallel_linear(comm, x_local, w_local, bias):\n    return torch.zeros(x_local.shape[0], bias.shape[0])\n"


@pytest.mark.slow
@pytest.mark.lesson12
def test_lesson12_patched_draws_in_the_kernel_cannot_forge_the_expected_output(tmp_path):
    assert _passes_static_scan(_PATCH_RANDN, _ROW_ZEROS)
    got = _grade(tmp_path, "12", {"row_parallel_linear": _ROW_ZEROS}, extra=[_PATCH_RANDN])
    assert got["12.row_parallel_linear"][:3] == (0, 3, "failed"), got["12.row_parallel_linear"]
    assert "expected" in got["12.row_parallel_linear"][3], got  # judged on its values: the scan let it through
    assert got["12.shard_column"][0] == 2 and got["12.qkv_head_rows"][0] == 3, got


@pytest.mark.slow
@pytest.mark.parametrize("lesson", [pytest.param(n, marks=getattr(pytest.mark, f"lesson{n}")) for n in STEMS])
def test_honest_rank_code_still_scores_full_marks(tmp_path, lesson):
    got = _grade(tmp_path, lesson, {})
    assert all(points == most and status == "passed" for points, most, status, _ in got.values()), got


# --------------------------------------------------------------------------- item 2: blame the earlier task


@pytest.mark.lesson10
def test_depends_on_is_registered_for_the_ring_all_reduce():
    assert get_task("10.ring_all_reduce").depends_on == {
        "ring_reduce_scatter": "10.ring_reduce_scatter", "ring_all_gather": "10.ring_all_gather"}
    assert get_task("10.ring_all_gather").depends_on == {}


def _mutant_source(name: str, as_name: str) -> str:
    """A mutant of tests/course/mutants/lesson10.py as the learner's answer cell defining ``as_name``."""
    import importlib.util
    import inspect

    from _course_helpers import MUTANTS_DIR

    spec = importlib.util.spec_from_file_location("_lesson10_mutants_src", MUTANTS_DIR / "lesson10.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return inspect.getsource(getattr(module, name)).replace(f"def {name}(", f"def {as_name}(", 1)


def _learner_verdict(all_reduce_mutant: str) -> str:
    from _course_helpers import load_mutants
    from minillm.course.checks import run_check

    fn = next(f for f in load_mutants()["10"]["10.ring_all_reduce"] if f.__name__ == all_reduce_mutant)
    return run_check("10.ring_all_reduce", fn).message


@pytest.mark.slow
@pytest.mark.lesson10
@pytest.mark.parametrize("rs_mutant, all_reduce_mutant, own", [
    ("reduce_scatter_wrong_index", "all_reduce_reduce_scatter_wrong_index", "is"),
    ("reduce_scatter_index_error", "all_reduce_reduce_scatter_raises", "your function raised IndexError"),
])
def test_a_wrong_reduce_scatter_is_blamed_in_the_graded_all_reduce_verdict(tmp_path, rs_mutant, all_reduce_mutant, own):
    got = _grade(tmp_path, "10", {"ring_reduce_scatter": _mutant_source(rs_mutant, "ring_reduce_scatter")})
    rs, ar = got["10.ring_reduce_scatter"], got["10.ring_all_reduce"]
    assert rs[0] == 0 and own in rs[3], rs
    assert ar[:3] == (0, 3, "failed"), ar
    lead = "your ring_all_reduce calls your ring_reduce_scatter, which fails its own check ("
    assert ar[3].startswith(lead) and ar[3].endswith("; hint: fix 10.ring_reduce_scatter first, then run this check again"), ar
    assert _learner_verdict(all_reduce_mutant).startswith(lead)  # the learner's own check() says the same
    assert got["10.ring_all_gather"][0] == 3 and got["10.tree_all_reduce"][0] == 2, got


_WRONG_SPLIT = (
    "def ring_all_reduce(comm, tensor):\n"
    "    chunks = list(tensor.view(-1).tensor_split(max(comm.world_size - 1, 1)))\n"
    "    ring_reduce_scatter(comm, chunks)\n"
    "    ring_all_gather(comm, chunks)\n"
    "    return tensor\n"
)


@pytest.mark.slow
@pytest.mark.lesson10
def test_an_error_inside_a_passing_reduce_scatter_names_its_task_while_grading(tmp_path):
    got = _grade(tmp_path, "10", {"ring_all_reduce": _WRONG_SPLIT})
    ar = got["10.ring_all_reduce"]
    assert got["10.ring_reduce_scatter"][0] == 3 and ar[:3] == (0, 3, "failed"), got
    assert ar[3].startswith("your ring_reduce_scatter (task 10.ring_reduce_scatter) raised IndexError"), ar
    assert "when your ring_all_reduce called it" in ar[3], ar
    assert "your ring_reduce_scatter (task 10.ring_reduce_scatter) raised IndexError" in _learner_verdict("all_reduce_wrong_split")


@pytest.mark.lesson10
def test_blame_dependencies_keeps_other_verdicts():
    from minillm.course.checks import blame_dependencies

    failed = ("failed", "your function raised IndexError: list index out of range (in ring_reduce_scatter, line 3)")
    earlier = {"10.ring_reduce_scatter": ("passed", ""), "10.ring_all_gather": ("not attempted", "not attempted yet")}
    # A passing task, a task with no depends_on, an answer that does not call the earlier function: unchanged.
    assert blame_dependencies("10.ring_all_reduce", "passed", "", {"ring_all_gather"}, earlier) is None
    assert blame_dependencies("10.tree_all_reduce", *failed, {"ring_reduce_scatter"}, earlier) is None
    assert blame_dependencies("10.ring_all_reduce", "failed", "wrong values", {"torch"}, earlier) is None
    assert blame_dependencies("10.ring_all_reduce", "failed", "wrong values", {"ring_reduce_scatter"}, earlier) is None
    status, msg = blame_dependencies("10.ring_all_reduce", "failed", "x", {"ring_all_gather"}, earlier)
    assert status == "failed" and msg.startswith("your ring_all_reduce calls your ring_all_gather, which is not written yet")
    status, msg = blame_dependencies("10.ring_all_reduce", *failed, {"ring_reduce_scatter"}, earlier)
    assert msg.startswith("your ring_reduce_scatter (task 10.ring_reduce_scatter) raised IndexError: list index out")


@pytest.mark.lesson10
def test_register_refuses_a_bad_depends_on():
    from minillm.course.checks import register

    for bad in ({"ring reduce": "10.ring_reduce_scatter"}, {"f": "ring_reduce_scatter"}, {"f": "99.self_dep"}):
        with pytest.raises(ValueError, match="depends_on of 99.self_dep"):
            register("99.self_dep", points=1, depends_on=bad)
