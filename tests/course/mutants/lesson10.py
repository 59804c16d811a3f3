"""Wrong answers to lesson 10's tasks, each a mistake a learner plausibly makes."""

from __future__ import annotations

import types

import torch


def _with_globals(fn, **names):
    """``fn`` as if defined in a notebook where ``names`` are the learner's other functions."""
    g = dict(fn.__globals__)
    g.update(names)
    out = types.FunctionType(fn.__code__, g, fn.__name__, fn.__defaults__, fn.__closure__)
    out.__doc__ = fn.__doc__
    return out

# --------------------------------------------------------------------------- ring all-gather


def all_gather_blocking_send(comm, chunks):
    """Blocking send before recv on every rank: everyone waits for a receiver, a deadlock."""
    p, r = comm.world_size, comm.rank
    for s in range(p - 1):
        comm.send(chunks[(r - s) % p], (r + 1) % p)
        comm.recv(chunks[(r - s - 1) % p], (r - 1) % p)
    return chunks


def all_gather_off_by_one(comm, chunks):
    """Forwards the chunk it is about to receive instead of the one it just got."""
    p, r = comm.world_size, comm.rank
    for s in range(p - 1):
        req = comm.isend(chunks[(r - s - 1) % p], (r + 1) % p)
        comm.recv(chunks[(r - s - 2) % p], (r - 1) % p)
        req.wait()
    return chunks


def all_gather_direct(comm, chunks):
    """Sends its own chunk straight to every other rank: right data, but not a ring."""
    p, r = comm.world_size, comm.rank
    reqs = [comm.isend(chunks[r], q) for q in range(p) if q != r]
    for q in range(p):
        if q != r:
            comm.recv(chunks[q], q)
    for req in reqs:
        req.wait()
    return chunks


def all_gather_sequential(comm, chunks):
    """Even ranks send first, odd ranks receive first: no deadlock, but no overlap either (2x slower)."""
    p, r = comm.world_size, comm.rank
    for s in range(p - 1):
        out, into = chunks[(r - s) % p], chunks[(r - s - 1) % p]
        if r % 2 == 0:
            comm.send(out, (r + 1) % p)
            comm.recv(into, (r - 1) % p)
        else:
            comm.recv(into, (r - 1) % p)
            comm.send(out, (r + 1) % p)
    return chunks


def all_gather_backwards(comm, chunks):
    """Sends to the left and receives from the right, with the task's (rightward) chunk indices."""
    p, r = comm.world_size, comm.rank
    for s in range(p - 1):
        req = comm.isend(chunks[(r - s) % p], (r - 1) % p)
        comm.recv(chunks[(r - s - 1) % p], (r + 1) % p)
        req.wait()
    return chunks


# --------------------------------------------------------------------------- ring reduce-scatter


def reduce_scatter_too_few_steps(comm, chunks):
    """Stops after p-2 steps: chunk r never arrives complete."""
    p, r = comm.world_size, comm.rank
    for s in range(p - 2):
        incoming = torch.empty_like(chunks[(r - s - 2) % p])
        req = comm.isend(chunks[(r - s - 1) % p], (r + 1) % p)
        comm.recv(incoming, (r - 1) % p)
        req.wait()
        chunks[(r - s - 2) % p] += incoming
    return chunks[r]


def reduce_scatter_overwrite(comm, chunks):
    """Replaces its chunk with the incoming one instead of adding: loses its own contribution."""
    p, r = comm.world_size, comm.rank
    for s in range(p - 1):
        i = (r - s - 2) % p
        incoming = torch.empty_like(chunks[i])
        req = comm.isend(chunks[(r - s - 1) % p], (r + 1) % p)
        comm.recv(incoming, (r - 1) % p)
        req.wait()
        chunks[i] = incoming if s == p - 2 else chunks[i] + incoming
    return chunks[r]


