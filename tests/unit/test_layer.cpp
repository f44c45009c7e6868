// The shifted-window attention layer from C++: winattn_shifted_window_attention and the prepacked
// winattn_layer against a float64 reference written from the header's semantics (torchvision's
// shifted_window_attention, axis by axis), and the invalid-description paths.
// (Bit-level torchvision parity is checked by the Python tests.)
#include "test_util.h"

#include <array>
#include <cmath>
#include <cstring>
#include <vector>

namespace {

using Triple = std::array<int64_t, 3>;

struct Spec {
  int64_t batch = 1;
  Triple grid{1, 1, 1};
  int64_t channels = 8, heads = 2;
  Triple window{1, 1, 1}, shift{0, 0, 0};
  std::vector<float> qkv_weight, qkv_bias, proj_weight, proj_bias;
  std::vector<float> table;        // v1 relative_position_bias_table [rows][heads]
  std::vector<float> logit_scale;  // v2
  std::vector<float> cpb_w1, cpb_b1, cpb_w2;
  int64_t cpb_hidden = 0;
  int64_t tokens() const { return window[0] * window[1] * window[2]; }
  size_t input_size() const { return static_cast<size_t>(batch * grid[0] * grid[1] * grid[2] * channels); }
};

Spec make_spec(wt::Rng &rng, int64_t batch, Triple grid, int64_t channels, int64_t heads, Triple window,
               Triple shift, bool biases, bool table, bool v2) {
  Spec s;
  s.batch = batch, s.grid = grid, s.channels = channels, s.heads = heads, s.window = window, s.shift = shift;
  const float a = 1.0f / std::sqrt(static_cast<float>(channels));
  s.qkv_weight = rng.vec(3 * channels * channels, -a, a);
  s.proj_weight = rng.vec(channels * channels, -a, a);
  if (biases) {
    s.qkv_bias = rng.vec(3 * channels, -0.5f, 0.5f);
    s.proj_bias = rng.vec(channels, -0.5f, 0.5f);
  }
  if (table && !v2) {
    const int64_t rows = (2 * window[0] - 1) * (2 * window[1] - 1) * (2 * window[2] - 1);
    s.table = rng.vec(rows * heads, -2.0f, 2.0f);
  }
  if (v2) {
    s.logit_scale = rng.vec(heads, 0.5f, 5.0f);  // exp: 1.6 .. 148 (the latter clamped at 100)
    if (table) {
      s.cpb_hidden = 16;
      s.cpb_w1 = rng.vec(16 * 2, -1.0f, 1.0f);
      s.cpb_b1 = rng.vec(16, -1.0f, 1.0f);
      s.cpb_w2 = rng.vec(heads * 16, -0.5f, 0.5f);
    }
  }
  return s;
}

// [heads][N][N] bias in float64, from the v1 table or the v2 continuous position bias MLP.
std::vector<double> reference_bias(const Spec &s) {
  const int64_t n = s.tokens(), H = s.heads;
  std::vector<double> bias;
  if (s.table.empty() && s.cpb_w1.empty()) return bias;
  bias.resize(H * n * n);
  std::vector<Triple> coords;
  for (int64_t d = 0; d < s.window[0]; ++d)
    for (int64_t h = 0; h < s.window[1]; ++h)
      for (int64_t w = 0; w < s.window[2]; ++w) coords.push_back({d, h, w});
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      const int64_t dd = coords[i][0] - coords[j][0], dh = coords[i][1] - coords[j][1],
                    dw = coords[i][2] - coords[j][2];
      if (!s.table.empty()) {
        const int64_t row = ((dd + s.window[0] - 1) * (2 * s.window[1] - 1) + (dh + s.window[1] - 1)) *
                                (2 * s.window[2] - 1) +
                            (dw + s.window[2] - 1);
        for (int64_t h = 0; h < H; ++h) bias[(h * n + i) * n + j] = s.table[row * H + h];
      } else {
        auto transform = [](double x, int64_t w) {
          if (w > 1) x /= double(w - 1);
          x *= 8.0;
          return (x > 0 ? 1.0 : x < 0 ? -1.0 : 0.0) * std::log2(std::fabs(x) + 1.0) / 3.0;
        };
        const double ch = transform(double(dh), s.window[1]), cw = transform(double(dw), s.window[2]);
        for (int64_t h = 0; h < H; ++h) {
          double y = 0.0;
          for (int64_t k = 0; k < s.cpb_hidden; ++k) {
            const double z = s.cpb_w1[k * 2] * ch + s.cpb_w1[k * 2 + 1] * cw + s.cpb_b1[k];
            y += s.cpb_w2[h * s.cpb_hidden + k] * (z > 0 ? z : 0.0);
          }
          bias[(h * n + i) * n + j] = 16.0 / (1.0 + std::exp(-y));
        }
      }
    }
  return bias;
}

