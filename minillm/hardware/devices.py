"""The device catalog: what a chip can compute, hold and move, with a source for every number.

A :class:`DeviceSpec` is the whole of what a roofline or cost model needs to know about
a chip: dense peak FLOP/s per dtype, memory capacity, memory bandwidth, link bandwidth
and power. Units are SI throughout: FLOP/s, bytes, bytes/s, watts.

Which GB is which (:mod:`minillm.units`):

- **bandwidths and FLOP/s are decimal**: GB/s = 1e9 bytes/s, as every datasheet counts them;
- **memory sizes are stored as the vendor counts them**: NVIDIA's "80GB" (A100, H100), "141GB"
  (H200) and "180GB" (B200) are *binary* (80 GiB = 85.9e9 bytes; an H100 SXM reports
  81,559 MiB in ``nvidia-smi``), and so are Google's TPU v4 "32 GiB" and v5p "95 GiB";
  Google's v5e and v6e pages, the U280 data sheet, the Xeon's DIMMs and Groq's SRAM say
  decimal GB/MB, and are stored that way. ``mem_bytes`` is always bytes; tables print it in
  GB = 1e9 bytes and say so.
- Link notes quote bytes per second only; where a vendor quotes bits (Gbps), the note
  converts (8 bits per byte).

Only *dense* peaks are stored. NVIDIA spec sheets headline 2:4-sparse figures (marked
with an asterisk), which are exactly twice the dense ones; a model multiplies dense
matrices, so the dense figure is the honest roof. ``tests/hardware`` checks this.

``usd_per_hour`` is an *illustrative* on-demand rental price, not a quote: prices vary
by provider, region, commitment and month. Pass your own price to
:func:`minillm.hardware.economics.cost_dollars` when it matters.

>>> from minillm.hardware import get_device
>>> h100 = get_device("H100")
>>> round(h100.peak("bf16") / h100.mem_bw)   # the ridge point, FLOP/byte
295
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from minillm.units import GB, GiB
from minillm.validate import check_number

__all__ = [
    "DeviceSpec",
    "DTYPE_BYTES",
    "KINDS",
    "get_device",
    "list_devices",
    "as_device",
    "catalog",
    "ComputeUnits",
    "compute_units",
]

#: Bytes per element of each dtype a peak can be quoted for. tf32 is stored as fp32.
DTYPE_BYTES: dict[str, int] = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1}

#: The kinds of device in the catalog.
KINDS = ("cpu", "gpu", "tpu", "fpga", "asic")



@dataclass(frozen=True, eq=False)
class DeviceSpec:
    """One chip (one GPU, one TPU chip, one CPU socket, one FPGA card).

    Attributes:
        name: canonical catalog name, e.g. ``"h100-sxm"``.
        kind: one of ``"cpu" | "gpu" | "tpu" | "fpga" | "asic"``.
        peak_flops: dtype -> *dense* peak FLOP/s (ops/s for int8), e.g. ``{"bf16": 989.4e12}``.
        mem_bytes: capacity of the main memory the chip computes from (HBM, DRAM or SRAM), bytes.
        mem_bw: bandwidth of that memory, bytes/s.
        link_bw: chip-to-chip bandwidth per direction, all links summed, bytes/s (None if unpublished).
        tdp_w: thermal design power (or measured mean where noted), watts (None if unpublished).
        sources: field name (``"peak_flops.bf16"``, ``"mem_bw"``, ...) -> where the number comes from.
        usd_per_hour: illustrative rental price per device-hour in USD (None if none is public).
        aliases: other names :func:`get_device` accepts.
        notes: anything a reader should know before trusting the numbers.
    """

    name: str
    kind: str
    peak_flops: dict[str, float]
    mem_bytes: float
    mem_bw: float
    link_bw: float | None
    tdp_w: float | None
    sources: dict[str, str] = field(default_factory=dict)
    usd_per_hour: float | None = None
    aliases: tuple[str, ...] = ()
    notes: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"DeviceSpec {self.name!r}: kind={self.kind!r} is not one of {KINDS}")
        if not self.peak_flops:
            raise ValueError(f"DeviceSpec {self.name!r}: peak_flops is empty; give at least one dtype, e.g. {{'fp32': 1e12}}")
        for dtype, value in self.peak_flops.items():
            if dtype not in DTYPE_BYTES:
                raise ValueError(
                    f"DeviceSpec {self.name!r}: unknown dtype {dtype!r} in peak_flops; use one of {sorted(DTYPE_BYTES)}"
                )
            check_number(f"DeviceSpec {self.name!r}: peak_flops[{dtype!r}]", value, strict=True)
        check_number(f"DeviceSpec {self.name!r}: mem_bytes", self.mem_bytes, strict=True)
        check_number(f"DeviceSpec {self.name!r}: mem_bw", self.mem_bw, strict=True)
        for attr in ("link_bw", "tdp_w", "usd_per_hour"):
            if getattr(self, attr) is not None:
                check_number(f"DeviceSpec {self.name!r}: {attr}", getattr(self, attr), strict=True)

    # ------------------------------------------------------------------ helpers

    @property
    def dtypes(self) -> list[str]:
        """The dtypes this device has a peak for."""
        return list(self.peak_flops)

    def peak(self, dtype: str) -> float:
        """Dense peak FLOP/s for ``dtype``; a clear ValueError if the device has none."""
        if dtype not in self.peak_flops:
            hint = f"use one of {self.dtypes}"
            if dtype not in DTYPE_BYTES:
                hint += f" (known dtypes are {sorted(DTYPE_BYTES)})"
            raise ValueError(f"dtype={dtype!r} has no peak on {self.name}; {hint}")
        return self.peak_flops[dtype]

    def default_dtype(self) -> str:
        """The dtype an LLM would run in here: bf16, else fp16, else int8, else fp32."""
        for dtype in ("bf16", "fp16", "int8", "fp8", "fp32", "tf32"):
            if dtype in self.peak_flops:
                return dtype
        return self.dtypes[0]  # unreachable: peak_flops is never empty

    def describe(self) -> str:
        """A one-line summary, e.g. for a table row."""
        peaks = ", ".join(f"{d} {v / 1e12:g} T" for d, v in self.peak_flops.items())
        return f"{self.name} ({self.kind}): {peaks}; {self.mem_bytes / GB:g} GB at {self.mem_bw / GB:g} GB/s"


# --------------------------------------------------------------------------- the catalog
#
# Each entry cites its datasheet. Dense figures only: for NVIDIA parts the datasheet's
# sparse Tensor Core figure (footnoted "with sparsity") is halved.

_NV_A100 = "NVIDIA A100 Tensor Core GPU datasheet (80GB SXM column; dense = half the '*with sparsity' figure)"
_NV_H100 = "NVIDIA H100 Tensor Core GPU datasheet, H100 SXM column (dense = half the '*with sparsity' figure)"
_NV_H200 = "NVIDIA H200 Tensor Core GPU datasheet, H200 SXM column (dense = half the '*with sparsity' figure)"
_NV_B200 = "NVIDIA HGX B200 / DGX B200 specifications, per GPU (dense = half the sparse figure)"
_GCP = "Google Cloud TPU documentation, system architecture page for"
_SCALING = "Austin et al. 2025, How to Scale Your Model, Part 2 (TPU spec table)"
_RENT = "ILLUSTRATIVE on-demand rental price (USD per device-hour), not a quote:"

_CATALOG: list[DeviceSpec] = [
    DeviceSpec(
        name="xeon-8480",
        kind="cpu",
        # 56 cores x 2.0 GHz base x FLOP/cycle/core. AVX-512: 2 FMA units x 16 fp32 lanes x 2.
        # AMX: 1024 bf16 FLOP and 2048 int8 ops per cycle per core (Intel Architecture Day 2021).
        peak_flops={"fp32": 56 * 2.0e9 * 64, "bf16": 56 * 2.0e9 * 1024, "int8": 56 * 2.0e9 * 2048},
        mem_bytes=512 * GB,
        mem_bw=8 * 38.4 * GB,  # 8 channels of DDR5-4800: 4800 MT/s x 8 bytes = 38.4 GB/s each
        link_bw=63.0 * GB,  # PCIe 5.0 x16: 32 GT/s x 16 lanes x 128/130 / 8 bits, per direction
        tdp_w=350.0,
        usd_per_hour=4.8,
        aliases=("xeon", "cpu", "server-cpu", "sapphire-rapids", "xeon-platinum-8480+"),
        sources={
            "peak_flops.fp32": "derived: Intel ark (Xeon Platinum 8480+: 56 cores, 2.0 GHz base) x 64 fp32 FLOP/cycle (2 AVX-512 FMA units)",
            "peak_flops.bf16": "derived: Intel ark (56 cores, 2.0 GHz) x 1024 bf16 FLOP/cycle/core with AMX (Intel Architecture Day 2021)",
            "peak_flops.int8": "derived: Intel ark (56 cores, 2.0 GHz) x 2048 int8 ops/cycle/core with AMX (Intel Architecture Day 2021)",
            "mem_bytes": "assumed typical configuration: 8 x 64 GB DDR5 DIMMs, one per channel (the socket supports up to 4 TB)",
            "mem_bw": "derived: Intel ark, 8 channels of DDR5-4800 x 8 bytes per transfer",
            "link_bw": "PCI-SIG PCIe 5.0 base specification: 32 GT/s per lane, x16, 128b/130b encoding",
            "tdp_w": "Intel ark, Xeon Platinum 8480+ TDP",
            "usd_per_hour": f"{_RENT} about half of a 2-socket Sapphire Rapids cloud instance (e.g. AWS m7i.48xlarge), 2024",
        },
        notes="Peaks are theoretical at the base clock; AVX-512/AMX code often runs at a lower licence clock.",
    ),
    DeviceSpec(
        name="a100-80gb-sxm",
        kind="gpu",
        peak_flops={"fp32": 19.5e12, "tf32": 156e12, "bf16": 312e12, "fp16": 312e12, "int8": 624e12},
        mem_bytes=80 * GiB,  # NVIDIA "80GB" is binary
        mem_bw=2.039e12,
        link_bw=600 * GB / 2,  # NVLink 3: 600 GB/s total (both directions) -> 300 GB/s per direction
        tdp_w=400.0,
        usd_per_hour=1.8,
        aliases=("a100", "a100-80gb", "a100-sxm", "a100-sxm4-80gb"),
        sources={
            "peak_flops": _NV_A100 + ": FP32 19.5 TF, TF32 156 TF, BF16/FP16 312 TF, INT8 624 TOPS dense",
            "mem_bytes": _NV_A100 + ": 80GB HBM2e, a binary figure: 80 GiB = 85.9e9 bytes (nvidia-smi: 81,920 MiB)",
            "mem_bw": _NV_A100 + ": 2,039 GB/s",
            "link_bw": _NV_A100 + ": NVLink 600 GB/s (total of both directions)",
            "tdp_w": _NV_A100 + ": max TDP 400 W",
            "usd_per_hour": f"{_RENT} typical GPU-cloud list price for an 80GB SXM A100, 2024-2025",
        },
    ),
    DeviceSpec(
        name="h100-sxm",
        kind="gpu",
        peak_flops={
            "fp32": 67e12,
            "tf32": 494.7e12,
            "bf16": 989.4e12,
            "fp16": 989.4e12,
            "fp8": 1978.9e12,
            "int8": 1978.9e12,
        },
        mem_bytes=80 * GiB,  # NVIDIA "80GB" is binary
        mem_bw=3.35e12,
        link_bw=900 * GB / 2,  # NVLink 4: 900 GB/s total -> 450 GB/s per direction
        tdp_w=700.0,
        usd_per_hour=3.0,
        aliases=("h100", "h100-sxm5", "h100-80gb", "hopper"),
        sources={
            "peak_flops": _NV_H100
            + ": FP32 67 TF; TF32 989, BF16/FP16 1,979, FP8/INT8 3,958 with sparsity; "
            "NVIDIA H100 whitepaper gives the dense BF16 figure as 989.4 TF",
            "mem_bytes": _NV_H100 + ": 80GB, a binary figure: 80 GiB = 85.9e9 bytes (nvidia-smi reports 81,559 MiB = 85.5e9 usable)",
            "mem_bw": _NV_H100 + ": 3.35 TB/s",
            "link_bw": _NV_H100 + ": NVLink 900 GB/s (total of both directions)",
            "tdp_w": _NV_H100 + ": max TDP up to 700 W",
            "usd_per_hour": f"{_RENT} typical GPU-cloud list price for an H100 SXM, 2024-2025",
        },
    ),
    DeviceSpec(
        name="h200-sxm",
        kind="gpu",
        peak_flops={
            "fp32": 67e12,
            "tf32": 494.7e12,
            "bf16": 989.4e12,
            "fp16": 989.4e12,
            "fp8": 1978.9e12,
            "int8": 1978.9e12,
        },
        mem_bytes=141 * GiB,  # NVIDIA "141GB" is binary
        mem_bw=4.8e12,
        link_bw=900 * GB / 2,
        tdp_w=700.0,
        usd_per_hour=3.5,
        aliases=("h200",),
        sources={
            "peak_flops": _NV_H200 + ": same Tensor Core peaks as H100 SXM (sparse figures halved)",
            "mem_bytes": _NV_H200 + ": 141GB HBM3e, binary as NVIDIA counts: 141 GiB = 151e9 bytes",
            "mem_bw": _NV_H200 + ": 4.8 TB/s",
            "link_bw": _NV_H200 + ": NVLink 900 GB/s (total of both directions)",
            "tdp_w": _NV_H200 + ": max TDP up to 700 W",
            "usd_per_hour": f"{_RENT} typical GPU-cloud list price for an H200, 2025",
        },
    ),
    DeviceSpec(
        name="b200",
        kind="gpu",
        peak_flops={
            "fp32": 75e12,
            "tf32": 1.1e15,
            "bf16": 2.25e15,
            "fp16": 2.25e15,
            "fp8": 4.5e15,
            "int8": 4.5e15,
        },
        mem_bytes=180 * GiB,  # NVIDIA "180GB" is binary
        mem_bw=8e12,
        link_bw=1800 * GB / 2,  # NVLink 5: 1.8 TB/s total -> 900 GB/s per direction
        tdp_w=1000.0,
        usd_per_hour=5.0,
        aliases=("b200-hgx", "hgx-b200", "blackwell"),
        sources={
            "peak_flops": _NV_B200 + ": FP32 75 TF; TF32 2.2, BF16/FP16 4.5, FP8/INT8 9 PFLOPS with sparsity",
            "mem_bytes": _NV_B200 + ": about 180GB HBM3e per GPU (1.44TB per 8-GPU board), binary as NVIDIA counts: 180 GiB = 193e9 bytes",
            "mem_bw": _NV_B200 + ": 64 TB/s per 8 GPUs = 8 TB/s each (the HGX table lists 7.7 TB/s)",
            "link_bw": _NV_B200 + ": NVLink 5, 1.8 TB/s (total of both directions)",
            "tdp_w": _NV_B200 + ": configurable up to 1,000 W",
            "usd_per_hour": f"{_RENT} typical GPU-cloud list price for a B200, 2025",
        },
    ),
    DeviceSpec(
        name="tpu-v4",
        kind="tpu",
        peak_flops={"bf16": 275e12, "int8": 275e12},
        mem_bytes=32 * GiB,
        mem_bw=1.2e12,
        link_bw=6 * 45 * GB,  # 6 ICI links (3D torus) x 45 GB/s one way each
        tdp_w=170.0,
        usd_per_hour=3.22,
        aliases=("v4", "tpuv4", "tpu-v4p"),
        sources={
            "peak_flops": f"{_GCP} TPU v4: 275 TFLOPS bf16 / int8 per chip",
            "mem_bytes": f"{_GCP} TPU v4: 32 GiB HBM2 per chip",
            "mem_bw": f"{_GCP} TPU v4: 1,200 GB/s",
            "link_bw": f"{_SCALING}: v4 ICI 4.5e10 bytes/s one-way per link, 6 links per chip",
            "tdp_w": "Jouppi et al. 2023, TPU v4 (ISCA), measured mean power about 170 W per chip (not a TDP)",
            "usd_per_hour": f"{_RENT} Google Cloud TPU v4 on-demand price per chip-hour (us-central2), 2024",
        },
        notes="tdp_w is the measured mean chip power from the TPU v4 paper; Google publishes no TDP.",
    ),
    DeviceSpec(
        name="tpu-v5e",
        kind="tpu",
        peak_flops={"bf16": 197e12, "int8": 393e12},
        mem_bytes=16 * GB,
        mem_bw=819 * GB,
        link_bw=400 * GB / 2,  # 400 GB/s bidirectional per chip -> 200 GB/s per direction
        tdp_w=None,
        usd_per_hour=1.2,
        aliases=("v5e", "tpuv5e", "v5litepod"),
        sources={
            "peak_flops": f"{_GCP} TPU v5e: 197 TFLOPS bf16, 393 TOPS int8 per chip",
            "mem_bytes": f"{_GCP} TPU v5e: 16 GB HBM2 (decimal, as the page says)",
            "mem_bw": f"{_GCP} TPU v5e: 819 GB/s",
            "link_bw": f"{_GCP} TPU v5e: ICI 200 GB/s per chip per direction, 400 GB/s counting both (Google quotes it in bits per second)",
            "usd_per_hour": f"{_RENT} Google Cloud TPU v5e on-demand price per chip-hour, 2024",
        },
        notes="Google publishes no TDP for v5e, so energy estimates need a power you supply.",
    ),
    DeviceSpec(
        name="tpu-v5p",
        kind="tpu",
        peak_flops={"bf16": 459e12, "int8": 918e12},
        mem_bytes=95 * GiB,
        mem_bw=2.765e12,
        link_bw=1200 * GB / 2,  # 1,200 GB/s bidirectional per chip -> 600 GB/s per direction
        tdp_w=None,
        usd_per_hour=4.2,
        aliases=("v5p", "tpuv5p"),
        sources={
            "peak_flops": f"{_GCP} TPU v5p: 459 TFLOPS bf16, 918 TOPS int8 per chip",
            "mem_bytes": f"{_GCP} TPU v5p: 95 GiB HBM2e",
            "mem_bw": f"{_GCP} TPU v5p: 2,765 GB/s",
            "link_bw": f"{_GCP} TPU v5p: ICI 600 GB/s per chip per direction, 1,200 GB/s counting both (Google quotes it in bits per second)",
            "usd_per_hour": f"{_RENT} Google Cloud TPU v5p on-demand price per chip-hour, 2024",
        },
        notes="Google publishes no TDP for v5p, so energy estimates need a power you supply.",
    ),
    DeviceSpec(
        name="tpu-v6e",
        kind="tpu",
        peak_flops={"bf16": 918e12, "int8": 1836e12},
        mem_bytes=32 * GB,
        mem_bw=1.638e12,
        link_bw=800 * GB / 2,  # 800 GB/s bidirectional per chip
        tdp_w=None,
        usd_per_hour=2.7,
        aliases=("v6e", "tpuv6e", "trillium"),
        sources={
            "peak_flops": f"{_GCP} TPU v6e (Trillium): 918 TFLOPS bf16, 1,836 TOPS int8 per chip",
            "mem_bytes": f"{_GCP} TPU v6e: 32 GB HBM (decimal, as the page says)",
            "mem_bw": f"{_GCP} TPU v6e: 1,640 GB/s (1.638 TB/s in {_SCALING})",
            "link_bw": f"{_GCP} TPU v6e: ICI 800 GB/s bidirectional per chip",
            "usd_per_hour": f"{_RENT} Google Cloud TPU v6e on-demand price per chip-hour, 2025",
        },
        notes="Google publishes no TDP for v6e, so energy estimates need a power you supply.",
    ),
    DeviceSpec(
        name="alveo-u280",
        kind="fpga",
        # 9,024 DSP48E2 slices, each packing two int8 MACs (4 ops) per cycle at about 680 MHz.
        peak_flops={"int8": 24.5e12},
        mem_bytes=8 * GB,
        mem_bw=460 * GB,
        link_bw=16 * GB,  # PCIe Gen4 x8 (or Gen3 x16): about 16 GB/s per direction
        tdp_w=225.0,
        usd_per_hour=None,
        aliases=("u280", "alveo", "fpga", "xilinx-u280", "amd-u280"),
        sources={
            "peak_flops.int8": "AMD/Xilinx Alveo U280 data sheet (DS963): INT8 peak 24.5 TOPS, 9,024 DSP slices",
            "mem_bytes": "AMD/Xilinx Alveo U280 data sheet (DS963): 8 GB HBM2 (plus 32 GB DDR4 not counted here)",
            "mem_bw": "AMD/Xilinx Alveo U280 data sheet (DS963): HBM2 460 GB/s",
            "link_bw": "AMD/Xilinx Alveo U280 data sheet (DS963): PCIe Gen3 x16 / Gen4 x8, about 16 GB/s per direction",
            "tdp_w": "AMD/Xilinx Alveo U280 data sheet (DS963): 225 W maximum total power",
        },
        notes="Peak is the DSP datasheet figure; a real design reaches far less (see minillm.hardware.fpga). "
        "No public hourly rental price.",
    ),
    DeviceSpec(
        name="groq-lpu",
        kind="asic",
        peak_flops={"fp16": 188e12, "int8": 750e12},
        mem_bytes=230e6,  # on-chip SRAM only: large models are split across hundreds of chips
        mem_bw=80e12,
        link_bw=None,
        tdp_w=300.0,
        usd_per_hour=None,
        aliases=("groq", "lpu", "groqchip"),
        sources={
            "peak_flops": "Groq GroqChip product brief: up to 188 TFLOPS FP16, 750 TOPS INT8",
            "mem_bytes": "Groq GroqChip product brief: 230 MB on-die SRAM",
            "mem_bw": "Groq GroqChip product brief: 80 TB/s on-die memory bandwidth",
            "tdp_w": "Groq GroqCard product brief: about 300 W typical (375 W max) per card",
        },
        notes="Memory is 230 MB of SRAM per chip, so a 70B model needs hundreds of chips. "
        "Groq sells tokens, not chip-hours: no public hourly price.",
    ),
]


def _key(name: str) -> str:
    """Normalise a device name for lookup: lower case, letters and digits only."""
    return re.sub(r"[^a-z0-9+]", "", name.lower()).replace("+", "")


_INDEX: dict[str, DeviceSpec] = {}
for _spec in _CATALOG:
    for _n in (_spec.name, *_spec.aliases):
        _INDEX[_key(_n)] = _spec


def list_devices(kind: str | None = None) -> list[str]:
    """Canonical names of the catalog's devices, optionally only one ``kind`` ("gpu", "tpu", ...)."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not one of {KINDS}")
    return [d.name for d in _CATALOG if kind is None or d.kind == kind]


