// rnnkit fused CPU step kernels.
//
// The explicit-BPTT Functions (rnnkit/engine/bptt) run one GEMM per step in PyTorch and hand
// the pointwise part of the step to these kernels: all gate nonlinearities, the cell update
// and, in backward, every gate gradient, in one pass over the (B, H) state instead of six to
// eight separate tensor operations.  The math is that of rnnkit/engine/bptt/lstm.py and
// gru.py (see their docstrings); the pure-PyTorch loops there are the readable twin of this
// file and the tests compare the two.
//
// exp, sigmoid and tanh are written out (Cody-Waite range reduction and Taylor polynomials)
// so that the compiler can vectorize the loops without -ffast-math: accurate to a few ulp in
// float and double.

#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

// The loops below sit inside AT_DISPATCH lambdas (macro arguments), where only _Pragma works.
#define RNNKIT_IVDEP _Pragma("GCC ivdep")

namespace {

template <typename T>
struct FloatBits;
template <>
struct FloatBits<float> {
  using Int = int32_t;
  static constexpr int kMantissa = 23;
  static constexpr int kBias = 127;
  static constexpr float kMaxArg = 88.0f;   // exp stays below FLT_MAX
  static constexpr float kMinArg = -87.0f;  // exp stays a normal number
};
template <>
struct FloatBits<double> {
  using Int = int64_t;
  static constexpr int kMantissa = 52;
  static constexpr int kBias = 1023;
  static constexpr double kMaxArg = 708.0;
  static constexpr double kMinArg = -708.0;
};

// 2^k for an integer-valued k inside the normal exponent range.
template <typename T>
inline T pow2i(T k) {
  using Int = typename FloatBits<T>::Int;
  Int bits = (static_cast<Int>(k) + FloatBits<T>::kBias) << FloatBits<T>::kMantissa;
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}

constexpr double inv_factorial(int k) {
  double f = 1.0;
  for (int i = 2; i <= k; ++i) f *= i;
  return 1.0 / f;
}

// e^r for |r| <= ln(2)/2 by its Taylor series in Horner form: degree 7 (float) or 12 (double)
// leaves a truncation error below the format's rounding error.
template <typename T>
inline T exp_reduced(T r) {
  constexpr int kDegree = std::is_same<T, float>::value ? 7 : 12;
  T p = T(inv_factorial(kDegree));
#pragma GCC unroll 16
  for (int k = kDegree - 1; k >= 0; --k) p = p * r + T(inv_factorial(k));
  return p;
}

// e^x: x = k ln2 + r (Cody & Waite 1980, ln2 split in two so k*ln2_hi is exact), then
// e^x = 2^k e^r.  Arguments are clamped to keep the result finite and normal.
template <typename T>
inline T exp_approx(T x) {
  x = x > FloatBits<T>::kMaxArg ? T(FloatBits<T>::kMaxArg) : x;
  x = x < FloatBits<T>::kMinArg ? T(FloatBits<T>::kMinArg) : x;
  const T k = std::floor(x * T(1.4426950408889634) + T(0.5));
  T r = x - k * T(0.693145751953125);
  r = r - k * T(1.42860682030941723212e-6);
  return exp_reduced(r) * pow2i(k);
}

// e^y - 1 for 0 <= y <= 1 by Taylor series (no cancellation for small y).
template <typename T>
inline T expm1_small(T y) {
  constexpr int kDegree = std::is_same<T, float>::value ? 10 : 18;
  T p = T(1);
#pragma GCC unroll 32
  for (int n = kDegree; n >= 2; --n) p = T(1) + p * y * (T(1) / T(n));
  return p * y;
}

template <typename T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + exp_approx(-x));
}

// tanh(x) = N / (N + 2) with N = e^{2|x|} - 1, sign of x restored.  Near zero N comes from the
// expm1 series (no cancellation); elsewhere from exp.  One division per element.
template <typename T>
inline T tanh_approx(T x) {
  const T a = x < T(0) ? -x : x;
  const T y = T(2) * a;
  const T n_small = expm1_small(y < T(1) ? y : T(1));
  const T n_large = exp_approx(y) - T(1);
  const T n = a < T(0.5) ? n_small : n_large;
  const T t = n / (n + T(2));
  return x < T(0) ? -t : t;
}

void check(const torch::Tensor& t, const torch::Tensor& like, const char* name) {
  TORCH_CHECK(t.is_contiguous(), "rnnkit fused kernel: ", name, " must be contiguous");
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), "rnnkit fused kernel: ", name, " dtype");
  TORCH_CHECK(t.device().is_cpu(), "rnnkit fused kernel: ", name, " must be on the CPU");
}

