// Dev test and benchmark of the short-window batched attention kernels (f32_attention_short_*), built by
// hand (tests/short_dev/build.sh), not by CMake.
//
//   short_dev test [quick]   every kernel this build can run against a float64 oracle: n = 1..32,
//                            head_dim 1, 3, 8, 16, 17, 32, 64, batch sizes 1..64, bias / mask present or
//                            not (mixed within a batch), cosine, -inf rows, NaN, large logits, strided
//                            rows, guard pages; and grouping invariance (an item's output bits are the
//                            same alone, in any batch, at any position)
//   short_dev bench [secs]   rdtsc per call against the per-item kernels on the same items, GFLOP/s and
//                            share of an FMA peak probed in this process
#include <sys/mman.h>
#include <unistd.h>
#include <x86intrin.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "attention/attention.h"
#include "attention/f32_attention_short_impl.h"

using namespace winattn::detail;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

[[maybe_unused]] bool cpu_has_avx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
}
bool cpu_has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

struct DevKernel {
  const AttentionKernelInfo *info;
  bool runnable;
  const char *note;
};

std::vector<DevKernel> kernels() {
#ifdef SHORT_DEV_EMULATED_AVX512
  const bool avx512 = true;
  const char *note512 = "emulated (SIMDe)";
#else
  const bool avx512 = cpu_has_avx512();
  const char *note512 = avx512 ? "native" : "not on this CPU";
#endif
  return {{&f32_attention_short_16x2_avx512, avx512, note512},
          {&f32_attention_short_8x2_avx2, cpu_has_avx2(), cpu_has_avx2() ? "native" : "not on this CPU"}};
}

// ---- Memory: plain, or flush against a PROT_NONE page (after the data, or before it) ----------------------

enum class Guard { kNone, kAfter, kBefore };

