"""Sparse formats written from scratch, with their matmuls and their sizes in bytes.

A pruned weight still has its dense shape: zeros cost as much memory and time as any
other number. Saving bytes needs a format that stores only the kept weights; saving
time needs a kernel that skips the zeros *and* beats the dense GEMM, which on a CPU
happens only at very high sparsity (the lesson measures where).

- **CSR** (compressed sparse row): the kept values, their column indices, and per row
  the offset of its first value. Bytes: nnz · (value + index) + (rows + 1) · index.
- **2:4** (NVIDIA's semi-structured format, Mishra et al. 2021, arXiv:2104.08378): every
  group of 4 weights keeps 2, stored as the 2 values plus two 2-bit positions. Half the
  values, plus 1/8 byte of metadata per original weight. Sparse tensor cores (A100 and
  later) run it about 2× faster than dense; torch's semi-structured kernels need CUDA.

Matmuls compute ``y = x Wᵀ`` as a Linear layer does: x [N, in] -> y [N, out].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["CSRMatrix", "to_csr", "csr_matmul", "NM24Matrix", "to_nm24", "nm24_matmul", "dense_nbytes"]


def dense_nbytes(weight: Tensor) -> int:
    """Bytes of the dense matrix."""
    return weight.numel() * weight.element_size()


def _check_matrix(weight) -> Tensor:
    if not isinstance(weight, Tensor) or weight.dim() != 2 or not weight.is_floating_point():
        raise ValueError(f"weight must be a float matrix [out, in], got {getattr(weight, 'shape', type(weight).__name__)}")
    return weight


def _check_input(x: Tensor, in_features: int) -> Tensor:
    if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != in_features:
        raise ValueError(f"x must be [N, {in_features}], got {getattr(x, 'shape', type(x).__name__)}")
    return x


@dataclass
class CSRMatrix:
    """values [nnz], col_idx [nnz] int32, row_ptr [rows + 1] int32; shape (rows, cols)."""

    values: Tensor
    col_idx: Tensor
    row_ptr: Tensor
    shape: tuple[int, int]

    @property
    def nnz(self) -> int:
        return self.values.numel()

    @property
    def nbytes(self) -> int:
        """Bytes of the three arrays."""
        return sum(t.numel() * t.element_size() for t in (self.values, self.col_idx, self.row_ptr))

    def to_dense(self) -> Tensor:
        rows = torch.repeat_interleave(torch.arange(self.shape[0]), self.row_ptr.diff().long())
        out = torch.zeros(self.shape, dtype=self.values.dtype)
        out[rows, self.col_idx.long()] = self.values
        return out


def to_csr(weight: Tensor) -> CSRMatrix:
    """The CSR form of ``weight`` [out, in]: only its nonzeros are stored."""
    w = _check_matrix(weight).detach()
    nz = w != 0
    rows, cols = nz.nonzero(as_tuple=True)  # row-major order: each row's values are contiguous
    counts = nz.sum(1)
    row_ptr = torch.zeros(w.shape[0] + 1, dtype=torch.int32)
    row_ptr[1:] = counts.cumsum(0)
    return CSRMatrix(w[rows, cols].clone(), cols.to(torch.int32), row_ptr, tuple(w.shape))


def csr_matmul(x: Tensor, w: CSRMatrix) -> Tensor:
    """``x Wᵀ`` for W in CSR: x [N, in] -> [N, out], touching only the nonzeros.

    Gathers the input columns each nonzero multiplies (x[:, col_idx], [N, nnz]), scales
    them by the values and adds each product into its row's output (index_add_).
    """
    x = _check_input(x, w.shape[1])
    rows = torch.repeat_interleave(torch.arange(w.shape[0]), w.row_ptr.diff().long())
    products = x[:, w.col_idx.long()] * w.values  # [N, nnz]
    return torch.zeros(x.shape[0], w.shape[0], dtype=products.dtype).index_add_(1, rows, products)


@dataclass
class NM24Matrix:
    """2:4 semi-structured: values [out, in/2] and the 2-bit positions, four to a byte: [out, in/8] uint8."""

    values: Tensor
    meta: Tensor
    shape: tuple[int, int]

    @property
    def nbytes(self) -> int:
        return self.values.numel() * self.values.element_size() + self.meta.numel() * self.meta.element_size()

    def positions(self) -> Tensor:
        """The kept positions within each group of 4: [out, in/4, 2] int64, from the packed bytes."""
        rows = self.shape[0]
        shifts = torch.tensor([0, 2, 4, 6], dtype=torch.uint8)
        pos = (self.meta.unsqueeze(-1) >> shifts) & 3  # [out, in/8, 4]
        return pos.reshape(rows, -1, 2).long()

    def to_dense(self) -> Tensor:
        rows, cols = self.shape
        out = torch.zeros(rows, cols // 4, 4, dtype=self.values.dtype)
        out.scatter_(2, self.positions(), self.values.view(rows, cols // 4, 2))
        return out.view(rows, cols)


def to_nm24(weight: Tensor) -> NM24Matrix:
    """Pack a weight that is already 2:4 sparse (at most 2 nonzeros in every group of 4 inputs)."""
    w = _check_matrix(weight).detach()
    rows, cols = w.shape
    if cols % 8:
        raise ValueError(f"2:4 packing needs in_features divisible by 8 (four 2-bit positions a byte), got {cols}")
    groups = w.view(rows, cols // 4, 4)
    if int(((groups != 0).sum(-1) > 2).sum()):
        raise ValueError("weight is not 2:4 sparse: some group of 4 has more than 2 nonzeros; apply nm_mask(weight) first")
    # keep the 2 largest |w| of each group (the nonzeros, plus a zero where a group has fewer), in position order
    pos = torch.topk(groups.abs(), 2, dim=-1).indices.sort(-1).values  # [out, in/4, 2]
    values = groups.gather(-1, pos).reshape(rows, cols // 2).clone()
    p = pos.reshape(rows, cols // 8, 4).to(torch.uint8)
    meta = p[..., 0] | (p[..., 1] << 2) | (p[..., 2] << 4) | (p[..., 3] << 6)
    return NM24Matrix(values, meta, (rows, cols))


def nm24_matmul(x: Tensor, w: NM24Matrix) -> Tensor:
    """``x Wᵀ`` for W in 2:4 form: x [N, in] -> [N, out], half the multiplications of dense.

    Each output row's 2 kept weights per group multiply the 2 inputs their positions
    select: gather x at those positions ([N, out, in/2]) and contract with the values.
    """
    rows, cols = w.shape
    x = _check_input(x, cols)
    base = torch.arange(0, cols, 4).view(1, -1, 1)  # the first column of each group
    cols_kept = (base + w.positions()).reshape(rows, cols // 2)  # [out, in/2] input indices
    return torch.einsum("nok,ok->no", x[:, cols_kept], w.values)
