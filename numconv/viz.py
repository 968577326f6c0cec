"""Pictures of a network, drawn with matplotlib: its first layer's filters (the essay's AlexNet figure) and its
training curves. Files are PNG, written atomically (a reader sees the old picture or the new one).

matplotlib draws off-screen (its Agg canvas): nothing here needs a display.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from numconv import checks
from numconv.files import atomic_write

if TYPE_CHECKING:  # matplotlib is imported where a figure is drawn: importing it took 0.3 s of every process's start
    from matplotlib.figure import Figure

__all__ = ["filter_tiles", "filters_figure", "save_filters", "curves_figure", "save_curves"]

#: inches per filter tile, and per curves panel
_TILE_INCHES = 0.55
_PANEL_INCHES = (4.6, 3.4)


def _normalised(values: np.ndarray) -> np.ndarray:
    """``values`` scaled linearly so that their finite minimum is 0 and maximum 1 (a constant is 0.5; NaN and
    infinities 0): each filter on its own scale, as the essay's figure shows them."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape)
    low, high = values[finite].min(), values[finite].max()
    scaled = np.full(values.shape, 0.5) if high == low else (values - low) / (high - low)
    return np.where(finite, scaled, 0.0)


def _centred(values: np.ndarray) -> np.ndarray:
    """``values`` scaled into [0, 1] around 0.5, the zero line: v / (2 max|v|) + 0.5 (all 0.5 when all zero; NaN
    and infinities 0.5)."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    largest = np.abs(values[finite]).max() if finite.any() else 0.0
    return np.where(finite, 0.5 + (values / (2 * largest) if largest > 0 else 0.0), 0.5)


def filter_tiles(weight) -> tuple[list, str]:
    """One tile per filter of a first layer's ``weight``, each normalised to [0, 1] on its own scale, and their
    kind: ``'rgb'`` (kh, kw, 3) tiles when the layer has 3 input channels, ``'grey'`` (kh, kw) tiles when it has 1
    (or per input channel otherwise: C tiles per filter, side by side), ``'taps'`` (C, k) rows for 1D filters
    (scaled around 0.5, the zero line).
    weight: (OC, C, k), (OC, C, kh, kw) or (OC, C, kd, kh, kw) (the middle depth slice is shown)."""
    weight = np.asarray(weight)
    if not (np.issubdtype(weight.dtype, np.floating) or np.issubdtype(weight.dtype, np.integer)):
        raise TypeError(f"weight must be a real array, got dtype {weight.dtype}")
    if not 3 <= weight.ndim <= 5 or 0 in weight.shape:
        raise ValueError(f"weight must be (OC, C, k), (OC, C, kh, kw) or (OC, C, kd, kh, kw) with no empty axis, "
                         f"got shape {weight.shape}")
    if weight.ndim == 5:
        weight = weight[:, :, weight.shape[2] // 2]
    if weight.ndim == 3:
        return [_centred(taps) for taps in weight], "taps"
    if weight.shape[1] == 3:
        return [_normalised(w).transpose(1, 2, 0) for w in weight], "rgb"
    if weight.shape[1] == 1:
        return [_normalised(w[0]) for w in weight], "grey"
    # several channels that are not colours: each filter's channels side by side, one scale per filter
    return [np.concatenate(list(_normalised(w)), axis=1) for w in weight], "grey"


def _grid_columns(count: int, tile_shape: tuple) -> int:
    """Columns of a grid of ``count`` tiles of ``tile_shape`` (rows, columns, ...) about three times as wide as it
    is tall, as the essay's figure is; when a divisor of ``count`` is close, that, so that no row is ragged."""
    aspect = tile_shape[0] / max(tile_shape[1], 1)
    square = max(1, round(math.sqrt(3 * count * aspect)))
    divisors = [d for d in range(1, count + 1) if count % d == 0 and square / 1.5 <= d <= square * 1.5]
    return min(divisors, key=lambda d: abs(d - square)) if divisors else min(square, count)


