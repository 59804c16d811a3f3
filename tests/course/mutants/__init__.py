"""Plausible-but-wrong implementations, one module per lesson, for the mutation tests of the checks.

A module ``lessonNN.py`` defines ``MUTANTS: dict[str, list[callable]]`` mapping a
task id to wrong implementations of the learner's function. ``test_mutants.py``
discovers every such module and asserts that each mutant scores 0. Give each
mutant a docstring naming the mistake; the test id uses the function name.
"""
