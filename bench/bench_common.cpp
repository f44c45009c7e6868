#include "bench_common.h"

#include "peak.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <sstream>

namespace winattn_bench {

namespace {

std::map<int, double> g_peak;  // threads -> GFLOP/s (all threads together)

std::vector<int> parse_int_list(const std::string &text, bool *ok) {
  std::vector<int> out;
  std::stringstream ss(text);
  std::string item;
  *ok = true;
  while (std::getline(ss, item, ',')) {
    char *end = nullptr;
    const long v = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v < 1 || v > 1024) {
      *ok = false;
      return {};
    }
    out.push_back(static_cast<int>(v));
  }
  if (out.empty()) *ok = false;
  return out;
}

std::vector<std::string> parse_str_list(const std::string &text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

void usage(const char *program) {
  std::fprintf(stderr,
               "usage: %s [Google Benchmark flags] [--threads=1,2] [--isa=NAME[,NAME...]]\n"
               "  --threads  library thread counts to run each case with (env WINATTN_BENCH_THREADS)\n"
               "  --isa      dispatch caps: avx512_bf16, avx512, avx2, scalar or native (default: the\n"
               "             active dispatch, which honours WINATTN_MAX_ISA)\n",
               program);
}

// Console reporter: shows GFLOP/s and peak_pct as plain numbers (they are rates already divided by the
// time) and remembers every result for the thread-scaling summary printed by Finalize().
class Reporter : public benchmark::ConsoleReporter {
 public:
  explicit Reporter(OutputOptions opts) : ConsoleReporter(opts) {}

  void ReportRuns(const std::vector<Run> &reports) override {
    std::vector<Run> shown = reports;
    for (auto &run : shown) {
      for (auto &c : run.counters)
        if (c.first == "GFLOP/s" || c.first == "peak_pct")
          c.second.flags =
              static_cast<benchmark::Counter::Flags>(c.second.flags & ~benchmark::Counter::kIsRate);
      remember(run);
    }
    ConsoleReporter::ReportRuns(shown);
  }

  void Finalize() override {
    ConsoleReporter::Finalize();
    print_summary();
  }

 private:
  struct Result {
    double seconds = 0;  // real time per iteration
    double gflops = -1;
    double pct = -1;
    double bytes_per_second = -1;
    int count = 0;
    bool median = false;
  };
  std::vector<std::string> order_;                     // base names in first-seen order
  std::map<std::string, std::map<int, Result>> data_;  // base -> threads -> result

  void remember(const Run &run) {
    if (run.error_occurred) return;
    const bool is_median = run.run_type == Run::RT_Aggregate && run.aggregate_name == "median";
    if (run.run_type == Run::RT_Aggregate && !is_median) return;
    std::string name = run.run_name.str();
    const size_t at = name.find("/threads:");
    if (at == std::string::npos) return;
    const int threads = std::atoi(name.c_str() + at + 9);
    const std::string base = name.substr(0, at);
    if (!data_.count(base)) order_.push_back(base);
    Result &r = data_[base][threads];
    if (r.median && !is_median) return;
    if (is_median && !r.median) r = Result{};
    const double mult = benchmark::GetTimeUnitMultiplier(run.time_unit);
    auto counter = [&](const char *key) {
      auto it = run.counters.find(key);
      return it == run.counters.end() ? -1.0 : it->second.value;
    };
    // Average over repetitions (or take the median aggregate when there is one).
    const int n = r.count;
    auto mix = [n](double old, double v) { return v < 0 ? old : (old * n + v) / (n + 1); };
    r.seconds = mix(r.seconds, run.GetAdjustedRealTime() / mult);
    r.gflops = mix(r.gflops, counter("GFLOP/s"));
    r.pct = mix(r.pct, counter("peak_pct"));
    r.bytes_per_second = mix(r.bytes_per_second, counter("bytes_per_second"));
    r.count = n + 1;
    r.median = is_median;
  }

  void print_summary() {
    std::ostream &out = GetOutputStream();
    bool header = false;
    for (const auto &base : order_) {
      const auto &by_threads = data_[base];
      auto one = by_threads.find(1);
      if (one == by_threads.end() || by_threads.size() < 2) continue;
      if (!header) {
        out << "\nThread scaling (speedup = time at 1 thread / time at N threads; share of peak at N threads "
               "is against the probe run on N threads at once):\n";
        header = true;
      }
      char line[512];
      for (const auto &entry : by_threads) {
        if (entry.first == 1) continue;
        const Result &r1 = one->second, &rn = entry.second;
        std::string metric;
        if (r1.gflops >= 0 && rn.gflops >= 0) {
          std::snprintf(line, sizeof line, "  GFLOP/s %7.1f -> %7.1f   peak %5.1f%% -> %5.1f%%", r1.gflops,
                        rn.gflops, r1.pct, rn.pct);
          metric = line;
        } else if (r1.bytes_per_second >= 0 && rn.bytes_per_second >= 0) {
          std::snprintf(line, sizeof line, "  GB/s %7.2f -> %7.2f", r1.bytes_per_second * 1e-9,
                        rn.bytes_per_second * 1e-9);
          metric = line;
        }
        std::snprintf(line, sizeof line, "%-60s 1 -> %d threads: %9.3f ms -> %9.3f ms  speedup %5.2fx",
                      base.c_str(), entry.first, r1.seconds * 1e3, rn.seconds * 1e3,
                      rn.seconds > 0 ? r1.seconds / rn.seconds : 0.0);
        out << line << metric << "\n";
      }
    }
    out.flush();
  }
};

}  // namespace

Options initialize(int *argc, char **argv, const char *program) {
  Options options;
  for (int i = 1; i < *argc; ++i) {
    if (std::strncmp(argv[i], "--benchmark_format=", 19) == 0 && std::strcmp(argv[i] + 19, "console") != 0)
      options.console = false;
  }
  benchmark::Initialize(argc, argv);

  std::string threads_text = "1,2";
  if (const char *env = std::getenv("WINATTN_BENCH_THREADS")) threads_text = env;
  std::string isa_text;
  int kept = 1;
  for (int i = 1; i < *argc; ++i) {
    if (std::strncmp(argv[i], "--threads=", 10) == 0) {
      threads_text = argv[i] + 10;
    } else if (std::strncmp(argv[i], "--isa=", 6) == 0) {
      isa_text = argv[i] + 6;
    } else if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
      usage(program);
      std::exit(0);
    } else {
      argv[kept++] = argv[i];
    }
  }
  *argc = kept;
  if (benchmark::ReportUnrecognizedArguments(*argc, argv)) {
    usage(program);
    std::exit(1);
  }
  bool ok = false;
  options.threads = parse_int_list(threads_text, &ok);
  if (!ok) {
    std::fprintf(stderr, "%s: bad thread list '%s'\n", program, threads_text.c_str());
    std::exit(1);
  }

