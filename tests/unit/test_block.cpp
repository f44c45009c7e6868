// The Swin transformer block (winattn_block_*) from C++, against a float64 reference of the block written
// here from the header's formulas: per window of the padded, cyclically shifted grid, the tokens are looked
// up in the (normed) feature map, attended, projected and written back, so no roll or partition tensor is
// formed (a formulation of its own, not the layer test's). v1 (pre-norm) and v2 (res-post-norm), 2D and 3D,
// shifted or not, grids that need padding, batch 1 and 3; bits across thread counts and budgets; every
// invalid description and argument. (Parity with torchvision's modules is checked by the Python tests.)
#include "test_util.h"

#include <array>
#include <cmath>
#include <cstring>
#include <thread>
#include <vector>

namespace {

using Triple = std::array<int64_t, 3>;

struct BlockSpec {
  int64_t batch = 1;
  Triple grid{1, 1, 1};
  int64_t channels = 8, heads = 2, hidden = 32;
  Triple window{1, 1, 1}, shift{0, 0, 0};
  bool cosine = false;     // v2 attention: logit_scale and the continuous position bias
  bool post_norm = false;  // v2 norm order
  float eps = 1e-5f;       // as passed (0 selects 1e-5)
  std::vector<float> qkv_w, qkv_b, proj_w, proj_b, table, logit_scale, cpb_w1, cpb_b1, cpb_w2;
  std::vector<float> norm1_w, norm1_b, norm2_w, norm2_b, fc1_w, fc1_b, fc2_w, fc2_b;
  int64_t cpb_hidden = 0;
  int64_t tokens() const { return window[0] * window[1] * window[2]; }
  size_t size() const { return static_cast<size_t>(batch * grid[0] * grid[1] * grid[2] * channels); }
};

BlockSpec make_block(uint64_t seed, int64_t batch, Triple grid, int64_t channels, int64_t heads,
                     Triple window, Triple shift, bool cosine, bool post_norm, bool biases = true) {
  wt::Rng rng(seed);
  BlockSpec s;
  s.batch = batch, s.grid = grid, s.channels = channels, s.heads = heads, s.window = window, s.shift = shift;
  s.cosine = cosine, s.post_norm = post_norm, s.hidden = 4 * channels;
  const int64_t c = channels, h = s.hidden;
  const float a = 1.0f / std::sqrt(static_cast<float>(c)), b = 1.0f / std::sqrt(static_cast<float>(h));
  s.qkv_w = rng.vec(3 * c * c, -a, a);
  s.proj_w = rng.vec(c * c, -a, a);
  s.fc1_w = rng.vec(h * c, -a, a);
  s.fc2_w = rng.vec(c * h, -b, b);
  s.norm1_w = rng.vec(c, 0.5f, 1.5f);
  s.norm1_b = rng.vec(c, -0.5f, 0.5f);  // non-zero beta: padding must enter the attention as zeros
  s.norm2_w = rng.vec(c, 0.5f, 1.5f);
  s.norm2_b = rng.vec(c, -0.5f, 0.5f);
  if (biases) {
    s.qkv_b = rng.vec(3 * c, -0.5f, 0.5f);
    s.proj_b = rng.vec(c, -0.5f, 0.5f);
    s.fc1_b = rng.vec(h, -0.5f, 0.5f);
    s.fc2_b = rng.vec(c, -0.5f, 0.5f);
  }
  if (!cosine) {
    s.table = rng.vec((2 * window[0] - 1) * (2 * window[1] - 1) * (2 * window[2] - 1) * heads, -2.0f, 2.0f);
  } else {
    s.logit_scale = rng.vec(heads, 0.5f, 5.0f);
    if (window[0] == 1) {  // the continuous position bias is 2D only
      s.cpb_hidden = 16;
      s.cpb_w1 = rng.vec(16 * 2, -1.0f, 1.0f);
      s.cpb_b1 = rng.vec(16, -1.0f, 1.0f);
      s.cpb_w2 = rng.vec(heads * 16, -0.5f, 0.5f);
    }
  }
  return s;
}

const float *ptr(const std::vector<float> &x) {
  return x.empty() ? nullptr : x.data();
}

winattn_block_desc desc_of(const BlockSpec &s) {
  winattn_block_desc d;
  std::memset(&d, 0, sizeof d);
  winattn_layer_desc &a = d.attention;
  a.channels = s.channels;
  a.num_heads = s.heads;
  for (int i = 0; i < 3; ++i) a.window[i] = s.window[i], a.shift[i] = s.shift[i];
  a.qkv_weight = ptr(s.qkv_w);
  a.qkv_bias = ptr(s.qkv_b);
  a.proj_weight = ptr(s.proj_w);
  a.proj_bias = ptr(s.proj_b);
  a.relative_position_bias_table = ptr(s.table);
  a.logit_scale = ptr(s.logit_scale);
  a.cpb_weight1 = ptr(s.cpb_w1);
  a.cpb_bias1 = ptr(s.cpb_b1);
  a.cpb_weight2 = ptr(s.cpb_w2);
  a.cpb_hidden = s.cpb_hidden;
  a.compute_dtype = WINATTN_DTYPE_F32;
  d.norm1_weight = ptr(s.norm1_w);
  d.norm1_bias = ptr(s.norm1_b);
  d.norm2_weight = ptr(s.norm2_w);
  d.norm2_bias = ptr(s.norm2_b);
  d.norm_eps = s.eps;
  d.post_norm = s.post_norm ? 1 : 0;
  d.mlp_hidden = s.hidden;
  d.fc1_weight = ptr(s.fc1_w);
  d.fc1_bias = ptr(s.fc1_b);
  d.fc2_weight = ptr(s.fc2_w);
  d.fc2_bias = ptr(s.fc2_b);
  return d;
}

// ---- float64 reference ------------------------------------------------------------------------------------

using Map = std::vector<double>;  // [batch][D][H][W][C]

// LayerNorm of every token row, biased variance.
Map layer_norm(const Map &x, int64_t c, const std::vector<float> &w, const std::vector<float> &b,
               double eps) {
  Map y(x.size());
  for (size_t row = 0; row < x.size() / c; ++row) {
    const double *in = &x[row * c];
    double mean = 0.0, var = 0.0;
    for (int64_t i = 0; i < c; ++i) mean += in[i] / c;
    for (int64_t i = 0; i < c; ++i) var += (in[i] - mean) * (in[i] - mean) / c;
    for (int64_t i = 0; i < c; ++i) y[row * c + i] = (in[i] - mean) / std::sqrt(var + eps) * w[i] + b[i];
  }
  return y;
}

// y = x W^T + b per row, W [out][in].
Map linear(const Map &x, int64_t in, int64_t out, const std::vector<float> &w, const std::vector<float> &b) {
  const size_t rows = x.size() / in;
  Map y(rows * out);
  for (size_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double acc = b.empty() ? 0.0 : b[o];
      for (int64_t i = 0; i < in; ++i) acc += double(w[o * in + i]) * x[r * in + i];
      y[r * out + o] = acc;
    }
  return y;
}

double gelu(double v) {
  return 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
}

// The relative position bias of query i and key j of a window, head h (v1 table or v2 continuous bias).
double position_bias(const BlockSpec &s, const Triple &qi, const Triple &kj, int64_t h) {
  const int64_t dd = qi[0] - kj[0], dh = qi[1] - kj[1], dw = qi[2] - kj[2];
  if (!s.table.empty()) {
    const int64_t row =
        ((dd + s.window[0] - 1) * (2 * s.window[1] - 1) + dh + s.window[1] - 1) * (2 * s.window[2] - 1) + dw +
        s.window[2] - 1;
    return s.table[row * s.heads + h];
  }
  if (s.cpb_w1.empty()) return 0.0;
  auto coord = [](double d, int64_t w) {
    const double v = (w > 1 ? d / double(w - 1) : d) * 8.0;
    return (v > 0 ? 1.0 : v < 0 ? -1.0 : 0.0) * std::log2(std::fabs(v) + 1.0) / 3.0;
  };
  const double ch = coord(double(dh), s.window[1]), cw = coord(double(dw), s.window[2]);
  double y = 0.0;
  for (int64_t k = 0; k < s.cpb_hidden; ++k)
    y += s.cpb_w2[h * s.cpb_hidden + k] *
         std::max(0.0, s.cpb_w1[2 * k] * ch + s.cpb_w1[2 * k + 1] * cw + s.cpb_b1[k]);
  return 16.0 / (1.0 + std::exp(-y));
}

// Shifted-window attention of z (torchvision's semantics: zero padding at the end of each axis, no shift on
// an axis the window covers, cyclic shift, -100 between regions, crop).
Map attention(const BlockSpec &s, const Map &z) {
  const int64_t c = s.channels, hd = c / s.heads, n = s.tokens();
  Triple padded, shift;
  for (int d = 0; d < 3; ++d) {
    padded[d] = (s.grid[d] + s.window[d] - 1) / s.window[d] * s.window[d];
    shift[d] = s.window[d] >= padded[d] ? 0 : s.shift[d];
  }
  const bool masked = shift[0] + shift[1] + shift[2] > 0;
  Map out(z.size(), 0.0);
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t w0 = 0; w0 < padded[0]; w0 += s.window[0])
      for (int64_t w1 = 0; w1 < padded[1]; w1 += s.window[1])
        for (int64_t w2 = 0; w2 < padded[2]; w2 += s.window[2]) {
          // The window's tokens: local coordinates, region label, feature-map row (-1: padding).
          std::vector<Triple> local;
          std::vector<int64_t> source, label;
          Map features;
          for (int64_t a = 0; a < s.window[0]; ++a)
            for (int64_t e = 0; e < s.window[1]; ++e)
              for (int64_t f = 0; f < s.window[2]; ++f) {
                const Triple p{w0 + a, w1 + e, w2 + f}, l{a, e, f};
                int64_t row = b, region = 0;
                bool inside = true;
                for (int d = 0; d < 3; ++d) {
                  const int64_t at = (p[d] + shift[d]) % padded[d];
                  inside = inside && at < s.grid[d];
                  row = row * s.grid[d] + at;
                  region = region * 3 + (p[d] < padded[d] - s.window[d] ? 0
                                         : p[d] < padded[d] - shift[d]  ? 1
                                                                        : 2);
                }
                local.push_back(l);
                source.push_back(inside ? row : -1);
                label.push_back(region);
                for (int64_t i = 0; i < c; ++i) features.push_back(inside ? z[row * c + i] : 0.0);
              }
          std::vector<float> qkv_b = s.qkv_b;
          if (s.cosine && !qkv_b.empty()) std::fill(qkv_b.begin() + c, qkv_b.begin() + 2 * c, 0.0f);
          const Map qkv = linear(features, c, 3 * c, s.qkv_w, qkv_b);
          Map o(n * c, 0.0);
          for (int64_t h = 0; h < s.heads; ++h) {
            auto at = [&](int64_t t, int64_t part, int64_t i) {
              return qkv[t * 3 * c + part * c + h * hd + i];
            };
            auto norm = [&](int64_t t, int64_t part) {
              double sq = 0.0;
              for (int64_t i = 0; i < hd; ++i) sq += at(t, part, i) * at(t, part, i);
              return std::max(std::sqrt(sq), 1e-12);
            };
            const double scale = s.cosine ? std::exp(std::min(double(s.logit_scale[h]), std::log(100.0)))
                                          : 1.0 / std::sqrt(double(hd));
            for (int64_t i = 0; i < n; ++i) {
              std::vector<double> p(n);
              double top = -INFINITY, sum = 0.0;
              for (int64_t j = 0; j < n; ++j) {
                double dot = 0.0;
                for (int64_t k = 0; k < hd; ++k) dot += at(i, 0, k) * at(j, 1, k);
                if (s.cosine) dot /= norm(i, 0) * norm(j, 1);
                p[j] = dot * scale + position_bias(s, local[i], local[j], h) +
                       (masked && label[i] != label[j] ? -100.0 : 0.0);
                top = std::max(top, p[j]);
              }
              for (int64_t j = 0; j < n; ++j) sum += p[j] = std::exp(p[j] - top);
              for (int64_t j = 0; j < n; ++j)
                for (int64_t k = 0; k < hd; ++k) o[i * c + h * hd + k] += p[j] / sum * at(j, 2, k);
            }
          }
          const Map projected = linear(o, c, c, s.proj_w, s.proj_b);
          for (int64_t t = 0; t < n; ++t)
            if (source[t] >= 0)
              for (int64_t i = 0; i < c; ++i) out[source[t] * c + i] = projected[t * c + i];
        }
  return out;
}

