// Softmax rows: max, exp(x - max) with the row sum, then a scale by 1 / sum (the order libtorch
// uses, so the two agree to rounding). See softmax.h for why this exists.
//
// Special values need no branches. Every exp argument is x - max <= 0, or NaN: a NaN element
// gives NaN - max = NaN, a +inf element makes max = +inf and inf - inf = NaN, and a row of only
// -inf has max = -inf and -inf - -inf = NaN; the NaN reaches the sum and from there every output,
// which is what at::softmax returns for those rows. A -inf element of any other row is clamped to
// -104, where exp is below half the smallest denormal and rounds to exactly 0.
#include "runtime/softmax.h"

#include "runtime/softmax_kernels.h"

#include <algorithm>
#include <cmath>
#include <limits>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ACG2VEC_SOFTMAX_X86 1
#endif

namespace acg2vec::runtime {
namespace softmax_detail {
namespace {

// exp(r) ~ 1 + c1 r + c2 r^2 + ... + c6 r^6 on [-ln2/2, ln2/2]: a minimax fit of the relative
// error (Lawson iteration in double over 4001 Chebyshev points, coefficients rounded to float;
// the fit's c1 came out as 1.0 exactly), 2e-9 before float rounding. Evaluated in float by
// Horner with FMA it stays within about 1 ulp of exp.
constexpr float c1 = 1.0F;
constexpr float c2 = 4.999999404e-01F;
constexpr float c3 = 1.666643173e-01F;
constexpr float c4 = 4.166800156e-02F;
constexpr float c5 = 8.374155499e-03F;
constexpr float c6 = 1.384365372e-03F;
constexpr float log2e = 1.44269504088896341F;
// ln 2 split for Cody-Waite: the high part has 16 significant bits, so k * ln2_hi is exact for
// every |k| <= 150 and x - k ln2 loses nothing to cancellation.
constexpr float ln2_hi = 0.693145751953125F;
constexpr float ln2_lo = 1.42860682030941723212e-6F;
// The row sum: float lanes over at most this many elements (16 adds a lane for AVX-512), then
// into one double. A float sum over a whole 20000-wide row drifts by 1e-6 relative and more.
constexpr std::int64_t sum_chunk = 1024;
// exp(-104) = 6.8e-46 < 2^-150, half the smallest denormal: from here down the result is 0.
constexpr float exp_floor = -104.0F;

}  // namespace

void rows_scalar(const float* in, float* out, std::int64_t rows, std::int64_t n) {
  for (std::int64_t row = 0; row < rows; ++row, in += n, out += n) {
    float mx = -std::numeric_limits<float>::infinity();
    for (std::int64_t i = 0; i < n; ++i) mx = std::max(mx, in[i]);  // NaN is caught by the sum
    double sum = 0.0;
    for (std::int64_t i = 0; i < n; ++i) sum += out[i] = std::exp(in[i] - mx);
    const auto inv = static_cast<float>(1.0 / sum);
    for (std::int64_t i = 0; i < n; ++i) out[i] *= inv;
  }
}

#ifdef ACG2VEC_SOFTMAX_X86

#define ACG2VEC_AVX2 __attribute__((target("avx2,fma")))
#define ACG2VEC_AVX512 __attribute__((target("avx512f")))

namespace {

ACG2VEC_AVX2 inline __m256 exp_avx2(__m256 x) {
  // max_ps returns its second operand when either is NaN: NaN passes through.
  x = _mm256_max_ps(_mm256_set1_ps(exp_floor), x);
  const __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(log2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(ln2_hi), x);
  r = _mm256_fnmadd_ps(k, _mm256_set1_ps(ln2_lo), r);
  __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(c6), r, _mm256_set1_ps(c5));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c1));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0F));
  // 2^k through the exponent field, in two halves: k reaches -150, below the normal range
  // (-126) one field can hold, while 2^(k/2) and 2^(k - k/2) are both normal and their product
  // with p rounds once, to the right denormal. (A NaN k converts to INT_MIN: garbage scales,
  // but p is NaN and so is the product.)
  const __m256i ki = _mm256_cvtps_epi32(k);
  const __m256i k1 = _mm256_srai_epi32(ki, 1);
  const __m256i k2 = _mm256_sub_epi32(ki, k1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k1, bias), 23));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k2, bias), 23));
  return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

