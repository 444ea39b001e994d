"""Checkpoints: an optimizer's state and parameters in one versioned ``.npz``, written atomically,
and converters to and from ``torch.optim`` state dicts.

::

    fastopt.save("run/opt.npz", opt, extra={"epoch": 3})      # atomic: old file or new, never half
    opt = fastopt.Adam(params, lr=1e-3)                        # same groups, shapes and dtypes
    ckpt = fastopt.load("run/opt.npz", opt)                    # state, hyperparameters, parameters
    start = ckpt.extra["epoch"] + 1

Resuming continues bit-identically to an uninterrupted run on the same backend (the file holds
the exact bits of every array and every hyperparameter); a checkpoint written on one backend loads
on any other. A file that is not a checkpoint, is truncated or corrupted, has an unknown format
version, or does not fit the optimizer is refused with a ``ValueError`` that names the file and the
problem, and the optimizer and its parameters are left as they were.

File format, version 1
----------------------
An uncompressed zip of ``.npy`` members, as :func:`numpy.savez` writes; ``numpy.load(path,
allow_pickle=False)`` reads it. Entries (``numpy.load`` names them without ``.npy``):

=======================  ==========================================================================
``__fastopt__``          uint8 array: the metadata, UTF-8 JSON (below)
``param.<i>``            parameter ``i`` (``param_groups`` order), an arena's flat buffer for a
                         :class:`~fastopt.FlatParams` arena; absent with ``params=False``
``state.<i>.<name>``     state array ``<name>`` of parameter ``i``: torch's names (``exp_avg``,
                         ...), ``master`` for the float32 master weights of a float16/bfloat16
                         parameter, and host scalars (NAdam's ``mu_product``, ASGD's ``eta``
                         and ``mu``) as 0-d float64 arrays
``__checksum__``         uint8 array: ASCII ``"sha256:"`` followed by 64 hex digits
=======================  ==========================================================================

The metadata::

    {"format": "fastopt-checkpoint", "version": 1, "fastopt_version": "0.1.0",
     "algorithm": "adam", "optimizer_class": "fastopt.optim.optimizers.Adam", "backend": "cpu",
     "param_groups": [{"lr": 0.001, "betas": {"__tuple__": [0.9, 0.999]}, ..., "params": [0, 1]}],
     "state": [{"index": 0, "step": 3,
                "arrays": {"exp_avg": {"entry": "state.0.exp_avg", "dtype": "<f4", "shape": [5]},
                           ...}}, ...],
     "params": [{"entry": "param.0", "dtype": "<f4", "shape": [5]}, ...],   # or null
     "extra": {"epoch": 3}}                                                  # or null

An arena parameter's description also lists its tensors' shapes, ``"arena": [[4, 3], [5]]``; it
loads only into an arena of the same shapes, and an array's only into an array.

Tuples are stored as ``{"__tuple__": [...]}`` so that they come back as tuples (``betas``);
floats are written in Python's shortest round-trip form, so hyperparameters come back bit for bit.
``extra`` is the caller's JSON-serialisable dict (string keys; tuples survive as above).

The checksum is SHA-256 over the metadata's bytes followed by, for every other entry in sorted name
order, ``"\\n<name>\\n<dtype.str>\\n<shape, comma separated>\\n"`` (UTF-8) and the array's C-order
bytes. A reader checks, in this order: that the file is a zip holding ``__fastopt__`` with
``"format": "fastopt-checkpoint"``; that every entry's ``.npy`` header agrees with the entry's size
in the archive, and that size with the file's (so a corrupted header cannot make it allocate more
than the file holds); that it knows the version (a newer one is refused, not guessed at); the
checksum; then that the metadata describes exactly the entries present.

Writing goes to a temporary file in the destination's directory
(``.<name>.<host>-<pid>-<process>-<random>.tmp``), which is flushed and fsynced, then renamed over
the destination with :func:`os.replace` (atomic on POSIX and Windows), and the directory is fsynced
where the platform allows. Any exception, ``KeyboardInterrupt`` included, removes the temporary file
and leaves a previous checkpoint untouched; only a hard kill mid-write can leave a ``.tmp`` file
behind, never a damaged checkpoint. The next save of the same checkpoint on POSIX removes the
temporary files of its saves whose process no longer runs on this host, never one that a live
process may still be writing.

Torch converters
----------------
:func:`to_torch_state_dict` and :func:`from_torch_state_dict` translate between fastopt's state dict
and the one of the ``torch.optim`` class of the same algorithm and hyperparameters (``SGD``,
``Adagrad``, ``RMSprop``, ``Adam``, ``AdamW``, ``Adamax``, ``NAdam``, ``RAdam``, ``Adadelta``,
``Rprop``, ``ASGD``; ``foreach=False`` semantics). The state names are the same; torch keeps
``step`` as a scalar float tensor and fastopt as an int, and the host scalars (NAdam's
``mu_product``, ASGD's ``eta`` and ``mu``) as scalar tensors where fastopt keeps Python floats.
Torch's ``SGD`` keeps no step count: converting from it gives ``step`` 0 (SGD's update does not
depend on it), and a ``momentum_buffer`` of ``None`` (momentum not started) becomes an absent one,
which fastopt also starts from the next gradient. Lion and LAMB have no ``torch.optim`` class, and
torch keeps no float32 master weights: their state is refused.
"""