def reduce_scatter_average(comm, chunks):
    """Divides by the world size at the end: an average, not the sum the task asks for."""
    p, r = comm.world_size, comm.rank
    for s in range(p - 1):
        incoming = torch.empty_like(chunks[(r - s - 2) % p])
        req = comm.isend(chunks[(r - s - 1) % p], (r + 1) % p)
        comm.recv(incoming, (r - 1) % p)
        req.wait()
        chunks[(r - s - 2) % p] += incoming
    chunks[r] /= p
    return chunks[r]


def reduce_scatter_whole_buffer(comm, chunks):
    """Sends the whole buffer to the right each step and sums it: correct for chunk r, p times the traffic."""
    p, r = comm.world_size, comm.rank
    mine = torch.cat(chunks)
    acc = mine.clone()
    travelling = mine.clone()
    for s in range(p - 1):
        incoming = torch.empty_like(travelling)
        req = comm.isend(travelling, (r + 1) % p)
        comm.recv(incoming, (r - 1) % p)
        req.wait()
        acc += incoming
        travelling = incoming
    sizes = [c.numel() for c in chunks]
    chunks[r].copy_(acc.split(sizes)[r])
    return chunks[r]


def reduce_scatter_wrong_index(comm, chunks):
    """Adds the incoming chunk into the chunk it just sent, (r - s - 1) % p, not the one it receives, (r - s - 2) % p."""
    p, r = comm.world_size, comm.rank
    for s in range(p - 1):
        incoming = torch.empty_like(chunks[(r - s - 2) % p])
        req = comm.isend(chunks[(r - s - 1) % p], (r + 1) % p)
        comm.recv(incoming, (r - 1) % p)
        req.wait()
        chunks[(r - s - 1) % p] += incoming
    return chunks[r]


def reduce_scatter_index_error(comm, chunks):
    """Looks at chunks[r + 1] (no % p): past the end of the list on the last rank, an IndexError."""
    p, r = comm.world_size, comm.rank
    first = chunks[r + 1]  # noqa: F841 - the bug: rank p-1 has no chunk p
    for s in range(p - 1):
        i = (r - s - 2) % p
        incoming = torch.empty_like(chunks[i])
        req = comm.isend(chunks[(r - s - 1) % p], (r + 1) % p)
        comm.recv(incoming, (r - 1) % p)
        req.wait()
        chunks[i] += incoming
    return chunks[r]


def reduce_scatter_mirror(comm, chunks):
    """Sends to r-1 and also receives from r-1: half of the ring turned round, so nobody's message is received."""
    p, r = comm.world_size, comm.rank
    for s in range(p - 1):
        i = (r - s - 2) % p
        incoming = torch.empty_like(chunks[i])
        req = comm.isend(chunks[(r - s - 1) % p], (r - 1) % p)
        comm.recv(incoming, (r - 1) % p)
        req.wait()
        chunks[i] += incoming
    return chunks[r]


# --------------------------------------------------------------------------- ring all-reduce


def _rs(comm, chunks):
    p, r = comm.world_size, comm.rank
    for s in range(p - 1):
        incoming = torch.empty_like(chunks[(r - s - 2) % p])
        req = comm.isend(chunks[(r - s - 1) % p], (r + 1) % p)
        comm.recv(incoming, (r - 1) % p)
        req.wait()
        chunks[(r - s - 2) % p] += incoming
    return chunks[r]


def _ag(comm, chunks):
    p, r = comm.world_size, comm.rank
    for s in range(p - 1):
        req = comm.isend(chunks[(r - s) % p], (r + 1) % p)
        comm.recv(chunks[(r - s - 1) % p], (r - 1) % p)
        req.wait()
    return chunks


def all_reduce_through_root(comm, tensor):
    """Everyone sends to rank 0, which sums and sends back: right answer, 2(p-1) full messages in turn."""
    p, r = comm.world_size, comm.rank
    if r == 0:
        buf = torch.empty_like(tensor)
        for q in range(1, p):
            comm.recv(buf, q)
            tensor += buf
        for q in range(1, p):
            comm.send(tensor, q)
    else:
        comm.send(tensor, 0)
        comm.recv(tensor, 0)
    return tensor


