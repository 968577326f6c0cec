"""Tiled matrix products in shared memory: convolution as an implicit GEMM, and the dense layer.

Every product here is ``C[m, j] = sum_k A[m, k] * B[k, j]`` (per group of a grouped convolution), where A and B are
never formed: a *kind* says how (m, k) and (k, j) map to elements of the arrays actually passed, all as flat views.

============  =======================  ===========================  ===========================  ==================
kind          rows m                   columns j                    reduction k                  A, B
============  =======================  ===========================  ===========================  ==================
FORWARD       (n, output position)     output channel in the group  (input channel, tap)         x window, weight
GRAD_INPUT    (n, phase position)      (phase, input channel)       (output channel, offset)     grad_output, weight
GRAD_WEIGHT   output channel in group  (input channel, tap)         (n, output position)         grad_output, x
DENSE         row of A                 column of B                  k                            strided matrices
============  =======================  ===========================  ===========================  ==================

The window equations are numconv.geometry's: input position ``i = stride * o - pad + dilation * tap`` along each
axis, grouped input channel ``group * (C / groups) + c``. GRAD_INPUT inverts them by gathering, in sub-pixel form:
along an axis of stride s, input ``i = r + s * q`` (phase ``r`` in ``[0, s)``, phase position ``q``) receives from
output ``o = q + e`` through the tap ``t`` with ``dilation * t = r + pad - s * e``, for every offset ``e`` that
makes ``t`` a tap. So the rows are the phase positions, the columns are (phase, input channel), the reduction runs
over (output channel, offset), and B is the weight element of the tap that (offset, phase) selects, or zero where
there is none: no term is one that the stride skips (AlexNet's first layer, 11 x 11 taps at stride 4, reduces over
3 x 3 offsets with 16 x 3 columns, where gathering every tap for every input position would reduce over 121 taps
of which 1 in 16 reaches it, in 3 columns), and no atomics are needed. Positions outside the output read as zero;
phase positions past the input's end are not written.

A block computes a ``TM x TN`` tile of C with ``(TM / RM) x (TN / RN)`` threads; each thread accumulates ``RM x RN``
results in registers, rows ``tx + i * (TM / RM)`` and columns ``ty + j * (TN / RN)`` (so consecutive threads own
consecutive rows, and conv outputs, whose rows are positions, are stored coalesced). The reduction advances ``TK``
at a time: the block's threads load a ``TM x TK`` slice of A and a ``TK x TN`` slice of B into shared memory, with
consecutive threads on consecutive addresses of the source (along k or along m/j, whichever is contiguous there);
a slice loaded along k is stored row-major with a padded row of ``TK + 1`` so that neither the stores nor the
reads of the product collide on shared-memory banks. The slices are double-buffered: the next one is loaded while
the current one is multiplied, one barrier per step. Each thread decodes the window indices of its rows (or
columns) once, outside the reduction loop; along the reduction, the loads look the decoded (channel, tap) or
output position up in a small table built once per geometry (:func:`build_table`), so that the inner loop does not
divide; GRAD_WEIGHT's reduction index (image, output position) is advanced by the step with carries.

GRAD_WEIGHT reduces over the whole batch and every output position, so its reduction is split (``blockIdx.z``
= group * splits + split): each split writes its partial sums to a workspace, and one more kernel adds the splits in
order. Results are deterministic; there are no atomics.

Tile shapes come from :mod:`numconv.config` at each launch; each distinct (kind, dtype, tile, load order) compiles
one specialisation.
"""
from functools import lru_cache

import numpy as np
from numba import cuda

from numconv import config
from numconv.geometry import window_position
from numconv.kernels.scalar import relu_floor
from numconv.kernels.cuda.support import blocks_for, launch, numba_type, simulated, specialise

FORWARD, GRAD_INPUT, GRAD_WEIGHT, DENSE = 0, 1, 2, 3

