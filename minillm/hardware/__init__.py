"""Hardware acceleration and cost models (lessons 07-09).

- :mod:`~minillm.hardware.devices`   the device catalog: :class:`DeviceSpec`, :func:`get_device`, :func:`list_devices`
- :mod:`~minillm.hardware.measure`   microbenchmarks that put *this machine* in the catalog
- :mod:`~minillm.hardware.roofline`  arithmetic intensity, ridge points, attainable FLOP/s, op times
- :mod:`~minillm.hardware.costs`     parameters, FLOPs, training time, MFU, KV cache, serving, memory, energy, dollars
- :mod:`~minillm.hardware.systolic`  a systolic array stepped cycle by cycle, and its closed-form cycle count
- :mod:`~minillm.hardware.fpga`      an FPGA as a pipelined dataflow of DSP lanes
- :mod:`~minillm.hardware.plots`     figures (each returns a matplotlib Figure)
- :mod:`~minillm.hardware.tour`      the hardware step of ``minillm tour``

Units are SI (FLOP/s, bytes, bytes/s, watts, seconds); GB = 1e9 bytes. Peaks are dense,
never 2:4-sparse.
"""

from .devices import DTYPE_BYTES, DeviceSpec, as_device, catalog, get_device, list_devices

__all__ = ["DeviceSpec", "get_device", "list_devices", "catalog", "as_device", "DTYPE_BYTES"]