// Runs fn(b) for every batch row, split across PyTorch's intra-op threads once a step has
// enough work (about 16k elements per thread) to repay the hand-off: a parallel region per
// step is a wake-up and a barrier per step, cheap on an idle machine but costly where another
// process holds a core (docs/benchmarks.md, "Busy machines"); below that size one thread does
// the pointwise part in a few microseconds, next to a GEMM many times longer.
template <typename Fn>
void for_rows(int64_t B, int64_t H, const Fn& fn) {
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 14) / std::max<int64_t>(H, 1));
  at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) fn(b);
  });
}

// Whether sequence b is still running at step t (lengths empty: always).
inline bool running(const int64_t* lengths, int64_t b, int64_t t) {
  return lengths == nullptr || t < lengths[b];
}

// The Fortran BLAS GEMMs of the BLAS PyTorch is linked with (MKL in the x86 wheels, which
// export them).  Declared weak: where a PyTorch build does not export them, they are null and
// gemm_rows below falls back to ATen.
extern "C" {
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*,
            const float*, const int*, const float*, const int*, const float*, float*,
            const int*) __attribute__((weak));
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*,
            const double*, const int*, const double*, const int*, const double*, double*,
            const int*) __attribute__((weak));
}

inline void blas_gemm(char ta, int m, int n, int k, float alpha, const float* a, int lda,
                      const float* b, int ldb, float beta, float* c, int ldc) {
  const char tb = 'N';
  sgemm_(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
}
inline void blas_gemm(char ta, int m, int n, int k, double alpha, const double* a, int lda,
                      const double* b, int ldb, double beta, double* c, int ldc) {
  const char tb = 'N';
  dgemm_(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
}

// Whether gemm_rows may call the BLAS directly (tests switch it off to check the fallback).
bool g_direct_blas = true;

template <typename T>
bool blas_available() {
  return g_direct_blas && (std::is_same<T, float>::value ? sgemm_ != nullptr : dgemm_ != nullptr);
}

// Turns the direct BLAS calls on or off; returns whether they are available at all.
bool set_direct_blas(bool on) {
  g_direct_blas = on;
  return sgemm_ != nullptr && dgemm_ != nullptr;
}

// c (rows, n) = beta * c + a (rows, k) w, with a and c contiguous row-major and w (k, n) a 2-D
// tensor with one unit stride (a contiguous matrix or the transpose of one).  One BLAS call:
// inside the time loops this spares each step the dispatcher, a view and (for results that
// were allocated per step) an allocation, which dominate at small batch and width.
// How a weight w (k, n) with one unit stride goes to a BLAS: as stored (w row-major) or as
// the transpose of a row-major matrix, with its leading dimension; and whether every size of
// a product with `rows` rows fits the BLAS's 32-bit integers.
struct WeightLayout {
  bool row_major;
  int64_t ld;
  bool fits_int;
};

inline WeightLayout weight_layout(const torch::Tensor& w, int64_t rows) {
  const int64_t k = w.size(0), n = w.size(1);
  const bool row_major = w.stride(1) == 1;
  TORCH_CHECK(row_major || w.stride(0) == 1, "rnnkit fused kernel: a weight needs one unit stride");
  const int64_t ld = row_major ? std::max<int64_t>(w.stride(0), n) : std::max<int64_t>(w.stride(1), k);
  const int64_t big = std::numeric_limits<int>::max();
  return {row_major, ld, rows < big && n < big && k < big && ld < big};
}

template <typename T>
void gemm_rows(const T* a, int64_t rows, const torch::Tensor& w, T beta, T* c) {
  const int64_t k = w.size(0), n = w.size(1);
  const WeightLayout layout = weight_layout(w, rows);
  if (blas_available<T>() && layout.fits_int) {
    // Column-major BLAS computes c^T (n, rows) = w^T (n, k) a^T (k, rows).
    blas_gemm(layout.row_major ? 'N' : 'T', static_cast<int>(n), static_cast<int>(rows),
              static_cast<int>(k), T(1), w.data_ptr<T>(), static_cast<int>(layout.ld), a,
              static_cast<int>(k), beta, c, static_cast<int>(n));
    return;
  }
  auto opts = w.options();
  torch::Tensor a_t = torch::from_blob(const_cast<T*>(a), {rows, k}, opts);
  torch::Tensor c_t = torch::from_blob(c, {rows, n}, opts);
  if (beta == T(0)) {
    at::mm_out(c_t, a_t, w);
  } else {
    c_t.addmm_(a_t, w);
  }
}

// MKL's packed GEMM (float only): the weight is packed once per time loop into MKL's internal
// layout, where a plain GEMM repacks it on every call, i.e. every step.  Declared weak like
// the GEMMs above; absent (another BLAS), the loops use gemm_rows.
extern "C" {
size_t cblas_sgemm_pack_get_size(int identifier, int m, int n, int k) __attribute__((weak));
void cblas_sgemm_pack(int layout, int identifier, int trans, int m, int n, int k, float alpha,
                      const float* src, int ld, float* dest) __attribute__((weak));
void cblas_sgemm_compute(int layout, int transa, int transb, int m, int n, int k, const float* a,
                         int lda, const float* b, int ldb, float beta, float* c, int ldc)
    __attribute__((weak));
}
constexpr int kCblasRowMajor = 101, kCblasNoTrans = 111, kCblasTrans = 112;
constexpr int kCblasPacked = 151, kCblasBMatrix = 162;
// Below this many rows (the batch) MKL computes a matrix-vector-like product without packing.
constexpr int64_t kPackMinRows = 4;
bool g_packing = true;  // tests switch packing off

bool packing_available() {
  return cblas_sgemm_pack_get_size != nullptr && cblas_sgemm_pack != nullptr &&
         cblas_sgemm_compute != nullptr;
}

// Turns MKL packing on or off; returns whether it is available at all.
bool set_packing(bool on) {
  g_packing = on;
  return packing_available();
}

// c (rows, n) = beta * c + a (rows, k) w for a fixed w (k, n) and row count, repeated every
// step of a time loop: MKL-packed where that applies, else gemm_rows.
template <typename T>
class StepGemm {
 public:
  StepGemm(const torch::Tensor& w, int64_t rows) : w_(w), rows_(rows) {
    const int64_t k = w.size(0), n = w.size(1);
    const WeightLayout layout = weight_layout(w, rows);
    if (!std::is_same<T, float>::value || !g_packing || !g_direct_blas || !packing_available() ||
        rows < kPackMinRows || !layout.fits_int) {
      return;
    }
    const size_t bytes = cblas_sgemm_pack_get_size(kCblasBMatrix, int(rows), int(n), int(k));
    packed_ = torch::empty({int64_t((bytes + sizeof(float) - 1) / sizeof(float))},
                           w.options().dtype(torch::kFloat32));
    cblas_sgemm_pack(kCblasRowMajor, kCblasBMatrix, layout.row_major ? kCblasNoTrans : kCblasTrans,
                     int(rows), int(n), int(k), 1.0f, reinterpret_cast<const float*>(w.data_ptr()),
                     int(layout.ld), packed_.data_ptr<float>());
  }

  void operator()(const T* a, T beta, T* c) const {
    if (!packed_.defined()) {
      gemm_rows<T>(a, rows_, w_, beta, c);
      return;
    }
    const int n = int(w_.size(1)), k = int(w_.size(0));
    cblas_sgemm_compute(kCblasRowMajor, kCblasNoTrans, kCblasPacked, int(rows_), n, k,
                        reinterpret_cast<const float*>(a), k, packed_.data_ptr<float>(), n,
                        float(beta), reinterpret_cast<float*>(c), n);
  }

 private:
  torch::Tensor w_;
  int64_t rows_;
  torch::Tensor packed_;
};

// ---------------------------------------------------------------------------------------- LSTM

// One batch row of the LSTM forward step (H units); pointers as in lstm_forward_step.
template <typename T>
void lstm_forward_row(T* __restrict__ ai, T* __restrict__ af, const T* __restrict__ ag,
                      T* __restrict__ ao, const T* __restrict__ bias, T* __restrict__ g_out,
                      const T* __restrict__ cp, T* __restrict__ c_out, T* __restrict__ h_out,
                      int64_t H) {
  RNNKIT_IVDEP
  for (int64_t j = 0; j < H; ++j) {
    const T i = sigmoid(ai[j] + bias[j]);
    const T f = sigmoid(af[j] + bias[H + j]);
    const T g = tanh_approx(ag[j] + bias[2 * H + j]);
    const T o = sigmoid(ao[j] + bias[3 * H + j]);
    const T c = f * cp[j] + i * g;
    ai[j] = i;
    af[j] = f;
    ao[j] = o;
    g_out[j] = g;
    c_out[j] = c;
    h_out[j] = o * tanh_approx(c);
  }
}

// One batch row of the LSTM backward step; the gradient reaching m_t is dm (+ extra).
template <typename T, bool kExtra>
void lstm_backward_row(const T* __restrict__ ai, const T* __restrict__ af,
                       const T* __restrict__ ao, const T* __restrict__ gg,
                       const T* __restrict__ cc, const T* __restrict__ cp,
                       const T* __restrict__ dm, const T* __restrict__ extra,
                       T* __restrict__ dc, T* __restrict__ di, T* __restrict__ df,
                       T* __restrict__ dg, T* __restrict__ d_o, int64_t H) {
  RNNKIT_IVDEP
  for (int64_t j = 0; j < H; ++j) {
    const T i = ai[j], f = af[j], o = ao[j], g = gg[j];
    const T tc = tanh_approx(cc[j]);
    const T dmj = kExtra ? dm[j] + extra[j] : dm[j];
    const T dcj = dc[j] + dmj * o * (T(1) - tc * tc);
    di[j] = dcj * g * i * (T(1) - i);
    df[j] = dcj * cp[j] * f * (T(1) - f);
    dg[j] = dcj * i * (T(1) - g * g);
    d_o[j] = dmj * tc * o * (T(1) - o);
    dc[j] = dcj * f;
  }
}

// Step t of the LSTM forward.  gates (T, B, 4H) holds the pre-activations without bias (input
// and recurrent parts already summed); bias (4H) is added here, which spares the input
// projection a broadcast copy.  gates receives sigmoid(i), sigmoid(f), sigmoid(o) in place;
// g_act[t] receives tanh(g); cells[t] = f c_{t-1} + i g; out[t] = o tanh(c_t).
void lstm_forward_step(torch::Tensor gates, torch::Tensor bias, torch::Tensor g_act,
                       torch::Tensor cells, torch::Tensor out, torch::Tensor c0, int64_t t) {
  for (auto* p : {&bias, &g_act, &cells, &out, &c0}) check(*p, gates, "state");
  check(gates, gates, "gates");
  const int64_t B = gates.size(1), H4 = gates.size(2), H = H4 / 4;
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "lstm_forward_step", [&] {
    scalar_t* a_all = gates.data_ptr<scalar_t>() + t * B * H4;
    scalar_t* g_all = g_act.data_ptr<scalar_t>() + t * B * H;
    scalar_t* c_all = cells.data_ptr<scalar_t>() + t * B * H;
    const scalar_t* cp_all = t == 0 ? c0.data_ptr<scalar_t>() : c_all - B * H;
    scalar_t* h_all = out.data_ptr<scalar_t>() + t * B * H;
    const scalar_t* bias_p = bias.data_ptr<scalar_t>();
    for_rows(B, H, [&](int64_t b) {
      scalar_t* ai = a_all + b * H4;
      lstm_forward_row<scalar_t>(ai, ai + H, ai + 2 * H, ai + 3 * H, bias_p, g_all + b * H,
                                 cp_all + b * H, c_all + b * H, h_all + b * H, H);
    });
  });
}

// Step t of the LSTM backward.  dm (B, H), plus dm_extra (B, H) unless it is empty, is the
// gradient reaching o_t * tanh(c_t) (two parts so the caller need not add them); dc (B, H)
// enters holding delta c_{t+1} * f_{t+1} and leaves holding delta c_t * f_t.  Writes the gate
// pre-activation gradients d_gates[t] (B, 4H).  Past a sequence's end (lengths) its gate
// gradients are zero and dc passes through unchanged.
void lstm_backward_step(torch::Tensor gates, torch::Tensor g_act, torch::Tensor cells,
                        torch::Tensor c0, torch::Tensor dm, torch::Tensor dm_extra,
                        torch::Tensor dc, torch::Tensor d_gates, torch::Tensor lengths,
                        int64_t t) {
  for (auto* p : {&g_act, &cells, &c0, &dm, &dc, &d_gates}) check(*p, gates, "tensor");
  const bool extra = dm_extra.numel() > 0;
  if (extra) check(dm_extra, gates, "dm_extra");
  const int64_t B = gates.size(1), H4 = gates.size(2), H = H4 / 4;
  const int64_t* len = lengths.numel() ? lengths.data_ptr<int64_t>() : nullptr;
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "lstm_backward_step", [&] {
    const scalar_t* a_all = gates.data_ptr<scalar_t>() + t * B * H4;
    const scalar_t* g_all = g_act.data_ptr<scalar_t>() + t * B * H;
    const scalar_t* c_all = cells.data_ptr<scalar_t>() + t * B * H;
    const scalar_t* cp_all = t == 0 ? c0.data_ptr<scalar_t>() : c_all - B * H;
    scalar_t* d_all = d_gates.data_ptr<scalar_t>() + t * B * H4;
    for_rows(B, H, [&](int64_t b) {
      scalar_t* di = d_all + b * H4;
      if (!running(len, b, t)) {
        std::fill(di, di + H4, scalar_t(0));
        return;
      }
      const scalar_t* ai = a_all + b * H4;
      const scalar_t* dmb = dm.data_ptr<scalar_t>() + b * H;
      scalar_t* dcb = dc.data_ptr<scalar_t>() + b * H;
      if (extra) {
        lstm_backward_row<scalar_t, true>(ai, ai + H, ai + 3 * H, g_all + b * H, c_all + b * H,
                                          cp_all + b * H, dmb,
                                          dm_extra.data_ptr<scalar_t>() + b * H, dcb, di,
                                          di + H, di + 2 * H, di + 3 * H, H);
      } else {
        lstm_backward_row<scalar_t, false>(ai, ai + H, ai + 3 * H, g_all + b * H,
                                           c_all + b * H, cp_all + b * H, dmb, nullptr, dcb,
                                           di, di + H, di + 2 * H, di + 3 * H, H);
      }
    });
  });
}

