"""The configurations the spec registry tries: small enough for SymPy, and chosen so that every formulation,
strategy and branch of every kernel is taken (``python -m spec coverage`` measures that)."""
from __future__ import annotations

from spec.ops import ConvConfig, PoolConfig, ShapeConfig, TransposedConvConfig


CONV_CONFIGS = (
    # the essay's 1D layer, batched, several channels
    ConvConfig(2, 2, 3, (7,), (3,)),
    ConvConfig(1, 2, 2, (9,), (3,), stride=(2,), padding=(1,), dilation=(2,)),
    # 'same' padding with an even kernel: one more on the right
    ConvConfig(1, 1, 2, (6,), (4,), padding=(1,), padding_right=(2,)),
    ConvConfig(1, 2, 2, (5, 6), (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2)),
    # AlexNet's two-GPU split: groups=2
    ConvConfig(1, 4, 4, (5, 5), (3, 3), padding=(1, 1), groups=2),
    # depthwise, and a stride larger than the kernel
    ConvConfig(1, 3, 3, (6, 5), (2, 2), stride=(3, 2), groups=3),
    ConvConfig(1, 2, 2, (3, 4, 5), (2, 2, 3), stride=(1, 2, 1), padding=(0, 1, 1)),
    ConvConfig(2, 2, 4, (4, 3, 3), (3, 2, 2), dilation=(1, 2, 1), padding=(1, 0, 1), groups=2),
    # a long reduction (64 output positions) over few blocks: the CUDA weight gradient splits it
    ConvConfig(1, 1, 2, (66,), (3,)),
    # every window reads padding, none the input: its gradient is zero
    ConvConfig(1, 1, 2, (1,), (1,), stride=(2,), padding=(1,), padding_right=(0,)),
)

