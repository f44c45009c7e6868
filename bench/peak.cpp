// FMA peak probe: dispatch by cpuid, run on N OpenMP threads at once, the fastest of short runs.
// Compiled for baseline x86-64; the ISA-specific kernels live in peak_avx512.cpp and peak_avx2.cpp.
#include "peak.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include <omp.h>

namespace winattn_bench {

const char *peak_isa_name(PeakIsa isa) {
  switch (isa) {
    case PeakIsa::kAvx512:
      return "avx512";
    case PeakIsa::kAvx2:
      return "avx2";
    default:
      return "none";
  }
}

static bool supported(PeakIsa isa) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (isa == PeakIsa::kAvx512) return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
  if (isa == PeakIsa::kAvx2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  (void)isa;
  return false;
}

PeakIsa best_peak_isa() {
  if (supported(PeakIsa::kAvx512)) return PeakIsa::kAvx512;
  if (supported(PeakIsa::kAvx2)) return PeakIsa::kAvx2;
  return PeakIsa::kNone;
}

namespace {

double run_probe(PeakIsa isa, int64_t iterations) {
  return isa == PeakIsa::kAvx512 ? fma_probe_avx512(iterations) : fma_probe_avx2(iterations);
}

// Runs warm-up + `repeats` timed probes, returns this thread's fastest GFLOP/s: the peak is a ceiling, and
// on a shared machine interference only ever slows a run down.
double probe_thread(PeakIsa isa, int repeats) {
  // ~3.6 MFLOP per 10k iterations: 2M AVX-512 (4M AVX2) iterations are ~7 ms at ~110 GFLOP/s.
  const int64_t iterations = isa == PeakIsa::kAvx512 ? 2000000 : 4000000;
  run_probe(isa, iterations / 4);  // warm-up: wake the 512-bit units, reach steady clocks
  std::vector<double> rates;
  rates.reserve(static_cast<size_t>(repeats));
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    const double flops = run_probe(isa, iterations);
    const auto t1 = std::chrono::steady_clock::now();
    const double seconds = std::chrono::duration<double>(t1 - t0).count();
    rates.push_back(flops / seconds * 1e-9);
  }
  return *std::max_element(rates.begin(), rates.end());
}

}  // namespace

double measure_fma_peak_gflops(PeakIsa isa, int threads, int repeats) {
  if (threads < 1 || isa == PeakIsa::kNone || !supported(isa)) return 0.0;
  if (repeats < 1) repeats = 1;
  // An OpenMP team, like the library's: the probe runs on the threads (and, with OMP_PROC_BIND, the places)
  // the library's parallel loops get. (std::threads would inherit the initial thread's binding: all on one
  // core.)
  std::vector<double> per_thread(static_cast<size_t>(threads), 0.0);
  int team = 0;
#pragma omp parallel num_threads(threads)
  {
#pragma omp single
    team = omp_get_num_threads();
    // The implicit barrier after single lines the threads up.
    per_thread[static_cast<size_t>(omp_get_thread_num())] = probe_thread(isa, repeats);
  }
  if (team != threads) return 0.0;
  double total = 0.0;
  for (double g : per_thread) total += g;
  return total;
}

}  // namespace winattn_bench
