#include "cpu/threading.h"

#include <omp.h>

#include <atomic>

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

int effective_num_threads() {
  const int requested = requested_num_threads();
  const int threads = requested > 0 ? requested : omp_get_max_threads();
  return threads > 0 ? threads : 1;
}

}  // namespace winattn::detail

namespace winattn::detail {
int thread_index() {
  return omp_get_thread_num();
}
}  // namespace winattn::detail
