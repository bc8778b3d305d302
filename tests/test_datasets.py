"""Tests for sklearn_cpvae.datasets.

Everything runs offline: make_grassy_mnist gets synthetic arrays, and the
fetchers parse small files written here in the original formats. Tests that
read the project's shared data skip when it is absent.
"""

import gzip
import hashlib
import io
import os
import pickle
import struct
import sys
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest

from sklearn_cpvae import datasets
from sklearn_cpvae.datasets import (
    _base,
    _grassy_mnist,
    _images,
    _tabular,
    fetch_cifar10,
    fetch_fashion_mnist,
    fetch_heart_disease,
    fetch_mice_protein,
    fetch_mnist,
    fetch_wine_quality,
    get_data_home,
    load_grass_backgrounds,
    load_grassy_mnist,
    load_shared_npz,
    make_grassy_mnist,
    population_names,
)


def _shared_data_dir():
    env = os.environ.get(datasets.DATA_HOME_ENV)
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data")
    for path in candidates:
        if (path / "mnist" / "mnist.npz").exists():
            return path
    return None


SHARED = _shared_data_dir()
needs_shared = pytest.mark.skipif(SHARED is None, reason="shared/data folder not available")


@pytest.fixture
def synthetic():
    rng = np.random.default_rng(0)
    return {
        "digits": rng.integers(0, 256, size=(60, 28, 28), dtype=np.uint8),
        "labels": np.arange(60) % 10,
        "photos": rng.integers(0, 256, size=(6, 40, 36), dtype=np.uint8),
    }


# --------------------------------------------------------------------------- Grassy-MNIST


def test_make_grassy_mnist_shapes_dtypes_and_ranges(synthetic):
    X, y, digit, X_bg = make_grassy_mnist(
        synthetic["digits"],
        synthetic["labels"],
        synthetic["photos"],
        n_background=7,
        return_background=True,
        random_state=0,
    )
    assert X.shape == (60, 784) and X.dtype == np.float32
    assert X_bg.shape == (7, 784) and X_bg.dtype == np.float32
    assert y.dtype == np.int64 and digit.dtype == np.int64
    # Not clipped: grass in [0, 1] plus at most 0.25 of ink.
    assert X.min() >= 0 and X.max() <= 1.25 + 1e-6 and X.max() > 1
    assert X_bg.min() >= 0 and X_bg.max() <= 1
    np.testing.assert_array_equal(digit, synthetic["labels"])


def test_population_split(synthetic):
    _, y, digit = make_grassy_mnist(
        synthetic["digits"], synthetic["labels"], synthetic["photos"], random_state=0
    )
    np.testing.assert_array_equal(y, (digit >= 5).astype(int))
    assert set(y[digit < 5]) == {0}

    _, y, digit = make_grassy_mnist(
        synthetic["digits"],
        synthetic["labels"],
        synthetic["photos"],
        populations=[(7,), (1, 3)],
        random_state=0,
    )
    assert set(digit) == {1, 3, 7}
    np.testing.assert_array_equal(y, np.where(digit == 7, 0, 1))


def test_recipe_digit_term_and_photo_halves():
    rng = np.random.default_rng(1)
    digits = rng.integers(0, 256, size=(20, 784), dtype=np.uint8)
    # Each photo is constant, so a crop reveals which photo it came from.
    photos = np.repeat(np.arange(10, 110, 10, dtype=np.uint8), 30 * 30).reshape(10, 30, 30)
    X, _, _, X_bg = make_grassy_mnist(
        digits, np.zeros(20), photos, digit_scale=0.5, return_background=True, random_state=3
    )
    grass = X - np.float32(0.5) * digits.astype(np.float32) / np.float32(255)
    target_values = set(np.round(grass * 255).ravel().astype(int))
    background_values = set(np.round(X_bg * 255).ravel().astype(int))
    assert np.allclose(grass, grass[:, :1], atol=1e-5)  # one photo per target image
    assert target_values.isdisjoint(background_values)  # the two halves share no photo
    assert len(target_values | background_values) <= 10