def all_reduce_no_all_gather(comm, tensor):
    """Only the reduce-scatter: each rank has just its own chunk summed."""
    chunks = list(tensor.view(-1).tensor_split(comm.world_size))
    _rs(comm, chunks)
    return tensor


def all_reduce_copies(comm, tensor):
    """Reduces copies of the chunks (torch.chunk(...).clone()), so the tensor itself never changes."""
    chunks = [c.clone() for c in tensor.reshape(-1).tensor_split(comm.world_size)]
    _rs(comm, chunks)
    _ag(comm, chunks)
    return torch.cat(chunks).view(tensor.shape)


def all_reduce_average(comm, tensor):
    """Averages instead of summing."""
    chunks = list(tensor.view(-1).tensor_split(comm.world_size))
    _rs(comm, chunks)
    _ag(comm, chunks)
    tensor /= comm.world_size
    return tensor


def _all_reduce_with_learner_functions(comm, tensor):
    """The task's all-reduce, calling the learner's own ring_reduce_scatter and ring_all_gather by name."""
    chunks = list(tensor.view(-1).tensor_split(comm.world_size))
    ring_reduce_scatter(comm, chunks)  # noqa: F821 - supplied by _with_globals, as a notebook would
    ring_all_gather(comm, chunks)  # noqa: F821
    return tensor


def _all_reduce_wrong_split(comm, tensor):
    """Cuts the tensor into p-1 chunks: the learner's (correct) reduce-scatter indexes past the end of the list."""
    chunks = list(tensor.view(-1).tensor_split(max(comm.world_size - 1, 1)))
    ring_reduce_scatter(comm, chunks)  # noqa: F821
    ring_all_gather(comm, chunks)  # noqa: F821
    return tensor


#: A correct all-reduce whose own reduce-scatter (task 2) stops a step early: the fault is task 2's.
all_reduce_buggy_reduce_scatter = _with_globals(
    _all_reduce_with_learner_functions, ring_reduce_scatter=reduce_scatter_too_few_steps, ring_all_gather=_ag)
all_reduce_buggy_reduce_scatter.__name__ = "all_reduce_buggy_reduce_scatter"
#: A correct all-reduce whose all-gather (task 1) is not written yet.
all_reduce_all_gather_not_written = _with_globals(
    _all_reduce_with_learner_functions, ring_reduce_scatter=_rs,
    ring_all_gather=lambda comm, chunks: (_ for _ in ()).throw(NotImplementedError()))
all_reduce_all_gather_not_written.__name__ = "all_reduce_all_gather_not_written"
#: A correct all-reduce whose reduce-scatter adds into the wrong chunk: the fault is task 2's.
all_reduce_reduce_scatter_wrong_index = _with_globals(
    _all_reduce_with_learner_functions, ring_reduce_scatter=reduce_scatter_wrong_index, ring_all_gather=_ag)
all_reduce_reduce_scatter_wrong_index.__name__ = "all_reduce_reduce_scatter_wrong_index"
#: A correct all-reduce whose reduce-scatter raises IndexError: the fault is task 2's.
all_reduce_reduce_scatter_raises = _with_globals(
    _all_reduce_with_learner_functions, ring_reduce_scatter=reduce_scatter_index_error, ring_all_gather=_ag)
all_reduce_reduce_scatter_raises.__name__ = "all_reduce_reduce_scatter_raises"
#: Correct tasks 1 and 2, but the all-reduce hands them p-1 chunks: IndexError inside ring_reduce_scatter.
all_reduce_wrong_split = _with_globals(_all_reduce_wrong_split, ring_reduce_scatter=_rs, ring_all_gather=_ag)
all_reduce_wrong_split.__name__ = "all_reduce_wrong_split"


# --------------------------------------------------------------------------- stretch: tree all-reduce


