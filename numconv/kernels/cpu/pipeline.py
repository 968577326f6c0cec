"""The Numba compiler pipeline of the generated blocked kernels' task functions (``blocked.py``).

Their bodies are hundreds of lines of straight-line code whose accumulators are assigned again on every reduction
step. Numba's nopython pipeline first rebuilds a function in SSA form, in Python, and then strips the phi nodes it
made; for these functions that costs in proportion to the reassigned names times the statements (1-2.5 s of the
64 x 4 and 16 x 14 kernels' 5-8 s compiles). LLVM's mem2reg does the same work on the lowered code in
milliseconds, and the machine code comes out identical. :class:`StraightLineCompiler` is Numba's nopython pipeline
with that step off (the ``enable_ssa`` flag, which Numba itself turns off for the loops it lifts out of object-mode
functions).

Without SSA a name keeps one type through the whole function, so the generators never reuse a name for a value of
another type (an int64 and a uint64 unify to float64, which no longer indexes an array).
"""
from numba.core.compiler import CompilerBase, DefaultPassBuilder


class StraightLineCompiler(CompilerBase):
    """Numba's nopython pipeline without the SSA reconstruction (for ``njit(pipeline_class=...)``)."""

    def define_pipelines(self):
        self.state.flags.enable_ssa = False
        return [DefaultPassBuilder.define_nopython_pipeline(self.state)]
