#include "oracle.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

namespace fz {
namespace {

constexpr double kU = 1.0 / 16777216.0;  // float32 unit roundoff, 2^-24
constexpr double kDenorm = 1.2e-38;      // what flushing a denormal to zero can lose
constexpr double kInf = std::numeric_limits<double>::infinity();

// Error bound of a float32 sum of n rounded terms, relative to the sum of their magnitudes.
double gam(double n) {
  return n * kU * 1.01;
}

// Softmax-weighted average of the rows of v for one query: logits l[j] with absolute error bounds el[j],
// keys with skip[j] set have weight exactly zero (a -inf mask); v is [n][d] with per-entry error ev (or
// exact when NULL). Writes an interval per channel that the float32 result must lie in: from the float64
// softmax when the logit errors are small, else the hull of the v rows. Returns whether any key counts.
bool softmax_interval(int64_t n, int64_t d, const double *l, const double *el, const unsigned char *skip,
                      const double *v, const double *ev, double *lo, double *hi) {
  double err = 0, lmax = -kInf;
  bool any = false;
  for (int64_t j = 0; j < n; ++j) {
    if (skip && skip[j]) continue;
    any = true;
    err = std::max(err, el[j]);
    lmax = std::max(lmax, l[j]);
  }
  if (!any) return false;
  auto e_of = [&](int64_t j, int64_t c) { return ev ? ev[j * d + c] : 0.0; };
  if (err <= 0.25 && std::isfinite(lmax)) {
    std::vector<double> w(static_cast<size_t>(n), 0.0);
    double sum = 0;
    for (int64_t j = 0; j < n; ++j) {
      if (skip && skip[j]) continue;
      w[j] = std::exp(l[j] - lmax);
      sum += w[j];
    }
    // Each weight is off by at most a factor exp(+-2 err) (numerator and normaliser), plus the float32
    // exp (a few ulp) and the sum of the normaliser.
    const double delta = std::expm1(2 * err) + gam(static_cast<double>(n) + 32);
    for (int64_t c = 0; c < d; ++c) {
      double a = 0, mag = 0, verr = 0, vabs = 0;
      for (int64_t j = 0; j < n; ++j) {
        if (skip && skip[j]) continue;
        const double wj = w[j] / sum, vj = v[j * d + c];
        a += wj * vj;
        mag += wj * std::fabs(vj);
        verr += wj * e_of(j, c);
        vabs += std::fabs(vj);
      }
      const double e = 2 * ((delta + gam(static_cast<double>(n) + 4)) * mag + (1 + delta) * verr) +
                       4 * kDenorm * (vabs + 1);
      lo[c] = a - e;
      hi[c] = a + e;
    }
    return true;
  }
  for (int64_t c = 0; c < d; ++c) {
    double vmin = kInf, vmax = -kInf, vabs = 0;
    for (int64_t j = 0; j < n; ++j) {
      if (skip && skip[j]) continue;
      const double vj = v[j * d + c], e = e_of(j, c);
      vmin = std::min(vmin, vj - e);
      vmax = std::max(vmax, vj + e);
      vabs = std::max(vabs, std::fabs(vj) + e);
    }
    const double slack = gam(2.0 * static_cast<double>(n) + 8) * vabs + 4 * kDenorm;
    lo[c] = vmin - slack;
    hi[c] = vmax + slack;
  }
  return true;
}

bool finite_or_neg_inf(float x) {
  return std::isfinite(x) || (std::isinf(x) && x < 0);
}

}  // namespace

int64_t relative_index(int ndim, const int64_t *window, int64_t i, int64_t j) {
  int64_t ci[3] = {0, 0, 0}, cj[3] = {0, 0, 0};
  for (int d = ndim - 1; d >= 0; --d) {
    ci[d] = i % window[d], i /= window[d];
    cj[d] = j % window[d], j /= window[d];
  }
  int64_t index = 0;
  for (int d = 0; d < ndim; ++d) index = index * (2 * window[d] - 1) + (ci[d] - cj[d] + window[d] - 1);
  return index;
}

void check_attention_row(int64_t n, int64_t head_dim, const float *q_row, const float *k, const float *v,
                         float scale, const float *bias_row, const float *mask_row, const float *out_row,
                         const char *where) {
  const size_t N = static_cast<size_t>(n), D = static_cast<size_t>(head_dim);
  const bool nan_logit = std::isnan(scale) || has_nan(q_row, D) || has_nan(k, N * D) ||
                         (bias_row && has_nan(bias_row, N)) || (mask_row && has_nan(mask_row, N));
  if (nan_logit) {
    for (size_t c = 0; c < D; ++c)
      CHECK(std::isnan(out_row[c]), "%s: a NaN logit but out[%zu] = %g", where, c, out_row[c]);
    return;
  }
  // Infinite inputs (other than -inf masks) are not pinned down by the contract beyond NaN propagation.
  const float kHuge = std::numeric_limits<float>::max();
  if (!std::isfinite(scale) || !all_finite(q_row, D, kHuge) || !all_finite(k, N * D, kHuge) ||
      !all_finite(v, N * D, kHuge) || (bias_row && !all_finite(bias_row, N, kHuge)))
    return;
  // The library may fold the scale into q or k first: that product must not overflow either.
  for (size_t c = 0; c < D; ++c)
    if (!(std::fabs(static_cast<double>(scale) * q_row[c]) <= 1e30)) return;
  for (size_t t = 0; t < N * D; ++t)
    if (!(std::fabs(static_cast<double>(scale) * k[t]) <= 1e30)) return;
  std::vector<unsigned char> skip(N, 0);
  bool all_skipped = mask_row != nullptr;
  for (size_t j = 0; j < N; ++j) {
    if (mask_row && !finite_or_neg_inf(mask_row[j])) return;  // +inf in a mask: not pinned down
    skip[j] = mask_row && std::isinf(mask_row[j]);
    all_skipped = all_skipped && skip[j];
  }
  if (all_skipped) {
    // Only when no finite part of a logit can overflow float32: +inf + -inf is a NaN logit.
    for (size_t j = 0; j < N; ++j) {
      double mag = 0;
      for (size_t c = 0; c < D; ++c) mag += std::fabs(static_cast<double>(q_row[c]) * k[j * D + c]);
      if (!(std::fabs(scale) * mag + (bias_row ? std::fabs(bias_row[j]) : 0.0) <= 1e30)) return;
      if (!(mag <= 1e30)) return;  // q . k could overflow before the scale applies (see below)
    }
    for (size_t c = 0; c < D; ++c)
      CHECK(out_row[c] == 0.0f, "%s: all logits -inf but out[%zu] = %g", where, c, out_row[c]);
    return;
  }
  std::vector<double> l(N), el(N), vd(N * D);
  double vsum = 0;
  for (size_t t = 0; t < N * D; ++t) vd[t] = v[t], vsum += std::fabs(vd[t]);
  const double sc = scale;
  for (size_t j = 0; j < N; ++j) {
    if (skip[j]) continue;
    double dot = 0, mag = 0, tiny = 0;
    for (size_t c = 0; c < D; ++c) {
      dot += static_cast<double>(q_row[c]) * k[j * D + c];
      mag += std::fabs(static_cast<double>(q_row[c]) * k[j * D + c]);
      tiny += std::fabs(q_row[c]) + std::fabs(k[j * D + c]);
    }
    const double b = bias_row ? bias_row[j] : 0.0, m = mask_row ? mask_row[j] : 0.0;
    const double a = std::fabs(sc) * mag + std::fabs(b) + std::fabs(m);
    if (!(a <= 1e30)) return;  // float32 logits could overflow: not pinned down
    // The kernels form scale x (q . k): where q . k itself could overflow float32 (a scale of 0 or a tiny one
    // on huge q and k), inf x 0 is NaN: not pinned down either (torch scales q first).
    if (!(mag <= 1e30)) return;
    l[j] = sc * dot + b + m;
    el[j] = std::fabs(sc) * gam(static_cast<double>(D) + 2) * mag + gam(3) * a +
            kDenorm * (std::fabs(sc) * tiny + 2) * 4;
  }
  if (!(vsum <= 1e30)) return;
  std::vector<double> lo(D), hi(D);
  softmax_interval(n, head_dim, l.data(), el.data(), skip.data(), vd.data(), nullptr, lo.data(), hi.data());
  for (size_t c = 0; c < D; ++c)
    CHECK(out_row[c] >= lo[c] && out_row[c] <= hi[c],
          "%s: out[%zu] = %.9g outside [%.9g, %.9g] (float64 reference with the float32 error bound)", where,
          c, out_row[c], lo[c], hi[c]);
}

void check_window_attention(int64_t num_windows, int64_t heads, int64_t n, int64_t head_dim, const float *q,
                            const float *k, const float *v, float scale, const float *bias, const float *mask,
                            int64_t mask_windows, const float *out, Rng &rng, int items, int rows) {
  const size_t N = static_cast<size_t>(n), D = static_cast<size_t>(head_dim);
  const size_t total = static_cast<size_t>(num_windows * heads);
  char where[160];
  for (int it = 0; it < items; ++it) {
    const size_t item = it == 0 ? total - 1 : rng.below(total);
    const int64_t w = static_cast<int64_t>(item) / heads, h = static_cast<int64_t>(item) % heads;
    const size_t blk = item * N * D;
    for (int rr = 0; rr < rows; ++rr) {
      const size_t i = rr == 0 ? 0 : rr == 1 ? N - 1 : rng.below(N);
      const float *brow = bias ? bias + (static_cast<size_t>(h) * N + i) * N : nullptr;
      const float *mrow = mask ? mask + (static_cast<size_t>(w % mask_windows) * N + i) * N : nullptr;
      snprintf(where, sizeof where, "window %lld head %lld row %zu", (long long)w, (long long)h, i);
      check_attention_row(n, head_dim, q + blk + i * D, k + blk, v + blk, scale, brow, mrow,
                          out + blk + i * D, where);
    }
  }
}

bool layer_ref_clean(const LayerRef &m) {
  const size_t C = static_cast<size_t>(m.channels);
  const size_t N = static_cast<size_t>(m.window[0] * m.window[1] * m.window[2]);
  if (!oracle_clean(m.qkv_weight, 3 * C * C) || !oracle_clean(m.proj_weight, C * C)) return false;
  if (m.qkv_bias && !oracle_clean(m.qkv_bias, 3 * C)) return false;
  if (m.proj_bias && !oracle_clean(m.proj_bias, C)) return false;
  if (m.bias && !oracle_clean(m.bias, static_cast<size_t>(m.heads) * N * N)) return false;
  if (m.logit_scale && has_nan(m.logit_scale, static_cast<size_t>(m.heads))) return false;
  return true;
}

void check_layer_tokens(const LayerRef &m, int64_t batch, const int64_t grid[3], const float *input,
                        const float *output, Rng &rng, int samples, int64_t max_work, const char *where) {
  const int64_t C = m.channels, H = m.heads, D = C / H;
  const int64_t *W = m.window;
  const int64_t N = W[0] * W[1] * W[2];
  if (mul(N, 2 * C * C) + mul(mul(N, N), C) > max_work || !layer_ref_clean(m)) return;
  const bool v2 = m.logit_scale != nullptr;
  int64_t P[3], s[3];
  bool any_shift = false;
  for (int d = 0; d < 3; ++d) {
    P[d] = (grid[d] + W[d] - 1) / W[d] * W[d];
    s[d] = W[d] >= P[d] ? 0 : m.shift[d];  // torchvision: no shift on an axis the window covers
    any_shift = any_shift || s[d] > 0;
  }
  std::vector<double> x(static_cast<size_t>(N * C)), qkv(static_cast<size_t>(N * 3 * C)),
      eqkv(static_cast<size_t>(N * 3 * C));
  std::vector<int64_t> src(static_cast<size_t>(N) * 3), label(static_cast<size_t>(N));
  std::vector<unsigned char> inside(static_cast<size_t>(N));
  std::vector<double> l(static_cast<size_t>(N)), el(static_cast<size_t>(N)), vh(static_cast<size_t>(N * D)),
      evh(static_cast<size_t>(N * D)), alo(static_cast<size_t>(C)), ahi(static_cast<size_t>(C));
  // qkv[t][f] for f in [f0, f1), with its error bound: a float32 sum of C products and the bias.
  auto project = [&](int64_t t, int64_t f0, int64_t f1) {
    for (int64_t f = f0; f < f1; ++f) {
      double bias = m.qkv_bias ? m.qkv_bias[f] : 0.0;
      if (v2 && f >= C && f < 2 * C) bias = 0;  // SwinV2 ignores the key bias
      double val = bias, mag = std::fabs(bias);
      const float *wrow = m.qkv_weight + f * C;
      const double *xt = &x[t * C];
      for (int64_t c = 0; c < C; ++c) {
        val += wrow[c] * xt[c];
        mag += std::fabs(wrow[c] * xt[c]);
      }
      qkv[t * 3 * C + f] = val;
      eqkv[t * 3 * C + f] = gam(static_cast<double>(C) + 2) * mag + kDenorm * (static_cast<double>(C) + 1);
    }
  };
  auto at = [&](const float *base, int64_t b, const int64_t *pos) {
    return base + (((b * grid[0] + pos[0]) * grid[1] + pos[1]) * grid[2] + pos[2]) * C;
  };
  for (int sample = 0; sample < samples; ++sample) {
    const int64_t b = static_cast<int64_t>(rng.below(static_cast<size_t>(batch)));
    int64_t o[3], win[3];
    for (int d = 0; d < 3; ++d) {
      o[d] = static_cast<int64_t>(rng.below(static_cast<size_t>(grid[d])));
      win[d] = ((o[d] - s[d] + P[d]) % P[d]) / W[d];  // the window of o in the shifted map
    }
    // The window's tokens: where each comes from in the input (zero padding outside the grid), and its
    // region label for the shifted-window mask.
    bool clean = true;
    int64_t first_query = -1;
    for (int64_t t = 0; t < N && clean; ++t) {
      const int64_t tc[3] = {t / (W[1] * W[2]), t / W[2] % W[1], t % W[2]};
      bool in_grid = true;
      int64_t lab = 0;
      for (int d = 0; d < 3; ++d) {
        const int64_t pos = win[d] * W[d] + tc[d];
        src[t * 3 + d] = (pos + s[d]) % P[d];
        in_grid = in_grid && src[t * 3 + d] < grid[d];
        const int64_t region = s[d] == 0 ? 0 : pos < P[d] - W[d] ? 0 : pos < P[d] - s[d] ? 1 : 2;
        lab = lab * 3 + region;
      }
      inside[t] = in_grid;
      label[t] = lab;
      const float *xt = in_grid ? at(input, b, &src[t * 3]) : nullptr;
      if (xt && !oracle_clean(xt, static_cast<size_t>(C))) clean = false;
      if (in_grid && src[t * 3] == o[0] && src[t * 3 + 1] == o[1] && src[t * 3 + 2] == o[2]) first_query = t;
      for (int64_t c = 0; c < C; ++c) x[t * C + c] = xt ? xt[c] : 0.0;
      project(t, C, 3 * C);  // k and v of every token; q below, of the queries only
    }
    CHECK(!clean || first_query >= 0, "%s: harness: sampled token not found in its window", where);
    if (!clean) continue;
    int64_t queries[3] = {first_query, -1, -1};
    for (int extra = 1; extra < 3; ++extra) {
      const int64_t t = static_cast<int64_t>(rng.below(static_cast<size_t>(N)));
      if (inside[t] && t != first_query) queries[extra] = t;
    }
    for (int64_t i : queries) {
      if (i < 0) continue;
      project(i, 0, C);
      for (int64_t h = 0; h < H; ++h) {
        const double *q = &qkv[i * 3 * C + h * D];
        const double *eq = &eqkv[i * 3 * C + h * D];
        double qn = 0, eqn = 0;
        for (int64_t c = 0; c < D; ++c) qn += q[c] * q[c], eqn += eq[c] * eq[c];
        qn = std::sqrt(qn), eqn = std::sqrt(eqn);
        const double qden = std::max(qn, 1e-12);
        const double ls = v2 ? std::exp(std::min(static_cast<double>(m.logit_scale[h]), std::log(100.0))) : 0;
        const double sc = 1.0 / std::sqrt(static_cast<double>(D));
        for (int64_t j = 0; j < N; ++j) {
          const double *kj = &qkv[j * 3 * C + C + h * D];
          const double *ekj = &eqkv[j * 3 * C + C + h * D];
          double dot = 0, mag = 0, derr = 0, kn = 0, ekn = 0;
          for (int64_t c = 0; c < D; ++c) {
            dot += q[c] * kj[c];
            mag += std::fabs(q[c] * kj[c]);
            derr += std::fabs(q[c]) * ekj[c] + eq[c] * std::fabs(kj[c]) + eq[c] * ekj[c];
            kn += kj[c] * kj[c];
            ekn += ekj[c] * ekj[c];
          }
          const double bias = m.bias ? m.bias[(h * N + i) * N + j] : 0.0;
          const double mask = any_shift && label[i] != label[j] ? -100.0 : 0.0;
          if (!v2) {
            l[j] = sc * dot + bias + mask;
            el[j] = sc * (derr + gam(static_cast<double>(D) + 2) * mag) +
                    gam(4) * (sc * mag + std::fabs(bias) + std::fabs(mask));
          } else {
            // Cosine attention: q and k normalised (eps 1e-12), times exp(min(logit_scale, ln 100)). A
            // normalised vector moves by at most 2|e|/|x| when x moves by e.
            kn = std::sqrt(kn), ekn = std::sqrt(ekn);
            const double kden = std::max(kn, 1e-12);
            const double rq = 2 * eqn / qden + gam(static_cast<double>(D) + 4);
            const double rk = 2 * ekn / kden + gam(static_cast<double>(D) + 4);
            const double cosv = dot / (qden * kden);
            const double ecos = rq * (kn / kden) + rk * (qn / qden) + rq * rk +
                                gam(static_cast<double>(D) + 2) * mag / (qden * kden);
            l[j] = ls * cosv + bias + mask;
            el[j] = ls * ecos + gam(6) * (ls * std::fabs(cosv) + std::fabs(bias) + std::fabs(mask));
          }
          for (int64_t c = 0; c < D; ++c) {
            vh[j * D + c] = qkv[j * 3 * C + 2 * C + h * D + c];
            evh[j * D + c] = eqkv[j * 3 * C + 2 * C + h * D + c];
          }
        }
        softmax_interval(N, D, l.data(), el.data(), nullptr, vh.data(), evh.data(), &alo[h * D], &ahi[h * D]);
      }
      // Output projection of the attention output's interval.
      const float *y = at(output, b, &src[i * 3]);
      for (int64_t f = 0; f < C; ++f) {
        const double pb = m.proj_bias ? m.proj_bias[f] : 0.0;
        double lo = pb, hi = pb, mag = std::fabs(pb);
        for (int64_t c = 0; c < C; ++c) {
          const double w = m.proj_weight[f * C + c];
          lo += w >= 0 ? w * alo[c] : w * ahi[c];
          hi += w >= 0 ? w * ahi[c] : w * alo[c];
          mag += std::fabs(w) * std::max(std::fabs(alo[c]), std::fabs(ahi[c]));
        }
        const double slack = 2 * gam(static_cast<double>(C) + 2) * mag + kDenorm * 8;
        CHECK(y[f] >= lo - slack && y[f] <= hi + slack,
              "%s: output[b=%lld][%lld][%lld][%lld][%lld] = %.9g outside [%.9g, %.9g] (float64 reference, "
              "query token %lld of window {%lld,%lld,%lld})",
              where, (long long)b, (long long)src[i * 3], (long long)src[i * 3 + 1],
              (long long)src[i * 3 + 2], (long long)f, y[f], lo - slack, hi + slack, (long long)i,
              (long long)win[0], (long long)win[1], (long long)win[2]);
      }
    }
  }
}

void check_cpb_rows(int64_t wh, int64_t ww, const float *w1, const float *b1, const float *w2, int64_t hidden,
                    int64_t heads, const float *table, Rng &rng, int rows) {
  if (!oracle_clean(w1, static_cast<size_t>(hidden * 2)) ||
      !oracle_clean(w2, static_cast<size_t>(heads * hidden)) ||
      (b1 && !oracle_clean(b1, static_cast<size_t>(hidden))))
    return;
  const int64_t total = (2 * wh - 1) * (2 * ww - 1);
  std::vector<double> hid(static_cast<size_t>(hidden)), ehid(static_cast<size_t>(hidden));
  auto coord = [](int64_t delta, int64_t w) {
    double c = static_cast<double>(delta);
    if (w > 1) c /= static_cast<double>(w - 1);
    c *= 8;
    return (c > 0 ? 1.0 : c < 0 ? -1.0 : 0.0) * std::log2(std::fabs(c) + 1) / 3;
  };
  for (int k = 0; k < rows; ++k) {
    const int64_t r = static_cast<int64_t>(rng.below(static_cast<size_t>(total)));
    const double ch = coord(r / (2 * ww - 1) - (wh - 1), wh), cw = coord(r % (2 * ww - 1) - (ww - 1), ww);
    const double ec = 16 * kU;  // the coordinates in float32
    for (int64_t u = 0; u < hidden; ++u) {
      const double a = w1[u * 2], b = w1[u * 2 + 1], c = b1 ? b1[u] : 0.0;
      const double pre = a * ch + b * cw + c;
      hid[u] = std::max(pre, 0.0);
      ehid[u] = (std::fabs(a) + std::fabs(b)) * ec +
                gam(4) * (std::fabs(a * ch) + std::fabs(b * cw) + std::fabs(c)) + kDenorm * 4;
    }
    for (int64_t h = 0; h < heads; ++h) {
      double z = 0, mag = 0, err = 0;
      for (int64_t u = 0; u < hidden; ++u) {
        const double w = w2[h * hidden + u];
        z += w * hid[u];
        mag += std::fabs(w * hid[u]);
        err += std::fabs(w) * ehid[u];
      }
      err += gam(static_cast<double>(hidden) + 2) * mag;
      const double ref = 16 / (1 + std::exp(-z));
      const double tol = 2 * (4 * err + gam(16) * 16) + 1e-30;
      const float got = table[r * heads + h];
      CHECK(std::fabs(got - ref) <= tol, "table[%lld][%lld] = %.9g, float64 reference %.9g (tolerance %.3g)",
            (long long)r, (long long)h, got, ref, tol);
    }
  }
}

}  // namespace fz
