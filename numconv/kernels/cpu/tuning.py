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

#: lanes of the vector operand and columns per task of the generated kernel
LANES = 16
COLUMNS = 14

#: ``rows`` is chosen when its estimated lane-and-column use beats ``lanes``' by this factor ...
ROWS_ADVANTAGE = 1.05
#: ... or when rows are at least this long and its use is at least ``ROWS_LONG_SHARE`` of ``lanes``'
ROWS_LONG = 64
ROWS_LONG_SHARE = 0.85

#: the weight gradient sums over batch x positions; each task sums at most this many terms in the input's dtype
#: (partial sums are then added in float64), and the sum is split further until there are enough tasks
REDUCTION_CHUNK = 16384
REDUCTION_MIN_CHUNK = 1024
MIN_TASKS = 8