import hashlib
import json
import math
import os
import re
import socket
import sys
import uuid
import zipfile
from dataclasses import dataclass, field
from itertools import chain

import numpy as np

from fastopt.optim.algorithms import ALGORITHMS
from fastopt.optim.arena import FlatParams
from fastopt._core.dispatch import is_device_array
from fastopt._core.validate import as_device_array, as_host_array

FORMAT_NAME = "fastopt-checkpoint"
FORMAT_VERSION = 1  # the newest version this module writes and reads

_CHUNK = 1 << 24  # bytes read from an entry at a time
_META = "__fastopt__"
_CHECKSUM = "__checksum__"
_TORCH_CLASSES = {name: a.torch for name, a in ALGORITHMS.items() if a.torch}
# Temporary files are named .<checkpoint>.<host>-<pid>-<process>-<random>.tmp: a later save removes
# those of processes that are gone; <process> tells this process from an earlier one with its pid.
_HOST = hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]
_PROCESS = uuid.uuid4().hex[:8]
_TMP_TAIL = re.compile(r"([0-9]{1,10})-([0-9a-f]{8})-[0-9a-f]{12}\.tmp")
# Keys of torch's param groups that choose how torch runs a step, not what it computes.
_TORCH_EXECUTION_KEYS = ("foreach", "fused", "capturable", "differentiable", "param_names")


@dataclass(frozen=True)
class Checkpoint:
    """What :func:`load` read from a checkpoint file.

    Attributes:
        path: the file.
        algorithm: the optimizer's algorithm (``"sgd"``, ``"adam"``, ... ``"lamb"``).
        state_dict: ``{"state": {index: {"step": int, name: ndarray}}, "param_groups": [...]}``
            (host scalars such as NAdam's ``mu_product`` floats), ready for
            ``optimizer.load_state_dict``.
        params: the parameters as numpy arrays in ``param_groups`` order, or ``None`` if the file
            was saved without them.
        extra: the caller's dict given to :func:`save`, or ``None``.
        optimizer_class: the qualified name of the optimizer class that was saved.
        backend: the backend the saved optimizer ran on (for information: state loads on any).
        fastopt_version: the fastopt version that wrote the file.
        format_version: the file format version.
        arenas: for each parameter, the shapes of the tensors of a :class:`~fastopt.FlatParams`
            arena (``params`` then holds its flat buffer), or ``None`` for an array; ``None``
            when the file holds no parameters.
    """

    path: str
    algorithm: str
    state_dict: dict = field(repr=False)
    params: list | None = field(repr=False)
    extra: dict | None
    optimizer_class: str
    backend: str | None
    fastopt_version: str
    format_version: int
    arenas: list | None = field(default=None, repr=False)


# ---------------------------------------------------------------------------------------------
# save


