"""Software prefetch for numba kernels.

Propagation and STDP read the synapse rows of the neurons that spiked: rows at scattered places
in arrays of 10^7 entries, so each row start is a cache miss that the hardware prefetcher cannot
foresee. ``prefetch(a, i)`` asks for ``a[i]``'s cache line a few rows ahead (LLVM's
``llvm.prefetch``: read, high locality); it never faults and changes no result.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

from llvmlite import ir
from numba.core import cgutils, types
from numba.core.typing.templates import Signature
from numba.extending import intrinsic

AHEAD = 4  # rows prefetched ahead (measured at 100 k neurons: 4-8 equally good, 0 slowest)

Codegen = Callable[[Any, ir.IRBuilder, Signature, Sequence[ir.Value]], ir.Value]  # an intrinsic's LLVM emitter
# An intrinsic is defined with its typing-time signature (``typingctx`` first, numba types after) and
# called from njit code without ``typingctx``; numba's stub types ``_Intrinsic.__call__`` with the
# first, so each is exported through ``cast`` with the call-site signature.


@intrinsic
def _prefetch(  # pragma: no cover - compiled
    typingctx: Any, array: Any, index: Any,
) -> tuple[Signature, Codegen] | None:
    """Hint the cache line holding ``array[index]`` (1-D array, integer index)."""
    if not isinstance(array, types.Array) or array.ndim != 1 or not isinstance(index, types.Integer):
        return None

    def codegen(context: Any, builder: ir.IRBuilder, signature: Signature, args: Sequence[ir.Value]) -> ir.Value:
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False, boundscheck=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            "llvm.prefetch.p0i8")
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.none(array, index), codegen


prefetch = cast(Callable[..., Any], _prefetch)
