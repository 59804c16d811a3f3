"""Checks of lesson 11, "Data parallelism and ZeRO".

The data-parallel tasks are rank code: each check runs it with
:func:`minillm.parallel.run` on the simulated cluster, for world sizes 1 to 4 (3
included), and compares every rank's result with *one device* doing the same work
on the whole batch: the gradients, the returned loss and the parameters after the
steps. That equivalence is the point of the lesson (Li et al. 2020, "PyTorch
Distributed", Sec. 2; Rajbhandari et al. 2020, "ZeRO", Sec. 5). Every expected value is
computed in the check's own process (the grader while grading, never the learner's kernel);
the rank code returns only what the learner's code produced. The checks also
read each rank's trace: gradient accumulation must communicate only after the last
micro-batch, and the ZeRO-1 step must send no more than a reduce-scatter plus an
all-gather (2Ψ, ZeRO Sec. 7.2.1).

Models are a tiny minillm GPT (about 5k parameters), so a check takes well under
a second. Errors, deadlocks and timeouts inside ranks become one-line verdicts
through :func:`minillm.course.checks.rankcode.run_ranks`.
"""

from __future__ import annotations

import copy
import math

import torch

from minillm.course.checks import CheckFailure, describe, expect_close, register
from minillm.course.checks.rankcode import one_thread, run_ranks
from minillm.model import GPT, GPTConfig
from minillm.parallel import bytes_sent_per_rank, zero_fewest_devices, zero_memory_bytes
from minillm.train import adamw_update

TINY = GPTConfig(vocab_size=32, block_size=8, n_layer=1, n_head=2, n_embd=16)
BATCH = 12  # sequences per global batch: splits over 1, 2, 3 and 4 ranks


def _model(seed: int) -> GPT:
    torch.manual_seed(seed)
    return GPT(TINY)


