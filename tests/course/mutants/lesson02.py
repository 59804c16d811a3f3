"""Wrong answers to lesson 02's tasks, each a mistake a learner plausibly makes."""

from __future__ import annotations

# --------------------------------------------------------------------------- forward


def forward_no_scale(x, weight, bias, A, B, alpha):
    """Leaves out alpha / r."""
    return x @ weight.T + bias + (x @ A.T) @ B.T


def forward_r_over_alpha(x, weight, bias, A, B, alpha):
    """Scales by r / alpha."""
    return x @ weight.T + bias + (A.shape[0] / alpha) * ((x @ A.T) @ B.T)


def forward_no_bias(x, weight, bias, A, B, alpha):
    """Forgets the base's bias."""
    return x @ weight.T + (alpha / A.shape[0]) * ((x @ A.T) @ B.T)


def forward_scales_base(x, weight, bias, A, B, alpha):
    """Scales the frozen base too."""
    return (alpha / A.shape[0]) * (x @ weight.T + bias + (x @ A.T) @ B.T)


def forward_transposed(x, weight, bias, A, B, alpha):
    """Multiplies by A and B untransposed (a shape error)."""
    return x @ weight.T + bias + (alpha / A.shape[0]) * ((x @ A) @ B)


def forward_rank_from_wrong_axis(x, weight, bias, A, B, alpha):
    """Takes r from A.shape[1], the input width."""
    return x @ weight.T + bias + (alpha / A.shape[1]) * ((x @ A.T) @ B.T)


def forward_base_only(x, weight, bias, A, B, alpha):
    """Returns the frozen layer and forgets the update (right only while B = 0)."""
    return x @ weight.T + bias


# --------------------------------------------------------------------------- merge


def merge_no_scale(weight, A, B, alpha):
    """Forgets alpha / r."""
    return weight + B @ A


def merge_update_only(weight, A, B, alpha):
    """Returns ΔW, not W + ΔW."""
    return (alpha / A.shape[0]) * (B @ A)


def merge_subtracts(weight, A, B, alpha):
    """W − ΔW."""
    return weight - (alpha / A.shape[0]) * (B @ A)


def merge_wrong_order(weight, A, B, alpha):
    """A @ B instead of B @ A (a shape error or an [r, r] matrix)."""
    return weight + (alpha / A.shape[0]) * (A @ B)


def merge_rank_from_wrong_axis(weight, A, B, alpha):
    """Takes r from A.shape[1]."""
    return weight + (alpha / A.shape[1]) * (B @ A)


# --------------------------------------------------------------------------- count


def count_all(model):
    """Counts the frozen parameters too."""
    return sum(p.numel() for p in model.parameters())


def count_tensors(model):
    """Counts tensors, not elements."""
    return sum(1 for p in model.parameters() if p.requires_grad)


def count_state_dict(model):
    """Counts state_dict(): a tied weight twice, frozen tensors included."""
    return sum(t.numel() for t in model.state_dict().values())


def count_named_modules_lora_only(model):
    """Counts only A and B, missing other trainable parameters."""
    return sum(p.numel() for n, p in model.named_parameters() if n.endswith((".A", ".B")))


def count_per_module(model):
    """Walks the modules and counts each one's own parameters: the tied embedding twice."""
    return sum(p.numel() for m in model.modules() for p in m.parameters(recurse=False) if p.requires_grad)


def count_num_params(model):
    """Uses lesson 01's num_params(): frozen weights in, position embedding out."""
    return model.num_params()


# --------------------------------------------------------------------------- break-even


def break_even_max_rank(n_in, n_out):
    """Returns the largest rank a matrix can have."""
    return min(n_in, n_out)


def break_even_square(n_in, n_out):
    """d / 2, right only for a square matrix."""
    return n_in / 2


def break_even_inverted(n_in, n_out):
    """Upside down."""
    return (n_in + n_out) / (n_in * n_out)


def break_even_rounded(n_in, n_out):
    """Rounds the right value down to a whole rank."""
    return n_in * n_out // (n_in + n_out)


# --------------------------------------------------------------------------- targets


def targets_whole_sequence(prompt, answer):
    """Trains on the story as well (plain next-token targets)."""
    seq = prompt + answer
    return seq[:-1], seq[1:]


def targets_off_by_one(prompt, answer):
    """Masks one prompt position too many and drops the last answer token."""
    seq = prompt + answer
    return seq[:-1], [-1] * len(prompt) + answer[:-1]


def targets_keeps_last_input(prompt, answer):
    """Feeds the whole sequence as input."""
    seq = prompt + answer
    return seq, [-1] * (len(prompt) - 1) + answer + [-1]


def targets_too_long(prompt, answer):
    """Masks every prompt token: y is one longer than x."""
    seq = prompt + answer
    return seq[:-1], [-1] * len(prompt) + answer


def targets_zero_mask(prompt, answer):
    """Marks the prompt with 0 instead of -1."""
    seq = prompt + answer
    return seq[:-1], [0] * (len(prompt) - 1) + answer


MUTANTS = {
    "02.lora_forward": [forward_no_scale, forward_r_over_alpha, forward_no_bias, forward_scales_base, forward_transposed,
                          forward_rank_from_wrong_axis, forward_base_only],
    "02.merge_weight": [merge_no_scale, merge_update_only, merge_subtracts, merge_wrong_order, merge_rank_from_wrong_axis],
    "02.count_trainable": [count_all, count_tensors, count_state_dict, count_named_modules_lora_only, count_per_module,
                           count_num_params],
    "02.break_even_rank": [break_even_max_rank, break_even_square, break_even_inverted, break_even_rounded],
    "02.answer_targets": [targets_whole_sequence, targets_off_by_one, targets_keeps_last_input, targets_too_long, targets_zero_mask],
}

#: The phrase each mutant's verdict must contain: the check names the mistake, not a generic fix
#: (tests/course/test_course_hints.py).
HINTS = {
    "forward_no_scale": "you left the scale out",
    "forward_r_over_alpha": "not r / alpha",
    "forward_no_bias": "the base layer's bias is part of the output",
    "forward_scales_base": "not the frozen base",
    "forward_rank_from_wrong_axis": "r is the rank, A.shape[0]",
    "forward_base_only": "you returned the frozen layer alone",
    "merge_no_scale": "scale the product by alpha / r",
    "merge_update_only": "you returned the update alone",
    "merge_subtracts": "W + ΔW, not W − ΔW",
    "merge_rank_from_wrong_axis": "r is the rank, A.shape[0]",
    "count_all": "the frozen base does not train",
    "count_tensors": "count elements (p.numel()), not tensors",
    "count_state_dict": "a tied weight counted twice",
    "count_per_module": "a tied weight counted twice",
    "count_num_params": "num_params() counts every parameter",
    "break_even_max_rank": "the largest rank a matrix can have",
    "break_even_square": "d/2 holds only for a square matrix",
    "break_even_inverted": "upside down",
    "break_even_rounded": "do not round",
    "targets_whole_sequence": "that trains on the story too",
    "targets_off_by_one": "off by one",
    "targets_keeps_last_input": "every token except the last",
    "targets_too_long": "one target per input position",
    "targets_zero_mask": "0 is a real token id",
}
