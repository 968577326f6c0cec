"""Numbers that steer the CPU convolution: which formulation of the blocked kernel a configuration gets, and how a
weight-gradient reduction is split. Measured on a 2-core AVX-512 machine; ``benchmarks/compare.py`` re-measures.

The blocked kernel (``codegen.py``) multiplies a 16-lane vector by one broadcast number per column, for
``COLUMNS`` columns at a time. A convolution maps onto it two ways:

* ``lanes``: the 16 lanes are 16 output channels (packed weights), the columns are output positions (any stride,
  any layout; positions of the whole batch form one list). Wastes lanes when a group has few output channels.
* ``rows``: the 16 lanes are 16 neighbouring output positions of one row (stride 1 along the row), the columns are
  output channels (the weights broadcast). Wastes columns when a group has few output channels and lanes when
  rows are short; a 1x1 convolution without padding treats each whole plane as one row.
"""

import math

from numconv import vectors
from numconv.kernels.cpu import blocked

#: the generated kernels whose blocks fit this CPU's vector registers (``blocked.SHAPES``), as (lanes of the vector
#: operand, columns per task): with AVX-512's 32 registers, 16 x 14 for ``lanes`` and ``rows``, 64 x 4 (four
#: vectors per column) for ``wide``, the form of rows when a group has only a few output channels (the first
#: layer's input gradient), and 32 x 7 (two vectors per column) for ``lanes`` when a group's output channels fill
#: 32-lane blocks: 1.06-1.22x faster than 16 x 14 on AlexNet's and NiN's layers (half the loads per multiply-add:
#: each broadcast number feeds two). With 16 registers (AVX2): 16 x 5, 64 x 1 and 32 x 3
SHAPES = blocked.SHAPES[vectors.registers()]
(LANES, COLUMNS), (WIDE_LANES, WIDE_COLUMNS), (PAIRED_LANES, PAIRED_COLUMNS) = SHAPES
#: the 16-lane kernels as wide as an output row shorter than ``COLUMNS`` (``blocked.ROW_SHAPES``: with 32 registers
#: 16 x 10; none with 16), which the ``lanes`` formulation takes for such rows (``conv_cost.lanes_shape``)
ROW_SHAPES = blocked.ROW_SHAPES[vectors.registers()]
#: the ``wide`` kernels whose blocks tile output rows exactly (``blocked.WIDE_ROW_SHAPES``: with 32 registers 112 x 3;
#: none with 16), which the ``wide`` formulation takes for rows of a multiple of their lanes at stride 1
#: (``conv_cost.wide_shape``)
WIDE_ROW_SHAPES = blocked.WIDE_ROW_SHAPES[vectors.registers()]
#: every blocked kernel this CPU runs
KERNEL_SHAPES = SHAPES + ROW_SHAPES + WIDE_ROW_SHAPES

#: the ``lanes`` formulation takes the 32-lane kernel only for sums of at least this many products per output. With
#: 32 registers (measured while the 32 x 7 kernel stored every result through a tile, which a short sum does not
#: repay; NiN's 1x1 layers, 192 products: 1.8-2x slower than 16 x 14 on 32 x 32 planes): AlexNet's first layer, 363
#: products, 1.2-1.35x faster (10.3-13.0 against 15.1-17.0 ms at batch 16; once measured 1.2x slower, before the
#: kernels' later changes); 512 channels of 384 (M5's shape, rows of 31), 1.4x; M5's fourth layer, 768, 1.4x;
#: C3D-small's third, 864, 1.3x (AMD Zen 5). With 16 registers, the 32 x 3 kernel storing lane by lane against
#: 16 x 5 (AMD Zen 3): NiN's 1 x 1, 192 products, 19.5 against 23.5 ms; the audio's second layer, 384, 24.8 against
#: 28.7; AlexNet's first, 363, even; the video's first, 81, 70 against 60 (slower); the audio's first, 80, even
#: On a CPU that splits unaligned vector loads (``vectors.splits_line_loads``: Intel's, measured on a 2-core Xeon with
#: the 32 x 7 kernel storing lane by lane) 32 x 7 ran faster than 16 x 14 down to the shortest sums measured: NiN's
#: first layer (75 products) 7.99 against 9.66 ms, M5's first (80) 4.7 against 5.9, NiN's 1 x 1 layers (192) on
#: 16 x 16 planes 5.44 against 9.07 and their input gradients 5.24 against 8.87; shorter sums were not measured.
#: So on every CPU that runs 512-bit multiply-adds at full width (``vectors.full_width_fma``): on an AMD Zen 5, best of
#: 8 alternating in one process, forward, 32 x 7 against 16 x 14, NiN's first layer (75 products) 6.17 against 6.99
#: ms; 64 -> 512 channels, 3 taps on 31 (192) 0.52 against 0.69, 32 -> 512 (96) 0.30 against 0.40; their input
#: gradients even
PAIRED_MIN_REDUCTION = 64 if vectors.full_width_fma() else {32: 360, 16: 192}[vectors.registers()]

