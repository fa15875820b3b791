"""The data sets ``googlenet-suite train`` uses, framework-free: numpy and the standard library (tqdm for downloads).

* Fashion-MNIST from its four standard idx files (``train-images-idx3-ubyte.gz`` …), parsed here,
* CIFAR-10 from its python batches (``cifar-10-batches-py/data_batch_1`` …), read with an unpickler
  that admits only the globals those files need,
* a synthetic set that needs no files (class-dependent patterns plus noise; ``train`` learns it with
  googlenet, see ``synthetic``),
* ``download``: the official files, checked against their published checksums, written atomically,
* ``preprocess``: uint8 to float32 in [0, 1], bilinear resize in numpy, and ``batches``: a seeded order
  per epoch. Both live here, once, so the three frameworks see the same pixels in the same order.

Every image array is channels-first (N x C x H x W). Everything wrong with the files on disk is a
``DatasetError``: one line that names the file and what is wrong (the CLI prints it, exit code 2).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from shared_spec.errors import InputError

from .resize import preprocess, resize_bilinear

DATASETS = ("fashion-mnist", "cifar10", "synthetic")

FASHION_MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                       "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# Where ``download`` fetches from: the data sets' own official locations.
BASE_URLS = {
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",  # no https on this S3 endpoint
    "cifar10": "https://www.cs.toronto.edu/~kriz/",
}
REMOTE_FILES = {"fashion-mnist": FASHION_MNIST_FILES, "cifar10": (CIFAR10_ARCHIVE,)}

# (algorithm, hex digest) of each downloaded file, as its publisher gives it. The integrity check the
# plain-http Fashion-MNIST download relies on.
CHECKSUMS = {
    # github.com/zalandoresearch/fashion-mnist README, "Get the Data" table (MD5 Checksum column)
    "train-images-idx3-ubyte.gz": ("md5", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    "train-labels-idx1-ubyte.gz": ("md5", "25c81989df183df01b3e8a0aad5dffbe"),
    "t10k-images-idx3-ubyte.gz": ("md5", "bef4ecab320f06d8554ea6380940ec79"),
    "t10k-labels-idx1-ubyte.gz": ("md5", "bb300cfdad3c16e7a12a480ee83cd310"),
    # www.cs.toronto.edu/~kriz/cifar.html, "CIFAR-10 python version" row (md5sum column)
    CIFAR10_ARCHIVE: ("md5", "c58f30108f718f92721af3b95e74349a"),
}

SYNTHETIC_DEFAULTS = dict(n_train=2000, n_test=500, channels=1, size=28, num_classes=10, seed=0)
DATA_DIR_ENV = "GOOGLENET_SUITE_DATA"

_IDX_UBYTE = 0x08
_DOWNLOAD_BLOCK = 1 << 16


class DatasetError(InputError):
    """A data set that cannot be read or fetched: one line naming the file and what is wrong (exit code 2)."""


@dataclass(frozen=True, slots=True)
class Dataset:
    """A classification data set, images channels-first: ``x_*`` is N x C x H x W (uint8), ``y_*`` is N (int64)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    channels: int
    classes: tuple[str, ...] = ()

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.x_train.shape[2:])


# --------------------------------------------------------------------------- loading


def load(name: str, data_dir: str | os.PathLike | None = None, *, download: bool = False,
         base_url: str | None = None, progress: bool = True) -> Dataset:
    """``fashion-mnist``, ``cifar10`` (from ``data_dir``, default ``default_data_dir()``) or ``synthetic``.

    With ``download=True`` a data set whose files are missing is fetched into ``data_dir`` first."""
    if name == "synthetic":
        return synthetic(**SYNTHETIC_DEFAULTS)
    if name not in DATASETS:
        raise DatasetError(f"unknown data set {name!r}; expected one of {', '.join(DATASETS)}")
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if download and _missing(name, root):
        _download(name, root, base_url=base_url, progress=progress)
    return load_fashion_mnist(root) if name == "fashion-mnist" else load_cifar10(root)


