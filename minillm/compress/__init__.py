"""Model compression: the techniques of lessons 02 to 06.

Each technique lives in its own submodule; import the one you need, e.g.
``from minillm.compress.quantize import quantize, Int8Linear``.

- :mod:`minillm.compress.quantize`    number formats: int8/int4, scales, zero points, fake-quant (lesson 04)
- :mod:`minillm.compress.int8_gemm`   exact int8 GEMM with int32 accumulation, and its kernels
- :mod:`minillm.compress.int8_ops`    Int8Linear (W8A8), per-token activations, LLM.int8()
- :mod:`minillm.compress.int4`        int4 packing and weight-only group-wise linear layers
- :mod:`minillm.compress.smoothquant` SmoothQuant scales, LayerNorm folding, outlier injection for teaching
- :mod:`minillm.compress.qat`         fake quantization (straight-through estimator) and QAT
- :mod:`minillm.compress.qmodel`      quantize_model, size_report, eval_loss, quality_table
- :mod:`minillm.compress.explore`     the lesson-04 widget: bits, granularity, scheme against error and loss
- :mod:`minillm.compress.tour`        the quantization step of ``minillm tour``

Every public name of the quantization submodules is importable from
:mod:`minillm.compress.quantize`. This file deliberately imports nothing, so
``import minillm.compress.quantize`` always gives the module (a function of the
same name here would shadow it).
"""