int region(int64_t x, int64_t g, int64_t w, int64_t s) {
  if (x >= g - s) return 2;
  if (x >= g - w) return 1;
  return 0;
}

// float64 reference of the layer.
std::vector<double> reference_layer(const Spec &s, const std::vector<float> &input) {
  const int64_t C = s.channels, H = s.heads, hd = C / H, n = s.tokens();
  Triple P, sh;
  for (int a = 0; a < 3; ++a) {
    P[a] = (s.grid[a] + s.window[a] - 1) / s.window[a] * s.window[a];
    sh[a] = s.window[a] >= P[a] ? 0 : s.shift[a];
  }
  const bool masked = sh[0] + sh[1] + sh[2] > 0;
  const bool v2 = !s.logit_scale.empty();
  const auto bias = reference_bias(s);
  std::vector<double> output(input.size());
  const size_t plane = static_cast<size_t>(P[0] * P[1] * P[2]);
  for (int64_t b = 0; b < s.batch; ++b) {
    // Shifted, padded grid: shifted[p] = padded[(p + s) % P].
    std::vector<double> shifted(plane * C, 0.0), result(plane * C, 0.0);
    std::vector<int> label(plane);
    for (int64_t d = 0; d < P[0]; ++d)
      for (int64_t h = 0; h < P[1]; ++h)
        for (int64_t w = 0; w < P[2]; ++w) {
          const size_t at = static_cast<size_t>((d * P[1] + h) * P[2] + w);
          label[at] = (region(d, P[0], s.window[0], sh[0]) * 3 + region(h, P[1], s.window[1], sh[1])) * 3 +
                      region(w, P[2], s.window[2], sh[2]);
          const int64_t sd = (d + sh[0]) % P[0], shh = (h + sh[1]) % P[1], sw = (w + sh[2]) % P[2];
          if (sd < s.grid[0] && shh < s.grid[1] && sw < s.grid[2])
            for (int64_t c = 0; c < C; ++c)
              shifted[at * C + c] =
                  input[(((b * s.grid[0] + sd) * s.grid[1] + shh) * s.grid[2] + sw) * C + c];
        }
    for (int64_t wd = 0; wd < P[0] / s.window[0]; ++wd)
      for (int64_t wh = 0; wh < P[1] / s.window[1]; ++wh)
        for (int64_t ww = 0; ww < P[2] / s.window[2]; ++ww) {
          std::vector<size_t> pos;
          for (int64_t a = 0; a < s.window[0]; ++a)
            for (int64_t c = 0; c < s.window[1]; ++c)
              for (int64_t e = 0; e < s.window[2]; ++e)
                pos.push_back(static_cast<size_t>(
                    ((wd * s.window[0] + a) * P[1] + wh * s.window[1] + c) * P[2] + ww * s.window[2] + e));
          std::vector<double> qkv(n * 3 * C), o(n * C, 0.0);
          for (int64_t t = 0; t < n; ++t)
            for (int64_t r = 0; r < 3 * C; ++r) {
              double acc = 0.0;
              if (!s.qkv_bias.empty() && !(v2 && r >= C && r < 2 * C)) acc = s.qkv_bias[r];
              for (int64_t c = 0; c < C; ++c)
                acc += double(s.qkv_weight[r * C + c]) * shifted[pos[t] * C + c];
              qkv[t * 3 * C + r] = acc;
            }
          for (int64_t h = 0; h < H; ++h) {
            auto q = [&](int64_t t, int64_t c) { return qkv[t * 3 * C + h * hd + c]; };
            auto k = [&](int64_t t, int64_t c) { return qkv[t * 3 * C + C + h * hd + c]; };
            auto v = [&](int64_t t, int64_t c) { return qkv[t * 3 * C + 2 * C + h * hd + c]; };
            std::vector<double> qn(n, 1.0), kn(n, 1.0);
            if (v2)
              for (int64_t t = 0; t < n; ++t) {
                double a = 0, bb = 0;
                for (int64_t c = 0; c < hd; ++c) a += q(t, c) * q(t, c), bb += k(t, c) * k(t, c);
                qn[t] = std::max(std::sqrt(a), 1e-12);
                kn[t] = std::max(std::sqrt(bb), 1e-12);
              }
            const double factor = v2 ? std::exp(std::min(double(s.logit_scale[h]), std::log(100.0)))
                                     : 1.0 / std::sqrt(double(hd));
            for (int64_t i = 0; i < n; ++i) {
              std::vector<double> logit(n);
              double mx = -INFINITY;
              for (int64_t j = 0; j < n; ++j) {
                double dot = 0.0;
                for (int64_t c = 0; c < hd; ++c) dot += q(i, c) * k(j, c);
                double l = v2 ? dot / (qn[i] * kn[j]) * factor : dot * factor;
                if (!bias.empty()) l += bias[(h * n + i) * n + j];
                if (masked && label[pos[i]] != label[pos[j]]) l += -100.0;
                logit[j] = l;
                mx = std::max(mx, l);
              }
              double den = 0.0;
              for (int64_t j = 0; j < n; ++j) den += logit[j] = std::exp(logit[j] - mx);
              for (int64_t j = 0; j < n; ++j)
                for (int64_t c = 0; c < hd; ++c) o[i * C + h * hd + c] += logit[j] / den * v(j, c);
            }
          }
          for (int64_t t = 0; t < n; ++t)
            for (int64_t r = 0; r < C; ++r) {
              double acc = s.proj_bias.empty() ? 0.0 : s.proj_bias[r];
              for (int64_t c = 0; c < C; ++c) acc += double(s.proj_weight[r * C + c]) * o[t * C + c];
              result[pos[t] * C + r] = acc;
            }
        }
    // Undo the shift (out[(p + s) % P] = result[p]) and crop.
    for (int64_t d = 0; d < P[0]; ++d)
      for (int64_t h = 0; h < P[1]; ++h)
        for (int64_t w = 0; w < P[2]; ++w) {
          const int64_t od = (d + sh[0]) % P[0], oh = (h + sh[1]) % P[1], ow = (w + sh[2]) % P[2];
          if (od >= s.grid[0] || oh >= s.grid[1] || ow >= s.grid[2]) continue;
          for (int64_t c = 0; c < C; ++c)
            output[(((b * s.grid[0] + od) * s.grid[1] + oh) * s.grid[2] + ow) * C + c] =
                result[((d * P[1] + h) * P[2] + w) * C + c];
        }
  }
  return output;
}

