"""PNG output, filter grids and training curves, checked by decoding the files here with zlib alone."""
from __future__ import annotations

import math
import struct
import zlib

import numpy as np
import pytest

from numconv import viz

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def paeth(left: int, up: int, up_left: int) -> int:
    estimate = left + up - up_left
    distances = abs(estimate - left), abs(estimate - up), abs(estimate - up_left)
    if distances[0] <= distances[1] and distances[0] <= distances[2]:
        return left
    return up if distances[1] <= distances[2] else up_left


def decode_png(payload: bytes) -> tuple[np.ndarray, list[int]]:
    """Decode an 8-bit grey or RGB, non-interlaced PNG: returns (pixels, the filter type of each row).
    Every chunk's CRC is checked; rows are unfiltered byte by byte as the PNG specification states."""
    assert payload[:8] == PNG_SIGNATURE
    position, chunks = 8, []
    while position < len(payload):
        (length,) = struct.unpack(">I", payload[position:position + 4])
        kind = payload[position + 4:position + 8]
        body = payload[position + 8:position + 8 + length]
        (crc,) = struct.unpack(">I", payload[position + 8 + length:position + 12 + length])
        assert crc == zlib.crc32(kind + body), f"bad CRC in {kind!r}"
        chunks.append((kind, body))
        position += 12 + length
    assert position == len(payload)
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, bit_depth, colour_type, compression, filter_method, interlace = \
        struct.unpack(">IIBBBBB", chunks[0][1])
    assert (bit_depth, compression, filter_method, interlace) == (8, 0, 0, 0)
    channels = {0: 1, 2: 3}[colour_type]
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride = width * channels
    assert len(raw) == height * (stride + 1)
    rows, filters, previous = [], [], bytearray(stride)
    for y in range(height):
        line = raw[y * (stride + 1):(y + 1) * (stride + 1)]
        filter_type, row = line[0], bytearray(line[1:])
        filters.append(filter_type)
        for i in range(stride):
            left = row[i - channels] if i >= channels else 0
            up = previous[i]
            up_left = previous[i - channels] if i >= channels else 0
            predictor = [0, left, up, (left + up) // 2, paeth(left, up, up_left)][filter_type]
            row[i] = (row[i] + predictor) & 0xFF
        rows.append(bytes(row))
        previous = row
    pixels = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(height, width, channels)
    return (pixels[:, :, 0] if channels == 1 else pixels), filters


def read_png(path) -> np.ndarray:
    return decode_png(path.read_bytes())[0]


# ---------------------------------------------------------------------------------------------------------
# write_png


def test_write_png_small_grey_image(tmp_path):
    image = np.array([[0, 1, 2, 255], [10, 20, 30, 40], [255, 128, 64, 0]], dtype=np.uint8)
    path = viz.write_png(tmp_path / "grey.png", image)
    payload = path.read_bytes()
    width, height, bit_depth, colour_type = struct.unpack(">IIBB", payload[16:26])
    assert (width, height, bit_depth, colour_type) == (4, 3, 8, 0)
    np.testing.assert_array_equal(read_png(path), image)


def test_write_png_small_rgb_image(tmp_path):
    image = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]],
                      [[1, 2, 3], [250, 251, 252], [7, 7, 7]]], dtype=np.uint8)
    path = viz.write_png(tmp_path / "rgb.png", image)
    assert struct.unpack(">IIBB", path.read_bytes()[16:26]) == (3, 2, 8, 2)
    np.testing.assert_array_equal(read_png(path), image)


def test_write_png_round_trips_images_that_use_every_filter(tmp_path):
    rng = np.random.default_rng(0)
    rows, columns = np.mgrid[0:40, 0:50]
    images = {
        "noise-rgb": rng.integers(0, 256, (17, 23, 3), dtype=np.uint8),
        "noise-grey": rng.integers(0, 256, (9, 31), dtype=np.uint8),
        "ramp": (columns * 5 % 256).astype(np.uint8),
        "stripes": np.tile(rng.integers(0, 256, 50, dtype=np.uint8), (40, 1)),
        "waves": np.stack([(128 + 60 * np.sin(columns / 5) * np.cos(rows / 7)).astype(np.uint8)] * 3, axis=2),
        "one-pixel": np.array([[7]], dtype=np.uint8),
    }
    used_filters = set()
    for name, image in images.items():
        pixels, filters = decode_png(viz.write_png(tmp_path / f"{name}.png", image).read_bytes())
        np.testing.assert_array_equal(pixels, image, err_msg=name)
        used_filters.update(filters)
    # The encoder picks a filter per row; all five (None, Sub, Up, Average, Paeth) occur and decode exactly.
    assert used_filters == {0, 1, 2, 3, 4}


