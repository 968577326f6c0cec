"""Pictures of a network: its first-layer filters and its training curves, as PNG files.

Only the standard library (zlib, struct) and numpy are used: the PNG encoder, a line rasteriser and a 3×5
bitmap font are here. Images are uint8 arrays, (H, W) grey or (H, W, 3) RGB, row 0 at the top.
"""
from __future__ import annotations

import math
import os
import secrets
import struct
import zlib
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

__all__ = ["write_png", "encode_png", "filter_grid", "save_filters", "curves_image", "save_curves"]

# ---------------------------------------------------------------------------------------------------------
# PNG encoding

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPES = {1: 0, 3: 2}  # channels → PNG colour type (0 greyscale, 2 truecolour)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk: length, type, payload, CRC-32 of type and payload."""
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _paeth(left: np.ndarray, up: np.ndarray, up_left: np.ndarray) -> np.ndarray:
    """The PNG Paeth predictor, elementwise on int16 arrays."""
    estimate = left + up - up_left
    distance_left, distance_up, distance_up_left = (np.abs(estimate - left), np.abs(estimate - up),
                                                    np.abs(estimate - up_left))
    return np.where((distance_left <= distance_up) & (distance_left <= distance_up_left), left,
                    np.where(distance_up <= distance_up_left, up, up_left))


def _filtered_scanlines(rows: np.ndarray, bytes_per_pixel: int) -> bytes:
    """Filter each scanline of ``rows`` (H, W·bytes_per_pixel) uint8 with the PNG filter (0–4) that gives
    the smallest sum of absolute signed residuals (libpng's heuristic); returns the filter-byte-prefixed
    scanlines, ready for zlib."""
    current = rows.astype(np.int16)
    up = np.zeros_like(current)
    up[1:] = current[:-1]
    left = np.zeros_like(current)
    left[:, bytes_per_pixel:] = current[:, :-bytes_per_pixel]
    up_left = np.zeros_like(current)
    up_left[1:, bytes_per_pixel:] = current[:-1, :-bytes_per_pixel]
    candidates = np.stack([
        current,
        current - left,
        current - up,
        current - (left + up) // 2,
        current - _paeth(left, up, up_left),
    ]).astype(np.uint8)  # wraps modulo 256, as PNG arithmetic does
    cost = np.abs(candidates.view(np.int8).astype(np.int32)).sum(axis=2)
    best = np.argmin(cost, axis=0)
    chosen = candidates[best, np.arange(rows.shape[0])]
    return np.concatenate([best.astype(np.uint8)[:, None], chosen], axis=1).tobytes()


def _check_image(image: np.ndarray) -> np.ndarray:
    """The image as a C-contiguous uint8 (H, W) or (H, W, 3) array; TypeError/ValueError otherwise."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(f"image must be uint8, got {image.dtype}")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"image must be (H, W) grey or (H, W, 3) RGB, got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1 or max(image.shape[:2]) >= 2 ** 31:
        raise ValueError(f"image height and width must be in 1 .. 2**31-1, got {image.shape[:2]}")
    return np.ascontiguousarray(image)


def encode_png(image: np.ndarray) -> bytes:
    """The bytes of a PNG file holding ``image``: uint8 (H, W) grey or (H, W, 3) RGB, 8 bits per sample."""
    image = _check_image(image)
    height, width = image.shape[:2]
    channels = 1 if image.ndim == 2 else 3
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOUR_TYPES[channels], 0, 0, 0)
    scanlines = _filtered_scanlines(image.reshape(height, width * channels), channels)
    return (PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(scanlines, 9))
            + _chunk(b"IEND", b""))


def _write_atomically(path: Path, payload: bytes) -> None:
    """Write ``payload`` to a new file beside ``path`` and rename it over ``path``: readers never see half."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # os.open with mode 0o666 lets the umask decide the permissions, as a plain open() would.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Save ``image`` (uint8 (H, W) grey or (H, W, 3) RGB) as a PNG file at ``path``, atomically: the file is
    written beside its destination and renamed over it. Returns the path."""
    path = Path(path)
    _write_atomically(path, encode_png(image))
    return path


# ---------------------------------------------------------------------------------------------------------
# First-layer filters


def _to_bytes(values: np.ndarray) -> np.ndarray:
    """Scale ``values`` linearly so their finite min → 0 and max → 255; constant → 128, non-finite → 0."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, dtype=np.uint8)
    low, high = values[finite].min(), values[finite].max()
    if high == low:
        scaled = np.full(values.shape, 128.0)
    else:
        scaled = (values - low) * (255.0 / (high - low))
    return np.where(finite, np.rint(np.clip(scaled, 0, 255)), 0).astype(np.uint8)


