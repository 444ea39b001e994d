"""Data for the MLP experiments without a network: the embedded 8x8 digits and MNIST-format files.

- :func:`load_digits`: the 1,797 8x8 handwritten digits shipped in ``fastopt/data/digits.npz``
  (the UCI "Optical Recognition of Handwritten Digits" test set as distributed by scikit-learn;
  source and licence in ``fastopt/data/README.md``), split into train and test sets reproducibly.
- :func:`load_idx`: one IDX file (the MNIST format), plain or gzipped, as a numpy array.
- :func:`load_mnist`: the four MNIST(-like) IDX files of a directory you provide.

Features come as float32 in [0, 1] (pixels divided by their maximum), labels as int64.
"""

import gzip
import os
from dataclasses import dataclass

import numpy as np

__all__ = ["Dataset", "load_digits", "load_idx", "save_idx", "load_mnist", "load",
           "train_test_split"]

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
DIGITS_PATH = os.path.join(DATA_DIR, "digits.npz")


@dataclass
class Dataset:
    """A train/test split: ``X_*`` float rows, ``y_*`` int64 labels, ``classes`` labels 0..k-1."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray

    @property
    def n_features(self):
        return self.X_train.shape[1]

    @property
    def classes(self):
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    def __repr__(self):
        return (f"Dataset({self.name!r}: {len(self.y_train)} train + {len(self.y_test)} test rows, "
                f"{self.n_features} features, {self.classes} classes)")


def train_test_split(X, y, test_fraction=0.2, seed=0):
    """Stratified split: a fraction ``test_fraction`` of every class goes to the test set, chosen by
    ``numpy.random.default_rng(seed)``; both parts keep a shuffled, reproducible order."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction: expected a value in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    test = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        rng.shuffle(members)
        test.append(members[:int(round(test_fraction * len(members)))])
    test = np.concatenate(test)
    is_test = np.zeros(len(y), bool)
    is_test[test] = True
    train = np.flatnonzero(~is_test)
    rng.shuffle(train)
    rng.shuffle(test)
    return X[train], y[train], X[test], y[test]


def load_digits(test_fraction=0.2, seed=0, dtype=np.float32):
    """The embedded 8x8 digits: 64 features in [0, 1] (pixel / 16) and labels 0..9, split
    stratified into train and test (``test_fraction=0.2`` gives 1,438 + 359 rows)."""
    with np.load(DIGITS_PATH) as f:
        images, labels = f["images"], f["labels"]
    X = (images.reshape(len(images), -1) / 16.0).astype(dtype)
    y = labels.astype(np.int64)
    return Dataset("digits", *train_test_split(X, y, test_fraction, seed))


# IDX type byte -> big-endian dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT")
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _open(path):
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def load_idx(path):
    """The array stored in an IDX file (plain or gzipped, detected from the content).

    Format: two zero bytes, a type byte (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), the number of dimensions, each dimension as a big-endian uint32,
    then the values, big-endian, row-major. Raises ``ValueError`` for a malformed file.
    """
    with _open(path) as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {data[:4].hex()})")
    dtype = np.dtype(_IDX_TYPES[data[2]])
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
    count = int(np.prod(shape, dtype=np.int64))
    if len(data) - header != count * dtype.itemsize:
        raise ValueError(f"{path}: IDX header announces shape {shape} ({count * dtype.itemsize} "
                         f"bytes) but the file holds {len(data) - header} bytes of data")
    return np.frombuffer(data, dtype, count, header).reshape(shape).astype(dtype.newbyteorder("="))


def save_idx(path, array):
    """Writes ``array`` as an IDX file (gzipped if ``path`` ends in ``.gz``)."""
    array = np.asarray(array)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_TYPES.items()}
    if array.dtype not in codes:
        raise TypeError(f"array: IDX cannot store dtype {array.dtype}")
    header = bytes([0, 0, codes[array.dtype], array.ndim])
    header += np.array(array.shape, ">u4").tobytes()
    body = array.astype(array.dtype.newbyteorder(">")).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + body)


_MNIST_STEMS = {
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


def _find(directory, stems):
    for stem in stems:
        for suffix in ("", ".gz"):
            path = os.path.join(directory, stem + suffix)
            if os.path.exists(path):
                return path
    raise FileNotFoundError(f"{directory}: no {stems[0]} (or .gz) file; a directory of MNIST "
                            "IDX files holds train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                            "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte")


def load_mnist(directory, dtype=np.float32, name="mnist"):
    """MNIST (or Fashion-MNIST, or any data set in its layout) from the four IDX files in
    ``directory``: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally ``.gz``.
    Images are flattened and divided by 255 (by their maximum for non-uint8 files)."""
    arrays = {key: load_idx(_find(directory, stems)) for key, stems in _MNIST_STEMS.items()}

    def features(images):
        flat = images.reshape(len(images), -1)
        top = 255.0 if images.dtype == np.uint8 else max(float(np.abs(flat).max()), 1.0)
        return (flat / top).astype(dtype)

    for part in ("train", "test"):
        n_images, n_labels = len(arrays[f"{part}_images"]), len(arrays[f"{part}_labels"])
        if n_images != n_labels:
            raise ValueError(f"{directory}: {n_images} {part} images but {n_labels} labels")
    return Dataset(name, features(arrays["train_images"]),
                   arrays["train_labels"].astype(np.int64), features(arrays["test_images"]),
                   arrays["test_labels"].astype(np.int64))


def load(source="digits", **kwargs):
    """``"digits"`` (embedded) or a directory of MNIST-format IDX files."""
    if source == "digits":
        return load_digits(**kwargs)
    if os.path.isdir(source):
        return load_mnist(source, **kwargs)
    raise ValueError(f"data: expected 'digits' or a directory of MNIST IDX files, got {source!r}")
