"""The pictures: the filters' tiles (scaling, colour, layout), the figures matplotlib draws of them and of the
training curves, read back through matplotlib, and their atomic writing."""
from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib import image as mpimg
from matplotlib.figure import Figure

from numconv import viz


def test_grey_tiles_are_each_scaled_to_their_own_range():
    weight = np.zeros((2, 1, 3, 3))
    weight[0, 0, 1, 1] = 5.0                                # a bright centre
    weight[1, 0] = np.arange(9).reshape(3, 3) * 1e-6        # a tiny ramp still spans black to white
    tiles, kind = viz.filter_tiles(weight)
    assert kind == "grey"
    np.testing.assert_array_equal(tiles[0], np.pad([[1.0]], 1))
    np.testing.assert_allclose(tiles[1], np.arange(9).reshape(3, 3) / 8)


def test_rgb_tiles_keep_the_colours_on_one_scale_per_filter():
    weight = np.zeros((1, 3, 2, 2))
    weight[0, 0, 0, 0] = 2.0   # red top left
    weight[0, 2, 1, 1] = 1.0   # half-bright blue bottom right
    (tile,), kind = viz.filter_tiles(weight)
    assert kind == "rgb" and tile.shape == (2, 2, 3)
    np.testing.assert_allclose(tile[0, 0], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(tile[1, 1], [0.0, 0.0, 0.5])


def test_other_channel_counts_3d_and_1d_filters():
    tiles, kind = viz.filter_tiles(np.arange(2 * 2 * 3 * 4).reshape(2, 2, 3, 4))  # 2 channels side by side
    assert kind == "grey" and tiles[0].shape == (3, 8) and tiles[0].min() == 0 and tiles[0].max() == 1
    volume = np.zeros((1, 1, 3, 2, 2))
    volume[0, 0, 1] = [[0.0, 1.0], [2.0, 3.0]]  # only the middle depth slice is shown
    np.testing.assert_allclose(viz.filter_tiles(volume)[0][0], [[0, 1 / 3], [2 / 3, 1]])
    tiles, kind = viz.filter_tiles(np.array([[[-2.0, 0.0, 1.0]]]))
    assert kind == "taps"
    np.testing.assert_allclose(tiles[0], [[0.0, 0.5, 0.75]])  # the zero line at 0.5


@pytest.mark.parametrize("weight, error", [
    (np.zeros((2, 3)), ValueError), (np.zeros((0, 1, 3, 3)), ValueError), (np.zeros((2, 1, 3, 3), bool), TypeError),
])
def test_filter_tiles_reject_other_arrays(weight, error):
    with pytest.raises(error, match="weight"):
        viz.filter_tiles(weight)


def test_filters_figure_puts_each_column_in_a_block_of_its_own():
    weight = np.random.default_rng(0).standard_normal((8, 3, 5, 5))
    figure = viz.filters_figure(weight, blocks=2, title="features.0")
    assert isinstance(figure, Figure) and figure._suptitle.get_text() == "features.0"
    blocks = figure.subfigs
    assert [block._suptitle.get_text() for block in blocks] == ["column 0", "column 1"]
    tiles, _ = viz.filter_tiles(weight)
    for block, first in zip(blocks, (0, 4)):
        shown = [axis.images[0].get_array() for axis in block.axes if axis.images]
        assert len(shown) == 4
        for offset, array in enumerate(shown):
            np.testing.assert_allclose(array, tiles[first + offset])
    with pytest.raises(ValueError, match="blocks"):
        viz.filters_figure(weight, blocks=3)


def test_saved_filters_show_each_colour_where_its_filter_is(tmp_path):
    weight = np.full((4, 3, 4, 4), -1.0)  # four filters: a 2 x 2 grid
    weight[0, 0] = 1.0   # red (red at the top of its scale, green and blue at the bottom): first, top left
    weight[1, 2] = 1.0   # blue: second, top right
    weight[2:, :, :2] = 1.0  # two grey ones below
    path = viz.save_filters(tmp_path / "filters.png", weight)
    pixels = mpimg.imread(path)[..., :3]
    red = (pixels[..., 0] > 0.9) & (pixels[..., 1] < 0.1) & (pixels[..., 2] < 0.1)
    blue = (pixels[..., 2] > 0.9) & (pixels[..., 0] < 0.1) & (pixels[..., 1] < 0.1)
    assert red.sum() > 50 and blue.sum() > 50
    assert np.nonzero(red)[1].mean() < np.nonzero(blue)[1].mean()  # left of it
    assert abs(np.nonzero(red)[0].mean() - np.nonzero(blue)[0].mean()) < 5  # on the same row
    assert [p.name for p in tmp_path.iterdir()] == ["filters.png"]


def _history(epochs):
    return [{"epoch": e, "train_loss": 2.0 / e, "test_loss": 2.5 / e, "test_top1": 0.5 + 0.1 * e,
             "test_top5": 0.9} for e in range(1, epochs + 1)]


def test_curves_figure_plots_each_curve_in_its_panel():
    history = _history(3)
    history[1]["test_loss"] = math.nan  # a gap
    figure = viz.curves_figure(history)
    loss, accuracy = figure.axes
    assert (loss.get_xlabel(), loss.get_ylabel()) == ("epoch", "cross-entropy")
    assert (accuracy.get_xlabel(), accuracy.get_ylabel()) == ("epoch", "accuracy (%)")
    lines = {line.get_label(): line for axis in (loss, accuracy) for line in axis.lines}
    assert set(lines) == {"train loss", "test loss", "test top-1", "test top-5"}
    np.testing.assert_allclose(lines["train loss"].get_ydata(), [2.0, 1.0, 2 / 3])
    np.testing.assert_allclose(lines["test top-1"].get_ydata(), [60.0, 70.0, 80.0])
    assert np.isnan(lines["test loss"].get_ydata()[1])
    np.testing.assert_array_equal(lines["train loss"].get_xdata(), [1, 2, 3])
    labels = [text.get_text() for text in accuracy.get_legend().get_texts()]
    assert labels == ["test top-1", "test top-5"]
    without_top5 = viz.curves_figure(history, top5=False)
    assert [line.get_label() for line in without_top5.axes[1].lines] == ["test top-1"]


def test_saved_curves_are_a_png_of_the_figure(tmp_path):
    path = viz.save_curves(tmp_path / "curves.png", _history(1))
    height, width = mpimg.imread(path).shape[:2]
    assert (width, height) == (920, 340)  # two 4.6 x 3.4 inch panels at 100 dpi


def test_curves_reject_what_is_not_a_history():
    with pytest.raises(TypeError, match="history"):
        viz.curves_figure({"epoch": 1})
    with pytest.raises(TypeError, match="history"):
        viz.curves_figure([1, 2])


def test_a_failed_save_leaves_the_old_picture(tmp_path, monkeypatch):
    path = viz.save_curves(tmp_path / "curves.png", _history(2))
    before = path.read_bytes()

    def broken(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        viz.save_curves(path, _history(3))
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["curves.png"]