# The index helpers below are device functions. Under the simulator they stay plain Python functions: its wrapper
# for device functions swaps module globals under a lock on every call, which made up most of a simulated product's
# time, and these helpers use nothing of the cuda module.
_index_helper = (lambda function: function) if simulated() else cuda.jit(device=True)

# positions in the geometry tuple of the convolution kinds
_N, _C, _D, _H, _W, _O, _OD, _OH, _OW, _KD, _KH, _KW = range(12)
_S0, _S1, _S2, _P0, _P1, _P2, _L0, _L1, _L2, _G = range(12, 22)
# positions in the geometry tuple of DENSE: element strides of A along m and k, of B along k and j, of C along m
# and j, and whether a bias (indexed by j) is added
_AM, _AK, _BK, _BJ, _CM, _CJ, _HAS_BIAS = range(7)
GEOMETRY_LENGTH = 22
_GRID_LIMIT = 65535  # blocks along the y and z axes of a grid
#: int64 entries per reduction index in the decoded tables (see build_table)
TABLE_WIDTH = 4


def conv_geometry(x_shape, weight_shape, out_shape, stride, padding, dilation, groups) -> tuple:
    """The geometry tuple of a convolution: shapes of x (N, C, D, H, W), of the output (O, OD, OH, OW) and of the
    kernel (KD, KH, KW), then stride, padding, dilation and groups."""
    return (tuple(int(v) for v in x_shape) + tuple(int(v) for v in out_shape[1:]) +
            tuple(int(v) for v in weight_shape[2:]) + tuple(int(v) for v in stride) +
            tuple(int(v) for v in padding) + tuple(int(v) for v in dilation) + (int(groups),))


def dense_geometry(a_strides, b_strides, c_strides, has_bias) -> tuple:
    values = tuple(int(v) for v in a_strides + b_strides + c_strides) + (int(bool(has_bias)),)
    return values + (0,) * (GEOMETRY_LENGTH - len(values))


@_index_helper
def _phase_position(geo, m):
    """GRAD_INPUT's row ``m`` as (image, phase position along each axis): ``ceil(size / stride)`` positions an
    axis, so that every phase's positions fit."""
    qd_size = (geo[_D] + geo[_S0] - 1) // geo[_S0]
    qh_size = (geo[_H] + geo[_S1] - 1) // geo[_S1]
    qw_size = (geo[_W] + geo[_S2] - 1) // geo[_S2]
    spatial = qd_size * qh_size * qw_size
    n = m // spatial
    q = m - n * spatial
    qw = q % qw_size
    rest = q // qw_size
    return n, rest // qh_size, rest % qh_size, qw


@_index_helper
def _phase_column(geo, j):
    """GRAD_INPUT's column ``j`` as (phase, flat over the axes' phases; input channel within the group)."""
    channels = geo[_C] // geo[_G]
    phase = j // channels
    return phase, j - phase * channels


