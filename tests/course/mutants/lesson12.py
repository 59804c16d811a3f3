"""Wrong answers to lesson 12's tasks, each a mistake a learner plausibly makes."""

from __future__ import annotations

import torch

# --------------------------------------------------------------------------- shard_column


def shard_columns_instead(weight, bias, rank, tp):
    """Splits the input columns (that is the row-parallel layer)."""
    k = weight.shape[1] // tp
    return weight[:, rank * k : (rank + 1) * k], bias


def shard_reversed_ranks(weight, bias, rank, tp):
    """Counts ranks from the end."""
    k = weight.shape[0] // tp
    r = tp - 1 - rank
    return weight[r * k : (r + 1) * k], bias[r * k : (r + 1) * k]


def shard_whole_bias(weight, bias, rank, tp):
    """Keeps the whole bias on every rank."""
    k = weight.shape[0] // tp
    return weight[rank * k : (rank + 1) * k], bias


# --------------------------------------------------------------------------- row-parallel linear


def row_bias_before_reduce(comm, x_local, w_local, bias):
    """Adds the bias on every rank before the sum."""
    y = x_local @ w_local.t() + bias
    comm.all_reduce(y)
    return y


def row_no_reduce(comm, x_local, w_local, bias):
    """Forgets to sum the partial products."""
    return x_local @ w_local.t() + bias


def row_avg(comm, x_local, w_local, bias):
    """Averages the partial products."""
    y = x_local @ w_local.t()
    comm.all_reduce(y, op="avg")
    return y + bias


# --------------------------------------------------------------------------- qkv rows


def qkv_contiguous_chunk(n_embd, n_head, rank, tp):
    """Takes a contiguous chunk of the 3C rows."""
    k = 3 * n_embd // tp
    return list(range(rank * k, (rank + 1) * k))


def qkv_only_q(n_embd, n_head, rank, tp):
    """Takes the heads' rows of Q only."""
    k = n_embd // tp
    return list(range(rank * k, (rank + 1) * k))


def qkv_interleaved(n_embd, n_head, rank, tp):
    """Right rows, wrong order: head by head, q k v of each."""
    hd, per = n_embd // n_head, n_head // tp
    out = []
    for h in range(rank * per, (rank + 1) * per):
        for block in range(3):
            out += [block * n_embd + h * hd + i for i in range(hd)]
    return out


# --------------------------------------------------------------------------- vocab-parallel loss


def vocab_no_max(comm, local_logits, targets):
    """Sums exp of raw logits: overflows for large ones."""
    s = torch.exp(local_logits).sum(-1)
    comm.all_reduce(s)
    k = local_logits.shape[-1]
    local_t = targets - comm.rank * k
    mine = (local_t >= 0) & (local_t < k)
    picked = torch.where(mine, local_logits.gather(-1, local_t.clamp(0, k - 1)[:, None]).squeeze(-1), torch.zeros(()))
    comm.all_reduce(picked)
    return (torch.log(s) - picked).mean()


def vocab_target_not_offset(comm, local_logits, targets):
    """Indexes the local logits with the global id."""
    m = local_logits.amax(-1)
    comm.all_reduce(m, op="max")
    s = torch.exp(local_logits - m[:, None]).sum(-1)
    comm.all_reduce(s)
    k = local_logits.shape[-1]
    mine = targets < k
    picked = torch.where(mine, local_logits.gather(-1, targets.clamp(0, k - 1)[:, None]).squeeze(-1), torch.zeros(()))
    comm.all_reduce(picked)
    return (torch.log(s) + m - picked).mean()


def vocab_gathers_logits(comm, local_logits, targets):
    """Gathers the whole [n, V] logits: right value, but the communication the task avoids."""
    parts = [torch.empty_like(local_logits) for _ in range(comm.world_size)]
    comm.all_gather(parts, local_logits.contiguous())
    full = torch.cat(parts, -1)
    return (torch.logsumexp(full, -1) - full.gather(-1, targets[:, None]).squeeze(-1)).mean()


# --------------------------------------------------------------------------- bytes per layer


def bytes_forward_only(batch, seq_len, hidden, tp, bytes_per_elem=2):
    """Counts the forward's two all-reduces only."""
    return 2 * 2 * (tp - 1) / tp * batch * seq_len * hidden * bytes_per_elem


def bytes_whole_buffer(batch, seq_len, hidden, tp, bytes_per_elem=2):
    """Counts n bytes per all-reduce instead of 2(p-1)/p n."""
    return 4 * batch * seq_len * hidden * bytes_per_elem


def bytes_forgets_p_minus_1(batch, seq_len, hidden, tp, bytes_per_elem=2):
    """Counts 2n per all-reduce, forgetting the (p-1)/p a rank keeps."""
    return 4 * 2 * batch * seq_len * hidden * bytes_per_elem


MUTANTS = {
    "12.shard_column": [shard_columns_instead, shard_reversed_ranks, shard_whole_bias],
    "12.row_parallel_linear": [row_bias_before_reduce, row_no_reduce, row_avg],
    "12.qkv_head_rows": [qkv_contiguous_chunk, qkv_only_q, qkv_interleaved],
    "12.vocab_parallel_loss": [vocab_no_max, vocab_target_not_offset, vocab_gathers_logits],
    "12.tp_bytes_per_layer": [bytes_forward_only, bytes_whole_buffer, bytes_forgets_p_minus_1],
}
