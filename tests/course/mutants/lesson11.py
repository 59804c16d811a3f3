"""Wrong answers to lesson 11's tasks, each a mistake a learner plausibly makes."""

from __future__ import annotations

import math

import torch

from minillm.train import adamw_update

# --------------------------------------------------------------------------- ZeRO memory


def zero_memory_grads_at_stage1(n_params, world_size, stage, k=12):
    """Shards the gradients already at stage 1."""
    nd = world_size if stage >= 1 else 1
    return {"parameters": 2 * n_params / (world_size if stage >= 3 else 1), "gradients": 2 * n_params / nd,
            "optimizer": k * n_params / nd}


def zero_memory_fp32(n_params, world_size, stage, k=12):
    """Counts 4-byte parameters and gradients."""
    return {"parameters": 4 * n_params / (world_size if stage >= 3 else 1),
            "gradients": 4 * n_params / (world_size if stage >= 2 else 1),
            "optimizer": k * n_params / (world_size if stage >= 1 else 1)}


def zero_memory_gb(n_params, world_size, stage, k=12):
    """Returns GB instead of bytes."""
    return {"parameters": 2 * n_params / (world_size if stage >= 3 else 1) / 1e9,
            "gradients": 2 * n_params / (world_size if stage >= 2 else 1) / 1e9,
            "optimizer": k * n_params / (world_size if stage >= 1 else 1) / 1e9}


def zero_memory_off_by_one_stage(n_params, world_size, stage, k=12):
    """Uses 'stage > s' where 'stage >= s' is meant: every stage does what the one before does."""
    return {"parameters": 2 * n_params / (world_size if stage > 3 else 1),
            "gradients": 2 * n_params / (world_size if stage > 2 else 1),
            "optimizer": k * n_params / (world_size if stage > 1 else 1)}


# --------------------------------------------------------------------------- averaging gradients


def allreduce_sum_only(comm, model):
    """Sums the gradients but never divides by the world size."""
    for p in model.parameters():
        if p.grad is not None:
            comm.all_reduce(p.grad)


def allreduce_divide_twice(comm, model):
    """Uses op='avg' and divides again."""
    for p in model.parameters():
        if p.grad is not None:
            comm.all_reduce(p.grad, op="avg")
            p.grad /= comm.world_size


def allreduce_weights_not_grads(comm, model):
    """Averages the parameters instead of their gradients."""
    for p in model.parameters():
        comm.all_reduce(p.data, op="avg")


def allreduce_matrices_only(comm, model):
    """Skips the 1-D parameters (biases, LayerNorm), thinking they do not matter."""
    for p in model.parameters():
        if p.grad is not None and p.dim() > 1:
            comm.all_reduce(p.grad, op="avg")


def allreduce_crashes_on_frozen(comm, model):
    """Forgets that frozen parameters have no gradient."""
    for p in model.parameters():
        comm.all_reduce(p.grad, op="avg")


def allreduce_a_copy(comm, model):
    """Averages a flattened copy of the gradients with op='avg' and never writes it back into p.grad."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    comm.all_reduce(flat, op="avg")


# --------------------------------------------------------------------------- the DP training step


def _avg_grads(comm, model):
    for p in model.parameters():
        if p.grad is not None:
            comm.all_reduce(p.grad, op="avg")


def dp_sync_every_micro_batch(comm, model, optimizer, x, y, accum_steps=1):
    """All-reduces after every micro-batch: the right numbers, accum_steps times the communication."""
    total = 0.0
    for xb, yb in zip(x.chunk(accum_steps), y.chunk(accum_steps)):
        _, loss = model(xb, yb)
        (loss / accum_steps).backward()
        _avg_grads(comm, model)
        total += loss.item()
    optimizer.step()
    optimizer.zero_grad()
    t = torch.tensor([total / accum_steps])
    comm.all_reduce(t, op="avg")
    return t.item()


def dp_loss_not_divided(comm, model, optimizer, x, y, accum_steps=1):
    """Backpropagates each micro-batch's mean loss undivided: the gradient is accum_steps times too big."""
    total = 0.0
    for xb, yb in zip(x.chunk(accum_steps), y.chunk(accum_steps)):
        _, loss = model(xb, yb)
        loss.backward()
        total += loss.item()
    _avg_grads(comm, model)
    optimizer.step()
    optimizer.zero_grad()
    t = torch.tensor([total / accum_steps])
    comm.all_reduce(t, op="avg")
    return t.item()


