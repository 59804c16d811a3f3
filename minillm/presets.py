"""The course's model shapes and training recipes, written down once.

The teacher (6 layers, 128 wide) is the model every lesson compresses, measures and
parallelises; the student (3 layers, 64 wide) is the baseline distillation must beat;
"tiny" trains in seconds for ``minillm train``. The zoo, the CLI, the tours, the checks
and the benchmarks all read their shapes from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from minillm.model import GPTConfig

__all__ = ["Preset", "PRESETS", "TEACHER", "STUDENT", "TINY"]


@dataclass(frozen=True)
class Preset:
    """A model shape and the schedule that trains it (AdamW, cosine with warm-up)."""

    config: GPTConfig
    steps: int
    batch_size: int
    lr: float


PRESETS: dict[str, Preset] = {
    "tiny": Preset(GPTConfig(vocab_size=512, block_size=128, n_layer=2, n_head=2, n_embd=64), 300, 16, 3e-3),
    "student": Preset(GPTConfig(vocab_size=512, block_size=256, n_layer=3, n_head=2, n_embd=64), 1500, 16, 3e-3),
    "teacher": Preset(GPTConfig(vocab_size=512, block_size=256, n_layer=6, n_head=4, n_embd=128), 2000, 8, 2e-3),
}

TEACHER: GPTConfig = PRESETS["teacher"].config
STUDENT: GPTConfig = PRESETS["student"].config
TINY: GPTConfig = PRESETS["tiny"].config