#: a formulation's estimated useful share is (used lanes / lanes) x (used columns / columns) times this factor, and
#: times ``PAIRED_EFFICIENCY`` for ``lanes`` on the 32 x 7 kernel. The factors are the kernels' own speeds: the
#: 16 x 14 kernel loads one broadcast number per vector multiply-add, the 32 x 7 one per two and the 64 x 4 one
#: per four, which a CPU running two 512-bit multiply-adds a cycle (AMD Zen 5, the AVX-512 Xeons) feels: measured
#: there over 20 layers of the zoo and the anchor suite, 64 x 4 ran 1.2-1.4x faster than 16 x 14 at equal useful
#: work (the anchor suite's video_c1, 3 -> 64 channels 3x3x3: 28.7 ms against 39 by lanes; AlexNet's second
#: layer's input gradient: 23.6 against 28.5), and the estimates with these factors chose within 10% of the
#: fastest formulation on all 40 forward and input-gradient calls. With AVX2's 16 registers the blocks are smaller
#: and each broadcast number feeds fewer multiply-adds: measured on an AMD Zen 3 over the anchor suite's forward and
#: input-gradient calls, against ``lanes`` at equal useful work, rows ran at 0.55-0.87 of its speed, 64 x 1 (the
#: wide kernel: nine loads per eight multiply-adds) at 0.4-0.75 and 32 x 3 at 1.0-1.07 (the first factors, for 32
#: registers, picked 64 x 1 there: 2-2.4x slower than lanes on NiN's 1 x 1 and the audio's second layer). Where the
#: 512-bit multiply-adds run as two 256-bit halves (``vectors.double_pumped``: AMD Zen 4) the loads the 64 x 4 kernel
#: saves matter less: measured there in one process, the estimates with ``wide`` at 1.0 against 1.2, AlexNet's second
#: layer's input gradient at batch 32 ran in 68.8 ms against 80.3 (lanes instead of wide), at batch 16 37.7 against
#: 40.5, NiN's first layer 11.1 against 13.5; the audio's second layer (16.7 / 17.5 against 16.6 / 17.0, forward
#: and input gradient) and the video's first (52.0 against 51.4) about even; M5's second and third layers up to 6%
#: slower (their input gradients 9.78 and 5.37 against 9.40 and 5.04 ms)
EFFICIENCY, PAIRED_EFFICIENCY = {
    (32, False): ({"lanes": 1.0, "rows": 1.0, "wide": 1.2}, 1.2),
    (32, True): ({"lanes": 1.0, "rows": 1.0, "wide": 1.0}, 1.2),
    (16, False): ({"lanes": 1.0, "rows": 0.75, "wide": 0.6}, 1.05),
}[vectors.registers(), vectors.double_pumped()]
#: ``rows`` and ``wide`` load their vectors from a row at each kernel column's offset, so that most of them cross a
#: cache line; on a CPU that splits such loads (``vectors.splits_line_loads``) their estimates are multiplied by
#: this, except for a 1 x 1 convolution's whole planes ('flat', whose vectors start at multiples of 64 positions).
#: The factor is the 64 x 4 kernel's own speed unaligned over aligned (112 against 144 GFLOP/s on a Xeon). With it
#: the layers that measured faster by 32 x 7 than by 64 x 4 there take 32 x 7: NiN's first layer (7.99 against
#: 15.3 ms), the video's first (37.2 against 54.3), M5's 3-tap layers (5.91 against 6.95), the audio's second
#: (14.9 against 17.2), C3D-small's second (0.51 against 1.03)
UNALIGNED_ROWS = 0.78 if vectors.splits_line_loads() else 1.0
#: a ``wide`` kernel whose blocks tile rows (``WIDE_ROW_SHAPES``) stores every block as whole vectors, so its
#: estimate counts WIDE_ROW_STORE_COST multiply-adds per result stored (``STORE_COST`` elsewhere), and its
#: multiply-adds at WIDE_ROW_EFFICIENCY of the 64 x 4 kernel's (seven unaligned row loads per three broadcast
#: numbers). Fitted to two layers on an AMD Zen 5, 112 x 3 against 32 x 7 by ``lanes`` (medians of 12-20
#: rounds alternating in one process): the video's first layer (3 -> 64 channels, 3x3x3, 81 products per output)
#: 0.90-0.91x the time, and 32 -> 32 channels 3x3x3 on (2, 32, 8, 112, 112) (864 products) 1.14x; with them the
#: estimates also choose 112 x 3 on the two other layers measured, where it was faster: 16 -> 16 channels 3 x 3 on
#: (8, 16, 112, 112) 0.91x, 3 -> 32 on (16, 3, 112, 112) 0.81x (predicted 0.75x and 0.64x), and on rows of 224,
#: where 64 x 4 leaves 32 of 256 lanes unused: 3 -> 64 channels 3 x 3 on (8, 3, 224, 224) 0.72x (64 x 4, which the
#: estimates took before, 0.82x), 3 -> 32 channels 3x3x3 on (4, 3, 8, 224, 224) 0.94x (64 x 4 1.10x). Where 512-bit
#: multiply-adds run as two halves (AMD Zen 4), 112 x 3 against ``lanes`` (two runs of 12 rounds alternating in one
#: process): the video's first layer 1.02-1.06x, 16 -> 16 channels 0.93-1.03x, 3 -> 32 0.94-1.06x, 3 -> 64 on rows of
#: 224 1.01-1.04x, 32 -> 32 3x3x3 0.89x; at 0.87 the estimates took 112 x 3 for the first four (1.09-1.29x lanes'
#: share); the mean of the four's errors in the log fits 0.73, under which the first two take ``lanes``
WIDE_ROW_EFFICIENCY = 0.87 if vectors.full_width_fma() else 0.73
WIDE_ROW_STORE_COST = 2.7
#: where a ``lanes`` task's output channels and input channels both lie a multiple of 4 KB apart (planes of 1024
#: float32 numbers: 32 x 32), its 32 stores of a column and its broadcast numbers of a strip fall into the same
#: first-level cache set, which holds 12 lines on such a Xeon; its estimate is multiplied by this. Measured there on
#: NiN's 1 x 1 layers and their input gradients, 32 x 7's time over 64 x 4's: 0.80 (median of 2) on 16 x 16 planes
#: and 1.12 (median of 9; 0.91-2.56) on 32 x 32 planes, whose quotient this is. Not measured on other CPUs
ALIASED_LANES = 0.7 if vectors.splits_line_loads() else 1.0
#: ... planes of a multiple of this many numbers (4 KB of float32)
ALIASED_PLANE = 1024
#: rows at least this long stream their input well, where ``lanes`` jumps between channel planes: their estimate
#: is multiplied by ``LONG_ROW_BONUS`` where a group has at least ``LONG_ROW_MIN_CHANNELS`` input channels (with
#: one to three planes ``lanes`` reads as few streams: 3-channel first layers measured 1.2-1.3x faster by ``lanes``
#: than by rows, NiN's 5x5 and C3D's 3x3x3 on an AMD Zen 4). Not on a CPU that splits unaligned loads
#: (``vectors.splits_line_loads``), where ``lanes`` jumping between planes cost only where they alias
#: (``ALIASED_LANES``): on a Xeon NiN's 1 x 1 layers on 16 x 16 and 8 x 8 planes, forward and input gradient, ran
#: 1.13-1.28x faster by 32 x 7 than by 64 x 4 over whole planes (5.22 against 6.89 ms, 1.37 against 1.55). Nor
#: against ``lanes`` on the 32-lane kernel (the bonus was measured against 16 x 14): on an AMD Zen 5, best of 8
#: alternating in one process, 128 -> 128 channels, 3 taps on 1000 at batch 32, 64 x 4 against 32 x 7 9.6 against 8.1
#: and 10.5 against 8.6 ms; LeNet-5's first layer's input gradient (one channel: 16 x 14) keeps it, 0.25-0.27 ms by
#: 64 x 4 against 0.30-0.32 by samples
LONG_ROW = 64
LONG_ROW_BONUS = 1.0 if vectors.splits_line_loads() else 1.2
LONG_ROW_MIN_CHANNELS = 4
#: storing one result (a scalar store from the register tile) costs about this many vector multiply-adds: with a
#: short reduction (LeNet's first layer sums 25 products) the stores are a large share of a task
STORE_COST = 5
#: a ``lanes`` task whose block has unused lanes (fewer than 16 output channels) stores through a tile and a loop
#: over lanes and columns: about this many per result (LeNet's first layer, 6 channels: 2x slower than ``wide``)
TILE_STORE_COST = 10
#: the input gradient's ``samples`` formulation (lanes 64 samples of the batch, columns the input channels, on the
#: ``wide`` kernel; ``conv_cost.samples_share``) is estimated at ``wide``'s factor times this: it uses every lane
#: whatever the rows' length, where ``wide`` over short rows computes the padded columns too. Measured on AMD Zen 4
#: over 22 input gradients, best of 120 calls each, samples' time over the automatic choice's: LeNet-5's second
#: layer (16 -> 6 channels, 5 x 5 on 10 x 10) at batch 64 0.87 and 128 0.81, but 1.23 at 32 (half its lanes
#: unused); 16 -> 3 channels 0.92; 32 -> 6 0.83; 32 -> 12 (3 x 3) 0.91; 16 -> 6 (3 x 3, stride 2) 0.67; slower:
#: 16 -> 8 on 28 x 28 1.17, 32 -> 16 (3 x 3) 1.16, 64 -> 16 (stride 2) 2.07, LeNet-5's first layer (6 -> 1) 1.05,
#: NiN's 1 x 1 layers 2.9-4.1, M5's and the audio's 3-tap layers 1.8-2.8. With 1.25 the estimates choose samples
#: for exactly the faster ones (each needs more than 1.07-1.21, each slower one less than 1.28-2.97; 32 -> 12 is
#: left to the others by the strips' limit below)
#: On a CPU that splits unaligned loads (``vectors.splits_line_loads``) the rows' estimate pays ``UNALIGNED_ROWS``
#: and the samples' aligned vectors do not, yet on an Intel Xeon samples ran no faster than the rows: LeNet-5's
#: first layer's input gradient at batch 64 0.43 against 0.38 ms, its second's 0.51-0.54 against 0.49-0.52. There
#: 0.92 leaves the first to the rows and the second, about even, to samples, as on Zen 4. Measured before each
#: position's sum skipped the taps over zeros (``conv_layout.filled_taps``), which the estimate leaves out: on the
#: Xeon that made samples 1.2-1.3x faster where 0.66 of the taps remained (LeNet-5's second layer, batch 64 and
#: 128), not the 1.5x that its products alone would give, and the choices among 16 input gradients did not move
SAMPLES_ADVANTAGE = 0.92 if vectors.splits_line_loads() else 1.25
#: ... and only where a block's vectors (its sum's length x 64 lanes, in float32) take at most this many bytes and a
#: group's input channels at most this many strips of columns: each strip streams the block's vectors again, and a
#: block's taps lie a whole position (64 lanes) apart, so that they share no cache line. Slower beyond (Zen 4, best
#: of 30): 32 -> 16 channels, 3 x 3 (4 strips) 1.16x the automatic choice's time; 16 -> 16, 7 x 7 (200 KB, 4
#: strips) 1.55x; 32 -> 8, 7 x 7 (400 KB, 2 strips) 1.18x; 64 -> 48, 5 x 5 (400 KB, 12 strips) 1.1x lanes'
SAMPLES_MAX_BLOCK_BYTES = 256 * 1024
SAMPLES_MAX_STRIPS = 2
#: ``lanes`` is kept unless another formulation's estimate beats it by this factor
ADVANTAGE = 1.05

