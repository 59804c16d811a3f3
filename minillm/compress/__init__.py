"""Model compression: the techniques of lessons 02 to 06.

Each technique lives in its own submodule; import the one you need. Lesson 04's
quantization modules, in the order they build on each other:

- :mod:`minillm.compress.quant_core`   number formats: int8/int4, scales, zero points, rounding (imports no sibling)
- :mod:`minillm.compress.int8_gemm`    exact int8 GEMM with int32 accumulation, and its kernels
- :mod:`minillm.compress.int8_linear`  Int8Linear (W8A8), LLMInt8Linear (LLM.int8()) and their shared base
- :mod:`minillm.compress.int4`         int4 packing and weight-only group-wise linear layers
- :mod:`minillm.compress.smoothquant`  SmoothQuant scales, LayerNorm folding, outlier injection for teaching
- :mod:`minillm.compress.model_quant`  whole models: quantize_model, size_report, quality_table
- :mod:`minillm.compress.qat`          fake quantization (straight-through estimator) and QAT
- :mod:`minillm.compress.quant_widget` the lesson-04 widget: bits, granularity, scheme against error and loss
- :mod:`minillm.compress.quant_plots`  the lesson-04 figures: row and channel ranges, SQNR against bits, quality
- :mod:`minillm.compress.tour`         the quantization step of ``minillm tour``
- :mod:`minillm.compress.quantize`     a façade for learners: every public name above in one import,
  e.g. ``from minillm.compress.quantize import quantize, Int8Linear``; nothing in the package imports it

This file deliberately imports nothing, so ``import minillm.compress.quantize``
always gives the module (a function of the same name here would shadow it).
"""