#: CPU formulations that the small configurations above never reach: rows of at least 16 output positions with
#: few output channels (where the CPU's choice of formulation is ``rows``), and a 1x1 convolution over planes
ROWS_FORWARD_CONFIGS = (
    ConvConfig(2, 2, 3, (18,), (3,)),
    ConvConfig(1, 4, 4, (16,), (3,), padding=(1,), groups=2),
    ConvConfig(2, 3, 2, (4, 4), (1, 1)),
    ConvConfig(1, 2, 2, (2, 3, 18), (2, 2, 3), stride=(2, 1, 1), padding=(1, 0, 1)),
    # a whole task: 16 positions x 14 output channels, stored straight from the accumulators
    ConvConfig(1, 1, 14, (18,), (3,)),
)
ROWS_GRAD_INPUT_CONFIGS = ROWS_FORWARD_CONFIGS[:3] + (
    # two phases of 16 positions, written with stride 2
    ConvConfig(1, 1, 2, (32,), (4,), stride=(2,), padding=(1,)),
    ConvConfig(1, 2, 2, (3, 20), (2, 3), padding=(1, 1), dilation=(1, 2)),
)
#: rows of at least 64 output positions, 4 output channels per task (the ``wide`` formulation); for the input
#: gradient, rows of the input
WIDE_CONFIGS = (
    ConvConfig(1, 2, 3, (66,), (3,)),
    ConvConfig(1, 2, 2, (64,), (3,), padding=(2,), dilation=(2,), groups=2),
    ConvConfig(1, 3, 2, (8, 8), (1, 1)),
    # a whole task: 64 positions x 4 output channels, stored straight from the accumulators
    ConvConfig(1, 1, 4, (66,), (3,)),
)
#: the input gradient by ``wide`` of a strided convolution: two phases of at least 64 positions, written with
#: stride 2 (through the kernel's tile: with AVX2's 64 x 1 kernel every strip is whole, so only a strided output
#: takes that path)
WIDE_STRIDED_CONFIGS = (ConvConfig(1, 1, 2, (132,), (4,), stride=(2,), padding=(1,)),)
#: rows of 112 outputs at stride 1, which ``wide`` computes on the kernel whose blocks tile them (112 x 3 with
#: AVX-512, a block a row): 5 output channels (a whole strip of 3 columns and a last one repeating its column),
#: stored as vectors; 13 channels, 39 products, a block of vectors larger than ``blocked.STRIPS_OUTER_MIN_BLOCK`` (its
#: tasks take every block for one strip before the next); a row of 224 (two blocks); for the input gradient, a stride
#: of 2 over 224 inputs, whose two phases of 112 positions are written with stride 2 (through the kernel's tile)
WIDE_ROW_CONFIGS = (
    ConvConfig(1, 2, 5, (114,), (3,)),
    ConvConfig(1, 13, 3, (114,), (3,)),
    ConvConfig(1, 1, 2, (226,), (3,)),
)
WIDE_ROW_STRIDED_CONFIGS = (ConvConfig(1, 1, 2, (224,), (4,), stride=(2,), padding=(1,)),)
#: the input gradient as one sub-pixel convolution: strided, rows of at least 16 (64 for ``wide``) positions
#: per phase, an input that is not a multiple of the stride (the output is cropped), groups, every phase with taps
#: (k > s) and some without (k < s)
SUBPIXEL_CONFIGS = (
    ConvConfig(1, 1, 2, (66,), (5,), stride=(4,)),
    ConvConfig(1, 2, 2, (64,), (3,), stride=(2,), padding=(1,), groups=2),
    ConvConfig(1, 1, 2, (5, 34), (3, 3), stride=(2, 2), padding=(1, 1)),
    ConvConfig(1, 1, 2, (256,), (6,), stride=(4,)),
    ConvConfig(1, 1, 1, (96,), (2,), stride=(3,), dilation=(2,)),
)
#: the input gradient with the batch's samples as lanes (64 per block): several samples, a stride whose phases see
#: different taps and one that sees none, groups and dilation, 3D with depth padding (a padded slice of zeros), and
#: more samples than a block holds (a second, partial block)
SAMPLES_CONFIGS = (
    ConvConfig(3, 2, 4, (5, 6), (3, 3), padding=(1, 1)),
    ConvConfig(2, 4, 4, (6, 7), (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2),
    ConvConfig(2, 1, 2, (7,), (2,), stride=(3,)),
    ConvConfig(2, 2, 2, (3, 4, 5), (3, 2, 3), stride=(1, 2, 1), padding=(0, 0, 1)),
    ConvConfig(66, 1, 2, (4,), (2,), padding=(1,)),
)
#: where the automatic choice takes it (with AVX-512's 64 x 4 kernel): 64 samples, 8 -> 2 channels
SAMPLES_AUTOMATIC_CONFIGS = (ConvConfig(64, 2, 8, (5,), (3,)),)
#: stride 1 with rows shorter than a vector: the vectors run along the padded rows of each plane (the columns past
#: the output's width are computed into scratch and dropped); 2D and 3D, groups, dilation
PADDED_ROWS_CONFIGS = (
    ConvConfig(1, 2, 3, (5, 6), (3, 3), padding=(1, 1)),
    ConvConfig(1, 4, 4, (10, 7), (3, 3), padding=(1, 1), dilation=(2, 1), groups=2),
    ConvConfig(1, 1, 2, (3, 4, 6), (2, 3, 3), padding=(0, 1, 1)),
)

#: the same through the ``lanes`` formulation, and padding wider than the kernel (the input gradient then reads a
#: cropped output gradient)
LANES_CONFIGS = ROWS_GRAD_INPUT_CONFIGS + (
    ConvConfig(1, 2, 3, (4, 3), (1, 2), padding=(1, 1)),
    # a whole task: 16 output channels (a full block of packed weights) x 14 consecutive positions, stored lane by
    # lane straight from the accumulators
    ConvConfig(1, 1, 16, (16,), (3,)),
)

#: the ``lanes`` formulation on the 16-lane kernel as wide as a short row (16 x 10 with AVX-512; forced: the automatic
#: choice takes it for rows of 10 outputs at stride 1): 16 output channels along a row of 10 (a strip of consecutive
#: inputs, stored lane by lane); 10 samples of one position (a strip of numbers apart, stored as vectors); 3 channels
#: along a row of 5 (a partial strip, repeating its last column, and a partial block of lanes: through the tile)
ROW_STRIPS_CONFIGS = (
    ConvConfig(1, 1, 16, (12,), (3,)),
    ConvConfig(10, 1, 16, (3,), (3,)),
    ConvConfig(1, 2, 3, (7,), (3,)),
)

#: the ``lanes`` formulation through the 32-lane kernel (32 x 7, or 32 x 3 with AVX2; forced: the automatic choice
#: takes it for sums of ``tuning.PAIRED_MIN_REDUCTION`` products and more): groups of 32 output channels (a full
#: block; 32 input channels, for the input gradient), a whole strip of positions (stored lane by lane) and a
#: partial one, two groups, padding, and a strip stored as vectors (entries last in the registry)
PAIRED_LANES_CONFIGS = (
    ConvConfig(1, 2, 64, (10,), (3,), groups=2),
    ConvConfig(1, 32, 2, (5, 4), (2, 3), padding=(1, 1)),
    # one position per sample, 7 samples: a whole strip whose results are stored straight from the accumulators
    ConvConfig(7, 1, 32, (3,), (3,)),
)
#: the 32-lane kernel's variant that splits the sum (forced: the automatic choice takes it for large blocks reused
#: by many strips) on sums of 130 products: two chunks in float32, three in float64 (``tuning.SPLIT_CHUNK_BYTES``),
#: a whole strip stored lane by lane and a partial one, a strip a task; then one position per sample, 7 samples,
#: stored straight from the accumulators; then two groups of two blocks each (33 channels) over two samples, two tasks
#: per block, which the tasks take block by block for each run of strips
SPLIT_CONFIGS = (
    ConvConfig(1, 13, 32, (17,), (10,)),
    ConvConfig(7, 13, 32, (10,), (10,)),
    ConvConfig(2, 4, 66, (16,), (3,), groups=2),
)
#: the weight gradient on that variant (forced: the automatic choice takes it where the output gradient is packed
#: whole), its sum over batch and positions in 2 chunks first: 2 x 130 positions, each chunk of 130 rows split again
#: in 2 (float32) or 3 (float64) inside the tasks, 33 output channels (a full block and one of one lane, stored
#: through the tile), three whole strips of columns and a partial one, more than one strip a task (with two threads
#: or one); then two groups of a full block each, padding, in 2D
GRAD_WEIGHT_SPLIT_CONFIGS = (
    ConvConfig(2, 8, 33, (132,), (3,)),
    ConvConfig(1, 4, 64, (16, 18), (3, 3), padding=(1, 1), groups=2),
)
#: the ``wide`` formulation with the sum over input channels split into 3 chunks (forced: the automatic choice takes
#: it, and the same split of ``rows``, for rows of outputs that read large input rows): 5 channels in chunks of 1, 2
#: and 2 along a 1D row; a depth tap in 3D over two samples; the padded rows of a plane (computed into scratch, then
#: cut)
CHANNEL_CHUNK_CONFIGS = (
    ConvConfig(1, 5, 3, (66,), (3,)),
    ConvConfig(2, 3, 1, (2, 1, 66), (2, 1, 3)),
    ConvConfig(1, 4, 3, (5, 20), (3, 3), padding=(1, 1)),
)
#: where the automatic choice takes them: 34 input planes (17 channels x 2 depth taps) of rows of 1000, 136,000
#: bytes in float32, in 2 chunks
CHANNEL_CHUNKS_AUTOMATIC_CONFIGS = (ConvConfig(1, 17, 1, (2, 1, 1000), (2, 1, 1)),)
#: the weight gradient with the taps along a row as lanes (forced, its sum in two chunks): 40 taps in runs of 32 at 0
#: and 8 (the second's first taps computed twice) at stride 2 over two samples, 9 output channels (a whole strip of 7
#: and a partial one); groups and padding along the row; rows of taps under rows of a plane with its padding; depth
#: taps. With AVX2 the runs are the same and the strips 3 wide
TAPS_CONFIGS = (
    ConvConfig(2, 1, 9, (60,), (40,), stride=(2,)),
    ConvConfig(1, 4, 4, (38,), (33,), padding=(2,), groups=2),
    ConvConfig(1, 2, 3, (3, 36), (2, 32), padding=(1, 0)),
    ConvConfig(1, 1, 2, (2, 2, 34), (2, 1, 32)),
)
#: where the automatic choice takes it: 32 taps of one input channel (32 products per output gradient's element)
TAPS_AUTOMATIC_CONFIGS = (ConvConfig(1, 1, 2, (40,), (32,)),)
#: 1 x 1 convolutions over packed panels (``packed.py``): a plane of one whole block of 64 positions and a partial
#: one, a task per block (few tasks), 5 output channels (a whole strip of 4 and a partial one); two chunks of 256
#: positions (the second partial) in each of two groups' planes, dilation (one tap: no effect), whole strips; 2D and
#: 3D planes; a task per block and share of the output channels where the blocks alone are fewer than twice the
#: threads: 9 channels (strips of 4, 4 and 1) in two shares, 13 (four strips) in up to four
PACKED_CONFIGS = (
    ConvConfig(1, 2, 5, (66,), (1,)),
    ConvConfig(2, 4, 4, (300,), (1,), dilation=(2,), groups=2),
    ConvConfig(1, 3, 4, (8, 9), (1, 1)),
    ConvConfig(1, 2, 3, (2, 4, 9), (1, 1, 1)),
    ConvConfig(1, 9, 9, (70,), (1,)),
    ConvConfig(1, 5, 13, (8, 8), (1, 1)),
)
#: sums long enough that one block's vectors over the sum outgrow the first-level cache (the blocked kernels'
#: ``STRIPS_OUTER_MIN_BLOCK``), few enough blocks: the kernel's tasks take the strips outermost. 16 lanes summing
#: 258 products (``lanes``); 64 positions summing 66 (``wide``); the 32-lane kernel's are
#: ``PAIRED_AUTOMATIC_CONFIGS``
STRIPS_OUTER_CONFIGS = (ConvConfig(1, 86, 16, (3,), (3,)), ConvConfig(1, 22, 4, (66,), (3,)))
#: the weight gradient on it: besides those, two full 32-lane blocks with a whole strip of 7 columns (input channel,
#: tap) and a partial one
PAIRED_GRAD_WEIGHT_CONFIGS = PAIRED_LANES_CONFIGS + (ConvConfig(2, 3, 64, (5,), (3,)),)
#: where the automatic choice takes the 32 x 7 kernel: 32 output channels summing 1024 products each (one position)
PAIRED_AUTOMATIC_CONFIGS = (ConvConfig(1, 128, 32, (8,), (8,)),)
#: and where the weight gradient's does: 32 output channels, a sum over 1024 positions; then a row of 1024 numbers,
#: a plane that aliases in the first-level cache (``tuning.ALIASED_PLANE``: ``conv._grad_weight_split`` keeps its sum
#: whole in its tasks)
PAIRED_GRAD_WEIGHT_AUTOMATIC_CONFIGS = (ConvConfig(4, 1, 32, (256,), (1,)), ConvConfig(1, 1, 1, (1024,), (3,)))

#: the fused Winograd F(2x2, 3x3) kernel (3x3 or 5x5 windows at stride 1 in each plane): output sizes that leave
#: partial edge tiles, asymmetric and wide padding, groups, more than 16 input and output channels (a second, partial
#: block of each); in 3D, sums over depth taps with depth padding (wider than the window's reach, for the input
#: gradient) and dilation
WINOGRAD_CONFIGS = (
    ConvConfig(1, 2, 3, (5, 6), (3, 3), padding=(1, 1)),
    ConvConfig(2, 4, 4, (4, 7), (3, 3), groups=2),
    ConvConfig(1, 3, 2, (6, 5), (3, 3), padding=(2, 0), padding_right=(1, 2)),
    ConvConfig(1, 17, 18, (3, 4), (3, 3), padding=(1, 1)),
    ConvConfig(1, 2, 3, (3, 3, 4), (3, 3, 3), padding=(1, 1, 1)),
    # 3 x 3 x 3 at depth stride and dilation 1, F(2, 3) along the depth too: a whole block of 16 output channels and
    # a partial second block of input channels over an even count of planes; groups, asymmetric depth padding and
    # the input gradient's widest (2) over an odd count
    ConvConfig(1, 17, 16, (2, 3, 4), (3, 3, 3), padding=(1, 1, 1)),
    ConvConfig(2, 4, 4, (3, 3, 3), (3, 3, 3), padding=(2, 1, 0), padding_right=(0, 1, 1), groups=2),
    ConvConfig(1, 4, 2, (4, 3, 3), (2, 3, 3), padding=(3, 0, 1), padding_right=(0, 0, 1), dilation=(2, 1, 1),
               groups=2),
    # 5 taps along a plane's axis, as F(2, 3) and F(2, 2) sub-windows: 5 x 5 with groups, 5 x 3 with the
    # largest padding the input gradient takes (4 = taps - 1) and none, and 3D with two depth taps
    ConvConfig(1, 4, 4, (6, 5), (5, 5), padding=(2, 2), groups=2),
    ConvConfig(1, 2, 3, (4, 5), (5, 3), padding=(4, 0), padding_right=(1, 1)),
    ConvConfig(1, 2, 2, (3, 5, 4), (2, 5, 5), padding=(1, 2, 1), padding_right=(0, 1, 2)),
    # ... with a whole block of 16 output channels (its tiles stored straight from the sums): 3 x 5 (and a partial
    # second block), 5 x 3, 5 x 5
    ConvConfig(1, 3, 17, (4, 6), (3, 5), padding=(1, 2)),
    ConvConfig(1, 2, 16, (6, 4), (5, 3), padding=(2, 1)),
    ConvConfig(1, 2, 16, (5, 6), (5, 5), padding=(2, 2)),
    # more than 16 output channels, whose products take two blocks at a time where ``tuning.WINOGRAD_PAIRED``, a
    # share's last block alone with one: three blocks (a pair and one alone, or with two threads and few tiles a
    # share of one and a share of two), 5 x 5, 5 x 3, and 3 x 3 x 3 with the depth transformed; over one input
    # channel and one tile, 3 x 3, 3 x 5 and 1 x 3. (A 3 x 3 x 3 window over 2 x 2 x 2 inputs draws integers too
    # large for its transforms to stay exact in float32: the sample range bounds the direct sum, of 16 terms there)
    ConvConfig(1, 2, 33, (4, 4), (5, 5), padding=(2, 2)),
    ConvConfig(1, 2, 33, (5, 4), (5, 3), padding=(2, 1)),
    ConvConfig(1, 2, 33, (2, 3, 4), (3, 3, 3), padding=(1, 1, 1)),
    ConvConfig(1, 1, 33, (2, 2), (3, 3), padding=(1, 1)),
    ConvConfig(1, 1, 33, (2, 2), (3, 5), padding=(1, 2)),
    ConvConfig(1, 1, 33, (2,), (3,), padding=(1,)),
    # ... and exactly one block (where pairs are taken, the configurations above with 17 and 18 channels run paired):
    # whole tiles of a whole block stored straight from the sums, 3 x 3 and 3 x 5
    ConvConfig(1, 2, 16, (4, 4), (3, 3), padding=(1, 1)),
    ConvConfig(1, 2, 16, (4, 6), (3, 5), padding=(1, 2)),
    # windows one row tall, by F(2, 3): 1D with a partial block of channels and an edge tile (two blocks of output
    # channels, paired where pairs are taken) and with one whole block (its tiles stored straight from the sums), 5
    # taps with groups and the largest padding, with a whole block of output channels and with two blocks, and 1 x 3
    # windows over several rows
    ConvConfig(1, 17, 18, (11,), (3,), padding=(1,)),
    ConvConfig(1, 2, 16, (7,), (3,), padding=(1,)),
    ConvConfig(2, 4, 4, (9,), (5,), padding=(4,), padding_right=(1,), groups=2),
    ConvConfig(1, 2, 16, (7,), (5,), padding=(2,)),
    ConvConfig(1, 3, 33, (9,), (5,), padding=(2,)),
    ConvConfig(1, 2, 3, (3, 7), (1, 3), padding=(0, 1)),
)
#: the Winograd weight gradient (3 x 3 in each plane at stride 1; one depth tap): partial tiles, padding on either
#: side, groups, a second (partial) block of 64 input channels, and depth slices as samples (the forced kernel splits
#: the sum over tiles in two, as ``tuning.WINOGRAD_WEIGHT_CHUNK_TILES`` splits a long one)
WINOGRAD_WEIGHT_CONFIGS = WINOGRAD_CONFIGS[:3] + (  # the forward kernel's 2D 3 x 3 rows
    ConvConfig(1, 66, 2, (3, 4), (3, 3), padding=(1, 1)),
    ConvConfig(2, 2, 3, (3, 4, 5), (1, 3, 3), padding=(0, 1, 1)),
)
#: the forward kernel alone: a depth stride (the input gradient then has phases, which are not Winograd's)
WINOGRAD_FORWARD_CONFIGS = (ConvConfig(1, 2, 2, (5, 3, 4), (2, 3, 3), stride=(2, 1, 1), padding=(1, 0, 1)),)
#: a strided 2D convolution as Winograd's over its stride phases: kernel / stride rounding up to 3 (taps past the
#: kernel are zero weights), strides that differ between rows and columns or are 1 along one, padding, groups
PHASE_WINOGRAD_CONFIGS = (
    ConvConfig(1, 2, 3, (9, 10), (5, 6), stride=(2, 2), padding=(1, 2)),
    ConvConfig(1, 3, 2, (13, 12), (11, 9), stride=(4, 3)),
    ConvConfig(2, 4, 4, (7, 8), (6, 5), stride=(2, 2), groups=2),
    ConvConfig(1, 2, 3, (9, 10), (3, 5), stride=(1, 2), padding=(1, 2)),
)
#: where the automatic choice weighs it: 3 x 3 taps a phase, too few tiles (``tuning.PHASE_WINOGRAD_MIN_TILES``) to
#: take it
PHASE_WINOGRAD_AUTOMATIC_CONFIGS = PHASE_WINOGRAD_CONFIGS[:1]
#: a strided 1D or 2D convolution as the stride-1 convolution of its phase planes on the blocked kernels: kernels
#: that are and are not multiples of the stride, padding, groups, strides that differ between rows and columns or
#: are 1 along one
PHASES_CONFIGS = (
    ConvConfig(1, 1, 4, (30,), (8,), stride=(4,)),
    ConvConfig(1, 2, 3, (17,), (5,), stride=(2,), padding=(1,)),
    ConvConfig(1, 2, 3, (9, 10), (5, 6), stride=(2, 2), padding=(1, 2)),
    ConvConfig(2, 4, 4, (7, 8), (3, 2), stride=(2, 3), groups=2),
    ConvConfig(1, 2, 3, (6, 11), (3, 4), stride=(1, 3), padding=(1, 1)),
)
#: where the automatic choice takes them: M5's first layer in small, 8 taps at stride 4 (4 phase planes, output rows
#: of 65 positions)
PHASES_AUTOMATIC_CONFIGS = (ConvConfig(1, 1, 8, (264,), (8,), stride=(4,)),)

MAX_POOL_CONFIGS = (
    PoolConfig(2, 2, (9,), (3,), (2,), (1,)),
    # AlexNet's overlapping pooling, with ceil_mode
    PoolConfig(1, 2, (7, 6), (3, 3), (2, 2), ceil_mode=True),
    PoolConfig(1, 2, (6, 7), (2, 3), (2, 2), (1, 1), dilation=(2, 1)),
    PoolConfig(1, 2, (4, 5, 5), (2, 2, 2), (2, 2, 2), ceil_mode=True),
    PoolConfig(1, 1, (5, 4), (3, 3), (1, 1), (1, 1)),
    # strides along the rows of 3, 4 and more, and padding along the depth
    PoolConfig(1, 1, (11,), (3,), (3,)),
    PoolConfig(1, 1, (3, 13), (2, 4), (1, 4), (0, 1)),
    PoolConfig(1, 1, (3, 4, 13), (3, 2, 2), (1, 2, 5), (1, 0, 1)),
    # ONNX's padding: different before and after an axis, and wider than half the window
    PoolConfig(1, 2, (6, 5), (3, 2), (2, 1), (2, 0), padding_right=(1, 1)),
    PoolConfig(1, 1, (7,), (4,), (3,), (3,), ceil_mode=True, padding_right=(0,)),
)

AVG_POOL_CONFIGS = (
    PoolConfig(2, 2, (9,), (3,), (2,), (1,)),
    PoolConfig(1, 2, (7, 6), (3, 3), (2, 2), (1, 1), ceil_mode=True),
    PoolConfig(1, 2, (7, 6), (3, 3), (2, 2), (1, 1), ceil_mode=True, count_include_pad=False),
    PoolConfig(1, 2, (3, 4, 5), (2, 2, 3), (1, 2, 2), (1, 0, 1)),
    PoolConfig(1, 1, (5, 5), (2, 2), (2, 2)),
    # a stride longer than the window: inputs that no window covers
    PoolConfig(1, 1, (9,), (2,), (3,)),
    # ONNX's padding: different before and after an axis (the divisor counts each side's own), wider than half
    PoolConfig(1, 2, (6, 5), (3, 2), (2, 1), (2, 0), padding_right=(1, 1)),
    PoolConfig(1, 1, (7,), (3,), (2,), (0,), ceil_mode=True, padding_right=(2,)),
    PoolConfig(1, 1, (8,), (3,), (2,), (1,), count_include_pad=False, padding_right=(2,)),
)

#: average pooling's CPU paths that the configurations above leave out (their rows come last in the registry, so
#: that the rows before them draw the same random values as before): a window that the loops take a tap at a time
#: with a stride of 5, and rows of at least 16 outputs, which the backward gathers a row at a time: a row of 3 taps,
#: a row of 5 (more than the loops take whole), depths and rows that several windows cover
AVG_POOL_ROW_CONFIGS = (
    PoolConfig(1, 2, (3, 13), (2, 3), (1, 5), (1, 1)),
    PoolConfig(1, 2, (34,), (3,), (2,), (1,)),
    PoolConfig(1, 1, (2, 36), (2, 5), (1, 2), (0, 2), count_include_pad=False),
    PoolConfig(1, 1, (3, 2, 17), (2, 1, 2), (1, 1, 1)),
)


#: the constants of the CPU's pooling loops that the configurations above leave out for max or for average pooling:
#: windows taken whole (``numconv.kernels.cpu.pool.WHOLE_WINDOWS``, each compiled with its own sizes), 1D windows of
#: 2 (stride 2) and 4 (stride 4) and the 2 x 2, with padding (without, the rows route takes them), and the 3 x 3
#: window of stride 1; a window taken a tap at a time with a stride of 4
POOL_LITERAL_CONFIGS = (
    PoolConfig(1, 2, (9,), (2,), (2,), (1,)),
    PoolConfig(1, 1, (5, 6), (2, 2), (2, 2), (1, 1)),
    PoolConfig(1, 1, (13,), (4,), (4,), (1,)),
    PoolConfig(1, 1, (5, 6), (3, 3), (1, 1), (1, 1)),
    PoolConfig(1, 1, (3, 14), (2, 3), (1, 4)),
)

#: the CPU's rows route (``numconv.kernels.cpu.pool.ROW_WINDOWS``: no padding, rows of 16 outputs or more, each window
#: compiled with its own sizes): every window of it, AlexNet's 3 x 3 of stride 2 over several rows (the rows whose
#: input reaches on past the row's end, and the last, which stops at it) and where ceil_mode's last windows overhang
#: (widened, or for the maximum of windows split into phases, the last row and column repeated: the second row of
#: windows of the 4 x 34 overhangs by a row, its last window by a column too; the last, a window of 4 over 3 inputs:
#: the average's division by a size that is no power of two, which its other windows of that route, all split into
#: phases, divide by in a loop of their own); the 2 x 2 x 2 over rows of 22 outputs, whose maximum goes in blocks of
#: 16, the last overlapping the first. The maximum's backward takes them too: its 1D windows as long as their stride
#: go by the tiling route (``max_pool_backward``), the last of the window of 4 over 3 inputs
ROW_WINDOW_CONFIGS = (
    PoolConfig(1, 1, (7, 33), (3, 3), (2, 2)),
    PoolConfig(1, 1, (4, 34), (3, 3), (2, 2), ceil_mode=True),
    PoolConfig(1, 1, (2, 2, 45), (2, 2, 2), (2, 2, 2)),
    PoolConfig(1, 2, (2, 32), (2, 2), (2, 2)),
    PoolConfig(1, 1, (32,), (2,), (2,)),
    PoolConfig(1, 1, (34,), (3,), (2,), ceil_mode=True),
    PoolConfig(1, 1, (66,), (4,), (4,)),
    PoolConfig(1, 1, (67,), (4,), (4,), ceil_mode=True),
)

#: the CPU's rows route over rows shorter than 16 outputs (``numconv.kernels.cpu.pool._short_rows_of``: windows that
#: do not overlap, without padding, of a power of two of inputs; the average's from 6 outputs): in 1D, a window of 4;
#: in 2D, 2 x 2 over planes of 42 outputs, whose first rows compute blocks that run on into the next rows and whose
#: last rows are computed on their own; in 3D, 2 x 2 x 2 over planes of 36 outputs
SHORT_ROW_CONFIGS = (
    PoolConfig(1, 2, (28,), (4,), (4,)),
    PoolConfig(1, 2, (12, 14), (2, 2), (2, 2)),
    PoolConfig(1, 1, (4, 6, 12), (2, 2, 2), (2, 2, 2)),
)

#: the average's backward by the CPU's tiling route (windows as long as their strides, no padding: each width of
#: ``numconv.kernels.cpu.pool.TILE_WIDTHS``): a last window that overhangs the input (ceil_mode), and inputs that no
#: window reaches (floor mode's last slice, row and column)
TILE_CONFIGS = (
    PoolConfig(1, 1, (3, 10), (3, 3), (3, 3), ceil_mode=True),
    PoolConfig(1, 2, (3, 5, 9), (2, 2, 2), (2, 2, 2)),
    PoolConfig(1, 1, (11,), (4,), (4,), ceil_mode=True),
)

#: the average's backward by the CPU's phases route (``numconv.kernels.cpu.pool.PHASE_WINDOWS``: rows of 16 outputs or
#: more): AlexNet's 3 x 3 of stride 2, padded, over an odd row (a column past the whole groups of two); a 4 x 4
#: of stride 2 whose input slices two output depths cover, its last window overhanging the row (ceil_mode); and a
#: window one row high of stride 2 along H, whose odd rows no tap reaches
POOL_PHASE_CONFIGS = (
    PoolConfig(1, 1, (5, 35), (3, 3), (2, 2), (1, 1)),
    PoolConfig(1, 1, (3, 4, 34), (2, 4, 4), (1, 2, 2), ceil_mode=True),
    PoolConfig(1, 1, (4, 33), (1, 3), (2, 2)),
)

#: (batch, in_features, out_features): rows narrower than a 16-wide vector, exactly one, one and a bit (the CPU's
#: last block overlaps the one before), more than 16 samples, more input features than a 64-lane block, and the CPU's
#: dot products in tiles of 4 x 4: whole tiles only, tiles with samples and features past them, and whole tiles of
#: samples with features past them
LINEAR_CONFIGS = (ShapeConfig((3, 5, 4)), ShapeConfig((1, 16, 2)), ShapeConfig((2, 21, 3)), ShapeConfig((18, 3, 2)),
                  ShapeConfig((8, 33, 4)), ShapeConfig((6, 19, 9)), ShapeConfig((8, 7, 6)),
                  ShapeConfig((2, 70, 3)))
#: a weight row longer than the CPU's tiles of dot products take (``dense.DOT_MAX_ROW_BYTES`` in float32 and float64)
#: for more samples than a 16-lane block: the automatic forward pass's choice between the 16- and 32-lane kernels
LINEAR_LONG_ROW_CONFIGS = (ShapeConfig((17, 1025, 2)),)

#: transposed convolutions (the input-gradient kernel run forwards): strides with output_padding, dilation, groups
TRANSPOSED_CONFIGS = (
    TransposedConvConfig(2, 2, 3, (4,), (3,), (2,), (1,), (1,), (1,)),
    TransposedConvConfig(1, 4, 2, (3, 3), (3, 2), (2, 3), (1, 0), (1, 2), (1, 2), groups=2),
    TransposedConvConfig(1, 2, 2, (2, 2, 3), (2, 1, 2), (1, 2, 2), (0, 0, 1), (0, 1, 0), (2, 1, 1)),
)

#: batch normalisation over (N, C, S): a spatial layer's and a dense layer's (S = 1)
BATCH_NORM_CONFIGS = (
    ShapeConfig((2, 2, 2), (("eps", 1e-5),)),
    ShapeConfig((5, 1, 1), (("eps", 1e-3),)),
)
#: rows long enough for the vector loop of the CPU's row sums and a remainder after it (entries last in the registry)
BATCH_NORM_ROW_CONFIGS = (ShapeConfig((1, 1, 37), (("eps", 1e-5),)),)

#: softmax cross-entropy over (N, K) logits: plain, at a magnitude where exp overflows without the row's maximum
#: taken out, and with PyTorch's class weights, an ignored row and label smoothing
LOSS_CONFIGS = (
    ShapeConfig((4, 5), (("magnitude", 3.0),)),
    ShapeConfig((3, 10), (("magnitude", 1000.0),)),
    ShapeConfig((4, 3), (("magnitude", 2.0), ("weights", ("1/2", "2", "5/4")), ("ignored", 2), ("smoothing", "1/4"))),
)
