"""minillm: a small, from-scratch package for a course on making LLMs cheap, fast and big.

The package is flat and readable, one concept per file:

- :mod:`minillm.model`      the GPT, built from our own Linear, LayerNorm and attention
- :mod:`minillm.kernels`    layer norm, GELU, attention, cross-entropy with hand-derived backward passes
- :mod:`minillm.tokenizer`  byte-level and BPE tokenizers
- :mod:`minillm.data`       the embedded story corpus and the fact-recall task
- :mod:`minillm.evaluate`   validation loss and fact-recall accuracy
- :mod:`minillm.train`      AdamW with parameter groups, the learning-rate schedule, the training loop
- :mod:`minillm.presets`    the teacher, student and tiny shapes and recipes
- :mod:`minillm.checkpoint` the checkpoint file format
- :mod:`minillm.zoo`        trained checkpoints that load in seconds
- :mod:`minillm.explain`, :mod:`minillm.diagrams`  looking inside the GPT (lesson 01)
- :mod:`minillm.timing`, :mod:`minillm.threads`, :mod:`minillm.validate`, :mod:`minillm.units`
                            timing, thread count, argument checks, units and formatting
- :mod:`minillm.glossary`   the course's terms in English and Chinese
- :mod:`minillm.compress`, :mod:`minillm.hardware`, :mod:`minillm.parallel`, :mod:`minillm.course`
                            the three parts of the course, and the course engine
"""

__version__ = "0.1.0"

from minillm.moved import install_module_redirects as _install_module_redirects

_install_module_redirects()  # old module paths fail with a message naming their new home