def default_data_dir() -> Path:
    """``$GOOGLENET_SUITE_DATA``, else ``~/.cache/googlenet-suite/data``."""
    return Path(os.environ.get(DATA_DIR_ENV) or Path.home() / ".cache" / "googlenet-suite" / "data")


def _missing(name: str, root: Path) -> list[Path]:
    if name == "fashion-mnist":
        return [root / f for f in FASHION_MNIST_FILES if not (root / f).is_file()]
    folder = _cifar_folder(root)
    return [folder / f for f in (*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH) if not (folder / f).is_file()]


def _cifar_folder(root: Path) -> Path:
    """``root/cifar-10-batches-py``, or ``root`` itself when it is that folder."""
    if not (root / CIFAR10_FOLDER).is_dir() and (root / CIFAR10_TRAIN_BATCHES[0]).is_file():
        return root
    return root / CIFAR10_FOLDER


def load_fashion_mnist(data_dir: str | os.PathLike) -> Dataset:
    """Fashion-MNIST from the four standard idx files directly in ``data_dir``: N x 1 x 28 x 28 uint8."""
    root = Path(data_dir)
    missing = _missing("fashion-mnist", root)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DatasetError(f"fashion-mnist: missing {missing[0]}{more}; put the four standard files "
                           f"({', '.join(FASHION_MNIST_FILES)}) in {root} or pass --download")
    split = {}
    for part in ("train", "t10k"):
        images_file, labels_file = root / f"{part}-images-idx3-ubyte.gz", root / f"{part}-labels-idx1-ubyte.gz"
        images, labels = read_idx(images_file, ndim=3), read_idx(labels_file, ndim=1)
        if images.shape[1:] != (28, 28):
            raise DatasetError(f"{images_file}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28")
        if len(images) != len(labels):
            raise DatasetError(f"{images_file}: {len(images)} images but {labels_file.name} has {len(labels)} labels")
        _check_labels(labels_file, labels, len(FASHION_MNIST_CLASSES))
        split[part] = (images[:, None], labels.astype(np.int64))  # N x 1 x 28 x 28
    return Dataset("fashion-mnist", *split["train"], *split["t10k"], num_classes=10, channels=1,
                   classes=FASHION_MNIST_CLASSES)


def read_idx(path: str | os.PathLike, *, ndim: int) -> np.ndarray:
    """An unsigned-byte idx array (the MNIST format) from a gzip file: ``ndim`` big-endian dimensions.

    Checks the magic number (two zero bytes, the dtype code 0x08, the number of dimensions) and that
    the payload holds exactly the product of the dimensions in bytes."""
    path = Path(path)
    raw = _gunzip(path)
    header = 4 + 4 * ndim
    if len(raw) < 4:
        raise DatasetError(f"{path}: {len(raw)} bytes, too short for an idx file")
    expected_magic = (_IDX_UBYTE << 8) | ndim
    magic = int.from_bytes(raw[:4], "big")
    if raw[:2] != b"\0\0" or raw[3] != ndim:
        raise DatasetError(f"{path}: bad magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
                           f"(an idx file of unsigned bytes with {ndim} dimension{'s' if ndim > 1 else ''})")
    if raw[2] != _IDX_UBYTE:
        raise DatasetError(f"{path}: idx dtype code 0x{raw[2]:02x}, expected 0x{_IDX_UBYTE:02x} (unsigned byte)")
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated idx header ({len(raw)} bytes, expected {header})")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    payload = len(raw) - header
    if payload != int(np.prod(dims, dtype=np.int64)):
        raise DatasetError(f"{path}: payload is {payload} bytes, but the header's dimensions "
                           f"{'x'.join(map(str, dims))} need {int(np.prod(dims, dtype=np.int64))}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def _gunzip(path: Path) -> bytes:
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path}: truncated or corrupt gzip file ({_one_line(exc)})") from None