def test_write_png_replaces_atomically_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "picture.png"
    path.write_bytes(b"old contents")
    viz.write_png(path, np.zeros((2, 2), dtype=np.uint8))
    np.testing.assert_array_equal(read_png(path), np.zeros((2, 2)))
    assert [p.name for p in tmp_path.iterdir()] == ["picture.png"]


@pytest.mark.parametrize("image, error", [
    (np.zeros((2, 2), dtype=np.float32), TypeError),
    (np.zeros((2, 2, 4), dtype=np.uint8), ValueError),
    (np.zeros((0, 3), dtype=np.uint8), ValueError),
    ([[0, 1]], TypeError),
])
def test_write_png_rejects_other_images_without_touching_the_file(tmp_path, image, error):
    path = tmp_path / "kept.png"
    path.write_bytes(b"old contents")
    with pytest.raises(error):
        viz.write_png(path, image)
    assert path.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["kept.png"]


# ---------------------------------------------------------------------------------------------------------
# filter_grid


def test_filter_grid_places_and_scales_a_known_grey_filter():
    weight = np.zeros((5, 1, 3, 3))
    weight[4, 0] = np.arange(9).reshape(3, 3) - 2.0  # min -2 → 0, max 6 → 255
    weight[0, 0] = 7.0  # constant → mid grey
    grid = viz.filter_grid(weight, columns=3, scale=2)
    tile = 3 * 2
    assert grid.dtype == np.uint8 and grid.shape == (2 * (tile + 1) + 1, 3 * (tile + 1) + 1)
    # Filter 4 is at grid row 1, column 1: top-left pixel 1 + 1·(6 + 1) = 8.
    expected = np.rint(np.arange(9).reshape(3, 3) * 255 / 8).astype(np.uint8)
    expected = expected.repeat(2, axis=0).repeat(2, axis=1)
    np.testing.assert_array_equal(grid[8:8 + tile, 8:8 + tile], expected)
    np.testing.assert_array_equal(grid[1:1 + tile, 1:1 + tile], np.full((tile, tile), 128))
    # Borders: the outer frame and the lines between tiles are white, as is the unused sixth tile.
    assert (grid[0] == 255).all() and (grid[:, 0] == 255).all() and (grid[7] == 255).all()
    assert (grid[8:8 + tile, 15:15 + tile] == 255).all()