Map reference_block(const BlockSpec &s, const std::vector<float> &input) {
  const int64_t c = s.channels;
  const double eps = s.eps == 0.0f ? 1e-5 : s.eps;
  const Map x(input.begin(), input.end());
  auto mlp = [&](const Map &z) {
    Map hidden = linear(z, c, s.hidden, s.fc1_w, s.fc1_b);
    for (double &v : hidden) v = gelu(v);
    return linear(hidden, s.hidden, c, s.fc2_w, s.fc2_b);
  };
  auto add = [](Map a, const Map &b) {
    for (size_t i = 0; i < a.size(); ++i) a[i] += b[i];
    return a;
  };
  if (!s.post_norm) {
    const Map y = add(x, attention(s, layer_norm(x, c, s.norm1_w, s.norm1_b, eps)));
    return add(y, mlp(layer_norm(y, c, s.norm2_w, s.norm2_b, eps)));
  }
  const Map y = add(x, layer_norm(attention(s, x), c, s.norm1_w, s.norm1_b, eps));
  return add(y, layer_norm(mlp(y), c, s.norm2_w, s.norm2_b, eps));
}

// ---- running and comparing --------------------------------------------------------------------------------

std::vector<float> run_block(const BlockSpec &s, const std::vector<float> &input, int budget = 0) {
  winattn_block_desc d = desc_of(s);
  d.num_threads = budget;
  winattn_block *block = nullptr;
  REQUIRE_MESSAGE(winattn_block_create(&d, &block) == WINATTN_STATUS_OK, winattn_last_error_message());
  std::vector<float> out(input.size(), 7.0f);
  const winattn_status status =
      winattn_block_forward(block, input.data(), s.batch, s.grid.data(), out.data());
  winattn_block_destroy(block);
  REQUIRE_MESSAGE(status == WINATTN_STATUS_OK, winattn_last_error_message());
  return out;
}

