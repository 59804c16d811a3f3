"""Hardware acceleration and cost models (lessons 07-09).

- :mod:`~minillm.hardware.devices`   the device catalog: :class:`DeviceSpec`, :func:`get_device`, :func:`list_devices`
- :mod:`~minillm.hardware.measure`   microbenchmarks that put *this machine* in the catalog
- :mod:`~minillm.hardware.roofline`  arithmetic intensity, ridge points, attainable FLOP/s, op times
- :mod:`~minillm.hardware.shapes`    model shapes and presets, parameter counts, FLOPs per token
- :mod:`~minillm.hardware.training`  training FLOPs, time, MFU and the whole bill of a run
- :mod:`~minillm.hardware.inference` KV cache, prefill and decode step times, the decode knee
- :mod:`~minillm.hardware.memory`    memory plans: weights, optimizer, KV cache, activations
- :mod:`~minillm.hardware.economics` energy, dollars, cost per million tokens
- :mod:`~minillm.hardware.serving`   an inference step on the roofline with its memory and cost; batch sweeps
- :mod:`~minillm.hardware.block_ops` the operations of one transformer block, for a roofline
- :mod:`~minillm.hardware.costs`     a façade re-exporting the seven modules above, for older code
- :mod:`~minillm.hardware.systolic`  a systolic array stepped cycle by cycle, and its closed-form cycle count
- :mod:`~minillm.hardware.fpga`      an FPGA as a pipelined dataflow of DSP lanes
- :mod:`~minillm.hardware.plots`     figures (each returns a matplotlib Figure)
- :mod:`~minillm.hardware.tour`      the hardware step of ``minillm tour``

Units are SI (FLOP/s, bytes, bytes/s, watts, seconds); GB = 1e9 bytes
(:mod:`minillm.units`); GPU memory sizes are binary GiB as vendors quote them. Peaks are dense,
never 2:4-sparse.
"""

from .devices import DTYPE_BYTES, DeviceSpec, as_device, catalog, get_device, list_devices

__all__ = ["DeviceSpec", "get_device", "list_devices", "catalog", "as_device", "DTYPE_BYTES"]