class Arena {
 public:
  explicit Arena(Guard guard) : guard_(guard) {}
  Arena(const Arena &) = delete;
  Arena &operator=(const Arena &) = delete;
  ~Arena() {
    for (auto &m : maps_) munmap(m.first, m.second);
  }
  // floats, filled with `fill`; 4-byte aligned only when guarded (the kernels need no more for q/k/v/out).
  float *alloc(size_t floats, float fill) {
    if (floats == 0) floats = 1;
    float *p;
    if (guard_ == Guard::kNone) {
      plain_.emplace_back(floats, fill);
      p = plain_.back().data();
    } else {
      const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
      const size_t bytes = floats * sizeof(float);
      const size_t data_pages = (bytes + page - 1) / page;
      const size_t total = (data_pages + 1) * page;
      char *base = static_cast<char *>(
          mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
      if (base == MAP_FAILED) std::abort();
      maps_.emplace_back(base, total);
      if (guard_ == Guard::kAfter) {
        mprotect(base + data_pages * page, page, PROT_NONE);
        p = reinterpret_cast<float *>(base + data_pages * page - bytes);
      } else {
        mprotect(base, page, PROT_NONE);
        p = reinterpret_cast<float *>(base + page);
      }
      for (size_t i = 0; i < floats; ++i) p[i] = fill;
    }
    return p;
  }

 private:
  Guard guard_;
  std::vector<std::vector<float>> plain_;
  std::vector<std::pair<void *, size_t>> maps_;
};

// ---- Problems ---------------------------------------------------------------------------------------------

enum class Special { kNone, kInfRows, kNanQ, kNanK, kNanV, kNanBias, kLargeExact, kLargeRandom };

struct Config {
  int64_t n = 8, d = 64, count = 1;
  int64_t pad_q = 0, pad_k = 0, pad_v = 0, pad_out = 0;  // ld = d + pad
  bool cosine = false;
  double p_bias = 0.0, p_mask = 0.0;  // chance that an item has a bias / a mask
  bool mask_own_transpose = false;    // symmetric masks passed as their own transposes (ld n)
  double p_no_transpose = 0.0;        // chance that an item's terms come without transposes
  Special special = Special::kNone;
  Guard guard = Guard::kNone;
  uint64_t seed = 1;
};

std::string describe(const Config &c) {
  static const char *specials[] = {"none",  "inf-rows", "nan-q",       "nan-k",
                                   "nan-v", "nan-bias", "large-exact", "large-random"};
  char buf[256];
  std::snprintf(
      buf, sizeof buf,
      "n=%lld d=%lld count=%lld pads=%lld/%lld/%lld/%lld cosine=%d p_bias=%.1f p_mask=%.1f own_t=%d "
      "no_t=%.1f special=%s guard=%d seed=%llu",
      (long long)c.n, (long long)c.d, (long long)c.count, (long long)c.pad_q, (long long)c.pad_k,
      (long long)c.pad_v, (long long)c.pad_out, c.cosine, c.p_bias, c.p_mask, c.mask_own_transpose,
      c.p_no_transpose, specials[static_cast<int>(c.special)], static_cast<int>(c.guard),
      (unsigned long long)c.seed);
  return buf;
}

// One item's data: q, k, v, out rows at their strides; bias and mask [n][n] (or none) with their transposes.
struct Item {
  float *q = nullptr, *k = nullptr, *v = nullptr, *out = nullptr;
  std::vector<float> bias, mask;  // empty when absent
  float *bias_t = nullptr, *mask_t = nullptr;
  int64_t ld_bias_t = 0, ld_mask_t = 0;
  float scale = 1.0f;
  bool no_transpose = false;  // pass bias and mask without their transposes
  AttentionItem view() const {
    AttentionItem it;
    it.q = q, it.k = k, it.v = v, it.out = out, it.scale = scale;
    if (!bias.empty()) {
      it.terms.bias = bias.data();
      if (!no_transpose) {
        it.terms.bias_t = bias_t;
        it.terms.ld_bias_t = ld_bias_t;
      }
    }
    if (!mask.empty()) {
      it.terms.mask = mask.data();
      if (!no_transpose) {
        it.terms.mask_t = mask_t;
        it.terms.ld_mask_t = ld_mask_t;
      }
    }
    return it;
  }
};

constexpr float kOutFill = 777.0f;                                   // output rows before the call
constexpr float kGapFill = std::numeric_limits<float>::quiet_NaN();  // between rows: must never be used

struct Problem {
  Config cfg;
  Arena arena;
  std::vector<Item> items;
  int64_t ld_q, ld_k, ld_v, ld_out;
  explicit Problem(const Config &c) : cfg(c), arena(c.guard) {}
  AttentionShape shape() const {
    AttentionShape s;
    s.n = cfg.n, s.head_dim = cfg.d, s.ld_q = ld_q, s.ld_k = ld_k, s.ld_v = ld_v, s.ld_out = ld_out;
    s.cosine = cfg.cosine;
    return s;
  }
  // Fresh output rows (gaps and rows as before any call).
  void reset_outputs() {
    for (Item &it : items) {
      for (int64_t i = 0; i < cfg.n; ++i)
        for (int64_t c = 0; c < ld_out; ++c) {
          if (i == cfg.n - 1 && c >= cfg.d) break;
          it.out[i * ld_out + c] = c < cfg.d ? kOutFill : kGapFill;
        }
    }
  }
};

// Rows of `rows` x ld floats where only the first d of each row are data; the last row ends at its d-th
// float (so a guard page after it catches any read past the data).
float *alloc_rows(Arena &arena, int64_t rows, int64_t d, int64_t ld, float fill) {
  return arena.alloc(static_cast<size_t>((rows - 1) * ld + d), fill);
}

std::unique_ptr<Problem> make_problem(const Config &cfg) {
  auto p = std::make_unique<Problem>(cfg);
  const int64_t n = cfg.n, d = cfg.d;
  p->ld_q = d + cfg.pad_q, p->ld_k = d + cfg.pad_k, p->ld_v = d + cfg.pad_v, p->ld_out = d + cfg.pad_out;
  std::mt19937_64 rng(cfg.seed);
  auto uniform = [&](double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); };
  auto integer = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  const bool exact = cfg.special == Special::kLargeExact;
  p->items.resize(static_cast<size_t>(cfg.count));
  for (int64_t b = 0; b < cfg.count; ++b) {
    Item &it = p->items[static_cast<size_t>(b)];
    it.q = alloc_rows(p->arena, n, d, p->ld_q, kGapFill);
    it.k = alloc_rows(p->arena, n, d, p->ld_k, kGapFill);
    it.v = alloc_rows(p->arena, n, d, p->ld_v, kGapFill);
    it.out = alloc_rows(p->arena, n, d, p->ld_out, kGapFill);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < d; ++c) {
        it.q[i * p->ld_q + c] = exact ? float(integer(-3, 3)) : float(uniform(-1.0, 1.0));
        it.k[i * p->ld_k + c] = exact ? float(integer(-3, 3)) : float(uniform(-1.0, 1.0));
        it.v[i * p->ld_v + c] = exact ? float(integer(-4, 4)) : float(uniform(-2.0, 2.0));
      }
    // Scales differ between items of a batch.
    if (exact) {
      it.scale = 1.0f;
    } else if (cfg.special == Special::kLargeRandom) {
      it.scale = float(uniform(0.5, 1.0) * 1e4 / std::sqrt(double(d)));
    } else if (cfg.cosine) {
      it.scale = float(uniform(1.0, 30.0));
    } else {
      it.scale = float(uniform(0.3, 1.5) / std::sqrt(double(d)));
    }
    if (cfg.cosine && b % 5 == 3 && n > 1) {  // a zero key row and a zero query row: the eps of the norm
      for (int64_t c = 0; c < d; ++c) it.k[(n - 1) * p->ld_k + c] = 0.0f;
      for (int64_t c = 0; c < d; ++c) it.q[0 * p->ld_q + c] = 0.0f;
    }
    it.no_transpose = uniform(0.0, 1.0) < cfg.p_no_transpose;
    const bool has_bias = exact || uniform(0.0, 1.0) < cfg.p_bias || cfg.special == Special::kNanBias;
    const bool has_mask = uniform(0.0, 1.0) < cfg.p_mask || cfg.special == Special::kInfRows;
    if (has_bias) {
      it.bias.resize(static_cast<size_t>(n * n));
      for (int64_t i = 0; i < n; ++i) {
        // exact: rows around +1e4 or -1e4 (integers, exact in float, as are the logits)
        const float row_base = float((integer(0, 1) * 2 - 1) * 10000);
        for (int64_t j = 0; j < n; ++j)
          it.bias[i * n + j] = exact ? row_base + float(integer(-20, 20)) : float(uniform(-4.0, 4.0));
      }
    }
    if (has_mask) {
      it.mask.assign(static_cast<size_t>(n * n), 0.0f);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j <= i; ++j) {
          float m = 0.0f;
          const double u = uniform(0.0, 1.0);
          if (i != j && u < 0.3) m = -100.0f;
          if (i != j && u > 0.85) m = -kInf;
          it.mask[i * n + j] = m;
          it.mask[j * n + i] = cfg.mask_own_transpose ? m : (uniform(0.0, 1.0) < 0.5 ? m : 0.0f);
        }
      if (cfg.special == Special::kInfRows) {  // a fully masked row (and column, to stay symmetric)
        const int64_t r = integer(0, static_cast<int>(n - 1));
        for (int64_t j = 0; j < n; ++j) it.mask[r * n + j] = -kInf;
        if (cfg.mask_own_transpose)
          for (int64_t j = 0; j < n; ++j) it.mask[j * n + r] = -kInf;
      }
    }
    // Transposes: [n][ld] with ld = transposed_terms_ld(n); lanes past n hold junk (finite).
    auto transpose = [&](const std::vector<float> &src, int64_t ld) {
      float *dst = p->arena.alloc(static_cast<size_t>((n - 1) * ld + n), 4321.0f);
      for (int64_t j = 0; j < n; ++j)
        for (int64_t i = 0; i < n; ++i) dst[j * ld + i] = src[i * n + j];
      return dst;
    };
    if (has_bias) {
      it.ld_bias_t = transposed_terms_ld(n) + (b % 3 == 2 ? 16 : 0);
      it.bias_t = transpose(it.bias, it.ld_bias_t);
    }
    if (has_mask) {
      if (cfg.mask_own_transpose) {
        it.mask_t = p->arena.alloc(static_cast<size_t>(n * n), 0.0f);
        std::memcpy(it.mask_t, it.mask.data(), sizeof(float) * static_cast<size_t>(n * n));
        it.ld_mask_t = n;
      } else {
        it.ld_mask_t = transposed_terms_ld(n);
        it.mask_t = transpose(it.mask, it.ld_mask_t);
      }
    }
  }
  // Specials that poison one item of the batch (the others must stay clean).
  if (cfg.count > 0) {
    Item &it = p->items[static_cast<size_t>(integer(0, static_cast<int>(cfg.count - 1)))];
    const int64_t r = integer(0, static_cast<int>(n - 1)), c = integer(0, static_cast<int>(d - 1));
    const float nan = std::numeric_limits<float>::quiet_NaN();
    switch (cfg.special) {
      case Special::kNanQ:
        it.q[r * p->ld_q + c] = nan;
        break;
      case Special::kNanK:
        it.k[r * p->ld_k + c] = nan;
        break;
      case Special::kNanV:
        it.v[r * p->ld_v + c] = nan;
        break;
      case Special::kNanBias: {
        const int64_t j = integer(0, static_cast<int>(n - 1));
        it.bias[r * n + j] = nan;
        it.bias_t[j * it.ld_bias_t + r] = nan;
        break;
      }
      default:
        break;
    }
  }
  p->reset_outputs();
  return p;
}