// The block against the reference: the whole output, and what the block adds to its input (so that the
// residual cannot hide an error in the attention or the MLP).
void check_against_reference(const BlockSpec &s, const std::vector<float> &input,
                             const std::vector<float> &out) {
  const Map expected = reference_block(s, input);
  double scale = 0.0, delta_scale = 0.0, err = 0.0;
  for (size_t i = 0; i < out.size(); ++i) {
    REQUIRE(std::isfinite(out[i]));
    scale = std::max(scale, std::fabs(expected[i]));
    delta_scale = std::max(delta_scale, std::fabs(expected[i] - input[i]));
    err = std::max(err, std::fabs(out[i] - expected[i]));
  }
  REQUIRE(delta_scale > 0.1 * scale);
  CHECK_MESSAGE(err <= 3e-5 * delta_scale,
                "max |block - float64 reference| = " << err << ", scale " << delta_scale);
}

void check_spec(const BlockSpec &s) {
  wt::Rng rng(77);
  const auto input = rng.vec(s.size(), -2.0f, 2.0f);
  const auto out = run_block(s, input);
  check_against_reference(s, input, out);
  CHECK(run_block(s, input) == out);  // a new block, the same bits
}

}  // namespace

TEST_CASE("block v1 (pre-norm), 2D: shifted, unshifted, padding, batch 1 and 3") {
  check_spec(make_block(401, 1, {1, 8, 8}, 16, 2, {1, 4, 4}, {0, 2, 2}, false, false));
  check_spec(make_block(402, 3, {1, 8, 12}, 12, 3, {1, 4, 4}, {0, 0, 0}, false, false));
  check_spec(make_block(403, 3, {1, 9, 7}, 16, 2, {1, 4, 4}, {0, 2, 2}, false, false));    // padding, shifted
  check_spec(make_block(404, 1, {1, 13, 17}, 24, 3, {1, 7, 7}, {0, 3, 3}, false, false));  // Swin's window
  check_spec(
      make_block(405, 2, {1, 5, 6}, 8, 2, {1, 7, 7}, {0, 3, 3}, false, false, false));  // grid < window
}

