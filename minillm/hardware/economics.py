"""Energy and dollars: joules and rental cost of a run, and the cost of generating a million tokens.

Energy = seconds x watts x devices (the chips' TDP by default: an upper bound for the chip
alone, no host or cooling). Dollars use the catalog's *illustrative* hourly prices unless
you pass a quote. Units: seconds, joules (kWh = 3.6e6 J), US dollars.
"""

from __future__ import annotations

from minillm.validate import check_int, check_number
from .devices import DeviceSpec, as_device, catalog
from .inference import decode_step_time
from .memory import min_devices
from .shapes import as_shape

__all__ = ["energy_joules", "cost_dollars", "cost_per_million_tokens", "catalog_costs"]


def energy_joules(
    seconds: float,
    device: DeviceSpec | str,
    n_devices: int = 1,
    power_w: float | None = None,
    power_fraction: float = 1.0,
) -> float:
    """Energy of running ``n_devices`` for ``seconds``: seconds x watts x n_devices x power_fraction.

    Watts default to the device's TDP, an upper bound for the chip alone (no host,
    network or cooling; multiply by a PUE for the data centre). Llama 2 reports
    1,720,320 A100-hours for 70B at 400 W: 688 MWh (Touvron et al. 2023, Table 2).
    """
    s = check_number("seconds", seconds)
    device = as_device(device)
    n = check_int("n_devices", n_devices)
    frac = check_number("power_fraction", power_fraction)
    if power_w is None:
        if device.tdp_w is None:
            raise ValueError(f"{device.name} publishes no TDP; pass power_w=<watts> to energy_joules")
        power_w = device.tdp_w
    watts = check_number("power_w", power_w, strict=True)
    return s * watts * n * frac


def cost_dollars(
    seconds: float, device: DeviceSpec | str, n_devices: int = 1, usd_per_hour: float | None = None
) -> float:
    """Rental cost of ``n_devices`` for ``seconds``: hours x price per device-hour x n_devices.

    The default price is the device's *illustrative* ``usd_per_hour`` (see devices.py);
    pass your own quote for a real decision.
    """
    s = check_number("seconds", seconds)
    device = as_device(device)
    n = check_int("n_devices", n_devices)
    if usd_per_hour is None:
        if device.usd_per_hour is None:
            raise ValueError(f"{device.name} has no public hourly price; pass usd_per_hour=<price> to cost_dollars")
        usd_per_hour = device.usd_per_hour
    price = check_number("usd_per_hour", usd_per_hour)
    return s / 3600.0 * price * n


def cost_per_million_tokens(
    shape,
    device: DeviceSpec | str,
    batch: int = 1,
    context: int = 1024,
    dtype: str | None = None,
    n_devices: int | None = None,
    usd_per_hour: float | None = None,
    power_w: float | None = None,
) -> dict:
    """Time, energy and dollars to *generate* one million tokens by decoding (roofline lower bounds).

    Each decode step yields ``batch`` tokens at the cost of :func:`decode_step_time` with
    ``context`` cached tokens. ``n_devices`` defaults to the fewest that hold the model
    and cache (:func:`min_devices`). Energy and dollars are None where the device has no
    TDP or price and none is given. Returns a plain dict, ready for a table.
    """
    shape, device = as_shape(shape), as_device(device)
    dtype = device.default_dtype() if dtype is None else dtype
    if n_devices is None:
        n_devices = min_devices(shape, device, batch, context, dtype=dtype)
    step = decode_step_time(shape, device, context, batch=batch, dtype=dtype, n_devices=n_devices)
    seconds = 1e6 / batch * step.seconds
    price = usd_per_hour if usd_per_hour is not None else device.usd_per_hour
    watts = power_w if power_w is not None else device.tdp_w
    joules = energy_joules(seconds, device, n_devices, power_w=watts) if watts is not None else None
    dollars = cost_dollars(seconds, device, n_devices, usd_per_hour=price) if price is not None else None
    return {
        "device": device.name,
        "kind": device.kind,
        "dtype": dtype,
        "n_devices": n_devices,
        "batch": batch,
        "context": context,
        "step_s": step.seconds,
        "bound": step.bound,
        "tokens_per_s": step.tokens_per_s,
        "seconds_per_million": seconds,
        "joules_per_million": joules,
        "kwh_per_million": None if joules is None else joules / 3.6e6,
        "usd_per_million": dollars,
        "usd_per_hour": price,
    }


def catalog_costs(shape, batch: int = 1, context: int = 1024, devices=None) -> list[dict]:
    """:func:`cost_per_million_tokens` for every device (default: the whole catalog), each at its usual dtype."""
    devices = catalog() if devices is None else [as_device(d) for d in devices]
    return [cost_per_million_tokens(shape, d, batch=batch, context=context) for d in devices]
