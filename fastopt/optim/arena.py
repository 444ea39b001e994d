"""Flat parameter arenas: many arrays in one contiguous buffer, handed out as views.

A model of thousands of tensors steps with one kernel launch per parameter group when its
parameters, gradients and optimizer state each live in one buffer of the same layout. Tensors are
packed back to back in order, without padding, so the buffer is exactly the model's parameter
vector (``arena.data``), ready to be read, set, copied or saved as one.
"""

import numpy as np

from fastopt._core import memory as _memory
from fastopt._core.dispatch import is_device_array

class FlatParams:
    """A contiguous buffer holding arrays of the given shapes, with views of their original shapes.

    ``FlatParams(arrays)`` copies host or device arrays into a new arena (same side as the
    arrays); ``FlatParams.empty(shapes, dtype, on_device)`` allocates one filled with zeros. The
    views (``arena.views``, ``arena[i]``, iteration) share memory with ``arena.data``: writing one
    writes the other.
    """

    def __init__(self, arrays, dtype=None):
        arrays = list(arrays)
        if not arrays:
            raise ValueError("arrays: got an empty list")
        on_device = bool(is_device_array(arrays[0]))
        if dtype is None:
            dtype = arrays[0].dtype
        self._layout([tuple(a.shape) for a in arrays], dtype, on_device)
        for i, a in enumerate(arrays):
            if bool(is_device_array(a)) != on_device:
                raise ValueError(f"arrays[{i}]: all arrays of an arena must live on one side")
            if self.sizes[i]:
                if on_device:
                    self.views[i].copy_to_device(a)
                else:
                    self.views[i][...] = a

    @classmethod
    def empty(cls, shapes, dtype=np.float32, on_device=False):
        """A zero-filled arena of the given shapes."""
        arena = cls.__new__(cls)
        arena._layout([tuple(s) for s in shapes], dtype, on_device)
        return arena

    def _layout(self, shapes, dtype, on_device):
        self.dtype = np.dtype(dtype)
        self.on_device = on_device
        self.shapes = shapes
        self.sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
        self.offsets = [int(o) for o in np.cumsum([0] + self.sizes[:-1])]
        self.data = _memory.full(on_device, sum(self.sizes), self.dtype, 0.0)
        self.views = [self.data[o:o + n].reshape(s)
                      for o, n, s in zip(self.offsets, self.sizes, shapes)]
        #: The arena this one's tensors belong to, and the index of its first tensor there
        #: (``(self, 0)`` for an arena that is no segment).
        self.origin = (self, 0)

    def segment(self, start, stop):
        """Tensors ``start:stop`` as an arena sharing this one's buffer: the way to give parameter
        groups (e.g. weights and biases) their own hyperparameters within one arena."""
        if not 0 <= start < stop <= len(self):
            raise ValueError(f"segment: expected 0 <= start < stop <= {len(self)}, "
                             f"got {start}:{stop}")
        part = FlatParams.__new__(FlatParams)
        part.dtype, part.on_device = self.dtype, self.on_device
        part.shapes, part.sizes = self.shapes[start:stop], self.sizes[start:stop]
        first = self.offsets[start]
        part.offsets = [o - first for o in self.offsets[start:stop]]
        part.data = self.data[first:first + sum(part.sizes)]
        part.views = self.views[start:stop]
        root, first_in_root = self.origin
        part.origin = (root, first_in_root + start)
        return part

    def zeros_like(self):
        """A zero-filled arena of the same layout, dtype and side (for gradients and state)."""
        return FlatParams.empty(self.shapes, self.dtype, self.on_device)

    @property
    def size(self):
        """Parameters in the arena: the length of ``data``."""
        return self.data.size

    def __len__(self):
        return len(self.views)

    def __getitem__(self, i):
        return self.views[i]

    def __iter__(self):
        return iter(self.views)

    def __repr__(self):
        side = "device" if self.on_device else "host"
        return (f"FlatParams({len(self)} tensors, {self.size:,} parameters, "
                f"{self.dtype}, {side})")
