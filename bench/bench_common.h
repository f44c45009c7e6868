// Shared by the winattn benchmark programs: command line (--threads=, --isa=), the FMA peak measured at
// start-up, the GFLOP/s and peak_pct counters, and a console reporter that ends with a thread-scaling
// summary.
#ifndef WINATTN_BENCH_COMMON_H_
#define WINATTN_BENCH_COMMON_H_

#include <benchmark/benchmark.h>
#include <winattn/winattn.h>

#include <cstdint>
#include <string>
#include <vector>

namespace winattn_bench {

struct Options {
  std::vector<int> threads;       // --threads=1,2 (env WINATTN_BENCH_THREADS); default 1,2
  std::vector<std::string> isas;  // --isa=avx512,avx2 (as winattn_set_max_isa takes); default: the active one
  std::vector<std::string> isa_names;  // the effective dispatch name of each entry of isas
  bool console = true;                 // false when --benchmark_format is json/csv
};

// Parses Google Benchmark's flags and ours, prints and records (as benchmark context) the library version,
// the dispatch and the FMA peak for every thread count. Exits with 1 on a bad flag.
Options initialize(int *argc, char **argv, const char *program);

// FMA peak (GFLOP/s, all threads together) measured at start-up for that thread count (0 if unknown).
double peak_gflops(int threads);

// Sets the library's dispatch cap and thread count for one benchmark; false (and SkipWithError) on failure.
bool configure(benchmark::State &state, const std::string &isa, int threads);

// Reports "GFLOP/s" and "peak_pct" (share of the probe's peak at this thread count, in percent) for a
// benchmark doing `flops_per_iteration` per iteration. Call after the timing loop.
void set_flop_counters(benchmark::State &state, double flops_per_iteration, int threads);

// Fails the benchmark (with the library's message) unless status is OK.
bool check(benchmark::State &state, winattn_status status, const char *what);

// Deterministic uniform [lo, hi) fill.
void fill_uniform(std::vector<float> &values, uint32_t seed, float lo, float hi);

// Runs the registered benchmarks with the console reporter (plus the thread-scaling summary), then
// benchmark::Shutdown(). Returns the process exit code.
int run_all(const Options &options);

// "name/isa/threads:N": the naming the summary groups by (everything before "/threads:").
std::string bench_name(const std::string &base, const std::string &isa_name, int threads);

}  // namespace winattn_bench

#endif  // WINATTN_BENCH_COMMON_H_
