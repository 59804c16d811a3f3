"""The course's bilingual glossary (English / 中文): each term, a one-line definition, its lesson.

Many learners meet these ideas in Chinese first; ``minillm glossary 剪枝`` finds pruning
and ``minillm glossary pruning`` finds 模型剪枝. :func:`lookup` searches both languages.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Term", "TERMS", "lookup", "format_terms"]


@dataclass(frozen=True)
class Term:
    english: str
    chinese: str
    definition: str
    lesson: int  # the lesson that teaches it


TERMS: tuple[Term, ...] = (
    # Part I: model optimization
    Term("model optimization", "模型优化", "making a trained model smaller, faster or cheaper to run while keeping its quality", 1),
    Term("transformer", "Transformer（变换器）", "the attention-based network behind every modern LLM", 1),
    Term("token, tokenizer", "词元，分词器", "the units a model reads and writes, and the program that cuts text into them", 1),
    Term("embedding", "嵌入", "a learned vector for each token (and position)", 1),
    Term("attention, causal mask", "注意力，因果掩码", "each position mixes earlier positions, weighted by query-key similarity; the mask hides the future", 1),
    Term("layer normalization", "层归一化", "rescales each position's vector to zero mean and unit variance, then a learned scale and shift", 1),
    Term("cross-entropy", "交叉熵", "the training loss: minus the log-probability the model gave the right next token", 1),
    Term("KV cache", "键值缓存", "the keys and values of earlier tokens, kept so each new token costs one step", 1),
    Term("transfer learning", "迁移学习", "reusing a model trained on one task as the start for another", 2),
    Term("fine-tuning", "微调", "continuing to train a pre-trained model on a new task's data", 2),
    Term("LoRA (low-rank adaptation)", "低秩适配", "training a small low-rank update BA of frozen weights instead of the weights themselves", 2),
    Term("linear probe", "线性探测", "training only a new output layer on frozen features: the cheapest transfer baseline", 2),
    Term("adapter, QLoRA", "适配器，QLoRA", "a small trainable module added to a frozen model; QLoRA trains LoRA adapters on a 4-bit base", 2),
    Term("catastrophic forgetting", "灾难性遗忘", "losing the original task's skill while learning a new one", 2),
    Term("pruning", "模型剪枝", "removing weights, neurons, heads or layers that contribute little", 3),
    Term("sparsity", "稀疏度", "the fraction of weights that are zero", 3),
    Term("structured pruning", "结构化剪枝", "removing whole rows, neurons, heads or layers, leaving a smaller dense model", 3),
    Term("unstructured pruning", "非结构化剪枝", "zeroing individual weights anywhere; saves time only with sparse kernels", 3),
    Term("sparse format (CSR)", "稀疏格式（CSR）", "storing only the nonzero values with their column indices and row offsets", 3),
    Term("2:4 sparsity", "2:4 稀疏", "two of every four consecutive weights kept: the pattern sparse tensor cores accelerate", 3),
    Term("quantization", "模型量化", "storing and computing with fewer bits per number, e.g. int8 instead of float32", 4),
    Term("scale, zero point", "缩放因子，零点", "the numbers that map integers back to real values: x ≈ scale · (q − zero point)", 4),
    Term("per-tensor / per-channel / per-group", "逐张量 / 逐通道 / 逐组", "one scale for a whole tensor, for each row, or for each group of g weights", 4),
    Term("calibration", "校准", "running sample data through a model to choose quantization ranges", 4),
    Term("outlier", "离群值", "a rare activation far larger than the rest, which ruins a shared scale", 4),
    Term("quantization-aware training (QAT)", "量化感知训练", "training with simulated rounding so the model learns to tolerate it", 4),
    Term("weight prepacking, fused epilogue", "权重预打包，融合后处理（epilogue）", "reordering a weight once into the layout a GEMM kernel reads, and applying scales and bias inside the kernel instead of in extra passes", 4),
    Term("knowledge distillation", "知识蒸馏", "training a small student to match a large teacher's output distribution", 5),
    Term("teacher model, student model", "教师模型，学生模型", "the large model that teaches and the small one that learns", 5),
    Term("temperature, soft targets", "温度，软目标", "dividing logits by T > 1 flattens the teacher's distribution and reveals its dark knowledge", 5),
    Term("dark knowledge", "暗知识", "Hinton's name (a 2014 talk) for what the teacher's small probabilities on wrong answers reveal", 5),
    Term("KL divergence (forward / reverse)", "KL 散度（前向 / 反向）", "KL(p‖q) makes the student cover every mode of the teacher; KL(q‖p) lets it pick one", 5),
    Term("feature distillation, sequence-level distillation", "特征蒸馏，序列级蒸馏", "matching the teacher's hidden states; training on the teacher's generated text", 5),
    Term("compression pipeline", "压缩流水线", "chaining pruning, distillation and quantization to meet a size and latency budget", 6),
    Term("Pareto front", "帕累托前沿", "the configurations no other beats on both size and quality", 6),
    # Part II: hardware acceleration
    Term("hardware acceleration", "硬件加速", "running a workload on chips built for it: GPUs, TPUs, FPGAs, ASICs", 8),
    Term("CPU", "中央处理器", "a general-purpose processor: few cores, wide SIMD units, large caches", 8),
    Term("GPU", "图形处理器", "thousands of lanes running in lockstep (SIMT), with tensor cores and high-bandwidth memory", 8),
    Term("FPGA", "现场可编程门阵列", "a chip whose logic is configured after manufacture: a custom pipeline without a custom chip", 8),
    Term("ASIC", "专用集成电路", "a chip designed for one job, such as a TPU's matrix units", 8),
    Term("TPU, NPU", "张量处理器，神经网络处理器", "ASICs built around large matrix-multiply units for neural networks", 8),
    Term("systolic array", "脉动阵列", "a grid of multiply-accumulate cells passing operands to their neighbours every cycle", 8),
    Term("compute (FLOP/s)", "算力", "floating-point operations per second a device can perform", 7),
    Term("GPU memory (HBM)", "显存", "the accelerator's own memory, which holds weights, activations and the KV cache", 9),
    Term("memory bandwidth", "内存带宽", "bytes per second a processor can read from its memory", 7),
    Term("roofline model, arithmetic intensity", "屋顶线模型，算术强度", "attainable FLOP/s = min(peak, intensity × bandwidth); intensity = FLOPs per byte moved", 7),
    Term("compute-bound / memory-bound", "计算受限 / 访存受限", "limited by arithmetic throughput, or by memory bandwidth", 7),
    Term("throughput, latency", "吞吐量，延迟", "work done per second, and the time one request takes", 9),
    Term("MFU (model FLOPs utilization)", "模型算力利用率", "the model's useful FLOP/s as a fraction of the hardware's peak", 9),
    Term("prefill / decode", "预填充 / 解码", "processing the prompt in one pass (compute-bound), then generating token by token (memory-bound)", 9),
    # Part III: distributed parallel computing
    Term("distributed parallel computing", "分布式并行计算", "splitting one training or inference job across many devices", 10),
    Term("collective communication", "集合通信", "operations in which every device of a group takes part: all-reduce, all-gather, ...", 10),
    Term("all-reduce, all-gather, reduce-scatter, broadcast", "全规约，全收集，规约散射，广播", "sum and share, share, sum and split, copy from one", 10),
    Term("data parallelism", "数据并行", "every device holds the whole model and trains on its own slice of the batch", 11),
    Term("gradient accumulation", "梯度累积", "adding up the gradients of several micro-batches before one optimizer step", 11),
    Term("ZeRO (zero redundancy optimizer)", "零冗余优化器", "sharding optimizer states, gradients and parameters across data-parallel ranks", 11),
    Term("tensor parallelism (model parallelism)", "张量并行（模型并行）", "splitting each weight matrix across devices, which combine partial results", 12),
    Term("column-parallel / row-parallel linear", "列并行 / 行并行线性层", "a weight split by output columns (each rank computes its slice of the output) or by input rows (the ranks' partial sums are all-reduced)", 12),
    Term("sequence parallelism", "序列并行", "splitting LayerNorm and dropout activations along the sequence between tensor-parallel ranks", 12),
    Term("pipeline parallelism", "流水线并行", "splitting the layers into stages on different devices, fed with micro-batches", 13),
    Term("micro-batch, pipeline bubble", "微批次，流水线气泡", "a slice of the batch; the idle time at a pipeline's start and end", 13),
    Term("stage, interleaved schedule", "阶段，交错调度", "a device's run of consecutive layers; giving each device several smaller stages, which divides the bubble's time by the number of stages per device", 13),
    Term("3D parallelism", "三维并行", "data × tensor × pipeline parallelism combined on one cluster", 14),
    Term("activation recomputation", "激活重计算", "recomputing activations in the backward pass instead of storing them", 14),
    Term("mixed precision", "混合精度", "computing in 16-bit while keeping a 32-bit master copy of the weights", 11),
    # The capstone
    Term("time per output token (TPOT)", "每个输出词元的时间", "the time between two generated tokens of one request; what a user feels as speed", 15),
    Term("replica", "副本", "one whole copy of a model serving requests; a fleet adds replicas, never fractions of one", 15),
    Term("cost per million tokens", "每百万词元成本", "what serving costs: the fleet's dollars per hour over the tokens it generates per hour", 15),
    Term("compute-optimal training (Chinchilla)", "计算最优训练", "for a fixed FLOP budget, about 20 training tokens per parameter minimises the loss", 15),
)


def lookup(query: str | None = None) -> list[Term]:
    """Terms whose English or Chinese (or definition) contains ``query``, case-insensitive; all if None."""
    if query is None or not query.strip():
        return list(TERMS)
    q = query.strip().lower()
    names = [t for t in TERMS if q in t.english.lower() or q in t.chinese]
    return names or [t for t in TERMS if q in t.definition.lower()]


def format_terms(terms: list[Term]) -> str:
    """One block per term: "English / 中文 (lesson NN)" and its definition."""
    return "\n".join(f"{t.english} / {t.chinese}  (lesson {t.lesson:02d})\n    {t.definition}" for t in terms)