TEST_CASE("block v2 (res-post-norm, cosine attention, continuous bias), 2D") {
  check_spec(make_block(411, 1, {1, 8, 8}, 16, 2, {1, 4, 4}, {0, 2, 2}, true, true));
  check_spec(make_block(412, 3, {1, 9, 7}, 16, 2, {1, 4, 4}, {0, 0, 0}, true, true));
  check_spec(make_block(413, 2, {1, 13, 17}, 24, 3, {1, 7, 7}, {0, 3, 3}, true, true, false));
}

TEST_CASE(
    "block: attention and norm order are independent (v1 attention, post-norm; v2 attention, pre-norm)") {
  check_spec(make_block(421, 2, {1, 9, 7}, 16, 2, {1, 4, 4}, {0, 2, 2}, false, true));
  check_spec(make_block(422, 1, {1, 9, 7}, 16, 2, {1, 4, 4}, {0, 2, 2}, true, false));
}

TEST_CASE("block 3D (Video Swin windows), v1 and v2 order, padding on every axis") {
  check_spec(make_block(431, 1, {4, 8, 8}, 12, 3, {2, 4, 4}, {1, 2, 2}, false, false));
  check_spec(make_block(432, 3, {3, 5, 6}, 8, 2, {2, 4, 4}, {1, 2, 2}, false, false));
  check_spec(make_block(433, 2, {3, 5, 6}, 8, 2, {2, 4, 4}, {1, 2, 2}, false, true));
  check_spec(make_block(434, 1, {4, 8, 8}, 16, 2, {2, 4, 4}, {0, 0, 0}, true, true));  // cosine, no bias
}