// ----------------------------------------------------------------------------------------- GRU

// One batch row of the GRU forward step.
template <typename T>
void gru_forward_row(T* __restrict__ ar, T* __restrict__ az, T* __restrict__ an,
                     const T* __restrict__ bias, const T* __restrict__ ur,
                     const T* __restrict__ uz, const T* __restrict__ unn,
                     T* __restrict__ un_out, const T* __restrict__ hp, T* __restrict__ h_out,
                     int64_t H) {
  RNNKIT_IVDEP
  for (int64_t j = 0; j < H; ++j) {
    const T r = sigmoid(ar[j] + bias[j] + ur[j]);
    const T z = sigmoid(az[j] + bias[H + j] + uz[j]);
    const T n = tanh_approx(an[j] + bias[2 * H + j] + r * unn[j]);
    ar[j] = r;
    az[j] = z;
    an[j] = n;
    un_out[j] = unn[j];
    h_out[j] = n + z * (hp[j] - n);
  }
}

// One batch row of the GRU backward step; dy_prev may be null (step 0).
template <typename T>
void gru_backward_row(const T* __restrict__ ar, const T* __restrict__ az,
                      const T* __restrict__ an, const T* __restrict__ un,
                      const T* __restrict__ hp, const T* __restrict__ dh,
                      const T* __restrict__ dy_prev, T* __restrict__ dur, T* __restrict__ duz,
                      T* __restrict__ dun, T* __restrict__ dxr, T* __restrict__ dxz,
                      T* __restrict__ dxn, T* __restrict__ carry, int64_t H) {
  RNNKIT_IVDEP
  for (int64_t j = 0; j < H; ++j) {
    const T r = ar[j], z = az[j], n = an[j], d = dh[j];
    const T da_n = d * (T(1) - z) * (T(1) - n * n);
    const T da_r = da_n * un[j] * r * (T(1) - r);
    const T da_z = d * (hp[j] - n) * z * (T(1) - z);
    dur[j] = da_r;
    duz[j] = da_z;
    dun[j] = da_n * r;
    dxr[j] = da_r;
    dxz[j] = da_z;
    dxn[j] = da_n;
    carry[j] = d * z;
  }
  if (dy_prev != nullptr) {
    RNNKIT_IVDEP
    for (int64_t j = 0; j < H; ++j) carry[j] += dy_prev[j];
  }
}