const float *ptr(const std::vector<float> &x) {
  return x.empty() ? nullptr : x.data();
}

winattn_layer_desc desc_of(const Spec &s) {
  winattn_layer_desc d;
  std::memset(&d, 0, sizeof d);
  d.channels = s.channels;
  d.num_heads = s.heads;
  for (int a = 0; a < 3; ++a) d.window[a] = s.window[a], d.shift[a] = s.shift[a];
  d.qkv_weight = ptr(s.qkv_weight);
  d.qkv_bias = ptr(s.qkv_bias);
  d.proj_weight = ptr(s.proj_weight);
  d.proj_bias = ptr(s.proj_bias);
  d.relative_position_bias_table = ptr(s.table);
  d.logit_scale = ptr(s.logit_scale);
  d.cpb_weight1 = ptr(s.cpb_w1);
  d.cpb_bias1 = ptr(s.cpb_b1);
  d.cpb_weight2 = ptr(s.cpb_w2);
  d.cpb_hidden = s.cpb_hidden;
  d.compute_dtype = WINATTN_DTYPE_F32;
  d.flags = 0;
  return d;
}

// The bias looked up through the library's own foundation functions, for winattn_shifted_window_attention.
std::vector<float> library_bias(const Spec &s) {
  const int64_t n = s.tokens();
  std::vector<float> table = s.table;
  if (!s.cpb_w1.empty()) {
    table.resize((2 * s.window[1] - 1) * (2 * s.window[2] - 1) * s.heads);
    REQUIRE(winattn_continuous_position_bias_table(s.window[1], s.window[2], s.cpb_w1.data(), s.cpb_b1.data(),
                                                   s.cpb_w2.data(), s.cpb_hidden, s.heads,
                                                   table.data()) == WINATTN_STATUS_OK);
  }
  if (table.empty()) return {};
  std::vector<int64_t> index(n * n);
  REQUIRE(winattn_relative_position_index(3, s.window.data(), index.data()) == WINATTN_STATUS_OK);
  std::vector<float> bias(s.heads * n * n);
  const int64_t rows = static_cast<int64_t>(table.size()) / s.heads;
  REQUIRE(winattn_relative_position_bias(table.data(), rows, s.heads, index.data(), n, bias.data()) ==
          WINATTN_STATUS_OK);
  return bias;
}

