"""minillm: a small, from-scratch package for a course on making LLMs cheap, fast and big.

The package is flat and readable, one concept per file:

- :mod:`minillm.model`      the GPT, built from our own Linear, LayerNorm and attention
- :mod:`minillm.tokenizer`  byte-level and BPE tokenizers
- :mod:`minillm.data`       the embedded story corpus and the fact-recall task
- :mod:`minillm.train`      AdamW, the learning-rate schedule, the training loop
- :mod:`minillm.zoo`        trained checkpoints that load in seconds
"""

__version__ = "0.1.0"

from minillm.moved import install_module_redirects as _install_module_redirects

_install_module_redirects()  # old module paths fail with a message naming their new home