#: the fused Winograd kernel's products take two blocks of 16 output channels per broadcast number, in strips of 14
#: tiles (``winograd_kernels.PAIRED``; 28 accumulators, 2 vector loads and 14 broadcasts per 28 multiply-adds, where one
#: block takes 1 and 16 per 16), where a group has more than 16 output channels: on CPUs that run two full 512-bit
#: multiply-adds a cycle (``vectors.full_width_fma``), where it was measured; AMD Zen 4 not measured. On an Intel Xeon,
#: the fused kernel alone with a frozen weight, best of 5 x 3 in one process, two rounds, its time over one block's:
#: AlexNet's third layer at batch 16 0.76-0.77, its fourth 0.77-0.79, its second 0.90-0.93; NiN's 96 -> 192 5 x 5 on 16
#: x 16 at batch 16 0.86-0.87, 192 -> 192 3 x 3 on 8 x 8 0.89-0.90; the video's 64 -> 128 3 x 3 x 3 0.82-0.83; 64 -> 48
#: on 10 x 10 at batch 4 (3 blocks) 0.98-1.00. 1D, 128 -> 128 channels with 3 taps, the whole Winograd call over the
#: best direct kernel's, best of 18 alternating in one process, two rounds each: with pairs 0.87-0.98 on 1000 at batch
#: 32 and 0.80 on 248, with one block 0.97-1.10 and 0.91-1.03. On an AMD Zen 5, forward / input gradient, best of 8
#: alternating in one process, pairs' time over one block's: AlexNet's third layer 0.90 / 0.90, its fourth 0.96 / 0.95,
#: its second 0.99 / 0.94; the video's 64 -> 128 0.94 / 0.92; 128 -> 128 with 3 taps on 1000 at batch 32 0.99 / 0.96
WINOGRAD_PAIRED = vectors.full_width_fma()
#: a 1 x 1 convolution at stride 1 without padding, and its input gradient, go to the blocked kernel over panels packed
#: task by task (``packed.py``) where its product has at least this many output channels a group (of the input gradient:
#: input channels), and planes of at least ``WIDE_LANES`` positions: the copy of a task's positions is repaid strip by
#: strip. Where 512-bit multiply-adds run at full width (``vectors.full_width_fma``), where it was measured; elsewhere
#: never (AMD Zen 4 not measured). On an Intel Xeon, best of 7 in one process, packed over the better of ``lanes`` and
#: ``wide``: 192 input channels on 8 x 8 at batch 64, 16 -> 128 output channels 1.28-1.40, 1.29, 0.98, 1.08, 0.86, 1.01,
#: 192 0.83; 32 on 16 x 16, 48 -> 128 1.20, 1.26, 1.01, 0.96; NiN's 192 -> 192 on 16 x 16 4.4-4.7 ms against 5.2-5.4 by
#: ``wide``; 4 -> 32 output channels 1.1-2.3. On an AMD Zen 5, best of 8 alternating in one process, packed over the
#: automatic choice before (forward / input gradient): 192 -> 192 on 16 x 16 at batch 64 0.73 / 0.82 (over the 32-lane
#: kernel's: 0.94 / 1.08), on 8 x 8 0.91 / 0.92 (0.86 / 1.06), at batch 1 0.63 / 0.26; 256 -> 128 on 13 x 13 at batch 16
#: 0.71 / 0.73; 192 -> 10 on 8 x 8 1.27 / (192 input channels) 0.84
PACKED_MIN_COLUMNS = 128 if vectors.full_width_fma() else math.inf
#: ... or this many where a plane is a multiple of ``ALIASED_PLANE`` floats, whose rows, read in place, share the
#: first-level cache's sets: 192 input channels on 32 x 32 at batch 16, 24 -> 128 output channels 0.94, 1.09-1.11,
#: 0.79, 0.76, 0.77, 0.84; NiN's 192 -> 160 at batch 32 8.2-8.4 ms against 12.6 by ``wide``, at batch 1 0.26-0.29
#: against 0.31-0.41, 160 -> 96 at batch 16 2.0 against 2.9. On an AMD Zen 5 (as above): NiN's 192 -> 160 on 32 x 32
#: at batch 64 0.69 / 0.64, at batch 1 0.62 / 0.71; 160 -> 96 at batch 64 0.71 / 0.58
PACKED_MIN_COLUMNS_ALIASED = 48 if vectors.full_width_fma() else math.inf