def catalog(kind: str | None = None) -> list[DeviceSpec]:
    """The catalog's :class:`DeviceSpec` objects, optionally only one ``kind``."""
    return [get_device(n) for n in list_devices(kind)]


def get_device(name: str) -> DeviceSpec:
    """Look a device up by name or alias, case-insensitively ("H100", "tpu v5e", "A100-80GB-SXM").

    An unknown name raises a ValueError that lists the choices.
    """
    if isinstance(name, DeviceSpec):
        return name
    if not isinstance(name, str):
        raise ValueError(f"device name must be a string such as 'h100', got {type(name).__name__}")
    spec = _INDEX.get(_key(name))
    if spec is None:
        close = difflib.get_close_matches(_key(name), list(_INDEX), n=3)
        hint = f" Did you mean {', '.join(repr(_INDEX[c].name) for c in close)}?" if close else ""
        raise ValueError(f"unknown device {name!r}.{hint} Choose one of: {', '.join(list_devices())}")
    return spec


def as_device(device: DeviceSpec | str) -> DeviceSpec:
    """Accept a DeviceSpec or a catalog name; every cost function calls this on its input."""
    if isinstance(device, DeviceSpec):
        return device
    return get_device(device)


# --------------------------------------------------------------------------- inside the chip
#
# A peak FLOP/s figure hides *how* a chip gets there: a few fast cores with wide SIMD
# lanes, thousands of simple SIMT lanes, a systolic grid of MAC cells, or DSP slices
# wired into a pipeline. peak = units x lanes per unit x FLOPs per lane per cycle x clock,
# and the table below reproduces each catalog peak from that product (tests/hardware
# checks it to 1%). Lessons 07 and 08 use it to put numbers on "one university student
# against a hundred primary-school pupils".


