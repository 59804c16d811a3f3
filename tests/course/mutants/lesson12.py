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


# --------------------------------------------------------------------------- found by the learner's review (lessons 12-13)


def shard_strided_rows(weight, bias, rank, tp):
    """Deals the rows round-robin (every tp-th row) instead of one contiguous block."""
    return weight[rank::tp], bias[rank::tp]


def shard_transposed(weight, bias, rank, tp):
    """Returns the shard transposed, [in, out/tp]."""
    k = weight.shape[0] // tp
    return weight[rank * k : (rank + 1) * k].t(), bias[rank * k : (rank + 1) * k]


def shard_block_from_columns(weight, bias, rank, tp):
    """Sizes the block by the input width: k = in // tp."""
    k = weight.shape[1] // tp
    return weight[rank * k : (rank + 1) * k], bias[rank * k : (rank + 1) * k]


def shard_one_row_too_many(weight, bias, rank, tp):
    """Includes the end row of the slice (off by one)."""
    k = weight.shape[0] // tp
    return weight[rank * k : (rank + 1) * k + 1], bias[rank * k : (rank + 1) * k + 1]


def row_max(comm, x_local, w_local, bias):
    """All-reduces with op='max'."""
    y = x_local @ w_local.t()
    comm.all_reduce(y, op="max")
    return y + bias


def qkv_round_robin_heads(n_embd, n_head, rank, tp):
    """Deals the heads round-robin: rank r gets heads r, r + tp, ..."""
    hd = n_embd // n_head
    cols = [h * hd + i for h in range(rank, n_head, tp) for i in range(hd)]
    return cols + [c + n_embd for c in cols] + [c + 2 * n_embd for c in cols]


def _vocab(comm, local_logits, targets, *, global_max=True, mean=True, add_max=True, mask=True, op="sum"):
    k = local_logits.shape[-1]
    m = local_logits.amax(-1)
    if global_max:
        comm.all_reduce(m, op="max")
    s = torch.exp(local_logits - m[:, None]).sum(-1)
    comm.all_reduce(s, op=op)
    local_t = targets - comm.rank * k
    picked = local_logits.gather(-1, local_t.clamp(0, k - 1)[:, None]).squeeze(-1)
    if mask:
        picked = torch.where((local_t >= 0) & (local_t < k), picked, torch.zeros(()))
    comm.all_reduce(picked)
    loss = torch.log(s) + (m if add_max else 0) - picked
    return loss.mean() if mean else loss.sum()


def vocab_local_max(comm, local_logits, targets):
    """Shifts by this rank's own maximum, never all-reduced."""
    return _vocab(comm, local_logits, targets, global_max=False)


def vocab_sum_not_mean(comm, local_logits, targets):
    """Sums the per-token losses instead of averaging them."""
    return _vocab(comm, local_logits, targets, mean=False)


def vocab_forgets_max(comm, local_logits, targets):
    """Subtracts the maximum inside exp and never adds it back."""
    return _vocab(comm, local_logits, targets, add_max=False)


def vocab_target_from_every_rank(comm, local_logits, targets):
    """Every rank adds a (clamped) target logit, not only the one that holds the id."""
    return _vocab(comm, local_logits, targets, mask=False)


def vocab_avg_of_exps(comm, local_logits, targets):
    """All-reduces the sums of exponentials with op='avg'."""
    return _vocab(comm, local_logits, targets, op="avg")


def bytes_ignores_bytes_per_elem(batch, seq_len, hidden, tp, bytes_per_elem=2):
    """Always counts 2 bytes per element."""
    return 4 * 2 * (tp - 1) / tp * batch * seq_len * hidden * 2


def bytes_integer_division(batch, seq_len, hidden, tp, bytes_per_elem=2):
    """Writes (tp - 1) // tp, which is 0."""
    return 4 * 2 * ((tp - 1) // tp) * batch * seq_len * hidden * bytes_per_elem


def bytes_counts_elements(batch, seq_len, hidden, tp, bytes_per_elem=2):
    """Counts elements, not bytes."""
    return 4 * 2 * (tp - 1) / tp * batch * seq_len * hidden


def bytes_twice(batch, seq_len, hidden, tp, bytes_per_elem=2):
    """Counts a reduce-scatter and an all-gather of 2(p-1)/p n each."""
    return 2 * 4 * 2 * (tp - 1) / tp * batch * seq_len * hidden * bytes_per_elem


MUTANTS["12.shard_column"] += [shard_strided_rows, shard_transposed, shard_block_from_columns, shard_one_row_too_many]
MUTANTS["12.row_parallel_linear"] += [row_max]
MUTANTS["12.qkv_head_rows"] += [qkv_round_robin_heads]
MUTANTS["12.vocab_parallel_loss"] += [vocab_local_max, vocab_sum_not_mean, vocab_forgets_max, vocab_target_from_every_rank,
                                      vocab_avg_of_exps]
MUTANTS["12.tp_bytes_per_layer"] += [bytes_ignores_bytes_per_elem, bytes_integer_division, bytes_counts_elements, bytes_twice]

#: What the verdict of some mutants must say: the mistake named, not a generic hint.
HINTS = {
    "shard_columns_instead": "splits the *output* features",
    "shard_reversed_ranks": "in rank order",
    "shard_whole_bias": "the bias is split like the rows",
    "shard_strided_rows": "not every tp-th row",
    "shard_transposed": "that is the transpose",
    "shard_block_from_columns": "the number of rows, not of columns",
    "shard_one_row_too_many": "off by one",
    "row_bias_before_reduce": "the bias was added before the all-reduce",
    "row_no_reduce": "this is only this rank's partial product",
    "row_avg": "op='avg' divides the sum by tp",
    "row_max": "op='max' keeps the largest partial product",
    "qkv_contiguous_chunk": "a contiguous chunk of the 3C rows cuts Q, K and V apart",
    "qkv_only_q": "those are only Q's rows",
    "qkv_interleaved": "the right rows in the wrong order",
    "qkv_round_robin_heads": "not every tp-th head",
    "vocab_no_max": "exp() of large logits overflows",
    "vocab_gathers_logits": "never gather [n, V]",
    "vocab_local_max": "each rank subtracted its own local maximum",
    "vocab_sum_not_mean": "the loss is their mean",
    "vocab_forgets_max": "add the maximum back",
    "vocab_target_from_every_rank": "only the rank that holds id t",
    "vocab_avg_of_exps": "op='avg' divided the sum of exponentials by tp",
    "bytes_forward_only": "that is half",
    "bytes_whole_buffer": "not n",
    "bytes_forgets_p_minus_1": "a rank keeps its own 1/p share",
    "bytes_ignores_bytes_per_elem": "does not change with bytes_per_elem",
    "bytes_integer_division": "integer division",
    "bytes_counts_elements": "does not change with bytes_per_elem",
    "bytes_twice": "that is twice",
}
