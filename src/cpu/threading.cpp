#include "cpu/threading.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace winattn::detail {
namespace {
std::atomic<int> g_num_threads{0};
}

void set_num_threads(int num_threads) {
  g_num_threads.store(num_threads, std::memory_order_relaxed);
}

int requested_num_threads() {
  return g_num_threads.load(std::memory_order_relaxed);
}

int team_size(int budget, int64_t work_items) {
  int threads = budget > 0 ? budget : requested_num_threads();
  if (threads <= 0) threads = omp_get_max_threads();
  threads = std::min(threads, kMaxThreads);
  if (work_items < threads) threads = static_cast<int>(std::max<int64_t>(work_items, 1));
  return std::max(threads, 1);
}

int team_size_for_work(int64_t work_items, int64_t work) {
  return work < kSerialWork ? 1 : team_size(0, work_items);
}

int effective_num_threads() {
  return team_size(0, INT64_MAX);
}

int thread_index() {
  return omp_get_thread_num();
}

}  // namespace winattn::detail