TEST_CASE("block: norm_eps 0 selects 1e-5; a large eps is used as given") {
  BlockSpec s = make_block(441, 1, {1, 8, 8}, 16, 2, {1, 4, 4}, {0, 2, 2}, false, false);
  wt::Rng rng(5);
  const auto input = rng.vec(s.size(), -2.0f, 2.0f);
  s.eps = 0.0f;
  const auto zero = run_block(s, input);
  check_against_reference(s, input, zero);
  s.eps = 1e-5f;
  CHECK(run_block(s, input) == zero);
  s.eps = 0.5f;
  check_against_reference(s, input, run_block(s, input));
}

TEST_CASE("block: one block serves other batch sizes and grids than the first call") {
  BlockSpec s = make_block(451, 1, {1, 8, 8}, 16, 2, {1, 4, 4}, {0, 2, 2}, false, false);
  const auto d = desc_of(s);
  winattn_block *block = nullptr;
  REQUIRE(winattn_block_create(&d, &block) == WINATTN_STATUS_OK);
  wt::Rng rng(6);
  for (Triple grid : {Triple{1, 8, 8}, Triple{1, 5, 11}, Triple{1, 3, 3}}) {
    for (int64_t batch : {1, 3}) {
      s.grid = grid, s.batch = batch;
      const auto input = rng.vec(s.size(), -2.0f, 2.0f);
      std::vector<float> out(input.size());
      REQUIRE(winattn_block_forward(block, input.data(), batch, grid.data(), out.data()) ==
              WINATTN_STATUS_OK);
      check_against_reference(s, input, out);
    }
  }
  winattn_block_destroy(block);
}

TEST_CASE("block: the same bits for 1, 2 and 3 threads, process setting and block budgets") {
  wt::DispatchGuard guard;
  // Several chunks per call (C 32, hidden 128: 32 windows of 16 tokens per chunk; 108 windows), both orders.
  for (bool post_norm : {false, true}) {
    CAPTURE(post_norm);
    const BlockSpec s = make_block(461, 3, {1, 24, 24}, 32, 2, {1, 4, 4}, {0, 2, 2}, post_norm, post_norm);
    wt::Rng rng(7);
    const auto input = rng.vec(s.size(), -2.0f, 2.0f);
    REQUIRE(winattn_set_num_threads(1) == WINATTN_STATUS_OK);
    const auto one = run_block(s, input);
    check_against_reference(s, input, one);
    for (int threads : {2, 3}) {
      REQUIRE(winattn_set_num_threads(threads) == WINATTN_STATUS_OK);
      CHECK(run_block(s, input) == one);
    }
    REQUIRE(winattn_set_num_threads(3) == WINATTN_STATUS_OK);
    for (int budget : {1, 2, 3}) CHECK(run_block(s, input, budget) == one);  // desc.num_threads
    const auto d = desc_of(s);
    winattn_block *block = nullptr;
    REQUIRE(winattn_block_create(&d, &block) == WINATTN_STATUS_OK);
    for (int budget : {1, 2, 3, 0}) {  // winattn_block_set_num_threads
      REQUIRE(winattn_block_set_num_threads(block, budget) == WINATTN_STATUS_OK);
      std::vector<float> out(input.size());
      REQUIRE(winattn_block_forward(block, input.data(), s.batch, s.grid.data(), out.data()) ==
              WINATTN_STATUS_OK);
      CHECK(out == one);
    }
    winattn_block_destroy(block);
  }
}

