// Relative position bias: the table lookup (bias[h][i][j] = table[index[i][j]][h]), its backward (scatter-add
// into the table) and the SwinV2 continuous position bias table. Lookup/backward report bytes/s (bytes
// touched: bias or grad_bias, the int64 index, the table); the CPB table reports GFLOP/s of its MLP.
//
//   bench_position_bias [--threads=1,2] [--isa=avx512,avx2,scalar] [Google Benchmark flags]
#include "bench_common.h"

#include <memory>
#include <string>
#include <vector>

namespace wb = winattn_bench;

namespace {

struct BiasCase {
  std::string name;
  int ndim;
  int64_t window[3];
  int64_t heads;

  int64_t n() const {
    int64_t p = 1;
    for (int d = 0; d < ndim; ++d) p *= window[d];
    return p;
  }
  int64_t rows() const {
    int64_t p = 1;
    for (int d = 0; d < ndim; ++d) p *= 2 * window[d] - 1;
    return p;
  }
  // Bytes the kernel must touch at least once: bias (or grad_bias), index, table (read; written too in the
  // backward).
  double bytes(bool backward) const {
    const double nn = static_cast<double>(n() * n());
    return nn * static_cast<double>(heads) * 4.0 + nn * 8.0 +
           static_cast<double>(rows() * heads) * 4.0 * (backward ? 2.0 : 1.0);
  }
};

std::vector<BiasCase> cases() {
  std::vector<BiasCase> c;
  for (int64_t h : {3, 12, 32}) c.push_back({"w7x7_h" + std::to_string(h), 2, {7, 7, 1}, h});
  for (int64_t h : {4, 16, 32}) c.push_back({"w12x12_h" + std::to_string(h), 2, {12, 12, 1}, h});
  for (int64_t h : {3, 12, 24}) c.push_back({"video_w8x7x7_h" + std::to_string(h), 3, {8, 7, 7}, h});
  return c;
}

struct BiasData {
  std::string key;
  std::vector<int64_t> index;
  std::vector<float> table, bias, grad_table;
};

BiasData *data_for(const BiasCase &c, benchmark::State &state) {
  static std::unique_ptr<BiasData> current;
  if (current && current->key == c.name) return current.get();
  current.reset();
  auto d = std::make_unique<BiasData>();
  d->key = c.name;
  d->index.resize(static_cast<size_t>(c.n() * c.n()));
  if (!wb::check(state, winattn_relative_position_index(c.ndim, c.window, d->index.data()),
                 "winattn_relative_position_index"))
    return nullptr;
  d->table.resize(static_cast<size_t>(c.rows() * c.heads));
  wb::fill_uniform(d->table, 21, -1.0f, 1.0f);
  d->bias.resize(static_cast<size_t>(c.heads * c.n() * c.n()));
  wb::fill_uniform(d->bias, 22, -1e-3f, 1e-3f);  // the grad_bias of the backward
  d->grad_table.assign(d->table.size(), 0.0f);
  current = std::move(d);
  return current.get();
}

void run_lookup(benchmark::State &state, const BiasCase &c, const std::string &isa, int threads,
                bool backward) {
  if (!wb::configure(state, isa, threads)) return;
  BiasData *d = data_for(c, state);
  if (!d) return;
  auto call = [&] {
    return backward ? winattn_relative_position_bias_backward(d->bias.data(), c.rows(), c.heads,
                                                              d->index.data(), c.n(), d->grad_table.data())
                    : winattn_relative_position_bias(d->table.data(), c.rows(), c.heads, d->index.data(),
                                                     c.n(), d->bias.data());
  };
  const char *what = backward ? "winattn_relative_position_bias_backward" : "winattn_relative_position_bias";
  if (!wb::check(state, call(), what)) return;  // untimed warm-up
  // The backward accumulates; the grad_table is not re-zeroed (tiny gradients keep it finite), so the timing
  // is the scatter-add alone.
  for (auto _ : state) {
    if (!wb::check(state, call(), what)) break;
    benchmark::ClobberMemory();
  }
  if (state.error_occurred()) return;
  state.SetBytesProcessed(static_cast<int64_t>(c.bytes(backward) * static_cast<double>(state.iterations())));
  state.SetLabel("n" + std::to_string(c.n()) + " rows" + std::to_string(c.rows()));
}

struct CpbCase {
  std::string name;
  int64_t window, heads, hidden;
};

void run_cpb(benchmark::State &state, const CpbCase &c, const std::string &isa, int threads) {
  if (!wb::configure(state, isa, threads)) return;
  const int64_t rows = (2 * c.window - 1) * (2 * c.window - 1);
  std::vector<float> w1(static_cast<size_t>(c.hidden * 2)), b1(static_cast<size_t>(c.hidden)),
      w2(static_cast<size_t>(c.heads * c.hidden)), table(static_cast<size_t>(rows * c.heads));
  wb::fill_uniform(w1, 31, -0.7f, 0.7f);
  wb::fill_uniform(b1, 32, -0.7f, 0.7f);
  wb::fill_uniform(w2, 33, -0.04f, 0.04f);
  if (!wb::check(state,
                 winattn_continuous_position_bias_table(c.window, c.window, w1.data(), b1.data(), w2.data(),
                                                        c.hidden, c.heads, table.data()),
                 "winattn_continuous_position_bias_table"))
    return;
  for (auto _ : state) {
    const winattn_status s = winattn_continuous_position_bias_table(
        c.window, c.window, w1.data(), b1.data(), w2.data(), c.hidden, c.heads, table.data());
    if (!wb::check(state, s, "winattn_continuous_position_bias_table")) break;
    benchmark::ClobberMemory();
  }
  if (state.error_occurred()) return;
  // Per table row: Linear(2, hidden) 4*hidden, Linear(hidden, heads) 2*hidden*heads.
  const double flops = static_cast<double>(rows) * (4.0 * c.hidden + 2.0 * c.hidden * c.heads);
  wb::set_flop_counters(state, flops, threads);
}

}  // namespace

int main(int argc, char **argv) {
  const wb::Options options = wb::initialize(&argc, argv, "bench_position_bias");
  for (int backward = 0; backward < 2; ++backward) {
    for (const BiasCase &c : cases()) {
      for (size_t i = 0; i < options.isas.size(); ++i) {
        for (int threads : options.threads) {
          const std::string isa = options.isas[i];
          const std::string base = (backward ? "bias_backward/" : "bias_lookup/") + c.name;
          benchmark::RegisterBenchmark(wb::bench_name(base, options.isa_names[i], threads).c_str(),
                                       [c, isa, threads, backward](benchmark::State &st) {
                                         run_lookup(st, c, isa, threads, backward != 0);
                                       })
              ->UseRealTime()
              ->Unit(benchmark::kMicrosecond);
        }
      }
    }
  }
  const std::vector<CpbCase> cpb = {{"w7_h3", 7, 3, 512}, {"w8_h3", 8, 3, 512}, {"w16_h24", 16, 24, 512}};
  for (const CpbCase &c : cpb) {
    for (size_t i = 0; i < options.isas.size(); ++i) {
      for (int threads : options.threads) {
        const std::string isa = options.isas[i];
        benchmark::RegisterBenchmark(
            wb::bench_name("cpb_table/" + c.name, options.isa_names[i], threads).c_str(),
            [c, isa, threads](benchmark::State &st) { run_cpb(st, c, isa, threads); })
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
      }
    }
  }
  return wb::run_all(options);
}
