"""The lesson-04 façade: every public quantization name in one import.

    from minillm.compress.quantize import quantize, Int8Linear, quantize_model, eval_loss

Nothing inside the ``minillm`` package imports this module; the code lives in

- :mod:`minillm.compress.quant_core`   number formats, scales, zero points, rounding, quantize/dequantize
- :mod:`minillm.compress.int8_gemm`    exact int8 GEMM with int32 accumulation, and its kernels
- :mod:`minillm.compress.int8_linear`  Int8Linear (W8A8), LLMInt8Linear and their shared base
- :mod:`minillm.compress.int4`         int4 packing and weight-only group-wise linear layers
- :mod:`minillm.compress.smoothquant`  SmoothQuant scales, LayerNorm folding, outlier injection
- :mod:`minillm.compress.qat`          fake quantization (straight-through estimator) and QAT
- :mod:`minillm.compress.model_quant`  quantize_model, size_report, quality_table
- :mod:`minillm.compress.quant_widget` the lesson's widget: bits, granularity, scheme against error and loss

and ``eval_loss`` is :func:`minillm.evaluate.evaluate_loss` under its lesson-04 name.
Code inside the package imports from those modules, so this file can import them
all without creating an import cycle.
"""

from minillm.compress.int4 import WeightOnlyLinear, pack_int4, unpack_int4
from minillm.compress.int8_gemm import cpu_int8_features, fp32_exact_max_k, int8_kernel, int8_matmul
from minillm.compress.int8_linear import Int8Linear, Int8WeightLinear, LLMInt8Linear, llm_int8_matmul, vectorwise_int8_matmul
from minillm.compress.model_quant import linear_sites, quality_table, quantize_model, size_report
from minillm.compress.qat import FakeQuantLinear, fake_quant_weight, fake_quantize, qat_convert, qat_prepare
from minillm.compress.quant_core import (
    EPS,
    GRANULARITIES,
    SCHEMES,
    QTensor,
    check_bits,
    check_float_tensor,
    check_weight,
    dequantize,
    quant_error,
    quantize,
    quantize_per_token,
    quantize_with,
    qrange,
    round_clamp,
)
from minillm.compress.quant_widget import fake_quant_weights, plot_quant_view, quant_view, quant_widget
from minillm.compress.smoothquant import collect_act_absmax, inject_outliers, smooth_model, smoothquant_scales
from minillm.evaluate import evaluate_loss as eval_loss

__all__ = [
    "qrange",
    "quantize_with",
    "QTensor",
    "quantize",
    "dequantize",
    "quant_error",
    "int8_matmul",
    "int8_kernel",
    "cpu_int8_features",
    "fp32_exact_max_k",
    "quantize_per_token",
    "vectorwise_int8_matmul",
    "llm_int8_matmul",
    "Int8WeightLinear",
    "Int8Linear",
    "LLMInt8Linear",
    "pack_int4",
    "unpack_int4",
    "WeightOnlyLinear",
    "smoothquant_scales",
    "collect_act_absmax",
    "smooth_model",
    "inject_outliers",
    "fake_quantize",
    "fake_quant_weight",
    "FakeQuantLinear",
    "qat_prepare",
    "qat_convert",
    "quantize_model",
    "size_report",
    "eval_loss",
    "quality_table",
    "linear_sites",
    "fake_quant_weights",
    "quant_view",
    "plot_quant_view",
    "quant_widget",
    "SCHEMES",
    "GRANULARITIES",
    "EPS",
    "check_bits",
    "check_float_tensor",
    "check_weight",
    "round_clamp",
]