@_index_helper
def _row_info(kind, geo, group, m):
    """What a row's loads share, decoded once: (base offset, and for the window kinds a window origin per axis)."""
    if kind == FORWARD:
        spatial = geo[_OD] * geo[_OH] * geo[_OW]
        n = m // spatial
        p = m - n * spatial
        ow = p % geo[_OW]
        rest = p // geo[_OW]
        oh = rest % geo[_OH]
        od = rest // geo[_OH]
        return (n * geo[_C] * geo[_D] * geo[_H] * geo[_W], od * geo[_S0] - geo[_P0], oh * geo[_S1] - geo[_P1],
                ow * geo[_S2] - geo[_P2])
    if kind == GRAD_INPUT:
        n, qd, qh, qw = _phase_position(geo, m)
        return (n * geo[_O] * geo[_OD] * geo[_OH] * geo[_OW], qd, qh, qw)
    if kind == GRAD_WEIGHT:
        return ((group * (geo[_O] // geo[_G]) + m) * geo[_OD] * geo[_OH] * geo[_OW], 0, 0, 0)
    return (m * geo[_AM], 0, 0, 0)


@_index_helper
def _col_info(kind, geo, group, j):
    """What a column's loads share, decoded once (see :func:`_row_info`)."""
    taps = geo[_KD] * geo[_KH] * geo[_KW]
    if kind == FORWARD:
        return ((group * (geo[_O] // geo[_G]) + j) * (geo[_C] // geo[_G]) * taps, 0, 0, 0)
    if kind == GRAD_INPUT:
        phase, c = _phase_column(geo, j)
        return (c * taps, phase, 0, 0)
    if kind == GRAD_WEIGHT:
        c = j // taps
        t = j - c * taps
        tw = t % geo[_KW]
        rest = t // geo[_KW]
        th = rest % geo[_KH]
        td = rest // geo[_KH]
        return ((group * (geo[_C] // geo[_G]) + c) * geo[_D] * geo[_H] * geo[_W], td * geo[_L0] - geo[_P0],
                th * geo[_L1] - geo[_P1], tw * geo[_L2] - geo[_P2])
    return (j * geo[_BJ], 0, 0, 0)


def _tap_offsets(geo) -> np.ndarray:
    """(td * dilation, th * dilation, tw * dilation) of every tap, in the weight's (KD, KH, KW) order."""
    taps = np.indices((geo[_KD], geo[_KH], geo[_KW])).reshape(3, -1).T
    return taps * np.array([geo[_L0], geo[_L1], geo[_L2]])


def _phase_taps(kernel, stride, pad, dilation, out_size, in_size) -> tuple:
    """Along one axis of GRAD_INPUT: the offsets ``e`` (ascending) by which some phase ``r`` reaches output
    ``q + e`` from input ``r + stride * q`` (through tap ``t``, ``dilation * t = r + pad - stride * e``), keeping those
    that some phase position can reach inside the output, and the tap of each (offset, phase), -1 for none."""
    positions = -(-in_size // stride)
    reached = {}
    for phase in range(stride):
        for tap in range(kernel):
            # output q + e reads input phase + stride * q through the tap when window_position(e, ...) == phase
            distance = phase - window_position(0, stride, pad, dilation, tap)
            if distance % stride == 0 and -positions < distance // stride < out_size:
                reached[(distance // stride, phase)] = tap
    offsets = sorted({offset for offset, _ in reached})
    taps = np.array([[reached.get((offset, phase), -1) for phase in range(stride)] for offset in offsets],
                    dtype=np.int64).reshape(len(offsets), stride)
    return np.array(offsets, dtype=np.int64), taps


@lru_cache(maxsize=256)
def grad_input_offsets(geo) -> tuple:
    """GRAD_INPUT's reduction over (output channel, offset): per axis the offsets and the tap of each (offset,
    phase) (:func:`_phase_taps`), in (D, H, W) order. ``geo`` is a geometry tuple."""
    return tuple(_phase_taps(geo[_KD + axis], geo[_S0 + axis], geo[_P0 + axis], geo[_L0 + axis], geo[_OD + axis],
                             geo[_D + axis]) for axis in range(3))


def grad_input_extent(geo) -> tuple:
    """(rows, columns, reduction length) of GRAD_INPUT's product for each group: rows (image, phase position),
    columns (phase, input channel), reduction (output channel, offset)."""
    offsets = grad_input_offsets(tuple(geo))
    positions = phases = reach = 1
    for axis, (axis_offsets, _) in enumerate(offsets):
        stride = geo[_S0 + axis]
        positions *= -(-geo[_D + axis] // stride)
        phases *= stride
        reach *= len(axis_offsets)
    return (geo[_N] * positions, phases * (geo[_C] // geo[_G]), (geo[_O] // geo[_G]) * reach)


def grad_input_complete(geo) -> bool:
    """Whether every (offset, phase) of GRAD_INPUT's product selects a tap, so that no zero of B stands for a term
    that does not exist (which a NaN or an infinity in the output gradient would turn into a NaN)."""
    return all(bool((taps >= 0).all()) for _, taps in grad_input_offsets(tuple(geo)))


def build_table(kind, geo) -> np.ndarray:
    """The decoded reduction index of a kind, ``TABLE_WIDTH`` int64 per entry, so that the loads of the product
    look offsets up instead of dividing (integer division is slow on a GPU):

    - FORWARD, k = (c, tap): ``c * D*H*W`` and the tap's offset along each axis (dilation * tap);
    - GRAD_INPUT, k = (o, offset): ``o * OD*OH*OW`` and the offset ``e`` along each axis; then, after all of
      them, ``phases`` entries per k, one per phase (flat over the axes' phases): the weight element
      ``o * (C/groups) * taps + tap`` less the column's ``c * taps``, or -1 where the offset reaches no tap of that
      phase;
    - GRAD_WEIGHT, per output position p (k = n * positions + p): the window origin ``stride * o`` along each axis;
    - DENSE: a single unused entry.
    """
    table = np.zeros((1, TABLE_WIDTH), dtype=np.int64)
    if kind == FORWARD:
        offsets = _tap_offsets(geo)
        count = geo[_C] // geo[_G]
        table = np.zeros((count * len(offsets), TABLE_WIDTH), dtype=np.int64)
        table[:, 0] = np.repeat(np.arange(count), len(offsets)) * geo[_D] * geo[_H] * geo[_W]
        table[:, 1:] = np.tile(offsets, (count, 1))
    elif kind == GRAD_INPUT:
        (off_d, tap_d), (off_h, tap_h), (off_w, tap_w) = grad_input_offsets(tuple(geo))
        count = geo[_O] // geo[_G]
        offsets = np.stack(np.meshgrid(off_d, off_h, off_w, indexing="ij"), axis=-1).reshape(-1, 3)
        table = np.zeros((count * len(offsets), TABLE_WIDTH), dtype=np.int64)
        table[:, 0] = np.repeat(np.arange(count), len(offsets)) * geo[_OD] * geo[_OH] * geo[_OW]
        table[:, 1:] = np.tile(offsets, (count, 1))
        # taps[e_d, e_h, e_w, r_d, r_h, r_w]: the flat tap, -1 where any axis has none
        taps = ((tap_d[:, None, None, :, None, None] * geo[_KH] + tap_h[None, :, None, None, :, None]) * geo[_KW] +
                tap_w[None, None, :, None, None, :])
        missing = ((tap_d[:, None, None, :, None, None] < 0) | (tap_h[None, :, None, None, :, None] < 0) |
                   (tap_w[None, None, :, None, None, :] < 0))
        taps = np.where(missing, -1, taps).reshape(len(offsets), geo[_S0] * geo[_S1] * geo[_S2])
        weight_row = np.arange(count)[:, None, None] * (geo[_C] // geo[_G]) * geo[_KD] * geo[_KH] * geo[_KW]
        lookup = np.where(taps[None] < 0, -1, weight_row + taps[None])
        return np.concatenate([table.reshape(-1), lookup.reshape(-1)])
    elif kind == GRAD_WEIGHT:
        origins = np.indices((geo[_OD], geo[_OH], geo[_OW])).reshape(3, -1).T
        table = np.zeros((len(origins), TABLE_WIDTH), dtype=np.int64)
        table[:, :3] = origins * np.array([geo[_S0], geo[_S1], geo[_S2]])
    return table.reshape(-1)


_TABLES = {}


def device_table(kind, geo):
    """:func:`build_table` on the device, kept for the next call with the same geometry (and device)."""
    device = 0 if simulated() else cuda.get_current_device().id
    key = (kind, tuple(geo), device)
    table = _TABLES.get(key)
    if table is None:
        if len(_TABLES) >= 256:  # pragma: no cover - the cache's bound, not a kernel's arithmetic
            _TABLES.clear()
        table = _TABLES[key] = cuda.to_device(build_table(kind, geo))
    return table


@_index_helper
def _a_index(kind, geo, table, group, base, at_d, at_h, at_w, k, n, p):
    """Flat index of A[m, k] in the array passed as A, or -1 where A[m, k] is zero (padding, or no output). For
    GRAD_WEIGHT, ``k`` comes split as (image ``n``, output position ``p``)."""
    if kind == FORWARD:
        e = k * TABLE_WIDTH
        i_d = at_d + table[e + 1]
        i_h = at_h + table[e + 2]
        i_w = at_w + table[e + 3]
        if i_d < 0 or i_d >= geo[_D] or i_h < 0 or i_h >= geo[_H] or i_w < 0 or i_w >= geo[_W]:
            return -1
        first = group * (geo[_C] // geo[_G]) * geo[_D] * geo[_H] * geo[_W]
        return base + first + table[e] + (i_d * geo[_H] + i_h) * geo[_W] + i_w
    if kind == GRAD_INPUT:
        # phase position q receives from output q + e
        e = k * TABLE_WIDTH
        od = at_d + table[e + 1]
        oh = at_h + table[e + 2]
        ow = at_w + table[e + 3]
        if od < 0 or oh < 0 or ow < 0 or od >= geo[_OD] or oh >= geo[_OH] or ow >= geo[_OW]:
            return -1
        first = group * (geo[_O] // geo[_G]) * geo[_OD] * geo[_OH] * geo[_OW]
        return base + first + table[e] + (od * geo[_OH] + oh) * geo[_OW] + ow
    if kind == GRAD_WEIGHT:
        return n * geo[_O] * geo[_OD] * geo[_OH] * geo[_OW] + base + p
    return base + k * geo[_AK]


@_index_helper
def _b_index(kind, geo, table, group, base, at_d, at_h, at_w, k, n, p, depth):
    """Flat index of B[k, j] in the array passed as B, or -1 where B[k, j] is zero (``n``, ``p`` as in
    :func:`_a_index`; ``depth``, the reduction's length, is where GRAD_INPUT's tap lookup starts in the table)."""
    if kind == FORWARD:
        return base + k
    if kind == GRAD_INPUT:
        # at_d is the column's phase
        element = table[depth * TABLE_WIDTH + k * (geo[_S0] * geo[_S1] * geo[_S2]) + at_d]
        if element < 0:
            return -1
        taps = geo[_KD] * geo[_KH] * geo[_KW]
        return group * (geo[_O] // geo[_G]) * (geo[_C] // geo[_G]) * taps + base + element
    if kind == GRAD_WEIGHT:
        e = p * TABLE_WIDTH
        i_d = table[e] + at_d
        i_h = table[e + 1] + at_h
        i_w = table[e + 2] + at_w
        if i_d < 0 or i_d >= geo[_D] or i_h < 0 or i_h >= geo[_H] or i_w < 0 or i_w >= geo[_W]:
            return -1
        return n * geo[_C] * geo[_D] * geo[_H] * geo[_W] + base + (i_d * geo[_H] + i_h) * geo[_W] + i_w
    return base + k * geo[_BK]


@_index_helper
def _c_index(kind, geo, group, split, m, j):
    """Flat index of C[m, j] in the array passed as C (for GRAD_WEIGHT, in the workspace row of ``split``), or -1
    where there is no such element (GRAD_INPUT's phase positions past the input's end)."""
    if kind == FORWARD:
        spatial = geo[_OD] * geo[_OH] * geo[_OW]
        n = m // spatial
        return (n * geo[_O] + group * (geo[_O] // geo[_G]) + j) * spatial + (m - n * spatial)
    if kind == GRAD_INPUT:
        n, qd, qh, qw = _phase_position(geo, m)
        phase, c = _phase_column(geo, j)
        rw = phase % geo[_S2]
        rest = phase // geo[_S2]
        i_d = rest // geo[_S1] + geo[_S0] * qd
        i_h = rest % geo[_S1] + geo[_S1] * qh
        i_w = rw + geo[_S2] * qw
        if i_d >= geo[_D] or i_h >= geo[_H] or i_w >= geo[_W]:
            return -1
        return ((n * geo[_C] + group * (geo[_C] // geo[_G]) + c) * geo[_D] + i_d) * geo[_H] * geo[_W] + (
            i_h * geo[_W] + i_w)
    if kind == GRAD_WEIGHT:
        row = (geo[_C] // geo[_G]) * geo[_KD] * geo[_KH] * geo[_KW]
        return split * geo[_O] * row + (group * (geo[_O] // geo[_G]) + m) * row + j
    return m * geo[_CM] + j * geo[_CJ]


@_index_helper
def _bias_index(kind, geo, group, j):
    """Index into the bias added to C[m, j], or -1 for none."""
    if kind == FORWARD:
        return group * (geo[_O] // geo[_G]) + j
    if kind == DENSE and geo[_HAS_BIAS] != 0:
        return j
    return -1


@specialise
def _kernel(kind, dtype_name, tile, a_along_k, b_along_k):
    """The product kernel of ``kind`` for one dtype, tile and load order (all compile-time constants), launched
    with ``(rows / TM, cols / TN, groups * splits)`` blocks of ``(TM / RM) * (TN / RN)`` threads."""
    rows_tile, cols_tile, depth_tile, per_row, per_col = tile
    threads_m = rows_tile // per_row
    threads_n = cols_tile // per_col
    threads = threads_m * threads_n
    a_elements = rows_tile * depth_tile
    b_elements = cols_tile * depth_tile
    a_loads = -(-a_elements // threads)
    b_loads = -(-b_elements // threads)
    a_shared = rows_tile * (depth_tile + 1)
    b_shared = cols_tile * (depth_tile + 1)
    a_buffers = 2 * a_shared
    b_buffers = 2 * b_shared
    a_info_size = 4 * a_loads
    b_info_size = 4 * b_loads
    acc_size = per_row * per_col
    padded = depth_tile + 1
    value = numba_type(dtype_name)
    index = cuda.int64

    @cuda.jit(cache=True)
    def gemm(a, b, c, bias, table, geo, rows, cols, depth, chunk, floor):
        a_tile = cuda.shared.array(a_buffers, value)
        b_tile = cuda.shared.array(b_buffers, value)
        acc = cuda.local.array(acc_size, value)
        a_frag = cuda.local.array(per_row, value)
        b_frag = cuda.local.array(per_col, value)
        a_info = cuda.local.array(a_info_size, index)
        b_info = cuda.local.array(b_info_size, index)
        # GRAD_WEIGHT's reduction index as (image, output position) per load, advanced without dividing
        a_image = cuda.local.array(a_loads, index)
        a_position = cuda.local.array(a_loads, index)
        b_image = cuda.local.array(b_loads, index)
        b_position = cuda.local.array(b_loads, index)
        tid = cuda.threadIdx.x
        tx = tid % threads_m
        ty = tid // threads_m
        row0 = cuda.blockIdx.x * rows_tile
        col0 = cuda.blockIdx.y * cols_tile
        splits = (depth + chunk - 1) // chunk
        group = cuda.blockIdx.z // splits
        split = cuda.blockIdx.z - group * splits
        k_begin = split * chunk
        k_end = min(depth, k_begin + chunk)

        # decode, once, the rows and columns this thread loads
        for r in range(a_loads):
            e = tid + r * threads
            m = row0 + (e // depth_tile if a_along_k else e % rows_tile)
            if e < a_elements and m < rows:
                info = _row_info(kind, geo, group, m)
                for q in range(4):
                    a_info[4 * r + q] = info[q]
        for r in range(b_loads):
            e = tid + r * threads
            j = col0 + (e // depth_tile if b_along_k else e % cols_tile)
            if e < b_elements and j < cols:
                info = _col_info(kind, geo, group, j)
                for q in range(4):
                    b_info[4 * r + q] = info[q]
        for q in range(acc_size):
            acc[q] = 0
        positions = geo[_OD] * geo[_OH] * geo[_OW]
        if kind == GRAD_WEIGHT:
            for r in range(a_loads):
                e = tid + r * threads
                k = k_begin + (e % depth_tile if a_along_k else e // rows_tile)
                a_image[r] = k // positions
                a_position[r] = k - a_image[r] * positions
            for r in range(b_loads):
                e = tid + r * threads
                k = k_begin + (e % depth_tile if b_along_k else e // cols_tile)
                b_image[r] = k // positions
                b_position[r] = k - b_image[r] * positions

        # two buffers: while the block multiplies one slice, it loads the next into the other, so that one barrier
        # per step suffices (the first pass of the loop only loads)
        k0 = k_begin - depth_tile
        current = 1
        while k0 < k_end:
            k_next = k0 + depth_tile
            if k_next < k_end:
                a_base = (1 - current) * a_shared
                b_base = (1 - current) * b_shared
                for r in range(a_loads):
                    e = tid + r * threads
                    if e < a_elements:
                        if a_along_k:
                            m_l = e // depth_tile
                            k_l = e - m_l * depth_tile
                            slot = a_base + m_l * padded + k_l
                        else:
                            k_l = e // rows_tile
                            m_l = e - k_l * rows_tile
                            slot = a_base + k_l * rows_tile + m_l
                        at = -1
                        if k_next + k_l < k_end and row0 + m_l < rows:
                            at = _a_index(kind, geo, table, group, a_info[4 * r], a_info[4 * r + 1],
                                          a_info[4 * r + 2], a_info[4 * r + 3], k_next + k_l, a_image[r],
                                          a_position[r])
                        if at >= 0:
                            a_tile[slot] = a[at]
                        else:
                            a_tile[slot] = 0
                for r in range(b_loads):
                    e = tid + r * threads
                    if e < b_elements:
                        if b_along_k:
                            j_l = e // depth_tile
                            k_l = e - j_l * depth_tile
                            slot = b_base + j_l * padded + k_l
                        else:
                            k_l = e // cols_tile
                            j_l = e - k_l * cols_tile
                            slot = b_base + k_l * cols_tile + j_l
                        at = -1
                        if k_next + k_l < k_end and col0 + j_l < cols:
                            at = _b_index(kind, geo, table, group, b_info[4 * r], b_info[4 * r + 1],
                                          b_info[4 * r + 2], b_info[4 * r + 3], k_next + k_l, b_image[r],
                                          b_position[r], depth)
                        if at >= 0:
                            b_tile[slot] = b[at]
                        else:
                            b_tile[slot] = 0
                if kind == GRAD_WEIGHT:
                    for r in range(a_loads):
                        a_position[r] += depth_tile
                        while a_position[r] >= positions:
                            a_position[r] -= positions
                            a_image[r] += 1
                    for r in range(b_loads):
                        b_position[r] += depth_tile
                        while b_position[r] >= positions:
                            b_position[r] -= positions
                            b_image[r] += 1
            if k0 >= k_begin:
                a_base = current * a_shared
                b_base = current * b_shared
                for kk in range(depth_tile):
                    for i in range(per_row):
                        m_l = tx + i * threads_m
                        if a_along_k:
                            a_frag[i] = a_tile[a_base + m_l * padded + kk]
                        else:
                            a_frag[i] = a_tile[a_base + kk * rows_tile + m_l]
                    for jj in range(per_col):
                        j_l = ty + jj * threads_n
                        if b_along_k:
                            b_frag[jj] = b_tile[b_base + j_l * padded + kk]
                        else:
                            b_frag[jj] = b_tile[b_base + kk * cols_tile + j_l]
                    for i in range(per_row):
                        for jj in range(per_col):
                            acc[i * per_col + jj] += a_frag[i] * b_frag[jj]
            cuda.syncthreads()
            current = 1 - current
            k0 = k_next

        for i in range(per_row):
            m = row0 + tx + i * threads_m
            if m < rows:
                for jj in range(per_col):
                    j = col0 + ty + jj * threads_n
                    if j < cols:
                        at = _c_index(kind, geo, group, split, m, j)
                        bias_at = _bias_index(kind, geo, group, j)
                        if at < 0:
                            continue
                        total = acc[i * per_col + jj]
                        if bias_at >= 0:
                            total += bias[bias_at]
                        # a fused ReLU's floor (-inf for none): a NaN is not below it and stays NaN
                        if total < floor:
                            total = floor
                        c[at] = total

    return gemm


@cuda.jit(cache=True)
def _add_splits(workspace, out):
    i = cuda.grid(1)
    if i < out.shape[0]:
        total = 0.0
        for s in range(workspace.shape[0]):
            total += workspace[s, i]
        out[i] = total


def tile_for(cols: int) -> tuple:
    """The configured tile for a product with ``cols`` columns (the narrow tile when they fit in it)."""
    narrow = tuple(config.GEMM_TILE_NARROW)
    tile = narrow if cols <= narrow[1] else tuple(config.GEMM_TILE)
    rows_tile, cols_tile, depth_tile, per_row, per_col = tile
    if min(tile) < 1 or rows_tile % per_row or cols_tile % per_col:
        raise ValueError(f"a GEMM tile (rows, columns, depth, rows per thread, columns per thread) needs positive "
                         f"sizes with rows and columns divisible by their per-thread counts, got {tile}")
    return tile


def split_count(blocks: int, depth: int) -> int:
    """How many splits of the reduction a product of ``blocks`` blocks gets (see numconv.config)."""
    most = depth // max(1, config.SPLIT_MIN_DEPTH)
    wanted = -(-config.SPLIT_TARGET_BLOCKS // blocks)
    return max(1, min(most, wanted))


def product(kind, a, b, c, bias, geo, rows, cols, depth, groups, a_along_k, b_along_k, split=False, relu=False):
    """Launch ``C = A B`` of ``kind`` on flat device arrays (C overwritten, ``bias`` read only where the kind adds
    one; with ``relu``, 0 where C is negative). With ``split`` (GRAD_WEIGHT), the reduction may be split over a
    workspace and summed afterwards (never with ``relu``: the floor applies to each split's part)."""
    tile = tile_for(cols)
    rows_tile, cols_tile, depth_tile, per_row, per_col = tile
    grid_m, grid_n = blocks_for(rows, rows_tile), blocks_for(cols, cols_tile)
    splits = split_count(grid_m * grid_n * groups, depth) if split else 1
    chunk = -(-(-(-depth // splits)) // depth_tile) * depth_tile
    splits = -(-depth // chunk)
    if grid_n > _GRID_LIMIT or groups * splits > _GRID_LIMIT:
        raise ValueError(f"a product with {cols} columns, {groups} groups and {splits} splits needs more than "
                         f"{_GRID_LIMIT} blocks along a grid axis; use a wider tile (numconv.config.GEMM_TILE)")
    kernel = _kernel(kind, np.dtype(c.dtype).name, tile, bool(a_along_k), bool(b_along_k))
    threads = (rows_tile // per_row) * (cols_tile // per_col)
    target = c if splits == 1 else cuda.device_array(splits * c.shape[0], dtype=c.dtype)
    launch(kernel, (grid_m, grid_n, groups * splits), threads, a, b, target, bias, device_table(kind, geo),
           tuple(geo), int(rows), int(cols), int(depth), int(chunk), relu_floor(c.dtype, relu))
    if splits > 1:
        size = c.shape[0]
        block = config.THREADS_PER_BLOCK
        launch(_add_splits, blocks_for(size, block), block, target.reshape(splits, size), c)


__all__ = ["FORWARD", "GRAD_INPUT", "GRAD_WEIGHT", "DENSE", "TABLE_WIDTH", "conv_geometry", "dense_geometry",
           "grad_input_offsets", "grad_input_extent", "grad_input_complete", "build_table", "device_table", "product",
           "tile_for", "split_count"]