def dp_local_loss(comm, model, optimizer, x, y, accum_steps=1):
    """Returns this rank's own loss, not the mean over all ranks."""
    total = 0.0
    for xb, yb in zip(x.chunk(accum_steps), y.chunk(accum_steps)):
        _, loss = model(xb, yb)
        (loss / accum_steps).backward()
        total += loss.item()
    _avg_grads(comm, model)
    optimizer.step()
    optimizer.zero_grad()
    return total / accum_steps


def dp_no_zero_grad(comm, model, optimizer, x, y, accum_steps=1):
    """Never clears the gradients, so step 2 adds step 1's gradient again."""
    total = 0.0
    for xb, yb in zip(x.chunk(accum_steps), y.chunk(accum_steps)):
        _, loss = model(xb, yb)
        (loss / accum_steps).backward()
        total += loss.item()
    _avg_grads(comm, model)
    optimizer.step()
    t = torch.tensor([total / accum_steps])
    comm.all_reduce(t, op="avg")
    return t.item()


def dp_whole_batch_once(comm, model, optimizer, x, y, accum_steps=1):
    """Ignores accum_steps and runs the local batch in one go: right numbers, but no micro-batches."""
    _, loss = model(x, y)
    loss.backward()
    _avg_grads(comm, model)
    optimizer.step()
    optimizer.zero_grad()
    t = torch.tensor([loss.item()])
    comm.all_reduce(t, op="avg")
    return t.item()


# --------------------------------------------------------------------------- one ZeRO-1 step


def _pad(t, n_total):
    return torch.cat([t, t.new_zeros(n_total - t.numel())])


