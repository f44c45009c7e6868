// Concurrency stress test: many std::threads share winattn layers and call the kernels at once, while
// another thread changes the thread count and the ISA cap.
//
// Phase 1 (bitwise): 8 worker threads run a mix of jobs (a v1 layer with a bias table and shift, a v2 layer
// with logit scale and continuous position bias, the stateless layer and winattn_window_attention) with a
// different batch and grid per call, on ONE shared layer object per variant. Each result must equal the
// serial result bit for bit (memcmp). A control thread keeps calling winattn_set_num_threads (results are
// bit-identical for any thread count), winattn_get_num_threads, winattn_active_isa. Workers also create
// and destroy private layers, and make failing calls to check the per-thread error message.
// Phase 2 (ISA changes): the control thread cycles winattn_set_max_isa through every name while workers
// run. Each result must equal the serial result of one of the ISAs bit for bit, or else be within
// tolerance of the native one (counted and printed as "not bitwise equal to any ISA").
//
// Environment: WINATTN_STRESS_ITERS (calls per worker per phase, default 8000: ~12 s in Release on 2 cores),
// WINATTN_STRESS_MAX_OMP (largest value given to winattn_set_num_threads, default 4; 1 under TSan, whose
// runtime does not see libgomp's synchronisation).
#include <winattn/winattn.h>

#include <atomic>
#include <cstdarg>
#include <functional>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr int kWorkers = 8;
const char *const kIsas[] = {"native", "amx_bf16", "avx512_bf16", "avx512", "avx2", "scalar"};
constexpr int kNumIsas = 5;

std::mutex g_fail_mutex;
std::atomic<int> g_failures{0};

void failf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void failf(const char *fmt, ...) {
  std::lock_guard<std::mutex> lock(g_fail_mutex);
  if (g_failures.fetch_add(1) < 20) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FAIL: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
  }
}

std::vector<float> random_vector(size_t n, uint64_t seed, float scale) {
  std::vector<float> v(n);
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (float &x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = scale * (static_cast<float>(s >> 40) / 16777216.0f * 2.0f - 1.0f);
  }
  return v;
}

struct LayerWeights {
  int64_t channels, heads, window[3], shift[3];
  std::vector<float> qkv_w, qkv_b, proj_w, proj_b, table, logit, cpb_w1, cpb_b1, cpb_w2;
  int64_t cpb_hidden = 0;
  bool v2 = false;

  winattn_layer_desc desc() const {
    winattn_layer_desc d;
    std::memset(&d, 0, sizeof d);
    d.channels = channels;
    d.num_heads = heads;
    for (int i = 0; i < 3; ++i) d.window[i] = window[i], d.shift[i] = shift[i];
    d.qkv_weight = qkv_w.data();
    d.qkv_bias = qkv_b.data();
    d.proj_weight = proj_w.data();
    d.proj_bias = proj_b.data();
    d.relative_position_bias_table = v2 ? nullptr : table.data();
    d.logit_scale = v2 ? logit.data() : nullptr;
    d.cpb_weight1 = v2 ? cpb_w1.data() : nullptr;
    d.cpb_bias1 = v2 ? cpb_b1.data() : nullptr;
    d.cpb_weight2 = v2 ? cpb_w2.data() : nullptr;
    d.cpb_hidden = v2 ? cpb_hidden : 0;
    d.compute_dtype = WINATTN_DTYPE_F32;
    return d;
  }
};

