"""Element-wise maps, and the same maps writing their output past the caches.

A store to memory that is not in the caches first reads the line it lands in (the core must own the line before it
writes part of it), so an element-wise pass over arrays larger than the last-level cache moves each output byte
twice: add's three arrays take four passes over memory, a ReLU's two take three. A non-temporal (streaming) store
writes a whole line without reading it. It pays only where the output would not stay in the cache for its next
reader anyway: an output of at least ``STREAM_MIN_BYTES`` (:func:`stream_min_bytes`: the last-level cache's size, or
on Intel's CPUs the second-level caches' of the threads). Measured on a 2-core Zen 4 (32 MiB of L3) over AlexNet's
first activation, (32, 96, 55, 55) float32, the functions before and after in one process, medians of 25 calls
alternating: add 2.84 -> 2.20 ms, ReLU 1.83 -> 1.63 ms, its gradient 2.91 -> 2.18 ms.

An element-wise kernel loops over ``element_parts(size)`` and writes each part through :func:`map_part`
(``out[i] = function(operands at i)``): in its one-thread and parallel versions a part is one element, so the loop
is the plain loop over elements that LLVM vectorises. :class:`~numconv.kernels.cpu.parallel.ParallelKernel` compiles
a third version of a kernel declared with ``streams=True`` in which those two names are :func:`stream_parts` and
:func:`stream_part` (``STREAMED``): a part is a block of ``BLOCK`` elements, whose 64-byte vectors of outputs are
computed into registers (a loop of one vector's lanes that LLVM vectorises: Numba leaves LLVM's straight-line
vectoriser off) and each written with a non-temporal store; the elements before the block's first 64-byte boundary
and after its last whole vector are stored as usual, and the block ends with a store fence.
"""
from __future__ import annotations

import os
import platform

import numba
import numpy as np
from llvmlite import ir
from numba import njit
from numba import types as numba_types
from numba.core import cgutils, errors
from numba.extending import intrinsic, overload

__all__ = ["BLOCK", "STREAMED", "STREAM_MIN_BYTES", "cache_sizes", "cpu_vendor", "element_parts", "map_part",
           "stream_min_bytes", "stream_part", "stream_parts"]

#: the elements of one block: a parallel loop's unit of work, 64 KiB of float32 (a block's fence is then negligible)
BLOCK = 1 << 14
#: the bytes of one streamed store: a cache line, and AVX-512's vector
LINE = 64
#: the size a last-level cache is taken to have where the system does not say (Linux's sysfs does)
DEFAULT_LAST_LEVEL_CACHE = 32 << 20
#: the suffixes of sysfs's cache sizes
_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
#: the vendor of the CPUs whose stores stay in the second-level caches only (``stream_min_bytes``)
INTEL = "GenuineIntel"


def cache_sizes(cpu_caches: str = "/sys/devices/system/cpu/cpu0/cache") -> dict:
    """{level: bytes} of the first CPU's data and unified caches (one instance of each: a Zen 4 CCD's 32 MiB of L3),
    from Linux's sysfs; empty where it cannot be read."""
    sizes = {}
    try:
        for entry in os.listdir(cpu_caches):
            if entry.startswith("index"):
                with open(os.path.join(cpu_caches, entry, "type")) as kind:
                    if kind.read().strip() == "Instruction":
                        continue
                with open(os.path.join(cpu_caches, entry, "level")) as level, \
                        open(os.path.join(cpu_caches, entry, "size")) as size:
                    text = size.read().strip().upper()
                    sizes[int(level.read())] = int(text.rstrip("KMG")) * _UNITS.get(text[-1:], 1)
    except (OSError, ValueError):
        return {}
    return sizes


