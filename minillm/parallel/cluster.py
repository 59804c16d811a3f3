"""What the simulator knows about a cluster: each device's speed and memory, and its links.

:class:`ClusterSpec` is a pure description (units: FLOP/s, bytes, bytes/s, seconds;
GB = 1e9 bytes). The simulator (:mod:`minillm.parallel.sim`) charges compute by its
roofline and messages by its α-β link; the cost models
(:mod:`minillm.parallel.costs`) use the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from minillm.units import GB, GiB
from minillm.validate import is_number

__all__ = ["ClusterSpec", "DEFAULT_LATENCY", "CPU_ETHERNET"]

#: α, the per-message latency we assume for a GPU link when nothing better is known.
#: An order-of-magnitude assumption (NCCL small-message all-reduce latencies are
#: tens of µs over 8 GPUs, a few µs per hop), not a datasheet figure.
DEFAULT_LATENCY = 5e-6


@dataclass(frozen=True)
class ClusterSpec:
    """What the simulator needs to know about each device and the links between them.

    The defaults are one A100 80GB SXM per rank (NVIDIA A100 datasheet: 312 TFLOP/s
    BF16 dense, 2.039 TB/s HBM2e, 80 GB; NVLink 3 at 600 GB/s total, so 300 GB/s per
    direction) and an assumed link latency of :data:`DEFAULT_LATENCY`.
    Units: FLOP/s, bytes, bytes/s, seconds. Bandwidths are decimal (GB = 1e9 bytes);
    the memory size is binary, as NVIDIA's "80 GB" is: 80 GiB = 85.9e9 bytes.
    """

    name: str = "a100-80gb-sxm (bf16)"
    peak_flops: float = 312e12
    mem_bw: float = 2.039e12
    mem_bytes: float = 80 * GiB
    link_bw: float = 300 * GB
    latency: float = DEFAULT_LATENCY

    def __post_init__(self) -> None:
        for f in ("peak_flops", "mem_bw", "mem_bytes", "link_bw"):
            v = getattr(self, f)
            if not is_number(v) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"ClusterSpec.{f}={v!r} must be a positive finite number")
        if not is_number(self.latency) or not math.isfinite(self.latency) or self.latency < 0:
            raise ValueError(f"ClusterSpec.latency={self.latency!r} must be >= 0 seconds")

    def compute_time(self, flops: float = 0.0, nbytes: float = 0.0) -> float:
        """Roofline time of a kernel: ``max(flops / peak_flops, nbytes / mem_bw)`` seconds."""
        return max(flops / self.peak_flops, nbytes / self.mem_bw)

    @classmethod
    def from_device(cls, device: Any = "a100", dtype: str | None = None, latency: float = DEFAULT_LATENCY) -> "ClusterSpec":
        """Build a spec from a :class:`minillm.hardware.devices.DeviceSpec` (or its catalog name).

        ``dtype`` picks the peak (default: the device's own default, bf16 on GPUs).
        """
        if isinstance(device, str):
            from minillm.hardware.devices import get_device

            device = get_device(device)
        dtype = dtype or device.default_dtype()
        if device.link_bw is None:
            raise ValueError(f"device {device.name!r} has no published link bandwidth; build ClusterSpec(link_bw=...) by hand")
        return cls(
            name=f"{device.name} ({dtype})",
            peak_flops=device.peak(dtype),
            mem_bw=device.mem_bw,
            mem_bytes=device.mem_bytes,
            link_bw=device.link_bw,
            latency=latency,
        )


#: A small teaching cluster where compute and communication are both visible for a
#: tiny model: CPU-class devices on 10 Gb/s Ethernet. Illustrative round numbers, not
#: a datasheet: 100 GFLOP/s (a few AVX2 cores in fp32), 50 GB/s memory, 16 GB;
#: 10 Gb/s = 1.25 GB/s per direction (IEEE 802.3ae); 50 µs per message, the order
#: of a TCP round trip through a kernel network stack.
CPU_ETHERNET = ClusterSpec(
    name="cpu-ethernet (illustrative)", peak_flops=100e9, mem_bw=50e9, mem_bytes=16 * GB, link_bw=1.25e9, latency=50e-6
)