LayerWeights make_weights(int64_t c, int64_t heads, int64_t wh, int64_t ww, int64_t sh, int64_t sw, bool v2,
                          uint64_t seed) {
  LayerWeights w;
  w.channels = c;
  w.heads = heads;
  w.window[0] = 1, w.window[1] = wh, w.window[2] = ww;
  w.shift[0] = 0, w.shift[1] = sh, w.shift[2] = sw;
  w.v2 = v2;
  const float ws = 1.0f / std::sqrt(static_cast<float>(c));
  w.qkv_w = random_vector(static_cast<size_t>(3 * c * c), seed + 1, ws);
  w.qkv_b = random_vector(static_cast<size_t>(3 * c), seed + 2, 0.1f);
  w.proj_w = random_vector(static_cast<size_t>(c * c), seed + 3, ws);
  w.proj_b = random_vector(static_cast<size_t>(c), seed + 4, 0.1f);
  w.table = random_vector(static_cast<size_t>((2 * wh - 1) * (2 * ww - 1) * heads), seed + 5, 2.0f);
  w.logit = random_vector(static_cast<size_t>(heads), seed + 6, 1.0f);
  for (float &x : w.logit) x += std::log(10.0f);
  w.cpb_hidden = 512;
  w.cpb_w1 = random_vector(static_cast<size_t>(w.cpb_hidden * 2), seed + 7, 1.0f);
  w.cpb_b1 = random_vector(static_cast<size_t>(w.cpb_hidden), seed + 8, 0.5f);
  w.cpb_w2 = random_vector(static_cast<size_t>(heads * w.cpb_hidden), seed + 9, 0.05f);
  return w;
}

// The relative position bias a v1 layer looks up, for the stateless job.
std::vector<float> looked_up_bias(const LayerWeights &w) {
  const int64_t n = w.window[1] * w.window[2];
  std::vector<int64_t> index(static_cast<size_t>(n * n));
  const int64_t win2[2] = {w.window[1], w.window[2]};
  std::vector<float> bias(static_cast<size_t>(w.heads * n * n));
  if (winattn_relative_position_index(2, win2, index.data()) != WINATTN_STATUS_OK ||
      winattn_relative_position_bias(w.table.data(), (2 * w.window[1] - 1) * (2 * w.window[2] - 1), w.heads,
                                     index.data(), n, bias.data()) != WINATTN_STATUS_OK) {
    failf("bias lookup: %s", winattn_last_error_message());
  }
  return bias;
}

enum class Kind { kLayerV1, kLayerV2, kStateless, kKernel };

struct Job {
  Kind kind;
  int64_t batch = 1, grid[3] = {1, 1, 1};
  // kernel
  int64_t nw = 0, heads = 0, n = 0, d = 0, mask_windows = 0;
  std::vector<float> in, q, k, v, bias, mask;
  size_t out_size = 0;
  std::vector<float> ref[kNumIsas];  // serial result per entry of kIsas
  std::string name;
};

struct Shared {
  LayerWeights w1, w2;
  winattn_layer *layer_v1 = nullptr, *layer_v2 = nullptr;
  std::vector<float> v1_bias;  // looked-up bias for the stateless job
  std::vector<Job> jobs;
};

winattn_status run_job(const Shared &sh, const Job &job, float *out) {
  switch (job.kind) {
    case Kind::kLayerV1:
      return winattn_layer_forward(sh.layer_v1, job.in.data(), job.batch, job.grid, out);
    case Kind::kLayerV2:
      return winattn_layer_forward(sh.layer_v2, job.in.data(), job.batch, job.grid, out);
    case Kind::kStateless: {
      winattn_window_attention_args a;
      std::memset(&a, 0, sizeof a);
      a.batch = job.batch;
      for (int i = 0; i < 3; ++i)
        a.grid[i] = job.grid[i], a.window[i] = sh.w1.window[i], a.shift[i] = sh.w1.shift[i];
      a.channels = sh.w1.channels;
      a.num_heads = sh.w1.heads;
      a.qkv_weight = sh.w1.qkv_w.data();
      a.qkv_bias = sh.w1.qkv_b.data();
      a.proj_weight = sh.w1.proj_w.data();
      a.proj_bias = sh.w1.proj_b.data();
      a.relative_position_bias = sh.v1_bias.data();
      return winattn_shifted_window_attention(&a, job.in.data(), out);
    }
    case Kind::kKernel:
      return winattn_window_attention(job.nw, job.heads, job.n, job.d, job.q.data(), job.k.data(),
                                      job.v.data(), 1.0f / std::sqrt(static_cast<float>(job.d)),
                                      job.bias.data(), job.mask.data(), job.mask_windows, out);
  }
  return WINATTN_STATUS_INTERNAL_ERROR;
}

