"""Input checks, done once before any kernel runs: a call that fails here has written nothing.

Errors name the argument and say what was expected: ``TypeError`` for a wrong kind of object or
dtype, ``ValueError`` for a wrong shape, layout, memory overlap or hyperparameter value.
"""

import numbers
import weakref
from operator import attrgetter

import numpy as np


FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_host_array(name, x):
    """``x`` as a numpy array without copying (numpy arrays, and DLPack producers such as torch);
    an ``ml_dtypes.bfloat16`` array as its ``uint16`` bits (:func:`bfloat16_bits`)."""
    if type(x) is np.ndarray:
        return x if x.dtype.kind != "V" else bfloat16_bits(x)
    if isinstance(x, np.ndarray):
        return bfloat16_bits(x.view(np.ndarray))
    if hasattr(x, "__dlpack__"):
        try:
            return np.from_dlpack(x)
        except Exception as exc:
            raise TypeError(f"{name}: cannot view {type(x).__name__} as a host array without "
                            f"copying ({exc})") from None
    raise TypeError(f"{name}: expected a numpy array (or a CUDA/DLPack array), "
                    f"got {type(x).__name__}")


def bfloat16_bits(a):
    """A numpy array of ``ml_dtypes.bfloat16`` (the bfloat16 of JAX and TensorFlow) as a
    ``uint16`` view of its bits, the form every kernel takes; any other array as it is. Known by
    its dtype's name, so that ml_dtypes need not be imported."""
    if a.dtype.kind == "V" and a.dtype.name == "bfloat16" and a.dtype.itemsize == 2:
        return a.view(np.uint16)
    return a


def as_device_array(name, x):
    """``x`` as a numba device array without copying; also returns whether it is read-only."""
    if getattr(x, "__cuda_ndarray__", False):
        return x, False
    interface = x.__cuda_array_interface__
    from numba import cuda

    # sync=False: a step never waits on the host; kernels run on the default stream.
    return cuda.as_cuda_array(x, sync=False), bool(interface["data"][1])


def _address_range(a):
    inner = getattr(a, "_ary", None)  # the CUDA simulator's device arrays wrap a numpy array
    if inner is not None:
        a = inner
    interface = getattr(a, "__array_interface__", None) or a.__cuda_array_interface__
    start = interface["data"][0]
    return start, start + a.nbytes


def check_arrays(named, written, on_device):
    """Checks and converts the arrays of one step; returns them in the order of ``named``.

    ``named`` maps argument names to arrays, the first being ``param``; ``None`` entries (state
    the mode does not use) pass through as ``None``. ``written`` names the arrays the step writes.
    """
    items = list(named.items())
    param_name = items[0][0]
    out = []
    ref_dtype = ref_shape = None
    for name, x in items:
        if x is None:
            out.append(None)
            continue
        if on_device:
            a, readonly = as_device_array(name, x)
            contiguous = a.size == 0 or a.is_c_contiguous()
        else:
            a = as_host_array(name, x)
            flags = a.flags
            readonly = not flags.writeable
            contiguous = flags.c_contiguous
            if not flags.aligned:  # the kernels load whole floats
                raise ValueError(f"{name}: expected an array aligned to its dtype (this one "
                                 "starts inside an element; use a copy, np.require(..., "
                                 "requirements='A'))")
        dtype = a.dtype
        if ref_dtype is None:
            if dtype not in FLOAT_DTYPES:
                raise TypeError(f"{name}: expected a float32 or float64 array, got dtype {dtype}")
            ref_dtype, ref_shape = dtype, tuple(a.shape)
        else:
            if dtype != ref_dtype:
                raise TypeError(f"{name}: dtype {dtype} does not match {param_name}'s dtype "
                                f"{ref_dtype}; all arrays of a step share one dtype")
            if tuple(a.shape) != ref_shape:
                raise ValueError(f"{name}: shape {tuple(a.shape)} does not match {param_name}'s "
                                 f"shape {ref_shape}")
        if not contiguous:
            raise ValueError(f"{name}: expected a C-contiguous array (use np.ascontiguousarray, "
                             "or a contiguous copy that you write back)")
        if readonly and name in written:
            raise ValueError(f"{name}: array is read-only but the step writes it")
        out.append(a)
    _check_no_overlap([(n, a) for (n, _), a in zip(items, out) if a is not None and a.size],
                      written)
    return out


#: What the checks read of a live numpy array that it can change without a new object.
ARRAY_FINGERPRINT = attrgetter("shape", "strides", "dtype", "flags.writeable")