// Step t of the GRU forward.  gates (T, B, 3H) holds the input projections without their
// bias b_ih (3H, added here) and receives r, z, n in place; u (B, 3H) = W_hh h_{t-1} + b_hh;
// u_n[t] keeps its n-part; hs[t] = h_t.
void gru_forward_step(torch::Tensor gates, torch::Tensor bias, torch::Tensor u,
                      torch::Tensor u_n, torch::Tensor hs, torch::Tensor h0, int64_t t) {
  for (auto* p : {&bias, &u, &u_n, &hs, &h0}) check(*p, gates, "tensor");
  const int64_t B = gates.size(1), H3 = gates.size(2), H = H3 / 3;
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "gru_forward_step", [&] {
    scalar_t* a_all = gates.data_ptr<scalar_t>() + t * B * H3;
    scalar_t* un_all = u_n.data_ptr<scalar_t>() + t * B * H;
    scalar_t* h_all = hs.data_ptr<scalar_t>() + t * B * H;
    const scalar_t* hp_all = t == 0 ? h0.data_ptr<scalar_t>() : h_all - B * H;
    const scalar_t* u_all = u.data_ptr<scalar_t>();
    const scalar_t* bias_p = bias.data_ptr<scalar_t>();
    for_rows(B, H, [&](int64_t b) {
      scalar_t* ar = a_all + b * H3;
      const scalar_t* ur = u_all + b * H3;
      gru_forward_row<scalar_t>(ar, ar + H, ar + 2 * H, bias_p, ur, ur + H, ur + 2 * H,
                                un_all + b * H, hp_all + b * H, h_all + b * H, H);
    });
  });
}