def filters_figure(weight, blocks: int = 1, title: str | None = None) -> Figure:
    """The filters of a first layer as a grid of tiles (see :func:`filter_tiles`), under ``title``.

    With ``blocks`` > 1 the filters fall into that many consecutive blocks (AlexNet's two columns: the filters that
    feed each group of the next layer), drawn one above the other, each under its own heading, "the top half
    corresponds to the layer on one GPU, the bottom on the other"."""
    tiles, kind = filter_tiles(weight)
    if checks.integer(blocks, "blocks", 1) and len(tiles) % blocks:
        raise ValueError(f"blocks must divide the {len(tiles)} filters, got {blocks!r}")
    per_block = len(tiles) // blocks
    columns = _grid_columns(per_block, tiles[0].shape if kind != "taps" else (1, 2))
    rows = -(-per_block // columns)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(max(3.0, columns * _TILE_INCHES * (2 if kind == "taps" else 1)),
                             blocks * rows * _TILE_INCHES + 0.5 * blocks + (0.4 if title else 0.0)),
                    layout="constrained")
    if title:
        figure.suptitle(title)
    panels = figure.subfigures(blocks, 1, squeeze=False)[:, 0]
    for block, panel in enumerate(panels):
        if blocks > 1:
            panel.suptitle(f"column {block}", fontsize="medium")
        axes = panel.subplots(rows, columns, squeeze=False)
        for index, axis in enumerate(axes.flat):
            axis.set_xticks([])
            axis.set_yticks([])
            if index >= per_block:
                axis.set_axis_off()
                continue
            tile = tiles[block * per_block + index]
            if kind == "taps":
                axis.axhline(0.5, color="0.8", linewidth=0.5)
                for channel in tile:
                    axis.plot(channel, linewidth=0.8)
                axis.set_ylim(-0.05, 1.05)
            else:
                axis.imshow(tile, cmap="gray" if kind == "grey" else None, vmin=0.0, vmax=1.0,
                            interpolation="nearest")
    return figure


def save_filters(path, weight, blocks: int = 1, title: str | None = None) -> Path:
    """Write :func:`filters_figure` as a PNG at ``path``, atomically; returns the path."""
    return _save(filters_figure(weight, blocks, title), path)


#: the curves, with their panel, label and line style
CURVES = {"train_loss": ("loss", "train loss", "-"), "test_loss": ("loss", "test loss", "--"),
          "test_top1": ("accuracy", "test top-1", "-"), "test_top5": ("accuracy", "test top-5", "--")}


def _series(history: Sequence[Mapping], key: str) -> np.ndarray:
    """``history[i][key]`` as floats; missing, None and non-numeric values become NaN (a gap in the curve)."""
    values = []
    for record in history:
        value = record.get(key)
        try:
            values.append(float(value))
        except (TypeError, ValueError):
            values.append(math.nan)
    return np.array(values, dtype=np.float64)


def curves_figure(history: Sequence[Mapping], top5: bool = True) -> Figure:
    """Training curves against the epoch: the training and test losses on the left, the test top-1 (and, with
    ``top5``, top-5) accuracy in percent on the right. ``history`` is ``fit``'s: one mapping per epoch with
    ``epoch`` and any of the curves' keys; a missing or non-finite value leaves a gap."""
    if isinstance(history, (Mapping, str, bytes)) or not all(isinstance(r, Mapping) for r in history):
        raise TypeError(f"history must be a sequence of mappings, one per epoch, got {type(history).__name__}")
    history = list(history)
    epochs = _series(history, "epoch")
    if np.isnan(epochs).all():
        epochs = np.arange(1, len(history) + 1, dtype=np.float64)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2 * _PANEL_INCHES[0], _PANEL_INCHES[1]), layout="constrained")
    loss_axis, accuracy_axis = figure.subplots(1, 2)
    panels = {"loss": loss_axis, "accuracy": accuracy_axis}
    for key, (panel, label, style) in CURVES.items():
        if key == "test_top5" and not top5 or not any(key in record for record in history):
            continue
        values = _series(history, key) * (100.0 if panel == "accuracy" else 1.0)
        panels[panel].plot(epochs, values, style, marker="o", markersize=3, label=label)
    loss_axis.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    accuracy_axis.set(xlabel="epoch", ylabel="accuracy (%)", title="test accuracy", ylim=(0, 100))
    for axis in panels.values():
        axis.grid(alpha=0.3)
        axis.xaxis.get_major_locator().set_params(integer=True)
        if axis.lines:
            axis.legend()
    return figure


def save_curves(path, history: Sequence[Mapping], top5: bool = True) -> Path:
    """Write :func:`curves_figure` as a PNG at ``path``, atomically; returns the path."""
    return _save(curves_figure(history, top5), path)


def _save(figure: Figure, path) -> Path:
    return atomic_write(Path(os.fspath(path)), lambda file: figure.savefig(file, format="png", dpi=100))
