"""The data layer (googlenet_suite.data): idx and CIFAR readers, the restricted unpickler, download,
preprocess, batches and the synthetic set. No framework needed; tiny files made here; no internet
(downloads come from an http.server on 127.0.0.1)."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import io
import os
import pickle
import socket
import struct
import tarfile
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest

from googlenet_suite import data, resize



@pytest.fixture
def rng(request):
    """A generator seeded by the test's own id: what a test draws never depends on which tests ran first."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def _message(excinfo) -> str:
    text = str(excinfo.value)
    assert "\n" not in text, f"not one line: {text!r}"
    return text


# --------------------------------------------------------------------------- tiny files


def _idx(array: np.ndarray, *, dtype_code: int = 0x08, ndim: int | None = None, dims=None) -> bytes:
    ndim = array.ndim if ndim is None else ndim
    dims = array.shape if dims is None else dims
    return bytes([0, 0, dtype_code, ndim]) + b"".join(struct.pack(">I", d) for d in dims) + array.tobytes()


def _write_gz(path: Path, raw: bytes) -> Path:
    path.write_bytes(gzip.compress(raw))
    return path


def _fashion_arrays(n_train=6, n_test=4, seed=1234):
    rng = np.random.default_rng(seed)
    return {
        part: (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8))
        for part, n in (("train", n_train), ("t10k", n_test))
    }


def _write_fashion(folder: Path, arrays) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for part, (images, labels) in arrays.items():
        _write_gz(folder / f"{part}-images-idx3-ubyte.gz", _idx(images))
        _write_gz(folder / f"{part}-labels-idx1-ubyte.gz", _idx(labels))
    return folder


@pytest.fixture
def fashion(tmp_path):
    arrays = _fashion_arrays()
    return _write_fashion(tmp_path / "fashion", arrays), arrays