TEST_CASE("block: fewer chunks than threads (a team of threads per chunk) gives the one-thread bits") {
  wt::DispatchGuard guard;
  // One window (stage 4 at B = 1: 7x7 on a 7x7 grid, shifted: a masked window) and two windows of 5x5 on
  // 5x10 (two chunks for three threads), a grid that pads (6x6 with window 4: 4 windows, 2 chunks), both
  // orders; against the float64 reference too.
  struct Case {
    Triple grid, window, shift;
  };
  // Then two chunks of one and of two 7x7 windows (7x14, 14x14): with 4..8 threads a team per chunk (two
  // teams of 2, 3 or 4 threads).
  for (const Case &k : {Case{{1, 7, 7}, {1, 7, 7}, {0, 3, 3}}, Case{{1, 5, 10}, {1, 5, 5}, {0, 0, 0}},
                        Case{{1, 6, 6}, {1, 4, 4}, {0, 2, 2}}, Case{{1, 7, 14}, {1, 7, 7}, {0, 3, 3}},
                        Case{{1, 14, 14}, {1, 7, 7}, {0, 3, 3}}}) {
    for (bool post_norm : {false, true}) {
      CAPTURE(post_norm);
      CAPTURE(k.grid[2]);
      const BlockSpec s = make_block(470, 1, k.grid, 48, 3, k.window, k.shift, post_norm, post_norm);
      wt::Rng rng(9);
      const auto input = rng.vec(s.size(), -2.0f, 2.0f);
      REQUIRE(winattn_set_num_threads(1) == WINATTN_STATUS_OK);
      const auto one = run_block(s, input);
      check_against_reference(s, input, one);
      for (int threads : {2, 3, 4, 5, 6, 8}) {
        CAPTURE(threads);
        REQUIRE(winattn_set_num_threads(threads) == WINATTN_STATUS_OK);
        CHECK(run_block(s, input) == one);
      }
    }
  }
}

TEST_CASE("block: concurrent forwards on one block, other grids and batches per call, give the serial bits") {
  for (bool post_norm : {false, true}) {
    CAPTURE(post_norm);
    BlockSpec s = make_block(465, 1, {1, 8, 8}, 16, 2, {1, 4, 4}, {0, 2, 2}, false, post_norm);
    const auto d = desc_of(s);
    winattn_block *block = nullptr;
    REQUIRE(winattn_block_create(&d, &block) == WINATTN_STATUS_OK);
    struct Call {
      int64_t batch;
      Triple grid;
      std::vector<float> input, serial;
    };
    std::vector<Call> calls;
    wt::Rng rng(10);
    for (Triple grid : {Triple{1, 8, 8}, Triple{1, 9, 7}, Triple{1, 16, 12}, Triple{1, 5, 5}})
      for (int64_t batch : {1, 2}) {
        s.grid = grid, s.batch = batch;
        Call call{batch, grid, rng.vec(s.size(), -2.0f, 2.0f), std::vector<float>(s.size())};
        REQUIRE(winattn_block_forward(block, call.input.data(), batch, grid.data(), call.serial.data()) ==
                WINATTN_STATUS_OK);
        calls.push_back(std::move(call));
      }
    std::vector<int> mismatches(4, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&, t] {
        for (int round = 0; round < 6; ++round)
          for (size_t i = t; i < calls.size(); i += 2) {  // every call made by two threads at once
            const Call &call = calls[i];
            std::vector<float> out(call.serial.size());
            const winattn_status status =
                winattn_block_forward(block, call.input.data(), call.batch, call.grid.data(), out.data());
            if (status != WINATTN_STATUS_OK || out != call.serial) ++mismatches[t];
          }
      });
    for (std::thread &thread : threads) thread.join();
    for (int m : mismatches) CHECK(m == 0);
    winattn_block_destroy(block);
  }
}

TEST_CASE("block on every ISA the CPU has") {
  wt::DispatchGuard guard;
  for (const std::string &isa : wt::available_isas()) {
    CAPTURE(isa);
    wt::force_isa(isa);
    check_spec(
        make_block(471, 2, {1, 9, 7}, 20, 2, {1, 4, 4}, {0, 2, 2}, false, false));  // C not a vector multiple
    check_spec(make_block(472, 1, {1, 13, 17}, 24, 3, {1, 7, 7}, {0, 3, 3}, true, true));
    check_spec(make_block(473, 1, {3, 5, 6}, 8, 2, {2, 4, 4}, {1, 2, 2}, false, false));
  }
}

