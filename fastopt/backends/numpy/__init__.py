"""The ``numpy`` backend: the reference formulas run in place, one kernel family per module."""
