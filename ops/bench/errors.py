"""The benchmarks' exception tree.

BenchError   root: a benchmark could not run (mesh not up, nobody signed in, load failed)

``tests/test_error_trees.py`` keeps this drawing complete and its branches true.
"""


class BenchError(Exception):
    """A benchmark could not run; the message says what to fix."""