def _check_labels(path: Path, labels: np.ndarray, num_classes: int) -> None:
    if len(labels) and int(labels.max()) >= num_classes:
        raise DatasetError(f"{path}: label {int(labels.max())} out of range; expected 0..{num_classes - 1}")


def load_cifar10(data_dir: str | os.PathLike) -> Dataset:
    """CIFAR-10 from ``data_dir/cifar-10-batches-py/`` (the python version): N x 3 x 32 x 32 uint8."""
    root = Path(data_dir)
    missing = _missing("cifar10", root)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DatasetError(f"cifar10: missing {missing[0]}{more}; extract {CIFAR10_ARCHIVE} (the python version) "
                           f"so that {root / CIFAR10_FOLDER} holds data_batch_1..5 and test_batch, "
                           f"or pass --download")
    folder = _cifar_folder(root)
    train = [read_cifar_batch(folder / f) for f in CIFAR10_TRAIN_BATCHES]
    x_test, y_test = read_cifar_batch(folder / CIFAR10_TEST_BATCH)
    return Dataset("cifar10", np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]),
                   x_test, y_test, num_classes=10, channels=3, classes=CIFAR10_CLASSES)


def read_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch: images N x 3 x 32 x 32 uint8 and labels N int64.

    The file is a pickle; it is read with ``_BatchUnpickler``, which refuses every global but numpy's
    array reconstruction, so a tampered file cannot run code."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            batch = _BatchUnpickler(f, path).load()
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except DatasetError:
        raise
    except Exception as exc:  # a damaged pickle raises almost anything: UnpicklingError, EOFError, ValueError…
        raise DatasetError(f"{path}: not a readable CIFAR-10 batch ({type(exc).__name__}: {_one_line(exc)})") from None
    if not isinstance(batch, dict):
        raise DatasetError(f"{path}: expected a dict with data and labels, found {type(batch).__name__}")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    for key in ("data", "labels"):
        if key not in batch:
            raise DatasetError(f"{path}: no {key!r} entry (keys: {', '.join(map(str, batch))})")
    x, labels = batch["data"], batch["labels"]
    if not (isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 2 and x.shape[1] == 3 * 32 * 32):
        found = f"shape {x.shape} dtype {x.dtype}" if isinstance(x, np.ndarray) else type(x).__name__
        raise DatasetError(f"{path}: data should be an N x 3072 uint8 array, found {found}")
    if not (isinstance(labels, list) and all(isinstance(v, int) for v in labels)):
        raise DatasetError(f"{path}: labels should be a list of ints, found {type(labels).__name__}")
    if len(labels) != len(x):
        raise DatasetError(f"{path}: {len(x)} images but {len(labels)} labels")
    y = np.asarray(labels, dtype=np.int64)
    if len(y) and (y.min() < 0 or y.max() >= 10):
        raise DatasetError(f"{path}: label {int(y.min() if y.min() < 0 else y.max())} out of range; expected 0..9")
    return x.reshape(-1, 3, 32, 32), y  # rows are the red, green and blue planes, row-major: already N x C x H x W


def _latin1_encode(text, encoding="latin1"):
    """``_codecs.encode`` as protocol-2 pickles written by Python 3 use it for bytes, and only that use."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


class _BatchUnpickler(pickle.Unpickler):
    """Admits the globals a CIFAR-10 batch needs (numpy's array and dtype reconstruction) and nothing else.

    dict, list, bytes, str and int come from pickle opcodes, not globals. The official files are Python 2
    pickles (``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype``); the last two
    entries admit the same arrays pickled by Python 3 (protocol 2 bytes, protocol 5 buffers)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): np.core.multiarray._reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.numeric", "_frombuffer"): np.core.numeric._frombuffer,
        ("numpy._core.multiarray", "_reconstruct"): np.core.multiarray._reconstruct,  # numpy 2's spelling
        ("numpy._core.numeric", "_frombuffer"): np.core.numeric._frombuffer,
        ("_codecs", "encode"): _latin1_encode,
    }

    def __init__(self, file, path: Path):
        super().__init__(file, encoding="bytes")  # as the CIFAR page says: keys are b"data", b"labels"
        self.path = path

    def find_class(self, module, name):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise DatasetError(f"{self.path}: refused to unpickle global {module}.{name}; a CIFAR-10 batch "
                               f"holds only numpy arrays, lists and bytes (a damaged or tampered file?)") from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --------------------------------------------------------------------------- synthetic


