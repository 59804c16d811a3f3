"""Wrong answers to lesson 15's tasks (the capstone), each a mistake a learner plausibly makes."""

from __future__ import annotations

import math

from minillm.hardware.devices import as_device
from minillm.hardware.inference import decode_step_time, prefill_time
from minillm.hardware.memory import min_devices

# --------------------------------------------------------------------------- one replica


def _replica(shape, device, batch, prompt_len, gen_len, *, ctx=None, n=None, prefill=True):
    n = min_devices(shape, device, batch, prompt_len + gen_len) if n is None else n
    ctx = prompt_len + gen_len // 2 if ctx is None else ctx
    dec = decode_step_time(shape, device, ctx, batch=batch, n_devices=n).seconds
    pre_total = batch * prefill_time(shape, device, prompt_len, batch=1, n_devices=n).seconds
    cycle = (pre_total if prefill else 0.0) + gen_len * dec
    return n, dec, batch / cycle


def replica_weights_only(shape, device, batch, prompt_len, gen_len):
    """Sizes the replica for the weights alone (no KV cache)."""
    return _replica(shape, device, batch, prompt_len, gen_len, n=min_devices(shape, device, 1, 1))


def replica_prompt_cache(shape, device, batch, prompt_len, gen_len):
    """Sizes the cache for the prompt only, forgetting the generated tokens."""
    return _replica(shape, device, batch, prompt_len, gen_len, n=min_devices(shape, device, batch, prompt_len))


def replica_full_context(shape, device, batch, prompt_len, gen_len):
    """Decodes every step at the final context P + G instead of the mean."""
    return _replica(shape, device, batch, prompt_len, gen_len, ctx=prompt_len + gen_len)


def replica_no_prefill(shape, device, batch, prompt_len, gen_len):
    """Leaves the prefills out of the cycle."""
    return _replica(shape, device, batch, prompt_len, gen_len, prefill=False)


def replica_prefill_on_one_device(shape, device, batch, prompt_len, gen_len):
    """Prefills on one device although the replica has several."""
    n, dec, _ = _replica(shape, device, batch, prompt_len, gen_len)
    pre = prefill_time(shape, device, prompt_len, batch=1).seconds
    return n, dec, batch / (batch * pre + gen_len * dec)