def _batches(seed: int, steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    V, T = TINY.vocab_size, TINY.block_size
    return [(torch.randint(0, V, (BATCH, T), generator=g), torch.randint(0, V, (BATCH, T), generator=g)) for _ in range(steps)]


def _local(t: torch.Tensor, comm) -> torch.Tensor:
    """This rank's contiguous slice of the global batch."""
    return t.chunk(comm.world_size)[comm.rank]


# --------------------------------------------------------------------------- ZeRO memory


def _memory_variants(psi, nd, stage, k) -> dict[str, dict[str, float]]:
    """Splits that typical mistakes give (used only to name the mistake)."""
    return {
        "stage 1 shards only the optimizer state; the gradients are sharded from stage 2": dict(
            parameters=2 * psi, gradients=2 * psi / nd if stage >= 1 else 2 * psi, optimizer=k * psi / (nd if stage >= 1 else 1)),
        "stage 3 shards the parameters too: every category is divided by N_d": dict(
            parameters=2 * psi, gradients=2 * psi / (nd if stage >= 2 else 1), optimizer=k * psi / (nd if stage >= 1 else 1)),
        "return bytes, not GB (the widget divides by 1e9)": {
            c: v / 1e9 for c, v in zero_memory_bytes(psi, nd, stage, k).as_dict().items()},
        "parameters and gradients are 2 bytes each (fp16/bf16); K counts the optimizer state only": dict(
            parameters=4 * psi / (nd if stage >= 3 else 1), gradients=4 * psi / (nd if stage >= 2 else 1),
            optimizer=k * psi / (nd if stage >= 1 else 1)),
    }


@register("11.zero_memory", points=2, references=("minillm.parallel.costs.zero_memory_bytes", "minillm.parallel.costs.zero_step_estimate"))
def check_zero_memory(fn) -> None:
    """zero_memory(n_params, world_size, stage, k=12) -> {"parameters", "gradients", "optimizer"} bytes per device."""
    gen = torch.Generator().manual_seed(11)
    # ZeRO's Figure 1 (7.5B parameters, 64 GPUs, K = 12), one GPU, K = 8 (fp32 Adam's m and v),
    # a world size that does not divide Ψ, and seeded random jobs.
    cases = [(7.5e9, 64, s, 12) for s in range(4)] + [(1e9, 1, 3, 12), (13e9, 7, 2, 8), (350, 3, 1, 12)]
    for _ in range(6):
        cases.append((float(torch.randint(1, 2000, (1,), generator=gen)) * 1e8, int(torch.randint(1, 1025, (1,), generator=gen)),
                      int(torch.randint(0, 4, (1,), generator=gen)), 12))
    for psi, nd, stage, k in cases:
        want = zero_memory_bytes(psi, nd, stage, k).as_dict()
        got = fn(psi, nd, stage, k) if k != 12 else fn(psi, nd, stage)
        where = f"zero_memory(n_params={psi:g}, world_size={nd}, stage={stage}" + (f", k={k})" if k != 12 else ")")
        if not isinstance(got, dict) or set(got) != set(want):
            raise CheckFailure(f"{where} returned", got=describe(got) if not isinstance(got, dict) else sorted(got),
                               expected=f"a dict with keys {sorted(want)}")
        for cat, v in want.items():
            g = got[cat]
            if isinstance(g, torch.Tensor) and g.numel() == 1:
                g = g.item()
            if isinstance(g, bool) or not isinstance(g, (int, float)):
                raise CheckFailure(f"{where}[{cat!r}] is", got=describe(g), expected="a number of bytes")
            # Products and quotients of exact inputs in float64: rounding only, 1e-9 relative.
            if not math.isclose(g, v, rel_tol=1e-9):
                hint = next((h for h, wrong in _memory_variants(psi, nd, stage, k).items()
                             if math.isclose(g, wrong[cat], rel_tol=1e-9) and not math.isclose(wrong[cat], v, rel_tol=1e-9)),
                            "parameters 2Ψ, gradients 2Ψ, optimizer KΨ; stage 1 divides the optimizer state by N_d, "
                            "stage 2 the gradients too, stage 3 the parameters too")
                raise CheckFailure(f"{where}[{cat!r}] is", got=f"{g:,.6g} bytes", expected=f"{v:,.6g} bytes", hint=hint)


# --------------------------------------------------------------------------- averaging gradients


def _reference_grads(model: GPT, x, y, frozen: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The gradients of the mean loss over the batch (x, y), on one device: computed in the check's process."""
    m = copy.deepcopy(model)
    for name in frozen:
        m.get_parameter(name).requires_grad_(False)
    _, loss = m(x, y)
    loss.backward()
    return {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}


def _grad_rank(comm, fn, model, x, y, frozen):
    m = copy.deepcopy(model)
    for name in frozen:
        m.get_parameter(name).requires_grad_(False)
    _, loss = m(_local(x, comm), _local(y, comm))
    loss.backward()
    out = fn(comm, m)
    # Only what the learner's code left behind goes back; the check computes what to compare it with.
    return {"out": out, "grads": {n: None if p.grad is None else p.grad.clone() for n, p in m.named_parameters()}}


@register("11.allreduce_gradients", points=2, references=(
    "minillm.parallel.data_parallel.allreduce_gradients", "minillm.parallel.data_parallel.dp_train_step"))
@one_thread()
def check_allreduce_gradients(fn) -> None:
    """allreduce_gradients(comm, model): every parameter's .grad becomes its mean over the ranks, in place."""
    # (world size, frozen parameters): 1 rank (nothing to do), 2, 3 and 4 ranks, and a
    # model whose position embedding is frozen (its .grad stays None).
    cases = [(1, ()), (2, ()), (3, ("wpe.weight",)), (4, ())]
    for seed, (p, frozen) in enumerate(cases):
        model = _model(seed)
        x, y = _batches(100 + seed, 1)[0]
        ref = _reference_grads(model, x, y, frozen)
        # Each rank's own gradient (its slice of the batch), to name the mistake of averaging a copy.
        local = [_reference_grads(model, x.chunk(p)[r], y.chunk(p)[r], frozen) for r in range(p)] if p > 1 else None
        res = run_ranks(_grad_rank, p, fn, model, x, y, frozen)
        first = None
        for r, d in enumerate(res.results):
            for name, g in d["grads"].items():
                if name in frozen:
                    continue
                if g is None:
                    raise CheckFailure(f"with world_size={p}, rank {r}'s {name}.grad is None",
                                       hint="average the gradients in place: keep p.grad, do not set it to None")
                # The mean of p equal-sized shard means is the full-batch mean; only the
                # float32 summation order differs (shards, then ranks): gradients are
                # O(1e-2..1), so 1e-6 absolute and 1e-4 relative.
                expect_close(g, ref[name], atol=1e-6, rtol=1e-4, what=f"with world_size={p}, rank {r}'s {name}.grad",
                             hint="comm.all_reduce(p.grad) sums over the ranks; divide by comm.world_size (or use op='avg')",
                             diagnose={
                                 # Checked first: an untouched gradient is the usual sign of averaging a copy.
                                 "p.grad still holds this rank's own gradient: comm.all_reduce works in place on the "
                                 "tensor you pass, so an averaged copy (p.grad.clone(), torch.cat(...)) must be copied "
                                 "back, or pass p.grad itself": local[r][name],
                                 "divide the sum by the number of ranks: the full-batch loss is a mean": ref[name] * p,
                                 "divide once: op='avg' already divides by the world size": ref[name] / p} if p > 1 else None)
            if first is None:
                first = d["grads"]
            elif any(g is not None and not torch.equal(g, first[n]) for n, g in d["grads"].items()):
                raise CheckFailure(f"with world_size={p} the ranks end with different gradients",
                                   hint="every rank must hold the same averaged gradient, or the replicas drift apart")


# --------------------------------------------------------------------------- the DP training step


def _sgd_reference(model: GPT, batches, lr: float) -> tuple[list[float], dict[str, torch.Tensor]]:
    """One device, the whole batch, plain SGD: the losses before each step and the final parameters."""
    m = copy.deepcopy(model)
    losses = []
    for x, y in batches:
        _, loss = m(x, y)
        losses.append(loss.item())
        loss.backward()
        with torch.no_grad():
            for p in m.parameters():
                p -= lr * p.grad
                p.grad = None
    return losses, {k: v.detach().clone() for k, v in m.state_dict().items()}


class _SGD:
    """Plain SGD with the two methods a training step calls (torch.optim.SGD would do the same,
    but its first step spends seconds importing the compiler stack)."""

    def __init__(self, params, lr: float) -> None:
        self.params, self.lr = list(params), lr

    @torch.no_grad()
    def step(self) -> None:
        for p in self.params:
            if p.grad is not None:
                p -= self.lr * p.grad

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None


def _dp_rank(comm, fn, model, batches, lr, accum_steps):
    m = copy.deepcopy(model)
    opt = _SGD(m.parameters(), lr=lr)
    # Before every forward pass, note how many gradient-sized messages this rank has
    # sent so far (a loss is one number, at most 8 bytes; every parameter is larger).
    synced = lambda: sum(1 for e in comm.trace if e.kind == "comm" and e.nbytes > 8)  # noqa: E731
    marks: list[int] = []
    m.register_forward_pre_hook(lambda mod, args: marks.append(synced()))
    losses = [fn(comm, m, opt, _local(x, comm), _local(y, comm), accum_steps) for x, y in batches]
    # The learner's results, and marks from the simulator's trace: a record only the simulator can give
    # (while grading it comes from the kernel; see the threat model in minillm/course/README.md).
    return {"losses": losses, "state": {k: v.detach().clone() for k, v in m.state_dict().items()}, "marks": marks}


@register("11.dp_train_step", points=3, references=("minillm.parallel.data_parallel.dp_train_step",))
@one_thread()
def check_dp_train_step(fn) -> None:
    """dp_train_step(comm, model, optimizer, x, y, accum_steps=1) -> mean loss over all ranks."""
    steps, lr = 2, 0.5
    # (world size, accumulation steps): local batches of 12 / p sequences cut into
    # accum_steps micro-batches. Plain SGD, whose update is proportional to the
    # gradient, so a gradient off by any factor shows (Adam would hide it).
    cases = [(1, 1), (1, 3), (2, 1), (2, 3), (3, 2), (4, 3)]
    for seed, (p, accum) in enumerate(cases):
        model = _model(20 + seed)
        batches = _batches(200 + seed, steps)
        ref_losses, ref_state = _sgd_reference(model, batches, lr)
        res = run_ranks(_dp_rank, p, fn, model, batches, lr, accum)
        where = f"with world_size={p} and accum_steps={accum}"
        for r, d in enumerate(res.results):
            marks = d["marks"]
            if len(marks) != steps * accum:
                raise CheckFailure(f"{where}, rank {r} ran {len(marks)} forward passes in {steps} steps",
                                   expected=f"{steps * accum} (one per micro-batch)",
                                   hint="cut the local batch into accum_steps micro-batches: x.chunk(accum_steps)")
            for s in range(steps):
                per_step = marks[s * accum:(s + 1) * accum]
                if len(set(per_step)) > 1:
                    raise CheckFailure(
                        f"{where}, rank {r} communicated gradients between micro-batches",
                        hint="accumulate locally (backward adds into .grad) and all-reduce once, after the LAST micro-batch",
                    )
            losses = d["losses"]
            # Step 0's loss comes before any update, so it tests the loss arithmetic alone;
            # the parameters then test the gradients, and later losses follow from both.
            _expect_loss(losses[0], ref_losses[0], f"{where}, the loss rank {r} returned at step 0")
            for name, want in ref_state.items():
                # Two SGD steps in float32 from gradients that differ by summation order
                # only: parameters are O(0.1..1), so 1e-5 absolute and 1e-4 relative.
                expect_close(d["state"][name], want, atol=1e-5, rtol=1e-4,
                             what=f"{where}, rank {r}'s {name} after {steps} steps",
                             hint="divide each micro-batch loss by accum_steps before backward, average the gradients "
                             "over the ranks, call optimizer.step(), then optimizer.zero_grad()")
            for s in range(1, steps):
                _expect_loss(losses[s], ref_losses[s], f"{where}, the loss rank {r} returned at step {s}")


def _expect_loss(got, want: float, what: str) -> None:
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        raise CheckFailure("dp_train_step returned", got=describe(got), expected="the mean loss, a float")
    # A mean of float32 losses in another grouping: 1e-5 relative.
    if not math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-6):
        raise CheckFailure(
            f"{what} is", got=f"{got:.6g}", expected=f"{want:.6g}, the mean loss over the whole global batch",
            hint="average the micro-batch losses on each rank, then all-reduce that number with op='avg'",
        )


# --------------------------------------------------------------------------- one ZeRO-1 step


def _zero1_state(seed: int, n: int, p: int):
    """The global parameter, the ranks' gradients and the padded AdamW state of case ``seed``."""
    g = torch.Generator().manual_seed(seed)
    s = math.ceil(n / p)
    param = torch.randn(n, generator=g)
    grads = [torch.randn(n, generator=g) for _ in range(p)]
    m = torch.zeros(s * p)
    v = torch.zeros(s * p)
    m[:n] = 0.1 * torch.randn(n, generator=g)
    v[:n] = 0.01 * torch.rand(n, generator=g)
    return param, grads, m, v


def _mirrored_shards(param, mean_g, m_full, v_full, n: int, p: int, step: int, hyper: dict) -> torch.Tensor:
    """The parameter a ZeRO-1 step returns when rank r updates parameter shard p-1-r with gradient shard r
    (a reversed shard index; used only to name the mistake)."""
    s = math.ceil(n / p)
    pad = lambda t: torch.cat([t, t.new_zeros(s * p - n)])  # noqa: E731
    w, g = pad(param), pad(mean_g)
    parts = []
    for q in range(p):
        mine, theirs = slice(q * s, (q + 1) * s), slice((p - 1 - q) * s, (p - q) * s)
        parts.append(adamw_update(w[theirs], g[mine], m_full[mine], v_full[mine], step, **hyper)[0])
    return torch.cat(parts)[:n]


def _zero1_rank(comm, fn, seed, n, step, hyper):
    p, r = comm.world_size, comm.rank
    s = math.ceil(n / p)
    param, grads, m_full, v_full = _zero1_state(seed, n, p)
    m, v = m_full[r * s:(r + 1) * s].clone(), v_full[r * s:(r + 1) * s].clone()
    out = fn(comm, param.clone(), grads[r].clone(), m, v, step, **hyper)
    sent = sum(bytes_sent_per_rank(e.op, e.nbytes, p) for e in comm.trace if e.kind == "comm")
    return {"out": out, "m": m, "v": v, "sent": sent}  # "sent": the simulator's trace, a record (see _dp_rank)


@register("11.zero1_step", points=3, references=(
    "minillm.parallel.zero.zero1_step", "minillm.parallel.zero.ZeroStage1.step", "minillm.parallel.zero.ZeroStage2.step", "minillm.parallel.zero.ZeroOptimizer._adamw"))
@one_thread()
def check_zero1_step(fn) -> None:
    """zero1_step(comm, param, grad, m, v, step, lr, betas, eps, weight_decay) -> the new full parameter."""
    # (world size, elements, step, hyper-parameters): one rank; even and uneven splits
    # (the last shard is padded); fewer elements than ranks (a shard of padding only).
    h1 = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    h2 = dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.0)
    cases = [(1, 5, 1, h1), (2, 8, 1, h1), (3, 10, 3, h2), (4, 7, 2, h1), (3, 2, 5, h1), (4, 12, 7, h2)]
    for seed, (p, n, step, hyper) in enumerate(cases):
        s = math.ceil(n / p)
        param, grads, m_full, v_full = _zero1_state(seed, n, p)
        mean_g = torch.stack(grads).sum(0) / p
        want_p, want_m, want_v = adamw_update(param, mean_g, m_full[:n], v_full[:n], step, **hyper)
        res = run_ranks(_zero1_rank, p, fn, seed, n, step, hyper)
        where = f"with world_size={p}, {n} elements, step={step}"
        mirrored = _mirrored_shards(param, mean_g, m_full, v_full, n, p, step, hyper)
        for r, d in enumerate(res.results):
            lo, hi = min(r * s, n), min((r + 1) * s, n)
            # AdamW in float32 on a mean gradient summed in another order: 1e-6 absolute
            # and 1e-5 relative, as lesson 01's AdamW check.
            tol = dict(atol=1e-6, rtol=1e-5)
            out = d["out"]
            expect_close(out, want_p, **tol, what=f"{where}, rank {r}'s new parameter",
                         hint="reduce-scatter the gradient with op='avg', update your shard with AdamW, all-gather the shards "
                         "and return the first n elements (drop the padding)",
                         diagnose={"average the gradients: reduce-scatter with op='avg' (or divide the sum by world_size)":
                                   adamw_update(param, mean_g * p, m_full[:n], v_full[:n], step, **hyper)[0],
                                   "use every rank's gradient: reduce-scatter them, do not keep your own":
                                   adamw_update(param, grads[r], m_full[:n], v_full[:n], step, **hyper)[0],
                                   "your shard index is reversed: the reduce-scatter hands rank r elements "
                                   "[r·s, (r+1)·s) of the gradient, so rank r updates the parameter's elements "
                                   "[r·s, (r+1)·s), not those of shard world_size - 1 - r": mirrored} if p > 1 else None)
            expect_close(d["m"][: hi - lo], want_m[lo:hi], **tol, what=f"{where}, rank {r}'s m shard",
                         hint="update m and v in place (m.copy_(new_m)): the optimizer keeps them for the next step")
            expect_close(d["v"][: hi - lo], want_v[lo:hi], **tol, what=f"{where}, rank {r}'s v shard",
                         hint="update m and v in place (v.copy_(new_v))")
            budget = 2 * (p - 1) / p * s * p * 4  # reduce-scatter + all-gather of s·p float32 elements
            if p > 1 and d["sent"] > budget * (1 + 1e-9):
                raise CheckFailure(
                    f"{where}, rank {r} sent {d['sent']:,.0f} bytes", expected=f"at most {budget:,.0f} (2Ψ: one reduce-scatter and one all-gather)",
                    hint="ZeRO-1 needs only this rank's shard of the averaged gradient: reduce-scatter it instead of all-reducing it "
                    "(ZeRO, Sec. 7.2.1)")


