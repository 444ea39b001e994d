"""Checkpoints of a :class:`~fastopt.distributed.ZeroOptimizer`, written by every rank at once and
loadable at any number of ranks.

::

    fastopt.distributed.save("run/opt.ckpt", opt, extra={"epoch": 3})   # every rank calls it
    fastopt.distributed.load("run/opt.ckpt", opt)    # opt at any world size, same groups

A checkpoint is a manifest at ``path`` and one ``.npy`` file per array beside it: the parameter
vector (``params``) and each group's state arrays (``state.<group>.<name>``, torch's names, and
``master`` for 16-bit parameters), each in its global layout (a group's state indexed from the
group's start). Every rank writes its own elements of each array once, at their offsets, into the
file rank 0 created at full size, and hashes them; the manifest lists each array's pieces with
their SHA-256 digests. A loading rank reads only the elements of its block, and verifies every
saved piece it reads from.

The manifest is a fastopt checkpoint archive (``.npz``) holding only the metadata
(``__fastopt__``, JSON with ``"format": "fastopt-sharded-checkpoint"``) and its ``__checksum__``,
written by :func:`fastopt.save`'s atomic writer: to a temporary file, fsynced, renamed over
``path``. The data files carry the save's random id in their names (``<path>.<id>.<entry>.npy``)
and are complete and fsynced on every rank before the manifest is renamed, so ``path`` names the
old checkpoint or the new one, never half of one; data files that no manifest names any more are
removed by the next successful save. An error on any rank makes every rank raise, before the
manifest is written (on save) or before anything is changed (on load).
"""

import hashlib
import json
import os
import re
import sys
import uuid

import numpy as np

from fastopt.optim import checkpoint as _ckpt
from fastopt.optim._step import check_hyper
from fastopt.optim.algorithms import ALGORITHMS

FORMAT_NAME = "fastopt-sharded-checkpoint"
FORMAT_VERSION = 1
_DATA_FILE = r"\.([0-9a-f]{32})\.[A-Za-z0-9_.]+\.npy"


def _together(comm, action):
    """``action()`` on this rank; if it raised on any rank, every rank raises."""
    error, result = None, None
    try:
        result = action()
    except Exception as exc:  # re-raised below, once every rank knows
        error = exc
    flag = np.array([0.0 if error is None else 1.0])
    comm.all_reduce(flag, "max")
    if error is not None:
        raise error
    if flag[0]:
        raise RuntimeError("a checkpoint operation failed on another rank (its error is in that "
                           "rank's output); nothing was changed here")
    return result


def _digest(array):
    return "sha256:" + hashlib.sha256(np.ascontiguousarray(array).view(np.uint8)).hexdigest()


def _local_arrays(optimizer):
    """``({entry: [(start, stop, array)]}, {group: {"step", "host"}})`` of this rank's block."""
    host_state = optimizer.algorithm.host_state
    pieces, groups = {}, {}
    lo, hi = optimizer.shard
    if hi > lo:
        pieces["params"] = [(lo, hi, optimizer._param_buffer[lo:hi])]
    for k, (g, start, stop) in enumerate(optimizer.pieces):
        state = optimizer.local.state.get(k, {})
        first = optimizer.ranges[g][0]
        groups[g] = {"step": int(state.get("step", 0)),
                     "host": {n: float(v) for n, v in state.items() if n in host_state}}
        for name, value in state.items():
            if name != "step" and name not in host_state:
                pieces.setdefault(f"state.{g}.{name}", []).append(
                    (start - first, stop - first, np.asarray(value)))
    return pieces, groups