TEST_CASE("block_create rejects invalid descriptions and leaves *block alone") {
  const BlockSpec v1 = make_block(481, 1, {1, 8, 8}, 16, 2, {1, 4, 4}, {0, 2, 2}, false, false);
  const BlockSpec v2 = make_block(482, 1, {1, 8, 8}, 16, 2, {1, 4, 4}, {0, 2, 2}, true, true);
  winattn_block *const kUntouched = reinterpret_cast<winattn_block *>(uintptr_t{0x5678});
  auto expect_status = [&](const winattn_block_desc &d, winattn_status expected, const char *what) {
    winattn_block *block = kUntouched;
    CHECK_MESSAGE(winattn_block_create(&d, &block) == expected, what);
    CHECK_MESSAGE(std::strlen(winattn_last_error_message()) > 0, what);
    CHECK_MESSAGE(block == kUntouched, what);
  };
  const winattn_status INVALID = WINATTN_STATUS_INVALID_ARGUMENT;
  {
    winattn_block *block = kUntouched;
    CHECK(winattn_block_create(nullptr, &block) == INVALID);
    CHECK(block == kUntouched);
    const auto d = desc_of(v1);
    CHECK(winattn_block_create(&d, nullptr) == INVALID);
  }
  const float nan = wt::kNaN;
  const std::vector<float> nan_scale(2, nan);
  struct Case {
    const char *what;
    void (*edit)(winattn_block_desc &, const BlockSpec &);
  };
  // The attention description, checked as winattn_layer_create checks it.
  const Case attention_cases[] = {
      {"qkv_weight NULL", [](winattn_block_desc &d, const BlockSpec &) { d.attention.qkv_weight = nullptr; }},
      {"proj_weight NULL",
       [](winattn_block_desc &d, const BlockSpec &) { d.attention.proj_weight = nullptr; }},
      {"channels % heads", [](winattn_block_desc &d, const BlockSpec &) { d.attention.num_heads = 3; }},
      {"channels 0", [](winattn_block_desc &d, const BlockSpec &) { d.attention.channels = 0; }},
      {"heads -2", [](winattn_block_desc &d, const BlockSpec &) { d.attention.num_heads = -2; }},
      {"window 0", [](winattn_block_desc &d, const BlockSpec &) { d.attention.window[1] = 0; }},
      {"shift == window", [](winattn_block_desc &d, const BlockSpec &) { d.attention.shift[2] = 4; }},
      {"shift < 0", [](winattn_block_desc &d, const BlockSpec &) { d.attention.shift[1] = -1; }},
      {"attention flags", [](winattn_block_desc &d, const BlockSpec &) { d.attention.flags = 4; }},
      {"compute_dtype 7",
       [](winattn_block_desc &d, const BlockSpec &) {
         d.attention.compute_dtype = static_cast<winattn_dtype>(7);
       }},
      {"channels overflowing",
       [](winattn_block_desc &d, const BlockSpec &) {
         d.attention.channels = INT64_MAX / 2, d.attention.num_heads = 1;
       }},
      {"table with logit_scale",
       [](winattn_block_desc &d, const BlockSpec &o) { d.attention.logit_scale = o.logit_scale.data(); }},
      // The block's own fields.
      {"norm1_weight NULL", [](winattn_block_desc &d, const BlockSpec &) { d.norm1_weight = nullptr; }},
      {"norm1_bias NULL", [](winattn_block_desc &d, const BlockSpec &) { d.norm1_bias = nullptr; }},
      {"norm2_weight NULL", [](winattn_block_desc &d, const BlockSpec &) { d.norm2_weight = nullptr; }},
      {"norm2_bias NULL", [](winattn_block_desc &d, const BlockSpec &) { d.norm2_bias = nullptr; }},
      {"fc1_weight NULL", [](winattn_block_desc &d, const BlockSpec &) { d.fc1_weight = nullptr; }},
      {"fc2_weight NULL", [](winattn_block_desc &d, const BlockSpec &) { d.fc2_weight = nullptr; }},
      {"mlp_hidden 0", [](winattn_block_desc &d, const BlockSpec &) { d.mlp_hidden = 0; }},
      {"mlp_hidden -1", [](winattn_block_desc &d, const BlockSpec &) { d.mlp_hidden = -1; }},
      {"mlp_hidden overflowing",
       [](winattn_block_desc &d, const BlockSpec &) { d.mlp_hidden = INT64_MAX / 4; }},
      {"post_norm 2", [](winattn_block_desc &d, const BlockSpec &) { d.post_norm = 2; }},
      {"post_norm -1", [](winattn_block_desc &d, const BlockSpec &) { d.post_norm = -1; }},
      {"norm_eps -1e-5", [](winattn_block_desc &d, const BlockSpec &) { d.norm_eps = -1e-5f; }},
      {"norm_eps NaN", [](winattn_block_desc &d, const BlockSpec &) { d.norm_eps = wt::kNaN; }},
      {"num_threads -1", [](winattn_block_desc &d, const BlockSpec &) { d.num_threads = -1; }},
      {"num_threads > max",
       [](winattn_block_desc &d, const BlockSpec &) { d.num_threads = WINATTN_MAX_THREADS + 1; }},
      {"flags 1", [](winattn_block_desc &d, const BlockSpec &) { d.flags = 1; }},
  };
  for (const Case &c : attention_cases) {
    auto d = desc_of(v1);
    c.edit(d, v2);
    expect_status(d, INVALID, c.what);
  }
  auto d = desc_of(v2);
  d.attention.logit_scale = nan_scale.data();
  expect_status(d, INVALID, "NaN logit_scale");
  d = desc_of(v2);
  d.attention.cpb_hidden = 0;
  expect_status(d, INVALID, "cpb weights with hidden 0");
  d = desc_of(v1);
  d.attention.compute_dtype = WINATTN_DTYPE_BF16;
  winattn_block *block = kUntouched;
  const winattn_status bf16 = winattn_block_create(&d, &block);
  CHECK((bf16 == WINATTN_STATUS_UNSUPPORTED || bf16 == WINATTN_STATUS_OK));
  if (bf16 == WINATTN_STATUS_OK)
    winattn_block_destroy(block);
  else
    CHECK(block == kUntouched);
  // Biases of the MLP may be NULL.
  BlockSpec no_bias = make_block(483, 1, {1, 8, 8}, 16, 2, {1, 4, 4}, {0, 2, 2}, false, false, false);
  wt::Rng rng(8);
  const auto input = rng.vec(no_bias.size(), -2.0f, 2.0f);
  check_against_reference(no_bias, input, run_block(no_bias, input));
  winattn_block_destroy(nullptr);  // a no-op
}