# --------------------------------------------------------------------------- stretch: invert the memory formula


@register("11.fewest_devices", points=2, references=("minillm.parallel.costs.zero_fewest_devices",
                                                      "minillm.parallel.costs.zero_memory_bytes"))
def check_fewest_devices(fn) -> None:
    """fewest_devices(n_params, capacity, stage, k=12) -> the fewest N_d whose model states fit, or None."""
    gen = torch.Generator().manual_seed(111)
    # The lesson's 70B on 80 GB, ZeRO's 7.5B, exact boundaries (16Ψ = capacity; 4Ψ + 12Ψ/N_d = capacity
    # at N_d = 3), a model whose unsharded part alone is the capacity, and seeded random jobs.
    cases = [(70e9, 80e9, s) for s in range(4)] + [(7.5e9, 80e9, s) for s in range(4)]
    cases += [(5e9, 80e9, 3), (10e9, 80e9, 1), (40e9, 80e9, 2), (20e9, 80e9, 1), (1e9, 16e9, 0)]
    for _ in range(12):
        cases.append((float(torch.randint(1, 400, (1,), generator=gen)) * 1e9,
                      float(torch.randint(8, 200, (1,), generator=gen)) * 1e9, int(torch.randint(0, 4, (1,), generator=gen))))
    for psi, cap, stage in cases:
        want = zero_fewest_devices(psi, cap, stage)
        got = fn(psi, cap, stage)
        where = f"fewest_devices(n_params={psi:g}, capacity={cap:g}, stage={stage})"
        if isinstance(got, float) and got.is_integer():
            raise CheckFailure(where + " returned", got=f"{got!r}, a float", expected=f"an int ({want}): a number of devices",
                               hint="round up with math.ceil, which returns an int")
        if got is not None and (isinstance(got, bool) or not isinstance(got, int)):
            raise CheckFailure(where + " returned", got=describe(got), expected=f"an int or None ({want})")
        if got == want:
            continue
        hint = "the states that stay whole on every rank (R bytes) plus the sharded ones divided by N_d (S / N_d) must fit"
        all_sharded = max(1, math.ceil(zero_memory_bytes(psi, 1, stage).total / cap))
        if got is not None and stage < 3 and got == all_sharded:
            hint = (f"at stage {stage} some states are not sharded (they stay whole on every rank): only the sharded part "
                    "shrinks with N_d")
        elif want is None:
            hint = (f"no N_d is enough: at stage {stage} the unsharded states alone need more than the capacity, whatever "
                    "N_d is; return None")
        elif got is not None and got == want - 1:
            hint = "round up: a fraction of a device is not enough, so take the ceiling of S / (capacity - R)"
        raise CheckFailure(where + " is", got=repr(got), expected=repr(want), hint=hint)