def _cifar_batch(n: int, seed: int = 1234) -> dict:
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"tiny batch", b"labels": [int(v) for v in rng.integers(0, 10, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * n}


def _py2_pickle(batch: dict) -> bytes:
    """A batch as Python 2's cPickle writes it (protocol 2, str as SHORT_BINSTRING/BINSTRING), by opcode."""
    def short(s: bytes) -> bytes:
        return b"U" + bytes([len(s)]) + s

    def binint(v: int) -> bytes:
        return b"J" + struct.pack("<i", v)

    x, labels = batch[b"data"], batch[b"labels"]
    array = (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + binint(0) + b"\x85" + short(b"b")
             + b"\x87R"  # _reconstruct(ndarray, (0,), 'b')
             + b"(" + binint(1) + binint(x.shape[0]) + binint(x.shape[1]) + b"\x86"
             + b"cnumpy\ndtype\n" + short(b"u1") + binint(0) + binint(1) + b"\x87R"
             + b"(" + binint(3) + short(b"|") + b"NNN" + binint(-1) + binint(-1) + binint(0) + b"tb"  # dtype state
             + b"\x89" + b"T" + struct.pack("<I", x.nbytes) + x.tobytes() + b"tb")  # array state
    items = short(b"data") + array + short(b"labels") + b"](" + b"".join(binint(v) for v in labels) + b"e"
    return b"\x80\x02}(" + items + short(b"batch_label") + short(batch[b"batch_label"]) + b"u."


def _write_cifar(folder: Path, n: int = 3, *, writer=lambda b: pickle.dumps(b, protocol=2)) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for name in (*data.CIFAR10_TRAIN_BATCHES, data.CIFAR10_TEST_BATCH):
        batches[name] = _cifar_batch(n)
        (folder / name).write_bytes(writer(batches[name]))
    return batches


# --------------------------------------------------------------------------- Fashion-MNIST


def test_fashion_mnist_loads_tiny_files(fashion):
    folder, arrays = fashion
    ds = data.load("fashion-mnist", folder)
    assert (ds.name, ds.num_classes, ds.channels, len(ds.classes)) == ("fashion-mnist", 10, 1, 10)
    assert ds.x_train.shape == (6, 1, 28, 28) and ds.x_train.dtype == np.uint8
    assert ds.x_test.shape == (4, 1, 28, 28) and ds.image_size == (28, 28)
    np.testing.assert_array_equal(ds.x_train[:, 0], arrays["train"][0])
    np.testing.assert_array_equal(ds.y_test, arrays["t10k"][1])
    assert ds.y_train.dtype == np.int64


def test_fashion_mnist_missing_file_names_the_exact_path(fashion):
    folder, _ = fashion
    missing = folder / "t10k-labels-idx1-ubyte.gz"
    missing.unlink()
    with pytest.raises(data.DatasetError) as err:
        data.load("fashion-mnist", folder)
    text = _message(err)
    assert f"missing {missing};" in text and "--download" in text
    assert all(name in text for name in data.FASHION_MNIST_FILES)  # says which four files go there


def test_fashion_mnist_empty_dir_names_the_first_file_and_the_count(tmp_path):
    with pytest.raises(data.DatasetError) as err:
        data.load("fashion-mnist", tmp_path)
    assert f"missing {tmp_path / 'train-images-idx3-ubyte.gz'} (and 3 more)" in _message(err)


@pytest.mark.parametrize("damage", ["truncated", "not gzip", "bad crc"])
def test_corrupt_gzip_is_one_line_naming_the_file(fashion, damage):
    folder, _ = fashion
    path = folder / "train-images-idx3-ubyte.gz"
    raw = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "not gzip":
        path.write_bytes(b"<html>not found</html>")
    else:
        path.write_bytes(raw[:-8] + bytes(b ^ 0xFF for b in raw[-8:-4]) + raw[-4:])
    with pytest.raises(data.DatasetError) as err:
        data.load("fashion-mnist", folder)
    text = _message(err)
    assert text.startswith(f"{path}: truncated or corrupt gzip file")


def test_wrong_magic(fashion):
    folder, arrays = fashion
    path = folder / "train-labels-idx1-ubyte.gz"
    _write_gz(path, _idx(arrays["train"][1], ndim=3, dims=(6, 1, 1)))  # claims 3 dimensions: an images header
    with pytest.raises(data.DatasetError) as err:
        data.read_idx(path, ndim=1)
    assert _message(err).startswith(f"{path}: bad magic number 0x00000803, expected 0x00000801")


def test_wrong_dtype_code(fashion):
    folder, arrays = fashion
    path = folder / "train-images-idx3-ubyte.gz"
    _write_gz(path, _idx(arrays["train"][0], dtype_code=0x0D))
    with pytest.raises(data.DatasetError) as err:
        data.load("fashion-mnist", folder)
    assert "dtype code 0x0d, expected 0x08" in _message(err) and str(path) in _message(err)


@pytest.mark.parametrize("delta", [-1, +1])
def test_payload_length_mismatch(fashion, delta):
    folder, arrays = fashion
    path = folder / "train-images-idx3-ubyte.gz"
    images = arrays["train"][0]
    _write_gz(path, _idx(images, dims=(len(images) + delta, 28, 28)))
    with pytest.raises(data.DatasetError) as err:
        data.load("fashion-mnist", folder)
    text = _message(err)
    assert text.startswith(f"{path}: payload is {images.nbytes} bytes")
    assert f"need {(len(images) + delta) * 784}" in text


def test_image_and_label_counts_must_match(fashion):
    folder, arrays = fashion
    _write_gz(folder / "t10k-labels-idx1-ubyte.gz", _idx(arrays["t10k"][1][:3]))
    with pytest.raises(data.DatasetError) as err:
        data.load("fashion-mnist", folder)
    text = _message(err)
    assert "t10k-images-idx3-ubyte.gz: 4 images but t10k-labels-idx1-ubyte.gz has 3 labels" in text


def test_labels_out_of_range(fashion):
    folder, _ = fashion
    _write_gz(folder / "train-labels-idx1-ubyte.gz", _idx(np.array([0, 1, 2, 3, 4, 12], dtype=np.uint8)))
    with pytest.raises(data.DatasetError) as err:
        data.load("fashion-mnist", folder)
    assert "label 12 out of range" in _message(err)


def test_images_must_be_28x28(fashion):
    folder, _ = fashion
    _write_gz(folder / "train-images-idx3-ubyte.gz", _idx(np.zeros((6, 32, 32), dtype=np.uint8)))
    with pytest.raises(data.DatasetError) as err:
        data.load("fashion-mnist", folder)
    assert "images are 32x32, expected 28x28" in _message(err)


# --------------------------------------------------------------------------- CIFAR-10


@pytest.mark.parametrize("writer", [
    pytest.param(_py2_pickle, id="python2-cpickle"),
    pytest.param(lambda b: pickle.dumps(b, protocol=2), id="protocol2"),
    pytest.param(lambda b: pickle.dumps(b, protocol=5), id="protocol5"),
])
def test_cifar10_loads_tiny_batches(tmp_path, writer):
    batches = _write_cifar(tmp_path / data.CIFAR10_FOLDER, n=3, writer=writer)
    ds = data.load("cifar10", tmp_path)
    assert (ds.name, ds.num_classes, ds.channels) == ("cifar10", 10, 3)
    assert ds.x_train.shape == (15, 3, 32, 32) and ds.x_train.dtype == np.uint8
    assert ds.x_test.shape == (3, 3, 32, 32) and ds.y_test.dtype == np.int64
    first = batches["data_batch_1"][b"data"][0]
    assert ds.x_train[0, 0, 0, 1] == first[1]  # red plane, row-major
    assert ds.x_train[0, 1, 0, 0] == first[1024]  # green plane
    assert ds.x_train[0, 2, 31, 31] == first[3071]
    np.testing.assert_array_equal(ds.x_train[12:], batches["data_batch_5"][b"data"].reshape(3, 3, 32, 32))
    assert ds.y_train.tolist() == sum((batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    assert ds.y_test.tolist() == batches["test_batch"][b"labels"]


def test_cifar10_accepts_the_batches_folder_itself(tmp_path):
    _write_cifar(tmp_path / data.CIFAR10_FOLDER)
    assert len(data.load("cifar10", tmp_path / data.CIFAR10_FOLDER).y_train) == 15


def test_cifar10_missing_batch_names_the_exact_path(tmp_path):
    _write_cifar(tmp_path / data.CIFAR10_FOLDER)
    missing = tmp_path / data.CIFAR10_FOLDER / "data_batch_4"
    missing.unlink()
    with pytest.raises(data.DatasetError) as err:
        data.load("cifar10", tmp_path)
    text = _message(err)
    assert f"missing {missing};" in text and "--download" in text and "cifar-10-python.tar.gz" in text


class _System:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class _Eval:
    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return eval, (self.code,)


@pytest.mark.parametrize("payload, refused", [
    (lambda marker: _System(f"touch {marker}"), f"{os.system.__module__}.system"),
    (lambda marker: _Eval(f"__import__('pathlib').Path({str(marker)!r}).touch()"), "builtins.eval"),
    (lambda marker: {b"data": np.zeros((1, 3072), np.uint8), b"labels": [_System(f"touch {marker}")]},
     f"{os.system.__module__}.system"),
], ids=["os.system", "eval", "nested in labels"])
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, payload, refused):
    folder = tmp_path / data.CIFAR10_FOLDER
    _write_cifar(folder)
    marker = tmp_path / "pwned"
    path = folder / "data_batch_2"
    path.write_bytes(pickle.dumps(payload(marker), protocol=4))  # protocol 2 would spell it __builtin__
    with pytest.raises(data.DatasetError) as err:
        data.load("cifar10", tmp_path)
    text = _message(err)
    assert text.startswith(f"{path}: refused to unpickle global {refused}")
    assert not marker.exists()


def test_codecs_encode_is_admitted_only_for_latin1(tmp_path):
    class Rot13:
        def __reduce__(self):
            return __import__("_codecs").encode, ("data", "rot13")

    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps(Rot13(), protocol=2))
    with pytest.raises(data.DatasetError) as err:
        data.read_cifar_batch(path)
    assert "refused _codecs.encode with encoding 'rot13'" in _message(err)


@pytest.mark.parametrize("content, expected", [
    ([1, 2, 3], "expected a dict with data and labels, found list"),
    ({b"data": np.zeros((2, 3072), np.uint8)}, "no 'labels' entry"),
    ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "data should be an N x 3072 uint8 array"),
    ({b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]}, "found shape (2, 1024)"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 images but 1 labels"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "label 10 out of range"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": "01"}, "labels should be a list of ints"),
], ids=["list", "no labels", "float data", "wrong width", "count", "label range", "labels str"])
def test_cifar10_wrong_contents(tmp_path, content, expected):
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps(content, protocol=2))
    with pytest.raises(data.DatasetError) as err:
        data.read_cifar_batch(path)
    text = _message(err)
    assert text.startswith(f"{path}: ") and expected in text