def _bar_plot(taps: np.ndarray, low: float, high: float, height: int) -> np.ndarray:
    """A grey (height, k) bar plot of ``taps`` (k,) on the scale [low, high]: background 0, bars 255 from
    the zero line (clamped into the scale) to each value; ``high`` maps to row 1 and ``low`` to row
    height-2, so a blank row keeps bars of neighbouring tiles apart. A constant filter is a middle line."""
    rows = np.arange(height)[:, None]
    last = height - 2
    if high > low:
        value_rows = 1 + np.rint((high - np.nan_to_num(taps, nan=low)) / (high - low) * (last - 1))
        zero_row = 1 + np.rint((high - min(max(0.0, low), high)) / (high - low) * (last - 1))
    else:
        value_rows = np.full(taps.shape, float(height // 2))
        zero_row = float(height // 2)
    top, bottom = np.minimum(value_rows, zero_row), np.maximum(value_rows, zero_row)
    return np.where((rows >= top[None, :]) & (rows <= bottom[None, :]), 255, 0).astype(np.uint8)


def _tiles_1d(weight: np.ndarray, bar_height: int, border: int) -> list[np.ndarray]:
    """One grey tile per filter of ``weight`` (OC, C, k): its C channels as bar plots stacked top to bottom,
    one border row apart, all on the filter's own min/max scale."""
    tiles = []
    for taps in weight:
        finite = taps[np.isfinite(taps)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        plots = []
        for channel, channel_taps in enumerate(taps):
            if channel:
                plots.append(np.full((1, taps.shape[1]), border, dtype=np.uint8))
            plots.append(_bar_plot(channel_taps, low, high, bar_height))
        tiles.append(np.concatenate(plots, axis=0))
    return tiles


def _tiles_2d(weight: np.ndarray) -> tuple[list[np.ndarray], int | None]:
    """Tiles of ``weight`` (OC, C, kh, kw), each filter on its own min/max scale: one RGB (kh, kw, 3) tile per
    filter when C == 3, one grey tile when C == 1, otherwise one grey tile per (filter, channel), a filter
    per grid row. Returns (tiles, the grid's column count when it is fixed by the layout, else None)."""
    out_channels, in_channels = weight.shape[:2]
    if in_channels == 3:
        return [_to_bytes(w).transpose(1, 2, 0) for w in weight], None
    if in_channels == 1:
        return [_to_bytes(w[0]) for w in weight], None
    return [tile for w in weight for tile in _to_bytes(w)], in_channels


def _assemble_grid(tiles: Sequence[np.ndarray], columns: int, scale: tuple[int, int],
                   border: int) -> np.ndarray:
    """Tiles (all the same shape) enlarged by ``scale`` (rows, cols) with nearest-neighbour repetition, laid
    out row-major in ``columns`` columns with a 1-pixel ``border`` around and between them."""
    tile_height, tile_width = tiles[0].shape[0] * scale[0], tiles[0].shape[1] * scale[1]
    grid_rows = math.ceil(len(tiles) / columns)
    shape = (grid_rows * (tile_height + 1) + 1, columns * (tile_width + 1) + 1) + tiles[0].shape[2:]
    grid = np.full(shape, border, dtype=np.uint8)
    for index, tile in enumerate(tiles):
        row, column = divmod(index, columns)
        top, left = 1 + row * (tile_height + 1), 1 + column * (tile_width + 1)
        enlarged = np.repeat(np.repeat(tile, scale[0], axis=0), scale[1], axis=1)
        grid[top:top + tile_height, left:left + tile_width] = enlarged
    return grid


_MIN_BAR_PLOT_WIDTH = 48  # pixels; narrower bar plots are hard to read


def filter_grid(weight: np.ndarray, columns: int | None = None, scale: int | None = None,
                min_width: int = 200, border: int = 255, bar_height: int = 24) -> np.ndarray:
    """The filters of a first layer tiled in a grid, as a uint8 image.

    weight: (OC, C, k) 1D, (OC, C, kh, kw) 2D or (OC, C, kd, kh, kw) 3D filters, any real dtype; for 3D
        filters the middle depth slice (index kd // 2) is shown.
    2D tiles: each filter is scaled to its own min/max (→ 0..255): RGB when C == 3 (channels R, G, B), grey
        when C == 1; for other C each channel is a grey tile, one filter per grid row of C tiles.
    1D tiles: each filter is a bar plot per channel, ``bar_height`` pixels tall, bars (255) rising or falling
        from the zero line to each tap, on the filter's own min/max scale.
    Tiles are placed row-major, the first filter at the top left, with 1-pixel ``border`` (grey value) lines
    around and between them. ``columns`` defaults to a near-square grid. ``scale`` is the integer
    nearest-neighbour enlargement (in both directions for 2D, horizontally for 1D); by default the smallest
    that makes the image at least ``min_width`` pixels wide.

    Returns uint8 (H, W) or, for RGB filters, (H, W, 3).
    """
    weight = np.asarray(weight)
    if not (np.issubdtype(weight.dtype, np.floating) or np.issubdtype(weight.dtype, np.integer)):
        raise TypeError(f"weight must be a real array, got dtype {weight.dtype}")
    if not 3 <= weight.ndim <= 5 or 0 in weight.shape:
        raise ValueError(f"weight must be (OC, C, k), (OC, C, kh, kw) or (OC, C, kd, kh, kw) with no empty "
                         f"axis, got shape {weight.shape}")
    if not 0 <= border <= 255:
        raise ValueError(f"border must be a grey value in 0..255, got {border}")
    if isinstance(bar_height, bool) or not isinstance(bar_height, (int, np.integer)) or bar_height < 3:
        raise ValueError(f"bar_height must be an int of at least 3 pixels, got {bar_height!r}")
    for name, value in (("columns", columns), ("scale", scale)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                                  or value < 1):
            raise ValueError(f"{name} must be a positive int or None, got {value!r}")
    weight = weight.astype(np.float64)
    if weight.ndim == 5:
        weight = weight[:, :, weight.shape[2] // 2]
    one_dimensional = weight.ndim == 3
    if one_dimensional:
        tiles, fixed_columns = _tiles_1d(weight, bar_height, border), None
    else:
        tiles, fixed_columns = _tiles_2d(weight)
    tile_height, tile_width = tiles[0].shape[:2]
    automatic_scale = scale is None
    if automatic_scale:
        # Bar plots are only stretched sideways: start them at least _MIN_BAR_PLOT_WIDTH wide.
        scale = max(1, math.ceil(_MIN_BAR_PLOT_WIDTH / tile_width)) if one_dimensional else 1
    if columns is None:
        # Near-square in pixels: columns ≈ √(n · tile height / tile width), the width after scaling.
        scaled_width = tile_width * scale if one_dimensional else tile_width
        square_columns = round(math.sqrt(len(tiles) * tile_height / scaled_width))
        columns = fixed_columns or max(1, min(len(tiles), square_columns))
    columns = min(columns, len(tiles))
    if automatic_scale:
        scale = max(scale, math.ceil((min_width - columns - 1) / (columns * tile_width)))
    return _assemble_grid(tiles, columns, (1 if one_dimensional else scale, scale), border)


def save_filters(path: str | os.PathLike, weight: np.ndarray, **options) -> Path:
    """Write :func:`filter_grid` (``weight``, ``**options``) as a PNG at ``path``; returns the path."""
    return write_png(path, filter_grid(weight, **options))


# ---------------------------------------------------------------------------------------------------------
# Text: a 3×5 bitmap font

# Each glyph is five rows of three pixels, '#' = ink.
_GLYPH_ROWS = {
    "0": ("###", "#.#", "#.#", "#.#", "###"), "1": (".#.", "##.", ".#.", ".#.", "###"),
    "2": ("###", "..#", "###", "#..", "###"), "3": ("###", "..#", ".##", "..#", "###"),
    "4": ("#.#", "#.#", "###", "..#", "..#"), "5": ("###", "#..", "###", "..#", "###"),
    "6": ("###", "#..", "###", "#.#", "###"), "7": ("###", "..#", ".#.", ".#.", ".#."),
    "8": ("###", "#.#", "###", "#.#", "###"), "9": ("###", "#.#", "###", "..#", "###"),
    "A": (".#.", "#.#", "###", "#.#", "#.#"), "B": ("##.", "#.#", "##.", "#.#", "##."),
    "C": (".##", "#..", "#..", "#..", ".##"), "D": ("##.", "#.#", "#.#", "#.#", "##."),
    "E": ("###", "#..", "##.", "#..", "###"), "F": ("###", "#..", "##.", "#..", "#.."),
    "G": (".##", "#..", "#.#", "#.#", ".##"), "H": ("#.#", "#.#", "###", "#.#", "#.#"),
    "I": ("###", ".#.", ".#.", ".#.", "###"), "J": ("..#", "..#", "..#", "#.#", ".#."),
    "K": ("#.#", "#.#", "##.", "#.#", "#.#"), "L": ("#..", "#..", "#..", "#..", "###"),
    "M": ("#.#", "###", "###", "#.#", "#.#"), "N": ("##.", "#.#", "#.#", "#.#", "#.#"),
    "O": (".#.", "#.#", "#.#", "#.#", ".#."), "P": ("##.", "#.#", "##.", "#..", "#.."),
    "Q": (".#.", "#.#", "#.#", "##.", ".##"), "R": ("##.", "#.#", "##.", "#.#", "#.#"),
    "S": (".##", "#..", ".#.", "..#", "##."), "T": ("###", ".#.", ".#.", ".#.", ".#."),
    "U": ("#.#", "#.#", "#.#", "#.#", "###"), "V": ("#.#", "#.#", "#.#", "#.#", ".#."),
    "W": ("#.#", "#.#", "###", "###", "#.#"), "X": ("#.#", "#.#", ".#.", "#.#", "#.#"),
    "Y": ("#.#", "#.#", ".#.", ".#.", ".#."), "Z": ("###", "..#", ".#.", "#..", "###"),
    ".": ("...", "...", "...", "...", ".#."), "-": ("...", "...", "###", "...", "..."),
    "+": ("...", ".#.", "###", ".#.", "..."), "%": ("#.#", "..#", ".#.", "#..", "#.#"),
    "/": ("..#", "..#", ".#.", "#..", "#.."), " ": ("...", "...", "...", "...", "..."),
}
GLYPHS = {char: np.array([[c == "#" for c in row] for row in rows]) for char, rows in _GLYPH_ROWS.items()}
GLYPH_WIDTH, GLYPH_HEIGHT = 3, 5


def text_size(text: str, scale: int = 2) -> tuple[int, int]:
    """(width, height) in pixels of ``text`` as :func:`_draw_text` draws it at ``scale``."""
    return max(0, len(text) * (GLYPH_WIDTH + 1) * scale - scale), GLYPH_HEIGHT * scale


def _draw_text(canvas: np.ndarray, text: str, left: int, top: int, colour: Sequence[int],
               scale: int = 2) -> None:
    """Draw ``text`` (upper-cased; characters without a glyph are left blank) with its top-left corner at
    (top, left), each font pixel a scale×scale block, clipped to the canvas."""
    height, width = canvas.shape[:2]
    for index, char in enumerate(text.upper()):
        glyph = GLYPHS.get(char)
        if glyph is None:
            continue
        block = np.repeat(np.repeat(glyph, scale, axis=0), scale, axis=1)
        glyph_left = left + index * (GLYPH_WIDTH + 1) * scale
        rows, cols = np.nonzero(block)
        rows, cols = rows + top, cols + glyph_left
        inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
        canvas[rows[inside], cols[inside]] = colour


# ---------------------------------------------------------------------------------------------------------
# Training curves

CURVE_COLOURS = {
    "train_loss": (31, 119, 180),   # blue
    "test_loss": (255, 127, 14),    # orange
    "test_top1": (44, 160, 44),     # green
    "test_top5": (214, 39, 40),     # red
}
_LEGEND = {"train_loss": "train", "test_loss": "test", "test_top1": "top-1", "test_top5": "top-5"}
_AXIS_COLOUR = (0, 0, 0)
_GRID_COLOUR = (225, 225, 225)
_TEXT_COLOUR = (40, 40, 40)
_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 56, 14, 26, 40
_MARKER_LIMIT = 40  # draw a marker on every point up to this many epochs


def _draw_line(canvas: np.ndarray, start: tuple[float, float], end: tuple[float, float],
               colour: Sequence[int], clip: tuple[int, int, int, int], thickness: int = 2) -> None:
    """Rasterise the segment from ``start`` to ``end`` ((x, y) pixel coordinates) by sampling it at every
    pixel step of its longer axis; ``thickness`` pixels square pen; only pixels inside ``clip`` (left, top,
    right, bottom, inclusive) are set."""
    (x0, y0), (x1, y1) = start, end
    steps = int(math.ceil(max(abs(x1 - x0), abs(y1 - y0)))) + 1
    xs = np.rint(np.linspace(x0, x1, steps)).astype(np.int64)
    ys = np.rint(np.linspace(y0, y1, steps)).astype(np.int64)
    left, top, right, bottom = clip
    for dy in range(thickness):
        for dx in range(thickness):
            px, py = xs + dx - thickness // 2, ys + dy - thickness // 2
            inside = (px >= left) & (px <= right) & (py >= top) & (py <= bottom)
            canvas[py[inside], px[inside]] = colour


def _nice_step(span: float, target_ticks: int = 5) -> float:
    """A tick step of 1, 2 or 5 × 10^k giving about ``target_ticks`` intervals over ``span`` (> 0)."""
    raw = span / target_ticks
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for multiple in (1.0, 2.0, 5.0, 10.0):
        if multiple * magnitude >= raw * (1 - 1e-9):
            return multiple * magnitude
    return 10.0 * magnitude


def _format_tick(value: float, step: float) -> str:
    """A tick label with as many decimals as ``step`` needs; powers of ten past 10^5 as e.g. ``2E6``."""
    if abs(value) >= 1e5:
        mantissa, exponent = f"{value:.0e}".split("e")
        return f"{mantissa}E{int(exponent)}"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    text = f"{value:.{decimals}f}"
    return "0" if float(text) == 0 else text


def _series(history: Sequence[Mapping], key: str) -> np.ndarray:
    """Values of ``key`` across ``history`` as float64; missing, None or non-finite entries become NaN."""
    values = []
    for record in history:
        value = record.get(key)
        try:
            value = float(value) if value is not None else math.nan
        except (TypeError, ValueError):
            value = math.nan
        values.append(value if math.isfinite(value) else math.nan)
    return np.array(values, dtype=np.float64)


def _value_range(values: Iterable[np.ndarray], floor_zero: bool) -> tuple[float, float]:
    """(low, high) covering the finite values; low is 0 when ``floor_zero`` and nothing is negative."""
    finite = np.concatenate([v[np.isfinite(v)] for v in values] + [np.empty(0)])
    if finite.size == 0:
        return 0.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    if floor_zero and low >= 0:
        low = 0.0
    if high <= low:
        low, high = low - 0.5, high + 0.5
    return low, high


def _draw_panel(canvas: np.ndarray, box: tuple[int, int, int, int], title: str, epochs: np.ndarray,
                curves: dict[str, np.ndarray], y_range: tuple[float, float], integer_epochs: bool) -> None:
    """One chart inside ``box`` (left, top, right, bottom): title, axes with ticks and labels, light grid
    lines, the legend and a polyline per curve (broken where a value is NaN)."""
    left, top, right, bottom = box
    plot_left, plot_top = left + _MARGIN_LEFT, top + _MARGIN_TOP
    plot_right, plot_bottom = right - _MARGIN_RIGHT, bottom - _MARGIN_BOTTOM
    _draw_text(canvas, title, plot_left, top + 8, _TEXT_COLOUR)

    finite_epochs = epochs[np.isfinite(epochs)]
    x_low, x_high = (0.0, 1.0)
    if finite_epochs.size:
        x_low, x_high = float(finite_epochs.min()), float(finite_epochs.max())
    if x_high <= x_low:
        x_low, x_high = x_low - 0.5, x_high + 0.5
    y_low, y_high = y_range
    y_step = _nice_step(y_high - y_low)
    y_low, y_high = math.floor(y_low / y_step) * y_step, math.ceil(y_high / y_step) * y_step
    x_step = _nice_step(x_high - x_low)
    if integer_epochs:
        x_step = max(1.0, round(x_step))

    def to_x(epoch: np.ndarray) -> np.ndarray:
        return plot_left + (epoch - x_low) / (x_high - x_low) * (plot_right - plot_left)

    def to_y(value: np.ndarray) -> np.ndarray:
        return plot_bottom - (value - y_low) / (y_high - y_low) * (plot_bottom - plot_top)

    for tick in np.arange(math.ceil(y_low / y_step - 1e-9), math.floor(y_high / y_step + 1e-9) + 1) * y_step:
        y = int(round(float(to_y(tick))))
        canvas[y, plot_left + 1:plot_right + 1] = _GRID_COLOUR
        canvas[y, plot_left - 4:plot_left] = _AXIS_COLOUR
        label = _format_tick(float(tick), y_step)
        label_width, label_height = text_size(label)
        _draw_text(canvas, label, plot_left - 7 - label_width, y - label_height // 2, _TEXT_COLOUR)
    for tick in np.arange(math.ceil(x_low / x_step - 1e-9), math.floor(x_high / x_step + 1e-9) + 1) * x_step:
        x = int(round(float(to_x(tick))))
        canvas[plot_bottom + 1:plot_bottom + 5, x] = _AXIS_COLOUR
        label = _format_tick(float(tick), x_step)
        label_width, _ = text_size(label)
        _draw_text(canvas, label, x - label_width // 2, plot_bottom + 8, _TEXT_COLOUR)
    axis_label_width, _ = text_size("epoch")
    _draw_text(canvas, "epoch", (plot_left + plot_right - axis_label_width) // 2, plot_bottom + 24,
               _TEXT_COLOUR)
    canvas[plot_top:plot_bottom + 1, plot_left] = _AXIS_COLOUR
    canvas[plot_bottom, plot_left:plot_right + 1] = _AXIS_COLOUR

    clip = (plot_left + 1, plot_top, plot_right, plot_bottom - 1)
    # The legend sits right-aligned on the title line, above the plot, so it never hides a curve.
    legend_left = plot_right + 4
    for key in reversed(list(curves)):
        legend_left -= text_size(_LEGEND[key])[0] + 24
    for key, values in curves.items():
        colour = CURVE_COLOURS[key]
        xs, ys = to_x(epochs), to_y(values)
        valid = np.isfinite(xs) & np.isfinite(ys)
        for i in range(len(values) - 1):
            if valid[i] and valid[i + 1]:
                _draw_line(canvas, (xs[i], ys[i]), (xs[i + 1], ys[i + 1]), colour, clip)
        for i in np.flatnonzero(valid):
            isolated = not (i > 0 and valid[i - 1]) and not (i + 1 < len(values) and valid[i + 1])
            if isolated or len(values) <= _MARKER_LIMIT:
                _draw_line(canvas, (xs[i], ys[i]), (xs[i], ys[i]), colour, clip, thickness=5)
        # Legend: a short stroke in the curve's colour, then its name.
        _draw_line(canvas, (legend_left, top + 12), (legend_left + 10, top + 12), colour,
                   (left, top, right, bottom), thickness=3)
        _draw_text(canvas, _LEGEND[key], legend_left + 14, top + 8, _TEXT_COLOUR)
        legend_left += text_size(_LEGEND[key])[0] + 24


def curves_image(history: Sequence[Mapping], width: int = 800, height: int = 300) -> np.ndarray:
    """Training curves as an RGB image: loss on the left, accuracy on the right, against the epoch.

    history: one mapping per epoch with ``epoch`` and any of ``train_loss``, ``test_loss`` (left panel),
        ``test_top1``, ``test_top5`` (right panel); missing, None, NaN or infinite values leave a gap in the
        curve (a point with no finite neighbour is drawn as a dot). Accuracies are plotted on 0..1 when every
        value is at most 1 (fractions), else on 0..100 (percent).
    Colours: train loss blue, test loss orange, top-1 green, top-5 red (``CURVE_COLOURS``).

    Returns uint8 (height, width, 3), white background.
    """
    for name, value, least in (("width", width, 2 * (_MARGIN_LEFT + _MARGIN_RIGHT) + 40),
                               ("height", height, _MARGIN_TOP + _MARGIN_BOTTOM + 40)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ValueError(f"{name} must be an int of at least {least} pixels, got {value!r}")
    if isinstance(history, (Mapping, str, bytes)):
        raise TypeError(f"history must be a sequence of mappings, one per epoch, "
                        f"got {type(history).__name__}")
    history = list(history)
    if not all(isinstance(record, Mapping) for record in history):
        raise TypeError("history must be a sequence of mappings, one per epoch")
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    epochs = _series(history, "epoch")
    if np.isnan(epochs).all():
        # No epoch numbers: number the records 1, 2, … in order.
        epochs = np.arange(1, len(history) + 1, dtype=np.float64)
    finite_epochs = epochs[np.isfinite(epochs)]
    integer_epochs = bool(np.all(finite_epochs == np.round(finite_epochs)))

    # A curve (and its legend entry) for every key that some record carries.
    present = [key for key in CURVE_COLOURS if any(key in record for record in history)]
    losses = {key: _series(history, key) for key in ("train_loss", "test_loss") if key in present}
    accuracies = {key: _series(history, key) for key in ("test_top1", "test_top5") if key in present}
    finite_accuracy = np.concatenate([v[np.isfinite(v)] for v in accuracies.values()] + [np.empty(0)])
    accuracy_range = (0.0, 1.0) if finite_accuracy.size == 0 or finite_accuracy.max() <= 1 else (0.0, 100.0)
    half = width // 2
    _draw_panel(canvas, (0, 0, half - 1, height - 1), "loss", epochs, losses,
                _value_range(losses.values(), floor_zero=True), integer_epochs)
    _draw_panel(canvas, (half, 0, width - 1, height - 1), "accuracy", epochs, accuracies,
                accuracy_range, integer_epochs)
    return canvas


def save_curves(path: str | os.PathLike, history: Sequence[Mapping], **options) -> Path:
    """Write :func:`curves_image` (``history``, ``**options``) as a PNG at ``path``; returns the path."""
    return write_png(path, curves_image(history, **options))