void add_layer_job(Shared &sh, Kind kind, int64_t batch, int64_t h, int64_t w, uint64_t seed) {
  Job j;
  j.kind = kind;
  j.batch = batch;
  j.grid[1] = h, j.grid[2] = w;
  const int64_t c = kind == Kind::kLayerV2 ? sh.w2.channels : sh.w1.channels;
  j.out_size = static_cast<size_t>(batch * h * w * c);
  j.in = random_vector(j.out_size, seed, 1.0f);
  char name[96];
  snprintf(name, sizeof name, "%s batch %lld grid %lldx%lld",
           kind == Kind::kLayerV1   ? "layer v1"
           : kind == Kind::kLayerV2 ? "layer v2"
                                    : "stateless v1",
           (long long)batch, (long long)h, (long long)w);
  j.name = name;
  sh.jobs.push_back(std::move(j));
}

void add_kernel_job(Shared &sh, int64_t batch, int64_t nw_per_image, int64_t heads, int64_t n, int64_t d,
                    uint64_t seed) {
  Job j;
  j.kind = Kind::kKernel;
  j.nw = batch * nw_per_image, j.heads = heads, j.n = n, j.d = d, j.mask_windows = nw_per_image;
  j.out_size = static_cast<size_t>(j.nw * heads * n * d);
  j.q = random_vector(j.out_size, seed, 1.0f);
  j.k = random_vector(j.out_size, seed + 1, 1.0f);
  j.v = random_vector(j.out_size, seed + 2, 1.0f);
  j.bias = random_vector(static_cast<size_t>(heads * n * n), seed + 3, 2.0f);
  j.mask.assign(static_cast<size_t>(nw_per_image * n * n), 0.0f);
  for (size_t i = 0; i < j.mask.size(); ++i)
    if ((i * 2654435761u) % 5 == 0 && i % static_cast<size_t>(n + 1) != 0) j.mask[i] = -100.0f;
  char name[96];
  snprintf(name, sizeof name, "window_attention nw %lld heads %lld n %lld d %lld", (long long)j.nw,
           (long long)heads, (long long)n, (long long)d);
  j.name = name;
  sh.jobs.push_back(std::move(j));
}

int env_int(const char *name, int fallback) {
  const char *s = getenv(name);
  if (s == nullptr || *s == '\0') return fallback;
  return atoi(s);
}

// A failing call whose message must name this thread's value; then successful calls must leave it alone.
void check_error_message(const Shared &sh, int tid, std::vector<float> &scratch) {
  const int64_t bad_heads = -(1000 + tid);
  const winattn_status s =
      winattn_window_attention(1, bad_heads, 4, 4, scratch.data(), scratch.data(), scratch.data(), 1.0f,
                               nullptr, nullptr, 0, scratch.data() + 64);
  if (s != WINATTN_STATUS_INVALID_ARGUMENT)
    failf("thread %d: num_heads %lld gave status %d", tid, (long long)bad_heads, static_cast<int>(s));
  const std::string msg = winattn_last_error_message();
  if (msg.find(std::to_string(bad_heads)) == std::string::npos)
    failf("thread %d: error message \"%s\" does not name %lld", tid, msg.c_str(), (long long)bad_heads);
  (void)sh;
  if (winattn_set_num_threads(winattn_get_num_threads()) != WINATTN_STATUS_OK)
    failf("set_num_threads failed");
  if (msg != winattn_last_error_message())
    failf("thread %d: message changed to \"%s\" without a failing call on this thread", tid,
          winattn_last_error_message());
}

bool within_tolerance(const float *a, const float *b, size_t n, double *max_err) {
  double worst = 0;
  for (size_t i = 0; i < n; ++i) {
    const double e =
        std::fabs(static_cast<double>(a[i]) - b[i]) / (1.0 + std::fabs(static_cast<double>(b[i])));
    if (!(e <= worst)) worst = std::isnan(e) ? INFINITY : e;
  }
  *max_err = worst;
  return worst <= 1e-3;
}

struct PhaseStats {
  std::atomic<long> calls{0}, bitwise{0}, not_bitwise{0};
};

