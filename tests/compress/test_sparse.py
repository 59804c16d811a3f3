"""Sparse formats: exact round trips, matmuls against dense and torch.sparse, sizes in bytes."""

import pytest
import torch

from minillm.compress.prune import magnitude_mask, nm_mask
from minillm.compress.sparse import csr_matmul, dense_nbytes, nm24_matmul, to_csr, to_nm24

pytestmark = pytest.mark.lesson03


def _pruned(shape=(24, 32), sparsity=0.8, seed=0):
    w = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    return w * magnitude_mask(w, sparsity)


def test_csr_by_hand():
    w = torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 3.0]])
    c = to_csr(w)
    assert c.values.tolist() == [2.0, 1.0, 3.0] and c.col_idx.tolist() == [1, 0, 2] and c.row_ptr.tolist() == [0, 1, 1, 3]
    assert c.nbytes == 3 * 4 + 3 * 4 + 4 * 4  # fp32 values, int32 columns, int32 row offsets
    assert torch.equal(c.to_dense(), w)


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
@pytest.mark.parametrize("sparsity", [0.5, 0.9, 0.99])
def test_csr_matmul_equals_dense_and_torch_sparse(sparsity):
    w = _pruned(sparsity=sparsity)
    x = torch.randn(5, 32, generator=torch.Generator().manual_seed(1))
    c = to_csr(w)
    assert torch.equal(c.to_dense(), w) and c.nnz == int((w != 0).sum())
    ref = x @ w.t()
    torch.testing.assert_close(csr_matmul(x, c), ref, rtol=1e-5, atol=1e-6)  # fp32 sums in another order
    torch_csr = w.to_sparse_csr()
    torch.testing.assert_close(csr_matmul(x, c), (torch_csr @ x.t()).t(), rtol=1e-5, atol=1e-6)
    assert c.nbytes == c.nnz * 8 + (24 + 1) * 4


def test_csr_is_smaller_than_dense_only_below_half_density():
    # fp32 value + int32 index = 8 bytes per kept weight against 4 dense: CSR pays off past 50% sparsity
    assert to_csr(_pruned(sparsity=0.4)).nbytes > dense_nbytes(torch.zeros(24, 32))
    assert to_csr(_pruned(sparsity=0.6)).nbytes < dense_nbytes(torch.zeros(24, 32))


def test_nm24_round_trip_matmul_and_size():
    w = torch.randn(16, 32, generator=torch.Generator().manual_seed(2))
    w = w * nm_mask(w, 2, 4)
    p = to_nm24(w)
    assert torch.equal(p.to_dense(), w)
    x = torch.randn(3, 32, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(nm24_matmul(x, p), x @ w.t(), rtol=1e-5, atol=1e-6)
    # half the fp32 values plus 2 bits per kept value (1 bit per original weight): 1/2 + 1/32 of dense
    assert p.nbytes == 16 * 16 * 4 + 16 * 32 // 8
    assert p.nbytes / dense_nbytes(w) == pytest.approx(0.5 + 1 / 32)


def test_nm24_keeps_groups_with_fewer_than_two_nonzeros():
    w = torch.zeros(2, 8)
    w[0, 1] = 5.0  # one nonzero in the first group, none in the second
    w[1, 6], w[1, 7] = -1.0, 2.0
    assert torch.equal(to_nm24(w).to_dense(), w)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: to_csr(torch.zeros(3)), r"float matrix \[out, in\]"),
        (lambda: to_nm24(torch.ones(4, 8)), "not 2:4 sparse"),
        (lambda: to_nm24(torch.zeros(4, 12)), "divisible by 8"),
        (lambda: csr_matmul(torch.ones(2, 5), to_csr(torch.eye(4))), r"x must be \[N, 4\]"),
    ],
)
def test_bad_input_is_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