@dataclass(frozen=True)
class ComputeUnits:
    """How one device reaches its peak for one dtype: units x lanes x FLOPs per lane per cycle x clock.

    Attributes:
        device: catalog name of the device.
        dtype: the dtype whose peak this reproduces.
        style: "SIMD" (one instruction drives a vector of lanes), "SIMT" (many threads in
            lock-step warps of 32), "matrix" (one instruction multiplies small tiles: Tensor
            Cores, AMX), "systolic" (a grid of MAC cells passing operands to neighbours) or
            "dataflow" (DSP slices wired into a fixed pipeline).
        unit: what is counted, e.g. "core", "SM", "MXU", "DSP slice".
        units: how many of them one device has.
        lane: what one lane is, e.g. "AVX-512 fp32 lane".
        lanes_per_unit: multiply-accumulate lanes per unit.
        clock_hz: the clock the peak assumes.
        flops_per_lane_per_cycle: 2 (one fused multiply-add is two FLOPs).
        sources: field -> where the number comes from.
    """

    device: str
    dtype: str
    style: str
    unit: str
    units: int
    lane: str
    lanes_per_unit: int
    clock_hz: float
    flops_per_lane_per_cycle: float = 2.0
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def lanes(self) -> int:
        """MAC lanes on the whole device."""
        return self.units * self.lanes_per_unit

    @property
    def peak_per_lane(self) -> float:
        """FLOP/s of one lane: FLOPs per cycle x clock."""
        return self.flops_per_lane_per_cycle * self.clock_hz

    @property
    def peak_per_unit(self) -> float:
        """FLOP/s of one unit (one core, one SM, one MXU)."""
        return self.lanes_per_unit * self.peak_per_lane

    @property
    def peak(self) -> float:
        """FLOP/s of the device: units x lanes per unit x FLOPs per lane per cycle x clock."""
        return self.units * self.peak_per_unit

    def bandwidth_per_unit(self) -> float:
        """The device's memory bandwidth shared out evenly over its units, bytes/s."""
        return get_device(self.device).mem_bw / self.units


