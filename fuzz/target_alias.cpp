// Target "alias": outputs placed in the same allocation as the inputs, overlapping one of them by a few
// floats or the whole range, or exactly adjacent. The contract: an output overlapping an input it names
// (window attention: q, k, v, bias, mask; layers: input; bias lookup: table; its gradient: grad_bias) is
// INVALID_ARGUMENT with the whole allocation untouched; adjacent buffers, and inputs aliasing each other
// (q == k == v, a bias inside v), are valid and must compute the right values.
#include <cstring>
#include <vector>

#include "fuzz_common.h"
#include "layer_model.h"
#include "oracle.h"
#include "targets.h"

namespace fz {
namespace {

bool overlap(const float *a, size_t a_n, const float *b, size_t b_n) {
  if (!a || !b || a_n == 0 || b_n == 0) return false;
  return a < b + b_n && b < a + a_n;
}

// An offset for an output of out_n floats next to a region of in_n floats at offset 0: exactly adjacent on
// either side, overlapping by one float at either end, or anywhere in between.
int64_t placement(Reader &r, int64_t out_n, int64_t in_n) {
  switch (r.u8() % 6) {
    case 0:
      return -out_n;  // ends where the input starts
    case 1:
      return in_n;  // starts where the input ends
    case 2:
      return -out_n + 1;  // last float on the input's first
    case 3:
      return in_n - 1;  // first float on the input's last
    case 4:
      return 0;
    default: {
      const int64_t span = in_n + out_n - 1;  // offsets -out_n+1 .. in_n-1 overlap
      return -out_n + 1 + static_cast<int64_t>(r.u16() % span);
    }
  }
}

void alias_window_attention(Reader &r) {
  const int64_t nw = 1 + r.u8() % 4, heads = 1 + r.u8() % 3, n = 1 + r.u8() % 24, hd = 1 + r.u8() % 16;
  const uint8_t opt = r.u8();
  const bool use_bias = opt & 1, use_mask = opt & 2;
  const int64_t mask_windows = 1 + (opt >> 4) % nw;
  const int64_t S = nw * heads * n * hd, B = heads * n * n, M = mask_windows * n * n;
  // Arena: [S spare][q][k][v][bias][mask][S spare]; out goes next to or over one of the regions.
  std::vector<float> arena(static_cast<size_t>(5 * S + B + M + 2 * S));
  fill(r, arena.data(), arena.size());
  float *q = arena.data() + S, *k = q + S, *v = k + S, *bias = v + S, *mask = bias + B;
  const uint8_t inputs = r.u8();
  if (inputs & 1) k = q;  // inputs may alias each other
  if (inputs & 2) v = q;
  if ((inputs & 4) && B <= 2 * S) bias = v + (S - B / 2);  // bias straddling the end of v
  if (use_mask && (inputs & 8)) mask = q + (r.u8() % (S + 1 > M ? S + 1 - M : 1));
  if (!use_bias) bias = nullptr;
  if (!use_mask) mask = nullptr;
  // Mask values are mostly 0 / -100.
  if (mask && !(inputs & 8))
    for (int64_t i = 0; i < M; ++i) mask[i] = (mix(static_cast<uint64_t>(i) ^ opt) % 3 == 0) ? -100.0f : 0.0f;
  const uint8_t where = r.u8() % 6;  // next to q, k, v, bias, mask or after everything
  float *region = where == 0           ? q
                  : where == 1         ? k
                  : where == 2         ? v
                  : where == 3 && bias ? bias
                  : where == 4 && mask ? mask
                                       : nullptr;
  const int64_t region_n = where <= 2 ? S : where == 3 ? B : M;
  float *out;
  if (region) {
    out = region + placement(r, S, region_n);
  } else {
    out = arena.data() + 4 * S + B + M;  // after the last input region: adjacent, valid
  }
  // Keep out inside the arena.
  if (out < arena.data()) out = arena.data();
  if (out + S > arena.data() + arena.size()) out = arena.data() + arena.size() - S;
  const bool invalid = overlap(out, S, q, S) || overlap(out, S, k, S) || overlap(out, S, v, S) ||
                       (bias && overlap(out, S, bias, B)) || (mask && overlap(out, S, mask, M));
  set_ctx(
      "winattn_window_attention(nw=%lld, heads=%lld, n=%lld, d=%lld, bias=%d, mask=%d) with out at float "
      "%lld of "
      "the arena (q %lld, k %lld, v %lld, bias %lld, mask %lld; sizes %lld, %lld, %lld): %s",
      (long long)nw, (long long)heads, (long long)n, (long long)hd, use_bias, use_mask,
      (long long)(out - arena.data()), (long long)(q - arena.data()), (long long)(k - arena.data()),
      (long long)(v - arena.data()), bias ? (long long)(bias - arena.data()) : -1LL,
      mask ? (long long)(mask - arena.data()) : -1LL, (long long)S, (long long)B, (long long)M,
      invalid ? "overlapping" : "separate");
  // Everything but out must stay; on failure out too.
  std::vector<float> before = arena;
  const float scale = 1.0f / static_cast<float>(hd);
  const std::string prev = last_msg();
  const winattn_status s =
      winattn_window_attention(nw, heads, n, hd, q, k, v, scale, bias, mask, mask_windows, out);
  check_status(s, invalid ? Expect::kFail : Expect::kOk, prev);
  if (invalid) {
    CHECK(s == WINATTN_STATUS_INVALID_ARGUMENT, "status %d", static_cast<int>(s));
    CHECK(std::memcmp(before.data(), arena.data(), arena.size() * sizeof(float)) == 0,
          "a rejected call modified memory");
    return;
  }
  const size_t out_at = static_cast<size_t>(out - arena.data());
  const size_t out_end = out_at + static_cast<size_t>(S);
  CHECK(std::memcmp(before.data(), arena.data(), out_at * sizeof(float)) == 0 &&
            std::memcmp(before.data() + out_end, arena.data() + out_end,
                        (arena.size() - out_end) * sizeof(float)) == 0,
        "memory outside out was modified");
  Rng rng = call_rng();
  check_window_attention(nw, heads, n, hd, q, k, v, scale, bias, mask, mask_windows, out, rng, 3, 3);
}

void alias_lookup(Reader &r, bool backward) {
  const int64_t rows = 1 + r.u8() % 32, heads = 1 + r.u8() % 4, n = 1 + r.u8() % 16;
  const int64_t T = rows * heads, B = heads * n * n;
  std::vector<int64_t> index(static_cast<size_t>(n * n));
  const uint64_t seed = r.u16();
  for (size_t i = 0; i < index.size(); ++i) index[i] = static_cast<int64_t>(mix(seed + i) % rows);
  // Arena: [spare][input][spare] with the output (bias; for the gradient grad_table) placed around the
  // input (table; for the gradient grad_bias).
  const int64_t in_n = backward ? B : T, out_n = backward ? T : B;
  std::vector<float> arena(static_cast<size_t>(in_n + 2 * out_n));
  fill(r, arena.data(), arena.size());
  float *fixed = arena.data() + out_n;
  float *moving = fixed + placement(r, out_n, in_n);
  if (moving < arena.data()) moving = arena.data();
  if (moving + out_n > arena.data() + arena.size()) moving = arena.data() + arena.size() - out_n;
  const bool invalid = overlap(moving, out_n, fixed, in_n);
  set_ctx(
      "winattn_relative_position_bias%s(rows=%lld, heads=%lld, n=%lld) output at float %lld, input at %lld: "
      "%s",
      backward ? "_backward" : "", (long long)rows, (long long)heads, (long long)n,
      (long long)(moving - arena.data()), (long long)(fixed - arena.data()),
      invalid ? "overlapping" : "separate");
  std::vector<float> before = arena;
  const std::string prev = last_msg();
  const winattn_status s =
      backward ? winattn_relative_position_bias_backward(fixed, rows, heads, index.data(), n, moving)
               : winattn_relative_position_bias(fixed, rows, heads, index.data(), n, moving);
  check_status(s, invalid ? Expect::kFail : Expect::kOk, prev);
  if (invalid) {
    CHECK(s == WINATTN_STATUS_INVALID_ARGUMENT, "status %d", static_cast<int>(s));
    CHECK(std::memcmp(before.data(), arena.data(), arena.size() * sizeof(float)) == 0,
          "a rejected call modified memory");
    return;
  }
  if (backward) return;  // values: target api
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t ij = 0; ij < n * n; ++ij) {
      const float want = before[static_cast<size_t>(fixed - arena.data() + index[ij] * heads + h)];
      CHECK(same_bits(&moving[h * n * n + ij], &want, 1), "bias[%lld][%lld] = %g, table %g", (long long)h,
            (long long)ij, moving[h * n * n + ij], want);
    }
}

void alias_layer(Reader &r) {
  ModelLimits limits;
  limits.max_heads = 2;
  limits.max_head_dim = 4;
  limits.max_window = 4;
  LayerModel m;
  read_model(r, limits, m);
  const bool stateless = r.u8() & 1;
  winattn_layer *layer = stateless ? nullptr : create_layer(m);
  int64_t batch = 1 + r.u8() % 2;
  int64_t grid[3];
  read_grid(r, m, 9, grid);
  fit_work(m, kSmallWork, &batch, grid);
  const int64_t E = static_cast<int64_t>(activation_size(m, batch, grid));
  std::vector<float> arena(static_cast<size_t>(3 * E));
  fill(r, arena.data(), arena.size());
  float *in = arena.data() + E;
  float *out = in + placement(r, E, E);
  const bool invalid = overlap(out, E, in, E);
  set_ctx("%s(%s, batch=%lld, grid={%lld,%lld,%lld}) output at float %lld, input at %lld (%lld floats): %s",
          stateless ? "shifted_window_attention" : "layer_forward", m.describe().c_str(), (long long)batch,
          (long long)grid[0], (long long)grid[1], (long long)grid[2], (long long)(out - arena.data()),
          (long long)E, (long long)E, invalid ? "overlapping" : "separate");
  std::vector<float> before = arena;
  const std::string prev = last_msg();
  const winattn_status s =
      stateless ? run_stateless(m, in, batch, grid, out) : winattn_layer_forward(layer, in, batch, grid, out);
  check_status(s, invalid ? Expect::kFail : Expect::kOk, prev);
  if (invalid) {
    CHECK(s == WINATTN_STATUS_INVALID_ARGUMENT, "status %d", static_cast<int>(s));
    CHECK(std::memcmp(before.data(), arena.data(), arena.size() * sizeof(float)) == 0,
          "a rejected call modified memory");
  } else {
    CHECK(std::memcmp(before.data() + E, in, static_cast<size_t>(E) * sizeof(float)) == 0, "input modified");
    Rng rng = call_rng();
    check_layer_tokens(m.ref(), batch, grid, in, out, rng, 2, int64_t(1) << 16, "adjacent output");
  }
  if (layer) destroy_layer(layer);
}

}  // namespace

void target_alias(Reader &r) {
  for (int step = 0; step < 4 && !r.done(); ++step) {
    switch (r.u8() % 6) {
      case 0:
      case 1:
      case 2:
        alias_window_attention(r);
        break;
      case 3:
        alias_lookup(r, false);
        break;
      case 4:
        alias_lookup(r, true);
        break;
      default:
        alias_layer(r);
        break;
    }
  }
}

}  // namespace fz
