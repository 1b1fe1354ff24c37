"""Device functions shared by the Triton kernels: activations, the recurrent product's
operands, and stores in the output's dtype.

Precision.  Every value a kernel computes with is float32: states, gates, accumulators.  Only
the two operands of a ``tl.dot`` are in the weight dtype (bfloat16 operands run on the tensor
cores and accumulate in float32; float32 operands use ``input_precision="ieee"``, so no TF32
rounding, which would miss the float32 tolerance of the tests by three orders of magnitude).

Triton's interpreter (``TRITON_INTERPRET=1``) does not compute on bfloat16: it keeps bfloat16
values as their 16-bit patterns in numpy ``uint16`` arrays, so a ``tl.dot`` of two bfloat16
tiles multiplies the bit patterns (triton-lang/triton#11584), and its float32 -> bfloat16
conversion truncates.  The kernels therefore take an ``EMULATE`` flag, set when they run
interpreted: a bfloat16 operand is then rounded to the nearest bfloat16 by integer arithmetic
on its float32 bits (:func:`round_bf16`, ties to even, as the GPU's conversion does) and kept
in float32, and the product runs in float32.  The products of two bfloat16 values are exact in
float32, so this is the GPU's bfloat16 ``tl.dot`` up to the order of the float32 sums.
"""

import triton
import triton.language as tl


@triton.jit
def sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def tanh(x):
    """tanh from one exponential of a non-positive argument (no overflow for any x)."""
    e = tl.exp(-2.0 * tl.abs(x))  # in (0, 1]
    y = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0.0, -y, y)


@triton.jit
def round_bf16(x):
    """float32 ``x`` rounded to the nearest bfloat16 (ties to even), returned as float32:
    add half a bfloat16 unit (less one, plus the kept part's lowest bit) to the 32-bit
    pattern and clear the 16 bits bfloat16 drops."""
    u = x.to(tl.int32, bitcast=True)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & -65536
    return u.to(tl.float32, bitcast=True)


@triton.jit
def operand(x, DTYPE: tl.constexpr, EMULATE: tl.constexpr):
    """A float32 value ``x`` as a ``tl.dot`` operand in the weight dtype ``DTYPE``."""
    if DTYPE == tl.bfloat16:
        if EMULATE:
            y = round_bf16(x)
        else:
            y = x.to(tl.bfloat16)
    else:
        y = x
    return y


@triton.jit
def load_operand(ptrs, mask, EMULATE: tl.constexpr):
    """Load a weight tile as a ``tl.dot`` operand (zeros outside ``mask``)."""
    w = tl.load(ptrs, mask=mask, other=0.0)
    if EMULATE:
        w = w.to(tl.float32)
    return w


@triton.jit
def dot(a, b):
    """``a @ b`` accumulated in float32; float32 operands without TF32 rounding."""
    if a.dtype == tl.float32:
        c = tl.dot(a, b, input_precision="ieee")
    else:
        c = tl.dot(a, b)
    return c


@triton.jit
def load_f32(ptrs, mask):
    """Load in any float dtype, as float32 (zeros outside ``mask``)."""
    return tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def store(ptrs, value, mask, EMULATE: tl.constexpr):
    """Store float32 ``value`` in the dtype of ``ptrs``, rounded to nearest."""
    if EMULATE:
        if ptrs.dtype.element_ty == tl.bfloat16:
            value = round_bf16(value)  # then the interpreter's truncating conversion is exact
    tl.store(ptrs, value.to(ptrs.dtype.element_ty), mask=mask)