def save(path, optimizer, extra=None, *, params=True):
    """Writes ``optimizer``'s state (and parameters) to ``path`` as one checkpoint, atomically.

    Args:
        path: the file to write (``str`` or path-like), used as given (no suffix is added); its
            directory is created if missing. An existing file there is replaced only once the
            new one is complete on disk.
        optimizer: a fastopt optimizer (any backend; device state is copied to the host).
        extra: an optional JSON-serialisable dict stored alongside (e.g. ``{"epoch": 3}``),
            returned by :func:`load` as ``checkpoint.extra``.
        params: also store the parameters (default ``True``), so that :func:`load` restores the
            exact point of training. With ``False`` only the optimizer state is stored.

    Returns:
        The path written, as a ``str``.

    Raises:
        TypeError: ``extra`` or a param group holds a value JSON cannot store, or ``extra`` is not
            a dict. Nothing is written.
        OSError: the file cannot be written; a previous checkpoint at ``path`` is left untouched
            and no temporary file remains.
    """
    path = os.fspath(path)
    if extra is not None and not isinstance(extra, dict):
        raise TypeError(f"extra: expected a dict or None, got {type(extra).__name__}")
    state_dict = optimizer.state_dict()
    entries = {}
    state_meta = []
    for index in sorted(state_dict["state"]):
        arrays = {}
        saved = state_dict["state"][index]
        for name, value in saved.items():
            if name == "step":
                continue
            entry = f"state.{index}.{name}"
            entries[entry] = np.asarray(value, order="C")
            arrays[name] = _describe(entry, entries[entry])
        state_meta.append({"index": int(index), "step": int(saved.get("step", 0)),
                           "arrays": arrays})
    params_meta = None
    if params:
        params_meta = []
        for i, p in enumerate(_parameters(optimizer)):
            entry = f"param.{i}"
            arena = isinstance(p, FlatParams)
            entries[entry] = _host_copy(f"params[{i}]", p.data if arena else p)
            params_meta.append(_describe(entry, entries[entry]))
            if arena:
                params_meta[-1]["arena"] = [list(s) for s in p.shapes]
    cls = type(optimizer)
    meta = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "fastopt_version": getattr(sys.modules.get("fastopt"), "__version__", "unknown"),
        "algorithm": optimizer.algorithm.name,
        "optimizer_class": f"{cls.__module__}.{cls.__qualname__}",
        "backend": getattr(optimizer, "backend", None),
        "param_groups": [_to_json({k: v for k, v in g.items() if k != "params"},
                                  f"param_groups[{i}]") | {"params": [int(j) for j in g["params"]]}
                         for i, g in enumerate(state_dict["param_groups"])],
        "state": state_meta,
        "params": params_meta,
        "extra": None if extra is None else _to_json(extra, "extra"),
    }
    meta_bytes = json.dumps(meta, ensure_ascii=False).encode("utf-8")
    checksum = _checksum(meta_bytes, entries)
    ordered = {_META: np.frombuffer(meta_bytes, np.uint8), **entries,
               _CHECKSUM: np.frombuffer(checksum.encode("ascii"), np.uint8)}
    _atomic_write(path, ordered)
    return path


def _describe(entry, array):
    return {"entry": entry, "dtype": array.dtype.str, "shape": list(array.shape)}


def _parameters(optimizer):
    return list(chain.from_iterable(g["params"] for g in optimizer.param_groups))


def _host_copy(name, x):
    """A numpy copy of a host or device array (numpy, DLPack, ``__cuda_array_interface__``)."""
    if is_device_array(x):
        return as_device_array(name, x)[0].copy_to_host()
    return np.array(as_host_array(name, x), copy=True, order="C")


def _to_json(value, where):
    """``value`` as JSON-ready data: tuples tagged, numpy scalars as Python numbers."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, tuple):
        return {"__tuple__": [_to_json(v, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_to_json(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: a checkpoint stores dicts with str keys only, got "
                                f"key {k!r}")
            out[k] = _to_json(v, f"{where}[{k!r}]")
        return out
    raise TypeError(f"{where}: a checkpoint stores JSON values only (None, bool, int, float, str, "
                    f"list, tuple, dict), got {type(value).__name__}")


def _from_json(value):
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    if isinstance(value, dict):
        if list(value) == ["__tuple__"] and isinstance(value["__tuple__"], list):
            return tuple(_from_json(v) for v in value["__tuple__"])
        return {k: _from_json(v) for k, v in value.items()}
    return value


def _checksum(meta_bytes, entries):
    """``"sha256:<hex>"`` over the metadata and every other entry (see the module docstring)."""
    h = hashlib.sha256(meta_bytes)
    for name in sorted(entries):
        a = np.asarray(entries[name], order="C")
        shape = ",".join(str(n) for n in a.shape)
        h.update(f"\n{name}\n{a.dtype.str}\n{shape}\n".encode("utf-8"))
        h.update(a.reshape(-1).view(np.uint8) if a.size else b"")
    return "sha256:" + h.hexdigest()


def _atomic_write(path, entries):
    """Writes ``entries`` as an ``.npz`` at ``path`` through a temporary file and a rename."""
    directory = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    os.makedirs(directory, exist_ok=True)  # fastopt.save("ckpt/opt.npz", ...) makes ckpt/
    _remove_stale_temporaries(directory, base)
    tmp = os.path.join(directory, f".{base}.{_HOST}-{os.getpid()}-{_PROCESS}-"
                                  f"{uuid.uuid4().hex[:12]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_npz(f, entries)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    _fsync_directory(directory)


def _remove_stale_temporaries(directory, base):
    """Removes the temporary files of saves of ``base`` killed before they finished: those written
    on this host by a process that no longer runs. A live process's file is never removed (nor
    any on Windows, where probing a pid with ``os.kill`` would end the process)."""
    if os.name != "posix":
        return
    prefix = f".{base}.{_HOST}-"
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not name.startswith(prefix):
            continue
        match = _TMP_TAIL.fullmatch(name[len(prefix):])
        if match is None:
            continue
        pid, process = int(match[1]), match[2]
        if pid == os.getpid():
            # Ours, perhaps from another thread; or from an earlier process that had our pid.
            if process == _PROCESS:
                continue
        elif _alive(pid):
            continue
        try:
            os.remove(os.path.join(directory, name))
        except OSError:  # removed meanwhile by another save, or not a file
            pass


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError, ValueError):  # another user's process, or no valid pid
        return True
    return True


def _write_npz(f, entries):
    """What :func:`numpy.savez` writes (stored, not compressed), to an open binary file."""
    with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, array in entries.items():
            _write_entry(zf, name, array)


def _write_entry(zf, name, array):
    with zf.open(name + ".npy", mode="w", force_zip64=True) as member:
        np.lib.format.write_array(member, array, allow_pickle=False)


def _fsync_directory(directory):
    """Makes the rename durable; a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# load