def synthetic(n_train: int, n_test: int, *, channels: int, size: int, num_classes: int, seed: int) -> Dataset:
    """A generated data set that needs no files, the same for the same arguments.

    Each class has a smooth pattern per channel (4x4 Gaussian noise resized bilinearly to ``size``); an
    example is its class's pattern plus pixel noise, as uint8. Nearest-class-mean gets almost all of the
    test set right. With the defaults (``SYNTHETIC_DEFAULTS``: 2000 training and 500 test images, 1 x 28 x 28,
    10 classes) ``train --data synthetic --resize 32 --batch 32`` (googlenet, SGD at lr 0.025) passes 0.9 test
    accuracy within the first epoch, in every framework (docs/teaching.md); d2l's network, without BatchNorm,
    stays at chance for the first epochs, as it does on Fashion-MNIST."""
    for key, value, low in (("n_train", n_train, 1), ("n_test", n_test, 1), ("channels", channels, 1),
                            ("size", size, 1), ("num_classes", num_classes, 2), ("seed", seed, 0)):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"synthetic: {key} must be an integer >= {low}. Received: {key}={value!r}")
    rng = np.random.default_rng(seed)
    patterns = resize_bilinear(rng.normal(size=(num_classes, channels, 4, 4)).astype(np.float32), size)
    patterns = 128.0 + 60.0 * patterns  # classes x C x size x size

    def draw(n):
        y = rng.integers(0, num_classes, size=n)
        x = patterns[y] + rng.normal(scale=30.0, size=(n, channels, size, size))
        return np.clip(np.rint(x), 0, 255).astype(np.uint8), y.astype(np.int64)

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    return Dataset("synthetic", x_train, y_train, x_test, y_test, num_classes=num_classes, channels=channels,
                   classes=tuple(f"class {k}" for k in range(num_classes)))


# --------------------------------------------------------------------------- preprocessing and batches


def batches(ds: Dataset | int, batch_size: int, *, shuffle: bool, seed: int = 0,
            epoch: int = 0) -> Iterator[np.ndarray]:
    """Index arrays (int64) of consecutive batches over ``ds``'s training set (or ``range(ds)`` for an int).

    With ``shuffle`` the order is a permutation drawn from ``np.random.default_rng([seed, epoch])``: the
    same for the same (seed, epoch) on every machine and framework, another one each epoch. Every example
    appears once per epoch; the last batch is smaller when the size does not divide evenly."""
    n = ds if isinstance(ds, (int, np.integer)) else len(ds.y_train)
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batches: batch_size must be an integer >= 1. Received: batch_size={batch_size!r}")
    if seed < 0 or epoch < 0:
        raise ValueError(f"batches: seed and epoch must be >= 0. Received: seed={seed}, epoch={epoch}")
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n, dtype=np.int64)
    return (order[start:start + batch_size] for start in range(0, n, batch_size))


# --------------------------------------------------------------------------- download