_H100_WP = "NVIDIA H100 Tensor Core GPU Architecture whitepaper (2022), H100 SXM5"
_A100_WP = "NVIDIA A100 Tensor Core GPU Architecture whitepaper (2020), A100 SXM4"

_UNITS: list[ComputeUnits] = [
    ComputeUnits(
        "xeon-8480", "fp32", "SIMD", "core", 56, "AVX-512 fp32 lane", 2 * 16, 2.0e9,
        sources={
            "units": "Intel ark, Xeon Platinum 8480+: 56 cores, 2.0 GHz base",
            "lanes_per_unit": "2 AVX-512 FMA units per core x 16 fp32 lanes (Intel 64 and IA-32 Optimization Reference Manual)",
        },
    ),
    ComputeUnits(
        "xeon-8480", "bf16", "matrix", "core", 56, "AMX bf16 MAC", 512, 2.0e9,
        sources={
            "units": "Intel ark, Xeon Platinum 8480+: 56 cores, 2.0 GHz base",
            "lanes_per_unit": "AMX tile unit: 1024 bf16 FLOP = 512 MACs per cycle per core (Intel Architecture Day 2021)",
        },
    ),
    ComputeUnits(
        "a100-80gb-sxm", "fp32", "SIMT", "SM", 108, "FP32 CUDA core", 64, 1.41e9,
        sources={"units": f"{_A100_WP}: 108 SMs, 64 FP32 cores each, 1410 MHz boost"},
    ),
    ComputeUnits(
        "a100-80gb-sxm", "bf16", "matrix", "SM", 108, "Tensor Core MAC", 1024, 1.41e9,
        sources={"lanes_per_unit": f"{_A100_WP}: 4 Tensor Cores per SM x 256 dense FP16/BF16 FMA per clock"},
    ),
    ComputeUnits(
        "h100-sxm", "fp32", "SIMT", "SM", 132, "FP32 CUDA core", 128, 1.98e9,
        sources={"units": f"{_H100_WP}: 132 SMs, 128 FP32 cores each (16,896); 1.98 GHz boost for the FP32 figure"},
    ),
    ComputeUnits(
        "h100-sxm", "bf16", "matrix", "SM", 132, "Tensor Core MAC", 2048, 1.83e9,
        sources={
            "lanes_per_unit": f"{_H100_WP}: 4 Tensor Cores per SM, twice the A100 SM's dense FP16 rate: 2048 FMA per clock",
            "clock_hz": f"{_H100_WP}: 1.83 GHz, the clock behind the 989.4 TFLOPS dense FP16/BF16 figure",
        },
    ),
    ComputeUnits(
        "tpu-v4", "bf16", "systolic", "MXU", 8, "MXU MAC cell", 128 * 128, 1.05e9,
        sources={
            "units": "Jouppi et al. 2023, TPU v4 (ISCA): 2 TensorCores per chip x 4 MXUs of 128 x 128, 1050 MHz",
        },
    ),
    ComputeUnits(
        "tpu-v5e", "bf16", "systolic", "MXU", 4, "MXU MAC cell", 128 * 128, 197e12 / (4 * 128 * 128 * 2),
        sources={
            "units": "Google Cloud TPU documentation, TPU v5e: one TensorCore per chip with 4 MXUs",
            "lanes_per_unit": "Austin et al. 2025, How to Scale Your Model, Part 2: a v5e MXU is a 128 x 128 systolic array",
            "clock_hz": "derived: 197 TFLOPS / (4 MXUs x 16,384 MACs x 2); Google publishes no clock",
        },
    ),
    ComputeUnits(
        "alveo-u280", "int8", "dataflow", "DSP slice", 9024, "int8 MAC", 2, 24.5e12 / (9024 * 4),
        sources={
            "units": "AMD/Xilinx Alveo U280 data sheet (DS963): 9,024 DSP slices, INT8 peak 24.5 TOPS",
            "lanes_per_unit": "two int8 MACs packed in one DSP48E2 (AMD WP486)",
            "clock_hz": "derived so that the product is the datasheet's 24.5 TOPS (about 679 MHz)",
        },
    ),
]


def compute_units(device: DeviceSpec | str | None = None, dtype: str | None = None) -> list[ComputeUnits]:
    """The :class:`ComputeUnits` rows, optionally of one device and/or one dtype.

    >>> u = compute_units("h100", "fp32")[0]
    >>> u.lanes, round(u.peak / 1e12, 1)      # 16,896 CUDA cores -> 66.9 TFLOP/s
    (16896, 66.9)
    """
    name = None if device is None else as_device(device).name
    rows = [u for u in _UNITS if (name is None or u.device == name) and (dtype is None or u.dtype == dtype)]
    if not rows and name is not None:
        have = sorted({u.device for u in _UNITS})
        raise ValueError(
            f"no compute-unit breakdown for device={name!r}" + (f" and dtype={dtype!r}" if dtype else "")
            + f"; devices with one: {have}"
        )
    return rows