ACG2VEC_AVX2 inline float hmax_avx2(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

ACG2VEC_AVX2 inline float hsum_avx2(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

ACG2VEC_AVX2 void row_avx2(const float* in, float* out, std::int64_t n) {
  constexpr std::int64_t w = 8;
  const __m256 ninf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  __m256 m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
  std::int64_t i = 0;
  for (; i + 4 * w <= n; i += 4 * w) {
    m0 = _mm256_max_ps(m0, _mm256_loadu_ps(in + i));
    m1 = _mm256_max_ps(m1, _mm256_loadu_ps(in + i + w));
    m2 = _mm256_max_ps(m2, _mm256_loadu_ps(in + i + 2 * w));
    m3 = _mm256_max_ps(m3, _mm256_loadu_ps(in + i + 3 * w));
  }
  for (; i + w <= n; i += w) m0 = _mm256_max_ps(m0, _mm256_loadu_ps(in + i));
  float mx = hmax_avx2(_mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3)));
  for (; i < n; ++i) mx = std::max(mx, in[i]);

  const __m256 vm = _mm256_set1_ps(mx);
  double sum = 0.0;
  const std::int64_t full = n - n % w;
  for (std::int64_t c0 = 0; c0 < full; c0 += sum_chunk) {
    const std::int64_t c1 = std::min(c0 + sum_chunk, full);
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    i = c0;
    for (; i + 4 * w <= c1; i += 4 * w) {
      const __m256 e0 = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(in + i), vm));
      const __m256 e1 = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(in + i + w), vm));
      const __m256 e2 = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(in + i + 2 * w), vm));
      const __m256 e3 = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(in + i + 3 * w), vm));
      _mm256_storeu_ps(out + i, e0);
      _mm256_storeu_ps(out + i + w, e1);
      _mm256_storeu_ps(out + i + 2 * w, e2);
      _mm256_storeu_ps(out + i + 3 * w, e3);
      s0 = _mm256_add_ps(s0, e0);
      s1 = _mm256_add_ps(s1, e1);
      s2 = _mm256_add_ps(s2, e2);
      s3 = _mm256_add_ps(s3, e3);
    }
    for (; i < c1; i += w) {
      const __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(in + i), vm));
      _mm256_storeu_ps(out + i, e);
      s0 = _mm256_add_ps(s0, e);
    }
    sum += hsum_avx2(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  }
  for (i = full; i < n; ++i) sum += out[i] = std::exp(in[i] - mx);

  const auto inv_s = static_cast<float>(1.0 / sum);
  const __m256 inv = _mm256_set1_ps(inv_s);
  i = 0;
  for (; i + w <= n; i += w) _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_loadu_ps(out + i), inv));
  for (; i < n; ++i) out[i] *= inv_s;
}

// Merge-masked forms with an all-ones mask throughout: GCC 12 fills the plain forms' unused merge
// operand with a self-initialised value that -Wuninitialized reports. Same instructions, and for
// max the same NaN rule.
ACG2VEC_AVX512 inline __m512 max512(__m512 a, __m512 b) { return _mm512_mask_max_ps(a, 0xFFFF, a, b); }

// Horizontal max and sum through memory: GCC 12's _mm512_reduce_* draw the same warning.
ACG2VEC_AVX512 inline float hmax_avx512(__m512 v) {
  alignas(64) float lane[16];
  _mm512_store_ps(lane, v);
  float m = lane[0];
  for (int j = 1; j < 16; ++j) m = std::max(m, lane[j]);
  return m;
}

ACG2VEC_AVX512 inline float hsum_avx512(__m512 v) {
  alignas(64) float lane[16];
  _mm512_store_ps(lane, v);
  float s = 0.0F;
  for (int j = 0; j < 16; ++j) s += lane[j];
  return s;
}

ACG2VEC_AVX512 inline __m512 exp_avx512(__m512 x) {
  x = max512(_mm512_set1_ps(exp_floor), x);  // NaN passes through, as in exp_avx2
  const __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(log2e));
  const __m512 k = _mm512_mask_roundscale_ps(t, 0xFFFF, t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(ln2_hi), x);
  r = _mm512_fnmadd_ps(k, _mm512_set1_ps(ln2_lo), r);
  __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(c6), r, _mm512_set1_ps(c5));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c4));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c3));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c2));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c1));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0F));
  // vscalefps writes p * 2^k into the exponent with one rounding, denormals included: the
  // instruction form of the exponent-field trick exp_avx2 spells out.
  return _mm512_mask_scalef_ps(p, 0xFFFF, p, k);
}