winattn_window_attention_args args_of(const Spec &s, const std::vector<float> &bias) {
  winattn_window_attention_args a;
  std::memset(&a, 0, sizeof a);
  a.batch = s.batch;
  for (int i = 0; i < 3; ++i) a.grid[i] = s.grid[i], a.window[i] = s.window[i], a.shift[i] = s.shift[i];
  a.channels = s.channels;
  a.num_heads = s.heads;
  a.qkv_weight = ptr(s.qkv_weight);
  a.qkv_bias = ptr(s.qkv_bias);
  a.proj_weight = ptr(s.proj_weight);
  a.proj_bias = ptr(s.proj_bias);
  a.relative_position_bias = ptr(bias);
  a.logit_scale = ptr(s.logit_scale);
  a.flags = 0;
  return a;
}

double max_diff(const std::vector<float> &a, const std::vector<double> &b) {
  double worst = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    worst = std::max(worst, std::fabs(double(a[i]) - b[i]));
  }
  return worst;
}

double max_abs_d(const std::vector<double> &x) {
  double m = 0.0;
  for (double v : x) m = std::max(m, std::fabs(v));
  return m;
}

void check_spec(const Spec &s) {
  wt::Rng rng(99);
  const auto input = rng.vec(s.input_size(), -2.0f, 2.0f);
  const auto expected = reference_layer(s, input);
  const double scale = max_abs_d(expected);
  REQUIRE(scale > 0.0);

  const auto bias = library_bias(s);
  const auto args = args_of(s, bias);
  std::vector<float> stateless(input.size(), 3.0f);
  REQUIRE_MESSAGE(
      winattn_shifted_window_attention(&args, input.data(), stateless.data()) == WINATTN_STATUS_OK,
      winattn_last_error_message());

  const auto desc = desc_of(s);
  winattn_layer *layer = nullptr;
  REQUIRE_MESSAGE(winattn_layer_create(&desc, &layer) == WINATTN_STATUS_OK, winattn_last_error_message());
  REQUIRE(layer != nullptr);
  std::vector<float> prepacked(input.size(), 4.0f);
  REQUIRE_MESSAGE(winattn_layer_forward(layer, input.data(), s.batch, s.grid.data(), prepacked.data()) ==
                      WINATTN_STATUS_OK,
                  winattn_last_error_message());
  // A second forward on the same layer gives the same bits.
  std::vector<float> again(input.size(), 5.0f);
  REQUIRE(winattn_layer_forward(layer, input.data(), s.batch, s.grid.data(), again.data()) ==
          WINATTN_STATUS_OK);
  winattn_layer_destroy(layer);

  const double err_stateless = max_diff(stateless, expected);
  const double err_layer = max_diff(prepacked, expected);
  CHECK_MESSAGE(err_stateless <= 2e-5 * scale, "stateless vs float64 reference: " << err_stateless);
  CHECK_MESSAGE(err_layer <= 2e-5 * scale, "layer vs float64 reference: " << err_layer);
  const double layer_vs_stateless =
      max_diff(prepacked, std::vector<double>(stateless.begin(), stateless.end()));
  CHECK_MESSAGE(layer_vs_stateless <= 1e-5 * scale,
                "layer vs shifted_window_attention: " << layer_vs_stateless);
  CHECK(std::memcmp(prepacked.data(), again.data(), again.size() * sizeof(float)) == 0);
}

}  // namespace

TEST_CASE("layer v1: 2D, shifted, with biases") {
  wt::Rng rng(301);
  check_spec(make_spec(rng, 2, {1, 8, 8}, 16, 2, {1, 4, 4}, {0, 2, 2}, true, true, false));
}

TEST_CASE("layer v1: 2D, unshifted, no biases, no table") {
  wt::Rng rng(302);
  check_spec(make_spec(rng, 1, {1, 8, 12}, 12, 3, {1, 4, 4}, {0, 0, 0}, false, false, false));
}