#: a forward pass with 3x3 or 5x5 windows at stride 1 in each plane goes to the fused Winograd kernel (``winograd.py``)
#: when a group has at least this many output channels and sums at least this many products per transform element
#: (sub-windows x input channels): measured 1.2-1.5x faster than ``lanes`` with 64 to 384
#: channels in 2D; in 3D (3 depth taps) 1.4x with 16 input and 32 output channels, about even with 16 output
#: channels and 1.6x slower with 8: with few channels the transforms cost more than the multiplies they save
WINOGRAD_MIN_CHANNELS = 32
#: ... and only where its output has at least this many tiles of 2 x 2 positions (per plane, over the batch and
#: the depth): a transformed weight is 16/9 the size of the weight, and with few tiles to serve, fetching it costs
#: more than the multiplies save. Measured on AMD Zen 4 at batch 1, each layer's weights cycled over six copies so
#: that they came from the last-level cache: NiN's 192 -> 192 channels on 6 x 6 (9 tiles) 1.53x slower than the
#: direct kernel, on 8 x 8 (16 tiles) 1.05x, AlexNet's 256 -> 384 on 13 x 13 (49 tiles) 0.78x; in ONNX sessions at
#: batch 1, the weights last used a whole forward pass before, the whole of AlexNet ran 4% faster with its 3 x 3
#: layers by Winograd (17.15 -> 16.5 ms, five rounds alternating), NiN 2% (its last 3 x 3 layer, eight rounds).
#: On an Intel Xeon (``vectors.splits_line_loads``) the same session ran that layer faster directly: NiN at batch 1,
#: medians of 6 and 10 rounds alternating in one process, 2.038 against 1.998 ms and 2.084 against 2.038; at batch 2
#: (32 tiles) Winograd still paid, 3.049 against 3.104
WINOGRAD_MIN_TILES = 32 if vectors.splits_line_loads() else 16
#: ... or this many where the window has 5 taps along a row or a column: it saves 2.04x of the multiplies for 5 x 5
#: rather than 2.25x, with four sub-windows' transforms, which repays them on more tiles only. Measured on AMD Zen 4
#: with the earlier form of 5 taps as two 3-tap sub-windows (1.56x; the 3 + 2 split only made Winograd faster:
#: AlexNet's second layer 25.4 -> 21.4 ms, so the threshold errs towards the direct kernel),
#: Winograd's time over the direct kernel's, one process alternating (weights frozen / not frozen, whose transform
#: then runs on every call / the input gradient): 64 -> 64 channels on 8 x 8 at batch 1 (16 tiles) 1.13 / 1.44 /
#: 1.32, at batch 4 (64 tiles) 0.73 / 1.02 / 1.14; NiN's 96 -> 192 on 16 x 16 at batch 1 (64 tiles) 0.62 / 0.87 /
#: 0.91, at batch 16 0.70 / 0.73 / 0.78; AlexNet's grouped 48 -> 128 on 27 x 27 at batch 1 (196 tiles) 0.86 / 0.96
#: / 1.14, at batch 16 0.79 / 0.80 / 0.96
WINOGRAD_WIDE_MIN_TILES = 64
#: ... and, where the weight is transformed on every call (not frozen: a training step's, an input gradient's flipped
#: weight), at least this many tiles, 3 x 3 windows, or (next) 5 x 5: the transform then runs in the call, a pass
#: over the weight that writes 16/9 (3 x 3) or 36/25 of it, which a few tiles cannot repay. Measured on an Intel Xeon,
#: Winograd's time over the better direct kernel's, best of 21 in one process, weights not frozen: NiN's 192 -> 192
#: on 8 x 8 at batch 1 (16 tiles) 1.35, 2 (32) 1.19, 4 (64) 0.98, 8 0.84; 64 -> 64 on 8 x 8 1.02 at 16 tiles, 0.94 at
#: 32, 0.89 at 64; AlexNet's 256 -> 384 on 13 x 13 at batch 1 (49 tiles) 1.65, 2 1.36, 4 (196) 1.16, 8 (392) 0.96;
#: on AMD Zen 4 (above) 64 -> 64 on 8 x 8 1.44 at 16 tiles, 1.02 at 64. Frozen weights keep the thresholds above
#: (the transform runs once): on the Xeon NiN's 192 -> 192 at batch 1 by Winograd 0.12 ms, directly 0.18, called
#: alone (in a session, among the other layers, the direct kernel made the whole run faster: ``WINOGRAD_MIN_TILES``)
WINOGRAD_UNFROZEN_MIN_TILES = 64
#: ... 5 x 5 windows, where the direct kernel runs two full 512-bit multiply-adds a cycle (Intel's AVX-512 CPUs,
#: ``vectors.splits_line_loads``): NiN's 96 -> 192 on 16 x 16 at batch 1 (64 tiles) 1.62, 2 1.28, 4 (256) 1.05, 8
#: (512) 0.89; AlexNet's grouped 48 -> 128 on 27 x 27 at batch 1 (196 tiles) 1.13, 2 (392) 0.98, 4 0.91. Elsewhere
#: ``WINOGRAD_WIDE_MIN_TILES``: on AMD Zen 4 NiN's layer at batch 1 measured 0.87 and AlexNet's 0.96 with the
#: weights not frozen
WINOGRAD_WIDE_UNFROZEN_MIN_TILES = 512 if vectors.splits_line_loads() else WINOGRAD_WIDE_MIN_TILES
#: windows one row tall (1D convolutions: 1 x 3, 1 x 5) take F(2, 3), 4 multiplies per 2 outputs against the direct
#: kernel's 6, where a group has at least this many channels in and out (sums per transform element: input channels
#: x sub-windows) ... Measured on AMD Zen 4 with 3 taps, Winograd's time over the direct kernel's: 128 -> 128 on
#: 1000 at batch 32 0.79, M5's 128 -> 256 on 248 0.79, 256 -> 512 on 61 (960 tiles) 0.75; with 64 channels 0.92-1.04
#: (1000 tiles), 48 1.04, 32 1.24-1.30, 16 -> 32 1.88; 5 taps (two sub-windows, sums over twice the input channels):
#: 128 -> 128 on 1000 at batch 32 0.85, on 250 at batch 8 0.97, 64 -> 64 0.99
WINOGRAD_ROW_MIN_CHANNELS = 128
#: ... and at least this many 1 x 2 output tiles: 128 channels on 2 x 1000 tiles 0.86, 1000 at batch 1 (500 tiles)
#: 1.11, 248 (123) 1.09; 256 -> 512 on 30 tiles 1.85. Where the products take two blocks at a time
#: (``WINOGRAD_PAIRED``), fewer: on an Intel Xeon, the weight transformed in every call, best of 18 alternating in
#: one process: 128 -> 128 on 1000 at batch 1 (500 tiles) 0.69, on 30 at batch 32 (480) 0.74, on 495 at batch 1
#: (248) 0.85-0.86, on 120 at batch 4 (240) 0.88, on 248 at batch 1 (124) 0.86; 256 -> 512 on 30 at batch 32 (480)
#: 0.75-0.78, on 61 at batch 4 (124) 1.07, at batch 2 (62) 1.42; 128 -> 256 on 123 (62) 1.04; 256 -> 256 on 495
#: (248) 0.88; 5 taps, 128 -> 128: 480 tiles 0.80, 248 0.90-0.93. Never on an AMD Zen 5, where the direct kernel
#: (32 x 7) keeps up: with pairs, best of 8 alternating in one process, forward / input gradient over the better
#: direct kernel's: 128 -> 128 on 1000 at batch 1 (500 tiles) 0.96 / 1.07, at 8 (4000) 0.96 / 1.06, at 32 (16,000)
#: 1.03 / 1.02; 256 -> 256 on 248 at 32 (3968) 1.04 / 1.28; 256 -> 512 on 61 at 32 (960) 1.04 / 1.18, at 4 (120)
#: 1.50 / 1.30
WINOGRAD_ROW_MIN_TILES = 240 if vectors.splits_line_loads() else math.inf if vectors.full_width_fma() else 960
#: ... and at most this many: past them the direct kernel took over, forward and input gradient alike, once its
#: 32-lane tasks that split the sum go strip by strip (``codegen.split_kernel_source``). On an Intel Xeon, two threads,
#: best of 7 alternating in one process, Winograd's time over the direct kernel's (forward / input gradient): 128 ->
#: 128 on 1000 at batch 8 (4000 tiles) 0.88 / 0.94, 12 (6000) 0.98, 16 (8000) 1.03 / 1.07, 20 1.11, 24 1.14 / 1.11,
#: 32 (16,000) 1.09 / 1.13; with 5 taps at 8, 16 and 24: 0.92, 1.03, 1.07 / 1.08; 256 -> 256 on 495 at 8, 16 and 32
#: (7920 tiles): 0.83, 0.93, 0.95 / 0.99; 128 -> 128 on 248 at 64 (7936) 0.94, at 128 0.99 / 1.04. Not measured on
#: AMD (where Winograd measured 0.79 on the first of these at batch 32 against the earlier direct kernel): no limit
WINOGRAD_ROW_MAX_TILES = 8192 if vectors.splits_line_loads() else 2 ** 62

