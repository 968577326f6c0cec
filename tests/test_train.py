"""fit / evaluate: determinism, resume to the same weights, atomic checkpoints, metrics."""
import json
import os

import numpy as np
import pytest

from numconv import data, models, optim, train
from numconv.data import Dataset


@pytest.fixture(scope="module")
def small_mnist():
    full_train, full_test = data.mnist_subset()
    train_set = Dataset(full_train.inputs[:192], full_train.targets[:192], 10, "train-part")
    test_set = Dataset(full_test.inputs[:96], full_test.targets[:96], 10, "test-part")
    return train_set, test_set


def _run(small_mnist, epochs, out_dir=None, resume=False, seed=3, augment=None):
    train_set, test_set = small_mnist
    model = models.lenet5(rng=np.random.default_rng(seed))
    optimizer = optim.SGD(model, lr=0.02, momentum=0.9, weight_decay=5e-4, nesterov=True)
    scheduler = optim.StepLR(optimizer, step_size=1, gamma=0.5)
    history = train.fit(model, train_set, test_set, epochs=epochs, batch_size=32, optimizer=optimizer,
                        scheduler=scheduler, seed=seed, out_dir=out_dir, resume=resume, progress=False,
                        augment=augment)
    return model, optimizer, history


def test_same_seed_gives_the_same_weights_and_another_seed_does_not(small_mnist):
    first, _, history = _run(small_mnist, 1)
    second, _, _ = _run(small_mnist, 1)
    other, _, _ = _run(small_mnist, 1, seed=4)
    for a, b, c in zip(first.parameters(), second.parameters(), other.parameters()):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
    assert set(history[0]) >= {"epoch", "train_loss", "test_loss", "test_top1", "test_top5", "seconds"}


def test_resume_reaches_exactly_the_uninterrupted_weights(small_mnist, tmp_path):
    shift = data.random_shift(1)
    straight, straight_opt, straight_history = _run(small_mnist, 3, tmp_path / "straight", augment=shift)
    _run(small_mnist, 1, tmp_path / "pieces", augment=shift)
    resumed, resumed_opt, resumed_history = _run(small_mnist, 3, tmp_path / "pieces", resume=True, augment=shift)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(straight_opt.velocities, resumed_opt.velocities):
        np.testing.assert_array_equal(a, b)
    assert resumed_opt.lr == straight_opt.lr == 0.02 * 0.5 ** 3
    assert [h["test_loss"] for h in resumed_history] == [h["test_loss"] for h in straight_history]
    metrics = json.loads((tmp_path / "pieces" / "metrics.json").read_text())
    assert [m["epoch"] for m in metrics] == [1, 2, 3]


def test_resume_without_a_checkpoint_is_a_clear_error(small_mnist, tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        _run(small_mnist, 1, tmp_path, resume=True)


def test_training_lowers_the_loss(small_mnist):
    _, _, history = _run(small_mnist, 3)
    assert history[-1]["train_loss"] < 0.8 * history[0]["train_loss"]


def test_checkpoint_write_is_atomic(small_mnist, tmp_path, monkeypatch):
    model, optimizer, history = _run(small_mnist, 1, tmp_path)
    path = tmp_path / train.CHECKPOINT
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        train.save_checkpoint(path, model, optimizer, None, history, [np.random.default_rng(0)])
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz", "metrics.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


def test_damaged_checkpoint_names_the_file(tmp_path):
    path = tmp_path / "checkpoint.npz"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="checkpoint.npz"):
        train.load_checkpoint(path)


def test_evaluate_counts_top1_and_top5():
    class Fixed:
        training = False

        def forward(self, x):
            # logits rank the class written in the input first, then 9, 8, 7, ...
            logits = np.tile(np.arange(10, dtype=np.float32), (len(x), 1))
            logits[np.arange(len(x)), x[:, 0, 0, 0].astype(int)] = 100.0
            return logits

        def train(self, mode=True):
            self.training = mode

        def eval(self):
            self.train(False)

    inputs = np.zeros((4, 1, 2, 2), dtype=np.float32)
    inputs[:, 0, 0, 0] = [0, 1, 2, 3]
    targets = np.array([0, 5, 7, 3])
    scores = train.evaluate(Fixed(), Dataset(inputs, targets, 10, "fixed"), batch_size=3)
    # sample 0: target 0 has logit 100, top-1; sample 1: target 5 ranks 6th (after 1 (100), 9, 8, 7, 6): miss;
    # sample 2: target 7 ranks 4th (after 2, 9, 8): top-5; sample 3: target 3 has logit 100: top-1
    assert scores["top1"] == 0.5
    assert scores["top5"] == 0.75


def test_fit_rejects_bad_arguments(small_mnist):
    train_set, test_set = small_mnist
    model = models.lenet5(rng=0)
    optimizer = optim.SGD(model, lr=0.01)
    with pytest.raises(ValueError, match="epochs"):
        train.fit(model, train_set, test_set, epochs=0, batch_size=8, optimizer=optimizer)
    with pytest.raises(ValueError, match="batch_size"):
        train.fit(model, train_set, test_set, epochs=1, batch_size=-1, optimizer=optimizer)


def test_random_shift_moves_each_sample_within_bounds():
    image = np.zeros((1, 1, 7, 7), dtype=np.float32)
    image[0, 0, 3, 3] = 1.0
    rng = np.random.default_rng(0)
    shifted = data.random_shift(2)(np.repeat(image, 50, axis=0), rng)
    positions = {tuple(np.argwhere(s[0] == 1.0)[0]) for s in shifted}
    assert all(1 <= r <= 5 and 1 <= c <= 5 for r, c in positions)
    assert len(positions) > 10
    assert np.all(shifted.sum(axis=(1, 2, 3)) == 1.0)
