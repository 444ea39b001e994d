"""Optimizer steps: the algorithm table, the numpy reference, the functional layer and bound steps,
the optimizer classes, mixed precision, capturable CUDA steps, arenas, schedules and checkpoints.

The pipeline every way of stepping goes through is :mod:`fastopt.optim._step`.
"""