@pytest.mark.parametrize("raw", [b"", b"not a pickle at all", pickle.dumps(_cifar_batch(2), protocol=2)[:500]],
                         ids=["empty", "text", "truncated"])
def test_cifar10_unreadable_pickle(tmp_path, raw):
    path = tmp_path / "batch"
    path.write_bytes(raw)
    with pytest.raises(data.DatasetError) as err:
        data.read_cifar_batch(path)
    assert _message(err).startswith(f"{path}: not a readable CIFAR-10 batch")


# --------------------------------------------------------------------------- download


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A folder served over http on 127.0.0.1 (a free port); yields (folder, base_url)."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    folder = tmp_path / "served"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join()


def _patch_checksums(monkeypatch, folder: Path, names, *, algorithm="sha256"):
    for name in names:
        digest = hashlib.new(algorithm, (folder / name).read_bytes()).hexdigest()
        monkeypatch.setitem(data.CHECKSUMS, name, (algorithm, digest))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_download_fashion_mnist_then_load(served, tmp_path, monkeypatch, capsys):
    folder, url = served
    arrays = _fashion_arrays(n_train=5, n_test=3)
    _write_fashion(folder, arrays)
    _patch_checksums(monkeypatch, folder, data.FASHION_MNIST_FILES)
    dest = tmp_path / "dest"
    ds = data.load("fashion-mnist", dest, download=True, base_url=url, progress=False)
    assert sorted(p.name for p in dest.iterdir()) == sorted(data.FASHION_MNIST_FILES)  # no temp files left
    for name in data.FASHION_MNIST_FILES:
        assert (dest / name).read_bytes() == (folder / name).read_bytes()
    np.testing.assert_array_equal(ds.x_test[:, 0], arrays["t10k"][0])
    assert capsys.readouterr().err == ""  # progress=False: no bar
    # verified files are not fetched again: a dead server is never contacted
    assert data.download("fashion-mnist", dest, base_url=f"http://127.0.0.1:{_closed_port()}/") == dest