TEST_CASE("layer v1: 2D, padding and one shifted axis") {
  wt::Rng rng(303);
  check_spec(make_spec(rng, 2, {1, 9, 7}, 8, 2, {1, 4, 4}, {0, 2, 2}, true, true, false));
  check_spec(make_spec(rng, 1, {1, 8, 8}, 8, 1, {1, 4, 4}, {0, 0, 2}, true, true, false));
}

TEST_CASE("layer v1: window larger than the padded axis takes shift 0 there") {
  wt::Rng rng(304);
  check_spec(make_spec(rng, 1, {1, 3, 10}, 8, 2, {1, 4, 4}, {0, 2, 2}, true, true, false));
  check_spec(make_spec(rng, 1, {1, 7, 7}, 8, 2, {1, 7, 7}, {0, 3, 3}, true, true, false));
}

TEST_CASE("layer v1: 3D (Video Swin)") {
  wt::Rng rng(305);
  check_spec(make_spec(rng, 1, {4, 8, 8}, 12, 3, {2, 4, 4}, {1, 2, 2}, true, true, false));
  check_spec(make_spec(rng, 2, {3, 4, 6}, 8, 2, {2, 2, 4}, {1, 1, 2}, false, true, false));
}

TEST_CASE("layer v2: cosine attention with continuous position bias") {
  wt::Rng rng(306);
  check_spec(make_spec(rng, 2, {1, 8, 8}, 16, 2, {1, 4, 4}, {0, 2, 2}, true, true, true));
  check_spec(make_spec(rng, 1, {1, 6, 9}, 8, 2, {1, 3, 3}, {0, 1, 1}, true, false, true));
}

TEST_CASE("layer: forward accepts other batch sizes and grids than the first call") {
  wt::Rng rng(307);
  Spec s = make_spec(rng, 1, {1, 8, 8}, 8, 2, {1, 4, 4}, {0, 2, 2}, true, true, false);
  const auto desc = desc_of(s);
  winattn_layer *layer = nullptr;
  REQUIRE(winattn_layer_create(&desc, &layer) == WINATTN_STATUS_OK);
  for (Triple grid : {Triple{1, 8, 8}, Triple{1, 4, 12}, Triple{1, 5, 5}}) {
    for (int64_t batch : {1, 3}) {
      s.grid = grid;
      s.batch = batch;
      const auto input = rng.vec(s.input_size());
      const auto expected = reference_layer(s, input);
      std::vector<float> out(input.size());
      REQUIRE(winattn_layer_forward(layer, input.data(), batch, grid.data(), out.data()) ==
              WINATTN_STATUS_OK);
      CHECK(max_diff(out, expected) <= 2e-5 * max_abs_d(expected));
    }
  }
  winattn_layer_destroy(layer);
}