// ---- The float64 oracle
// ------------------------------------------------------------------------------------

// out (double, [n][d]) and each row's scale max_c sum_j p_ij |v_jc| (0 for a fully masked row).
void oracle(const Problem &p, const Item &it, std::vector<double> &out, std::vector<double> &row_scale) {
  const int64_t n = p.cfg.n, d = p.cfg.d;
  out.assign(static_cast<size_t>(n * d), 0.0);
  row_scale.assign(static_cast<size_t>(n), 0.0);
  auto inv_norm = [&](const float *x) {
    double s = 0.0;
    for (int64_t c = 0; c < d; ++c) s += double(x[c]) * x[c];
    return 1.0 / std::max(std::sqrt(s), 1e-12);
  };
  std::vector<double> key_norm(static_cast<size_t>(n), 1.0), logits(static_cast<size_t>(n));
  if (p.cfg.cosine)
    for (int64_t j = 0; j < n; ++j) key_norm[j] = inv_norm(it.k + j * p.ld_k);
  for (int64_t i = 0; i < n; ++i) {
    const float *qi = it.q + i * p.ld_q;
    const double qn = p.cfg.cosine ? inv_norm(qi) : 1.0;
    double row_max = -INFINITY;
    bool nan = false;
    for (int64_t j = 0; j < n; ++j) {
      double dot = 0.0;
      for (int64_t c = 0; c < d; ++c) dot += double(qi[c]) * it.k[j * p.ld_k + c];
      double l = double(it.scale) * dot * qn * key_norm[j];
      if (!it.bias.empty()) l += it.bias[i * n + j];
      if (!it.mask.empty()) l += it.mask[i * n + j];
      logits[j] = l;
      if (std::isnan(l)) {
        nan = true;
      } else {
        row_max = std::max(row_max, l);
      }
    }
    double *o = &out[static_cast<size_t>(i * d)];
    if (nan) {
      for (int64_t c = 0; c < d; ++c) o[c] = NAN;
      continue;
    }
    if (row_max == -INFINITY) continue;  // zeros
    double denom = 0.0;
    for (int64_t j = 0; j < n; ++j) denom += std::exp(logits[j] - row_max);
    for (int64_t c = 0; c < d; ++c) {
      double acc = 0.0, mag = 0.0;
      for (int64_t j = 0; j < n; ++j) {
        const double w = std::exp(logits[j] - row_max) / denom;
        acc += w * it.v[j * p.ld_v + c];
        mag += w * std::fabs(double(it.v[j * p.ld_v + c]));
      }
      o[c] = acc;
      if (!std::isnan(mag)) row_scale[i] = std::max(row_scale[i], mag);
    }
  }
}