def load(path, optimizer=None, *, params=True):
    """Reads and verifies a checkpoint; with ``optimizer``, also restores it into the optimizer.

    The file is checked completely first: that it is a fastopt checkpoint, that its format version
    is known, its SHA-256 checksum, and that its metadata matches its arrays. With ``optimizer``,
    the checkpoint must also fit it: the same algorithm (Adam state does not load into SGD), the
    same number of groups and of parameters per group, and the same shapes and dtypes. Then the
    optimizer's state and hyperparameters (``optimizer.load_state_dict``) and, if the file has
    them and ``params`` is true, the values of its parameters (written in place into the arrays in
    ``optimizer.param_groups``, on the host or the device) are restored. On any failure the
    optimizer and its parameters are left exactly as they were.

    Args:
        path: the checkpoint file written by :func:`save`.
        optimizer: an optional fastopt optimizer, on any backend, to restore into.
        params: restore the parameters too when the file has them (default ``True``).

    Returns:
        A :class:`Checkpoint` (``.state_dict``, ``.params``, ``.extra``, ``.algorithm``, ...).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a fastopt checkpoint, is truncated or corrupted ("checksum
            mismatch"), has an unsupported version, or does not fit ``optimizer``; the message
            names the file and what is wrong.
        TypeError: a saved hyperparameter has a type the optimizer refuses.
    """
    checkpoint = _read(os.fspath(path))
    if optimizer is not None:
        _restore(checkpoint, optimizer, params)
    return checkpoint


def _read(path):
    with open(path, "rb") as f:
        magic = f.read(6)
        f.seek(0)
        if magic[:4] not in (b"PK\x03\x04", b"PK\x05\x06"):  # what numpy.load takes for an .npz
            if magic == b"\x93NUMPY":
                raise ValueError(f"{path}: not a fastopt checkpoint (a single .npy array, not an "
                                 ".npz archive)")
            if magic and b"PK\x03\x04".startswith(magic[:4]):
                raise ValueError(f"{path}: not a readable checkpoint: the archive is truncated "
                                 "or corrupted (it ends within the first entry's header)")
            raise ValueError(f"{path}: not a fastopt checkpoint (not an .npz archive)")
        try:
            archive = zipfile.ZipFile(f)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{path}: not a readable checkpoint: the archive is truncated or "
                             f"corrupted ({exc})") from None
        with archive:
            return _read_archive(path, archive, os.fstat(f.fileno()).st_size)


