"""Device functions shared by the Triton kernels: activations, the recurrent product's
operands, stores in the output's dtype, a program's tile of sequences x hidden units, and the
per-step kernels' recurrent products (forward over the gates, backward over delta a_{t+1}).

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


@triton.jit
def tile(B, H, col_block, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """A program's tile: ``rows``, BLOCK_B sequences (block ``program_id(0)``), x ``cols``,
    BLOCK_H hidden units (block ``col_block``: ``program_id(1)`` for the per-step kernels,
    0 for the persistent ones, whose tile spans all H), with the masks ``row_ok`` (< B),
    ``col_ok`` (< H) and ``tile_ok`` (BLOCK_B, BLOCK_H) of both."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = col_block * BLOCK_H + tl.arange(0, BLOCK_H)
    row_ok = rows < B
    col_ok = cols < H
    return rows, cols, row_ok, col_ok, row_ok[:, None] & col_ok[None, :]


@triton.jit
def gate_products(
    h_ptr, w_ptr, rows, row_ok, cols, col_ok, H,
    GATES: tl.constexpr, EMULATE: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """The forward's recurrent product ``h W_g^T`` of each of the GATES gates, for the tile
    ``rows`` x ``cols``, in float32: ``h_ptr`` a (B, H) float32 state, ``w_ptr`` W_hh
    (GATES * H, H) with gate g in rows g*H..(g+1)*H.  Each K block of h is loaded and rounded
    to the weight dtype once for all gates.  Returns GATES (BLOCK_B, BLOCK_H) accumulators."""
    acc0 = tl.zeros((rows.shape[0], cols.shape[0]), dtype=tl.float32)
    acc1 = tl.zeros((rows.shape[0], cols.shape[0]), dtype=tl.float32)
    acc2 = tl.zeros((rows.shape[0], cols.shape[0]), dtype=tl.float32)
    acc3 = tl.zeros((rows.shape[0], cols.shape[0]), dtype=tl.float32)
    for k0 in range(0, H, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)  # (BK,) inputs of the product
        k_ok = ks < H
        h = load_f32(h_ptr + rows[:, None] * H + ks[None, :], row_ok[:, None] & k_ok[None, :])  # (BB, BK)
        h = operand(h, w_ptr.dtype.element_ty, EMULATE)
        w_tile = w_ptr + cols[None, :] * H + ks[:, None]  # W_hh[j, k] at (k, j): (BK, BH)
        w_ok = k_ok[:, None] & col_ok[None, :]
        acc0 += dot(h, load_operand(w_tile, w_ok, EMULATE))
        if GATES > 1:
            acc1 += dot(h, load_operand(w_tile + H * H, w_ok, EMULATE))
        if GATES > 2:
            acc2 += dot(h, load_operand(w_tile + 2 * H * H, w_ok, EMULATE))
        if GATES > 3:
            acc3 += dot(h, load_operand(w_tile + 3 * H * H, w_ok, EMULATE))
    if GATES == 1:
        return acc0
    elif GATES == 3:
        return acc0, acc1, acc2
    else:
        tl.static_assert(GATES == 4, "GATES is 1 (RNN), 3 (GRU) or 4 (LSTM)")
        return acc0, acc1, acc2, acc3


@triton.jit
def backward_product(
    d_ptr, G, w_ptr, rows, row_ok, cols, col_ok, K, H,
    EMULATE: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """The backward's recurrent product ``delta W_hh`` for the tile ``rows`` x ``cols``, in
    float32: ``d_ptr`` a (B, G) pre-activation gradient in the weight dtype, ``w_ptr`` W_hh
    (G, H) read untransposed; the sum runs over its first K entries (G, or 0: a zero tile)."""
    acc = tl.zeros((rows.shape[0], cols.shape[0]), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_ok = ks < K
        d = load_operand(d_ptr + rows[:, None] * G + ks[None, :], row_ok[:, None] & k_ok[None, :], EMULATE)
        acc += dot(d, load_operand(w_ptr + ks[:, None] * H + cols[None, :], k_ok[:, None] & col_ok[None, :], EMULATE))
    return acc