TEST_CASE("block_forward and block_set_num_threads reject invalid arguments and leave output untouched") {
  const BlockSpec s = make_block(491, 2, {1, 8, 8}, 8, 2, {1, 4, 4}, {0, 2, 2}, false, false);
  const auto d = desc_of(s);
  winattn_block *block = nullptr;
  REQUIRE(winattn_block_create(&d, &block) == WINATTN_STATUS_OK);
  wt::Rng rng(9);
  const auto input = rng.vec(s.size());
  auto out = wt::sentinel_buffer<float>(s.size());
  const int64_t grid[3] = {1, 8, 8};
  WT_CHECK_INVALID(winattn_block_forward(nullptr, input.data(), 2, grid, out.data()), out);
  WT_CHECK_INVALID(
      winattn_block_forward(reinterpret_cast<const winattn_block *>(&d), input.data(), 2, grid, out.data()),
      out);  // not a block handle
  WT_CHECK_INVALID(winattn_block_forward(block, nullptr, 2, grid, out.data()), out);
  WT_CHECK_INVALID(winattn_block_forward(block, input.data(), 2, nullptr, out.data()), out);
  CHECK(winattn_block_forward(block, input.data(), 2, grid, nullptr) == WINATTN_STATUS_INVALID_ARGUMENT);
  WT_CHECK_INVALID(winattn_block_forward(block, input.data(), 0, grid, out.data()), out);
  WT_CHECK_INVALID(winattn_block_forward(block, input.data(), -3, grid, out.data()), out);
  const int64_t bad_grids[][3] = {{0, 8, 8}, {1, 0, 8}, {1, 8, -8}, {1, INT64_MAX / 2, INT64_MAX / 2}};
  for (const auto &g : bad_grids)
    WT_CHECK_INVALID(winattn_block_forward(block, input.data(), 2, g, out.data()), out);
  WT_CHECK_INVALID(winattn_block_forward(block, input.data(), INT64_MAX / 2, grid, out.data()), out);
  std::vector<float> both(2 * s.size());
  std::copy(input.begin(), input.end(), both.begin());
  const auto before = both;
  for (size_t offset : {size_t{0}, size_t{1}, s.size() - 1}) {
    CHECK(winattn_block_forward(block, both.data(), 2, grid, both.data() + offset) ==
          WINATTN_STATUS_INVALID_ARGUMENT);
    CHECK(both == before);
  }
  CHECK(winattn_block_set_num_threads(nullptr, 1) == WINATTN_STATUS_INVALID_ARGUMENT);
  CHECK(winattn_block_set_num_threads(block, -1) == WINATTN_STATUS_INVALID_ARGUMENT);
  CHECK(std::strlen(winattn_last_error_message()) > 0);
  CHECK(winattn_block_set_num_threads(block, WINATTN_MAX_THREADS + 1) == WINATTN_STATUS_INVALID_ARGUMENT);
  CHECK(winattn_block_set_num_threads(block, WINATTN_MAX_THREADS) == WINATTN_STATUS_OK);
  winattn_block_destroy(block);
  // A destroyed block is refused (its address not reused meanwhile).
  WT_CHECK_INVALID(winattn_block_forward(block, input.data(), 2, grid, out.data()), out);
  CHECK(winattn_block_set_num_threads(block, 1) == WINATTN_STATUS_INVALID_ARGUMENT);
  winattn_block_destroy(block);  // ignored: not live
}