// ---- Checks
// -------------------------------------------------------------------------------------------------

struct Stats {
  int64_t checks = 0, failures = 0;
  double worst = 0.0;        // worst error relative to the row scale (finite rows, ordinary logits)
  double worst_plain = 0.0;  // the same without cosine attention
  std::string worst_at;
};

void fail(Stats &st, const std::string &what) {
  ++st.failures;
  if (st.failures <= 20) std::printf("FAIL %s\n", what.c_str());
}

double tolerance(const Config &c) {
  if (c.special == Special::kLargeRandom) return 5e-2;  // fp32 logits of 1e4 carry ~1e-3 absolute error
  return 1e-5;
}

// Output of item b against the oracle; gaps between rows untouched.
void check_item(Stats &st, const DevKernel &k, const Problem &p, const Item &it, const char *label) {
  std::vector<double> ref, row_scale;
  oracle(p, it, ref, row_scale);
  const int64_t n = p.cfg.n, d = p.cfg.d;
  ++st.checks;
  double worst = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t c = 0; c < p.ld_out; ++c) {
      if (i == n - 1 && c >= d) break;
      const float got = it.out[i * p.ld_out + c];
      if (c >= d) {
        if (!std::isnan(got)) return fail(st, std::string(k.info->name) + " wrote a gap: " + describe(p.cfg));
        continue;
      }
      const double want = ref[static_cast<size_t>(i * d + c)];
      if (std::isnan(want) != std::isnan(got)) {
        char buf[128];
        std::snprintf(buf, sizeof buf, " [%s] row %lld col %lld got %g want %g", label, (long long)i,
                      (long long)c, got, want);
        return fail(st, std::string(k.info->name) + buf + " " + describe(p.cfg));
      }
      if (std::isnan(want)) continue;
      const double err = std::fabs(double(got) - want);
      const double rel = row_scale[i] > 0.0 ? err / row_scale[i] : (err == 0.0 ? 0.0 : INFINITY);
      worst = std::max(worst, rel);
    }
  }
  if (!(worst <= tolerance(p.cfg))) {
    char buf[64];
    std::snprintf(buf, sizeof buf, " [%s] error %.3g", label, worst);
    return fail(st, std::string(k.info->name) + buf + " " + describe(p.cfg));
  }
  if (p.cfg.special != Special::kLargeRandom && !p.cfg.cosine)
    st.worst_plain = std::max(st.worst_plain, worst);
  if (p.cfg.special != Special::kLargeRandom && worst > st.worst) {
    st.worst = worst;
    st.worst_at = describe(p.cfg);
  }
}