def test_crops_are_contiguous_windows():
    # Photo value encodes (photo, row, col); float input keeps it exact enough.
    p, r, c = np.meshgrid(np.arange(3), np.arange(50), np.arange(45), indexing="ij")
    photos = (p * 10000 + r * 100 + c).astype(np.float64)
    _, _, _, X_bg = make_grassy_mnist(
        np.zeros((40, 28, 28)), np.zeros(40), photos, return_background=True, random_state=0
    )
    codes = np.round(X_bg.astype(np.float64) * 255).astype(int).reshape(-1, 28, 28)
    expected = codes[:, :1, :1] + 100 * np.arange(28)[:, None] + np.arange(28)[None, :]
    np.testing.assert_array_equal(codes, expected)
    assert (codes[:, -1, -1] % 100 <= 44).all() and (codes[:, -1, -1] // 100 % 100 <= 49).all()


def test_determinism_is_bitwise(synthetic):
    args = synthetic["digits"], synthetic["labels"], synthetic["photos"]
    kw = {"n_samples": 30, "return_background": True}
    a = make_grassy_mnist(*args, random_state=42, **kw)
    b = make_grassy_mnist(*args, random_state=42, **kw)
    c = make_grassy_mnist(*args, random_state=43, **kw)
    for left, right in zip(a, b, strict=True):
        assert left.tobytes() == right.tobytes()
    assert a[0].tobytes() != c[0].tobytes()


@pytest.mark.parametrize("random_state", [None, 0, np.random.default_rng(0)])
def test_global_rng_untouched(synthetic, random_state):
    # The legacy global state is exactly what must stay untouched.
    np.random.seed(123)  # noqa: NPY002
    before = np.random.get_state()  # noqa: NPY002
    make_grassy_mnist(
        synthetic["digits"],
        synthetic["labels"],
        synthetic["photos"],
        n_samples=10,
        return_background=True,
        random_state=random_state,
    )
    after = np.random.get_state()  # noqa: NPY002
    assert before[0] == after[0] and before[2:] == after[2:]
    np.testing.assert_array_equal(before[1], after[1])


def test_random_state_instance_is_accepted(synthetic):
    args = synthetic["digits"], synthetic["labels"], synthetic["photos"]
    a = make_grassy_mnist(*args, random_state=np.random.RandomState(5))[0]
    b = make_grassy_mnist(*args, random_state=np.random.RandomState(5))[0]
    np.testing.assert_array_equal(a, b)


def test_n_samples_subsets_in_input_order(synthetic):
    _, _, digit = make_grassy_mnist(
        synthetic["digits"],
        synthetic["labels"],
        synthetic["photos"],
        n_samples=12,
        populations=[(0, 1, 2, 3, 4)],
        random_state=0,
    )
    assert len(digit) == 12 and digit.max() <= 4
    with pytest.raises(ValueError, match="n_samples"):
        make_grassy_mnist(
            synthetic["digits"],
            synthetic["labels"],
            synthetic["photos"],
            n_samples=31,
            populations=[(0, 1, 2, 3, 4)],
        )


@pytest.mark.parametrize(
    "change, match",
    [
        ({"digits": np.zeros((5, 27, 27))}, "digits must have shape"),
        ({"labels": np.zeros(4)}, "labels"),
        ({"photos": np.zeros((1, 40, 40))}, "at least 2"),
        ({"photos": np.zeros((4, 20, 40))}, "sides >= 28"),
        ({"populations": [(0, 1), (1, 2)]}, "disjoint"),
    ],
)
def test_make_grassy_mnist_validation(change, match):
    kw = {
        "digits": np.zeros((5, 28, 28)),
        "labels": np.zeros(5),
        "photos": np.zeros((4, 40, 40)),
        "populations": [(0,), (1,)],
    }
    kw.update(change)
    with pytest.raises(ValueError, match=match):
        make_grassy_mnist(kw["digits"], kw["labels"], kw["photos"], populations=kw["populations"])


def test_population_names():
    assert population_names() == ("0-4", "5-9")
    assert population_names([(3, 1), (7,), (8, 9)]) == ("1,3", "7", "8,9")


def _write_shared_layout(root, rng):
    (root / "mnist").mkdir(parents=True)
    (root / "grass_imagenet").mkdir()
    np.savez(
        root / "mnist" / "mnist.npz",
        X_train=rng.integers(0, 256, size=(30, 28, 28), dtype=np.uint8),
        y_train=(np.arange(30) % 10).astype(np.uint8),
        X_test=rng.integers(0, 256, size=(20, 28, 28), dtype=np.uint8),
        y_test=(np.arange(20) % 10).astype(np.uint8),
    )
    np.savez(
        root / "grass_imagenet" / "grass_imagenet.npz",
        X_gray100=rng.integers(0, 256, size=(4, 100, 100), dtype=np.uint8),
    )


def test_load_grassy_mnist_on_synthetic_files(tmp_path, monkeypatch):
    _write_shared_layout(tmp_path, np.random.default_rng(0))
    monkeypatch.setenv(datasets.DATA_HOME_ENV, str(tmp_path))
    bunch = load_grassy_mnist(subset="all", return_background=True)
    assert bunch.data.shape == (50, 784) and bunch.background.shape == (50, 784)
    assert list(bunch.target_names) == ["0-4", "5-9"]
    np.testing.assert_array_equal(bunch.target, (bunch.digit >= 5).astype(int))
    X, y = load_grassy_mnist(tmp_path, subset="test", return_X_y=True)
    assert X.shape == (20, 784) and y.shape == (20,)
    np.testing.assert_array_equal(X, load_grassy_mnist(tmp_path, subset="test").data)


def test_load_grassy_mnist_missing_data(tmp_path):
    with pytest.raises(FileNotFoundError, match="MNIST not found"):
        load_grassy_mnist(tmp_path)


@needs_shared
def test_load_grassy_mnist_real_data():
    bunch = load_grassy_mnist(SHARED, subset="test", n_samples=500, random_state=0)
    assert bunch.data.shape == (500, 784) and bunch.data.dtype == np.float32
    assert 0 <= bunch.data.min() and bunch.data.max() <= 1.25 + 1e-6
    np.testing.assert_array_equal(bunch.target, (bunch.digit >= 5).astype(int))


# --------------------------------------------------------------------------- backgrounds


def _write_texture(root, texture):
    (root / "skimage_textures").mkdir(parents=True, exist_ok=True)
    np.savez(root / "skimage_textures" / "skimage_textures.npz", grass=texture)


def test_texture_tiles_are_disjoint_row_major_pieces():
    texture = np.arange(512 * 512, dtype=np.int64).reshape(512, 512)
    tiles = _grassy_mnist._texture_tiles(texture)
    assert tiles.shape == (25, 100, 100)
    np.testing.assert_array_equal(tiles[0], texture[:100, :100])
    np.testing.assert_array_equal(tiles[7], texture[100:200, 200:300])
    assert len(np.unique(tiles)) == tiles.size  # no pixel in two tiles


def test_background_auto_prefers_imagenet_then_warns_for_textures(tmp_path):
    _write_shared_layout(tmp_path, np.random.default_rng(0))
    _write_texture(tmp_path, np.zeros((300, 300), dtype=np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        photos, source = load_grass_backgrounds(tmp_path)
    assert source == "imagenet" and photos.shape == (4, 100, 100)
    (tmp_path / "grass_imagenet" / "grass_imagenet.npz").unlink()
    with pytest.warns(UserWarning, match="background='textures'"):
        photos, source = load_grass_backgrounds(tmp_path)
    assert source == "textures" and photos.shape == (9, 100, 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_grass_backgrounds(tmp_path, background="textures")[1] == "textures"
    with pytest.raises(FileNotFoundError, match="background='textures'"):
        load_grass_backgrounds(tmp_path, background="imagenet")
    with pytest.raises(ValueError, match="background must be one of"):
        load_grass_backgrounds(tmp_path, background="grass")
    with pytest.raises(ValueError, match="background must be one of"):
        load_grassy_mnist(tmp_path, background="grass")


def test_textures_without_any_copy_name_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)  # as if scikit-image were absent
    with pytest.raises(FileNotFoundError, match="scikit-image"):
        load_grass_backgrounds(tmp_path, background="textures")


def test_load_grassy_mnist_on_texture_tiles(tmp_path):
    _write_shared_layout(tmp_path, np.random.default_rng(0))
    (tmp_path / "grass_imagenet" / "grass_imagenet.npz").unlink()
    # Each 100x100 tile has its own constant grey level, so a crop names its tile.
    levels = np.arange(10, 260, 10, dtype=np.uint8).reshape(5, 5)
    _write_texture(tmp_path, np.kron(levels, np.ones((100, 100), dtype=np.uint8)))
    bunch = load_grassy_mnist(
        tmp_path, subset="all", return_background=True, background="textures", random_state=1
    )
    assert bunch.background_source == "textures" and "CC0" in bunch.DESCR
    assert bunch.data.shape == (50, 784) and bunch.background.shape == (50, 784)
    digits = load_shared_npz("mnist", tmp_path)
    ink = np.concatenate([digits.X_train, digits.X_test]).reshape(50, -1)
    grass = bunch.data - np.float32(0.25) * ink.astype(np.float32) / np.float32(255)
    target_levels = set(np.round(grass * 255).astype(int).ravel())
    background_levels = set(np.round(bunch.background * 255).astype(int).ravel())
    assert target_levels.isdisjoint(background_levels)  # the halves share no tile
    assert target_levels | background_levels <= set(levels.ravel().tolist())


@needs_shared
def test_shared_texture_tiles():
    photos, source = load_grass_backgrounds(SHARED, background="textures")
    assert source == "textures" and photos.shape == (25, 100, 100) and photos.dtype == np.uint8
    texture = load_shared_npz("skimage_textures", SHARED)["grass"]
    np.testing.assert_array_equal(photos[24], texture[400:500, 400:500])


# --------------------------------------------------------------------------- download plumbing


def test_get_data_home(monkeypatch, tmp_path):
    monkeypatch.setenv(datasets.DATA_HOME_ENV, str(tmp_path))
    assert get_data_home() == tmp_path
    assert get_data_home(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv(datasets.DATA_HOME_ENV)
    assert get_data_home() == Path.home() / "sklearn_cpvae_data"


def test_download_file_url_and_checksum(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"payload" * 1000)
    good = hashlib.sha256(source.read_bytes()).hexdigest()
    remote = _base.RemoteFile("copy.bin", (source.as_uri(),), good)
    path = _base._fetch_remote(remote, tmp_path / "cache")
    assert path.read_bytes() == source.read_bytes()

    bad = _base.RemoteFile("other.bin", (source.as_uri(),), "0" * 64)
    with pytest.raises(OSError, match="does not match"):
        _base._fetch_remote(bad, tmp_path / "cache")
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["copy.bin"]


def test_fetch_remote_tries_mirrors(tmp_path, monkeypatch):
    calls = []

    def fake_download(url, path):
        calls.append(url)
        if "broken" in url:
            raise OSError("unreachable")
        Path(path).write_bytes(b"ok")

    monkeypatch.setattr(_base, "_download", fake_download)
    remote = _base.RemoteFile(
        "f.txt", ("http://broken.invalid/f.txt", "http://mirror.invalid/f.txt")
    )
    assert _base._fetch_remote(remote, tmp_path).read_bytes() == b"ok"
    assert calls == list(remote.urls)


@pytest.mark.parametrize(
    "fetch",
    [
        fetch_mnist,
        fetch_fashion_mnist,
        fetch_cifar10,
        fetch_mice_protein,
        fetch_heart_disease,
        fetch_wine_quality,
    ],
)
def test_download_if_missing_false_raises(fetch, tmp_path, monkeypatch):
    def no_network(url, path):
        raise AssertionError("must not download")

    monkeypatch.setattr(_base, "_download", no_network)
    with pytest.raises(FileNotFoundError, match="download_if_missing=False"):
        fetch(tmp_path, download_if_missing=False)


# --------------------------------------------------------------------------- IDX (MNIST family)

_IDX_CODES = {np.dtype("u1"): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}


def _write_idx(path, array):
    array = np.asarray(array)
    header = bytes([0, 0, _IDX_CODES[array.dtype], array.ndim])
    payload = header + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    with (gzip.open if str(path).endswith(".gz") else open)(path, "wb") as f:
        f.write(payload)


@pytest.mark.parametrize("dtype", ["u1", ">i4", ">f4"])
@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_read_idx_round_trip(tmp_path, dtype, name):
    array = (np.arange(24).reshape(2, 3, 4) * 7).astype(dtype)
    _write_idx(tmp_path / name, array)
    parsed = _images._read_idx(tmp_path / name)
    np.testing.assert_array_equal(parsed, array)
    assert parsed.dtype.isnative and parsed.flags.writeable


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="not an IDX file"):
        _images._read_idx(tmp_path / "bad")
    _write_idx(tmp_path / "short", np.zeros((2, 3), dtype="u1"))
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-1])
    with pytest.raises(ValueError, match="payload"):
        _images._read_idx(tmp_path / "short")


def _write_fake_idx_set(raw_dir, train_images, train_labels, test_images, test_labels):
    raw_dir.mkdir(parents=True, exist_ok=True)
    _write_idx(raw_dir / "train-images-idx3-ubyte.gz", train_images)
    _write_idx(raw_dir / "train-labels-idx1-ubyte.gz", train_labels)
    _write_idx(raw_dir / "t10k-images-idx3-ubyte.gz", test_images)
    _write_idx(raw_dir / "t10k-labels-idx1-ubyte.gz", test_labels)


def test_fetch_mnist_parses_cached_raw_files(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, size=(12, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    y_train, y_test = (np.arange(12) % 10).astype("u1"), np.arange(5).astype("u1")
    _write_fake_idx_set(tmp_path / "mnist" / "raw", train, y_train, test, y_test)

    bunch = fetch_mnist(tmp_path, download_if_missing=False)
    assert bunch.data.shape == (12, 784) and bunch.data.dtype == np.uint8
    np.testing.assert_array_equal(bunch.images, train)
    np.testing.assert_array_equal(bunch.target, y_train)
    assert bunch.target.dtype == np.int64 and len(bunch.target_names) == 10

    # The parsed cache is enough once written.
    for f in (tmp_path / "mnist" / "raw").iterdir():
        f.unlink()
    X, y = fetch_mnist(tmp_path, subset="all", download_if_missing=False, return_X_y=True)
    np.testing.assert_array_equal(X, np.concatenate([train, test]).reshape(17, 784))
    np.testing.assert_array_equal(y, np.concatenate([y_train, y_test]))
    with pytest.raises(ValueError, match="subset"):
        fetch_mnist(tmp_path, subset="validation")


def test_fetch_fashion_mnist_downloads_and_verifies(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    server = tmp_path / "server"
    _write_fake_idx_set(
        server,
        rng.integers(0, 256, size=(4, 28, 28), dtype=np.uint8),
        np.array([0, 9, 5, 7], dtype="u1"),
        rng.integers(0, 256, size=(2, 28, 28), dtype=np.uint8),
        np.array([1, 2], dtype="u1"),
    )
    for f in server.iterdir():
        monkeypatch.setitem(
            _images._FASHION_SHA256, f.name, hashlib.sha256(f.read_bytes()).hexdigest()
        )
    served = []

    def fake_download(url, path):
        served.append(url)
        Path(path).write_bytes((server / url.rsplit("/", 1)[1]).read_bytes())

    monkeypatch.setattr(_base, "_download", fake_download)
    bunch = fetch_fashion_mnist(tmp_path / "home")
    assert len(served) == 4 and all(u.startswith(_images._FASHION_BASE_URLS[0]) for u in served)
    assert [bunch.target_names[t] for t in bunch.target] == [
        "T-shirt/top",
        "Ankle boot",
        "Sandal",
        "Sneaker",
    ]

    # A file whose checksum does not match is refused from every mirror.
    monkeypatch.setitem(_images._FASHION_SHA256, "t10k-labels-idx1-ubyte.gz", "0" * 64)
    with pytest.raises(OSError, match="does not match"):
        fetch_fashion_mnist(tmp_path / "other_home")


@needs_shared
def test_fetch_mnist_matches_shared_test_set(tmp_path):
    mnist = load_shared_npz("mnist", SHARED)
    images, labels = mnist.X_test[:300], mnist.y_test[:300]
    _write_fake_idx_set(tmp_path / "mnist" / "raw", images, labels, images[:10], labels[:10])
    bunch = fetch_mnist(tmp_path, download_if_missing=False)
    np.testing.assert_array_equal(bunch.images, images)
    np.testing.assert_array_equal(bunch.target, labels)


# --------------------------------------------------------------------------- CIFAR-10


def _add_member(tar, name, payload):
    info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def _write_fake_cifar(path, images_by_batch, labels_by_batch, protocol=2):
    with tarfile.open(path, "w:gz") as tar:
        for name, images in images_by_batch.items():
            # Original layout: one row per image, the R, G and B planes one after the other.
            batch = {
                b"batch_label": name.encode(),
                b"labels": [int(v) for v in labels_by_batch[name]],
                b"data": images.transpose(0, 3, 1, 2).reshape(len(images), 3072),
                b"filenames": [b"img.png"] * len(images),
            }
            _add_member(tar, name, pickle.dumps(batch, protocol=protocol))
        names = [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer")]
        names += [n.encode() for n in ("dog", "frog", "horse", "ship", "truck")]
        meta = {b"label_names": names, b"num_cases_per_batch": 2, b"num_vis": 3072}
        _add_member(tar, "batches.meta", pickle.dumps(meta, protocol=protocol))


@pytest.mark.parametrize("protocol", [2, 4])
def test_fetch_cifar10_parses_python_tarball(tmp_path, protocol):
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    images = {n: rng.integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8) for n in names}
    labels = {n: rng.integers(0, 10, size=2) for n in names}
    (tmp_path / "cifar10" / "raw").mkdir(parents=True)
    _write_fake_cifar(
        tmp_path / "cifar10" / "raw" / "cifar-10-python.tar.gz", images, labels, protocol
    )

    train = fetch_cifar10(tmp_path, download_if_missing=False)
    assert train.images.shape == (10, 32, 32, 3) and train.data.shape == (10, 3072)
    np.testing.assert_array_equal(train.images, np.concatenate([images[n] for n in names[:5]]))
    np.testing.assert_array_equal(train.target, np.concatenate([labels[n] for n in names[:5]]))
    assert train.target_names[3] == "cat"
    X, y = fetch_cifar10(tmp_path, subset="test", return_X_y=True, download_if_missing=False)
    np.testing.assert_array_equal(X, images["test_batch"].reshape(2, -1))
    np.testing.assert_array_equal(y, labels["test_batch"])


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar10_unpickler_refuses_code(tmp_path):
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        _add_member(tar, "data_batch_1", pickle.dumps({b"data": _Evil()}))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        _images._parse_cifar10_tarball(path)


# --------------------------------------------------------------------------- tabular sets


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_fetch_mice_protein_parses_csv(tmp_path):
    _write(
        tmp_path / "mice_protein" / "raw" / "Data_Cortex_Nuclear.csv",
        "MouseID,DYRK1A_N,ITSN1_N,BDNF_N,Genotype,Treatment,Behavior,class\r\n"
        "309_1,0.503643884,0.747193224,0.4301753,Control,Memantine,C/S,c-CS-m\r\n"
        "309_2,0.51461708,,0.411770344,Control,Memantine,C/S,c-CS-m\r\n"
        "J3295_15,0.25,0.5,,Ts65Dn,Saline,S/C,t-SC-s\r\n",
    )
    bunch = fetch_mice_protein(tmp_path, download_if_missing=False)
    assert bunch.data.shape == (3, 3) and bunch.data.dtype == np.float32
    assert list(bunch.feature_names) == ["DYRK1A_N", "ITSN1_N", "BDNF_N"]
    assert np.isnan(bunch.data[1, 1]) and np.isnan(bunch.data[2, 2])
    assert bunch.data[0, 0] == np.float32(0.503643884)
    assert list(bunch.mouse_id) == ["309", "309", "J3295"]
    assert list(bunch.target) == ["c-CS-m", "c-CS-m", "t-SC-s"]
    assert list(bunch.target_names) == ["c-CS-m", "t-SC-s"]
    assert list(bunch.genotype) == ["Control", "Control", "Ts65Dn"]


def test_fetch_mice_protein_rejects_other_layout(tmp_path):
    _write(tmp_path / "mice_protein" / "raw" / "Data_Cortex_Nuclear.csv", "a,b\n1,2\n")
    with pytest.raises(ValueError, match="header"):
        fetch_mice_protein(tmp_path, download_if_missing=False)


def test_fetch_heart_disease_parses_uci_files(tmp_path):
    raw = tmp_path / "heart_disease" / "raw"
    rows = {
        "cleveland": "63.0,1.0,1.0,145.0,233.0,1.0,2.0,150.0,0.0,2.3,3.0,0.0,6.0,0\n"
        "67.0,1.0,4.0,160.0,286.0,0.0,2.0,108.0,1.0,1.5,2.0,?,3.0,2\n",
        "hungarian": "28,1,2,130,132,0,2,185,0,0,?,?,?,0\n",
        "switzerland": "32,1,1,95,0,?,0,127,0,.7,1,?,?,1\n\n",
        "va": "66,1,3,120,0,0,1,120,0,-0.5,1,?,?,0\n63,1,3,?,0,0,2,?,?,?,?,?,?,1\n",
    }
    for site, text in rows.items():
        _write(raw / f"processed.{site}.data", text)
    bunch = fetch_heart_disease(tmp_path, download_if_missing=False)
    assert bunch.data.shape == (6, 13) and bunch.data.dtype == np.float32
    np.testing.assert_array_equal(bunch.site, [0, 0, 1, 2, 3, 3])
    np.testing.assert_array_equal(bunch.target, [0, 2, 0, 1, 0, 1])
    assert list(bunch.site_names) == ["cleveland", "hungarian", "switzerland", "va"]
    assert bunch.data[3, 9] == np.float32(0.7) and bunch.data[4, 9] == np.float32(-0.5)
    assert np.isnan(bunch.data).sum() == 1 + 3 + 3 + 2 + 7
    assert bunch.feature_names[-1] == "thal"


def test_fetch_heart_disease_rejects_wrong_width(tmp_path):
    for site in _tabular.HEART_DISEASE_SITES:
        _write(tmp_path / "heart_disease" / "raw" / f"processed.{site}.data", "1,2,3\n")
    with pytest.raises(ValueError, match="14 comma-separated"):
        fetch_heart_disease(tmp_path, download_if_missing=False)


def test_fetch_wine_quality_parses_uci_csv(tmp_path):
    names = [
        "fixed acidity", "volatile acidity", "citric acid", "residual sugar", "chlorides",
        "free sulfur dioxide", "total sulfur dioxide", "density", "pH", "sulphates", "alcohol",
    ]  # fmt: skip
    header = ";".join(f'"{n}"' for n in [*names, "quality"]) + "\n"
    _write(
        tmp_path / "wine_quality" / "raw" / "winequality-red.csv",
        header + "7.4;0.7;0;1.9;0.076;11;34;0.9978;3.51;0.56;9.4;5\n",
    )
    _write(
        tmp_path / "wine_quality" / "raw" / "winequality-white.csv",
        header
        + "7;0.27;0.36;20.7;0.045;45;170;1.001;3;0.45;8.8;6\n"
        + "6.3;0.3;0.34;1.6;0.049;14;132;0.994;3.3;0.49;9.5;6\n",
    )
    bunch = fetch_wine_quality(tmp_path, download_if_missing=False)
    assert bunch.data.shape == (3, 11) and bunch.data.dtype == np.float32
    assert list(bunch.feature_names) == names
    np.testing.assert_array_equal(bunch.color, [0, 1, 1])
    np.testing.assert_array_equal(bunch.target, [5, 6, 6])
    assert bunch.data[0, 7] == np.float32(0.9978)


@needs_shared
def test_heart_parser_round_trips_shared_table(tmp_path):
    shared = load_shared_npz("heart_disease_multisite", SHARED)
    raw = tmp_path / "heart_disease" / "raw"
    for k, site in enumerate(_tabular.HEART_DISEASE_SITES):
        rows = np.column_stack([shared.X[shared.site == k], shared.num[shared.site == k]])
        lines = [",".join("?" if np.isnan(v) else repr(float(v)) for v in r) for r in rows]
        _write(raw / f"processed.{site}.data", "\n".join(lines) + "\n")
    bunch = fetch_heart_disease(tmp_path, download_if_missing=False)
    np.testing.assert_array_equal(bunch.data, shared.X)
    np.testing.assert_array_equal(bunch.target, shared.num)
    np.testing.assert_array_equal(bunch.site, shared.site)


# --------------------------------------------------------------------------- shared npz files


def test_load_shared_npz(tmp_path):
    (tmp_path / "toy").mkdir()
    np.savez(
        tmp_path / "toy" / "toy.npz",
        X=np.ones((2, 3), dtype=np.float32),
        names=np.array(["a", "b"]),
    )
    bunch = load_shared_npz("toy", tmp_path)
    assert bunch.X.shape == (2, 3) and list(bunch.names) == ["a", "b"]
    with pytest.raises(FileNotFoundError, match="missing"):
        load_shared_npz("missing", tmp_path)


@needs_shared
def test_load_shared_npz_real():
    mice = load_shared_npz("mice_protein", SHARED)
    assert mice.X.shape == (1080, 77) and mice.X.dtype == np.float32
    assert np.isnan(mice.X).sum() == 1396


# --------------------------------------------------------------------------- packaged copies

FETCHERS = {
    fetch_mnist: "mnist",
    fetch_fashion_mnist: "fashion_mnist",
    fetch_cifar10: "cifar10_jpeg",
    fetch_mice_protein: "mice_protein",
    fetch_heart_disease: "heart_disease_multisite",
    fetch_wine_quality: "wine_quality",
}


def _write_packaged(root, name, rng):
    """A few rows of ``name`` in the packaged layout (the keys of shared/data's files)."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    if name in ("mnist", "fashion_mnist", "cifar10_jpeg"):
        shape = (32, 32, 3) if name == "cifar10_jpeg" else (28, 28)
        arrays = {
            "X_train": rng.integers(0, 256, size=(6, *shape), dtype=np.uint8),
            "y_train": np.array([0, 1, 2, 3, 8, 9], dtype=np.uint8),
            "X_test": rng.integers(0, 256, size=(4, *shape), dtype=np.uint8),
            "y_test": np.array([9, 5, 5, 0], dtype=np.uint8),
        }
        if name == "cifar10_jpeg":
            arrays["class_names"] = np.array([f"class{i}" for i in range(10)])
    elif name == "mice_protein":
        arrays = {
            "X": np.array([[0.5, np.nan], [0.25, 1.0], [0.75, 2.0]], dtype=np.float32),
            "protein_names": np.array(["DYRK1A_N", "ITSN1_N"]),
            "mouse_id": np.array(["309", "309", "J3295"]),
            "measurement_id": np.array(["309_1", "309_2", "J3295_1"]),
            "genotype": np.array(["Ts65Dn", "Control", "Ts65Dn"]),
            "treatment": np.array(["Saline", "Saline", "Memantine"]),
            "behavior": np.array(["S/C", "C/S", "S/C"]),
            "class_label": np.array(["t-SC-s", "c-CS-s", "t-SC-m"]),
        }
    elif name == "heart_disease_multisite":
        arrays = {
            "X": rng.normal(size=(5, 13)).astype(np.float32),
            "num": np.array([0, 1, 4, 0, 2], dtype=np.int8),
            "site": np.array([0, 1, 1, 2, 3], dtype=np.int8),
            "feature_names": np.array(_tabular.HEART_DISEASE_FEATURES),
            "site_names": np.array(_tabular.HEART_DISEASE_SITES),
        }
    else:
        arrays = {
            "X": rng.normal(size=(4, 11)).astype(np.float32),
            "quality": np.array([5, 6, 7, 3], dtype=np.int8),
            "color": np.array([0, 0, 1, 1], dtype=np.int8),
            "feature_names": np.array([f"feature {i}" for i in range(11)]),
            "color_names": np.array(["red", "white"]),
        }
    np.savez(folder / f"{name}.npz", **arrays)
    return arrays


@pytest.fixture
def no_network(monkeypatch):
    def refuse(url, path):
        raise AssertionError(f"must not download {url}")

    monkeypatch.setattr(_base, "_download", refuse)


@pytest.mark.parametrize("fetch", list(FETCHERS), ids=lambda f: f.__name__)
def test_fetchers_read_packaged_copy_with_uniform_keys(fetch, tmp_path, no_network):
    arrays = _write_packaged(tmp_path, FETCHERS[fetch], np.random.default_rng(0))
    bunch = fetch(tmp_path)  # download allowed, yet the local copy must be used
    for key in ("data", "target", "populations", "population_names", "feature_names"):
        assert key in bunch, key
    assert bunch.frame is None and "packaged copy" in bunch.DESCR
    n = len(bunch.data)
    assert bunch.data.ndim == 2 and bunch.target.shape == bunch.populations.shape == (n,)
    assert bunch.populations.dtype == np.int64 and len(bunch.feature_names) == bunch.data.shape[1]
    assert 0 <= bunch.populations.min() and bunch.populations.max() < len(bunch.population_names)
    first_x = next(k for k in ("X_train", "X") if k in arrays)
    expected = arrays[first_x].reshape(len(arrays[first_x]), -1)
    np.testing.assert_array_equal(bunch.data, expected)


def test_packaged_populations_and_labels(tmp_path, no_network):
    rng = np.random.default_rng(0)
    for name in FETCHERS.values():
        _write_packaged(tmp_path, name, rng)
    mnist = fetch_mnist(tmp_path, subset="all")
    np.testing.assert_array_equal(mnist.target, [0, 1, 2, 3, 8, 9, 9, 5, 5, 0])
    np.testing.assert_array_equal(mnist.populations, mnist.target)
    assert mnist.images.shape == (10, 28, 28) and "one grey level" in mnist.DESCR
    assert "4 test images" in fetch_fashion_mnist(tmp_path, subset="test").DESCR
    cifar = fetch_cifar10(tmp_path, subset="test")
    assert cifar.feature_names[:4].tolist() == [
        "pixel_0_0_R", "pixel_0_0_G", "pixel_0_0_B", "pixel_0_1_R",
    ]  # fmt: skip
    assert cifar.target_names[9] == "class9" and "JPEG" in cifar.DESCR
    mice = fetch_mice_protein(tmp_path)
    assert mice.population_names.tolist() == ["Control", "Ts65Dn"]
    np.testing.assert_array_equal(mice.populations, [1, 0, 1])
    assert mice.feature_names.tolist() == ["DYRK1A_N", "ITSN1_N"] and np.isnan(mice.data[0, 1])
    assert mice.mouse_id.tolist() == ["309", "309", "J3295"]
    heart = fetch_heart_disease(tmp_path)
    np.testing.assert_array_equal(heart.populations, [0, 1, 1, 2, 3])
    np.testing.assert_array_equal(heart.site, heart.populations)
    assert heart.target.dtype == np.int64 and heart.target.tolist() == [0, 1, 4, 0, 2]
    wine = fetch_wine_quality(tmp_path)
    assert wine.population_names.tolist() == ["red", "white"]
    np.testing.assert_array_equal(wine.color, [0, 0, 1, 1])
    assert wine.feature_names[0] == "feature 0"


def test_original_files_win_over_packaged_copy(tmp_path, no_network):
    _write_packaged(tmp_path, "mnist", np.random.default_rng(0))
    rng = np.random.default_rng(1)
    train = rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    labels = np.array([7, 7, 7], dtype="u1")
    _write_fake_idx_set(tmp_path / "mnist" / "raw", train, labels, train[:1], labels[:1])
    bunch = fetch_mnist(tmp_path)
    np.testing.assert_array_equal(bunch.images, train)
    assert "packaged" not in bunch.DESCR
    # A raw set with a file missing is not a copy: the packaged one is read instead.
    (tmp_path / "mnist" / "mnist_parsed.npz").unlink()
    (tmp_path / "mnist" / "raw" / "t10k-images-idx3-ubyte.gz").unlink()
    assert len(fetch_mnist(tmp_path).data) == 6


def test_missing_everywhere_names_both_local_layouts(tmp_path, no_network):
    with pytest.raises(FileNotFoundError, match="heart_disease_multisite.npz") as info:
        fetch_heart_disease(tmp_path, download_if_missing=False)
    assert "processed.cleveland.data" in str(info.value)


def test_without_local_copy_the_original_files_are_downloaded(tmp_path, monkeypatch):
    header = ";".join(["a"] * 11 + ["quality"]) + "\n"
    served = []

    def fake_download(url, path):
        served.append(url.rsplit("/", 1)[1])
        Path(path).write_text(header + ";".join(["1"] * 11 + ["5"]) + "\n")

    monkeypatch.setattr(_base, "_download", fake_download)
    bunch = fetch_wine_quality(tmp_path)
    assert served == ["winequality-red.csv", "winequality-white.csv"]
    np.testing.assert_array_equal(bunch.populations, [0, 1])
    assert (tmp_path / "wine_quality" / "wine_quality_parsed.npz").exists()


@pytest.mark.parametrize("fetch", [fetch_heart_disease, fetch_fashion_mnist])
def test_as_frame(fetch, tmp_path, no_network):
    pd = pytest.importorskip("pandas")
    _write_packaged(tmp_path, FETCHERS[fetch], np.random.default_rng(0))
    bunch = fetch(tmp_path, as_frame=True)
    assert isinstance(bunch.data, pd.DataFrame) and isinstance(bunch.target, pd.Series)
    assert isinstance(bunch.populations, pd.Series) and bunch.populations.name == "population"
    assert list(bunch.data.columns) == bunch.feature_names.tolist()
    assert list(bunch.frame.columns) == [*bunch.feature_names, "target", "population"]
    plain = fetch(tmp_path)
    np.testing.assert_array_equal(bunch.frame["population"].to_numpy(), plain.populations)
    np.testing.assert_array_equal(bunch.data.to_numpy(), plain.data)
    X, y = fetch(tmp_path, as_frame=True, return_X_y=True)
    assert isinstance(X, pd.DataFrame) and isinstance(y, pd.Series)
    with pytest.raises(TypeError, match="as_frame"):
        fetch(tmp_path, as_frame="yes")


@needs_shared
@pytest.mark.parametrize("fetch", list(FETCHERS), ids=lambda f: f.__name__)
def test_fetchers_read_shared_data_offline(fetch, no_network):
    bunch = fetch(SHARED, download_if_missing=False)
    shared = load_shared_npz(FETCHERS[fetch], SHARED)
    X = shared["X_train"] if "X_train" in shared else shared["X"]
    np.testing.assert_array_equal(bunch.data, X.reshape(len(X), -1))
    counts = np.bincount(bunch.populations)
    assert len(counts) == len(bunch.population_names) and counts.min() > 0


def test_original_files_in_a_read_only_folder_are_read(tmp_path, monkeypatch, no_network):
    rng = np.random.default_rng(2)
    train = rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    labels = np.array([1, 2, 3], dtype="u1")
    _write_fake_idx_set(tmp_path / "mnist" / "raw", train, labels, train[:1], labels[:1])

    def read_only(src, dst):
        raise PermissionError(f"read-only: {dst}")

    monkeypatch.setattr(_base.os, "replace", read_only)
    np.testing.assert_array_equal(fetch_mnist(tmp_path).images, train)
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == ["raw"]