void worker(const Shared &sh, int tid, int iters, bool isa_phase, PhaseStats &stats) {
  std::vector<float> out;
  std::vector<float> scratch(256, 0.5f);
  for (int it = 0; it < iters; ++it) {
    const size_t ji = (static_cast<size_t>(tid) * 7 + static_cast<size_t>(it) * 3 + it / 5) % sh.jobs.size();
    const Job &job = sh.jobs[ji];
    out.assign(job.out_size, -12345.0f);
    const winattn_status s = run_job(sh, job, out.data());
    stats.calls.fetch_add(1);
    if (s != WINATTN_STATUS_OK) {
      failf("thread %d: %s: status %d: %s", tid, job.name.c_str(), static_cast<int>(s),
            winattn_last_error_message());
      continue;
    }
    const size_t bytes = job.out_size * sizeof(float);
    if (!isa_phase) {
      if (std::memcmp(out.data(), job.ref[0].data(), bytes) != 0)
        failf("thread %d iteration %d: %s differs from the serial result", tid, it, job.name.c_str());
      else
        stats.bitwise.fetch_add(1);
    } else {
      bool any = false;
      for (int i = 0; i < kNumIsas && !any; ++i) any = std::memcmp(out.data(), job.ref[i].data(), bytes) == 0;
      if (any) {
        stats.bitwise.fetch_add(1);
      } else {
        stats.not_bitwise.fetch_add(1);
        double err = 0;
        if (!within_tolerance(out.data(), job.ref[0].data(), job.out_size, &err))
          failf("thread %d iteration %d: %s (ISA changing) differs from native by %g", tid, it,
                job.name.c_str(), err);
      }
    }
    if (it % 16 == 5) check_error_message(sh, tid, scratch);
    if (it % 24 == 11) {  // private layers created and destroyed while the shared ones run
      const winattn_layer_desc d = (tid % 2 ? sh.w2 : sh.w1).desc();
      winattn_layer *mine = nullptr;
      if (winattn_layer_create(&d, &mine) != WINATTN_STATUS_OK)
        failf("thread %d: private layer_create: %s", tid, winattn_last_error_message());
      winattn_layer_destroy(mine);
    }
  }
}

void control(std::atomic<bool> &stop, bool isa_phase, int max_omp, long *changes) {
  long k = 0;
  while (!stop.load()) {
    if (isa_phase) {
      if (winattn_set_max_isa(kIsas[k % kNumIsas]) != WINATTN_STATUS_OK) failf("set_max_isa failed");
    } else {
      if (winattn_set_num_threads(static_cast<int>(k % (max_omp + 1))) != WINATTN_STATUS_OK)
        failf("set_num_threads failed");
    }
    const char *isa = winattn_active_isa();
    if (isa == nullptr || isa[0] == '\0') failf("active_isa empty");
    if (winattn_get_num_threads() < 0) failf("get_num_threads negative");
    ++k;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  *changes = k;
}

bool run_phase(const Shared &sh, bool isa_phase, int iters, int max_omp) {
  PhaseStats stats;
  std::atomic<bool> stop{false};
  long changes = 0;
  const int failures_before = g_failures.load();
  const auto t0 = std::chrono::steady_clock::now();
  std::thread ctl(control, std::ref(stop), isa_phase, max_omp, &changes);
  std::vector<std::thread> threads;
  for (int t = 0; t < kWorkers; ++t)
    threads.emplace_back(worker, std::cref(sh), t, iters, isa_phase, std::ref(stats));
  for (auto &t : threads) t.join();
  stop.store(true);
  ctl.join();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  printf(
      "phase %s: %d threads x %d calls = %ld calls in %.2f s; %ld bitwise equal to the serial result%s, "
      "%ld not bitwise equal to any ISA (tolerance checked); %ld %s changes by the control thread\n",
      isa_phase ? "2 (ISA cap changing)" : "1 (bitwise, thread count changing)", kWorkers, iters,
      stats.calls.load(), secs, stats.bitwise.load(), isa_phase ? " of some ISA" : "",
      stats.not_bitwise.load(), changes, isa_phase ? "set_max_isa" : "set_num_threads");
  fflush(stdout);
  return g_failures.load() == failures_before;
}

}  // namespace