def test_download_shows_a_progress_bar(served, tmp_path, monkeypatch, capsys):
    folder, url = served
    _write_fashion(folder, _fashion_arrays())
    _patch_checksums(monkeypatch, folder, data.FASHION_MNIST_FILES)
    data.download("fashion-mnist", tmp_path / "dest", base_url=url, progress=True)
    assert "train-images-idx3-ubyte.gz" in capsys.readouterr().err


def test_download_checksum_mismatch_writes_nothing(served, tmp_path, monkeypatch):
    folder, url = served
    _write_fashion(folder, _fashion_arrays())
    _patch_checksums(monkeypatch, folder, data.FASHION_MNIST_FILES)
    wrong = "0" * 64
    monkeypatch.setitem(data.CHECKSUMS, "train-images-idx3-ubyte.gz", ("sha256", wrong))
    actual = hashlib.sha256((folder / "train-images-idx3-ubyte.gz").read_bytes()).hexdigest()
    dest = tmp_path / "dest"
    with pytest.raises(data.DatasetError) as err:
        data.download("fashion-mnist", dest, base_url=url, progress=False)
    text = _message(err)
    assert "checksum mismatch for train-images-idx3-ubyte.gz" in text
    assert f"expected sha256 {wrong}, got {actual}" in text
    assert list(dest.iterdir()) == []