// Step t of the GRU backward.  dh (B, H) is delta h_t.  Writes the recurrent-side
// pre-activation gradients d_u[t] = [da_r, da_z, da_n * r], the input-side ones
// d_x[t] = [da_r, da_z, da_n], and carry = dy[t-1] + dh * z_t (zero dy at t = 0), to which the
// caller adds W_hh^T d_u[t].  Past a sequence's end: zero gradients and carry = dy[t-1] + dh.
void gru_backward_step(torch::Tensor gates, torch::Tensor u_n, torch::Tensor hs,
                       torch::Tensor h0, torch::Tensor dh, torch::Tensor dy, torch::Tensor d_u,
                       torch::Tensor d_x, torch::Tensor carry, torch::Tensor lengths, int64_t t) {
  for (auto* p : {&u_n, &hs, &h0, &dh, &dy, &d_u, &d_x, &carry}) check(*p, gates, "tensor");
  const int64_t B = gates.size(1), H3 = gates.size(2), H = H3 / 3;
  const int64_t* len = lengths.numel() ? lengths.data_ptr<int64_t>() : nullptr;
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "gru_backward_step", [&] {
    const scalar_t* a_all = gates.data_ptr<scalar_t>() + t * B * H3;
    const scalar_t* un_all = u_n.data_ptr<scalar_t>() + t * B * H;
    const scalar_t* hp_all = t == 0 ? h0.data_ptr<scalar_t>() : hs.data_ptr<scalar_t>() + (t - 1) * B * H;
    const scalar_t* dy_prev = t == 0 ? nullptr : dy.data_ptr<scalar_t>() + (t - 1) * B * H;
    scalar_t* du_all = d_u.data_ptr<scalar_t>() + t * B * H3;
    scalar_t* dx_all = d_x.data_ptr<scalar_t>() + t * B * H3;
    const scalar_t* dh_all = dh.data_ptr<scalar_t>();
    scalar_t* carry_all = carry.data_ptr<scalar_t>();
    for_rows(B, H, [&](int64_t b) {
      const scalar_t* dhb = dh_all + b * H;
      const scalar_t* dyb = dy_prev ? dy_prev + b * H : nullptr;
      scalar_t* cb = carry_all + b * H;
      scalar_t* dur = du_all + b * H3;
      scalar_t* dxr = dx_all + b * H3;
      if (!running(len, b, t)) {
        std::fill(dur, dur + H3, scalar_t(0));
        std::fill(dxr, dxr + H3, scalar_t(0));
        for (int64_t j = 0; j < H; ++j) cb[j] = dhb[j] + (dyb ? dyb[j] : scalar_t(0));
        return;
      }
      const scalar_t* ar = a_all + b * H3;
      gru_backward_row<scalar_t>(ar, ar + H, ar + 2 * H, un_all + b * H, hp_all + b * H, dhb,
                                 dyb, dur, dur + H, dur + 2 * H, dxr, dxr + H, dxr + 2 * H, cb,
                                 H);
    });
  });
}