def _read_archive(path, archive, file_size):
    members = {}
    for info in archive.infolist():
        name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
        members.setdefault(name, []).append(info)
    if _META not in members:
        raise ValueError(f"{path}: not a fastopt checkpoint (no {_META!r} metadata entry)")
    try:
        # Each entry's size is checked against the archive before anything is allocated.
        for name, infos in members.items():
            if len(infos) > 1:
                raise ValueError(f"entry {name!r} appears {len(infos)} times")
            _check_member_size(name, infos[0], file_size)
        meta_bytes = _entry(archive, members[_META][0], _META).tobytes()
        meta = json.loads(meta_bytes.decode("utf-8"))
    except (ValueError, OSError, EOFError, RecursionError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: checksum mismatch: the file is corrupted (unreadable "
                         f"metadata: {exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ValueError(f"{path}: not a fastopt checkpoint (its metadata has no "
                         f"'format': {FORMAT_NAME!r})")
    version = meta.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or not (
            1 <= version <= FORMAT_VERSION):
        raise ValueError(f"{path}: unsupported version {version!r} of the checkpoint format "
                         f"(written by fastopt {meta.get('fastopt_version')}); this fastopt "
                         f"reads versions 1 to {FORMAT_VERSION}")
    if _CHECKSUM not in members:
        raise ValueError(f"{path}: checksum missing: the file is incomplete or corrupted")
    entries = {}
    try:
        stored = _entry(archive, members[_CHECKSUM][0], _CHECKSUM).tobytes().decode("ascii")
        for name in sorted(members):
            if name not in (_META, _CHECKSUM):
                entries[name] = _entry(archive, members[name][0], name)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: checksum mismatch: the file is corrupted ({exc})") from None
    if _checksum(meta_bytes, entries) != stored:
        raise ValueError(f"{path}: checksum mismatch: the file is corrupted (its arrays or "
                         "metadata differ from what was written)")
    try:
        return _checkpoint(path, meta, entries)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: inconsistent metadata, the file was not written by "
                         f"fastopt.save ({type(exc).__name__}: {exc})") from None


def _check_member_size(name, info, file_size):
    """Refuses a member larger than the file holding it (its sizes in the zip are corrupted)."""
    if info.compress_size > file_size or (info.compress_type == zipfile.ZIP_STORED
                                          and info.file_size != info.compress_size):
        raise ValueError(f"entry {name!r}: the archive's directory gives it {info.file_size} "
                         f"bytes ({info.compress_size} stored) in a file of {file_size}")


def _entry(archive, info, name):
    """The array of one ``.npy`` member, read only once its header agrees with the member's size.

    A stored member's size is bounded by the file's; a compressed one (numpy.savez_compressed) is
    read piecewise, so memory follows the bytes actually there, never the header's claim."""
    with archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"entry {name!r}: unsupported .npy format version {version}")
        if dtype.hasobject or dtype.itemsize == 0 or any(n < 0 for n in shape):
            raise ValueError(f"entry {name!r}: a checkpoint holds no {dtype} {shape} arrays")
        count = math.prod(shape)
        nbytes = count * dtype.itemsize
        if f.tell() + nbytes != info.file_size:
            raise ValueError(f"entry {name!r}: its header declares {dtype.str} {list(shape)} "
                             f"({nbytes} bytes), the entry holds {info.file_size - f.tell()}")
        if info.compress_type == zipfile.ZIP_STORED:
            buffer = memoryview(bytearray(nbytes))
            done = 0
            while done < nbytes:
                chunk = f.read(min(nbytes - done, _CHUNK))
                if not chunk:
                    break
                buffer[done:done + len(chunk)] = chunk
                done += len(chunk)
        else:
            buffer = bytearray()
            while len(buffer) < nbytes:
                chunk = f.read(min(nbytes - len(buffer), _CHUNK))
                if not chunk:
                    break
                buffer += chunk
            done = len(buffer)
        if done != nbytes or f.read(1):  # reading to the end also checks the zip's CRC
            raise EOFError(f"entry {name!r}: holds other than the {nbytes} bytes it declares")
    array = np.frombuffer(buffer, dtype, count)
    if fortran_order:
        return array.reshape(shape[::-1]).transpose()
    return array.reshape(shape)


def _checkpoint(path, meta, entries):
    """Builds a :class:`Checkpoint` after checking that ``meta`` describes ``entries`` exactly."""
    listed = set()

    def take(description, where):
        _expect(description, dict, where)
        entry = _expect(description.get("entry"), str, f"{where}['entry']")
        if entry in listed:
            raise ValueError(f"{where}: entry {entry!r} is described twice")
        array = entries[entry]
        if array.dtype.str != description.get("dtype") or list(array.shape) != description.get(
                "shape"):
            raise ValueError(f"entry {entry!r} is {array.dtype.str} {list(array.shape)}, the "
                             f"metadata says {description.get('dtype')} "
                             f"{description.get('shape')}")
        listed.add(entry)
        return array

    # Host scalars (NAdam's mu_product, ASGD's eta and mu) are stored as 0-d float64 entries and
    # read back as floats.
    spec = ALGORITHMS.get(_expect(meta["algorithm"], str, "algorithm"))
    host_state = spec.host_state if spec is not None else {}

    state = {}
    for r, record in enumerate(_expect(meta["state"], list, "state")):
        where = f"state[{r}]"
        _expect(record, dict, where)
        index = _expect(record.get("index"), int, f"{where}['index']")
        step = _expect(record.get("step"), int, f"{where}['step']")
        if index < 0 or step < 0 or index in state:
            raise ValueError(f"bad state record {record!r}")
        state[index] = {"step": step}
        for name, d in _expect(record.get("arrays"), dict, f"{where}['arrays']").items():
            array = take(d, f"{where}['arrays'][{name!r}]")
            state[index][name] = float(array) if name in host_state and array.shape == () \
                else array
    groups = []
    for g_index, g in enumerate(_expect(meta["param_groups"], list, "param_groups")):
        where = f"param_groups[{g_index}]"
        indices = _expect(_expect(g, dict, where).get("params"), list, f"{where}['params']")
        groups.append({**_from_json({k: v for k, v in g.items() if k != "params"}),
                       "params": [_expect(i, int, f"{where}['params']") for i in indices]})
    params = arenas = None
    if meta["params"] is not None:
        described = _expect(meta["params"], list, "params")
        params = [take(d, f"params[{i}]") for i, d in enumerate(described)]
        arenas = [_layout(d, f"params[{i}]") for i, d in enumerate(described)]
    unlisted = set(entries) - listed
    if unlisted:
        raise ValueError(f"entries not described by the metadata: {sorted(unlisted)}")
    extra = meta.get("extra")
    return Checkpoint(path=path, algorithm=meta["algorithm"],
                      state_dict={"state": state, "param_groups": groups}, params=params,
                      extra=None if extra is None else _from_json(extra),
                      optimizer_class=meta["optimizer_class"], backend=meta.get("backend"),
                      fastopt_version=meta["fastopt_version"], format_version=meta["version"],
                      arenas=arenas)


