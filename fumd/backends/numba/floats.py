"""Float arithmetic that numba kernels need to match PyTorch's CPU kernels bit for bit.

``fma``: PyTorch computes ``a.add_(b, alpha=c)`` as one fused multiply-add (``a + c * b`` rounded
once; measured, tests/test_backends.py), which LLVM does not form from ``a + c * b`` without
fast-math; this intrinsic emits ``llvm.fma.f32``.

IEEE half precision, which numba does not have on the CPU. With the x86 F16C extension (every
x86 CPU since 2012) ``half_bits``/``half_value`` are LLVM's ``fptrunc``/``fpext`` (one
``vcvtps2ph``/``vcvtph2ps`` each); elsewhere they fall back to the integer code below. Both round
to nearest even and agree bit for bit with ``torch.Tensor.half`` (tests/test_backends.py):

The eligibility trace is stored as float16 (2 bytes per synapse); the kernels see it through a
uint16 view. The fallback widens with a 65,536-entry table (``HALF_TO_FLOAT``, 256 KiB) and
narrows with ``float_to_half_bits``, a port of NumPy's ``npy_floatbits_to_halfbits``
(round-to-nearest-even, subnormals, overflow to inf, NaN kept NaN).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import llvmlite.binding
import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.core.typing.templates import Signature
from numba.extending import intrinsic

HALF_TO_FLOAT = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)


@numba.njit(cache=True, inline="always")
def float_to_half_bits(f: np.uint32) -> np.uint16:  # pragma: no cover - compiled
    """float32 bit pattern -> float16 bit pattern, round to nearest even."""
    h_sgn = (f & np.uint32(0x80000000)) >> np.uint32(16)
    f_exp = f & np.uint32(0x7F800000)
    if f_exp >= np.uint32(0x47800000):  # overflow, inf or NaN
        f_sig = f & np.uint32(0x007FFFFF)
        if f_exp == np.uint32(0x7F800000) and f_sig != 0:
            ret = np.uint32(0x7C00) + (f_sig >> np.uint32(13))
            if ret == np.uint32(0x7C00):
                ret += np.uint32(1)  # keep it a NaN
            return np.uint16(h_sgn + ret)
        return np.uint16(h_sgn + np.uint32(0x7C00))
    if f_exp <= np.uint32(0x38000000):  # subnormal half or signed zero
        if f_exp < np.uint32(0x33000000):
            return np.uint16(h_sgn)
        e = f_exp >> np.uint32(23)
        f_sig = np.uint32(0x00800000) + (f & np.uint32(0x007FFFFF))
        f_sig = f_sig >> (np.uint32(113) - e)
        # ties to even; the shift may have dropped up to 11 bits, checked in the original
        if (f_sig & np.uint32(0x3FFF)) != np.uint32(0x1000) or (f & np.uint32(0x7FF)) != 0:
            f_sig += np.uint32(0x1000)
        return np.uint16(h_sgn + (f_sig >> np.uint32(13)))
    h_exp = (f_exp - np.uint32(0x38000000)) >> np.uint32(13)
    f_sig = f & np.uint32(0x007FFFFF)
    if (f_sig & np.uint32(0x3FFF)) != np.uint32(0x1000):
        f_sig += np.uint32(0x1000)
    # a carry out of the significand bumps the exponent (up to inf): the correct result
    return np.uint16(h_sgn + h_exp + (f_sig >> np.uint32(13)))

Codegen = Callable[[Any, ir.IRBuilder, Signature, Sequence[ir.Value]], ir.Value]  # an intrinsic's LLVM emitter
# An intrinsic is defined with its typing-time signature (``typingctx`` first, numba types after) and
# called from njit code without ``typingctx``; numba's stub types ``_Intrinsic.__call__`` with the
# first, so each is exported through ``cast`` with the call-site signature.


@intrinsic
def _float_bits(  # pragma: no cover - compiled
    typingctx: Any, x: Any,
) -> tuple[Signature, Codegen] | None:
    """Reinterpret a float32 as its uint32 bit pattern (a register bitcast)."""
    if x != types.float32:
        return None

    def codegen(context: Any, builder: ir.IRBuilder, signature: Signature, args: Sequence[ir.Value]) -> ir.Value:
        return builder.bitcast(args[0], context.get_value_type(types.uint32))

    return types.uint32(types.float32), codegen


float_bits = cast(Callable[..., Any], _float_bits)


@intrinsic
def _fma(  # pragma: no cover - compiled
    typingctx: Any, a: Any, b: Any, c: Any,
) -> tuple[Signature, Codegen] | None:
    """``a * b + c`` for float32, rounded once."""
    if not (a == b == c == types.float32):
        return None

    def codegen(context: Any, builder: ir.IRBuilder, signature: Signature, args: Sequence[ir.Value]) -> ir.Value:
        return builder.fma(*args)

    return types.float32(types.float32, types.float32, types.float32), codegen


fma = cast(Callable[..., Any], _fma)


@intrinsic
def _hardware_half_bits(  # pragma: no cover - compiled
    typingctx: Any, x: Any,
) -> tuple[Signature, Codegen] | None:
    """float32 -> float16 bit pattern through LLVM's ``fptrunc`` (F16C: one instruction)."""
    if x != types.float32:
        return None

    def codegen(context: Any, builder: ir.IRBuilder, signature: Signature, args: Sequence[ir.Value]) -> ir.Value:
        return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))

    return types.uint16(types.float32), codegen


hardware_half_bits = cast(Callable[..., Any], _hardware_half_bits)


@intrinsic
def _hardware_half_value(  # pragma: no cover - compiled
    typingctx: Any, bits: Any,
) -> tuple[Signature, Codegen] | None:
    """float16 bit pattern -> float32 through LLVM's ``fpext`` (exact)."""
    if bits != types.uint16:
        return None

    def codegen(context: Any, builder: ir.IRBuilder, signature: Signature, args: Sequence[ir.Value]) -> ir.Value:
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return types.float32(types.uint16), codegen


hardware_half_value = cast(Callable[..., Any], _hardware_half_value)


@numba.njit(cache=True, inline="always")
def software_half_bits(x: np.float32) -> np.uint16:  # pragma: no cover - compiled
    return float_to_half_bits(float_bits(x))


@numba.njit(cache=True, inline="always")
def software_half_value(bits: np.uint16) -> np.float32:  # pragma: no cover - compiled
    return HALF_TO_FLOAT[bits]


HAS_F16C = bool(llvmlite.binding.get_host_cpu_features().get("f16c", False))
half_bits = hardware_half_bits if HAS_F16C else software_half_bits  # float32 -> float16 bits
half_value = hardware_half_value if HAS_F16C else software_half_value  # float16 bits -> float32


@numba.njit(cache=True)
def narrow(values: np.ndarray, out_bits: np.ndarray) -> None:  # pragma: no cover - compiled
    """``out_bits[i] = half_bits(values[i])`` (float32 -> float16 bits), for tests."""
    for i in range(values.shape[0]):
        out_bits[i] = half_bits(values[i])


@numba.njit(cache=True)
def narrow_software(values: np.ndarray, out_bits: np.ndarray) -> None:  # pragma: no cover - compiled
    """``narrow`` through the integer code, for tests."""
    for i in range(values.shape[0]):
        out_bits[i] = software_half_bits(values[i])


@numba.njit(cache=True)
def widen(bits: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """``out[i] = half_value(bits[i])`` (float16 bits -> float32), for tests."""
    for i in range(bits.shape[0]):
        out[i] = half_value(bits[i])
