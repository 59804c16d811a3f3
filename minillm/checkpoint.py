"""The checkpoint file format: one ``.pt`` file with a header, a config, a tokenizer and a hash.

``save_checkpoint`` writes atomically (a temporary file, then a rename, so a crash
never leaves half a file under the real name) and stores a SHA-256 of the tensors.
``load_checkpoint`` checks the header, the version, the hash, the config and every
tensor's shape, and raises :class:`CheckpointError` naming the file when any of them
is wrong. The zoo (:mod:`minillm.zoo`) and the CLI use these; the format knows
nothing about which models exist.

A checkpoint may store some weights as integer codes with float32 scales
(``quantized=``; written by ``minillm compress``): the tensor ``NAME`` holds int8 codes
[out, in] and ``NAME:scale`` one scale per group of each row [out, G]. ``load_checkpoint``
dequantizes them (``code * scale``), so every reader gets an ordinary float32 GPT whose
weights lie exactly on the quantization grid; files without quantized weights load as before.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import torch

from minillm.model import GPT, GPTConfig
from minillm.tokenizer import tokenizer_from_dict

__all__ = ["FORMAT", "VERSION", "CheckpointError", "save_checkpoint", "load_checkpoint", "state_digest", "dequantize_codes"]

FORMAT = "minillm-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, corrupted, or does not match what was asked."""


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 (hex) over every tensor's name, dtype, shape and bytes, in sorted name order."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


SCALE_SUFFIX = ":scale"


def _check_quantized(name: str, codes: torch.Tensor, scale: torch.Tensor, shape: tuple) -> None:
    """Codes int8 [out, in] and scales float [out, G] with G dividing in, matching the weight's shape."""
    ok = (
        len(shape) == 2
        and isinstance(codes, torch.Tensor) and codes.dtype == torch.int8 and tuple(codes.shape) == tuple(shape)
        and isinstance(scale, torch.Tensor) and scale.is_floating_point() and scale.dim() == 2
        and scale.shape[0] == shape[0] and scale.shape[1] >= 1 and shape[1] % scale.shape[1] == 0
    )
    if not ok:
        raise ValueError(
            f"quantized[{name!r}] must be (int8 codes {tuple(shape)}, float scales [out, G]) with G dividing "
            f"in; got codes {getattr(codes, 'dtype', None)} {tuple(getattr(codes, 'shape', ()))}, "
            f"scales {tuple(getattr(scale, 'shape', ()))}"
        )


def dequantize_codes(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """int8 codes [out, in] times float32 scales [out, G] (one per group of in/G columns) -> float32 [out, in]."""
    out, n_in = codes.shape
    G = scale.shape[1]
    return (codes.float().reshape(out, G, n_in // G) * scale.float().unsqueeze(-1)).reshape(out, n_in)


def save_checkpoint(
    path: str | os.PathLike,
    model: GPT,
    tokenizer=None,
    meta: dict | None = None,
    half: bool = True,
    quantized: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> Path:
    """Write ``model`` (and its tokenizer) to ``path`` atomically; returns the path.

    With ``half`` the tensors are stored in float16 (half the bytes). A tied
    output layer is stored once. ``quantized``: {state-dict name: (int8 codes [out, in],
    float32 scales [out, G])} to store in place of those float weights (1 byte per
    weight plus the scales, which stay float32 so that loading is exact).
    """
    path = Path(path)
    quantized = dict(quantized or {})
    sd = model.state_dict()
    unknown = sorted(set(quantized) - set(sd))
    if unknown:
        raise ValueError(f"quantized names {unknown[:3]} are not weights of the model; use state-dict names like 'h.0.mlp.c_fc.weight'")
    state = {}
    for k, v in sd.items():
        if model.config.tie_weights and k == "lm_head.weight":
            continue
        v = v.detach().cpu()
        if k in quantized:
            codes, scale = quantized[k]
            _check_quantized(k, codes, scale, tuple(v.shape))
            state[k] = codes.detach().cpu().clone()
            state[k + SCALE_SUFFIX] = scale.detach().cpu().float().clone()
            continue
        state[k] = v.half() if (half and v.is_floating_point()) else v.clone()
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": model.config.to_dict(),
        "tokenizer": tokenizer.to_dict() if tokenizer is not None else None,
        "state_dict": state,
        "sha256": state_digest(state),
        "meta": meta or {},
    }
    if quantized:
        payload["quantized"] = sorted(quantized)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; a checkpoint is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, expect_config: GPTConfig | None = None):
    """Read a checkpoint; returns ``(model, tokenizer, meta)``. The model is float32 in eval mode.

    Raises :class:`CheckpointError` (a ``ValueError``) naming the file when it is
    missing, truncated, corrupted, not a minillm checkpoint, or does not match
    ``expect_config``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, not a torch file, ...
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({type(e).__name__}); it may be truncated or corrupted — "
            f"delete it and rebuild it (python -m minillm.zoo build)"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a minillm checkpoint (no '{FORMAT}' header)")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {payload.get('version')}, this minillm reads {VERSION}")
    state = payload["state_dict"]
    if state_digest(state) != payload.get("sha256"):
        raise CheckpointError(f"checkpoint {path} is corrupted: its tensors do not match the stored SHA-256")
    try:
        config = GPTConfig.from_dict(payload["config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} has an invalid config: {e}") from None
    if expect_config is not None and config != expect_config:
        diff = {
            k: (v, getattr(config, k)) for k, v in expect_config.to_dict().items() if getattr(config, k) != v
        }
        raise CheckpointError(
            f"checkpoint {path} does not match the expected config: "
            + ", ".join(f"{k} expected {a}, file has {b}" for k, (a, b) in diff.items())
        )
    model = GPT(config)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    state = dict(state)
    for k in payload.get("quantized") or []:
        codes, scale = state.get(k), state.pop(k + SCALE_SUFFIX, None)
        try:
            _check_quantized(k, codes, scale, tuple(expected.get(k, getattr(codes, "shape", ()))))
        except ValueError as e:
            raise CheckpointError(f"checkpoint {path} has a bad quantized weight: {e}") from None
        state[k] = dequantize_codes(codes, scale)
    if config.tie_weights:
        expected.pop("lm_head.weight")
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != tuple(expected[k]))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}")
        if wrong:
            k = wrong[0]
            parts.append(f"{k} has shape {tuple(state[k].shape)}, the config needs {tuple(expected[k])}")
        raise CheckpointError(f"checkpoint {path} does not match its config: " + "; ".join(parts))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=False)
    model.eval()
    tok = tokenizer_from_dict(payload["tokenizer"]) if payload.get("tokenizer") else None
    return model, tok, payload.get("meta", {})
