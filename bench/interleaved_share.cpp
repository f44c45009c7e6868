// The share of the FMA peak that winattn_window_attention reaches on one thread, measured so that a shared,
// noisy machine still gives a stable figure: every round times the peak probe (about 1 ms) and then a few
// milliseconds of calls, back to back, so that both see the same minute of the machine. A neighbour that
// slows the core's loads (a busy sibling hyperthread, another tenant's memory traffic) slows the kernel far
// more than the FMA-only probe; such rounds scatter the per-round shares (their quartiles are printed), while
// the fastest call against the fastest probe over many rounds ("best/best") repeats to about 1% between
// runs. That is the figure the README quotes for the short-window cases, beside paired_compare's ratios.
//
//   interleaved_share [rounds]            the issue-16 cases (short windows and temporal attention)
//   interleaved_share rounds W H n d bias one case: W windows, H heads, n tokens, head_dim d, bias 0/1
//
// Run it pinned and single-threaded, e.g. OMP_NUM_THREADS=1 taskset -c 1 build/bench/interleaved_share 1000.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "peak.h"
#include "winattn/winattn.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

struct Case {
  std::string name;
  int64_t windows, heads, n, head_dim;
  bool bias;
};

double probe(winattn_bench::PeakIsa isa, int64_t iterations) {
  return isa == winattn_bench::PeakIsa::kAvx512 ? winattn_bench::fma_probe_avx512(iterations)
                                                : winattn_bench::fma_probe_avx2(iterations);
}

// The call's compulsory memory traffic alone: q, k and v read and out written once, in order (the
// hardware prefetchers' best case), no arithmetic to speak of. For a call larger than the caches its time
// bounds the kernel's from below, whatever it overlaps: the "memory floor" share printed beside the
// kernel's.
__attribute__((noinline)) void memory_pass(const float *q, const float *k, const float *v, float *out,
                                           size_t elems) {
  for (size_t i = 0; i < elems; ++i) out[i] = q[i] + k[i] + v[i];
}

// Returns false when a call fails (the status is printed).
bool measure(const Case &c, int rounds, winattn_bench::PeakIsa isa) {
  const size_t elems = static_cast<size_t>(c.windows * c.heads * c.n * c.head_dim);
  std::vector<float> q(elems), k(elems), v(elems), out(elems), bias(static_cast<size_t>(c.heads * c.n * c.n));
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  for (std::vector<float> *x : {&q, &k, &v})
    for (float &y : *x) y = uniform(rng);
  for (float &y : bias) y = 0.5f * uniform(rng);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  auto call = [&] {
    return winattn_window_attention(c.windows, c.heads, c.n, c.head_dim, q.data(), k.data(), v.data(), scale,
                                    c.bias ? bias.data() : nullptr, nullptr, 0, out.data());
  };
  const Clock::time_point t0 = Clock::now();
  const winattn_status status = call();
  const double first = seconds(t0, Clock::now());
  if (status != WINATTN_STATUS_OK) {
    std::fprintf(stderr, "%s: winattn_window_attention: %s\n", c.name.c_str(), winattn_last_error_message());
    return false;
  }
  const int calls = std::max(1, static_cast<int>(0.002 / std::max(first, 1e-7)));
  const double flops = 4.0 * static_cast<double>(c.windows * c.heads) * static_cast<double>(c.n * c.n) *
                       static_cast<double>(c.head_dim);
  const int64_t iterations = 500000;  // about 1 ms of the probe at 100 GFLOP/s
  std::vector<double> shares, call_seconds, probe_seconds, pass_seconds;
  double probe_flops = 0.0;
  for (int r = 0; r < rounds; ++r) {
    const Clock::time_point a = Clock::now();
    probe_flops = probe(isa, iterations);
    const Clock::time_point b = Clock::now();
    for (int i = 0; i < calls; ++i) call();
    const Clock::time_point e = Clock::now();
    for (int i = 0; i < calls; ++i) memory_pass(q.data(), k.data(), v.data(), out.data(), elems);
    pass_seconds.push_back(seconds(e, Clock::now()) / calls);
    const double per_call = seconds(b, e) / calls;
    probe_seconds.push_back(seconds(a, b));
    call_seconds.push_back(per_call);
    shares.push_back((flops / per_call) / (probe_flops / seconds(a, b)));
  }
  std::sort(shares.begin(), shares.end());
  const double best_call = *std::min_element(call_seconds.begin(), call_seconds.end());
  const double best_peak = probe_flops / *std::min_element(probe_seconds.begin(), probe_seconds.end());
  const double best_pass = *std::min_element(pass_seconds.begin(), pass_seconds.end());
  const size_t m = shares.size();
  std::printf(
      "%-22s best/best %5.1f%%   per round: median %5.1f%% (quartiles %5.1f, %5.1f)   peak %.1f GFLOP/s   "
      "memory floor %5.1f%% (%.1f GB/s)\n",
      c.name.c_str(), 100.0 * (flops / best_call) / best_peak, 100.0 * shares[m / 2], 100.0 * shares[m / 4],
      100.0 * shares[3 * m / 4], best_peak / 1e9, 100.0 * (flops / best_pass) / best_peak,
      4.0 * sizeof(float) * static_cast<double>(elems) / best_pass / 1e9);
  return true;
}

}  // namespace

int main(int argc, char **argv) {
  const int rounds = argc > 1 ? std::max(1, std::atoi(argv[1])) : 300;
  const winattn_bench::PeakIsa isa = winattn_bench::best_peak_isa();
  if (isa == winattn_bench::PeakIsa::kNone) {
    std::fprintf(stderr, "interleaved_share: no AVX2 or AVX-512 FMA probe for this CPU\n");
    return 1;
  }
  if (winattn_set_num_threads(1) != WINATTN_STATUS_OK) return 1;
  std::vector<Case> cases;
  if (argc >= 7) {
    cases.push_back({"custom", std::atoll(argv[2]), std::atoll(argv[3]), std::atoll(argv[4]),
                     std::atoll(argv[5]), std::atoi(argv[6]) != 0});
  } else {
    // The shapes of bench_window_attention's short-window cases (windows x heads, n, head_dim, bias).
    cases = {{"n16_d32_l2", 4, 4, 16, 32, true},
             {"n25_d32_l2", 4, 4, 25, 32, true},
             {"n32_d32_l2", 4, 4, 32, 32, true},
             {"temporal_n8_l2", 4, 12, 8, 64, false},
             {"temporal_n16_l2", 2, 12, 16, 64, false},
             {"temporal_n8_4clips", 784, 12, 8, 64, false},
             {"temporal_n16_2clips", 392, 12, 16, 64, false}};
  }
  std::printf("interleaved_share: %d rounds, probe %s, 1 thread\n", rounds,
              winattn_bench::peak_isa_name(isa));
  bool ok = true;
  for (const Case &c : cases) ok = measure(c, rounds, isa) && ok;
  return ok ? 0 : 1;
}