def cpu_vendor(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's vendor as Linux names it ("GenuineIntel", "AuthenticAMD"); empty where it cannot be read."""
    try:
        with open(cpuinfo) as lines:
            for line in lines:
                if line.startswith("vendor_id"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return ""


def stream_min_bytes(sizes: dict, vendor: str, threads: int) -> int:
    """The output size from which element-wise kernels stream, for caches of ``sizes`` ({level: bytes}, one
    instance of each), a CPU of ``vendor`` and ``threads`` threads: the last level's size; on Intel's CPUs the
    second-level caches of the threads together. Their third level is shared across the socket, with cores this
    process does not see (a virtual machine's 2 cores were told of 480 MiB): on such a 2-core Xeon a ReLU's output
    of 8 MB already went to memory and back, and streaming ran faster from the two second-level caches' 4 MiB (one
    process, alternating, medians of 21, streamed over cached: ReLU 2.4 at 2 MB, 1.5 at 3, 0.99 at 4, 0.61-0.88
    from 6 to 256 MB; its gradient and add 0.86-1.05 at 2 MB, 0.57-0.78 from 4 to 256). Measured on Zen 4 only at
    37 MB, over its 32 MiB of L3: the last level there. ``DEFAULT_LAST_LEVEL_CACHE`` where no size is known."""
    if vendor == INTEL and 2 in sizes:
        return sizes[2] * threads
    return sizes[max(sizes)] if sizes else DEFAULT_LAST_LEVEL_CACHE


#: a kernel declared with ``streams=True`` streams its output (its last argument) from this many bytes
STREAM_MIN_BYTES = stream_min_bytes(cache_sizes(), cpu_vendor(), numba.config.NUMBA_NUM_THREADS)
#: whether stores must be fenced after streaming (x86: non-temporal stores are not ordered with the stores that a
#: thread pool's join makes; ARM's ordering covers them)
FENCED = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


@njit(cache=True, inline="always")
def element_parts(size):
    """The parts of a kernel's loop over ``size`` elements: each element, in the versions that do not stream."""
    return size


@njit(cache=True, inline="always")
def stream_parts(size):
    """The parts of a streamed loop over ``size`` elements: blocks of ``BLOCK`` elements."""
    return (size + BLOCK - 1) // BLOCK


def _element_of(argument, index):
    """``argument[index]`` for an array, ``argument`` itself for a scalar."""
    return argument[index] if isinstance(argument, np.ndarray) else argument


@overload(_element_of, inline="always")
def _element_of_compiled(argument, index):
    if isinstance(argument, numba_types.Array):
        return lambda argument, index: argument[index]
    return lambda argument, index: argument


def map_part(function, out, part, first, second=None, third=None):
    """out[part] = function(first, second, third at part): one element of an element-wise kernel, in the versions
    that do not stream. The operands: one to three (size,) arrays, taken at the element, and scalars, passed as they
    are (``second`` and ``third`` only where given); ``function`` a scalar ``@njit`` function."""
    out[part] = function(*(_element_of(operand, part) for operand in _given_operands(first, second, third)))


def _given(operand) -> bool:
    return not (operand is None or isinstance(operand, (numba_types.NoneType, numba_types.Omitted)))


def _given_operands(first, second, third) -> tuple:
    """The operands given (``second`` and ``third`` may be left out), as a tuple."""
    return tuple(operand for operand in (first, second, third) if operand is not None)


@overload(_given_operands, inline="always")
def _given_operands_compiled(first, second, third):
    if _given(third):
        return lambda first, second, third: (first, second, third)
    if _given(second):
        return lambda first, second, third: (first, second)
    return lambda first, second, third: (first,)


# Compiled, inlined into the kernel with the function as a global of its own (a call that took the function as an
# argument would make Numba refuse to cache the kernel); the kernel's loop over elements is then the loop it was
# before, which LLVM vectorises. The operands come one by one: a tuple of arrays built in the loop's body took and
# dropped a reference to each array at every element (6x slower in the one-thread version)
@overload(map_part, inline="always")
def _map_part_compiled(function, out, part, first, second=None, third=None):
    scalar = function.dispatcher
    if _given(third):
        def ternary(function, out, part, first, second=None, third=None):
            out[part] = scalar(_element_of(first, part), _element_of(second, part), _element_of(third, part))
        return ternary
    if _given(second):
        def binary(function, out, part, first, second=None, third=None):
            out[part] = scalar(_element_of(first, part), _element_of(second, part))
        return binary

    def unary(function, out, part, first, second=None, third=None):
        out[part] = scalar(_element_of(first, part))
    return unary


def stream_part(function, out, part, first, second=None, third=None):
    """:func:`map_part` over block ``part`` (``BLOCK`` elements from ``part * BLOCK``, fewer in the last), each whole
    64-byte vector of ``out`` written with a non-temporal store. As Python (Numba's JIT disabled), element by
    element."""
    start = part * BLOCK
    for i in range(start, min(start + BLOCK, out.shape[0])):
        map_part(function, out, i, first, second, third)


@overload(stream_part, inline="always")
def _stream_part_compiled(function, out, part, first, second=None, third=None):
    def streamed(function, out, part, first, second=None, third=None):
        start = part * BLOCK
        _streamed_map(function, out, start, min(start + BLOCK, out.shape[0]), _given_operands(first, second, third))
    return streamed


#: the names a kernel's streamed version reads in place of its own (``ParallelKernel.streamed``)
STREAMED = {"element_parts": stream_parts, "map_part": stream_part}


def _loop(builder, start, stop, body, unrolled=True):
    """``for index in range(start, stop): body(index)`` as LLVM IR; with ``unrolled`` False, the loop is marked for
    LLVM's unroller to leave whole (so that its vectoriser takes it instead)."""
    before = builder.block
    header = builder.append_basic_block("loop.header")
    inside = builder.append_basic_block("loop.body")
    after = builder.append_basic_block("loop.end")
    builder.branch(header)
    builder.position_at_end(header)
    index = builder.phi(start.type)
    index.add_incoming(start, before)
    builder.cbranch(builder.icmp_signed("<", index, stop), inside, after)
    builder.position_at_end(inside)
    body(index)
    following = builder.add(index, ir.Constant(index.type, 1))
    index.add_incoming(following, builder.block)
    latch = builder.branch(header)
    if not unrolled:
        module = builder.module
        disable = module.add_metadata([ir.MetaDataString(module, "llvm.loop.unroll.disable")])
        loop_id = module.add_metadata([ir.MetaDataString(module, "numconv.streaming.lanes"), disable])
        loop_id.operands = (loop_id, disable)  # a loop's identifier refers to itself
        latch.set_metadata("llvm.loop", loop_id)
    builder.position_at_end(after)


@intrinsic
def _streamed_map(typingctx, function, out, first, end, arguments):
    """out[i] = function(*arguments at i) for i in [first, end), whole 64-byte vectors by non-temporal stores. The
    arrays must be C-contiguous (their elements are addressed from their data pointers)."""
    strided = [kind for kind in (out, *arguments.types) if isinstance(kind, numba_types.Array) and kind.layout != "C"]
    if strided:
        raise errors.TypingError(f"a streamed map takes C-contiguous arrays, got {strided[0]}")
    values = tuple(kind.dtype if isinstance(kind, numba_types.Array) else kind for kind in arguments.types)
    scalar = typingctx.resolve_function_type(function, values, {})
    lanes = LINE * 8 // out.dtype.bitwidth

    def codegen(context, builder, signature, args):
        function_type, out_type, _, _, arguments_type = signature.args
        call = context.get_function(function_type, scalar)
        target = context.make_array(out_type)(context, builder, args[1])
        unpacked = cgutils.unpack_tuple(builder, args[4], len(arguments_type))
        sources = [context.make_array(kind)(context, builder, value) if isinstance(kind, numba_types.Array) else value
                   for kind, value in zip(arguments_type.types, unpacked)]
        element = context.get_data_type(out_type.dtype)
        vector = ir.VectorType(element, lanes)
        first, end = args[2], args[3]
        integer = first.type

        def constant(value):
            return ir.Constant(integer, value)

        def result(index):
            # each element as Numba holds a value (a boolean mask's byte as a bit)
            operands = [context.unpack_value(builder, kind.dtype, builder.gep(source.data, [index]))
                        if isinstance(kind, numba_types.Array) else source
                        for kind, source in zip(arguments_type.types, sources)]
            return context.cast(builder, call(builder, operands), scalar.return_type, out_type.dtype)

        def store(index):
            context.pack_value(builder, out_type.dtype, result(index), builder.gep(target.data, [index]))

        # the elements before the first 64-byte boundary (all of them where out is not aligned to its elements)
        count = builder.sub(end, first)
        address = builder.ptrtoint(builder.gep(target.data, [first]), integer)
        itemsize = out_type.dtype.bitwidth // 8
        to_boundary = builder.urem(builder.sub(constant(LINE), builder.urem(address, constant(LINE))), constant(LINE))
        misaligned = builder.icmp_unsigned("!=", builder.urem(address, constant(itemsize)), constant(0))
        head = builder.select(misaligned, count, builder.udiv(to_boundary, constant(itemsize)))
        head = builder.select(builder.icmp_signed("<", count, head), count, head)
        vectors_first = builder.add(first, head)
        vectors_end = builder.sub(end, builder.srem(builder.sub(end, vectors_first), constant(lanes)))
        _loop(builder, first, vectors_first, store)

        staging = cgutils.alloca_once(builder, vector)
        staging_elements = builder.bitcast(staging, element.as_pointer())
        nontemporal = builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)])
        lanes_end = constant(lanes)

        def stream(vector_index):
            at = builder.add(vectors_first, builder.mul(vector_index, lanes_end))
            _loop(builder, constant(0), lanes_end,
                  lambda lane: builder.store(result(builder.add(at, lane)), builder.gep(staging_elements, [lane])),
                  unrolled=False)
            written = builder.store(builder.load(staging),
                                    builder.bitcast(builder.gep(target.data, [at]), vector.as_pointer()), align=LINE)
            written.set_metadata("nontemporal", nontemporal)

        _loop(builder, constant(0), builder.sdiv(builder.sub(vectors_end, vectors_first), lanes_end), stream)
        _loop(builder, vectors_end, end, store)
        if FENCED:
            fence = builder.module.declare_intrinsic("llvm.x86.sse.sfence", fnty=ir.FunctionType(ir.VoidType(), []))
            builder.call(fence, [])
        return context.get_dummy_value()

    return numba_types.void(function, out, first, end, arguments), codegen
