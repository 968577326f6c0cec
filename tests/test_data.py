"""Data sets and batching: file readers against files written here, the embedded set, the synthetic sets."""
from __future__ import annotations

import gzip
import io
import pickle
import struct
from importlib import resources

import numpy as np
import pytest

from numconv import data
from numconv.data import synthetic
from numconv.data import Dataset


# ---------------------------------------------------------------------------------------------------------
# IDX


def idx_bytes(array: np.ndarray, type_code: int) -> bytes:
    """An IDX file: 0x0000, type code, ndim, big-endian uint32 dims, big-endian values."""
    big_endian = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[type_code]
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(big_endian).tobytes()


def write_file(path, payload: bytes):
    """Write ``payload`` to ``path``, gzip-compressed when the name ends in .gz."""
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)
    return path


@pytest.mark.parametrize("type_code, dtype", [(0x08, np.uint8), (0x09, np.int8), (0x0B, np.int16),
                                              (0x0C, np.int32), (0x0D, np.float32), (0x0E, np.float64)])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_round_trip(tmp_path, type_code, dtype, suffix):
    rng = np.random.default_rng(type_code)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    values = (rng.integers(info.min, info.max, size=(3, 4, 5), endpoint=True) if info is not None
              else rng.normal(size=(3, 4, 5))).astype(dtype)
    path = write_file(tmp_path / f"values-idx3{suffix}", idx_bytes(values, type_code))
    loaded = data.read_idx(path)
    assert loaded.dtype == dtype and loaded.dtype.isnative
    assert loaded.shape == (3, 4, 5)
    np.testing.assert_array_equal(loaded, values)


def test_read_idx_one_dimensional(tmp_path):
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    loaded = data.read_idx(write_file(tmp_path / "labels", idx_bytes(labels, 0x08)))
    np.testing.assert_array_equal(loaded, labels)


GOOD_IDX = idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4), 0x08)


@pytest.mark.parametrize("payload, message", [
    (b"\x01\x00" + GOOD_IDX[2:], "magic"),
    (GOOD_IDX[:2] + b"\x07" + GOOD_IDX[3:], "type code"),
    (GOOD_IDX[:3], "truncated"),
    (GOOD_IDX[:9], "truncated"),
    (GOOD_IDX[:-1], "size mismatch"),
    (GOOD_IDX + b"\x00", "size mismatch"),
    (GOOD_IDX[:3] + b"\x00", "0 dimensions"),
], ids=["bad-magic", "bad-type-code", "short-header", "short-dims", "truncated-data", "trailing-data",
        "ndim-0"])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_rejects_corrupt_files_naming_them(tmp_path, payload, message, suffix):
    path = write_file(tmp_path / f"broken-idx{suffix}", payload)
    with pytest.raises(ValueError, match=message) as error:
        data.read_idx(path)
    assert str(path) in str(error.value)


def test_read_idx_rejects_damaged_gzip_naming_the_file(tmp_path):
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(GOOD_IDX)[:-12])
    with pytest.raises(ValueError) as error:
        data.read_idx(path)
    assert str(path) in str(error.value)


def write_idx_dir(directory, train_images, train_labels, test_images, test_labels,
                  gz=(False, True, True, False)):
    """The four MNIST files in ``directory``; ``gz`` says which are gzipped (both spellings are accepted)."""
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    arrays = [train_images, train_labels, test_images, test_labels]
    paths = []
    for name, array, compressed in zip(names, arrays, gz):
        paths.append(write_file(directory / (name + (".gz" if compressed else "")), idx_bytes(array, 0x08)))
    return paths


def small_mnist_like(rng, train=12, test=5, side=6):
    """Random uint8 images (train, side, side) and (test, side, side) with labels cycling through 0..9."""
    train_labels = (np.arange(train) % 10).astype(np.uint8)
    test_labels = (np.arange(test) % 10).astype(np.uint8)
    return (rng.integers(0, 256, (train, side, side), dtype=np.uint8), train_labels,
            rng.integers(0, 256, (test, side, side), dtype=np.uint8), test_labels)


