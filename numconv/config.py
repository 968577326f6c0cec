"""Tuning knobs of the CUDA kernels.

The launchers in ``numconv.kernels.cuda`` read these at every launch, so changing a value (tests lower them so that
tiny inputs span several blocks) takes effect on the next call; a tile shape that was not used before compiles a new
specialisation of the kernel, once per process (and once per machine with numba's on-disk cache).

Under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) every CUDA thread is a Python thread and every
``syncthreads`` a round of thread switches, so the defaults there are small: a handful of threads per block and tiles
of a few elements, which still exercise the block and tile boundaries.
"""
from __future__ import annotations

import os

#: whether Numba's CUDA simulator is selected (numba reads the same variable when it is first imported)
SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")

#: threads per block of the one-thread-per-element kernels (pooling, element-wise, LRN, casts and fills)
THREADS_PER_BLOCK = 8 if SIMULATOR else 256

#: threads per block of the row reductions (bias gradient, global average pooling, cross-entropy, sums);
#: a power of two
REDUCE_THREADS = 4 if SIMULATOR else 256

#: the tiled matrix products behind convolution and the dense layer: (rows, columns, depth, rows per thread,
#: columns per thread). A block computes a rows x columns tile of the result, stepping through the reduction
#: ``depth`` elements at a time through shared memory; each of its (rows / rows per thread) x (columns / columns
#: per thread) threads keeps a rows-per-thread x columns-per-thread tile of sums in registers.
GEMM_TILE = (2, 4, 2, 1, 1) if SIMULATOR else (64, 64, 8, 4, 4)

#: the tile used instead when the result has at most this tile's columns (few output channels): tall and narrow.
#: (The simulator's two tiles have fewer elements of A, and of B, than threads, so that the tile loads' bounds are
#: taken, as the GPU's narrow tile takes B's.)
GEMM_TILE_NARROW = (8, 2, 2, 2, 1) if SIMULATOR else (128, 16, 8, 4, 2)

#: weight gradients reduce over the batch and every output position; the reduction is split into chunks of at
#: least this many terms, each summed by its own blocks into a workspace, until there are about
#: ``SPLIT_TARGET_BLOCKS`` blocks (then one more pass adds the chunks, in order, so results are deterministic)
SPLIT_MIN_DEPTH = 16 if SIMULATOR else 512
SPLIT_TARGET_BLOCKS = 4 if SIMULATOR else 264

#: under the simulator, the interpreter's thread switch interval during a launch (seconds): a block's threads then
#: interleave finely, as a GPU's do, so that a race between them shows (the shared-array lookup's did)
SIMULATOR_SWITCH_INTERVAL = 1e-4