def _expect(value, kind, where):
    """``value``, if it is a ``kind`` (``bool`` is no ``int`` here)."""
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{where}: expected {kind.__name__}, got {value!r}"[:200])
    return value


def _layout(description, where):
    """The tensor shapes of an arena parameter's description, or ``None`` for an array's."""
    shapes = description.get("arena")
    if shapes is None:
        return None
    shapes = [tuple(_expect(n, int, f"{where}['arena']") for n in _expect(s, list, where))
              for s in _expect(shapes, list, f"{where}['arena']")]
    if sum(math.prod(s) for s in shapes) != math.prod(description["shape"]) or any(
            n < 0 for s in shapes for n in s):
        raise ValueError(f"{where}: arena shapes {shapes} do not fill {description['shape']}")
    return shapes


def _restore(checkpoint, optimizer, restore_params):
    """Loads ``checkpoint`` into ``optimizer``, checking everything before changing anything."""
    path = checkpoint.path
    name = optimizer.algorithm.name
    if checkpoint.algorithm != name:
        raise ValueError(f"{path}: holds {checkpoint.algorithm} state (saved from "
                         f"{checkpoint.optimizer_class}), but the optimizer is "
                         f"{type(optimizer).__name__} ({name}); refusing to load it")
    targets = []
    if restore_params and checkpoint.params is not None:
        current = _parameters(optimizer)
        if len(current) != len(checkpoint.params):
            raise ValueError(f"{path}: holds {len(checkpoint.params)} parameters, the optimizer "
                             f"has {len(current)}")
        layouts = checkpoint.arenas or [None] * len(current)
        for i, (p, saved, layout) in enumerate(zip(current, checkpoint.params, layouts)):
            where = f"params[{i}]"
            mine = [tuple(s) for s in p.shapes] if isinstance(p, FlatParams) else None
            if layout != mine:
                raise ValueError(f"{path}: {where} was saved as {_kind(layout)}, the "
                                 f"optimizer's is {_kind(mine)}")
            if isinstance(p, FlatParams):
                p = p.data
            on_device = bool(is_device_array(p))
            if on_device:
                view, readonly = as_device_array(where, p)
            else:
                view = as_host_array(where, p)
                readonly = not view.flags.writeable
            if tuple(view.shape) != saved.shape or np.dtype(view.dtype) != saved.dtype:
                raise ValueError(f"{path}: {where} was saved with shape {saved.shape} and dtype "
                                 f"{saved.dtype}, the optimizer's has {tuple(view.shape)} "
                                 f"{np.dtype(view.dtype)}")
            if readonly:
                raise ValueError(f"{path}: {where} is read-only; cannot restore its values")
            targets.append((view, on_device, saved))
    try:
        optimizer.load_state_dict(checkpoint.state_dict)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{path}: does not fit this optimizer: {exc}") from None
    for view, on_device, saved in targets:
        if on_device:
            view.copy_to_device(np.asarray(saved, order="C"))
        else:
            view[...] = saved


def _kind(layout):
    return "an array" if layout is None else f"an arena of tensors {layout}"


# ---------------------------------------------------------------------------------------------
# torch.optim converters


