"""Save and load a compressed model (pruned shapes, int8 or int4 weights) in the course's checkpoint format.

:func:`save_compressed` writes a pruned-and-quantized GPT with
:func:`minillm.checkpoint.save_checkpoint`: the pruned widths travel in the config
(``layer_heads``, ``layer_mlp``), each quantized linear weight as int8 codes plus its
float32 scales (int4 codes also take one byte each in the file), and ``meta["quantization"]``
says how the model was quantized. Any checkpoint reader
(:func:`minillm.checkpoint.load_checkpoint`, the zoo's loader, ``minillm generate``) gets
the float32 GPT with the dequantized weights; :func:`load_compressed` quantizes it again
with the same settings, which reproduces the same integer codes and the same outputs.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from minillm.checkpoint import load_checkpoint, save_checkpoint
from minillm.model import GPT

from .int4 import WeightOnlyLinear, unpack_int4
from .int8_linear import Int8Linear, Int8WeightLinear
from .model_quant import quantize_model

__all__ = ["save_compressed", "load_compressed", "quantization_of"]


def quantization_of(model: nn.Module) -> dict | None:
    """The :func:`quantize_model` arguments that rebuild ``model``'s quantized layers, or None for a float model."""
    kinds = set()
    for m in model.modules():
        if isinstance(m, Int8Linear):
            kinds.add(("int8", "int8", None))
        elif isinstance(m, Int8WeightLinear):
            raise ValueError(f"{type(m).__name__} layers cannot be saved by save_compressed; use W8A8 (Int8Linear) or weight-only")
        elif isinstance(m, WeightOnlyLinear):
            kinds.add((f"int{m.bits}", None, m.group_size))
    if not kinds:
        return None
    if len(kinds) > 1:
        raise ValueError(f"the model mixes quantized layer kinds {sorted(map(str, kinds))}; save_compressed needs one kind")
    weights, activations, group = kinds.pop()
    return {"weights": weights, "activations": activations, "group_size": group}


def _codes(mod: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 codes [out, in], float32 scales [out, G]) of a quantized linear layer."""
    if isinstance(mod, Int8Linear):
        return mod.q_weight, mod.w_scale.reshape(-1, 1).float()
    q = unpack_int4(mod.q_weight) if mod.bits == 4 else mod.q_weight
    return q.to(torch.int8), mod.scale.float()


def save_compressed(path: str | os.PathLike, model: GPT, tokenizer=None, meta: dict | None = None) -> Path:
    """Write a (pruned, quantized) minillm GPT atomically to ``path``; returns the path.

    Float models are saved as usual (float16). Quantized layers store their integer codes
    and float32 scales; ``meta["quantization"]`` records how to rebuild them.
    """
    if not isinstance(model, GPT):
        raise ValueError(f"model must be a minillm GPT (pruned and/or quantized), got {type(model).__name__}")
    quant = quantization_of(model)
    state = {k: v for k, v in model.state_dict().items()}
    codes = {}
    for name, mod in model.named_modules():
        if isinstance(mod, (Int8Linear, WeightOnlyLinear)):
            for k in [k for k in state if k.startswith(name + ".")]:
                del state[k]
            state[name + ".weight"] = mod.weight.detach().float()
            if mod.bias is not None:
                state[name + ".bias"] = mod.bias.detach().float()
            codes[name + ".weight"] = _codes(mod)
    twin = GPT(model.config)
    twin.load_state_dict(state)
    return save_checkpoint(path, twin, tokenizer, meta={**(meta or {}), "quantization": quant}, quantized=codes)


def load_compressed(path: str | os.PathLike):
    """Read a checkpoint written by :func:`save_compressed` (or any checkpoint); returns ``(model, tokenizer, meta)``.

    The model is quantized again as ``meta["quantization"]`` says (same codes, same
    outputs as the model that was saved), or stays float32 when that is None.
    """
    model, tok, meta = load_checkpoint(path)
    quant = meta.get("quantization")
    if quant:
        kwargs = {k: v for k, v in quant.items() if not (k == "group_size" and quant.get("activations"))}
        model = quantize_model(model, **kwargs).eval()
    return model, tok, meta