def download(name: str, data_dir: str | os.PathLike | None = None, *, base_url: str | None = None,
             progress: bool = True) -> Path:
    """Fetch ``name``'s official files into ``data_dir`` and check them against ``CHECKSUMS``. Returns ``data_dir``.

    Fashion-MNIST: the four idx files. CIFAR-10: ``cifar-10-python.tar.gz``, then its batches extracted
    to ``data_dir/cifar-10-batches-py/`` (only plain files under that folder; any absolute, ``..`` or
    link member refuses the archive). A file already there with the right checksum is not fetched again.
    Each file is written to a temporary name and renamed when complete and verified, so a failure leaves
    nothing half-written. ``base_url`` replaces the official host (tests serve files locally)."""
    if name not in REMOTE_FILES:
        raise DatasetError(f"nothing to download for {name!r}; downloadable: {', '.join(REMOTE_FILES)}")
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    root.mkdir(parents=True, exist_ok=True)
    base = base_url or BASE_URLS[name]
    base = base if base.endswith("/") else base + "/"
    for filename in REMOTE_FILES[name]:
        target = root / filename
        if target.is_file() and _digest(target, CHECKSUMS[filename][0]) == CHECKSUMS[filename][1]:
            continue
        _fetch(name, base + filename, target, progress=progress)
    if name == "cifar10":
        _extract_cifar(root / CIFAR10_ARCHIVE, root)
    return root


_download = download  # ``load`` has a ``download`` flag that hides the function


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fetch(name: str, url: str, target: Path, *, progress: bool) -> None:
    """``url`` to ``target``, atomically, checking its checksum on the way."""
    from tqdm import tqdm  # only a download needs it

    algorithm, expected = CHECKSUMS[target.name]
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        h = hashlib.new(algorithm)
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    total = int(response.headers.get("Content-Length") or 0) or None
                    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=target.name,
                              disable=not progress, leave=False) as bar:
                        for block in iter(lambda: response.read(_DOWNLOAD_BLOCK), b""):
                            out.write(block)
                            h.update(block)
                            bar.update(len(block))
            except urllib.error.HTTPError as exc:
                raise DatasetError(f"{name}: cannot download {url}: HTTP {exc.code} {exc.reason}") from None
            except urllib.error.URLError as exc:
                raise DatasetError(f"{name}: cannot download {url}: {_one_line(exc.reason)}") from None
            except OSError as exc:  # connection reset, timeout, disk full
                raise DatasetError(f"{name}: cannot download {url}: {_one_line(exc)}") from None
        actual = h.hexdigest()
        if actual != expected:
            raise DatasetError(f"{name}: checksum mismatch for {target.name} from {url}: expected {algorithm} "
                               f"{expected}, got {actual}; nothing was written")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _extract_cifar(archive: Path, root: Path) -> None:
    """The batches of ``cifar-10-python.tar.gz`` into ``root/cifar-10-batches-py/``, each file atomically."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for m in members:
                parts = Path(m.name).parts
                if m.name.startswith(("/", "\\")) or Path(m.name).is_absolute() or ".." in parts:
                    raise DatasetError(f"{archive}: refusing to extract unsafe member {m.name!r}")
                if not (m.isfile() or m.isdir()):
                    raise DatasetError(f"{archive}: refusing to extract {m.name!r} (not a plain file or folder)")
            wanted = [m for m in members if m.isfile() and Path(m.name).parts[:1] == (CIFAR10_FOLDER,)
                      and len(Path(m.name).parts) == 2]
            names = {Path(m.name).name for m in wanted}
            absent = [f for f in (*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH) if f not in names]
            if absent:
                raise DatasetError(f"{archive}: no {CIFAR10_FOLDER}/{absent[0]} in the archive")
            folder = root / CIFAR10_FOLDER
            folder.mkdir(exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=".cifar-10-extract.", dir=root) as tmp:
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(tmp, members=wanted, filter="data")
                else:  # members checked above: plain files under one folder
                    tar.extractall(tmp, members=wanted)
                for m in wanted:
                    os.replace(Path(tmp) / m.name, folder / Path(m.name).name)
    except DatasetError:
        raise
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{archive}: cannot extract ({type(exc).__name__}: {_one_line(exc)})") from None