def to_torch_state_dict(source, algorithm=None):
    """A ``torch.optim`` state dict equivalent to a fastopt optimizer's state.

    The result loads into the ``torch.optim`` class of the same algorithm (``SGD``, ``Adagrad``,
    ``RMSprop``, ``Adam``, ``AdamW``, ``Adamax``, ``NAdam``, ``RAdam``, ``Adadelta``, ``Rprop``,
    ``ASGD``) built over the same parameters, in the same groups::

        topt = torch.optim.Adam(model.parameters(), lr=1e-3)
        topt.load_state_dict(fastopt.to_torch_state_dict(opt))

    State arrays become CPU tensors of their dtype (``load_state_dict`` moves them to each
    parameter's device and dtype), ``step`` becomes torch's scalar float tensor, a host scalar
    (NAdam's ``mu_product``, ASGD's ``eta`` and ``mu``) a float64 scalar tensor (which
    ``load_state_dict`` also casts to the parameter's dtype), and every param group carries all the
    keys that torch's class itself writes (``foreach``, ``fused``, ``capturable``,
    ``differentiable``, ``decoupled_weight_decay``, ... at torch's defaults, from a throwaway
    instance of the class), so torch's step behaves as fastopt's. Torch's ``SGD`` keeps no step
    count, so it is dropped there.

    Args:
        source: a fastopt optimizer, a :class:`Checkpoint`, or a fastopt state dict (then
            ``algorithm`` is required).
        algorithm: ``"sgd"``, ``"adagrad"``, ``"rmsprop"``, ``"adam"``, ``"adamw"``,
            ``"adamax"``, ``"nadam"``, ``"radam"``, ``"adadelta"``, ``"rprop"`` or ``"asgd"`` (or a
            fastopt optimizer class or instance); checked against ``source`` when both say.

    Returns:
        ``{"state": {index: {...tensors}}, "param_groups": [{..., "params": [indices]}]}``.

    Raises:
        ImportError: torch is not installed.
        ValueError: unknown algorithm, one that disagrees with ``source``'s, one that
            ``torch.optim`` lacks (Lion, LAMB), mixed-precision state (float32 master weights,
            which torch's optimizers do not keep) or 8-bit state.
    """
    import torch

    if isinstance(source, Checkpoint):
        state_dict, name = source.state_dict, source.algorithm
    elif hasattr(source, "state_dict") and hasattr(source, "algorithm"):
        state_dict, name = source.state_dict(), source.algorithm.name
    else:
        state_dict, name = source, None
    if algorithm is not None:
        wanted = _algorithm_name(algorithm)
        if name is not None and wanted != name:
            raise ValueError(f"algorithm: the source holds {name} state, got {wanted!r}")
        name = wanted
    if name is None:
        raise ValueError("algorithm: required when converting a plain state dict")
    _check_torch_has(name)
    spec = ALGORITHMS[name]
    torch_class = getattr(torch.optim, _TORCH_CLASSES[name])
    scalar_dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
    groups = []
    for group in state_dict["param_groups"]:
        hyper = {k: group[k] for k in spec.defaults if k in group}
        template = torch_class([torch.zeros(1)], **hyper).state_dict()["param_groups"][0]
        groups.append({**template, **{k: v for k, v in group.items() if k != "params"},
                       "params": [int(i) for i in group["params"]]})
    state = {}
    for index, saved in state_dict["state"].items():
        if "master" in saved:
            raise ValueError(f"state[{index}]: holds float32 master weights of a float16/bfloat16 "
                             "parameter (mixed precision), which torch.optim does not keep; "
                             "convert the state of a float32 run instead")
        if any(key.endswith("_absmax") for key in saved):
            raise ValueError(f"state[{index}]: holds 8-bit state (codes and block maxima, "
                             "state_dtype='int8'), which torch.optim does not keep")
        out = {}
        for key, value in saved.items():
            if key == "step":
                if name != "sgd":
                    out["step"] = torch.tensor(float(value), dtype=scalar_dtype)
            elif key in spec.host_state:  # mu_product, eta, mu: scalar tensors in torch
                out[key] = torch.tensor(float(value), dtype=torch.float64)
            else:
                out[key] = torch.from_numpy(_host_copy(key, value))
        if out:
            state[int(index)] = out
    return {"state": state, "param_groups": groups}