  // The active dispatch (honours WINATTN_MAX_ISA) unless --isa lists caps; each cap is resolved to the name
  // the library actually runs, duplicates dropped.
  const std::string active = winattn_active_isa();
  const std::vector<std::string> caps =
      isa_text.empty() ? std::vector<std::string>{active} : parse_str_list(isa_text);
  for (const auto &cap : caps) {
    if (winattn_set_max_isa(cap.c_str()) != WINATTN_STATUS_OK) {
      std::fprintf(stderr, "%s: --isa: %s\n", program, winattn_last_error_message());
      std::exit(1);
    }
    const std::string name = winattn_active_isa();
    bool seen = false;
    for (const auto &n : options.isa_names) seen = seen || n == name;
    if (seen) continue;
    options.isas.push_back(cap);
    options.isa_names.push_back(name);
  }
  winattn_set_max_isa(active.c_str());

  // The FMA peak, measured now, in this process.
  const PeakIsa best = best_peak_isa();
  const double p512 = measure_fma_peak_gflops(PeakIsa::kAvx512, 1);
  const double p256 = measure_fma_peak_gflops(PeakIsa::kAvx2, 1);
  // The header goes to stderr when stdout carries JSON or CSV.
  FILE *out = options.console ? stdout : stderr;
  std::fprintf(out, "winattn %s, dispatch %s", winattn_version(), active.c_str());
  for (size_t i = 0; i < options.isa_names.size(); ++i)
    std::fprintf(out, "%s%s", i == 0 ? "; benchmarking " : ", ", options.isa_names[i].c_str());
  std::fprintf(
      out,
      "\nFMA peak probe (fp32, 12 independent chains, fastest of 9 runs), 1 thread: AVX-512 %.1f GFLOP/s, "
      "AVX2 %.1f GFLOP/s; using %s\n",
      p512, p256, peak_isa_name(best));
  char buf[64];
  for (int t : options.threads) {
    if (g_peak.count(t)) continue;
    double peak = t == 1 ? (best == PeakIsa::kAvx512 ? p512 : p256) : measure_fma_peak_gflops(best, t);
    g_peak[t] = peak;
    std::fprintf(out, "FMA peak, %d thread%s at once: %.1f GFLOP/s (%.1f per thread)\n", t, t == 1 ? "" : "s",
                 peak, peak / t);
    const double one = best == PeakIsa::kAvx512 ? p512 : p256;
    if (t > 1 && peak < 0.75 * one * t)
      std::fprintf(
          out,
          "  warning: %d threads reach only %.0f%% of %d x the 1-thread peak: the cores are shared or "
          "busy; %d-thread figures are unreliable\n",
          t, 100.0 * peak / (one * t), t, t);
    std::snprintf(buf, sizeof buf, "%.1f", peak);
    benchmark::AddCustomContext("fma_peak_gflops_" + std::to_string(t) + "t", buf);
  }
  std::fflush(out);
  benchmark::AddCustomContext("winattn_version", winattn_version());
  benchmark::AddCustomContext("winattn_dispatch", active);
  benchmark::AddCustomContext("fma_peak_isa", peak_isa_name(best));
  if (const char *bind = std::getenv("OMP_PROC_BIND")) benchmark::AddCustomContext("OMP_PROC_BIND", bind);
  return options;
}