// Runs items [first, first + count) of p in one call.
void run_batch(const DevKernel &k, const Problem &p, const std::vector<AttentionItem> &views, int64_t first,
               int64_t count) {
  const AttentionShape shape = p.shape();
  const size_t floats = k.info->workspace_floats(p.cfg.n, p.cfg.d);
  // Poisoned scratch: the kernel must not read what it did not write.
  float *ws = static_cast<float *>(std::aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64));
  for (size_t i = 0; i < floats; ++i) ws[i] = std::numeric_limits<float>::quiet_NaN();
  k.info->run_batch(shape, views.data() + first, count, ws);
  std::free(ws);
}

std::vector<float> snapshot(const Problem &p) {
  std::vector<float> all;
  for (const Item &it : p.items)
    for (int64_t i = 0; i < p.cfg.n; ++i)
      all.insert(all.end(), it.out + i * p.ld_out, it.out + i * p.ld_out + p.cfg.d);
  return all;
}

bool same_bits(const std::vector<float> &a, const std::vector<float> &b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// One configuration on one kernel: the whole batch against the oracle, then the same items run alone, in
// random chunks and in reverse order must give the same bits.
void check_config(Stats &st, const DevKernel &k, const Config &cfg, bool grouping) {
  auto p = make_problem(cfg);
  std::vector<AttentionItem> views;
  for (const Item &it : p->items) views.push_back(it.view());
  run_batch(k, *p, views, 0, cfg.count);
  for (const Item &it : p->items) check_item(st, k, *p, it, "batch");
  if (!grouping) return;
  const std::vector<float> whole = snapshot(*p);

  p->reset_outputs();
  for (int64_t b = 0; b < cfg.count; ++b) run_batch(k, *p, views, b, 1);
  if (!same_bits(whole, snapshot(*p)))
    fail(st, std::string(k.info->name) + " alone != batch: " + describe(cfg));

  p->reset_outputs();
  std::mt19937_64 rng(cfg.seed ^ 0x9e3779b97f4a7c15ull);
  for (int64_t b = 0; b < cfg.count;) {
    const int64_t chunk = std::min<int64_t>(cfg.count - b, std::uniform_int_distribution<int64_t>(1, 9)(rng));
    run_batch(k, *p, views, b, chunk);
    b += chunk;
  }
  if (!same_bits(whole, snapshot(*p)))
    fail(st, std::string(k.info->name) + " chunks != batch: " + describe(cfg));

  p->reset_outputs();
  std::vector<AttentionItem> reversed(views.rbegin(), views.rend());
  run_batch(k, *p, reversed, 0, cfg.count);
  if (!same_bits(whole, snapshot(*p)))
    fail(st, std::string(k.info->name) + " reversed != batch: " + describe(cfg));
}

int run_tests(bool quick) {
  int failures = 0;
  for (const DevKernel &k : kernels()) {
    if (!k.runnable) {
      std::printf("%-34s skipped (%s)\n", k.info->name, k.note);
      continue;
    }
    const auto start = std::chrono::steady_clock::now();
    Stats st;
    uint64_t seed = 1;
    const int64_t dims[] = {1, 3, 8, 16, 17, 32, 64};
    // 1. The matrix: every n, every head_dim, cosine or not, terms none / bias / mask / both / mixed per
    // item, odd and full batch sizes, strides, some masks passed as their own transposes.
    for (int64_t n = 1; n <= attention_short_impl::kMaxN; ++n)
      for (int64_t d : dims)
        for (int cosine = 0; cosine < 2; ++cosine)
          for (int terms = 0; terms < 5; ++terms) {
            if (quick && (terms % 2 == 1 || (n % 3 != 0 && n != 8 && n != 16))) continue;
            Config c;
            c.n = n, c.d = d, c.cosine = cosine != 0, c.seed = seed++;
            const int64_t counts[] = {1, 7, 13, 64};
            c.count = counts[(n + d + terms + cosine) % 4];
            c.p_bias = terms == 1 || terms == 3 ? 1.0 : terms == 4 ? 0.5 : 0.0;
            c.p_mask = terms == 2 || terms == 3 ? 1.0 : terms == 4 ? 0.5 : 0.0;
            c.mask_own_transpose = (n + terms) % 2 == 0;
            c.p_no_transpose = (n + d + cosine) % 3 == 0 ? 0.4 : 0.0;
            c.pad_q = (n + d) % 4, c.pad_k = (n * 3 + d) % 5, c.pad_v = (n + 2 * d) % 3,
            c.pad_out = (n + d) % 2 * 3;
            check_config(st, k, c, true);
          }
    // 2. Every batch size 1..64 for a few shapes.
    for (int64_t n : {1, 3, 5, 8, 12, 16, 25, 32})
      for (int64_t d : {17, 64})
        for (int64_t count = 1; count <= attention_short_impl::kMaxBatch; ++count) {
          if (quick && count % 5 != 0 && count != 1) continue;
          Config c;
          c.n = n, c.d = d, c.count = count, c.seed = seed++, c.p_bias = 0.5, c.p_mask = 0.5;
          c.p_no_transpose = count % 3 == 0 ? 0.3 : 0.0;
          c.pad_q = 1, c.pad_v = 2;
          check_config(st, k, c, count % 4 == 1);
        }
    // 3. Specials for every n.
    const Special specials[] = {Special::kInfRows, Special::kNanQ,       Special::kNanK,       Special::kNanV,
                                Special::kNanBias, Special::kLargeExact, Special::kLargeRandom};
    for (int64_t n = 1; n <= attention_short_impl::kMaxN; ++n)
      for (int64_t d : {8, 17, 64})
        for (Special s : specials) {
          if (quick && n % 4 != 0 && n != 1) continue;
          Config c;
          c.n = n, c.d = d, c.count = 2 + (n + d) % 11, c.special = s, c.seed = seed++;
          c.p_bias = 0.5, c.p_mask = 0.5, c.mask_own_transpose = n % 2 == 0, c.pad_k = 2, c.pad_out = 1;
          c.cosine = s == Special::kNanQ && n % 2 == 0;
          check_config(st, k, c, true);
        }
    // 4. Guard pages right after and right before every array: no read or write outside the rows.
    for (int64_t n : {1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 17, 25, 31, 32})
      for (int64_t d : {1, 3, 16, 17, 64})
        for (Guard g : {Guard::kAfter, Guard::kBefore}) {
          Config c;
          c.n = n, c.d = d, c.count = 1 + (n + d) % 6, c.guard = g, c.seed = seed++;
          c.p_bias = 0.7, c.p_mask = 0.7, c.mask_own_transpose = n % 2 == 1, c.pad_q = n % 3;
          c.p_no_transpose = 0.3;
          c.cosine = d == 17;
          check_config(st, k, c, false);
        }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf(
        "%-34s %s: %lld item checks, %lld failures, worst error %.2e (x row scale; %.2e without cosine) at "
        "%s  "
        "[%.1f s]\n",
        k.info->name, k.note, (long long)st.checks, (long long)st.failures, st.worst, st.worst_plain,
        st.worst_at.c_str(), secs);
    failures += static_cast<int>(st.failures);
  }
  std::printf("%d passed, %d failed\n", failures == 0 ? 1 : 0, failures == 0 ? 0 : 1);
  return failures == 0 ? 0 : 1;
}

}  // namespace

int run_bench(int argc, char **argv);  // short_dev_bench.cpp

int main(int argc, char **argv) {
  const std::string mode = argc > 1 ? argv[1] : "test";
  if (mode == "test") return run_tests(argc > 2 && std::string(argv[2]) == "quick");
  if (mode == "bench") return run_bench(argc - 1, argv + 1);
  std::fprintf(stderr, "usage: %s test [quick] | bench [options]\n", argv[0]);
  return 2;
}