def from_torch_state_dict(torch_state_dict, algorithm):
    """A fastopt state dict equivalent to a ``torch.optim`` optimizer's ``state_dict()``.

    The result loads into the fastopt class of the same algorithm over the same parameters::

        opt = fastopt.Adam(params, lr=1e-3)
        opt.load_state_dict(fastopt.from_torch_state_dict(topt.state_dict(), "adam"))

    Parameters are numbered by their position in the groups (torch's own numbering), tensors become
    numpy copies (from any device), ``step`` an int and the host scalars (NAdam's ``mu_product``,
    ASGD's ``eta`` and ``mu``) Python floats (torch keeps them in its default dtype, float32 unless
    set). Torch's execution options
    (``foreach``, ``fused``, ``capturable``, ``differentiable``) and ``param_names`` are dropped;
    other keys, such as a scheduler's ``initial_lr``, are kept. Torch's ``SGD`` has no step count:
    ``step`` is 0, and a ``momentum_buffer`` of ``None`` is left out (fastopt then starts it from
    the next gradient, as torch does).

    Args:
        torch_state_dict: ``torch.optim.<Class>.state_dict()`` of the same algorithm.
        algorithm: ``"sgd"``, ``"adagrad"``, ``"rmsprop"``, ``"adam"``, ``"adamw"``, ``"adamax"``,
            ``"nadam"``, ``"radam"``, ``"adadelta"``, ``"rprop"`` or ``"asgd"``, or a fastopt
            optimizer class or instance.

    Returns:
        ``{"state": {index: {"step": int, name: ndarray}}, "param_groups": [...]}``.

    Raises:
        ValueError: the state dict is not of ``algorithm`` (e.g. ``AdamW`` state, with
            ``decoupled_weight_decay=True``, for ``"adam"``), has a state name the algorithm does
            not use, a missing or non-integral ``step``, or state for an unknown parameter; or
            ``algorithm`` is one that ``torch.optim`` lacks (Lion, LAMB).
    """
    name = _algorithm_name(algorithm)
    _check_torch_has(name)
    spec = ALGORITHMS[name]
    positions, groups = {}, []
    for g_index, group in enumerate(torch_state_dict["param_groups"]):
        decoupled = group.get("decoupled_weight_decay")
        if decoupled is not None and name in ("adam", "adamw") and bool(decoupled) != (
                name == "adamw"):
            other = "adamw" if decoupled else "adam"
            raise ValueError(f"param_groups[{g_index}]: decoupled_weight_decay={decoupled} is "
                             f"{other} state, not {name}; use algorithm={other!r}")
        start = len(positions)
        for i, param_id in enumerate(group["params"]):
            positions[param_id] = start + i
        hyper = {**spec.defaults}
        # Adam and AdamW tell decoupled_weight_decay by their class (checked above); NAdam and
        # RAdam take it as a hyperparameter.
        dropped = {"params", *_TORCH_EXECUTION_KEYS}
        if "decoupled_weight_decay" not in spec.defaults:
            dropped.add("decoupled_weight_decay")
        hyper.update((k, _torch_plain(v)) for k, v in group.items() if k not in dropped)
        for k, default in spec.defaults.items():  # betas, etas, step_sizes: tuples
            if isinstance(default, tuple) and isinstance(hyper.get(k), list):
                hyper[k] = tuple(hyper[k])
        groups.append({**hyper, "params": list(range(start, len(positions)))})
    state = {}
    for param_id, saved in torch_state_dict["state"].items():
        if param_id not in positions:
            raise ValueError(f"state: parameter id {param_id!r} is in no param group")
        where = f"state[{param_id!r}]"
        out = {"step": _torch_step(where, saved.get("step"), name)}
        for key, value in saved.items():
            if key == "step" or value is None:
                continue
            if key in spec.host_state:  # mu_product, eta, mu: Python floats in fastopt
                out[key] = float(_torch_plain(value))
                continue
            if key not in spec.state:
                raise ValueError(f"{where}: unknown state {key!r} for {name} (expected "
                                 f"{', '.join(spec.state)})")
            out[key] = _torch_array(value)
        state[positions[param_id]] = out
    return {"state": state, "param_groups": groups}


def _check_torch_has(name):
    if name not in _TORCH_CLASSES:
        raise ValueError(f"algorithm: torch.optim has no {name} optimizer (fastopt follows its "
                         f"paper), so there is no torch state dict to convert; the converters "
                         f"know {', '.join(_TORCH_CLASSES)}")


def _algorithm_name(algorithm):
    name = getattr(getattr(algorithm, "algorithm", None), "name", algorithm)
    if name not in ALGORITHMS:
        raise ValueError(f"algorithm: expected one of {', '.join(ALGORITHMS)} (or a fastopt "
                         f"optimizer), got {algorithm!r}")
    return name


def _torch_plain(value):
    """Python numbers for torch scalar tensors, recursively through tuples and lists."""
    if isinstance(value, (tuple, list)):
        return type(value)(_torch_plain(v) for v in value)
    if hasattr(value, "detach") and hasattr(value, "numel") and value.numel() == 1:
        return value.item()
    return value


def _torch_array(value):
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy().copy()
    return np.array(value, copy=True)


def _torch_step(where, value, name):
    if value is None:
        if name == "sgd":
            return 0
        raise ValueError(f"{where}: {name} state needs a 'step'")
    step = float(_torch_plain(value))
    if not (math.isfinite(step) and step >= 0 and step == int(step)):
        raise ValueError(f"{where}['step']: expected a whole number >= 0, got {step}")
    return int(step)