#: a strided 2D convolution whose stride phases see 3 x 3 taps each goes to Winograd over its phase planes where
#: Winograd's multiplies (16 per 2 x 2 tile, input channel and phase) are at most this share of the direct kernel's
#: (kernel rows x columns per output and input channel). Measured on AMD Zen 4, Winograd's time over the direct
#: kernel's (the 32 x 7 kernel), best of 15-120 in one process, in turns: AlexNet's first layer (11 x 11, stride 4,
#: 3 -> 96 channels on 227 x 227; 0.53 of the multiplies) 0.78-0.79 at batch 2, 3 and 16; 10 x 10 of stride 4 (0.64)
#: 0.98; 5 x 5 of stride 2 (0.64): 32 -> 64 channels on 56 x 56 1.09, 16 -> 32 1.50, 64 -> 64 on 28 x 28 1.63 (the
#: last four with the phase planes written out and then packed, 7% slower than ``winograd._pack_phases``). (An
#: earlier, faster host ran the 32 x 7 kernel on AlexNet's first layer at batch 16 in 10.3-13.0 ms, 260-330 GFLOP/s,
#: past this one's FMA peak, and 1.1-1.25x faster than Winograd over its phases: on such a host this route does not
#: pay, and these thresholds are to be measured again.)
PHASE_WINOGRAD_MAX_MULTIPLIES = 0.55
#: ... but where 512-bit multiply-adds run at full width (``vectors.full_width_fma``) not where the direct kernel is
#: the 32-lane one (``conv_cost.paired_shape``). Measured on a Xeon, Winograd's time over the direct kernel's, best
#: of 10 in one process, two rounds: AlexNet's first layer (96 output channels: 32 x 7) 1.05-1.10 at batch 16 and
#: 32, 0.95-1.02 at 2 and 8; with 48 output channels (16 x 14) 0.75-0.79 at batch 16. On an AMD Zen 5 (best of 10,
#: alternating, three processes) AlexNet's first layer at batch 16 1.07-1.10 (8.65-8.99 against 7.96-8.15 ms)
PHASE_WINOGRAD_BEATS_PAIRED = not vectors.full_width_fma()
#: ... where a group has at least this many output channels (each input tile's transform serves them all): 6 x 6 of
#: stride 2, 3 -> 32 channels (0.44 of the multiplies) 1.65; AlexNet's first layer with 48 output channels 0.93
PHASE_WINOGRAD_MIN_OUT_CHANNELS = 48
#: ... and at least this many 2 x 2 output tiles: AlexNet's first layer at batch 2 (1568 tiles) 0.78, at batch 1
#: (784) 0.91-1.03
PHASE_WINOGRAD_MIN_TILES = 1024
#: the weight gradient of a 3 x 3 layer at stride 1 goes to Winograd F(2x2, 3x3) (``winograd_weight.py``) where a
#: group has at least this many input and output channels: each tile's transforms (of its input channels and of its
#: output channels) then serve that many products. Measured on AMD Zen 4, Winograd's time over the direct kernel's,
#: best of 5-40 in one process: AlexNet's third layer (256 -> 384 on 13 x 13) 0.75 at batch 16 and 0.73 at 32, its
#: fourth and fifth (384 -> 384 and 384 -> 256, 2 groups) 0.85 and 0.94; NiN's 192 -> 192 on 8 x 8 at batch 64 0.72;
#: 128 -> 128 on 14 x 14 at batch 16 0.80, on 28 x 28 0.93-0.94; 128 -> 256 on 8 x 8 0.67; but 96 -> 96 on 16 x 16
#: 1.17-1.21, 64 -> 64 1.09-1.30, 32 -> 32 2.6. Never where the direct kernel runs two full 512-bit multiply-adds a
#: cycle (``vectors.full_width_fma``): measured on a Xeon, best of 15 in one process,
#: Winograd's time over the 32 x 7 kernel's: AlexNet's third layer at batch 16 1.68 (27.2 against 16.2 ms) and 32
#: 2.02, its fourth 1.80, its fifth 1.79; NiN's 192 -> 192 on 8 x 8 at batch 64 1.39; on an AMD Zen 5, best of 8
#: alternating in one process, AlexNet's third layer at batch 16 1.32 (14.2 against 10.8 ms), its fourth 1.33.
#: Profiled there later (AlexNet's third layer, Winograd 43 ms against 18 directly): the 16 products took 34.5 ms (72
#: GFLOP/s: a tile's output-gradient row lies 16 x Og numbers after the last's, a new line every step of the sum), the
#: transforms and packs 10; the products over tiles laid out channel by channel ran alone at 170-234 GFLOP/s, 10.5-14
#: ms, which with the transforms would still not beat the direct kernel
WINOGRAD_WEIGHT_MIN_CHANNELS = math.inf if vectors.full_width_fma() else 128
#: ... and where the output has at least this many 2 x 2 tiles: NiN's 192 -> 192 on 8 x 8 at batch 1 (16 tiles) 1.02,
#: at batch 2 (32) 0.90, at 4 0.73; AlexNet's third layer at batch 1 (49) 0.91
WINOGRAD_WEIGHT_MIN_TILES = 32
#: its products sum over at most this many tiles at a time (64 input channels by 4 output channels per task, a
#: block's vectors 256 KB), the chunks' products then added in float64: AlexNet's third layer at batch 32 (1568
#: tiles) 33.0 ms against 35.0 in one chunk and 36.4 in chunks of 256; at batch 16 equal to one chunk
WINOGRAD_WEIGHT_CHUNK_TILES = 1024
#: ... and in passes of as many samples as this many bytes of transformed tiles (16 per tile, of its input and its
#: output channels) hold: AlexNet's third layer at batch 32 takes 64 MB in one pass
WINOGRAD_WEIGHT_PASS_BYTES = 128 * 2 ** 20