def replica_cache_at_mean_context(shape, device, batch, prompt_len, gen_len):
    """Sizes the replica for the mean context instead of the final one."""
    return _replica(shape, device, batch, prompt_len, gen_len, n=min_devices(shape, device, batch, prompt_len + gen_len // 2))


def replica_one_request_per_cycle(shape, device, batch, prompt_len, gen_len):
    """Counts one request per cycle instead of the batch."""
    n, dec, rps = _replica(shape, device, batch, prompt_len, gen_len)
    return n, dec, rps / batch


# --------------------------------------------------------------------------- the fleet's cost


def _fleet(shape, device, batch, load, *, whole=True, tokens=None, per_replica=True, hours=False, million=True):
    n, _, rps = _replica(shape, device, batch, load.prompt_len, load.gen_len)
    replicas = math.ceil(load.requests_per_s / rps) if whole else load.requests_per_s / rps
    usd_s = replicas * (n if per_replica else 1) * as_device(device).usd_per_hour / (1 if hours else 3600)
    tok = load.requests_per_s * (load.gen_len if tokens is None else tokens)
    return usd_s / tok * (1e6 if million else 1)


def fleet_fractional_replicas(shape, device, batch, load):
    """Rents a fraction of a replica."""
    return _fleet(shape, device, batch, load, whole=False)


def fleet_capacity_tokens(shape, device, batch, load):
    """Divides by the tokens the whole replicas could generate, not those the load asks for."""
    n, _, rps = _replica(shape, device, batch, load.prompt_len, load.gen_len)
    replicas = math.ceil(load.requests_per_s / rps)
    return replicas * n * as_device(device).usd_per_hour / 3600 / (replicas * rps * load.gen_len) * 1e6


def fleet_all_tokens(shape, device, batch, load):
    """Prices prompt and generated tokens together."""
    return _fleet(shape, device, batch, load, tokens=load.prompt_len + load.gen_len)


def fleet_one_device_per_replica(shape, device, batch, load):
    """Pays for one device per replica."""
    return _fleet(shape, device, batch, load, per_replica=False)


def fleet_hourly(shape, device, batch, load):
    """Divides dollars per hour by tokens per second."""
    return _fleet(shape, device, batch, load, hours=True)


def fleet_per_token(shape, device, batch, load):
    """Returns dollars per token, not per million."""
    return _fleet(shape, device, batch, load, million=False)


# --------------------------------------------------------------------------- the cheapest device


def _options(shape, load, devices, batches):
    for d in devices:
        for b in batches:
            n, dec, _ = _replica(shape, d, b, load.prompt_len, load.gen_len)
            yield d, b, dec, _fleet(shape, d, b, load)


def cheapest_ignores_tpot(shape, load, devices, batches):
    """Takes the lowest cost without the TPOT target."""
    d, b, _, _ = min(_options(shape, load, devices, batches), key=lambda o: o[3])
    return d, b


def cheapest_device_hour(shape, load, devices, batches):
    """Takes the cheapest device-hour, at its best batch."""
    d = min(devices, key=lambda x: as_device(x).usd_per_hour)
    ok = [o for o in _options(shape, load, [d], batches) if o[2] <= load.tpot_s]
    return d, min(ok, key=lambda o: o[3])[1] if ok else batches[0]


def cheapest_largest_batch(shape, load, devices, batches):
    """Takes, per device, the largest batch that meets the target."""
    best = None
    for d in devices:
        ok = [o for o in _options(shape, load, [d], batches) if o[2] <= load.tpot_s]
        if ok:
            o = max(ok, key=lambda o: o[1])
            best = o if best is None or o[3] < best[3] else best
    return best[0], best[1]


def cheapest_last_of_a_tie(shape, load, devices, batches):
    """Keeps the last of equally cheap options (<= instead of <): a bigger batch at the same cost."""
    best = None
    for o in _options(shape, load, devices, batches):
        if o[2] <= load.tpot_s and (best is None or o[3] <= best[3]):
            best = o
    return best[0], best[1]


def cheapest_most_expensive(shape, load, devices, batches):
    """Sorts the wrong way round."""
    ok = [o for o in _options(shape, load, devices, batches) if o[2] <= load.tpot_s]
    d, b, _, _ = max(ok, key=lambda o: o[3])
    return d, b


# --------------------------------------------------------------------------- the training run


def _budget(plan, n_tokens, device, *, unit=86400.0, devices=None, hours=24.0, per_device=False):
    n = plan.dp * plan.tp * plan.pp if devices is None else devices(plan)
    tps = plan.tokens_per_s / n if per_device else plan.tokens_per_s
    days = n_tokens / tps / unit
    return days, n_tokens / plan.tokens_per_s / 86400 * hours * n * as_device(device).usd_per_hour


def budget_seconds(plan, n_tokens, device):
    """Returns seconds, not days."""
    return _budget(plan, n_tokens, device, unit=1.0)


def budget_dp_only(plan, n_tokens, device):
    """Pays for the data-parallel replicas only."""
    return _budget(plan, n_tokens, device, devices=lambda p: p.dp)


def budget_days_times_price(plan, n_tokens, device):
    """Multiplies days (not hours) by the hourly price."""
    return _budget(plan, n_tokens, device, hours=1.0)


def budget_per_device_throughput(plan, n_tokens, device):
    """Divides the cluster's tokens/s by the devices again."""
    return _budget(plan, n_tokens, device, per_device=True)


MUTANTS = {
    "15.replica": [
        replica_weights_only,
        replica_prompt_cache,
        replica_full_context,
        replica_no_prefill,
        replica_one_request_per_cycle,
        replica_prefill_on_one_device,
        replica_cache_at_mean_context,
    ],
    "15.fleet_cost": [fleet_fractional_replicas, fleet_capacity_tokens, fleet_all_tokens, fleet_one_device_per_replica, fleet_hourly, fleet_per_token],
    "15.cheapest": [cheapest_ignores_tpot, cheapest_last_of_a_tie, cheapest_device_hour, cheapest_largest_batch, cheapest_most_expensive],
    "15.training_budget": [budget_seconds, budget_dp_only, budget_days_times_price, budget_per_device_throughput],
}

#: mutant -> a phrase its verdict's hint must contain (tests/course/test_course_hints.py).
HINTS = {
    "replica_weights_only": "KV cache of the whole batch",
    "replica_prompt_cache": "prompt_len + gen_len tokens",
    "replica_full_context": "MEAN context",
    "replica_no_prefill": "count the prefills",
    "replica_one_request_per_cycle": "a cycle serves the whole batch",
    "replica_prefill_on_one_device": "share each prefill too",
    "replica_cache_at_mean_context": "its length at the end",
    "fleet_fractional_replicas": "fraction of a replica",
    "fleet_capacity_tokens": "not what the replicas could serve",
    "fleet_all_tokens": "GENERATED tokens",
    "fleet_one_device_per_replica": "replicas x n_devices",
    "fleet_hourly": "per device-HOUR",
    "fleet_per_token": "MILLION",
    "cheapest_ignores_tpot": "over the TPOT target",
    "cheapest_last_of_a_tie": "a tie:",
    "cheapest_largest_batch": "largest batch within the target is not always",
    "budget_seconds": "not seconds",
    "budget_dp_only": "not only the data-parallel",
    "budget_days_times_price": "days x 24",
    "budget_per_device_throughput": "whole cluster's throughput",
}