ACG2VEC_AVX512 void row_avx512(const float* in, float* out, std::int64_t n) {
  constexpr std::int64_t w = 16;
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  // The last n % 16 elements go through masked loads and stores (masked-off lanes do not fault).
  const std::int64_t full = n - n % w;
  const __mmask16 tail = static_cast<__mmask16>((1U << (n % w)) - 1U);
  __m512 m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
  std::int64_t i = 0;
  for (; i + 4 * w <= full; i += 4 * w) {
    m0 = max512(m0, _mm512_loadu_ps(in + i));
    m1 = max512(m1, _mm512_loadu_ps(in + i + w));
    m2 = max512(m2, _mm512_loadu_ps(in + i + 2 * w));
    m3 = max512(m3, _mm512_loadu_ps(in + i + 3 * w));
  }
  for (; i < full; i += w) m0 = max512(m0, _mm512_loadu_ps(in + i));
  if (tail) m1 = max512(m1, _mm512_mask_loadu_ps(ninf, tail, in + full));
  const float mx = hmax_avx512(max512(max512(m0, m1), max512(m2, m3)));

  const __m512 vm = _mm512_set1_ps(mx);
  double sum = 0.0;
  for (std::int64_t c0 = 0; c0 < full; c0 += sum_chunk) {
    const std::int64_t c1 = std::min(c0 + sum_chunk, full);
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    i = c0;
    for (; i + 4 * w <= c1; i += 4 * w) {
      const __m512 e0 = exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(in + i), vm));
      const __m512 e1 = exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(in + i + w), vm));
      const __m512 e2 = exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(in + i + 2 * w), vm));
      const __m512 e3 = exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(in + i + 3 * w), vm));
      _mm512_storeu_ps(out + i, e0);
      _mm512_storeu_ps(out + i + w, e1);
      _mm512_storeu_ps(out + i + 2 * w, e2);
      _mm512_storeu_ps(out + i + 3 * w, e3);
      s0 = _mm512_add_ps(s0, e0);
      s1 = _mm512_add_ps(s1, e1);
      s2 = _mm512_add_ps(s2, e2);
      s3 = _mm512_add_ps(s3, e3);
    }
    for (; i < c1; i += w) {
      const __m512 e = exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(in + i), vm));
      _mm512_storeu_ps(out + i, e);
      s0 = _mm512_add_ps(s0, e);
    }
    sum += hsum_avx512(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
  }
  if (tail) {
    const __m512 e = exp_avx512(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, in + full), vm));
    _mm512_mask_storeu_ps(out + full, tail, e);
    sum += hsum_avx512(_mm512_maskz_mov_ps(tail, e));
  }

  const __m512 inv = _mm512_set1_ps(static_cast<float>(1.0 / sum));
  for (i = 0; i < full; i += w) _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_loadu_ps(out + i), inv));
  if (tail) _mm512_mask_storeu_ps(out + full, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, out + full), inv));
}

}  // namespace

void rows_avx2(const float* in, float* out, std::int64_t rows, std::int64_t n) {
  for (std::int64_t row = 0; row < rows; ++row) row_avx2(in + row * n, out + row * n, n);
}

void rows_avx512(const float* in, float* out, std::int64_t rows, std::int64_t n) {
  for (std::int64_t row = 0; row < rows; ++row) row_avx512(in + row * n, out + row * n, n);
}

bool cpu_has_avx2_fma() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

// vscalefps, vroundscaleps and the masked moves are all AVX-512F: nothing here needs DQ or BW.
bool cpu_has_avx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f");
}

#else  // not x86: only the scalar variant exists; the others are never picked.

void rows_avx2(const float* in, float* out, std::int64_t rows, std::int64_t n) { rows_scalar(in, out, rows, n); }
void rows_avx512(const float* in, float* out, std::int64_t rows, std::int64_t n) { rows_scalar(in, out, rows, n); }
bool cpu_has_avx2_fma() { return false; }
bool cpu_has_avx512() { return false; }

#endif

}  // namespace softmax_detail

namespace {

struct picked {
  softmax_detail::rows_fn fn;
  const char* name;
};

const picked& pick() {
  static const picked p = [] {
    if (softmax_detail::cpu_has_avx512()) return picked{softmax_detail::rows_avx512, "avx512"};
    if (softmax_detail::cpu_has_avx2_fma()) return picked{softmax_detail::rows_avx2, "avx2"};
    return picked{softmax_detail::rows_scalar, "scalar"};
  }();
  return p;
}

}  // namespace

void softmax_rows(const float* in, float* out, std::int64_t rows, std::int64_t n) {
  if (rows > 0 && n > 0) pick().fn(in, out, rows, n);
}

const char* softmax_kernel_name() { return pick().name; }

}  // namespace acg2vec::runtime
