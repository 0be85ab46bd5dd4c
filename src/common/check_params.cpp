// Argument validation shared by every backend: sizes first, then pointers, then strides, in the
// order STYLE.md asks for. Backends call check_params() before touching any memory.
#include "common/check.h"
#include "dsa_indexer/logits_head_gate.h"

namespace dsa_indexer {

namespace {

// Largest element offset reached by a [rows, cols] view with the given strides; -1 if it does not
// fit in int64 (a stride that large cannot address real memory).
bool span_fits(std::int64_t rows, std::int64_t cols, std::int64_t stride_r, std::int64_t stride_c) {
  constexpr std::int64_t kMax = std::int64_t{1} << 62;
  if (rows == 0 || cols == 0) return true;
  const auto r = static_cast<unsigned __int128>(rows - 1) * static_cast<unsigned __int128>(stride_r < 0 ? -stride_r : stride_r);
  const auto c = static_cast<unsigned __int128>(cols - 1) * static_cast<unsigned __int128>(stride_c < 0 ? -stride_c : stride_c);
  return r + c < static_cast<unsigned __int128>(kMax);
}

}  // namespace

void check_params(const LogitsHeadGateParams& p) {
  // Sizes.
  DSA_CHECK(p.T >= 0, "T (rows of x) must be >= 0, got " << p.T);
  DSA_CHECK(p.H >= 1, "H (rows of weight) must be >= 1, got " << p.H);
  DSA_CHECK(p.K >= 1, "K (columns of x and weight) must be >= 1, got " << p.K);
  DSA_CHECK(p.K < (std::int64_t{1} << 31), "K must be < 2^31, got " << p.K);
  DSA_CHECK(p.H < (std::int64_t{1} << 31), "H must be < 2^31, got " << p.H);
  // Pointers: weight always matters for shape-checking callers; x, q_scale and out only when
  // there is a row to compute.
  DSA_CHECK(p.weight != nullptr, "weight must not be null");
  if (p.T > 0) {
    DSA_CHECK(p.x != nullptr, "x must not be null when T > 0");
    DSA_CHECK(p.q_scale != nullptr, "q_scale must not be null when T > 0");
    DSA_CHECK(p.out != nullptr, "out must not be null when T > 0");
  }
  // Strides.
  DSA_CHECK(p.weight_row_stride >= p.K || p.H == 1,
            "weight row stride must be >= K = " << p.K << " (unit column stride), got "
                                                << p.weight_row_stride);
  DSA_CHECK(span_fits(p.H, p.K, p.weight_row_stride, 1), "weight strides overflow");
  if (p.T > 0) {
    DSA_CHECK(p.x_row_stride >= p.K || p.T == 1,
              "x row stride must be >= K = " << p.K << " (unit column stride), got "
                                             << p.x_row_stride);
    DSA_CHECK(span_fits(p.T, p.K, p.x_row_stride, 1), "x strides overflow");
    DSA_CHECK(span_fits(p.T, p.H, p.q_scale_stride_t, p.q_scale_stride_h),
              "q_scale strides overflow");
    DSA_CHECK(span_fits(p.T, p.H, p.out_stride_t, p.out_stride_h), "out strides overflow");
  }
}

const char* version() { return DSA_INDEXER_VERSION; }

}  // namespace dsa_indexer
