"""Checks of lesson 15, the capstone: "make it cheap, fast and big".

The learner writes the glue between the course's models; each check compares the
learner's numbers with :mod:`minillm.capstone` (itself tested against closed forms in
``tests/test_capstone.py``) on published model shapes, catalog devices and seeded random
loads. A wrong answer that matches a typical mistake (the full context instead of the
mean one, fractional replicas, all tokens instead of generated ones, hours instead of
days, ...) is named in the hint.

Tolerances: the references are a few float64 roofline products, sums and quotients, so a
correct answer agrees to about 1e-15 relative; we accept 1e-9 relative (any order of
operations), far below the smallest mistake we diagnose (a few percent). Counts (devices,
replicas, a batch size, a device name) must match exactly.
"""

from __future__ import annotations


from minillm.course.checks import CheckFailure, case_rng, describe, register
from minillm.course.checks.lesson09 import expect_number  # the same comparison (1e-9 relative) and diagnosis


def _tuple(got, n: int, what: str, names: str):
    if not isinstance(got, (tuple, list)) or len(got) != n:
        raise CheckFailure(f"{what} returned", got=describe(got), expected=f"a tuple of {n}: ({names})")
    return got


def _serving_cases():
    """(shape, device, batch, prompt_len, gen_len): published shapes on the priced catalog, plus seeded random ones."""
    from minillm.hardware.shapes import ModelShape

    cases = [
        ("llama2-7b", "h100-sxm", 32, 1024, 256),
        ("llama2-7b", "a100-80gb-sxm", 1, 512, 128),
        ("llama2-70b", "h100-sxm", 64, 2048, 512),  # several devices per replica
        ("llama3-8b", "tpu-v5e", 16, 1000, 301),  # odd gen_len: the mean context rounds down
        ("llama2-13b", "b200", 256, 4096, 1024),
    ]
    rng = case_rng(15)
    for i in range(3):
        kv = rng.choice([1, 2, 4])
        shape = ModelShape(n_layer=rng.randint(4, 48), d_model=rng.choice([1024, 2048, 4096]), n_head=kv * 4,
                           n_kv_head=kv, head_dim=128, vocab_size=rng.randint(30000, 130000),
                           d_ff=rng.choice([4096, 8192, 11008]), gated_mlp=True, name=f"random-{i}")
        cases.append((shape, rng.choice(["h100-sxm", "a100-80gb-sxm", "h200-sxm", "tpu-v6e"]), rng.choice([1, 8, 128]),
                      rng.randint(100, 3000), rng.randint(17, 999)))
    return cases


def _name(shape) -> str:
    return shape if isinstance(shape, str) else shape.name


# --------------------------------------------------------------------------- one replica


@register("15.replica", points=3, references=("minillm.capstone.replica", "minillm.capstone.fleet_option",
                                              "minillm.capstone.best_batch", "minillm.capstone.rank_serving"))