def test_filter_grid_rgb_keeps_colour_and_scales_each_filter_jointly():
    weight = np.zeros((2, 3, 2, 2))
    weight[0, 0] = 1.0        # pure red filter: R max, G and B at the filter's min
    weight[1, 2] = -4.0       # blue channel at the min
    weight[1, :, 0, 0] = 4.0  # one white pixel
    grid = viz.filter_grid(weight, columns=2, scale=1, min_width=1)
    assert grid.shape == (4, 7, 3)
    np.testing.assert_array_equal(grid[1:3, 1:3], np.broadcast_to([255, 0, 0], (2, 2, 3)))
    second = grid[1:3, 4:6]
    np.testing.assert_array_equal(second[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(second[1, 1], [128, 128, 0])  # 0 on a −4..4 scale → 127.5 → 128


def test_filter_grid_is_at_least_the_requested_width_and_other_channel_counts():
    grid = viz.filter_grid(np.random.default_rng(0).normal(size=(6, 1, 5, 5)))
    assert grid.ndim == 2 and grid.shape[1] >= 200
    columns = 2  # √6 rounded
    assert (grid.shape[1] - columns - 1) % (columns * 5) == 0
    two_channel = viz.filter_grid(np.random.default_rng(0).normal(size=(4, 2, 3, 3)), scale=1)
    assert two_channel.shape == (4 * 4 + 1, 2 * 4 + 1)  # a filter per row, a channel per column


def test_filter_grid_3d_shows_the_middle_depth_slice():
    weight = np.random.default_rng(1).normal(size=(4, 1, 5, 3, 3))
    np.testing.assert_array_equal(viz.filter_grid(weight), viz.filter_grid(weight[:, :, 2]))
    rgb = viz.filter_grid(np.random.default_rng(2).normal(size=(2, 3, 3, 4, 4)))
    assert rgb.ndim == 3 and rgb.shape[2] == 3


def test_filter_grid_1d_draws_bar_plots_from_the_zero_line():
    weight = np.array([[[-1.0, 0.0, 1.0, 0.5]]])
    grid = viz.filter_grid(weight, scale=1, bar_height=11)
    assert grid.shape == (13, 6)
    plot = grid[1:12, 1:5]
    # Rows 1..9 span 1 → −1, the zero line is row 5; rows 0 and 10 stay blank.
    bars = [(plot[:, column] == 255).nonzero()[0].tolist() for column in range(4)]
    assert bars == [[5, 6, 7, 8, 9], [5], [1, 2, 3, 4, 5], [3, 4, 5]]
    assert set(np.unique(plot).tolist()) == {0, 255}


def test_filter_grid_1d_stretches_short_filters_sideways():
    grid = viz.filter_grid(np.random.default_rng(3).normal(size=(16, 2, 5)))
    assert grid.shape[1] >= 200
    assert (grid.shape[0] - 1) % (2 * 24 + 1 + 1) == 0  # each tile: two 24-px plots and a separator row


def test_save_filters_writes_the_grid(tmp_path):
    weight = np.random.default_rng(4).normal(size=(8, 3, 5, 5)).astype(np.float32)
    path = viz.save_filters(tmp_path / "filters.png", weight)
    np.testing.assert_array_equal(read_png(path), viz.filter_grid(weight))


@pytest.mark.parametrize("weight", [np.zeros((4, 4)), np.zeros((0, 1, 3, 3)), np.zeros((1,) * 6)])
def test_filter_grid_rejects_other_shapes(weight):
    with pytest.raises(ValueError, match="weight"):
        viz.filter_grid(weight)


# ---------------------------------------------------------------------------------------------------------
# Training curves


def history_of(epochs: int) -> list[dict]:
    return [dict(epoch=e, train_loss=2.3 * math.exp(-e / 4) + 0.1, test_loss=2.3 * math.exp(-e / 5) + 0.2,
                 test_top1=1 - 0.9 * math.exp(-e / 3), test_top5=1 - 0.5 * math.exp(-e / 2))
            for e in range(1, epochs + 1)]


def pixels_of(image: np.ndarray, colour) -> tuple[np.ndarray, np.ndarray]:
    return np.nonzero(np.all(image == np.array(colour, dtype=np.uint8), axis=2))


def test_curves_image_draws_each_curve_in_its_panel():
    image = viz.curves_image(history_of(12), width=800, height=300)
    assert image.shape == (300, 800, 3) and image.dtype == np.uint8
    for key, colour in viz.CURVE_COLOURS.items():
        rows, columns = pixels_of(image, colour)
        assert rows.size > 100, key
        in_left_panel = columns < 400
        # The legend swatch sits on the title line; everything below it is the curve.
        curve = rows > 26
        assert in_left_panel[curve].all() if "loss" in key else not in_left_panel[curve].any(), key
    # Loss falls and accuracy rises: the curve's first column is lower (larger row) than its last for
    # accuracy, higher for loss.
    rows, columns = pixels_of(image, viz.CURVE_COLOURS["train_loss"])
    rows, columns = rows[rows > 26], columns[rows > 26]
    assert rows[columns == columns.min()].mean() < rows[columns == columns.max()].mean()
    rows, columns = pixels_of(image, viz.CURVE_COLOURS["test_top1"])
    rows, columns = rows[rows > 26], columns[rows > 26]
    assert rows[columns == columns.min()].mean() > rows[columns == columns.max()].mean()


def test_curves_image_single_epoch_nan_missing_and_empty():
    single = viz.curves_image(history_of(1))
    assert pixels_of(single, viz.CURVE_COLOURS["test_top5"])[0].size > 0
    gappy = history_of(6)
    gappy[2]["train_loss"] = float("nan")
    gappy[3]["test_top1"] = None
    gappy[4]["test_loss"] = float("inf")
    del gappy[5]["test_top5"]
    assert viz.curves_image(gappy).shape == (300, 800, 3)
    all_nan = [dict(epoch=e, train_loss=float("nan"), test_top1=float("nan")) for e in (1, 2)]
    assert viz.curves_image(all_nan).shape == (300, 800, 3)
    blank = viz.curves_image([])
    assert blank.shape == (300, 800, 3)
    for colour in viz.CURVE_COLOURS.values():
        assert pixels_of(blank, colour)[0].size == 0
    percent = [dict(epoch=e, test_top1=40.0 + 10 * e) for e in (1, 2, 3)]
    assert pixels_of(viz.curves_image(percent), viz.CURVE_COLOURS["test_top1"])[0].size > 0


def test_save_curves_writes_the_image(tmp_path):
    history = history_of(5)
    path = viz.save_curves(tmp_path / "curves.png", history, width=400, height=200)
    np.testing.assert_array_equal(read_png(path), viz.curves_image(history, width=400, height=200))


def test_curves_image_rejects_non_sequences():
    with pytest.raises(TypeError):
        viz.curves_image({"epoch": 1})
    with pytest.raises(ValueError, match="width"):
        viz.curves_image(history_of(2), width=10)