// ------------------------------------------------------------------------------- transpose

// w (G, P) -> contiguous w^T (P, G), in 32 x 32 tiles so that reads and writes both stay in
// cache lines (a strided copy walks memory with a stride of G).
torch::Tensor transpose_contiguous(torch::Tensor w) {
  TORCH_CHECK(w.dim() == 2 && w.is_contiguous() && w.device().is_cpu(),
              "transpose_contiguous: expected a contiguous 2-D CPU tensor");
  const int64_t G = w.size(0), P = w.size(1);
  torch::Tensor out = torch::empty({P, G}, w.options());
  constexpr int64_t kTile = 32;
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "transpose_contiguous", [&] {
    const scalar_t* src = w.data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    at::parallel_for(0, (G + kTile - 1) / kTile, 16, [&](int64_t g0, int64_t g1) {
      for (int64_t gt = g0 * kTile; gt < std::min(G, g1 * kTile); gt += kTile) {
        for (int64_t pt = 0; pt < P; pt += kTile) {
          const int64_t ge = std::min(G, gt + kTile), pe = std::min(P, pt + kTile);
          for (int64_t p = pt; p < pe; ++p) {
            for (int64_t g = gt; g < ge; ++g) dst[p * G + g] = src[g * P + p];
          }
        }
      }
    });
  });
  return out;
}

