"""The minillm GPT architecture assembled from ``torch.nn`` — the peer that benchmarks
and reference tests compare against.

``TorchGPT.from_minillm(model)`` copies a minillm GPT's weights into it, so both
compute the same function with different kernels (``nn.Linear``,
``nn.LayerNorm``, ``F.scaled_dot_product_attention``, ``F.cross_entropy``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TorchBlock(nn.Module):
    def __init__(self, c) -> None:
        super().__init__()
        self.n_head = c.n_head
        self.ln_1 = nn.LayerNorm(c.n_embd, bias=c.bias)
        self.c_attn = nn.Linear(c.n_embd, 3 * c.n_embd, bias=c.bias)
        self.attn_proj = nn.Linear(c.n_embd, c.n_embd, bias=c.bias)
        self.ln_2 = nn.LayerNorm(c.n_embd, bias=c.bias)
        self.c_fc = nn.Linear(c.n_embd, 4 * c.n_embd, bias=c.bias)
        self.mlp_proj = nn.Linear(4 * c.n_embd, c.n_embd, bias=c.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        x = x + self.attn_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))


class TorchGPT(nn.Module):
    def __init__(self, c) -> None:
        super().__init__()
        self.config = c
        self.wte = nn.Embedding(c.vocab_size, c.n_embd)
        self.wpe = nn.Embedding(c.block_size, c.n_embd)
        self.h = nn.ModuleList([TorchBlock(c) for _ in range(c.n_layer)])
        self.ln_f = nn.LayerNorm(c.n_embd, bias=c.bias)
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        if c.tie_weights:
            self.lm_head.weight = self.wte.weight

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        pos = torch.arange(idx.size(1), device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for b in self.h:
            x = b(x)
        logits = self.lm_head(self.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        return logits, loss

    @classmethod
    def from_minillm(cls, model) -> "TorchGPT":
        ref = cls(model.config)
        sd = model.state_dict()
        new = {"wte.weight": sd["wte.weight"], "wpe.weight": sd["wpe.weight"], "ln_f.weight": sd["ln_f.weight"]}
        if "ln_f.bias" in sd:
            new["ln_f.bias"] = sd["ln_f.bias"]
        new["lm_head.weight"] = sd["lm_head.weight"]
        names = {
            "ln_1": "ln_1", "c_attn": "attn.c_attn", "attn_proj": "attn.c_proj",
            "ln_2": "ln_2", "c_fc": "mlp.c_fc", "mlp_proj": "mlp.c_proj",
        }
        for i in range(model.config.n_layer):
            for ours_name, theirs in names.items():
                for kind in ("weight", "bias"):
                    key = f"h.{i}.{theirs}.{kind}"
                    if key in sd:
                        new[f"h.{i}.{ours_name}.{kind}"] = sd[key]
        ref.load_state_dict({k: v.detach().clone() for k, v in new.items()})
        return ref