TEST_CASE("layer_create rejects invalid descriptions and leaves *layer alone") {
  wt::Rng rng(308);
  const Spec v1 = make_spec(rng, 1, {1, 8, 8}, 16, 2, {1, 4, 4}, {0, 2, 2}, true, true, false);
  const Spec v2 = make_spec(rng, 1, {1, 8, 8}, 16, 2, {1, 4, 4}, {0, 2, 2}, true, true, true);
  winattn_layer *const kUntouched = reinterpret_cast<winattn_layer *>(uintptr_t{0x1234});
  auto expect_status = [&](const winattn_layer_desc &d, winattn_status expected, const char *what) {
    winattn_layer *layer = kUntouched;
    CHECK_MESSAGE(winattn_layer_create(&d, &layer) == expected, what);
    CHECK_MESSAGE(std::strlen(winattn_last_error_message()) > 0, what);
    CHECK_MESSAGE(layer == kUntouched, what);
  };
  const winattn_status INVALID = WINATTN_STATUS_INVALID_ARGUMENT;
  {
    winattn_layer *layer = kUntouched;
    CHECK(winattn_layer_create(nullptr, &layer) == INVALID);
    CHECK(layer == kUntouched);
    const auto d = desc_of(v1);
    CHECK(winattn_layer_create(&d, nullptr) == INVALID);
  }
  auto d = desc_of(v1);
  d.qkv_weight = nullptr;
  expect_status(d, INVALID, "qkv_weight NULL");
  d = desc_of(v1);
  d.proj_weight = nullptr;
  expect_status(d, INVALID, "proj_weight NULL");
  d = desc_of(v1);
  d.num_heads = 3;
  expect_status(d, INVALID, "channels % heads != 0");
  d = desc_of(v1);
  d.channels = 0;
  expect_status(d, INVALID, "channels 0");
  d = desc_of(v1);
  d.num_heads = 0;
  expect_status(d, INVALID, "heads 0");
  d = desc_of(v1);
  d.num_heads = -2;
  expect_status(d, INVALID, "heads < 0");
  d = desc_of(v1);
  d.window[1] = 0;
  expect_status(d, INVALID, "window 0");
  d = desc_of(v1);
  d.shift[2] = 4;
  expect_status(d, INVALID, "shift == window");
  d = desc_of(v1);
  d.shift[1] = -1;
  expect_status(d, INVALID, "shift < 0");
  d = desc_of(v1);
  d.shift[0] = 1;
  expect_status(d, INVALID, "depth shift with depth window 1");
  d = desc_of(v1);
  d.flags = 1;
  expect_status(d, INVALID, "flags != 0");
  d = desc_of(v1);
  d.compute_dtype = static_cast<winattn_dtype>(7);
  expect_status(d, INVALID, "compute_dtype 7");
  d = desc_of(v1);
  d.channels = INT64_MAX / 2;
  d.num_heads = 1;
  expect_status(d, INVALID, "channels overflowing");
  // Inconsistent v1/v2 descriptions.
  d = desc_of(v1);
  d.logit_scale = v2.logit_scale.data();
  expect_status(d, INVALID, "v1 table together with logit_scale");
  d = desc_of(v1);
  d.relative_position_bias_table = nullptr;
  d.cpb_weight1 = v2.cpb_w1.data();
  d.cpb_bias1 = v2.cpb_b1.data();
  d.cpb_weight2 = v2.cpb_w2.data();
  d.cpb_hidden = v2.cpb_hidden;
  expect_status(d, INVALID, "cpb weights without logit_scale");
  d = desc_of(v2);
  d.cpb_hidden = 0;
  expect_status(d, INVALID, "cpb weights with hidden 0");
  d = desc_of(v2);
  d.cpb_weight2 = nullptr;
  expect_status(d, INVALID, "cpb_weight2 missing");
  d = desc_of(v2);
  d.window[0] = 2;
  expect_status(d, INVALID, "cpb with a 3D window");
  // BF16: UNSUPPORTED in this version, or OK and then close to F32.
  d = desc_of(v1);
  d.compute_dtype = WINATTN_DTYPE_BF16;
  winattn_layer *layer = kUntouched;
  const winattn_status bf16 = winattn_layer_create(&d, &layer);
  CHECK((bf16 == WINATTN_STATUS_UNSUPPORTED || bf16 == WINATTN_STATUS_OK));
  if (bf16 == WINATTN_STATUS_UNSUPPORTED) {
    CHECK(layer == kUntouched);
    CHECK(std::strlen(winattn_last_error_message()) > 0);
  } else {
    Spec s = v1;
    const auto input = rng.vec(s.input_size());
    const auto expected = reference_layer(s, input);
    std::vector<float> out(input.size());
    CHECK(winattn_layer_forward(layer, input.data(), s.batch, s.grid.data(), out.data()) ==
          WINATTN_STATUS_OK);
    CHECK(max_diff(out, expected) <= 3e-2 * max_abs_d(expected));
    winattn_layer_destroy(layer);
  }
  winattn_layer_destroy(nullptr);  // a no-op
}