def save(path, optimizer, extra=None):
    """Writes ``optimizer``'s parameters and state as one checkpoint; every rank calls it.

    Returns the path on every rank. Raises on every rank (and leaves a previous checkpoint at
    ``path`` as it was) when any rank fails: ``TypeError`` for an ``extra`` or hyperparameter
    that JSON cannot store, ``OSError`` when a file cannot be written.
    """
    comm = optimizer.comm
    path = os.path.abspath(os.fspath(path))
    directory, base = os.path.split(path)

    def describe():
        if extra is not None and not isinstance(extra, dict):
            raise TypeError(f"extra: expected a dict or None, got {type(extra).__name__}")
        groups = [_ckpt._to_json({k: v for k, v in g.items() if k != "params"},
                                 f"param_groups[{i}]") | {"params": [i]}
                  for i, g in enumerate(optimizer.param_groups)]
        extra_json = None if extra is None else _ckpt._to_json(extra, "extra")
        return (groups, extra_json, *_local_arrays(optimizer))

    groups, extra_json, pieces, group_state = _together(comm, describe)
    dtypes = {entry: parts[0][2].dtype.str for entry, parts in pieces.items()}
    gathered = comm.gather_object((dtypes, group_state))

    def plan():
        """Rank 0: the arrays' files and dtypes, the groups' steps, the save's id."""
        arrays, steps = {}, {}
        for described, their_groups in gathered:
            for entry, dtype in described.items():
                if arrays.setdefault(entry, dtype) != dtype:
                    raise ValueError(f"{entry}: ranks hold it in different dtypes")
            for g, info in their_groups.items():
                if steps.setdefault(g, info) != info:
                    raise ValueError(f"group {g}: ranks hold different step counts")
        uid = uuid.uuid4().hex
        layout = {}
        os.makedirs(directory, exist_ok=True)
        for entry, dtype in sorted(arrays.items()):
            if entry == "params":
                size = optimizer.params.size
            else:  # state.<group>.<name>: the group's length
                start, stop = optimizer.ranges[int(entry.split(".")[1])]
                size = stop - start
            name = f"{base}.{uid}.{entry}.npy"
            with open(os.path.join(directory, name), "wb") as f:
                np.lib.format.write_array_header_1_0(
                    f, {"descr": dtype, "fortran_order": False, "shape": (size,)})
                offset = f.tell()
                f.truncate(offset + size * np.dtype(dtype).itemsize)
            layout[entry] = {"file": name, "dtype": dtype, "shape": [size], "offset": offset}
        return uid, layout, [steps.get(g, {"step": 0, "host": {}})
                             for g in range(len(optimizer.param_groups))]

    planned = _together(comm, plan if comm.rank == 0 else lambda: None)
    uid, layout, steps = comm.broadcast_object(planned)

    def write():
        digests = {}
        for entry, parts in pieces.items():
            spec = layout[entry]
            itemsize = np.dtype(spec["dtype"]).itemsize
            with open(os.path.join(directory, spec["file"]), "r+b") as f:
                for start, stop, array in parts:
                    f.seek(spec["offset"] + start * itemsize)
                    f.write(np.ascontiguousarray(array).view(np.uint8).data)
                    digests.setdefault(entry, []).append([start, stop, _digest(array)])
                f.flush()
                os.fsync(f.fileno())
        return digests

    try:
        digests = _together(comm, write)
    except BaseException:
        if comm.rank == 0:
            _remove_data_files(directory, base, keep=None, only=uid)
        raise
    gathered = comm.gather_object(digests)

    def publish():
        arrays = {}
        for entry, spec in layout.items():
            listed = sorted(p for rank_digests in gathered for p in rank_digests.get(entry, []))
            arrays[entry] = {k: spec[k] for k in ("file", "dtype", "shape", "offset")}
            arrays[entry]["pieces"] = listed
        cls = type(optimizer.local) if optimizer.local is not None else None
        meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION,
                "fastopt_version": getattr(sys.modules.get("fastopt"), "__version__", "unknown"),
                "algorithm": optimizer.algorithm.name,
                "optimizer_class": None if cls is None else f"{cls.__module__}.{cls.__qualname__}",
                "world_size": comm.size, "id": uid,
                "arena": [list(s) for s in optimizer.params.shapes],
                "dtype": np.dtype(optimizer.params.dtype).str,
                "param_groups": groups, "groups": steps, "arrays": arrays, "extra": extra_json}
        meta_bytes = json.dumps(meta, ensure_ascii=False).encode("utf-8")
        checksum = _ckpt._checksum(meta_bytes, {})
        _ckpt._atomic_write(path, {_ckpt._META: np.frombuffer(meta_bytes, np.uint8),
                                   _ckpt._CHECKSUM: np.frombuffer(checksum.encode("ascii"),
                                                                  np.uint8)})
        _remove_data_files(directory, base, keep=uid)

    try:
        _together(comm, publish if comm.rank == 0 else lambda: None)
    except BaseException:
        if comm.rank == 0 and not _names_uid(path, uid):
            _remove_data_files(directory, base, keep=None, only=uid)
        raise
    return path


def _names_uid(path, uid):
    try:
        return _read_manifest(path)["id"] == uid
    except (OSError, ValueError):
        return False


def _remove_data_files(directory, base, keep, only=None):
    """Removes ``base``'s data files other than the save ``keep``'s (or only the save
    ``only``'s)."""
    pattern = re.compile(re.escape(base) + _DATA_FILE)
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        match = pattern.fullmatch(name)
        if match is None or match[1] == keep or (only is not None and match[1] != only):
            continue
        try:
            os.remove(os.path.join(directory, name))
        except OSError:
            pass


