"""Training compute, time, MFU and the whole bill of a run.

- training compute C = 6ND (Kaplan et al. 2020, Sec. 2.1), 8ND with full activation
  recompute (Narayanan et al. 2021, Sec. 5.1);
- FLOPs per token 6N + 12·L·H·Q·T and MFU (Chowdhery et al. 2022, PaLM, Appendix B).

Units: FLOPs, seconds, days (:data:`SECONDS_PER_DAY`), MWh, US dollars.
"""

from __future__ import annotations

from minillm.validate import check_int, check_number
from .devices import DeviceSpec, as_device
from .economics import cost_dollars, energy_joules
from .shapes import ModelShape, param_count

__all__ = ["SECONDS_PER_DAY", "training_flops", "training_time", "megatron_training_time", "mfu", "training_cost"]

SECONDS_PER_DAY = 86_400.0


def _n_params(n_params) -> float:
    if isinstance(n_params, (ModelShape, str)):
        return float(param_count(n_params))
    return check_number("n_params", n_params, strict=True)


def training_flops(n_params, n_tokens: float) -> float:
    """Total training compute C = 6·N·D FLOPs (Kaplan et al. 2020, Sec. 2.1).

    ``n_params`` is N (a number, a preset name or a ModelShape); ``n_tokens`` is D.
    GPT-3 175B on 300B tokens: 6 x 175e9 x 300e9 = 3.15e23 (Brown et al. report 3.14e23).
    """
    return 6.0 * _n_params(n_params) * check_number("n_tokens", n_tokens, strict=True)


def training_time(n_params, n_tokens: float, n_devices: int, flops_per_device: float) -> float:
    """Seconds to train: 6ND / (n_devices x achieved FLOP/s per device).

    ``flops_per_device`` is the *achieved* rate (peak x MFU), not the datasheet peak.
    """
    n = check_int("n_devices", n_devices)
    x = check_number("flops_per_device", flops_per_device, strict=True)
    return training_flops(n_params, n_tokens) / (n * x)


def megatron_training_time(n_params, n_tokens: float, n_devices: int, flops_per_device: float) -> float:
    """Seconds to train with full activation recompute: 8TP / (nX) (Narayanan et al. 2021, Eq. 4).

    Recomputing the forward pass during the backward adds one more 2N per token: 8ND in
    all. GPT-3 175B, 300B tokens, 1024 A100 at 140 TFLOP/s each: about 34 days, the
    paper's estimate from timed iterations (not a finished run).
    """
    n = check_int("n_devices", n_devices)
    x = check_number("flops_per_device", flops_per_device, strict=True)
    return 8.0 * _n_params(n_params) * check_number("n_tokens", n_tokens, strict=True) / (n * x)


def mfu(
    tokens_per_s: float,
    n_params: float,
    n_layer: int,
    n_head: int,
    head_dim: int,
    seq_len: int,
    peak_flops_total: float,
) -> float:
    """Model FLOPs utilisation: (6N + 12·L·H·Q·T) x tokens/s / peak (PaLM, Appendix B).

    ``peak_flops_total`` is the peak of *all* devices together, at the dtype the model
    trains in. Say which peak you used: a hard-coded A100 peak silently inflates MFU on
    faster hardware. Returns a fraction (0.462 for PaLM 540B).
    """
    tps = check_number("tokens_per_s", tokens_per_s, strict=True)
    N = _n_params(n_params)
    L, H = check_int("n_layer", n_layer), check_int("n_head", n_head)
    Q, T = check_int("head_dim", head_dim), check_int("seq_len", seq_len)
    peak = check_number("peak_flops_total", peak_flops_total, strict=True)
    return (6.0 * N + 12.0 * L * H * Q * T) * tps / peak


def training_cost(
    n_params,
    n_tokens: float,
    device: DeviceSpec | str,
    n_devices: int,
    mfu: float = 0.4,
    dtype: str | None = None,
    usd_per_hour: float | None = None,
    power_w: float | None = None,
) -> dict:
    """A training run in one dict: 6ND FLOPs, days, device-hours, energy and dollars.

    Time = 6ND / (n_devices x mfu x peak), the peak at ``dtype`` (default: the device's usual
    LLM dtype). ``mfu`` counts *model* FLOPs only (6ND; PaLM, Appendix B): a run that
    recomputes activations does 8ND of hardware FLOPs in the same time, so its hardware
    utilisation is 8/6 of its MFU. Energy uses the TDP (or ``power_w``) of the chips alone
    and is None without one; dollars use the illustrative price (or ``usd_per_hour``) and
    are None without one. Returns plain floats: ``flops``, ``flops_per_device`` (achieved),
    ``seconds``, ``days``, ``device_hours``, ``mwh``, ``usd``, plus the inputs.
    """
    device = as_device(device)
    dtype = device.default_dtype() if dtype is None else dtype
    u = check_number("mfu", mfu, strict=True)
    if u > 1:
        raise ValueError(f"mfu={u} must be a fraction in (0, 1], e.g. 0.4 for 40%")
    achieved = u * device.peak(dtype)
    seconds = training_time(n_params, n_tokens, n_devices, achieved)
    watts = power_w if power_w is not None else device.tdp_w
    price = usd_per_hour if usd_per_hour is not None else device.usd_per_hour
    joules = energy_joules(seconds, device, n_devices, power_w=watts) if watts is not None else None
    return {
        "device": device.name,
        "dtype": dtype,
        "n_devices": n_devices,
        "mfu": u,
        "n_params": _n_params(n_params),
        "n_tokens": float(n_tokens),
        "flops": training_flops(n_params, n_tokens),
        "flops_per_device": achieved,
        "seconds": seconds,
        "days": seconds / SECONDS_PER_DAY,
        "device_hours": seconds / 3600.0 * n_devices,
        "mwh": None if joules is None else joules / 3.6e9,
        "usd": cost_dollars(seconds, device, n_devices, usd_per_hour=price) if price is not None else None,
    }