#: the input gradient of a strided convolution: one sub-pixel convolution (all phases as extra output channels,
#: absent taps as zero weights) is chosen over one convolution per phase when its estimate beats theirs by this
SUBPIXEL_ADVANTAGE = 1.05

#: the weight gradient sums over batch x positions; its packed output gradient (positions x lanes) is read by every
#: strip of columns, so the sum is split into chunks of at most this many of those elements (512 KB of float32:
#: half a second-level cache; a whole megabyte measured 1.2-1.4x slower on the anchor suite's video_c1, whose 81
#: columns make many strips), each task summing at most that / lanes terms in the input's dtype (partial sums are
#: then added in float64), and split further until there are enough tasks
REDUCTION_CHUNK_ELEMENTS = 2 ** 17
#: ... and where its packed output gradient would take at least STREAMED_MIN_BYTES, it packs the rows of one chunk at
#: a time, into a window that stays in the second-level cache, and sums that chunk before packing the next (the
#: whole packed array no longer goes to memory and back). On an Intel Xeon, two threads, best of 6 alternating in one
#: process, packed whole against chunk by chunk (ms): the anchor suite's video_c1 82.7 -> 61.8 and 85.3 -> 62.4
#: (205 MB packed), nin_1x1 13.4 -> 11.8 and 12.8 -> 11.7 (21 MB), alex_c1 17.4 -> 16.9 and 17.2 -> 17.4 (19 MB),
#: alex_c2_g2 29.2 -> 28.5, audio_c2 and video_c2 even; NiN's training step at batch 64 445 -> 424 and 441 -> 424
#: (AlexNet's at 32: 723 -> 691, then 687 -> 693). Smaller arrays gain nothing and small layers pay a call per chunk:
#: streamed wherever the sum has chunks, alex_c3 (4.2 MB) even, LeNet-5's first layer 0.42 -> 0.68
STREAMED_MIN_BYTES = 8 * 2 ** 20
REDUCTION_MIN_CHUNK = 64
MIN_TASKS = 8
#: the weight gradient takes the window's taps along a row as lanes (``conv._taps_shape``, on the 32-lane kernel:
#: the padded input as the vectors, the output gradient broadcast, nothing packed) where runs of 32 taps fill at least
#: ``TAPS_MIN_LANE_USE`` of the taps computed and each output gradient's element feeds at most ``TAPS_MAX_PRODUCTS``
#: multiply-adds (a group's input channels x the window): there the other formulation's packing of the output
#: gradient, a pass over memory, is a large share of its time. Measured on an Intel Xeon, 2 threads, one process, ms,
#: the other formulation against taps (32 x 7; 16 x 14; 64 x 4): M5's first layer (1 -> 128 channels, 80 taps at
#: stride 4, 8000 samples, batch 32) 11.8 against 5.9 (7.1; 7.6), of which the packing 3.5; the audio's (16,000
#: samples) 25.0 against 13.8 (15.4; 16.5); 1 -> 64 channels, 32 taps at stride 2, 16,000 samples: 19.5 against 4.8;
#: 8 -> 32 channels, 64 taps, 8000 samples, batch 16 (512 products): 17.7 against 15.3 (24.1; 14.5); slower with
#: 16 -> 64 channels and 40 taps (runs of 32 at 0 and 8: 0.62 of the taps computed, 640 products), 21.2 against
#: 30.4, and with 20 taps on 16 lanes (runs at 0 and 4), 12.6 against 20.4
TAPS_MIN_LANE_USE = 0.75
TAPS_MAX_PRODUCTS = 512
#: the sum of ``conv_plan.taps_tables`` goes in chunks of at most this many output gradient elements (4 MB of float32),
#: split further for ``MIN_TASKS``: M5's first layer with chunks of 2^15, 2^17, 2^19, 2^21 and 2^23 elements took
#: 10.3, 6.3, 5.8, 5.8 and 6.0 ms (more chunks, more partial sums; each task's setup over shorter sums)
TAPS_CHUNK_ELEMENTS = 2 ** 20

