"""The equations printed by ``python -m spec explain``, each expected line written out by hand from
``i(n, j) = s*n - p + d*j`` and the output-size formula (first index fastest, padding shown as 0 or -∞)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from spec import render
from spec.render import explain_lines

ROOT = Path(__file__).resolve().parent.parent


# --- the essay's examples -----------------------------------------------------------------------------------


def test_conv1d_is_the_essays_first_example():
    assert explain_lines("conv1d", 3, 2) == ["y_0 = A(x_0, x_1)", "y_1 = A(x_1, x_2)"]


def test_conv2d_lists_the_first_index_fastest():
    assert explain_lines("conv2d", (3, 3), (2, 2)) == [
        "y_{0,0} = A(x_{0,0}, x_{1,0}, x_{0,1}, x_{1,1})",
        "y_{1,0} = A(x_{1,0}, x_{2,0}, x_{1,1}, x_{2,1})",
        "y_{0,1} = A(x_{0,1}, x_{1,1}, x_{0,2}, x_{1,2})",
        "y_{1,1} = A(x_{1,1}, x_{2,1}, x_{1,2}, x_{2,2})",
    ]


def test_conv2d_indices_follow_the_array_axes():
    # input 2 (height) x 3 (width), kernel 1 x 2: outputs 2 x 2; the window slides along the second index only
    assert explain_lines("conv2d", (2, 3), (1, 2)) == [
        "y_{0,0} = A(x_{0,0}, x_{0,1})",
        "y_{1,0} = A(x_{1,0}, x_{1,1})",
        "y_{0,1} = A(x_{0,1}, x_{0,2})",
        "y_{1,1} = A(x_{1,1}, x_{1,2})",
    ]


def test_conv3d():
    assert explain_lines("conv3d", (3, 2, 2), 2) == [
        "y_{0,0,0} = A(x_{0,0,0}, x_{1,0,0}, x_{0,1,0}, x_{1,1,0}, "
        "x_{0,0,1}, x_{1,0,1}, x_{0,1,1}, x_{1,1,1})",
        "y_{1,0,0} = A(x_{1,0,0}, x_{2,0,0}, x_{1,1,0}, x_{2,1,0}, "
        "x_{1,0,1}, x_{2,0,1}, x_{1,1,1}, x_{2,1,1})",
    ]


# --- stride, padding, dilation ------------------------------------------------------------------------------


def test_stride():
    # (5 - 2) // 2 + 1 = 2 windows starting at 0 and 2
    assert explain_lines("conv1d", 5, 2, stride=2) == ["y_0 = A(x_0, x_1)", "y_1 = A(x_2, x_3)"]


def test_padding_is_written_as_zero():
    assert explain_lines("conv1d", 3, 3, padding=1) == [
        "y_0 = A(0, x_0, x_1)",
        "y_1 = A(x_0, x_1, x_2)",
        "y_2 = A(x_1, x_2, 0)",
    ]


def test_dilation():
    # span 2*(2-1)+1 = 3: 5 - 3 + 1 = 3 windows
    assert explain_lines("conv1d", 5, 2, dilation=2) == [
        "y_0 = A(x_0, x_2)",
        "y_1 = A(x_1, x_3)",
        "y_2 = A(x_2, x_4)",
    ]


def test_stride_padding_and_dilation_together():
    # size 6, kernel 2, stride 2, padding 1, dilation 3: (6 + 2 - 3 - 1) // 2 + 1 = 3 windows,
    # taps at 2n - 1 and 2n + 2
    assert explain_lines("conv1d", 6, 2, stride=2, padding=1, dilation=3) == [
        "y_0 = A(0, x_2)",
        "y_1 = A(x_1, x_4)",
        "y_2 = A(x_3, 0)",
    ]


def test_per_axis_stride_and_padding_in_2d():
    # height: 2 - 2 + 1 = 1 output; width: padding 1, stride 2: (2 + 2 - 1) // 2 + 1 = 2 outputs,
    # at w = -1 and 1
    assert explain_lines("conv2d", (2, 2), (2, 1), stride=(1, 2), padding=(0, 1)) == [
        "y_{0,0} = A(0, 0)",
        "y_{0,1} = A(x_{0,1}, x_{1,1})",
    ]


def test_indices_of_two_digits_are_braced():
    # 12 positions, kernel 2, stride 10: windows at 0 and 10
    assert explain_lines("conv1d", 12, 2, stride=10) == ["y_0 = A(x_0, x_1)", "y_1 = A(x_{10}, x_{11})"]


def test_a_window_entirely_in_the_padding():
    # size 1, kernel 1, padding 2: 5 windows, only the middle one reads the input
    assert explain_lines("conv1d", 1, 1, padding=2) == [
        "y_0 = A(0)", "y_1 = A(0)", "y_2 = A(x_0)", "y_3 = A(0)", "y_4 = A(0)",
    ]


# --- channels and groups ------------------------------------------------------------------------------------


def test_channels_come_first_and_vary_fastest():
    assert explain_lines("conv1d", 3, 2, channels=2, out_channels=1) == [
        "y_{0;0} = A_0(x_{0;0}, x_{1;0}, x_{0;1}, x_{1;1})",
        "y_{0;1} = A_0(x_{0;1}, x_{1;1}, x_{0;2}, x_{1;2})",
    ]


def test_out_channels_default_to_channels():
    assert explain_lines("conv1d", 1, 1, channels=2) == ["y_{0;0} = A_0(x_{0;0}, x_{1;0})",
                                                         "y_{1;0} = A_1(x_{0;0}, x_{1;0})"]


def test_groups_join_only_the_channels_of_their_group():
    # 4 input channels, 2 output channels, 2 groups: output 0 sees channels 0, 1; output 1 sees 2, 3
    assert explain_lines("conv1d", 2, 1, channels=4, out_channels=2, groups=2) == [
        "y_{0;0} = A_0(x_{0;0}, x_{1;0})",
        "y_{1;0} = A_1(x_{2;0}, x_{3;0})",
        "y_{0;1} = A_0(x_{0;1}, x_{1;1})",
        "y_{1;1} = A_1(x_{2;1}, x_{3;1})",
    ]


def test_depthwise_groups_with_channel_multiplier():
    # 2 input channels, 4 output channels, 2 groups: outputs 0, 1 see channel 0; outputs 2, 3 see channel 1
    assert explain_lines("conv1d", 1, 1, channels=2, out_channels=4, groups=2) == [
        "y_{0;0} = A_0(x_{0;0})",
        "y_{1;0} = A_1(x_{0;0})",
        "y_{2;0} = A_2(x_{1;0})",
        "y_{3;0} = A_3(x_{1;0})",
    ]


def test_groups_in_2d_with_padding():
    # 2 channels, 2 groups, input 1 x 1, kernel 1 x 2, padding (0, 1): widths -1..0 and 0..1
    assert explain_lines("conv2d", (1, 1), (1, 2), padding=(0, 1), channels=2, groups=2) == [
        "y_{0;0,0} = A_0(0, x_{0;0,0})",
        "y_{1;0,0} = A_1(0, x_{1;0,0})",
        "y_{0;0,1} = A_0(x_{0;0,0}, 0)",
        "y_{1;0,1} = A_1(x_{1;0,0}, 0)",
    ]


# --- expand -------------------------------------------------------------------------------------------------


def test_expand_1d():
    assert explain_lines("conv1d", 3, 2, expand=True) == [
        "y_0 = σ(w_0·x_0 + w_1·x_1 + b)",
        "y_1 = σ(w_0·x_1 + w_1·x_2 + b)",
    ]


def test_expand_leaves_out_the_zero_padding_terms():
    assert explain_lines("conv1d", 2, 3, padding=1, expand=True) == [
        "y_0 = σ(w_1·x_0 + w_2·x_1 + b)",
        "y_1 = σ(w_0·x_0 + w_1·x_1 + b)",
    ]


def test_expand_a_window_of_padding_is_the_bias_alone():
    assert explain_lines("conv1d", 1, 1, padding=1, expand=True) == ["y_0 = σ(b)", "y_1 = σ(w_0·x_0 + b)",
                                                                       "y_2 = σ(b)"]


def test_expand_2d():
    assert explain_lines("conv2d", (2, 2), (2, 2), expand=True) == [
        "y_{0,0} = σ(w_{0,0}·x_{0,0} + w_{1,0}·x_{1,0} + w_{0,1}·x_{0,1} + w_{1,1}·x_{1,1} + b)",
    ]


def test_expand_with_channels_and_groups():
    # weight (2, 2, 2): its second index counts channels within the group, the x index is the input channel
    assert explain_lines("conv1d", 2, 2, channels=4, out_channels=2, groups=2, expand=True) == [
        "y_{0;0} = σ(w_{0,0,0}·x_{0;0} + w_{0,1,0}·x_{1;0} + w_{0,0,1}·x_{0;1} + w_{0,1,1}·x_{1;1} + b_0)",
        "y_{1;0} = σ(w_{1,0,0}·x_{2;0} + w_{1,1,0}·x_{3;0} + w_{1,0,1}·x_{2;1} + w_{1,1,1}·x_{3;1} + b_1)",
    ]


# --- pooling ------------------------------------------------------------------------------------------------


def test_max_pool_stride_defaults_to_the_kernel():
    assert explain_lines("max_pool1d", 4, 2) == ["y_0 = max(x_0, x_1)", "y_1 = max(x_2, x_3)"]


def test_max_pool_padding_is_minus_infinity():
    # input 3 x 3, kernel 2, stride 2, padding 1: (3 + 2 - 2) // 2 + 1 = 2 per axis, windows at -1 and 1
    assert explain_lines("max_pool2d", (3, 3), 2, padding=1) == [
        "y_{0,0} = max(-∞, -∞, -∞, x_{0,0})",
        "y_{1,0} = max(-∞, -∞, x_{1,0}, x_{2,0})",
        "y_{0,1} = max(-∞, x_{0,1}, -∞, x_{0,2})",
        "y_{1,1} = max(x_{1,1}, x_{2,1}, x_{1,2}, x_{2,2})",
    ]


def test_max_pool_dilation_and_stride():
    # kernel 2, dilation 2, stride 1, size 4: 4 - 3 + 1 = 2 windows
    assert explain_lines("max_pool1d", 4, 2, stride=1, dilation=2) == [
        "y_0 = max(x_0, x_2)", "y_1 = max(x_1, x_3)",
    ]


def test_max_pool3d():
    assert explain_lines("max_pool3d", 2, 2) == [
        "y_{0,0,0} = max(x_{0,0,0}, x_{1,0,0}, x_{0,1,0}, x_{1,1,0}, "
        "x_{0,0,1}, x_{1,0,1}, x_{0,1,1}, x_{1,1,1})",
    ]


def test_ceil_mode_adds_the_partial_window():
    assert explain_lines("max_pool1d", 5, 2) == ["y_0 = max(x_0, x_1)", "y_1 = max(x_2, x_3)"]
    # ceil((5 - 2) / 2) + 1 = 3: the last window holds x_4 alone, position 5 is past the input
    assert explain_lines("max_pool1d", 5, 2, ceil_mode=True) == [
        "y_0 = max(x_0, x_1)", "y_1 = max(x_2, x_3)", "y_2 = max(x_4)",
    ]


def test_ceil_mode_drops_a_window_that_would_start_past_the_input():
    # size 5, kernel 2, padding 1: ceil((5 + 2 - 2) / 2) + 1 = 4, but window 3 would start at 6 - 1 = 5
    assert explain_lines("max_pool1d", 5, 2, padding=1, ceil_mode=True) == [
        "y_0 = max(-∞, x_0)", "y_1 = max(x_1, x_2)", "y_2 = max(x_3, x_4)",
    ]


def test_avg_pool_mean_counts_padding_but_not_what_lies_past_it():
    # size 4, kernel 3, stride 2, padding 1: floor gives 2 windows, ceil 3; the third covers 3, 4 (padding)
    # and 5 (past the padded input): divisor 2, as PyTorch's count_include_pad=True
    assert explain_lines("avg_pool1d", 4, 3, stride=2, padding=1) == [
        "y_0 = mean(0, x_0, x_1)", "y_1 = mean(x_1, x_2, x_3)",
    ]
    assert explain_lines("avg_pool1d", 4, 3, stride=2, padding=1, ceil_mode=True) == [
        "y_0 = mean(0, x_0, x_1)", "y_1 = mean(x_1, x_2, x_3)", "y_2 = mean(x_3, 0)",
    ]


def test_avg_pool_expand_divides_by_the_count():
    assert explain_lines("avg_pool1d", 4, 2, expand=True) == ["y_0 = (x_0 + x_1)/2", "y_1 = (x_2 + x_3)/2"]
    assert explain_lines("avg_pool1d", 3, 2, stride=1, padding=1, expand=True) == [
        "y_0 = x_0/2", "y_1 = (x_0 + x_1)/2", "y_2 = (x_1 + x_2)/2", "y_3 = x_2/2",
    ]


def test_max_pool_expand_is_unchanged():
    assert explain_lines("max_pool1d", 3, 2, stride=1, padding=1, expand=True) == [
        "y_0 = max(-∞, x_0)", "y_1 = max(x_0, x_1)", "y_2 = max(x_1, x_2)", "y_3 = max(x_2, -∞)",
    ]


def test_avg_pool2d():
    assert explain_lines("avg_pool2d", (2, 4), (2, 2)) == [
        "y_{0,0} = mean(x_{0,0}, x_{1,0}, x_{0,1}, x_{1,1})",
        "y_{0,1} = mean(x_{0,2}, x_{1,2}, x_{0,3}, x_{1,3})",
    ]


def test_pool_keeps_each_channel_apart():
    assert explain_lines("max_pool1d", 2, 2, channels=2) == [
        "y_{0;0} = max(x_{0;0}, x_{0;1})",
        "y_{1;0} = max(x_{1;0}, x_{1;1})",
    ]


# --- bad configurations -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, words", [
    (dict(op="conv2d", input_shape=(3, 3), kernel=(2, 2, 2)), ["kernel", "2x2x2", "2 spatial axes"]),
    (dict(op="conv1d", input_shape=(3, 3), kernel=2), ["input", "3x3", "1 spatial axes"]),
    (dict(op="conv3d", input_shape=4, kernel=2, stride=(1, 1)), ["stride", "1x1", "3 spatial axes"]),
    (dict(op="conv1d", input_shape=3, kernel=5), ["kernel=5", "input=3"]),
    (dict(op="conv1d", input_shape=3, kernel=2, stride=0), ["stride=0"]),
    (dict(op="conv1d", input_shape=3, kernel=2, dilation=0), ["dilation=0"]),
    (dict(op="conv1d", input_shape=3, kernel=2, padding=-1), ["padding=-1"]),
    (dict(op="conv1d", input_shape=3, kernel=2, ceil_mode=True), ["ceil_mode", "conv1d"]),
    (dict(op="conv1d", input_shape=3, kernel=2, channels=3, groups=2), ["groups=2", "channels=3"]),
    (dict(op="conv1d", input_shape=3, kernel=2, groups=2), ["groups=2", "channels"]),
    (dict(op="max_pool1d", input_shape=5, kernel=3, padding=2), ["padding=2", "kernel=3"]),
    (dict(op="max_pool1d", input_shape=5, kernel=2, channels=2, groups=2), ["groups", "max_pool1d"]),
    (dict(op="avg_pool1d", input_shape=5, kernel=2, dilation=2), ["dilation=2", "avg_pool1d"]),
    (dict(op="conv4d", input_shape=5, kernel=2), ["conv4d"]),
])
def test_explain_lines_rejects(kwargs, words):
    with pytest.raises(ValueError) as info:
        explain_lines(**kwargs)
    for word in words:
        assert word in str(info.value)


# --- command line -------------------------------------------------------------------------------------------


def test_main_prints_the_lines(capsys):
    assert render.main(["conv1d", "--input", "3", "--kernel", "2"]) == 0
    assert capsys.readouterr().out == "y_0 = A(x_0, x_1)\ny_1 = A(x_1, x_2)\n"


def test_main_options(capsys):
    argv = ["conv2d", "--input", "1x1", "--kernel", "1x2", "--padding", "0x1", "--channels", "2",
            "--groups", "2", "--expand"]
    assert render.main(argv) == 0
    assert capsys.readouterr().out.splitlines() == [
        "y_{0;0,0} = σ(w_{0,0,0,1}·x_{0;0,0} + b_0)",
        "y_{1;0,0} = σ(w_{1,0,0,1}·x_{1;0,0} + b_1)",
        "y_{0;0,1} = σ(w_{0,0,0,0}·x_{0;0,0} + b_0)",
        "y_{1;0,1} = σ(w_{1,0,0,0}·x_{1;0,0} + b_1)",
    ]


def test_main_out_channels_stride_dilation_ceil_mode(capsys):
    argv = ["conv1d", "--input", "2", "--kernel", "1", "--channels", "1", "--out-channels", "2"]
    assert render.main(argv) == 0
    assert capsys.readouterr().out.splitlines() == [
        "y_{0;0} = A_0(x_{0;0})", "y_{1;0} = A_1(x_{0;0})",
        "y_{0;1} = A_0(x_{0;1})", "y_{1;1} = A_1(x_{0;1})",
    ]
    assert render.main(["max_pool1d", "--input", "7", "--kernel", "2", "--stride", "3", "--dilation", "2",
                        "--ceil-mode"]) == 0
    # span 3: ceil((7 - 3) / 3) + 1 = 3 windows at 0, 3, 6; the last reads 6 and 8 (past the input)
    assert capsys.readouterr().out.splitlines() == [
        "y_0 = max(x_0, x_2)", "y_1 = max(x_3, x_5)", "y_2 = max(x_6)",
    ]


@pytest.mark.parametrize("argv, words", [
    (["conv2d", "--input", "3x3", "--kernel", "2x2x2"], ["kernel=2x2x2", "2 spatial axes"]),
    (["conv2d", "--input", "3x3x3", "--kernel", "2"], ["input=3x3x3", "2 spatial axes"]),
    (["conv1d", "--input", "3", "--kernel", "2", "--padding", "1x1"], ["padding=1x1", "1 spatial axes"]),
    (["conv2d", "--input", "3x3", "--kernel", "2x"], ["--kernel", "'2x'"]),
    (["conv1d", "--input", "3", "--kernel", "4"], ["kernel=4", "input=3"]),
    (["conv1d", "--input", "3", "--kernel", "2", "--stride", "0"], ["stride=0"]),
    (["conv1d", "--input", "3", "--kernel", "2", "--padding", "-1"], ["padding=-1"]),
    (["conv1d", "--input", "4", "--kernel", "2", "--channels", "4", "--out-channels", "3", "--groups", "2"],
     ["groups=2", "out_channels=3"]),
    (["conv1d", "--input", "3", "--kernel", "2", "--ceil-mode"], ["ceil_mode"]),
    (["conv1d", "--input", "3", "--kernel", "2", "--channels", "0"], ["channels", "0"]),
    (["max_pool1d", "--input", "4", "--kernel", "2", "--channels", "2", "--out-channels", "3"],
     ["out_channels=3", "max_pool1d"]),
    (["pool1d", "--input", "3", "--kernel", "2"], ["invalid choice", "'pool1d'"]),
    (["conv1d", "--kernel", "2"], ["--input"]),
])
def test_main_bad_arguments_exit_with_status_2(argv, words, capsys):
    with pytest.raises(SystemExit) as info:
        render.main(argv)
    assert info.value.code == 2
    error = capsys.readouterr().err
    for word in words:
        assert word in error


def _spec(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spec", *args], cwd=ROOT, capture_output=True, text=True,
                          encoding="utf-8", timeout=120)


def test_cli_conv1d():
    result = _spec("explain", "conv1d", "--input", "3", "--kernel", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["y_0 = A(x_0, x_1)", "y_1 = A(x_1, x_2)"]


def test_cli_conv2d():
    result = _spec("explain", "conv2d", "--input", "3x3", "--kernel", "2x2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    assert "y_{0,0} = A(x_{0,0}, x_{1,0}, x_{0,1}, x_{1,1})" in lines
    assert "y_{1,0} = A(x_{1,0}, x_{2,0}, x_{1,1}, x_{2,1})" in lines


def test_cli_mismatched_dimensions_exit_with_status_2():
    result = _spec("explain", "conv2d", "--input", "3x3", "--kernel", "2x2x2")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "kernel=2x2x2" in result.stderr and "2 spatial axes" in result.stderr


def test_cli_without_a_subcommand_exits_with_status_2():
    result = _spec()
    assert result.returncode == 2
    assert "usage: python -m spec" in result.stderr


def _products(lines):
    """{(output index, tap, input index)} of 1D lines like ``y_3 = σ(w_0·x_2 + w_1·x_3 + b)``."""
    import re

    found = set()
    for line in lines:
        target = int(re.match(r"y_\{?(\d+)\}?", line).group(1))
        for tap, source in re.findall(r"w_\{?(\d+)\}?·x_\{?(\d+)\}?", line):
            found.add((target, int(tap), int(source)))
    return found


@pytest.mark.parametrize("size, kernel, stride, padding, dilation", [(6, 3, 2, 1, 1), (7, 2, 3, 0, 2), (5, 3, 1, 2, 1)])
def test_a_transposed_convolution_reads_the_convolutions_lines_backwards(size, kernel, stride, padding, dilation):
    """Tap j joins conv1d's output o to input m exactly when it joins conv_transpose1d's input o to output m."""
    conv = explain_lines("conv1d", size, kernel, stride, padding, dilation, expand=True)
    out_size = len(conv)
    natural = (out_size - 1) * stride - 2 * padding + dilation * (kernel - 1) + 1
    transposed = explain_lines("conv_transpose1d", out_size, kernel, stride, padding, dilation,
                               output_padding=size - natural)
    assert len(transposed) == size
    assert {(m, j, o) for o, j, m in _products(conv)} == _products(transposed)


def test_transposed_convolution_lines_with_channels_and_groups():
    lines = explain_lines("conv_transpose1d", 2, 2, 2, channels=2, out_channels=4, groups=2)
    # output channel 3 is in the second group: only input channel 1 feeds it, through weight w[1, 1, tap]
    assert lines[3] == "y_{3;0} = w_{1,1,0}·x_{1;0} + b_3"
    assert lines[7] == "y_{3;1} = w_{1,1,1}·x_{1;0} + b_3"


def test_output_padding_is_refused_where_it_does_not_apply():
    with pytest.raises(ValueError, match="output_padding=2 must be smaller than stride=2"):
        explain_lines("conv_transpose1d", 3, 3, 2, output_padding=2)
    with pytest.raises(ValueError, match="output_padding applies to transposed convolutions"):
        explain_lines("conv1d", 3, 3, output_padding=1)
