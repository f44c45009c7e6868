// Target "api": a short program of structured calls (up to kMaxOps per input) of every entry point of
// winattn.h. Each op picks an entry point, then its shapes (mostly small, sometimes 0, negative, INT64_MAX or
// values chosen to overflow products), which pointers are NULL, flags, dtypes, index tables with bad entries
// and data with NaN/Inf. Every call is first classified by the harness from the contract in winattn.h:
//   - invalid: the contract names the call an error (NULL required pointer, size <= 0, product overflowing
//     int64, index out of range, ...). Buffers are passed only as large as the claimed shape when that is
//     small, otherwise tiny ones; the call must fail without touching them.
//   - valid and small (every buffer below kApiElems, work below kMaxWork): full buffers; the call must
//     succeed (BF16 layers may answer UNSUPPORTED) and its output is checked.
//   - valid but huge: the big arrays and one output are passed as NULL, so the call must fail.
// Checks (abort -> libFuzzer reports a crash): the status is an enum value; on failure the message is
// non-empty and outputs are bit-for-bit untouched; inputs are never modified; a successful call leaves the
// last error message alone; outputs of successful calls are checked where the contract pins them down, on
// sampled rows (index, lookup, mask: exact; attention rows, layer tokens, continuous bias table rows:
// float64 references with a float32 error bound, see oracle.h), gradients in full.
//
// This decoder is kept byte-compatible with the harness's first version, so the inputs in regressions/
// (prefixed with the target byte 0) still make the calls they were saved for.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "fuzz_common.h"
#include "checks.h"
#include "oracle.h"
#include "targets.h"

extern "C" const char *fuzz_status_string_int(int value);  // c_shim.c

