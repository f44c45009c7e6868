#include "common/error.h"
#include "cpu/threading.h"
#include "position_bias/position_bias.h"

namespace winattn::detail {

int64_t window_tokens(int ndim, const int64_t *window) {
  if (ndim < 1 || ndim > 3) invalid_argument("ndim must be 1, 2 or 3, got %d", ndim);
  require_not_null(window, "window");
  int64_t tokens = 1;
  for (int d = 0; d < ndim; ++d) {
    if (window[d] < 1) {
      invalid_argument("window[%d] must be >= 1, got %lld", d, static_cast<long long>(window[d]));
    }
    tokens = checked_mul(tokens, window[d], "window token count");
  }
  checked_elements(checked_mul(tokens, tokens, "index size N*N"), "index size N*N");
  return tokens;
}

void relative_position_index(int ndim, const int64_t *window, int64_t *index) {
  // Pad to three axes with leading windows of 1; the formula of the highest axes then reduces to 1D/2D.
  int64_t w[3] = {1, 1, 1};
  for (int d = 0; d < ndim; ++d) w[3 - ndim + d] = window[d];
  const int64_t n = w[0] * w[1] * w[2];
  const int64_t stride_h = 2 * w[2] - 1;
  const int64_t stride_d = (2 * w[1] - 1) * stride_h;
  auto fill_row = [&](int64_t i) {
    const int64_t di = i / (w[1] * w[2]), hi = i / w[2] % w[1], wi = i % w[2];
    int64_t *row = index + i * n;
    for (int64_t j = 0; j < n; ++j) {
      const int64_t dj = j / (w[1] * w[2]), hj = j / w[2] % w[1], wj = j % w[2];
      row[j] = (di - dj + w[0] - 1) * stride_d + (hi - hj + w[1] - 1) * stride_h + (wi - wj + w[2] - 1);
    }
  };
  // A small index is written by the calling thread alone: no team is started (starting one allocates, and
  // libgomp exits the process when that allocation fails).
  const int threads = team_size_for_work(n, n * n);
  if (threads <= 1) {
    for (int64_t i = 0; i < n; ++i) fill_row(i);
    return;
  }
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t i = 0; i < n; ++i) fill_row(i);
}

void validate_index(const int64_t *index, int64_t count, int64_t table_rows) {
  for (int64_t t = 0; t < count; ++t) {
    if (index[t] < 0 || index[t] >= table_rows) {
      invalid_argument("index[%lld] = %lld is outside the table's rows [0, %lld)", static_cast<long long>(t),
                       static_cast<long long>(index[t]), static_cast<long long>(table_rows));
    }
  }
}

}  // namespace winattn::detail