def _tree_broadcast(comm, tensor):
    p, r = comm.world_size, comm.rank
    mask = 1
    while mask < p:
        if r < mask and r + mask < p:
            comm.send(tensor, r + mask)
        elif mask <= r < 2 * mask:
            comm.recv(tensor, r - mask)
        mask *= 2
    return tensor


def tree_through_root(comm, tensor):
    """Every rank sends to rank 0 in turn, rank 0 sends the total back: right sum, 2(p-1) rounds, not 2⌈log2 p⌉."""
    return all_reduce_through_root(comm, tensor)


def _tree_reduce(comm, tensor):
    p, r = comm.world_size, comm.rank
    buf = torch.empty_like(tensor)
    mask = 1
    while mask < p:
        if r % (2 * mask) == mask:
            comm.send(tensor, r - mask)
            break
        if r % (2 * mask) == 0 and r + mask < p:
            comm.recv(buf, r + mask)
            tensor += buf
        mask *= 2
    return tensor


def tree_no_broadcast(comm, tensor):
    """Reduces to rank 0 down the tree and stops: only rank 0 holds the sum."""
    return _tree_reduce(comm, tensor)


def tree_average(comm, tensor):
    """Divides the total by the number of ranks."""
    _tree_broadcast(comm, _tree_reduce(comm, tensor))
    tensor /= comm.world_size
    return tensor


# --------------------------------------------------------------------------- α-β time


def ring_time_no_fraction(op, nbytes, world_size, bandwidth, latency=0.0):
    """Charges the whole buffer at every step."""
    passes = 2 if op == "all_reduce" else 1
    return passes * (world_size - 1) * (latency + nbytes / bandwidth)


def ring_time_one_pass(op, nbytes, world_size, bandwidth, latency=0.0):
    """Forgets that an all-reduce is two passes."""
    p = world_size
    return (p - 1) * (latency + nbytes / p / bandwidth)


def ring_time_latency_once(op, nbytes, world_size, bandwidth, latency=0.0):
    """Counts the latency once per collective instead of once per step."""
    p = world_size
    passes = 2 if op == "all_reduce" else 1
    return (latency if p > 1 else 0.0) + passes * (p - 1) / p * nbytes / bandwidth


MUTANTS = {
    "10.ring_all_gather": [all_gather_blocking_send, all_gather_off_by_one, all_gather_direct, all_gather_sequential,
                           all_gather_backwards],
    "10.ring_reduce_scatter": [reduce_scatter_too_few_steps, reduce_scatter_overwrite, reduce_scatter_average,
                               reduce_scatter_whole_buffer, reduce_scatter_mirror, reduce_scatter_wrong_index,
                               reduce_scatter_index_error],
    "10.ring_all_reduce": [all_reduce_through_root, all_reduce_no_all_gather, all_reduce_copies, all_reduce_average,
                           all_reduce_buggy_reduce_scatter, all_reduce_all_gather_not_written, all_reduce_wrong_split,
                           all_reduce_reduce_scatter_wrong_index, all_reduce_reduce_scatter_raises],
    "10.tree_all_reduce": [tree_through_root, tree_no_broadcast, tree_average],
    "10.ring_time": [ring_time_no_fraction, ring_time_one_pass, ring_time_latency_once],
}

#: What the verdict of some mutants must say: the mistake named, not a generic hint (issue 11).
HINTS = {
    "all_gather_backwards": "your ring runs backwards",
    "reduce_scatter_mirror": "one of the two goes the wrong way round the ring",
    "all_reduce_buggy_reduce_scatter": "fix 10.ring_reduce_scatter first",
    "all_reduce_all_gather_not_written": "fix 10.ring_all_gather first",
    "all_reduce_wrong_split": "your ring_reduce_scatter (task 10.ring_reduce_scatter) raised IndexError",
    "all_reduce_reduce_scatter_wrong_index": "fix 10.ring_reduce_scatter first",
    "all_reduce_reduce_scatter_raises": "fix 10.ring_reduce_scatter first",
    "reduce_scatter_index_error": "IndexError",
    "tree_through_root": "all-reduce through one root",
}