def test_download_server_down_is_a_clear_error_and_writes_nothing(tmp_path, monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    url = f"http://127.0.0.1:{_closed_port()}/"
    dest = tmp_path / "dest"
    with pytest.raises(data.DatasetError) as err:
        data.download("fashion-mnist", dest, base_url=url, progress=False)
    text = _message(err)
    assert text.startswith(f"fashion-mnist: cannot download {url}train-images-idx3-ubyte.gz: ")
    assert "refused" in text.lower()
    assert list(dest.iterdir()) == []


def test_download_http_error_writes_nothing(served, tmp_path):
    _, url = served  # serves an empty folder: every file is a 404
    dest = tmp_path / "dest"
    with pytest.raises(data.DatasetError) as err:
        data.download("fashion-mnist", dest, base_url=url, progress=False)
    assert "HTTP 404" in _message(err)
    assert list(dest.iterdir()) == []


def _tar_gz(path: Path, files: dict[str, bytes], *, extra=()) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        for info in extra:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return path


def _cifar_archive(path: Path, *, extra=()) -> dict:
    batches = {name: _cifar_batch(2) for name in (*data.CIFAR10_TRAIN_BATCHES, data.CIFAR10_TEST_BATCH)}
    files = {f"{data.CIFAR10_FOLDER}/{name}": _py2_pickle(b) for name, b in batches.items()}
    files[f"{data.CIFAR10_FOLDER}/readme.html"] = b"<html></html>"
    _tar_gz(path, files, extra=extra)
    return batches


def test_download_cifar10_extracts_and_loads(served, tmp_path, monkeypatch):
    folder, url = served
    batches = _cifar_archive(folder / data.CIFAR10_ARCHIVE)
    _patch_checksums(monkeypatch, folder, [data.CIFAR10_ARCHIVE], algorithm="md5")
    dest = tmp_path / "dest"
    ds = data.load("cifar10", dest, download=True, base_url=url, progress=False)
    assert sorted(p.name for p in dest.iterdir()) == sorted([data.CIFAR10_ARCHIVE, data.CIFAR10_FOLDER])
    assert (dest / data.CIFAR10_FOLDER / "readme.html").is_file()
    assert ds.x_train.shape == (10, 3, 32, 32)
    assert ds.y_test.tolist() == batches["test_batch"][b"labels"]


def _member(name, kind=tarfile.REGTYPE, size=1, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size if kind == tarfile.REGTYPE else 0, linkname
    return info


@pytest.mark.parametrize("member, expected", [
    (_member("../evil"), "unsafe member '../evil'"),
    (_member(f"{data.CIFAR10_FOLDER}/../../evil"), "unsafe member"),
    (_member("/tmp/googlenet-suite-evil"), "unsafe member '/tmp/googlenet-suite-evil'"),
    (_member(f"{data.CIFAR10_FOLDER}/link", tarfile.SYMTYPE, linkname="/etc/passwd"), "not a plain file or folder"),
], ids=["dotdot", "dotdot inside", "absolute", "symlink"])
def test_download_cifar10_refuses_unsafe_archives(served, tmp_path, monkeypatch, member, expected):
    folder, url = served
    _cifar_archive(folder / data.CIFAR10_ARCHIVE, extra=[member])
    _patch_checksums(monkeypatch, folder, [data.CIFAR10_ARCHIVE], algorithm="md5")
    dest = tmp_path / "a" / "dest"
    with pytest.raises(data.DatasetError) as err:
        data.download("cifar10", dest, base_url=url, progress=False)
    assert expected in _message(err) and data.CIFAR10_ARCHIVE in _message(err)
    assert [p.name for p in dest.iterdir()] == [data.CIFAR10_ARCHIVE]  # nothing extracted
    assert not (tmp_path / "a" / "evil").exists() and not (tmp_path / "evil").exists()
    assert not Path("/tmp/googlenet-suite-evil").exists()


def test_download_unknown_name():
    with pytest.raises(data.DatasetError) as err:
        data.download("synthetic", "/nonexistent")
    assert "nothing to download for 'synthetic'" in _message(err)


def test_recorded_checksums_cover_every_remote_file():
    for name, files in data.REMOTE_FILES.items():
        for filename in files:
            algorithm, digest = data.CHECKSUMS[filename]
            assert algorithm in ("md5", "sha256") and len(digest) == hashlib.new(algorithm).digest_size * 2
            int(digest, 16)


# --------------------------------------------------------------------------- preprocess


def test_preprocess_constant_image_stays_constant():
    x = np.full((2, 3, 28, 28), 200, dtype=np.uint8)
    y = data.preprocess(x, resize=96)
    assert y.shape == (2, 3, 96, 96) and y.dtype == np.float32
    assert np.all(y == np.float32(200) / np.float32(255))


def test_preprocess_range_and_no_resize(rng):
    x = rng.integers(0, 256, (3, 1, 28, 28), dtype=np.uint8)
    y = data.preprocess(x, resize=28)
    np.testing.assert_array_equal(y, x.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(data.preprocess(x, resize=None), y)
    up = data.preprocess(x, resize=96)
    assert up.min() >= 0.0 and up.max() <= 1.0


def test_preprocess_known_2x2_upscale():
    x = np.array([[[[0, 255], [255, 0]]]], dtype=np.uint8)
    expected = np.array([[0.00, 0.25, 0.75, 1.00],
                         [0.25, 0.375, 0.625, 0.75],
                         [0.75, 0.625, 0.375, 0.25],
                         [1.00, 0.75, 0.25, 0.00]], dtype=np.float32)
    np.testing.assert_allclose(data.preprocess(x, resize=4)[0, 0], expected, rtol=0, atol=1e-7)


def test_preprocess_known_4x4_downscale_averages_pairs():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4) / 15
    expected = np.array([[2.5, 4.5], [10.5, 12.5]], dtype=np.float32) / 15
    np.testing.assert_allclose(data.preprocess(x, resize=2)[0, 0], expected, rtol=0, atol=1e-7)


def test_preprocess_chunks_give_the_same_numbers(monkeypatch, rng):
    x = rng.integers(0, 256, (7, 3, 32, 32), dtype=np.uint8)
    whole = data.preprocess(x, resize=40)
    monkeypatch.setattr(resize, "_RESIZE_CHUNK", 3)  # googlenet_suite/resize.py, where preprocess lives
    np.testing.assert_array_equal(data.preprocess(x, resize=40), whole)
    np.testing.assert_array_equal(data.preprocess(x[5:6], resize=40), whole[5:6])


@pytest.mark.parametrize("bad, match", [
    (dict(x=np.zeros((3, 28, 28), np.uint8), resize=96), "N x C x H x W"),
    (dict(x=np.zeros((1, 1, 28, 28), np.int32), resize=96), "uint8 or float"),
    (dict(x=np.zeros((1, 1, 28, 28), np.uint8), resize=0), "resize=0"),
])
def test_preprocess_bad_arguments(bad, match):
    with pytest.raises(ValueError, match=match):
        data.preprocess(bad["x"], resize=bad["resize"])


@pytest.mark.torch
@pytest.mark.parametrize("size_in, size_out", [(28, 96), (32, 96), (96, 40), (5, 7)])
def test_preprocess_matches_torch_bilinear(size_in, size_out, rng):
    torch = pytest.importorskip("torch")
    x = rng.integers(0, 256, (2, 3, size_in, size_in), dtype=np.uint8)
    ours = data.preprocess(x, resize=size_out)
    theirs = torch.nn.functional.interpolate(torch.from_numpy(x.astype(np.float32) / 255), size=(size_out, size_out),
                                             mode="bilinear", align_corners=False, antialias=False).numpy()
    # torch computes the source coordinates in float32, we in float64. A coordinate near size_in is off by a few
    # float32 ulps of size_in, and a pixel step moves the value by at most 1, so the gap is bounded by size_in * 2^-21
    # (4.6e-5 at 96; seen: 1.0e-5 at 96 -> 40)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=size_in * 2.0 ** -21)


# --------------------------------------------------------------------------- batches


def test_batches_cover_every_example_once_per_epoch():
    ds = data.synthetic(10, 2, channels=1, size=4, num_classes=2, seed=0)
    got = list(data.batches(ds, 4, shuffle=True, seed=3, epoch=1))
    assert [len(b) for b in got] == [4, 4, 2] and all(b.dtype == np.int64 for b in got)
    assert sorted(np.concatenate(got).tolist()) == list(range(10))


def test_batches_are_deterministic_and_change_per_epoch_and_seed():
    def order(seed, epoch):
        return np.concatenate(list(data.batches(1000, 64, shuffle=True, seed=seed, epoch=epoch)))

    np.testing.assert_array_equal(order(0, 1), order(0, 1))
    assert not np.array_equal(order(0, 1), order(0, 2))
    assert not np.array_equal(order(0, 1), order(1, 1))
    assert not np.array_equal(order(0, 1), np.arange(1000))


def test_batches_without_shuffle_are_in_order():
    assert np.concatenate(list(data.batches(7, 3, shuffle=False))).tolist() == list(range(7))


def test_batches_bad_size():
    with pytest.raises(ValueError, match="batch_size=0"):
        data.batches(10, 0, shuffle=True)  # checked when called, not at the first batch


# --------------------------------------------------------------------------- synthetic and load


def test_synthetic_is_deterministic():
    a = data.synthetic(50, 20, channels=3, size=16, num_classes=4, seed=7)
    b = data.synthetic(50, 20, channels=3, size=16, num_classes=4, seed=7)
    c = data.synthetic(50, 20, channels=3, size=16, num_classes=4, seed=8)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.x_train, c.x_train)
    assert a.x_train.shape == (50, 3, 16, 16) and a.x_train.dtype == np.uint8 and a.y_train.dtype == np.int64
    assert (a.num_classes, a.channels) == (4, 3) and set(a.y_train.tolist()) <= set(range(4))


def test_synthetic_is_learnable():
    ds = data.synthetic(400, 200, channels=1, size=12, num_classes=10, seed=0)
    x = data.preprocess(ds.x_train, resize=None).reshape(400, -1)
    xt = data.preprocess(ds.x_test, resize=None).reshape(200, -1)
    means = np.stack([x[ds.y_train == k].mean(axis=0) for k in range(10)])
    nearest = ((xt[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert (nearest == ds.y_test).mean() > 0.9

    def loss_and_grad(w):
        logits = (x - 0.5) @ w
        logits -= logits.max(1, keepdims=True)
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        loss = -np.log(p[np.arange(len(x)), ds.y_train]).mean()
        p[np.arange(len(x)), ds.y_train] -= 1
        return loss, (x - 0.5).T @ p / len(x)

    w = np.zeros((x.shape[1], 10))
    first, _ = loss_and_grad(w)
    for _ in range(5):
        w -= 0.5 * loss_and_grad(w)[1]
    assert loss_and_grad(w)[0] < 0.8 * first


def test_synthetic_bad_arguments():
    with pytest.raises(ValueError, match="num_classes=1"):
        data.synthetic(10, 10, channels=1, size=8, num_classes=1, seed=0)


def test_load_synthetic_and_dataset_is_frozen():
    ds = data.load("synthetic", None)
    assert ds.x_train.shape == (data.SYNTHETIC_DEFAULTS["n_train"], 1, 28, 28) and ds.num_classes == 10
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.num_classes = 3
    cut = dataclasses.replace(ds, x_train=ds.x_train[:5], y_train=ds.y_train[:5])
    assert len(cut.x_train) == 5 and len(ds.x_train) == data.SYNTHETIC_DEFAULTS["n_train"]


def test_load_unknown_name_lists_the_known_ones():
    with pytest.raises(data.DatasetError) as err:
        data.load("imagenet", None)
    assert "'imagenet'" in _message(err) and "fashion-mnist, cifar10, synthetic" in _message(err)


def test_default_data_dir_follows_the_environment(tmp_path, monkeypatch, fashion):
    folder, _ = fashion
    monkeypatch.setenv(data.DATA_DIR_ENV, str(folder))
    assert data.default_data_dir() == folder
    assert len(data.load("fashion-mnist").y_train) == 6