#: the forward pass's ``lanes`` formulation on the 32-lane kernel splits each block's sum into chunks inside its tasks
#: (``codegen.split_kernel_source``) where the block's packed weights exceed SPLIT_MIN_BLOCK_BYTES, in equal chunks of
#: at most SPLIT_CHUNK_BYTES, so that a chunk stays in the first-level cache while a task's strips reuse it: up to
#: SPLIT_MAX_STRIPS strips a task, fewer where the threads would otherwise get under SPLIT_TASKS_PER_THREAD tasks
#: each, and not at all under SPLIT_MIN_STRIPS. On an Intel Xeon (AVX-512), two threads, alternating in one process:
#: AlexNet's first layer at batch 16 (46 KB blocks, 6915 strips), 13.72 -> 11.23-11.63 ms in chunks of 121-182 rows
#: and 64 strips a task (12.06 with 16 strips a task). Blocks with few strips gain too little for the chunks' extra
#: loads and stores to show: NiN's 192 -> 192 channels, 3 x 3 on 8 x 8 at batch 1 (221 KB blocks, 10 strips), 0.96-1.02
#: in separate measurements. The weight gradient's sum splits the same way (its packed output gradient's blocks in
#: the weights' place; ``conv._grad_weight_split``). On an Intel Xeon, two threads, best of 7-9 in three or four
#: processes per tree alternating: where the output gradient is packed whole, AlexNet's third layer at batch 16
#: 18.1-18.4 -> 17.3-17.4 ms, its fourth 13.5-13.9 -> 12.7-12.9, C3D-small's third 0.30 -> 0.27-0.28; where it is
#: packed chunk by chunk (``STREAMED_MIN_BYTES``), AlexNet's second layer at batch 32 56.3-56.8 -> 52.8-53.4 and at 16
#: 27.9-28.8 -> 26.1-26.7, NiN's 96 -> 192 channels 5 x 5 at batch 64 56.7-57.4 -> 52.4-53.2 and 192 -> 192 1 x 1 on
#: 16 x 16 8.0-8.3 -> 7.0-7.8, the video's second 168-169 -> 158; AlexNet's third to fifth at batch 32 even, its first
#: 17.3-18.3 -> 18.0-18.3; NiN's 1 x 1 on 32 x 32 planes 1.3-1.5x slower (not split: ``ALIASED_PLANE``). Training
#: steps (``model_steps.py``, three rounds alternating): NiN 403.5-411.1 -> 398.1-404.1 ms, AlexNet 665-675 -> 660-666
SPLIT_MIN_BLOCK_BYTES = 32 * 1024
SPLIT_CHUNK_BYTES = 16 * 1024
SPLIT_MIN_STRIPS = 16
SPLIT_MAX_STRIPS = 64
SPLIT_TASKS_PER_THREAD = 4
#: ... and its tasks take every block for one run of strips before the next run where the input it broadcasts (the
#: padded buffer) exceeds SPLIT_STRIPS_OUTER_MIN_BYTES, so that a run's inputs come from memory once for every block
#: rather than once per block; below it block by block, each thread then reading fewer blocks' weights. On an Intel
#: Xeon, two threads, in one process, alternating, runs of strips first against blocks first: the audio's second
#: layer (16 MB, 4 blocks) 13.9 against 15.9 ms, AlexNet's first at batch 16 (10 MB, 3 blocks) 12.9 against 14.1, at
#: batch 32 25.8 against 27.8; 128 -> 128 channels, 3 taps on 1000 at batches 2, 4 and 8 (1, 2 and 4 MB) 820, 1447
#: and 2834 against 814, 1496 and 2923 us; 128 -> 256 on 61 at batches 8, 16 and 32 (0.25, 0.5 and 1 MB) 684, 804 and
#: 1537 against 408, 779 and 1568 (the first with a short last run: runs are now of equal length, ``conv._split_sum``)
SPLIT_STRIPS_OUTER_MIN_BYTES = 1024 * 1024