def zero1_sum_not_mean(comm, param, grad, m, v, step, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
    """Reduce-scatters with op='sum': the gradient is world_size times too big."""
    p, r, n, s = comm.world_size, comm.rank, param.numel(), m.numel()
    g = torch.empty(s)
    comm.reduce_scatter_tensor(g, _pad(grad, s * p), op="sum")
    w, nm, nv = adamw_update(_pad(param, s * p)[r * s:(r + 1) * s], g, m, v, step, lr, betas, eps, weight_decay)
    m.copy_(nm)
    v.copy_(nv)
    out = torch.empty(s * p)
    comm.all_gather_into_tensor(out, w)
    return out[:n]


def zero1_own_gradient(comm, param, grad, m, v, step, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
    """Updates its shard with its own gradient only: the replicas diverge."""
    p, r, n, s = comm.world_size, comm.rank, param.numel(), m.numel()
    w, nm, nv = adamw_update(_pad(param, s * p)[r * s:(r + 1) * s], _pad(grad, s * p)[r * s:(r + 1) * s], m, v,
                             step, lr, betas, eps, weight_decay)
    m.copy_(nm)
    v.copy_(nv)
    out = torch.empty(s * p)
    comm.all_gather_into_tensor(out, w)
    return out[:n]


def zero1_no_all_gather(comm, param, grad, m, v, step, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
    """Updates its own shard and returns the parameter with the other shards left stale."""
    p, r, n, s = comm.world_size, comm.rank, param.numel(), m.numel()
    g = torch.empty(s)
    comm.reduce_scatter_tensor(g, _pad(grad, s * p), op="avg")
    full = _pad(param, s * p)
    w, nm, nv = adamw_update(full[r * s:(r + 1) * s], g, m, v, step, lr, betas, eps, weight_decay)
    m.copy_(nm)
    v.copy_(nv)
    full[r * s:(r + 1) * s] = w
    return full[:n]


def zero1_state_not_in_place(comm, param, grad, m, v, step, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
    """Rebinds m and v to the new tensors instead of writing into them: the optimizer state never changes."""
    p, r, n, s = comm.world_size, comm.rank, param.numel(), m.numel()
    g = torch.empty(s)
    comm.reduce_scatter_tensor(g, _pad(grad, s * p), op="avg")
    w, m, v = adamw_update(_pad(param, s * p)[r * s:(r + 1) * s], g, m, v, step, lr, betas, eps, weight_decay)
    out = torch.empty(s * p)
    comm.all_gather_into_tensor(out, w)
    return out[:n]


def zero1_all_reduce(comm, param, grad, m, v, step, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
    """All-reduces the whole gradient, then slices its shard: right numbers, 3Ψ of traffic instead of 2Ψ."""
    p, r, n, s = comm.world_size, comm.rank, param.numel(), m.numel()
    g = grad.clone()
    comm.all_reduce(g, op="avg")
    w, nm, nv = adamw_update(_pad(param, s * p)[r * s:(r + 1) * s], _pad(g, s * p)[r * s:(r + 1) * s], m, v,
                             step, lr, betas, eps, weight_decay)
    m.copy_(nm)
    v.copy_(nv)
    out = torch.empty(s * p)
    comm.all_gather_into_tensor(out, w)
    return out[:n]


def zero1_reversed_shard(comm, param, grad, m, v, step, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
    """Counts the shards from the other end: updates parameter shard p-1-r with gradient shard r."""
    p, r, n, s = comm.world_size, comm.rank, param.numel(), m.numel()
    g = torch.empty(s)
    comm.reduce_scatter_tensor(g, _pad(grad, s * p), op="avg")
    q = p - 1 - r
    w, nm, nv = adamw_update(_pad(param, s * p)[q * s:(q + 1) * s], g, m, v, step, lr, betas, eps, weight_decay)
    m.copy_(nm)
    v.copy_(nv)
    out = torch.empty(s * p)
    comm.all_gather_into_tensor(out, w)
    return out[:n]


# --------------------------------------------------------------------------- stretch: fewest devices


def _parts(n_params, stage, k):
    first = {"parameters": 3, "gradients": 2, "optimizer": 1}
    per = {"parameters": 2, "gradients": 2, "optimizer": k}
    rep = sum(b * n_params for c, b in per.items() if stage < first[c])
    return rep, sum(per.values()) * n_params - rep


def fewest_floor(n_params, capacity, stage, k=12):
    """Rounds down: one device too few whenever S / (capacity - R) is not whole."""
    rep, sh = _parts(n_params, stage, k)
    if rep >= capacity:
        return None
    return max(1, int(sh / (capacity - rep))) if sh else 1


def fewest_never_none(n_params, capacity, stage, k=12):
    """Forgets the jobs that never fit: a negative or absurd count instead of None."""
    rep, sh = _parts(n_params, stage, k)
    if sh == 0:
        return 1 if rep <= capacity else 10**9
    return math.ceil(sh / (capacity - rep)) if capacity != rep else 10**9


def fewest_everything_shards(n_params, capacity, stage, k=12):
    """Divides all model states by N_d at every stage: ignores the replicated part."""
    return max(1, math.ceil((4 + k) * n_params / capacity))


MUTANTS = {
    "11.zero_memory": [zero_memory_grads_at_stage1, zero_memory_fp32, zero_memory_gb, zero_memory_off_by_one_stage],
    "11.allreduce_gradients": [allreduce_sum_only, allreduce_divide_twice, allreduce_weights_not_grads,
                               allreduce_matrices_only, allreduce_crashes_on_frozen, allreduce_a_copy],
    "11.dp_train_step": [dp_sync_every_micro_batch, dp_loss_not_divided, dp_local_loss, dp_no_zero_grad, dp_whole_batch_once],
    "11.zero1_step": [zero1_sum_not_mean, zero1_own_gradient, zero1_no_all_gather, zero1_state_not_in_place, zero1_all_reduce,
                      zero1_reversed_shard],
    "11.fewest_devices": [fewest_floor, fewest_never_none, fewest_everything_shards],
}

#: What the verdict of some mutants must say: the mistake named, not a generic hint (issue 11).
HINTS = {
    "allreduce_a_copy": "p.grad still holds this rank's own gradient",
    "zero1_reversed_shard": "your shard index is reversed",
    "fewest_floor": "round up",
    "fewest_never_none": "return None",
    "fewest_everything_shards": "some states are not sharded",
}