class CheckMemo:
    """Remembers host arrays that passed :func:`check_arrays`, so that a step repeating a call on
    the same arrays skips the checks (they cost more than a small step itself).

    An entry is keyed on the arrays' ids and never holds the arrays: it holds weak references to
    them whose callbacks remove the entry when any of them is freed, before its id can be reused.
    An entry found is therefore for these very objects, and it matches when they still have the
    shape, strides, dtype and writeability they had when checked. Those are everything the checks
    read, except the data pointer and the overlap between the arrays, which a live numpy array
    cannot change without changing its shape. Only plain ``np.ndarray`` objects are remembered: a
    DLPack producer (a torch tensor) can be resized or re-pointed under the same object, so its
    view is checked afresh at every call.
    """

    LIMIT = 512  # entries; the memo is cleared when it grows past this

    def __init__(self):
        self._entries = {}

    def seen(self, context, arrays):
        """What :meth:`remember` stored with ``arrays`` (plain numpy arrays) under ``context`` (any
        hashable that fixes what was checked), if they have not changed since; else ``None``."""
        entry = self._entries.get((context, *map(id, arrays)))
        if entry is not None and tuple(map(ARRAY_FINGERPRINT, arrays)) == entry[1]:
            return entry[2]
        return None

    def remember(self, context, arrays, payload):
        """Records that ``arrays`` passed the checks of ``context``, with what the checks
        produced (``payload``, not ``None``); ignores anything but plain numpy arrays."""
        if not all(type(a) is np.ndarray for a in arrays):
            return
        entries = self._entries
        if len(entries) >= self.LIMIT:
            entries.clear()  # dropping the weak references drops their callbacks too
        key = (context, *map(id, arrays))

        def forget(_):
            entries.pop(key, None)

        refs = tuple(weakref.ref(a, forget) for a in arrays)
        entries[key] = (refs, tuple(map(ARRAY_FINGERPRINT, arrays)), payload)


def check_disjoint(pairs):
    """Raises ``ValueError`` naming two arrays of ``pairs`` (``(name, array)``, contiguous host
    or device arrays) that share memory: sorted by start address, each range is compared with
    the furthest end before it."""
    ranges = sorted((*_address_range(a), name) for name, a in pairs if a.size)
    furthest = None
    for lo, hi, name in ranges:
        if furthest is not None and lo < furthest[0]:
            raise ValueError(f"{furthest[1]} and {name}: parameters share memory (the same "
                             "array twice, or overlapping views); each would be stepped twice")
        if furthest is None or hi > furthest[0]:
            furthest = (hi, name)


def _check_no_overlap(pairs, written):
    if pairs and type(pairs[0][1]) is np.ndarray:
        def overlap(a, b):  # a bounds check in C: exact for the contiguous arrays checked here
            return np.may_share_memory(a, b)
    else:
        def overlap(a, b):
            lo_a, hi_a = _address_range(a)
            lo_b, hi_b = _address_range(b)
            return lo_a < hi_b and lo_b < hi_a
    for i, (name_i, a) in enumerate(pairs):
        for name_j, b in pairs[i + 1:]:
            if (name_i in written or name_j in written) and overlap(a, b):
                raise ValueError(f"{name_i} and {name_j}: arrays overlap in memory; a step "
                                 "needs a separate array for each")


def check_number(name, value, low=None, high=None, high_open=False):
    """``value`` as a float after checking it is a finite real number in ``[low, high]``."""
    kind = type(value)
    if kind is not float and kind is not int:  # the fast path skips the ABC check
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    try:
        value = float(value)
    except OverflowError:  # an int past the float range
        raise ValueError(f"{name}: expected a finite number, got an int of "
                         f"{value.bit_length()} bits") from None
    if value - value != 0:  # inf or nan, without a call
        raise ValueError(f"{name}: expected a finite number, got {value}")
    if low is not None and value < low:
        raise ValueError(f"{name}: expected a value >= {low}, got {value}")
    if high is not None and (value >= high if high_open else value > high):
        bound = f"< {high}" if high_open else f"<= {high}"
        raise ValueError(f"{name}: expected a value {bound}, got {value}")
    return value


def check_flag(name, value):
    if value is True or value is False:
        return value
    if not isinstance(value, np.bool_):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


#: The largest step count (an int64, as checkpoints store it).
MAX_STEP = 2**63 - 1


def check_step(step):
    if type(step) is int and 1 <= step <= MAX_STEP:
        return step
    if (isinstance(step, (bool, np.bool_)) or not isinstance(step, numbers.Integral)
            or not 1 <= step <= MAX_STEP):
        shown = repr(step) if not isinstance(step, numbers.Integral) or abs(step) < 2**64 \
            else f"an int of {int(step).bit_length()} bits"
        raise ValueError(f"step: expected the 1-based number of this step (an int from 1 to "
                         f"2**63 - 1), got {shown}")
    return int(step)


def check_betas(betas):
    try:
        beta1, beta2 = betas
    except (TypeError, ValueError):
        raise ValueError(f"betas: expected a pair (beta1, beta2), got {betas!r}") from None
    return (check_number("betas[0]", beta1, 0.0, 1.0, high_open=True),
            check_number("betas[1]", beta2, 0.0, 1.0, high_open=True))

