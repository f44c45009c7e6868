#include "layer_model.h"

#include <cstdio>
#include <cstring>

namespace fz {

void read_model(Reader &r, const ModelLimits &limits, LayerModel &m) {
  m.heads = 1 + r.u8() % limits.max_heads;
  m.channels = m.heads * (1 + r.u8() % limits.max_head_dim);
  const bool three_d = r.u8() >= 192;
  for (int d = 0; d < 3; ++d) {
    const int64_t max_w = d == 0 ? (three_d ? 3 : 1) : limits.max_window;
    m.window[d] = 1 + r.u8() % max_w;
    const uint8_t s = r.u8();
    m.shift[d] = s < 96 ? 0 : s % m.window[d];
  }
  if (limits.force_shift && !m.shifted()) {
    for (int d = 2; d >= 1; --d)
      if (m.window[d] == 1) m.window[d] = 2 + r.u8() % (limits.max_window - 1);
    m.shift[2] = 1 + r.u8() % (m.window[2] - 1);
  }
  m.tokens = m.window[0] * m.window[1] * m.window[2];
  m.variant = r.u8() % 4;
  if (m.variant == 2 && m.window[0] != 1) m.variant = 3;  // the continuous bias is 2D only
  const uint8_t opt = r.u8();
  const int64_t C = m.channels, H = m.heads;
  auto make = [&](std::vector<float> &v, int64_t count) {
    v.assign(static_cast<size_t>(count), 0.0f);
    if (limits.special_values)
      fill(r, v.data(), v.size());
    else
      fill_plain(r, v.data(), v.size());
  };
  make(m.qkv_w, 3 * C * C);
  make(m.proj_w, C * C);
  if (opt & 1) make(m.qkv_b, 3 * C);
  if (opt & 2) make(m.proj_b, C);
  const int64_t rows = (2 * m.window[0] - 1) * (2 * m.window[1] - 1) * (2 * m.window[2] - 1);
  if (m.variant == 0) make(m.table, rows * H);
  if (m.v2()) {
    m.logit.assign(static_cast<size_t>(H), 0.0f);
    fill_plain(r, m.logit.data(), m.logit.size());  // a NaN logit_scale is an error
  }
  if (m.variant == 2) {
    m.hidden = 1 + r.u8() % 16;
    make(m.cpb_w1, m.hidden * 2);
    make(m.cpb_b1, m.hidden);
    make(m.cpb_w2, H * m.hidden);
  }
  // The bias as a stateless caller computes it: index, then lookup (v2: from the continuous table).
  const int64_t n = m.tokens;
  std::vector<float> cpb;
  const float *table = nullptr;
  int64_t table_rows = 0;
  int ndim = 3;
  if (m.variant == 0) {
    table = m.table.data(), table_rows = rows;
  } else if (m.variant == 2) {
    table_rows = (2 * m.window[1] - 1) * (2 * m.window[2] - 1);
    cpb.resize(static_cast<size_t>(table_rows * H));
    const winattn_status s = winattn_continuous_position_bias_table(
        m.window[1], m.window[2], m.cpb_w1.data(), m.cpb_b1.data(), m.cpb_w2.data(), m.hidden, H, cpb.data());
    CHECK(s == WINATTN_STATUS_OK, "continuous_position_bias_table for a valid layer: status %d",
          static_cast<int>(s));
    table = cpb.data(), ndim = 2;
  }
  m.bias.clear();
  if (table) {
    std::vector<int64_t> index(static_cast<size_t>(n * n));
    const int64_t *win = ndim == 3 ? m.window : m.window + 1;
    winattn_status s = winattn_relative_position_index(ndim, win, index.data());
    CHECK(s == WINATTN_STATUS_OK, "relative_position_index for a valid layer: status %d",
          static_cast<int>(s));
    m.bias.resize(static_cast<size_t>(H * n * n));
    s = winattn_relative_position_bias(table, table_rows, H, index.data(), n, m.bias.data());
    CHECK(s == WINATTN_STATUS_OK, "relative_position_bias for a valid layer: status %d", static_cast<int>(s));
    Rng rng = call_rng();
    for (int k = 0; k < 16; ++k) {
      const int64_t i = static_cast<int64_t>(rng.below(static_cast<size_t>(n)));
      const int64_t j = static_cast<int64_t>(rng.below(static_cast<size_t>(n)));
      const int64_t want = relative_index(ndim, win, i, j);
      CHECK(index[i * n + j] == want, "index[%lld][%lld] = %lld, expected %lld", (long long)i, (long long)j,
            (long long)index[i * n + j], (long long)want);
    }
  }
}

winattn_layer_desc LayerModel::desc() const {
  winattn_layer_desc d;
  std::memset(&d, 0, sizeof d);
  d.channels = channels;
  d.num_heads = heads;
  for (int i = 0; i < 3; ++i) d.window[i] = window[i], d.shift[i] = shift[i];
  d.qkv_weight = qkv_w.data();
  d.qkv_bias = qkv_b.empty() ? nullptr : qkv_b.data();
  d.proj_weight = proj_w.data();
  d.proj_bias = proj_b.empty() ? nullptr : proj_b.data();
  d.relative_position_bias_table = table.empty() ? nullptr : table.data();
  d.logit_scale = logit.empty() ? nullptr : logit.data();
  if (variant == 2) {
    d.cpb_weight1 = cpb_w1.data();
    d.cpb_bias1 = cpb_b1.data();
    d.cpb_weight2 = cpb_w2.data();
    d.cpb_hidden = hidden;
  }
  d.compute_dtype = WINATTN_DTYPE_F32;
  return d;
}

winattn_window_attention_args LayerModel::args(int64_t batch, const int64_t grid[3]) const {
  winattn_window_attention_args a;
  std::memset(&a, 0, sizeof a);
  a.batch = batch;
  for (int i = 0; i < 3; ++i) a.grid[i] = grid[i], a.window[i] = window[i], a.shift[i] = shift[i];
  a.channels = channels;
  a.num_heads = heads;
  a.qkv_weight = qkv_w.data();
  a.qkv_bias = qkv_b.empty() ? nullptr : qkv_b.data();
  a.proj_weight = proj_w.data();
  a.proj_bias = proj_b.empty() ? nullptr : proj_b.data();
  a.relative_position_bias = bias.empty() ? nullptr : bias.data();
  a.logit_scale = logit.empty() ? nullptr : logit.data();
  return a;
}

LayerRef LayerModel::ref() const {
  LayerRef f;
  f.channels = channels;
  f.heads = heads;
  for (int i = 0; i < 3; ++i) f.window[i] = window[i], f.shift[i] = shift[i];
  f.qkv_weight = qkv_w.data();
  f.qkv_bias = qkv_b.empty() ? nullptr : qkv_b.data();
  f.proj_weight = proj_w.data();
  f.proj_bias = proj_b.empty() ? nullptr : proj_b.data();
  f.bias = bias.empty() ? nullptr : bias.data();
  f.logit_scale = logit.empty() ? nullptr : logit.data();
  return f;
}

std::string LayerModel::describe() const {
  static const char *kVariants[] = {"v1+table", "v1", "v2+cpb", "v2"};
  char buf[200];
  snprintf(buf, sizeof buf,
           "C=%lld heads=%lld window={%lld,%lld,%lld} shift={%lld,%lld,%lld} %s qkv_b=%d proj_b=%d",
           (long long)channels, (long long)heads, (long long)window[0], (long long)window[1],
           (long long)window[2], (long long)shift[0], (long long)shift[1], (long long)shift[2],
           kVariants[variant], !qkv_b.empty(), !proj_b.empty());
  return buf;
}

winattn_layer *create_layer(const LayerModel &m) {
  const winattn_layer_desc d = m.desc();
  winattn_layer *layer = nullptr;
  const std::string prev = last_msg();
  const winattn_status s = winattn_layer_create(&d, &layer);
  check_status(s, Expect::kOk, prev);
  CHECK(layer != nullptr, "layer_create OK without a layer");
  layer_created(layer);
  return layer;
}

void destroy_layer(winattn_layer *layer) {
  layer_destroyed(layer);
  winattn_layer_destroy(layer);
}

void read_grid(Reader &r, const LayerModel &m, int64_t max_axis, int64_t grid[3]) {
  for (int d = 0; d < 3; ++d) {
    const uint8_t g = r.u8();
    if (d == 0 && m.window[0] == 1 && g < 224)
      grid[d] = 1;
    else if (d == 0)
      grid[d] = 1 + g % 6;
    else
      grid[d] = 1 + g % max_axis;
  }
}

size_t activation_size(const LayerModel &m, int64_t batch, const int64_t grid[3]) {
  return static_cast<size_t>(batch * grid[0] * grid[1] * grid[2] * m.channels);
}

i128 forward_work(const LayerModel &m, int64_t batch, const int64_t grid[3]) {
  i128 padded = batch;
  for (int d = 0; d < 3; ++d) padded = mul(padded, (grid[d] + m.window[d] - 1) / m.window[d] * m.window[d]);
  return mul(padded, 4 * m.channels * m.channels + 2 * m.tokens * m.channels);
}

void fit_work(const LayerModel &m, i128 budget, int64_t *batch, int64_t grid[3]) {
  while (forward_work(m, *batch, grid) > budget) {
    const int d = grid[0] >= grid[1] && grid[0] >= grid[2] ? 0 : grid[1] >= grid[2] ? 1 : 2;
    if (grid[d] > 1)
      grid[d] = (grid[d] + 1) / 2;
    else if (*batch > 1)
      *batch = 1;
    else
      return;
  }
}

winattn_status run_stateless(const LayerModel &m, const float *input, int64_t batch, const int64_t grid[3],
                             float *output) {
  const winattn_window_attention_args a = m.args(batch, grid);
  return winattn_shifted_window_attention(&a, input, output);
}

}  // namespace fz