double peak_gflops(int threads) {
  auto it = g_peak.find(threads);
  return it == g_peak.end() ? 0.0 : it->second;
}

bool configure(benchmark::State &state, const std::string &isa, int threads) {
  return check(state, winattn_set_max_isa(isa.c_str()), "winattn_set_max_isa") &&
         check(state, winattn_set_num_threads(threads), "winattn_set_num_threads");
}

void set_flop_counters(benchmark::State &state, double flops_per_iteration, int threads) {
  using benchmark::Counter;
  state.counters["GFLOP/s"] = Counter(flops_per_iteration * 1e-9, Counter::kIsIterationInvariantRate);
  const double peak = peak_gflops(threads);
  if (peak > 0)
    state.counters["peak_pct"] =
        Counter(flops_per_iteration * 1e-9 / peak * 100.0, Counter::kIsIterationInvariantRate);
}

bool check(benchmark::State &state, winattn_status status, const char *what) {
  if (status == WINATTN_STATUS_OK) return true;
  const std::string message =
      std::string(what) + ": " + winattn_status_string(status) + ": " + winattn_last_error_message();
  state.SkipWithError(message.c_str());
  return false;
}

void fill_uniform(std::vector<float> &values, uint32_t seed, float lo, float hi) {
  // xorshift64*: fast enough for the tens of millions of values the large cases need.
  uint64_t x = 0x9E3779B97F4A7C15ull ^ (static_cast<uint64_t>(seed) * 0xBF58476D1CE4E5B9ull);
  if (x == 0) x = 1;
  const float span = hi - lo;
  for (auto &v : values) {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    const uint64_t r = x * 0x2545F4914F6CDD1Dull;
    v = lo + span * static_cast<float>(r >> 40) * (1.0f / 16777216.0f);
  }
}

int run_all(const Options &options) {
  if (options.console) {
    Reporter reporter(isatty(STDOUT_FILENO) ? benchmark::ConsoleReporter::OO_ColorTabular
                                            : benchmark::ConsoleReporter::OO_Tabular);
    benchmark::RunSpecifiedBenchmarks(&reporter);
  } else {
    benchmark::RunSpecifiedBenchmarks();
  }
  // The peak again, now: if the machine was slower while it was probed at the start (a busy neighbour on a
  // shared host), every share printed above is too high, and by how much is said here.
  const auto one = g_peak.find(1);
  if (one != g_peak.end() && one->second > 0) {
    const double again = measure_fma_peak_gflops(best_peak_isa(), 1);
    FILE *out = options.console ? stdout : stderr;
    std::fprintf(
        out, "\nFMA peak, 1 thread, re-measured after the benchmarks: %.1f GFLOP/s (at the start: %.1f)\n",
        again, one->second);
    if (again > 1.05 * one->second)
      std::fprintf(out,
                   "  warning: the start probe ran slow; the 1-thread shares above are overstated by %.0f%% "
                   "(divide them by %.2f)\n",
                   100.0 * (again / one->second - 1.0), again / one->second);
  }
  benchmark::Shutdown();
  return 0;
}

std::string bench_name(const std::string &base, const std::string &isa_name, int threads) {
  return base + "/" + isa_name + "/threads:" + std::to_string(threads);
}

}  // namespace winattn_bench