namespace fz {
namespace {

constexpr int kMaxOps = 4;
// Buffers: up to 256 KiB of float each (larger valid calls get NULL and must fail). Filling and snapshotting
// big buffers took most of this target's time; large shapes are target shapes' job.
constexpr i128 kApiElems = i128(1) << 16;
constexpr int64_t kOracleWork = int64_t(1) << 17;  // multiply-adds of one sampled layer window

void op_misc(Reader &r) {
  set_ctx("misc");
  const char *v = winattn_version();
  char want[64];
  snprintf(want, sizeof want, "%d.%d.%d", WINATTN_VERSION_MAJOR, WINATTN_VERSION_MINOR,
           WINATTN_VERSION_PATCH);
  CHECK(v != nullptr && std::strcmp(v, want) == 0, "winattn_version() = %s", v ? v : "(null)");
  const char *isa = winattn_active_isa();
  CHECK(isa != nullptr, "winattn_active_isa() NULL");
  CHECK(!std::strcmp(isa, "avx512_bf16") || !std::strcmp(isa, "avx512") || !std::strcmp(isa, "avx2") ||
            !std::strcmp(isa, "scalar"),
        "winattn_active_isa() = %s", isa);
  CHECK(winattn_last_error_message() != nullptr, "message NULL");
  // Status names, including values outside the enum (a C caller can pass any int).
  int raw;
  const uint8_t sel = r.u8();
  if (sel < 128)
    raw = sel % 8;
  else
    raw = static_cast<int>(r.u32());
  set_ctx("winattn_status_string(%d)", raw);
  const char *name = fuzz_status_string_int(raw);
  CHECK(name != nullptr && name[0] != '\0', "empty status name");
  if (raw < 0 || raw > 4) CHECK(std::strcmp(name, "unknown status") == 0, "got \"%s\"", name);
  if (raw >= 0 && raw <= 4) CHECK(std::strcmp(name, "unknown status") != 0, "got \"%s\"", name);
}

void op_isa(Reader &r) {
  static const char *kNames[] = {"avx512_bf16", "avx512", "avx2", "scalar", "native"};
  static const char *kBad[] = {"", "AVX2", "avx512 ", "sse2", "avx512_bf16x", "nativ", "scalar\n"};
  const uint8_t sel = r.u8();
  std::string custom;
  const char *name;
  bool valid;
  if (sel < 160) {
    name = kNames[sel % 5];
    valid = true;
  } else if (sel < 200) {
    name = kBad[sel % 7];
    valid = false;
  } else if (sel < 220) {
    name = nullptr;
    valid = false;
  } else {
    const size_t len = r.u8() % 16;
    for (size_t i = 0; i < len; ++i) custom.push_back(static_cast<char>(1 + r.u8() % 255));
    name = custom.c_str();
    valid = false;
    for (const char *k : kNames) valid = valid || custom == k;
  }
  set_ctx("winattn_set_max_isa(\"%s\")", name ? name : "(null)");
  const std::string prev = last_msg();
  const winattn_status s = winattn_set_max_isa(name);
  check_status(s, valid ? Expect::kOk : Expect::kFail, prev);
  if (!valid) CHECK(s == WINATTN_STATUS_INVALID_ARGUMENT, "status %d", static_cast<int>(s));
  const char *isa = winattn_active_isa();
  CHECK(isa != nullptr, "active isa NULL");
  if (valid && std::strcmp(name, "scalar") == 0) CHECK(std::strcmp(isa, "scalar") == 0, "active %s", isa);
}

void op_threads(Reader &r) {
  static const int kValues[] = {0, 1, 2, 3, 1, 2, -1, std::numeric_limits<int>::min()};
  const int n = kValues[r.u8() % 8];
  set_ctx("winattn_set_num_threads(%d)", n);
  const int before = winattn_get_num_threads();
  const std::string prev = last_msg();
  const winattn_status s = winattn_set_num_threads(n);
  check_status(s, n >= 0 ? Expect::kOk : Expect::kFail, prev);
  if (n < 0) CHECK(s == WINATTN_STATUS_INVALID_ARGUMENT, "status %d", static_cast<int>(s));
  CHECK(winattn_get_num_threads() == (n >= 0 ? n : before), "get_num_threads %d", winattn_get_num_threads());
}

void op_relative_position_index(Reader &r) {
  const uint8_t sel = r.u8();
  static const int kBadNdim[] = {
      0, -1, 4, 5, 64, std::numeric_limits<int>::max(), std::numeric_limits<int>::min(), 100000};
  const int ndim = sel < 224 ? 1 + sel % 3 : kBadNdim[sel % 8];
  const size_t wlen = ndim >= 3 && ndim <= 64 ? static_cast<size_t>(ndim) : 3;
  std::vector<int64_t> window(wlen, 1);
  for (size_t d = 0; d < wlen; ++d) window[d] = r.dim(d < 3 ? 8 : 2);
  const bool window_null = r.rare(16);
  const bool index_null = r.rare(16);
  bool valid = ndim >= 1 && ndim <= 3 && !window_null && !index_null;
  i128 N = 1;
  if (ndim >= 1 && ndim <= 3)
    for (int d = 0; d < ndim; ++d) {
      if (window[d] < 1) valid = false;
      N = mul(N, window[d]);
    }
  const i128 NN = mul(N, N);
  if (!fits_i64(NN)) valid = false;
  set_ctx("winattn_relative_position_index(ndim=%d, window={%lld,%lld,%lld}%s%s)", ndim, (long long)window[0],
          (long long)window[1], (long long)window[2], window_null ? ", window=NULL" : "",
          index_null ? ", index=NULL" : "");
  Buf<int64_t> index = make_buf<int64_t>(NN, valid, index_null, kApiElems);
  if (valid && !index.p) valid = false;  // valid but huge: NULL output
  poison(index);
  Frozen frozen_in, frozen_out;
  frozen_in.add(window.data(), window.size() * sizeof(int64_t), "window");
  frozen_out.add(index.p, index.n * sizeof(int64_t), "index");
  const std::string prev = last_msg();
  const winattn_status s =
      winattn_relative_position_index(ndim, window_null ? nullptr : window.data(), index.p);
  check_status(s, valid ? Expect::kOk : Expect::kFail, prev);
  frozen_in.check("relative_position_index");
  if (s != WINATTN_STATUS_OK) {
    frozen_out.check("relative_position_index failed");
    return;
  }
  check_index_values(ndim, window.data(), index.p, static_cast<int64_t>(N));
}

// Index table [n][n] with entries mostly in [0, rows), some planted out of range. Returns whether all
// entries are in range.
bool fill_index(Reader &r, int64_t *idx, size_t count, int64_t rows) {
  const uint64_t seed = mix(r.u16() ^ (++g_salt << 20));
  uint64_t state = seed;
  for (size_t i = 0; i < count; ++i) {
    state = mix(state);
    idx[i] = rows > 0 ? static_cast<int64_t>(state % static_cast<uint64_t>(rows)) : 0;
  }
  bool ok = rows > 0;
  const uint8_t k = r.u8();
  if (k >= 200 && count > 0) {
    const int planted = 1 + k % 3;
    size_t at[3];
    for (int c = 0; c < planted; ++c) {
      const size_t pos = at[c] = r.u32() % count;
      const uint64_t ur = static_cast<uint64_t>(rows);  // wrapping arithmetic for the planted values
      const int64_t kBad[] = {-1,
                              rows,
                              static_cast<int64_t>(ur + 1),
                              kI64Min,
                              kI64Max,
                              static_cast<int64_t>(0 - ur),
                              static_cast<int64_t>(ur * 2),
                              int64_t(1) << 40};
      idx[pos] = kBad[r.u8() % 8];
    }
    // What stays planted: a later value may land on an earlier one's position (always when count is 1),
    // and 1 << 40 is in range for a large table.
    for (int c = 0; c < planted; ++c)
      if (idx[at[c]] < 0 || idx[at[c]] >= rows) ok = false;
  }
  return ok;
}

void op_relative_position_bias(Reader &r, bool backward) {
  const int64_t rows = r.dim(64);
  const int64_t heads = r.dim(8);
  const int64_t n = r.dim(50);
  const uint8_t nulls = r.u8();
  const bool table_null = nulls >= 240 && nulls % 3 == 0;
  const bool index_null = nulls >= 240 && nulls % 3 == 1;
  const bool out_null = nulls >= 240 && nulls % 3 == 2;
  bool valid = !table_null && !index_null && !out_null && rows > 0 && heads > 0 && n > 0;
  const i128 hnn = mul(heads, mul(n, n));
  if (!fits_i64(hnn)) valid = false;
  const i128 table_elems = mul(rows, heads);
  const i128 nn = mul(n, n);
  set_ctx("winattn_relative_position_bias%s(rows=%lld, heads=%lld, n=%lld, nulls=%d%d%d)",
          backward ? "_backward" : "", (long long)rows, (long long)heads, (long long)n, table_null,
          index_null, out_null);
  Buf<int64_t> index = make_buf<int64_t>(nn, valid, index_null, kApiElems);
  if (index.p && static_cast<i128>(index.n) == nn) {
    if (!fill_index(r, index.p, index.n, rows)) valid = false;
  } else if (index.p) {
    fill_index(r, index.p, index.n, rows);
  }
  // For the forward the table is the input and bias the output; the backward swaps their roles.
  Buf<float> table = make_buf<float>(table_elems, valid, table_null, kApiElems);
  Buf<float> bias = make_buf<float>(hnn, valid, out_null, kApiElems);
  if (valid && (!index.p || !table.p || !bias.p)) {
    valid = false;  // valid but huge: pass NULL for the big arrays and the output
    if (backward)
      table = Buf<float>();
    else
      bias = Buf<float>();
  }
  Frozen frozen_in, frozen_out;
  std::vector<float> table_before;
  if (!backward) {
    if (table.p) fill(r, table.p, table.n);
    poison(bias);
    frozen_in.add(table.p, table.n * sizeof(float), "table");
    frozen_out.add(bias.p, bias.n * sizeof(float), "bias");
  } else {
    if (bias.p) fill(r, bias.p, bias.n);
    if (table.p) fill(r, table.p, table.n);  // accumulated into
    table_before = table.copy();
    frozen_in.add(bias.p, bias.n * sizeof(float), "grad_bias");
    frozen_out.add(table.p, table.n * sizeof(float), "grad_table");
  }
  frozen_in.add(index.p, index.n * sizeof(int64_t), "index");
  const std::string prev = last_msg();
  const winattn_status s =
      backward ? winattn_relative_position_bias_backward(bias.p, rows, heads, index.p, n, table.p)
               : winattn_relative_position_bias(table.p, rows, heads, index.p, n, bias.p);
  check_status(s, valid ? Expect::kOk : Expect::kFail, prev);
  frozen_in.check("relative_position_bias");
  if (s != WINATTN_STATUS_OK) {
    frozen_out.check("relative_position_bias failed");
    return;
  }
  if (!backward)
    check_bias_values(table.p, heads, index.p, n, bias.p);
  else
    check_bias_gradient(bias.p, heads, index.p, n, table_before.data(), table.p, table.n);
}

void op_cpb_table(Reader &r) {
  const int64_t wh = r.dim(8), ww = r.dim(8), hidden = r.dim(64), heads = r.dim(8);
  const uint8_t nulls = r.u8();
  const bool w1_null = nulls >= 232 && nulls % 4 == 0;
  const bool b1_null = nulls >= 128 && nulls % 4 == 1;  // optional
  const bool w2_null = nulls >= 232 && nulls % 4 == 2;
  const bool out_null = nulls >= 232 && nulls % 4 == 3;
  bool valid = !w1_null && !w2_null && !out_null && wh > 0 && ww > 0 && hidden > 0 && heads > 0;
  const i128 rows = mul(2 * i128(wh) - 1, 2 * i128(ww) - 1);
  const i128 out_elems = mul(rows, heads);
  const i128 w1_elems = mul(hidden, 2), w2_elems = mul(heads, hidden);
  if (!fits_i64(out_elems) || !fits_i64(w1_elems) || !fits_i64(w2_elems) || !fits_i64(2 * i128(wh)) ||
      !fits_i64(2 * i128(ww)))
    valid = false;
  set_ctx("winattn_continuous_position_bias_table(wh=%lld, ww=%lld, hidden=%lld, heads=%lld, nulls=%d)",
          (long long)wh, (long long)ww, (long long)hidden, (long long)heads, nulls);
  Buf<float> w1 = make_buf<float>(w1_elems, valid, w1_null, kApiElems);
  Buf<float> b1 = make_buf<float>(hidden, valid, b1_null, kApiElems);
  Buf<float> w2 = make_buf<float>(w2_elems, valid, w2_null, kApiElems);
  Buf<float> out = make_buf<float>(out_elems, valid, out_null, kApiElems);
  if (valid &&
      (!w1.p || !w2.p || !out.p || (!b1_null && !b1.p) || mul(rows, mul(hidden, heads + 2)) > kMaxWork)) {
    valid = false;
    out = Buf<float>();
  }
  for (Buf<float> *b : {&w1, &b1, &w2})
    if (b->p) fill(r, b->p, b->n);
  poison(out);
  Frozen frozen_in, frozen_out;
  frozen_in.add(w1.p, w1.n * 4, "w1");
  frozen_in.add(b1.p, b1.n * 4, "b1");
  frozen_in.add(w2.p, w2.n * 4, "w2");
  frozen_out.add(out.p, out.n * 4, "table");
  const std::string prev = last_msg();
  const winattn_status s =
      winattn_continuous_position_bias_table(wh, ww, w1.p, b1.p, w2.p, hidden, heads, out.p);
  check_status(s, valid ? Expect::kOk : Expect::kFail, prev);
  frozen_in.check("cpb_table");
  if (s != WINATTN_STATUS_OK) {
    frozen_out.check("cpb_table failed");
    return;
  }
  const bool bounded =
      all_finite(w1.p, w1.n, 1e3f) && all_finite(w2.p, w2.n, 1e3f) && (!b1.p || all_finite(b1.p, b1.n, 1e3f));
  if (!bounded) return;
  for (size_t i = 0; i < out.n; ++i)
    CHECK(std::isfinite(out.p[i]) && out.p[i] >= -1e-4f && out.p[i] <= 16.001f,
          "table[%zu] = %g outside [0, 16] with finite weights", i, out.p[i]);
  Rng rng = call_rng();
  check_cpb_rows(wh, ww, w1.p, b1.p, w2.p, hidden, heads, out.p, rng, 4);
}

void op_shifted_window_mask(Reader &r) {
  int64_t grid[3], window[3], shift[3];
  for (int d = 0; d < 3; ++d) {
    window[d] = r.dim(d == 0 ? 3 : 7);
    const uint8_t g = r.u8();
    if (g < 200) {
      const i128 gg = i128(window[d]) * (1 + g % 4);  // usually a valid multiple
      grid[d] = gg <= kI64Max && gg >= kI64Min ? static_cast<int64_t>(gg) : kI64Max;
    } else {
      grid[d] = r.dim(32);
    }
    const uint8_t s = r.u8();
    if (s < 220)
      shift[d] = window[d] > 0 ? s % window[d] : 0;
    else
      shift[d] = s % 2 ? window[d] : -1 - r.u8() % 8;
  }
  const uint8_t nulls = r.u8();
  const int null_which = nulls >= 236 ? nulls % 4 : -1;
  bool valid = null_which < 0;
  i128 nw = 1, N = 1;
  for (int d = 0; d < 3; ++d) {
    if (grid[d] <= 0 || window[d] <= 0 || shift[d] < 0 || shift[d] >= window[d]) {
      valid = false;
      continue;
    }
    if (grid[d] % window[d] != 0) valid = false;
    nw = mul(nw, grid[d] / window[d]);
    N = mul(N, window[d]);
  }
  const i128 elems = mul(nw, mul(N, N));
  if (!fits_i64(elems)) valid = false;
  set_ctx(
      "winattn_shifted_window_mask(grid={%lld,%lld,%lld}, window={%lld,%lld,%lld}, shift={%lld,%lld,%lld}, "
      "null=%d)",
      (long long)grid[0], (long long)grid[1], (long long)grid[2], (long long)window[0], (long long)window[1],
      (long long)window[2], (long long)shift[0], (long long)shift[1], (long long)shift[2], null_which);
  Buf<float> mask = make_buf<float>(valid ? elems : i128(-1), valid, null_which == 3, kApiElems);
  if (valid && !mask.p) valid = false;
  poison(mask);
  Frozen frozen_in, frozen_out;
  frozen_in.add(grid, sizeof grid, "grid");
  frozen_in.add(window, sizeof window, "window");
  frozen_in.add(shift, sizeof shift, "shift");
  frozen_out.add(mask.p, mask.n * 4, "mask");
  const std::string prev = last_msg();
  const winattn_status s =
      winattn_shifted_window_mask(null_which == 0 ? nullptr : grid, null_which == 1 ? nullptr : window,
                                  null_which == 2 ? nullptr : shift, mask.p);
  check_status(s, valid ? Expect::kOk : Expect::kFail, prev);
  frozen_in.check("shifted_window_mask");
  if (s != WINATTN_STATUS_OK) {
    frozen_out.check("shifted_window_mask failed");
    return;
  }
  check_mask_values(grid, window, shift, mask.p, static_cast<int64_t>(nw), static_cast<int64_t>(N));
}

void op_window_attention(Reader &r) {
  const int64_t nw = r.dim(6), heads = r.dim(4), n = r.dim(64), hd = r.dim(48);
  const uint8_t opt = r.u8();
  const bool use_bias = opt & 1, use_mask = opt & 2;
  const int64_t mask_windows = use_mask || (opt & 4) ? r.dim(6) : (opt & 8 ? 0 : -5);
  const uint8_t nulls = r.u8();
  const int null_which = nulls >= 232 ? nulls % 4 : -1;  // q, k, v, out
  const uint8_t alias = r.u8();                          // >= 240: out overlaps q, k or v
  static const float kScales[8] = {0.125f,
                                   1.0f,
                                   0.0f,
                                   -1.0f,
                                   std::numeric_limits<float>::quiet_NaN(),
                                   std::numeric_limits<float>::infinity(),
                                   1e30f,
                                   0.5f};
  const uint8_t sc = r.u8();
  const float scale =
      sc < 128 ? 1.0f / std::sqrt(static_cast<float>(hd > 0 && hd < 1 << 20 ? hd : 1)) : kScales[sc % 8];
  bool valid = null_which < 0 && nw > 0 && heads > 0 && n > 0 && hd > 0;
  if (use_mask && mask_windows <= 0) valid = false;
  const i128 qe = mul(mul(nw, heads), mul(n, hd));
  const i128 be = mul(heads, mul(n, n));
  const i128 me = mul(mask_windows, mul(n, n));
  if (!fits_i64(qe) || (use_bias && !fits_i64(be)) || (use_mask && !fits_i64(me))) valid = false;
  // Sizes that fit int64 only once the intermediate nw*heads*n*n scores are formed are still valid calls.
  const i128 work = mul(mul(nw, heads), mul(mul(n, n), hd));
  set_ctx(
      "winattn_window_attention(nw=%lld, heads=%lld, n=%lld, d=%lld, scale=%g, bias=%d, mask=%d, "
      "mask_windows=%lld, null=%d, alias=%d)",
      (long long)nw, (long long)heads, (long long)n, (long long)hd, scale, use_bias, use_mask,
      (long long)mask_windows, null_which, alias >= 240 ? alias % 3 : -1);
  const bool do_alias = alias >= 240 && null_which < 0 && qe >= 1 && qe <= kApiElems;
  // q, k, v live in one array of 4*qe (3 inputs + room for an overlapping out).
  Buf<float> qkv = make_buf<float>(mul(qe, 4), valid, false, kApiElems);
  Buf<float> bias = use_bias ? make_buf<float>(be, valid, false, kApiElems) : Buf<float>();
  Buf<float> mask = use_mask ? make_buf<float>(me, valid, false, kApiElems) : Buf<float>();
  Buf<float> out = make_buf<float>(qe, valid, null_which == 3 || do_alias, kApiElems);
  if (valid && (!qkv.p || (use_bias && !bias.p) || (use_mask && !mask.p) || (!out.p && !do_alias) ||
                work > kMaxWork)) {
    valid = false;  // valid but huge
    qkv = Buf<float>();
    out = Buf<float>();
  }
  float *q = nullptr, *k = nullptr, *v = nullptr, *o = out.p;
  size_t qn = 0;
  if (qkv.p) {
    if (static_cast<i128>(qkv.n) == mul(qe, 4)) {
      qn = static_cast<size_t>(qe);
      q = qkv.p, k = qkv.p + qn, v = qkv.p + 2 * qn;
    } else {
      qn = 1;
      q = qkv.p, k = qkv.p + 1, v = qkv.p + 2;  // tiny: invalid call
    }
    fill(r, qkv.p, qkv.n);
    if (do_alias) {
      const size_t which = alias % 3;
      const size_t off = r.u32() % qn;
      o = qkv.p + which * qn + off;  // out [o, o+qn) overlaps the chosen input and stays inside qkv
      valid = false;
    }
  }
  if (null_which == 0) q = nullptr;
  if (null_which == 1) k = nullptr;
  if (null_which == 2) v = nullptr;
  if (bias.p) fill(r, bias.p, bias.n);
  if (mask.p) {
    fill(r, mask.p, mask.n);
    // Masks are mostly 0 / -100 / -inf patterns.
    const uint8_t mm = r.u8();
    if (mm < 192)
      for (size_t i = 0; i < mask.n; ++i) {
        const uint64_t h = mix(i ^ (static_cast<uint64_t>(mm) << 40));
        const unsigned kind = static_cast<unsigned>(h % (mm % 4 == 0 ? 2 : 8));
        if (kind == 0 || kind > 2) mask.p[i] = 0.0f;
        if (kind == 1) mask.p[i] = -100.0f;
        if (kind == 2) mask.p[i] = -std::numeric_limits<float>::infinity();
        if (mm % 16 == 5 && n > 0 && i % static_cast<size_t>(n) != 0)
          mask.p[i] = -std::numeric_limits<float>::infinity();
      }
  }
  if (!do_alias) poison(out);
  Frozen frozen_in, frozen_out;
  frozen_in.add(qkv.p, qkv.n * 4, "q/k/v");
  frozen_in.add(bias.p, bias.n * 4, "bias");
  frozen_in.add(mask.p, mask.n * 4, "mask");
  if (!do_alias) frozen_out.add(out.p, out.n * 4, "out");
  const std::string prev = last_msg();
  const winattn_status s =
      winattn_window_attention(nw, heads, n, hd, q, k, v, scale, bias.p, mask.p, mask_windows, o);
  check_status(s, valid ? Expect::kOk : Expect::kFail, prev);
  frozen_in.check("window_attention");
  if (s != WINATTN_STATUS_OK) {
    frozen_out.check("window_attention failed");
    return;
  }
  // Thread-count determinism: the same bits with another thread count.
  if (r.rare(4)) {
    std::vector<float> again(out.n);
    const int before = winattn_get_num_threads();
    winattn_set_num_threads(before == 1 ? 2 : 1);
    const winattn_status s2 = winattn_window_attention(nw, heads, n, hd, q, k, v, scale, bias.p, mask.p,
                                                       mask_windows, again.data());
    winattn_set_num_threads(before);
    CHECK(s2 == WINATTN_STATUS_OK, "second call failed");
    CHECK(std::memcmp(again.data(), out.p, out.n * 4) == 0, "results differ between thread counts");
  }
  // Sampled rows against the float64 reference and the contract's rules.
  Rng rng = call_rng();
  check_window_attention(nw, heads, n, hd, q, k, v, scale, bias.p, mask.p, mask_windows, out.p, rng, 4, 3);
}

// Shapes shared by the stateless layer and winattn_layer.
struct LayerShape {
  int64_t channels = 0, heads = 0, window[3] = {1, 1, 1}, shift[3] = {0, 0, 0};
  bool valid = true;
  i128 N = 1;
};

LayerShape read_layer_shape(Reader &r) {
  LayerShape L;
  const uint8_t hsel = r.u8();
  L.heads = hsel < 240 ? 1 + hsel % 4 : r.dim(4);
  const uint8_t csel = r.u8();
  if (csel < 224 && L.heads > 0 && L.heads <= 8)
    L.channels = L.heads * (1 + csel % 16);  // divisible
  else
    L.channels = r.dim(48);
  const uint8_t dims3 = r.u8();
  for (int d = 0; d < 3; ++d) {
    L.window[d] = (d == 0 && dims3 < 192) ? 1 : r.dim(d == 0 ? 3 : 7);
    const uint8_t s = r.u8();
    if (s < 224)
      L.shift[d] = L.window[d] > 0 ? s % L.window[d] : 0;
    else
      L.shift[d] = s % 2 ? L.window[d] : -1 - s % 3;
  }
  L.valid = L.channels > 0 && L.heads > 0 && L.channels % L.heads == 0;
  for (int d = 0; d < 3; ++d) {
    if (L.window[d] < 1 || L.shift[d] < 0 || L.shift[d] >= L.window[d]) L.valid = false;
    L.N = mul(L.N, L.window[d] > 0 ? L.window[d] : 1);
  }
  if (!fits_i64(mul(mul(L.channels, L.channels), 3)) || !fits_i64(mul(L.heads, mul(L.N, L.N))))
    L.valid = false;
  return L;
}

// Per-call activation shape. Returns elements of input/output; sets *overflow when the padded shape
// overflows int64 (the call must fail), *big when it is valid but too big for the harness.
i128 activation_elems(const LayerShape &L, int64_t batch, const int64_t grid[3], bool *valid, bool *big) {
  if (batch <= 0) *valid = false;
  i128 tokens = batch, padded = batch;
  for (int d = 0; d < 3; ++d) {
    if (grid[d] <= 0) {
      *valid = false;
      continue;
    }
    tokens = mul(tokens, grid[d]);
    const i128 w = L.window[d] > 0 ? L.window[d] : 1;
    padded = mul(padded, (grid[d] + w - 1) / w * w);
  }
  const i128 elems = mul(tokens, L.channels > 0 ? L.channels : 1);
  const i128 padded_elems = mul(padded, L.channels > 0 ? L.channels : 1);
  if (!fits_i64(elems) || !fits_i64(padded_elems)) *valid = false;
  const i128 C = L.channels > 0 ? L.channels : 1;
  const i128 work = mul(padded, mul(C, C) * 4 + mul(L.N, C) * 2);
  *big = padded_elems > (i128(1) << 18) || L.N > 512 || work > kMaxWork;
  return elems;
}

void read_grid(Reader &r, int64_t grid[3], const LayerShape &L) {
  for (int d = 0; d < 3; ++d) {
    const uint8_t g = r.u8();
    if (d == 0 && L.window[0] == 1 && g < 200)
      grid[d] = 1;
    else if (g < 232)
      grid[d] = 1 + g % 12;  // often not a window multiple: exercises padding
    else
      grid[d] = r.dim(16);
  }
}

struct Weights {
  Buf<float> qkv_w, qkv_b, proj_w, proj_b, rpb, logit, cpb_w1, cpb_b1, cpb_w2;
};

// The library rejects a NaN logit_scale (INVALID_ARGUMENT), which the header does not list as an error:
// calls with one may succeed or fail.
bool has_nan(const Buf<float> &b) {
  for (size_t i = 0; i < b.n; ++i)
    if (std::isnan(b.p[i])) return true;
  return false;
}

bool weights_bounded(const Weights &w) {
  for (const Buf<float> *b :
       {&w.qkv_w, &w.qkv_b, &w.proj_w, &w.proj_b, &w.rpb, &w.logit, &w.cpb_w1, &w.cpb_b1, &w.cpb_w2})
    if (b->p && !all_finite(b->p, b->n, 1e3f)) return false;
  return true;
}

void fill_all(Reader &r, Weights &w) {
  for (Buf<float> *b :
       {&w.qkv_w, &w.qkv_b, &w.proj_w, &w.proj_b, &w.rpb, &w.logit, &w.cpb_w1, &w.cpb_b1, &w.cpb_w2})
    if (b->p) fill(r, b->p, b->n);
}

void add_weights(Frozen &f, const Weights &w) {
  f.add(w.qkv_w.p, w.qkv_w.n * 4, "qkv_weight");
  f.add(w.qkv_b.p, w.qkv_b.n * 4, "qkv_bias");
  f.add(w.proj_w.p, w.proj_w.n * 4, "proj_weight");
  f.add(w.proj_b.p, w.proj_b.n * 4, "proj_bias");
  f.add(w.rpb.p, w.rpb.n * 4, "relative_position_bias");
  f.add(w.logit.p, w.logit.n * 4, "logit_scale");
  f.add(w.cpb_w1.p, w.cpb_w1.n * 4, "cpb_weight1");
  f.add(w.cpb_b1.p, w.cpb_b1.n * 4, "cpb_bias1");
  f.add(w.cpb_w2.p, w.cpb_w2.n * 4, "cpb_weight2");
}

// One activation call (stateless or layer forward); `call` runs it on (input, output).
template <class Call>
void run_activation(Reader &r, const LayerShape &L, bool weights_ok, bool bounded, int64_t batch,
                    const int64_t grid[3], bool grid_null, bool null_in, bool null_out, bool valid_in,
                    const char *what, const LayerRef *ref, Call call) {
  bool valid = valid_in && !grid_null && !null_in && !null_out;
  bool big = false;
  const i128 elems = activation_elems(L, batch, grid, &valid, &big);
  const uint8_t ov = r.u8();
  const bool overlap = ov >= 244 && !null_in && !null_out && elems >= 1 && elems <= kApiElems;
  if (overlap) valid = false;
  // input and output share one allocation when they overlap.
  Buf<float> io = make_buf<float>(mul(elems, 2), valid && !big, false, kApiElems);
  if (valid && (big || !io.p)) {
    valid = false;  // valid but huge: NULL input and output
    io = Buf<float>();
  }
  float *in = nullptr, *out = nullptr;
  size_t n = 0;
  if (io.p) {
    n = static_cast<i128>(io.n) == mul(elems, 2) ? static_cast<size_t>(elems) : 1;
    in = io.p;
    out = overlap ? io.p + r.u32() % n : io.p + n;
    fill(r, in, n);
    if (!overlap) std::memset(static_cast<void *>(out), 0xA5, n * 4);
  }
  if (null_in) in = nullptr;
  if (null_out) out = nullptr;
  Frozen frozen_in, frozen_out;
  frozen_in.add(in, n * 4, "input");
  if (!overlap) frozen_out.add(out, n * 4, "output");
  const std::string prev = last_msg();
  const winattn_status s = call(in, grid_null ? nullptr : grid, out);
  check_status(s, valid ? (weights_ok ? Expect::kOk : Expect::kAny) : Expect::kFail, prev);
  frozen_in.check(what);
  if (s != WINATTN_STATUS_OK) {
    frozen_out.check(what);
    return;
  }
  if (bounded && all_finite(in, n, 1e3f))
    for (size_t i = 0; i < n; ++i)
      CHECK(std::isfinite(out[i]), "%s: output[%zu] = %g with finite bounded inputs", what, i, out[i]);
  if (ref) {
    Rng rng = call_rng();
    check_layer_tokens(*ref, batch, grid, in, out, rng, 1, kOracleWork, what);
  }
}

void op_stateless_layer(Reader &r) {
  LayerShape L = read_layer_shape(r);
  const int64_t batch = r.dim(3);
  int64_t grid[3];
  read_grid(r, grid, L);
  const uint8_t opt = r.u8();
  const bool v2 = opt & 1, use_rpb = opt & 2, use_qkv_b = opt & 4, use_proj_b = opt & 8;
  const uint8_t nulls = r.u8();
  const int null_which = nulls >= 228 ? nulls % 7 : -1;  // args, input, output, qkv_w, proj_w, logit, rpb
  uint32_t flags = 0;
  if (r.rare(16)) flags = 1u << (r.u8() % 32);
  // NULL args / qkv_weight / proj_weight are errors; NULL logit_scale or bias just select another variant.
  bool valid = L.valid && flags == 0 && null_which != 0 && null_which != 3 && null_which != 4;
  const i128 C = L.channels;
  Weights w;
  const bool small_w = fits_i64(mul(mul(C, C), 3)) && mul(mul(C, C), 3) <= kApiElems;
  w.qkv_w = make_buf<float>(mul(mul(C, C), 3), valid, null_which == 3, kApiElems);
  w.proj_w = make_buf<float>(mul(C, C), valid, null_which == 4, kApiElems);
  if (use_qkv_b) w.qkv_b = make_buf<float>(mul(C, 3), valid, false, kApiElems);
  if (use_proj_b) w.proj_b = make_buf<float>(C, valid, false, kApiElems);
  const i128 hnn = mul(L.heads, mul(L.N, L.N));
  if (use_rpb) w.rpb = make_buf<float>(hnn, valid, null_which == 6, kApiElems);
  if (v2) w.logit = make_buf<float>(L.heads, valid, null_which == 5, kApiElems);
  const bool missing = !w.qkv_w.p || !w.proj_w.p || (use_qkv_b && !w.qkv_b.p) ||
                       (use_proj_b && !w.proj_b.p) || (use_rpb && null_which != 6 && !w.rpb.p) ||
                       (v2 && null_which != 5 && !w.logit.p);
  if (valid && (missing || !small_w)) {
    valid = false;
    w.qkv_w = Buf<float>();
  }
  fill_all(r, w);
  const bool bounded = weights_bounded(w);
  winattn_window_attention_args args;
  std::memset(&args, 0x5A, sizeof args);
  args.batch = batch;
  for (int d = 0; d < 3; ++d)
    args.grid[d] = grid[d], args.window[d] = L.window[d], args.shift[d] = L.shift[d];
  args.channels = L.channels;
  args.num_heads = L.heads;
  args.qkv_weight = w.qkv_w.p;
  args.qkv_bias = w.qkv_b.p;
  args.proj_weight = w.proj_w.p;
  args.proj_bias = w.proj_b.p;
  args.relative_position_bias = w.rpb.p;
  args.logit_scale = w.logit.p;
  args.flags = flags;
  set_ctx(
      "winattn_shifted_window_attention(batch=%lld, grid={%lld,%lld,%lld}, C=%lld, heads=%lld, "
      "window={%lld,%lld,%lld}, shift={%lld,%lld,%lld}, v2=%d, rpb=%d, qkv_b=%d, proj_b=%d, null=%d, "
      "flags=%u)",
      (long long)batch, (long long)grid[0], (long long)grid[1], (long long)grid[2], (long long)L.channels,
      (long long)L.heads, (long long)L.window[0], (long long)L.window[1], (long long)L.window[2],
      (long long)L.shift[0], (long long)L.shift[1], (long long)L.shift[2], v2, use_rpb, use_qkv_b, use_proj_b,
      null_which, flags);
  Frozen frozen_w;
  add_weights(frozen_w, w);
  frozen_w.add(&args, sizeof args, "args");
  const winattn_window_attention_args *ap = null_which == 0 ? nullptr : &args;
  LayerRef ref;
  if (valid) {
    ref.channels = L.channels, ref.heads = L.heads;
    for (int d = 0; d < 3; ++d) ref.window[d] = L.window[d], ref.shift[d] = L.shift[d];
    ref.qkv_weight = w.qkv_w.p, ref.qkv_bias = w.qkv_b.p, ref.proj_weight = w.proj_w.p;
    ref.proj_bias = w.proj_b.p, ref.bias = w.rpb.p, ref.logit_scale = w.logit.p;
  }
  run_activation(r, L, !has_nan(w.logit), bounded, batch, grid, false, null_which == 1, null_which == 2,
                 valid, "shifted_window_attention", valid ? &ref : nullptr,
                 [&](const float *in, const int64_t *, float *out) {
                   return winattn_shifted_window_attention(ap, in, out);
                 });
  frozen_w.check("shifted_window_attention");
}

void op_layer(Reader &r) {
  LayerShape L = read_layer_shape(r);
  const uint8_t kind = r.u8();
  // 0 v1+table, 1 v1 no bias, 2 v2+cpb, 3 v2 no cpb; then inconsistent descriptions.
  const int variant = kind < 200 ? kind % 4 : 4 + kind % 5;
  const uint8_t opt = r.u8();
  const bool use_qkv_b = opt & 1, use_proj_b = opt & 2;
  int64_t hidden = 0;
  bool valid = L.valid;
  bool any = false;  // status not pinned down by the contract
  const i128 C = L.channels;
  i128 rows = 1;
  for (int d = 0; d < 3; ++d) rows = mul(rows, 2 * i128(L.window[d] > 0 ? L.window[d] : 1) - 1);
  Weights w;
  const uint8_t nulls = r.u8();
  const int null_which = nulls >= 236 ? nulls % 4 : -1;  // desc, layer out, qkv_w, proj_w
  if (null_which >= 0) valid = false;
  w.qkv_w = make_buf<float>(mul(mul(C, C), 3), valid, null_which == 2, kApiElems);
  w.proj_w = make_buf<float>(mul(C, C), valid, null_which == 3, kApiElems);
  if (use_qkv_b) w.qkv_b = make_buf<float>(mul(C, 3), valid, false, kApiElems);
  if (use_proj_b) w.proj_b = make_buf<float>(C, valid, false, kApiElems);
  const bool v2 = variant == 2 || variant == 3 || variant == 4 || variant == 5 || variant == 8;
  if (v2) w.logit = make_buf<float>(L.heads, valid, false, kApiElems);
  if (variant == 0 || variant == 4) w.rpb = make_buf<float>(mul(rows, L.heads), valid, false, kApiElems);
  if (variant == 2 || variant == 5 || variant == 6 || variant == 8) {
    hidden = r.dim(32);
    if (hidden <= 0 || !fits_i64(mul(hidden, L.heads > 0 ? L.heads : 1))) valid = false;
    w.cpb_w1 = make_buf<float>(mul(hidden, 2), valid, false, kApiElems);
    w.cpb_b1 = make_buf<float>(hidden, valid, r.rare(8), kApiElems);
    if (variant != 5) w.cpb_w2 = make_buf<float>(mul(L.heads, hidden), valid, false, kApiElems);
    if (!w.cpb_b1.p) any = true;  // cpb_bias1 NULL: the contract does not say
  }
  // Inconsistent v1/v2. Variant 4 is inconsistent only through its table, which is NULL when its size is out
  // of bounds: then the description is a consistent v2 one.
  if ((variant == 4 && w.rpb.p) || variant == 5 || variant == 6) valid = false;
  if ((variant == 2 || variant == 8) && L.window[0] != 1) valid = false;  // cpb needs 2D windows
  if (variant == 7) any = true, hidden = 1 + r.u8() % 8;                  // v1 with a stray hidden
  const bool missing = !w.qkv_w.p || !w.proj_w.p || (use_qkv_b && !w.qkv_b.p) ||
                       (use_proj_b && !w.proj_b.p) || (v2 && !w.logit.p) || ((variant == 0) && !w.rpb.p) ||
                       ((variant == 2 || variant == 8) && (!w.cpb_w1.p || !w.cpb_w2.p));
  const bool big = L.N > 343 || mul(L.heads, mul(L.N, L.N)) > kApiElems ||
                   mul(rows, mul(L.heads, i128(hidden) + 4)) > kMaxWork;
  if (valid && (missing || big)) {
    valid = false;
    w.qkv_w = Buf<float>();
  }
  int32_t dtype_raw = 0;
  const uint8_t dsel = r.u8();
  if (dsel >= 224) dtype_raw = dsel % 2 ? 1 : (dsel % 4 == 0 ? 2 : static_cast<int32_t>(r.u32()));
  uint32_t flags = r.rare(16) ? 1u << (r.u8() % 32) : 0;
  if (flags) valid = false;
  fill_all(r, w);
  const bool bounded = weights_bounded(w);
  if (has_nan(w.logit)) any = true;
  winattn_layer_desc desc;
  std::memset(&desc, 0x5A, sizeof desc);
  desc.channels = L.channels;
  desc.num_heads = L.heads;
  for (int d = 0; d < 3; ++d) desc.window[d] = L.window[d], desc.shift[d] = L.shift[d];
  desc.qkv_weight = w.qkv_w.p;
  desc.qkv_bias = w.qkv_b.p;
  desc.proj_weight = w.proj_w.p;
  desc.proj_bias = w.proj_b.p;
  desc.relative_position_bias_table = w.rpb.p;
  desc.logit_scale = w.logit.p;
  desc.cpb_weight1 = w.cpb_w1.p;
  desc.cpb_bias1 = w.cpb_b1.p;
  desc.cpb_weight2 = w.cpb_w2.p;
  desc.cpb_hidden = hidden;
  std::memcpy(&desc.compute_dtype, &dtype_raw, sizeof dtype_raw);  // any int, as a C caller could pass
  desc.flags = flags;
  set_ctx(
      "winattn_layer_create(C=%lld, heads=%lld, window={%lld,%lld,%lld}, shift={%lld,%lld,%lld}, variant=%d, "
      "hidden=%lld, qkv_b=%d, proj_b=%d, null=%d, dtype=%d, flags=%u)",
      (long long)L.channels, (long long)L.heads, (long long)L.window[0], (long long)L.window[1],
      (long long)L.window[2], (long long)L.shift[0], (long long)L.shift[1], (long long)L.shift[2], variant,
      (long long)hidden, use_qkv_b, use_proj_b, null_which, dtype_raw, flags);
  Expect expect = valid ? (any ? Expect::kAny : Expect::kOk) : Expect::kFail;
  if (dtype_raw == 1 && expect == Expect::kOk) expect = Expect::kAny;
  if (dtype_raw != 0 && dtype_raw != 1) expect = Expect::kFail;
  Frozen frozen_w;
  add_weights(frozen_w, w);
  frozen_w.add(&desc, sizeof desc, "desc");
  winattn_layer *const kSentinel = reinterpret_cast<winattn_layer *>(uintptr_t{0x5EED});
  winattn_layer *layer = kSentinel;
  const std::string prev = last_msg();
  const winattn_status s =
      winattn_layer_create(null_which == 0 ? nullptr : &desc, null_which == 1 ? nullptr : &layer);
  check_status(s, expect, prev);
  frozen_w.check("layer_create");
  if (s != WINATTN_STATUS_OK) {
    CHECK(layer == kSentinel, "failed layer_create wrote *layer");
    if (dtype_raw == 1 && expect == Expect::kAny && valid && !any)
      CHECK(s == WINATTN_STATUS_UNSUPPORTED, "BF16 layer: status %d", static_cast<int>(s));
    if (dtype_raw != 0 && dtype_raw != 1 && valid && !any)
      CHECK(s == WINATTN_STATUS_INVALID_ARGUMENT, "unknown dtype: status %d", static_cast<int>(s));
    return;
  }
  CHECK(layer != nullptr && layer != kSentinel, "layer_create OK without a layer");
  // The float64 reference needs the weights and the looked-up bias: copied before the scribbling below.
  std::vector<float> ref_w[5], ref_bias;
  LayerRef ref;
  const bool use_ref = variant <= 3 && !any && mul(L.N, 3 * C * C) + mul(mul(L.N, L.N), C) <= kOracleWork;
  if (use_ref) {
    const Buf<float> *src[5] = {&w.qkv_w, &w.qkv_b, &w.proj_w, &w.proj_b, &w.logit};
    for (int i = 0; i < 5; ++i)
      if (src[i]->p) ref_w[i] = src[i]->copy();
    ref.channels = L.channels, ref.heads = L.heads;
    for (int d = 0; d < 3; ++d) ref.window[d] = L.window[d], ref.shift[d] = L.shift[d];
    ref.qkv_weight = ref_w[0].data(), ref.proj_weight = ref_w[2].data();
    ref.qkv_bias = w.qkv_b.p ? ref_w[1].data() : nullptr,
    ref.proj_bias = w.proj_b.p ? ref_w[3].data() : nullptr;
    ref.logit_scale = w.logit.p ? ref_w[4].data() : nullptr;
    const int64_t n = static_cast<int64_t>(L.N), heads = L.heads;
    std::vector<float> cpb;
    const float *table = w.rpb.p;
    int ndim = 3;
    if (variant == 2) {  // the table from the library's continuous_position_bias_table (checked on its own)
      cpb.resize(static_cast<size_t>((2 * L.window[1] - 1) * (2 * L.window[2] - 1) * heads));
      const winattn_status cs = winattn_continuous_position_bias_table(
          L.window[1], L.window[2], w.cpb_w1.p, w.cpb_b1.p, w.cpb_w2.p, hidden, heads, cpb.data());
      CHECK(cs == WINATTN_STATUS_OK, "continuous_position_bias_table for a layer that was created: %d",
            static_cast<int>(cs));
      table = cpb.data(), ndim = 2;
    }
    if (table) {
      ref_bias.resize(static_cast<size_t>(heads * n * n));
      const int64_t *win = ndim == 3 ? L.window : L.window + 1;
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) {
          const int64_t row = relative_index(ndim, win, i, j);
          for (int64_t h = 0; h < heads; ++h) ref_bias[(h * n + i) * n + j] = table[row * heads + h];
        }
      ref.bias = ref_bias.data();
    }
  }
  // The caller may free its arrays after create: scribble over them before forwarding.
  for (Buf<float> *b :
       {&w.qkv_w, &w.qkv_b, &w.proj_w, &w.proj_b, &w.rpb, &w.logit, &w.cpb_w1, &w.cpb_b1, &w.cpb_w2})
    if (b->p) std::fill(b->p, b->p + b->n, std::numeric_limits<float>::quiet_NaN());
  const int forwards = 1 + r.u8() % 4;
  for (int f = 0; f < forwards && !r.done(); ++f) {
    const int64_t batch = r.dim(3);
    int64_t grid[3];
    read_grid(r, grid, L);
    const uint8_t fn = r.u8();
    const int fnull = fn >= 236 ? fn % 4 : -1;  // layer, input, grid, output
    set_ctx(
        "winattn_layer_forward(C=%lld, heads=%lld, window={%lld,%lld,%lld}, shift={%lld,%lld,%lld}, "
        "variant=%d, batch=%lld, grid={%lld,%lld,%lld}, null=%d)",
        (long long)L.channels, (long long)L.heads, (long long)L.window[0], (long long)L.window[1],
        (long long)L.window[2], (long long)L.shift[0], (long long)L.shift[1], (long long)L.shift[2], variant,
        (long long)batch, (long long)grid[0], (long long)grid[1], (long long)grid[2], fnull);
    const winattn_layer *lp = fnull == 0 ? nullptr : layer;
    run_activation(r, L, true, bounded, batch, grid, fnull == 2, fnull == 1, fnull == 3, fnull != 0,
                   "layer_forward", use_ref ? &ref : nullptr,
                   [&](const float *in, const int64_t *g, float *out) {
                     return winattn_layer_forward(lp, in, batch, g, out);
                   });
  }
  winattn_layer_destroy(layer);
  winattn_layer_destroy(nullptr);
}

}  // namespace

void target_api(Reader &r) {
  for (int ops = 0; ops < kMaxOps && !r.done(); ++ops) {
    switch (r.u8() % 11) {
      case 0:
        op_misc(r);
        break;
      case 1:
        op_isa(r);
        break;
      case 2:
        op_threads(r);
        break;
      case 3:
        op_relative_position_index(r);
        break;
      case 4:
        op_relative_position_bias(r, false);
        break;
      case 5:
        op_relative_position_bias(r, true);
        break;
      case 6:
        op_cpb_table(r);
        break;
      case 7:
        op_shifted_window_mask(r);
        break;
      case 8:
        op_window_attention(r);
        break;
      case 9:
        op_stateless_layer(r);
        break;
      default:
        op_layer(r);
        break;
    }
  }
}

}  // namespace fz
