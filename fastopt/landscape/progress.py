"""Progress bars for long evaluations: tqdm when it is installed and wanted, else nothing."""

import sys

#: Evaluations of fewer points than this show no bar (they end before one would help).
MIN_POINTS = 200


class _Bar:
    def __init__(self, bar):
        self.bar = bar

    def __call__(self, count):
        if self.bar is not None:
            self.bar.update(count)

    def close(self):
        if self.bar is not None:
            self.bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def bar(total, progress, description):
    """An update callable ``bar(count)`` (a context manager closing the bar). ``progress``:
    ``True`` shows a tqdm bar, ``False`` none, ``None`` one only on a terminal and for at least
    :data:`MIN_POINTS` points."""
    if progress is None:
        progress = sys.stderr.isatty() and total >= MIN_POINTS
    if not progress:
        return _Bar(None)
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _Bar(None)
    return _Bar(tqdm(total=total, desc=description, unit="point", leave=False,
                     dynamic_ncols=True))