def check_replica(fn) -> None:
    """replica_throughput(shape, device, batch, prompt_len, gen_len) -> (n_devices, decode_s, requests_per_s)."""
    from minillm.capstone import replica
    from minillm.hardware.inference import decode_step_time, prefill_time
    from minillm.hardware.memory import min_devices

    for shape, dev, b, P, G in _serving_cases():
        ref = replica(shape, dev, b, P, G)
        n = ref["n_devices"]
        where = f"{_name(shape)} on {dev}, batch {b}, prompt {P}, generate {G}"
        got = _tuple(fn(shape, dev, b, P, G), 3, f"replica_throughput({where})", "n_devices, decode_s, requests_per_s")
        n_weights = min_devices(shape, dev, 1, 1)
        n_prompt = min_devices(shape, dev, b, P)
        if got[0] != n or isinstance(got[0], bool):
            hint = "min_devices(shape, device, batch, prompt_len + gen_len): the cache holds every sequence's prompt AND generated tokens"
            if got[0] == n_prompt != n:
                hint = ("the cache grows while it generates: size it for prompt_len + gen_len tokens, its length at the end "
                        "(not the prompt alone, nor the mean context)")
            elif got[0] == n_weights != n:
                hint = "a replica must hold the KV cache of the whole batch too, not only the weights: min_devices(shape, device, batch, ...)"
            raise CheckFailure(f"n_devices for {where} is", got=got[0], expected=n, hint=hint)
        full = decode_step_time(shape, dev, P + G, batch=b, n_devices=n).seconds
        start = decode_step_time(shape, dev, P, batch=b, n_devices=n).seconds
        one = decode_step_time(shape, dev, P + G // 2, batch=b, n_devices=1).seconds
        expect_number(got[1], ref["decode_s"], what=f"decode_s for {where}",
                hint="decode_step_time(shape, device, prompt_len + gen_len // 2, batch=batch, n_devices=n_devices).seconds",
                diagnose={
                    "decode at the MEAN context, prompt_len + gen_len // 2: the cache grows from P to P + G": full,
                    "the cache grows while it generates: decode at the mean context prompt_len + gen_len // 2, not prompt_len": start,
                    "split the step over the replica's n_devices (n_devices=...)": one,
                })
        pre = prefill_time(shape, dev, P, batch=1, n_devices=n).seconds
        pre_batched = prefill_time(shape, dev, P, batch=b, n_devices=n).seconds
        pre_one_device = prefill_time(shape, dev, P, batch=1, n_devices=1).seconds
        dec = ref["decode_s"]
        expect_number(got[2], ref["requests_per_s"], what=f"requests_per_s for {where}",
                hint="one cycle prefills the batch's prompts one by one, then decodes gen_len steps: batch / (batch·prefill_s + gen_len·decode_s)",
                diagnose={
                    "count the prefills: a cycle takes batch·prefill_s + gen_len·decode_s": b / (G * dec),
                    "prefill the prompts one after another (prefill_time(..., batch=1)), batch·prefill_s in all": b / (pre_batched + G * dec),
                    "a cycle serves the whole batch: requests_per_s = batch / cycle_s": 1 / (b * pre + G * dec),
                    "the replica's devices share each prefill too: prefill_time(..., batch=1, n_devices=n_devices)":
                        b / (b * pre_one_device + G * dec),
                    "the decode steps are shared by the batch: gen_len·decode_s per cycle, not batch·gen_len·decode_s": b / (b * pre + b * G * dec),
                })


# --------------------------------------------------------------------------- the fleet's cost (derivation)


def _loads():
    from minillm.capstone import ServingLoad

    rng = case_rng(1515)
    loads = [ServingLoad(20, 1024, 256, 0.05), ServingLoad(3.5, 2048, 512, 0.1)]
    for _ in range(3):
        loads.append(ServingLoad(rng.uniform(0.5, 200), rng.randint(100, 3000), rng.randint(17, 999), rng.uniform(0.01, 0.2)))
    return loads


@register("15.fleet_cost", points=3, references=("minillm.capstone.fleet_option", "minillm.capstone.best_batch",
                                                 "minillm.capstone.rank_serving",
                                                 "minillm.hardware.economics.cost_per_million_tokens"))
def check_fleet_cost(fn) -> None:
    """usd_per_million(shape, device, batch, load) -> dollars per million generated tokens of the fleet."""
    from minillm.capstone import fleet_option
    from minillm.hardware.devices import as_device

    cases = _serving_cases()
    for i, load in enumerate(_loads()):
        for shape, dev, b, _, _ in cases[i::3][:3]:
            ref = fleet_option(shape, dev, load, b)
            price, R, G, P = as_device(dev).usd_per_hour, load.requests_per_s, load.gen_len, load.prompt_len
            n, rps = ref["n_devices"], ref["requests_per_s"]
            exact = n * price * (R / rps)
            where = (f"{_name(shape)} on {dev}, batch {b}, load of {R:.4g} req/s x ({P} prompt + {G} generated), "
                     f"one replica {rps:.4g} req/s on {n} device(s)")
            expect_number(fn(shape, dev, b, load), ref["usd_per_million"], what=f"usd_per_million for {where}",
                    hint="replicas = ceil(requests_per_s / replica's); fleet $/s = replicas x n_devices x price / 3600; divide by generated tokens/s, x 1e6",
                    diagnose={
                        "you cannot rent a fraction of a replica: replicas = math.ceil(requests_per_s / replica's requests_per_s), and the tokens are the load's, requests_per_s x gen_len, not what the replicas could serve": exact / 3600 / (R * G) * 1e6,
                        "price the GENERATED tokens (requests_per_s x gen_len), as lesson 09's cost per million tokens does": ref["usd_per_hour"] / 3600 / (R * (P + G)) * 1e6,
                        "a replica is n_devices devices: pay for replicas x n_devices": ref["replicas"] * price / 3600 / (R * G) * 1e6,
                        "the price is per device-HOUR: divide by 3600 to get dollars per second": ref["usd_per_hour"] / (R * G) * 1e6,
                        "per MILLION tokens: multiply dollars per token by 1e6": ref["usd_per_hour"] / 3600 / (R * G),
                    })


# --------------------------------------------------------------------------- the cheapest device


def _cheapest_of_largest(options: list[dict]) -> tuple[str, int] | None:
    """(device, batch) of the cheapest among each device's largest batch that meets the target: a learner's shortcut."""
    largest = {}
    for o in options:
        if o["meets_tpot"] and (o["device"] not in largest or o["batch"] > largest[o["device"]]["batch"]):
            largest[o["device"]] = o
    if not largest:
        return None
    o = min(largest.values(), key=lambda o: o["usd_per_million"])
    return o["device"], o["batch"]


@register("15.cheapest", points=2, references=("minillm.capstone.best_batch", "minillm.capstone.rank_serving"))
def check_cheapest(fn) -> None:
    """cheapest(shape, load, devices, batches) -> (device name, batch) of the lowest cost that meets the TPOT target."""
    from minillm.capstone import ServingLoad, fleet_option, rank_serving
    from minillm.hardware.devices import as_device

    cases = [
        ("llama2-7b", ServingLoad(20, 1024, 256, 0.006), ("h100-sxm", "a100-80gb-sxm", "b200", "tpu-v5e"), (1, 4, 16, 64)),
        ("llama2-70b", ServingLoad(5, 2048, 512, 0.04), ("h100-sxm", "h200-sxm", "a100-80gb-sxm", "tpu-v5p"), (1, 8, 32, 128)),
        ("llama3-8b", ServingLoad(100, 512, 128, 0.007), ("h100-sxm", "a100-80gb-sxm", "tpu-v6e", "tpu-v4"), (1, 2, 4, 8, 16, 32, 64, 128, 256)),
        ("llama2-13b", ServingLoad(2, 4096, 1024, 0.03), ("a100-80gb-sxm", "h100-sxm", "tpu-v5e"), (1, 16, 256)),
        # the brief: one B200 replica serves 20 req/s at batch 32, 64 or 128, at the same cost; the first one wins
        ("llama2-7b", ServingLoad(20, 1024, 256, 0.05), ("a100-80gb-sxm", "h100-sxm", "b200"), (8, 16, 32, 64, 128, 256)),
    ]
    # The TPOT target binds in the first and third cases: the loosely cheapest option is too slow.
    rng = case_rng(147)
    pool = ("h100-sxm", "h200-sxm", "a100-80gb-sxm", "b200", "tpu-v4", "tpu-v5e", "tpu-v5p", "tpu-v6e")
    while len(cases) < 7:  # drawn loads, device sets and batch lists on which some option meets the target
        case = (rng.choice(["llama2-7b", "llama3-8b", "llama2-13b", "llama2-70b"]),
                ServingLoad(rng.randint(1, 100), rng.choice([256, 512, 1024, 2048, 4096]), rng.choice([64, 128, 256, 512, 1024]),
                            round(rng.uniform(0.004, 0.05), 4)),
                tuple(rng.sample(pool, rng.randint(2, 5))), tuple(sorted(rng.sample([1, 2, 4, 8, 16, 32, 64, 128, 256], rng.randint(2, 5)))))
        if rank_serving(*case):
            cases.append(case)
    for shape, load, devices, batches in cases:
        rows = rank_serving(shape, load, devices, batches)
        where = (f"{shape}, {load.requests_per_s:g} req/s of {load.prompt_len}+{load.gen_len} tokens, TPOT <= {load.tpot_s * 1e3:g} ms, "
                 f"devices {list(devices)}, batches {list(batches)}")
        got = _tuple(fn(shape, load, devices, batches), 2, f"cheapest({where})", "device name, batch")
        want = (rows[0]["device"], rows[0]["batch"])
        if (got[0], got[1]) == want:
            continue
        every = [fleet_option(shape, d, load, b) for d in devices for b in batches]
        hint = "among the (device, batch) pairs whose decode_s <= load.tpot_s, take the lowest usd_per_million"
        loose = min(every, key=lambda o: o["usd_per_million"])
        by_price = min(devices, key=lambda d: as_device(d).usd_per_hour)
        picked = next((o for o in every if (o["device"], o["batch"]) == (got[0], got[1])), None)
        if picked is not None and picked["meets_tpot"] and picked["usd_per_million"] == rows[0]["usd_per_million"]:
            hint = (f"a tie: {want} costs the same ${picked['usd_per_million']:.4g}/M (whole replicas) and comes first; "
                    "keep the first cheapest option found (compare with <, not <=)")
        elif (got[0], got[1]) == (loose["device"], loose["batch"]):
            hint = f"that option's decode step takes {loose['decode_s'] * 1e3:.3g} ms, over the TPOT target: skip options with decode_s > load.tpot_s"
        elif got[0] == by_price and got[0] != want[0]:
            hint = "the cheapest device-hour is not the cheapest token: compare usd_per_million of each device's best batch"
        elif (got[0], got[1]) == _cheapest_of_largest(every):
            hint = ("each device's largest batch within the target is not always its cheapest: a bigger batch can need "
                    "more devices per replica or leave a replica idle; compare every batch of every device")
        elif picked is not None and picked["meets_tpot"] and got[0] == want[0]:
            hint = f"batch {got[1]} costs ${picked['usd_per_million']:.4g}/M; try every batch and keep the cheapest that meets the target"
        raise CheckFailure(f"cheapest for {where} is", got=tuple(got), expected=want, hint=hint)


# --------------------------------------------------------------------------- the training run


@register("15.training_budget", points=2, references=("minillm.capstone.training_budget",
                                                      "minillm.hardware.training.training_cost"))
def check_training_budget(fn) -> None:
    """days_and_dollars(plan, n_tokens, device) -> (days, dollars) of a run at the plan's predicted tokens/s."""
    from minillm.capstone import training_budget
    from minillm.hardware.devices import as_device
    from minillm.parallel.planner import predict

    cases = [
        ("llama2-7b", "h100-sxm", dict(dp=32, tp=2, pp=1, micro_batch=1, global_batch=512, seq_len=4096, zero_stage=1), 1e12),
        ("llama2-70b", "a100-80gb-sxm", dict(dp=16, tp=8, pp=4, micro_batch=1, global_batch=1024, seq_len=4096,
                                             recompute="selective"), 2e12),
        ("gpt3-175b", "h100-sxm", dict(dp=8, tp=8, pp=16, micro_batch=1, global_batch=1536, seq_len=2048,
                                       recompute="full"), 3e11),
        ("llama3-8b", "tpu-v5p", dict(dp=64, tp=4, pp=1, micro_batch=2, global_batch=1024, seq_len=8192,
                                      recompute="full", mfu=0.45), 1.5e13),
    ]
    rng = case_rng(185)  # drawn runs: a listed plan with twice the batch or not, on a random number of tokens
    for shape, dev, kw, _ in rng.sample(cases, 2):
        cases.append((shape, dev, {**kw, "global_batch": kw["global_batch"] * rng.choice([1, 2])}, round(10 ** rng.uniform(11, 13.5), -6)))
    for shape, dev, kw, D in cases:
        p = predict(shape, dev, **kw)
        ref = training_budget(shape, D, dev, p.dp * p.tp * p.pp, p.tokens_per_s)
        n = p.dp * p.tp * p.pp
        where = f"{shape} on {n} x {dev} as dp={p.dp}, tp={p.tp}, pp={p.pp} ({p.tokens_per_s:.4g} tokens/s), {D:.3g} tokens"
        got = _tuple(fn(p, D, dev), 2, f"days_and_dollars({where})", "days, dollars")
        days = ref["days"]
        expect_number(got[0], days, what=f"days for {where}", hint="n_tokens / plan.tokens_per_s seconds, / 86,400",
                diagnose={"days, not seconds: divide by 86,400": days * 86400, "days, not hours: divide the seconds by 86,400": days * 24,
                          "plan.tokens_per_s is the whole cluster's throughput: do not divide by the devices again": days * n})
        usd = ref["usd"]
        price = as_device(dev).usd_per_hour
        expect_number(got[1], usd, what=f"dollars for {where}",
                hint="hours x n_devices (plan.dp x plan.tp x plan.pp) x the device's usd_per_hour",
                diagnose={"pay for every device: x plan.dp x plan.tp x plan.pp": days * 24 * price,
                          "the price is per hour: days x 24 x n_devices x usd_per_hour": days * n * price,
                          "count all dp x tp x pp devices, not only the data-parallel replicas": days * 24 * p.dp * price})