def test_load_idx_dir_reads_and_standardises_with_training_statistics(tmp_path):
    train_images, train_labels, test_images, test_labels = small_mnist_like(np.random.default_rng(0))
    write_idx_dir(tmp_path, train_images, train_labels, test_images, test_labels)
    train, test = data.load_idx_dir(tmp_path)
    assert train.inputs.shape == (12, 1, 6, 6) and test.inputs.shape == (5, 1, 6, 6)
    assert train.inputs.dtype == np.float32 and train.targets.dtype == np.int64
    assert train.num_classes == test.num_classes == 10
    np.testing.assert_array_equal(train.targets, train_labels)
    np.testing.assert_array_equal(test.targets, test_labels)
    scaled = train_images / 255.0
    mean, std = scaled.mean(), scaled.std()
    np.testing.assert_allclose(train.inputs[:, 0], (scaled - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(test.inputs[:, 0], (test_images / 255.0 - mean) / std, rtol=1e-5, atol=1e-5)


def test_load_idx_dir_count_mismatch_names_the_labels_file(tmp_path):
    train_images, train_labels, test_images, test_labels = small_mnist_like(np.random.default_rng(1))
    paths = write_idx_dir(tmp_path, train_images, train_labels[:-1], test_images, test_labels)
    with pytest.raises(ValueError, match="labels for") as error:
        data.load_idx_dir(tmp_path)
    assert str(paths[1]) in str(error.value)


def test_load_idx_dir_wrong_dtype_code_names_the_file(tmp_path):
    train_images, train_labels, test_images, test_labels = small_mnist_like(np.random.default_rng(2))
    paths = write_idx_dir(tmp_path, train_images, train_labels, test_images, test_labels)
    # Same shape, but stored as int16 (type code 0x0B) instead of unsigned bytes.
    write_file(paths[2], idx_bytes(test_images.astype(np.int16), 0x0B))
    with pytest.raises(ValueError, match="uint8") as error:
        data.load_idx_dir(tmp_path)
    assert str(paths[2]) in str(error.value)


def test_load_idx_dir_truncated_file_names_it(tmp_path):
    train_images, train_labels, test_images, test_labels = small_mnist_like(np.random.default_rng(3))
    paths = write_idx_dir(tmp_path, train_images, train_labels, test_images, test_labels)
    paths[0].write_bytes(paths[0].read_bytes()[:-7])
    with pytest.raises(ValueError) as error:
        data.load_idx_dir(tmp_path)
    assert str(paths[0]) in str(error.value)


def test_load_idx_dir_missing_file(tmp_path):
    train_images, train_labels, test_images, test_labels = small_mnist_like(np.random.default_rng(4))
    paths = write_idx_dir(tmp_path, train_images, train_labels, test_images, test_labels)
    paths[3].unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        data.load_idx_dir(tmp_path)


# ---------------------------------------------------------------------------------------------------------
# CIFAR-10


def cifar_batch(rng, count, first_label=0):
    return {b"batch_label": b"testing batch", b"labels": [(first_label + i) % 10 for i in range(count)],
            b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
            b"filenames": [b"img%d.png" % i for i in range(count)]}


def python2_pickle(batch) -> bytes:
    """``batch`` pickled the way the published CIFAR-10 files were (Python 2 cPickle, protocol 2, numpy 1):
    byte strings as SHORT_BINSTRING, the array through numpy.core.multiarray._reconstruct. Python 3 cannot
    write this form, so the opcodes are spelt out."""
    def string(value: bytes) -> bytes:
        return b"U" + bytes([len(value)]) + value

    images = batch[b"data"]
    payload = images.tobytes()
    return b"".join([
        b"\x80\x02}(", string(b"data"),
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85", string(b"b"), b"\x87R",
        b"(K\x01K", bytes([images.shape[0]]), b"M", struct.pack("<H", images.shape[1]), b"\x86",
        b"cnumpy\ndtype\n", string(b"u1"), b"K\x00K\x01\x87R",
        b"(K\x03", string(b"|"), b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb",
        b"\x89T", struct.pack("<I", len(payload)), payload, b"tb",
        string(b"labels"), b"](", b"".join(b"K" + bytes([label]) for label in batch[b"labels"]), b"e",
        b"u.",
    ])


def write_cifar_dir(directory, rng, counts=(3, 2, 4, 2, 3), test_count=5, protocol=2):
    """The six CIFAR-10 batch files: dicts with bytes keys, pickled with ``protocol`` or, for "python2", as
    the published files are."""
    batches = {}
    for index, count in enumerate(counts, start=1):
        batches[f"data_batch_{index}"] = cifar_batch(rng, count, first_label=index)
    batches["test_batch"] = cifar_batch(rng, test_count)
    for name, batch in batches.items():
        payload = python2_pickle(batch) if protocol == "python2" else pickle.dumps(batch, protocol=protocol)
        (directory / name).write_bytes(payload)
    return batches


@pytest.mark.parametrize("protocol", ["python2", 2, 5])
def test_load_cifar10_dir_layout_labels_and_per_channel_standardisation(tmp_path, protocol):
    batches = write_cifar_dir(tmp_path, np.random.default_rng(0), protocol=protocol)
    train, test = data.load_cifar10_dir(tmp_path)
    assert train.inputs.shape == (14, 3, 32, 32) and test.inputs.shape == (5, 3, 32, 32)
    assert train.inputs.dtype == test.inputs.dtype == np.float32
    assert train.num_classes == 10
    raw_train = np.concatenate([batches[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    labels = np.concatenate([batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)])
    np.testing.assert_array_equal(train.targets, labels)
    np.testing.assert_array_equal(test.targets, batches["test_batch"][b"labels"])
    # Row layout: 1024 red, 1024 green, 1024 blue, each 32 rows of 32: (c, y, x) = data[c·1024 + y·32 + x].
    scaled = raw_train.reshape(-1, 3, 32, 32) / 255.0
    mean, std = scaled.mean(axis=(0, 2, 3), keepdims=True), scaled.std(axis=(0, 2, 3), keepdims=True)
    np.testing.assert_allclose(train.inputs, (scaled - mean) / std, rtol=1e-5, atol=1e-5)
    image, channel, row, column = 5, 2, 7, 19
    expected = (raw_train[image, channel * 1024 + row * 32 + column] / 255.0 - mean[0, channel, 0, 0]) \
        / std[0, channel, 0, 0]
    assert train.inputs[image, channel, row, column] == pytest.approx(expected, rel=1e-5)
    raw_test = batches["test_batch"][b"data"].reshape(-1, 3, 32, 32) / 255.0
    np.testing.assert_allclose(test.inputs, (raw_test - mean) / std, rtol=1e-5, atol=1e-5)


def test_load_cifar10_dir_truncated_batch_names_the_file(tmp_path):
    write_cifar_dir(tmp_path, np.random.default_rng(1))
    broken = tmp_path / "data_batch_3"
    broken.write_bytes(broken.read_bytes()[:200])
    with pytest.raises(ValueError, match="corrupt or truncated") as error:
        data.load_cifar10_dir(tmp_path)
    assert str(broken) in str(error.value)


@pytest.mark.parametrize("damage", ["not-a-dict", "short-rows", "label-count", "label-range", "float-data"])
def test_load_cifar10_dir_malformed_batch_names_the_file(tmp_path, damage):
    rng = np.random.default_rng(2)
    write_cifar_dir(tmp_path, rng)
    batch = cifar_batch(rng, 4)
    if damage == "not-a-dict":
        batch = [batch[b"data"], batch[b"labels"]]
    elif damage == "short-rows":
        batch[b"data"] = batch[b"data"][:, :3000]
    elif damage == "label-count":
        batch[b"labels"] = batch[b"labels"][:-1]
    elif damage == "label-range":
        batch[b"labels"][0] = 10
    else:
        batch[b"data"] = batch[b"data"].astype(np.float32)
    broken = tmp_path / "test_batch"
    broken.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(ValueError) as error:
        data.load_cifar10_dir(tmp_path)
    assert str(broken) in str(error.value)


class _Trap:
    """Pickles as a call to a function the CIFAR reader must refuse to import."""

    def __reduce__(self):
        return (print, ("this must not run",))


def test_load_cifar10_dir_refuses_pickles_that_call_functions(tmp_path, capsys):
    write_cifar_dir(tmp_path, np.random.default_rng(3))
    broken = tmp_path / "data_batch_1"
    broken.write_bytes(pickle.dumps({b"data": _Trap(), b"labels": []}, protocol=2))
    with pytest.raises(ValueError, match="refusing") as error:
        data.load_cifar10_dir(tmp_path)
    assert str(broken) in str(error.value)
    assert "this must not run" not in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------------
# The embedded MNIST subset


@pytest.fixture(scope="module")
def mnist():
    return data.mnist_subset()


def test_mnist_subset_shapes_types_and_classes(mnist):
    train, test = mnist
    assert train.inputs.shape == (4000, 1, 28, 28) and test.inputs.shape == (1000, 1, 28, 28)
    assert train.inputs.dtype == test.inputs.dtype == np.float32
    assert train.targets.dtype == test.targets.dtype == np.int64
    assert train.num_classes == test.num_classes == 10
    assert train.inputs.flags.c_contiguous
    # Stratified: 400 and 100 of every digit.
    np.testing.assert_array_equal(np.bincount(train.targets, minlength=10), np.full(10, 400))
    np.testing.assert_array_equal(np.bincount(test.targets, minlength=10), np.full(10, 100))
    # Standardised with the training part's statistics (documented as mean 0.1315, std 0.3088 of [0, 1]).
    assert abs(float(train.inputs.mean())) < 1e-4 and float(train.inputs.std()) == pytest.approx(1, abs=1e-4)
    assert train.inputs.min() == pytest.approx(-0.1315 / 0.3088, abs=1e-3)
    assert abs(float(test.inputs.mean())) < 0.05


def test_mnist_subset_split_is_fixed_and_disjoint(mnist):
    train, test = mnist
    archive_bytes = resources.files("numconv").joinpath("datasets", "mnist_subset.npz").read_bytes()
    with np.load(io.BytesIO(archive_bytes)) as archive:
        images, labels, source_index = archive["images"], archive["labels"], archive["source_index"]
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8 and labels.dtype == np.uint8
    # Train = the archive's first 4,000 rows, test = the last 1,000, in that order.
    np.testing.assert_array_equal(train.targets, labels[:4000])
    np.testing.assert_array_equal(test.targets, labels[4000:])
    scaled = images / 255.0
    mean, std = scaled[:4000].mean(), scaled[:4000].std()
    np.testing.assert_allclose(train.inputs[:, 0], (scaled[:4000] - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(test.inputs[:, 0], (scaled[4000:] - mean) / std, rtol=1e-5, atol=1e-5)
    # Every source row once; no image in both parts.
    assert sorted(source_index.tolist()) == list(range(5000))
    train_rows = {row.tobytes() for row in images[:4000].reshape(4000, -1)}
    assert not any(row.tobytes() in train_rows for row in images[4000:].reshape(1000, -1))
    # The split does not move between calls.
    again_train, again_test = data.load_default()
    np.testing.assert_array_equal(again_train.inputs, train.inputs)
    np.testing.assert_array_equal(again_test.targets, test.targets)


# ---------------------------------------------------------------------------------------------------------
# Synthetic sets


def cepstral_peak_prominence(signal: np.ndarray, rate: int = data.SPEECH_SAMPLE_RATE) -> float:
    """Height of the largest real-cepstrum value at quefrencies of 80–250 Hz pitch, in standard deviations
    of the cepstrum over that range: large for a pulse train (evenly spaced harmonics), small for noise and
    for pure tones."""
    windowed = (signal - signal.mean()) * np.hanning(signal.size)
    power = np.abs(np.fft.rfft(windowed)) ** 2
    cepstrum = np.fft.irfft(np.log(power + 1e-12 * power.mean()))
    band = cepstrum[rate // 250:rate // 80 + 1]
    return float((band.max() - band.mean()) / band.std())


def test_speech_shapes_balance_and_determinism():
    train, test = data.speech(n_train=40, n_test=10, length=2000, seed=3)
    assert train.inputs.shape == (40, 1, 2000) and test.inputs.shape == (10, 1, 2000)
    assert train.inputs.dtype == np.float32 and train.targets.dtype == np.int64 and train.num_classes == 2
    np.testing.assert_array_equal(np.bincount(train.targets), [20, 20])
    np.testing.assert_array_equal(np.bincount(test.targets), [5, 5])
    same_train, same_test = data.speech(n_train=40, n_test=10, length=2000, seed=3)
    np.testing.assert_array_equal(same_train.inputs, train.inputs)
    np.testing.assert_array_equal(same_test.targets, test.targets)
    other_train, _ = data.speech(n_train=40, n_test=10, length=2000, seed=4)
    assert not np.array_equal(other_train.inputs, train.inputs)
    # The test part does not depend on how many training clips were drawn.
    _, test_after_more_training = data.speech(n_train=41, n_test=10, length=2000, seed=3)
    np.testing.assert_array_equal(test_after_more_training.targets, test.targets)


def test_speech_voiced_clips_have_a_pitch_period():
    train, _ = data.speech(n_train=240, n_test=1, seed=0)
    prominence = np.array([cepstral_peak_prominence(clip[0].astype(np.float64)) for clip in train.inputs])
    voiced, other = prominence[train.targets == 1], prominence[train.targets == 0]
    assert np.median(voiced) > np.percentile(other, 95)
    threshold = (np.median(voiced) + np.median(other)) / 2
    accuracy = np.mean((prominence > threshold) == (train.targets == 1))
    assert accuracy > 0.9, accuracy


def motion_of(clip: np.ndarray) -> np.ndarray:
    """(rows, columns) the bright shape's centroid moves from the first frame to the last of (T, H, W)."""
    threshold = (np.median(clip) + clip.max()) / 2
    rows, columns = np.mgrid[0:clip.shape[1], 0:clip.shape[2]]
    centroids = []
    for frame in (clip[0], clip[-1]):
        mask = frame > threshold
        centroids.append([rows[mask].mean(), columns[mask].mean()])
    return np.subtract(centroids[1], centroids[0])


def test_clips_shapes_balance_determinism_and_motion():
    train, test = data.clips(n_train=80, n_test=20, seed=0)
    assert train.inputs.shape == (80, 1, 8, 16, 16) and test.inputs.shape == (20, 1, 8, 16, 16)
    assert train.inputs.dtype == np.float32 and train.num_classes == 4
    np.testing.assert_array_equal(np.bincount(train.targets), [20] * 4)
    np.testing.assert_array_equal(np.bincount(test.targets), [5] * 4)
    again, _ = data.clips(n_train=80, n_test=20, seed=0)
    np.testing.assert_array_equal(again.inputs, train.inputs)
    other, _ = data.clips(n_train=80, n_test=20, seed=1)
    assert not np.array_equal(other.inputs, train.inputs)
    for clip, label in zip(train.inputs[:, 0], train.targets):
        expected_direction = np.array(data.CLIP_DIRECTIONS[int(label)][1])
        motion = motion_of(clip)
        assert np.sign(np.round(motion)).tolist() == expected_direction.tolist(), (label, motion)


def test_clips_other_geometry():
    train, _ = data.clips(n_train=8, n_test=4, frames=4, size=6, seed=2)
    assert train.inputs.shape == (8, 1, 4, 6, 6)
    with pytest.raises(ValueError, match="size"):
        data.clips(n_train=8, n_test=4, frames=8, size=9)


def test_shapes_sizes_balance_determinism_and_standardisation():
    train, test = data.shapes(n_train=40, n_test=20, size=40, seed=3)
    assert train.inputs.shape == (40, 3, 40, 40) and test.inputs.shape == (20, 3, 40, 40)
    assert train.inputs.dtype == np.float32 and train.num_classes == len(data.SHAPE_CLASSES) == 10
    np.testing.assert_array_equal(np.bincount(train.targets), [4] * 10)
    np.testing.assert_array_equal(np.bincount(test.targets), [2] * 10)
    np.testing.assert_allclose(train.inputs.mean(axis=(0, 2, 3)), 0, atol=1e-5)  # per channel, training part
    np.testing.assert_allclose(train.inputs.std(axis=(0, 2, 3)), 1, rtol=1e-4)
    again, _ = data.shapes(n_train=40, n_test=20, size=40, seed=3)
    np.testing.assert_array_equal(again.inputs, train.inputs)
    assert not np.array_equal(data.shapes(n_train=40, n_test=20, size=40, seed=4)[0].inputs, train.inputs)
    with pytest.raises(ValueError, match="size must be at least 16"):
        data.shapes(size=8)


def test_shapes_class_is_the_figure_and_its_colour():
    # the figures' areas relative to a disc of the same radius: square of half-side 0.75, triangle of
    # circumradius 1, cross of arms 0.6 wide, ring between 0.55 and 1
    want = {"disc": 1.0, "square": 4 * 0.75 ** 2 / np.pi, "triangle": 3 * np.sqrt(3) / 4 / np.pi,
            "cross": (2 * 2 * 0.6 - 0.6 ** 2) / np.pi, "ring": 1 - 0.55 ** 2}
    for figure, name in enumerate(data.SHAPE_FIGURES):
        ratios = []
        for seed in range(4):
            radius_rng, mask_rng = np.random.default_rng(seed), np.random.default_rng(seed)
            radius = radius_rng.uniform(0.16, 0.3) * 200
            ratios.append(synthetic._figure_mask(figure, 200, mask_rng).sum() / (np.pi * radius ** 2))
        np.testing.assert_allclose(ratios, want[name], rtol=0.03, err_msg=name)
    # warm classes are redder than blue where the figure is, cool ones bluer: over whole raw images too
    images, labels = synthetic._shapes_part(60, 48, np.random.default_rng(0))
    red_minus_blue = (images[:, 0] - images[:, 2]).mean(axis=(1, 2))
    warm = labels % 2 == 0
    assert data.SHAPE_CLASSES[0].startswith("warm") and data.SHAPE_CLASSES[1].startswith("cool")
    assert red_minus_blue[warm].min() > red_minus_blue[~warm].max()


# ---------------------------------------------------------------------------------------------------------
# Batching


def indexed_dataset(count=23):
    """Inputs whose every value is the sample's index, so batches show which samples they hold."""
    inputs = np.repeat(np.arange(count, dtype=np.float32), 6).reshape(count, 1, 2, 3)
    return Dataset(inputs, np.arange(count) % 3, 3, "indexed")


def test_batches_cover_every_sample_once_in_a_seeded_order():
    dataset = indexed_dataset()
    drawn = list(data.batches(dataset, 5, rng=np.random.default_rng(7)))
    assert [len(targets) for _, targets in drawn] == [5, 5, 5, 5, 3]
    order = np.concatenate([inputs[:, 0, 0, 0] for inputs, _ in drawn]).astype(int)
    assert sorted(order.tolist()) == list(range(23))
    assert order.tolist() != list(range(23))
    for inputs, targets in drawn:
        assert inputs.flags.c_contiguous and targets.flags.c_contiguous
        assert inputs.dtype == np.float32 and targets.dtype == np.int64
        np.testing.assert_array_equal(targets, inputs[:, 0, 0, 0].astype(int) % 3)

    def order_for(seed):
        drawn_inputs = [x for x, _ in data.batches(dataset, 5, rng=np.random.default_rng(seed))]
        return np.concatenate([x[:, 0, 0, 0] for x in drawn_inputs])

    repeat = order_for(7)
    np.testing.assert_array_equal(repeat, order)
    other = order_for(8)
    assert other.tolist() != order.tolist()


def test_batches_in_order_and_drop_last():
    dataset = indexed_dataset()
    drawn = list(data.batches(dataset, 10, shuffle=False))
    assert [x[:, 0, 0, 0].astype(int).tolist() for x, _ in drawn] == [list(range(10)), list(range(10, 20)),
                                                                       [20, 21, 22]]
    assert [len(t) for _, t in data.batches(dataset, 10, shuffle=False, drop_last=True)] == [10, 10]
    assert [len(t) for _, t in data.batches(dataset, 50, shuffle=False, drop_last=True)] == []
    assert [len(t) for _, t in data.batches(dataset, 50, shuffle=False)] == [23]


@pytest.mark.parametrize("batch_size, error", [(0, ValueError), (-3, ValueError), (2.5, TypeError),
                                               ("4", TypeError), (True, TypeError), (None, TypeError)])
def test_batches_rejects_bad_batch_size_naming_it(batch_size, error):
    with pytest.raises(error, match="batch_size") as raised:
        data.batches(indexed_dataset(), batch_size, shuffle=False)
    assert repr(batch_size) in str(raised.value) or str(batch_size) in str(raised.value)


def test_batches_needs_an_explicit_generator_to_shuffle():
    with pytest.raises(ValueError, match="rng"):
        data.batches(indexed_dataset(), 4)
    with pytest.raises(TypeError, match="rng"):
        data.batches(indexed_dataset(), 4, rng=7)
    assert len(list(data.batches(indexed_dataset(), 4, shuffle=False))) == 6


def test_dataset_validates_its_fields():
    with pytest.raises(ValueError, match="targets shape"):
        Dataset(np.zeros((4, 1, 3), np.float32), np.zeros(3, np.int64), 2, "bad")
    with pytest.raises(ValueError, match="targets outside"):
        Dataset(np.zeros((2, 1, 3), np.float32), np.array([0, 2]), 2, "bad")
    with pytest.raises(TypeError, match="float32"):
        Dataset(np.zeros((2, 1, 3), np.int32), np.zeros(2, np.int64), 2, "bad")
    dataset = Dataset(np.zeros((2, 1, 3), np.float32), np.array([0, 1], dtype=np.int32), 2, "ok")
    assert dataset.targets.dtype == np.int64 and len(dataset) == 2 and dataset.sample_shape == (1, 3)


# ---------------------------------------------------------------------------------------------------------
# Command-line names


def test_load_resolves_every_name(tmp_path, monkeypatch, mnist):
    train, _ = data.load("mnist")
    np.testing.assert_array_equal(train.targets, mnist[0].targets)
    clips_train, _ = data.load("clips", seed=5)
    np.testing.assert_array_equal(clips_train.inputs, data.clips(seed=5)[0].inputs)
    seeds = []
    monkeypatch.setattr(data, "speech", lambda seed=0: seeds.append(seed) or "speech-set")
    assert data.load("speech", seed=9) == "speech-set" and seeds == [9]

    idx_dir = tmp_path / "fashion"
    idx_dir.mkdir()
    write_idx_dir(idx_dir, *small_mnist_like(np.random.default_rng(0)))
    idx_train, _ = data.load(f"idx:{idx_dir}")
    assert idx_train.inputs.shape == (12, 1, 6, 6) and idx_train.name == "idx:fashion/train"
    cifar_dir = tmp_path / "cifar"
    cifar_dir.mkdir()
    write_cifar_dir(cifar_dir, np.random.default_rng(0))
    cifar_train, _ = data.load(f"cifar10:{cifar_dir}")
    assert cifar_train.inputs.shape == (14, 3, 32, 32)
    shapes_train, _ = data.load("shapes:24", seed=2)
    assert shapes_train.inputs.shape == (400, 3, 24, 24)


def test_as_dtype_converts_only_when_needed():
    dataset = indexed_dataset()
    assert data.as_dtype(dataset, "float32") is dataset
    wide = data.as_dtype(dataset, np.float64)
    assert wide.inputs.dtype == np.float64 and wide.targets is dataset.targets
    np.testing.assert_array_equal(wide.inputs, dataset.inputs)


@pytest.mark.parametrize("spec", ["imagenet", "MNIST", "idx:", "cifar10:", "speech:x", "", "shapes:x",
                                  "shapes:"])
def test_load_rejects_unknown_names_naming_them(spec):
    with pytest.raises(ValueError) as error:
        data.load(spec)
    assert repr(spec) in str(error.value)