int main() {
  const int iters = env_int("WINATTN_STRESS_ITERS", 8000);
  const int max_omp = env_int("WINATTN_STRESS_MAX_OMP", 4);
  printf("winattn %s stress: %d workers, %d iterations per phase, set_num_threads 0..%d\n", winattn_version(),
         kWorkers, iters, max_omp);

  Shared sh;
  sh.w1 = make_weights(32, 4, 7, 7, 3, 3, false, 100);
  sh.w2 = make_weights(48, 3, 8, 8, 4, 4, true, 200);
  const winattn_layer_desc d1 = sh.w1.desc(), d2 = sh.w2.desc();
  if (winattn_layer_create(&d1, &sh.layer_v1) != WINATTN_STATUS_OK ||
      winattn_layer_create(&d2, &sh.layer_v2) != WINATTN_STATUS_OK) {
    fprintf(stderr, "FAIL: layer_create: %s\n", winattn_last_error_message());
    return 1;
  }
  sh.v1_bias = looked_up_bias(sh.w1);

  uint64_t seed = 1000;
  add_layer_job(sh, Kind::kLayerV1, 1, 14, 14, seed++);
  add_layer_job(sh, Kind::kLayerV1, 3, 7, 7, seed++);
  add_layer_job(sh, Kind::kLayerV1, 2, 9, 11, seed++);  // padded
  add_layer_job(sh, Kind::kLayerV1, 1, 21, 14, seed++);
  add_layer_job(sh, Kind::kLayerV1, 2, 5, 6, seed++);  // window >= padded grid: shift taken as 0
  add_layer_job(sh, Kind::kLayerV2, 1, 16, 16, seed++);
  add_layer_job(sh, Kind::kLayerV2, 2, 8, 8, seed++);
  add_layer_job(sh, Kind::kLayerV2, 1, 10, 12, seed++);
  add_layer_job(sh, Kind::kStateless, 2, 14, 7, seed++);
  add_layer_job(sh, Kind::kStateless, 1, 12, 13, seed++);
  add_kernel_job(sh, 2, 4, 4, 49, 32, seed++);
  add_kernel_job(sh, 3, 4, 3, 64, 16, seed++);
  add_kernel_job(sh, 1, 2, 2, 20, 24, seed++);

  // Serial references, one thread, per ISA cap.
  if (winattn_set_num_threads(1) != WINATTN_STATUS_OK) return 1;
  for (int i = 0; i < kNumIsas; ++i) {
    if (winattn_set_max_isa(kIsas[i]) != WINATTN_STATUS_OK) return 1;
    for (Job &job : sh.jobs) {
      job.ref[i].assign(job.out_size, 0.0f);
      if (run_job(sh, job, job.ref[i].data()) != WINATTN_STATUS_OK) {
        fprintf(stderr, "FAIL: serial %s (%s): %s\n", job.name.c_str(), kIsas[i],
                winattn_last_error_message());
        return 1;
      }
      for (float x : job.ref[i])
        if (!std::isfinite(x)) {
          fprintf(stderr, "FAIL: serial %s (%s) is not finite\n", job.name.c_str(), kIsas[i]);
          return 1;
        }
    }
  }
  // The ISAs agree within tolerance (a sanity check of the references themselves).
  for (const Job &job : sh.jobs)
    for (int i = 1; i < kNumIsas; ++i) {
      double err = 0;
      if (!within_tolerance(job.ref[i].data(), job.ref[0].data(), job.out_size, &err))
        failf("serial %s: %s differs from native by %g", job.name.c_str(), kIsas[i], err);
    }

  if (winattn_set_max_isa("native") != WINATTN_STATUS_OK) return 1;
  bool ok = run_phase(sh, false, iters, max_omp);
  if (winattn_set_num_threads(0) != WINATTN_STATUS_OK) return 1;
  ok = run_phase(sh, true, iters, max_omp) && ok;
  winattn_set_max_isa("native");

  winattn_layer_destroy(sh.layer_v1);
  winattn_layer_destroy(sh.layer_v2);
  if (!ok || g_failures.load() != 0) {
    printf("stress_concurrency: FAILED (%d failures)\n", g_failures.load());
    return 1;
  }
  printf("stress_concurrency: passed\n");
  return 0;
}