def _read_manifest(path):
    """The checked metadata of the manifest at ``path``."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = set(archive.files)
            if names != {_ckpt._META, _ckpt._CHECKSUM}:
                raise ValueError(f"{path}: not a fastopt sharded checkpoint (entries "
                                 f"{sorted(names)})")
            meta_bytes = archive[_ckpt._META].tobytes()
            checksum = archive[_ckpt._CHECKSUM].tobytes().decode("ascii", "replace")
    except (OSError, ValueError, EOFError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path}: not a readable sharded checkpoint ({exc})") from None
    if _ckpt._checksum(meta_bytes, {}) != checksum:
        raise ValueError(f"{path}: checksum mismatch: the manifest is corrupted")
    meta = json.loads(meta_bytes.decode("utf-8"))
    if meta.get("format") != FORMAT_NAME:
        raise ValueError(f"{path}: not a fastopt sharded checkpoint (format "
                         f"{meta.get('format')!r}; a single-process one loads with fastopt.load)")
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format version {meta.get('version')!r}, this fastopt reads "
                         f"{FORMAT_VERSION}")
    return meta


def _check_fits(path, meta, optimizer):
    """The saved groups' hyperparameters, after checking that ``meta`` fits ``optimizer``."""
    if meta["algorithm"] != optimizer.algorithm.name:
        raise ValueError(f"{path}: holds {meta['algorithm']} state, but the optimizer is "
                         f"{optimizer.algorithm.name}; refusing to load it")
    shapes = [list(s) for s in optimizer.params.shapes]
    if meta["arena"] != shapes or meta["dtype"] != np.dtype(optimizer.params.dtype).str:
        raise ValueError(f"{path}: saved for an arena of {meta['dtype']} tensors {meta['arena']}, "
                         f"the optimizer's is {np.dtype(optimizer.params.dtype).str} {shapes}")
    ranges = [b - a for a, b in optimizer.ranges]
    if len(meta["param_groups"]) != len(ranges):
        raise ValueError(f"{path}: holds {len(meta['param_groups'])} parameter groups, the "
                         f"optimizer has {len(ranges)}")
    hypers = []
    for g, saved in enumerate(meta["param_groups"]):
        hyper = _ckpt._from_json({k: v for k, v in saved.items() if k != "params"})
        new = {**optimizer.param_groups[g], **hyper}
        try:
            check_hyper(optimizer.algorithm, new)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{path}: param_groups[{g}]: {exc}") from None
        hypers.append(hyper)
    for entry, spec in meta["arrays"].items():
        if entry.startswith("state."):
            g = int(entry.split(".")[1])
            if not 0 <= g < len(ranges) or spec["shape"] != [ranges[g]]:
                raise ValueError(f"{path}: {entry} does not fit the optimizer's groups")
    return hypers


def _read_range(path, spec, start, stop):
    """Elements ``start:stop`` of a saved array, after verifying every saved piece read from."""
    directory = os.path.dirname(os.path.abspath(path))
    file = os.path.join(directory, spec["file"])
    data = np.load(file, mmap_mode="r", allow_pickle=False)
    if data.dtype.str != spec["dtype"] or list(data.shape) != spec["shape"]:
        raise ValueError(f"{file}: holds {data.dtype.str} {list(data.shape)}, the manifest says "
                         f"{spec['dtype']} {spec['shape']}")
    covered = start
    for a, b, digest in spec["pieces"]:
        if b <= start or a >= stop:
            continue
        if a > covered:
            break
        if _digest(data[a:b]) != digest:
            raise ValueError(f"{file}: checksum mismatch in elements {a}:{b}")
        covered = max(covered, b)
    if covered < stop:
        raise ValueError(f"{file}: elements {covered}:{stop} were not written by any rank")
    return np.array(data[start:stop])


def load(path, optimizer, *, params=True):
    """Restores a checkpoint of :func:`save` into ``optimizer`` (at any world size); every rank
    calls it. Returns the checkpoint's ``extra``.

    Each rank reads the manifest and the elements of its block, verifying every saved piece it
    reads; then its local optimizer's state, every group's hyperparameters and (with ``params``)
    the parameters are restored. On a failure on any rank every rank raises (``ValueError`` for
    a file that is not such a checkpoint, is corrupted or does not fit the optimizer) and nothing
    is changed."""
    comm = optimizer.comm
    path = os.fspath(path)

    def read():
        meta = _read_manifest(path)
        hypers = _check_fits(path, meta, optimizer)
        arrays = meta["arrays"]
        local_state, local_groups = {}, []
        host_state = ALGORITHMS[meta["algorithm"]].host_state
        for k, (g, lo, hi) in enumerate(optimizer.pieces):
            first = optimizer.ranges[g][0]
            saved = meta["groups"][g]
            state = {"step": int(saved["step"]),
                     **{n: float(v) for n, v in saved["host"].items() if n in host_state}}
            if not state["step"] and not state.keys() - {"step"}:
                state = {}
            prefix = f"state.{g}."
            for entry, spec in arrays.items():
                if entry.startswith(prefix):
                    state[entry[len(prefix):]] = _read_range(path, spec, lo - first, hi - first)
            if state:
                local_state[k] = state
            local_groups.append({**optimizer.local.param_groups[k], **hypers[g], "params": [k]})
        shard = None
        lo, hi = optimizer.shard
        if params and hi > lo:
            shard = _read_range(path, arrays["params"], lo, hi)
        return hypers, local_state, local_groups, shard, meta.get("extra")

    hypers, local_state, local_groups, shard, extra = _together(comm, read)

    def commit():
        if optimizer.local is not None:
            optimizer.local.load_state_dict({"state": local_state, "param_groups": local_groups})
        for group, hyper in zip(optimizer.param_groups, hypers):
            group.update(hyper)
        if shard is not None:
            lo, hi = optimizer.shard
            optimizer._param_buffer[lo:hi] = shard

    _together(comm, commit)
    if params:
        comm.all_gather(optimizer._param_buffer)
    return None if extra is None else _ckpt._from_json(extra)