TEST_CASE("layer_forward rejects invalid arguments and leaves output untouched") {
  wt::Rng rng(309);
  const Spec s = make_spec(rng, 2, {1, 8, 8}, 8, 2, {1, 4, 4}, {0, 2, 2}, true, true, false);
  const auto desc = desc_of(s);
  winattn_layer *layer = nullptr;
  REQUIRE(winattn_layer_create(&desc, &layer) == WINATTN_STATUS_OK);
  const auto input = rng.vec(s.input_size());
  auto out = wt::sentinel_buffer<float>(s.input_size());
  const int64_t grid[3] = {1, 8, 8};
  WT_CHECK_INVALID(winattn_layer_forward(nullptr, input.data(), 2, grid, out.data()), out);
  WT_CHECK_INVALID(winattn_layer_forward(layer, nullptr, 2, grid, out.data()), out);
  WT_CHECK_INVALID(winattn_layer_forward(layer, input.data(), 2, nullptr, out.data()), out);
  CHECK(winattn_layer_forward(layer, input.data(), 2, grid, nullptr) == WINATTN_STATUS_INVALID_ARGUMENT);
  WT_CHECK_INVALID(winattn_layer_forward(layer, input.data(), 0, grid, out.data()), out);
  WT_CHECK_INVALID(winattn_layer_forward(layer, input.data(), -1, grid, out.data()), out);
  const int64_t bad_grids[][3] = {{0, 8, 8}, {1, 0, 8}, {1, 8, -8}, {1, INT64_MAX / 2, INT64_MAX / 2}};
  for (const auto &g : bad_grids)
    WT_CHECK_INVALID(winattn_layer_forward(layer, input.data(), 2, g, out.data()), out);
  WT_CHECK_INVALID(winattn_layer_forward(layer, input.data(), INT64_MAX / 2, grid, out.data()), out);
  // output overlapping input.
  std::vector<float> both(2 * s.input_size());
  std::copy(input.begin(), input.end(), both.begin());
  const auto before = both;
  for (size_t offset : {size_t{0}, size_t{1}, s.input_size() - 1}) {
    CHECK(winattn_layer_forward(layer, both.data(), 2, grid, both.data() + offset) ==
          WINATTN_STATUS_INVALID_ARGUMENT);
    CHECK(both == before);
  }
  winattn_layer_destroy(layer);
}

TEST_CASE("shifted_window_attention rejects invalid arguments and leaves output untouched") {
  wt::Rng rng(310);
  const Spec s = make_spec(rng, 2, {1, 8, 8}, 8, 2, {1, 4, 4}, {0, 2, 2}, true, true, false);
  const auto bias = library_bias(s);
  const auto input = rng.vec(s.input_size());
  auto out = wt::sentinel_buffer<float>(s.input_size());
  const auto good = args_of(s, bias);
  WT_CHECK_INVALID(winattn_shifted_window_attention(nullptr, input.data(), out.data()), out);
  WT_CHECK_INVALID(winattn_shifted_window_attention(&good, nullptr, out.data()), out);
  CHECK(winattn_shifted_window_attention(&good, input.data(), nullptr) == WINATTN_STATUS_INVALID_ARGUMENT);
  auto bad = good;
  auto expect_invalid = [&](const winattn_window_attention_args &a, const char *what) {
    CAPTURE(what);
    WT_CHECK_INVALID(winattn_shifted_window_attention(&a, input.data(), out.data()), out);
  };
  bad = good, bad.qkv_weight = nullptr, expect_invalid(bad, "qkv_weight NULL");
  bad = good, bad.proj_weight = nullptr, expect_invalid(bad, "proj_weight NULL");
  bad = good, bad.batch = 0, expect_invalid(bad, "batch 0");
  bad = good, bad.grid[1] = 0, expect_invalid(bad, "grid 0");
  bad = good, bad.grid[0] = -1, expect_invalid(bad, "grid < 0");
  bad = good, bad.channels = 0, expect_invalid(bad, "channels 0");
  bad = good, bad.num_heads = 0, expect_invalid(bad, "heads 0");
  bad = good, bad.num_heads = 3, expect_invalid(bad, "channels % heads");
  bad = good, bad.window[2] = 0, expect_invalid(bad, "window 0");
  bad = good, bad.shift[1] = 4, expect_invalid(bad, "shift == window");
  bad = good, bad.shift[2] = -1, expect_invalid(bad, "shift < 0");
  bad = good, bad.flags = 2, expect_invalid(bad, "flags");
  bad = good, bad.batch = INT64_MAX / 2, expect_invalid(bad, "batch overflowing");
  bad = good, bad.grid[1] = INT64_MAX / 4, bad.grid[2] = INT64_MAX / 4,
  expect_invalid(bad, "grid overflowing");
  bad = good, bad.window[1] = int64_t{1} << 32, bad.window[2] = int64_t{1} << 32, bad.shift[1] = 0,
  bad.shift[2] = 0;
  expect_invalid(bad, "window overflowing");
  // output overlapping input.
  std::vector<float> both(2 * s.input_size());
  std::copy(input.begin(), input.end(), both.begin());
  const auto before = both;
  for (size_t offset : {size_t{0}, size_t{3}}) {
    CHECK(winattn_shifted_window_attention(&good, both.data(), both.data() + offset) ==
          WINATTN_STATUS_INVALID_ARGUMENT);
    CHECK(both == before);
  }
}