// ------------------------------------------------------------------------------ time loops

// The whole time loop in C++, for a recurrent weight laid out as a contiguous W_hh^T (G, P)^T:
// each step is one at::addmm_ and one call of the step function above, with no Python in
// between.  (Weights in MKL's packed format keep the Python loop of rnnkit/engine/bptt.)
// Empty tensors stand for absent ones (ms, w_hr_t, b_hh, lengths).
void lstm_forward_loop(torch::Tensor gates, torch::Tensor bias, torch::Tensor g_act,
                       torch::Tensor cells, torch::Tensor hs, torch::Tensor ms,
                       torch::Tensor h0, torch::Tensor c0, torch::Tensor w_hh_t,
                       torch::Tensor w_hr_t) {
  const bool proj = ms.numel() > 0;
  torch::Tensor out = proj ? ms : hs;
  check(hs, gates, "hs");
  check(h0, gates, "h0");
  const int64_t B = gates.size(1), G = gates.size(2), H = G / 4, P = hs.size(2);
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "lstm_forward_loop", [&] {
    const scalar_t* h = h0.data_ptr<scalar_t>();
    const StepGemm<scalar_t> recurrent(w_hh_t, B);
    const StepGemm<scalar_t> project(proj ? w_hr_t : w_hh_t, proj ? B : 0);
    for (int64_t t = 0; t < gates.size(0); ++t) {
      recurrent(h, scalar_t(1), gates.data_ptr<scalar_t>() + t * B * G);
      lstm_forward_step(gates, bias, g_act, cells, out, c0, t);
      scalar_t* h_t = hs.data_ptr<scalar_t>() + t * B * P;
      if (proj) project(ms.data_ptr<scalar_t>() + t * B * H, scalar_t(0), h_t);
      h = h_t;
    }
  });
}

// dy (T, B, P) the gradient from above; dc (B, H) enters as dL/dc_n and leaves as dL/dc_0.
void lstm_backward_loop(torch::Tensor gates, torch::Tensor g_act, torch::Tensor cells,
                        torch::Tensor c0, torch::Tensor dy, torch::Tensor dc,
                        torch::Tensor d_gates, torch::Tensor lengths, torch::Tensor w_hh,
                        torch::Tensor w_hr) {
  const int64_t T = gates.size(0), B = gates.size(1), G = gates.size(2), H = G / 4;
  const int64_t P = dy.size(2);
  const bool proj = w_hr.numel() > 0;
  check(dy, gates, "dy");
  check(d_gates, gates, "d_gates");
  const torch::Tensor none = torch::empty({0}, gates.options());
  torch::Tensor dm = torch::empty({B, H}, gates.options());  // gradient reaching m_t
  torch::Tensor dh = proj ? torch::empty({B, P}, gates.options()) : none;
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "lstm_backward_loop", [&] {
    const StepGemm<scalar_t> recurrent(w_hh, B);
    const StepGemm<scalar_t> project(proj ? w_hr : w_hh, proj ? B : 0);
    const scalar_t* dy_p = dy.data_ptr<scalar_t>();
    const scalar_t* dg_p = d_gates.data_ptr<scalar_t>();
    for (int64_t t = T - 1; t >= 0; --t) {
      const scalar_t* dy_t = dy_p + t * B * P;
      const scalar_t* d_next = dg_p + (t + 1) * B * G;  // delta a_{t+1} (read for t < T-1)
      // delta h_t = dy_t + W_hh^T delta a_{t+1}; without a projection the kernel adds dy_t.
      if (!proj) {
        if (t == T - 1) {
          lstm_backward_step(gates, g_act, cells, c0, dy.select(0, t), none, dc, d_gates, lengths, t);
        } else {
          recurrent(d_next, scalar_t(0), dm.data_ptr<scalar_t>());
          lstm_backward_step(gates, g_act, cells, c0, dm, dy.select(0, t), dc, d_gates, lengths, t);
        }
        continue;
      }
      scalar_t* dh_p = dh.data_ptr<scalar_t>();
      std::memcpy(dh_p, dy_t, sizeof(scalar_t) * B * P);
      if (t < T - 1) recurrent(d_next, scalar_t(1), dh_p);
      project(dh_p, scalar_t(0), dm.data_ptr<scalar_t>());
      lstm_backward_step(gates, g_act, cells, c0, dm, none, dc, d_gates, lengths, t);
    }
  });
}

