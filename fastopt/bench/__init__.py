"""``fastopt bench``: timings of the steps against same-traffic kernels, the machine's bandwidth and
the peers that are installed. Not imported by the library.

- :mod:`~fastopt.bench.cases`: the configurations, the bytes a step moves, :class:`Result`, and
  closures running a fastopt step (functional, bound, through a class);
- :mod:`~fastopt.bench.timing`: median and in-turn timing, paired ratios, and the yardsticks
  (same-traffic and STREAM kernels of the ``cpu`` and ``c`` backends);
- :mod:`~fastopt.bench.peers`: numpy as a user writes it and ``torch.optim`` in its three modes;
- one module per section of a run: :mod:`~fastopt.bench.table` (every configuration × backend ×
  size × dtype with its yardsticks and peers), :mod:`~fastopt.bench.overhead` (a 10^3 step and
  where its microseconds go), :mod:`~fastopt.bench.many` (many small tensors, list and arena),
  :mod:`~fastopt.bench.check` (the safe default: the non-finite check and clipping against the
  plain step, a read kernel and torch fused, quiet and with one core busy),
  :mod:`~fastopt.bench.scaling` (threads), :mod:`~fastopt.bench.startup` (import + first
  step), and on request :mod:`~fastopt.bench.dynamics` (the training-dynamics experiments)
  and :mod:`~fastopt.bench.landscape` (batched loss-landscape evaluation against per-point
  loops) and :mod:`~fastopt.bench.distributed` (the sharded step at 1, 2 and 4 MPI ranks);
- :mod:`~fastopt.bench.machine`: the machine's facts;
- :mod:`~fastopt.bench.report`: :func:`run_all`, the :class:`Report` and its text and JSON forms;
- :mod:`~fastopt.bench.targets`: the planning targets and their reading (``--targets``).
"""

from fastopt.bench.cases import CONFIGS, FULL_SIZES, Result, Unsupported
from fastopt.bench.peers import PEERS
from fastopt.bench.report import (DEFAULT_SECTIONS, MANY, SECTIONS, Report, format_main,
                                  format_report, format_table, run_all)

__all__ = ["CONFIGS", "DEFAULT_SECTIONS", "FULL_SIZES", "MANY", "PEERS", "SECTIONS", "Report",
           "Result", "Unsupported",
           "format_main", "format_report", "format_table", "run_all"]