#: the ``rows`` and ``wide`` formulations split a sum over input channels into chunks of at most this many input
#: planes (input channels x depth taps) where a row of outputs reads more than ``ROWS_CHUNK_MIN_BYTES`` of input rows
#: (planes x row taps x the padded row's length; ``conv._channel_chunks``). A block reads a run from every plane under
#: its window, and the next row of outputs reads most of those rows again; over many planes the reuse is lost.
#: Measured on an Intel Xeon, 2 threads, one process, 3 x 3 (x 3) windows into 1-3 output channels, ms (chunks: the
#: time with 1, 2, 4, 6 or 8 chunks): 64 channels x 3 depth taps of 112 x 112 planes (the video's first layer's input
#: gradient): 233, 140, 104, 91, 88; 128 channels of 224 x 224: 66, 28, 24, 24, 25; 64 of 224 x 224: 27.0, 26.0,
#: 24.8, 26.2, 27.2; 256 of 56 x 56: 5.1, 5.2, 4.2, 4.2, 4.0; 128 in one row of 16,000 (3 taps): 35.7, 28.4, 22.3,
#: 22.1, 21.8; 64 of 5 x 5 windows of 224 x 224: 19.6, 19.1, 19.6, 19.7, 20.0. Below the bytes, no gain or a loss: 64
#: channels of 112 x 112 (87.5 KB) 4.0 either way; 64 x 3 depth taps of 28 x 28 (69 KB) 2.2, 2.3, 2.3, 2.3, 2.5; 16 x 3
#: of 112 x 112 (66 KB) 22.6 against 23.9 in 2; 128 of 28 x 28 (46 KB) 1.23, 1.12, 1.17, 1.29, 1.31
ROWS_CHUNK_PLANES = 32
ROWS_CHUNK_MIN_BYTES = 128 * 1024