void gru_forward_loop(torch::Tensor gates, torch::Tensor bias, torch::Tensor u,
                      torch::Tensor u_n, torch::Tensor hs, torch::Tensor h0,
                      torch::Tensor w_hh_t, torch::Tensor b_hh) {
  check(hs, gates, "hs");
  check(h0, gates, "h0");
  check(u, gates, "u");
  const bool has_b = b_hh.numel() > 0;
  if (has_b) check(b_hh, gates, "b_hh");
  const int64_t B = gates.size(1), G = gates.size(2), H = G / 3;
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "gru_forward_loop", [&] {
    const scalar_t* h = h0.data_ptr<scalar_t>();
    scalar_t* u_p = u.data_ptr<scalar_t>();
    const StepGemm<scalar_t> recurrent(w_hh_t, B);
    for (int64_t t = 0; t < gates.size(0); ++t) {
      if (has_b) {  // u = b_hh + h W_hh^T
        for (int64_t b = 0; b < B; ++b) std::memcpy(u_p + b * G, b_hh.data_ptr<scalar_t>(), sizeof(scalar_t) * G);
      }
      recurrent(h, has_b ? scalar_t(1) : scalar_t(0), u_p);
      gru_forward_step(gates, bias, u, u_n, hs, h0, t);
      h = hs.data_ptr<scalar_t>() + t * B * H;
    }
  });
}

// dh (B, H) enters as delta h_T; returns delta h_0.
torch::Tensor gru_backward_loop(torch::Tensor gates, torch::Tensor u_n, torch::Tensor hs,
                                torch::Tensor h0, torch::Tensor dh, torch::Tensor dy,
                                torch::Tensor d_u, torch::Tensor d_x, torch::Tensor carry,
                                torch::Tensor lengths, torch::Tensor w_hh) {
  const int64_t B = gates.size(1), G = gates.size(2), H = G / 3;
  check(d_u, gates, "d_u");
  check(carry, gates, "carry");
  dh = dh.contiguous().clone();
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "gru_backward_loop", [&] {
    const StepGemm<scalar_t> recurrent(w_hh, B);
    for (int64_t t = gates.size(0) - 1; t >= 0; --t) {
      gru_backward_step(gates, u_n, hs, h0, dh, dy, d_u, d_x, carry, lengths, t);
      // delta h_{t-1} = carry + W_hh^T d_u[t]
      std::memcpy(dh.data_ptr<scalar_t>(), carry.data_ptr<scalar_t>(), sizeof(scalar_t) * B * H);
      recurrent(d_u.data_ptr<scalar_t>() + t * B * G, scalar_t(1), dh.data_ptr<scalar_t>());
    }
  });
  return dh;
}

// Elementwise sigmoid or tanh of the approximations above, for tests of their accuracy.
torch::Tensor activation(torch::Tensor x, const std::string& name) {
  TORCH_CHECK(name == "sigmoid" || name == "tanh", "activation: sigmoid or tanh, got ", name);
  const bool is_tanh = name == "tanh";
  auto xc = x.contiguous();
  auto y = torch::empty_like(xc);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "activation", [&] {
    const scalar_t* in = xc.data_ptr<scalar_t>();
    scalar_t* out = y.data_ptr<scalar_t>();
    for (int64_t k = 0; k < xc.numel(); ++k) {
      out[k] = is_tanh ? tanh_approx(in[k]) : sigmoid(in[k]);
    }
  });
  return y;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("lstm_forward_step", &lstm_forward_step);
  m.def("gru_forward_step", &gru_forward_step);
  m.def("transpose_contiguous", &transpose_contiguous);
  m.def("lstm_forward_loop", &lstm_forward_loop);
  m.def("lstm_backward_loop", &lstm_backward_loop);
  m.def("gru_forward_loop", &gru_forward_loop);
  m.def("gru_backward_loop", &gru_backward_loop);
  m.def("activation", &activation);
  m.def("set_direct_blas", &set_direct_blas);
  m.def("set_packing", &set_packing);
  m.def("packing_available", &packing_available);
}
