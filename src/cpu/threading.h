// The library's thread counts: the process-wide setting (winattn_set_num_threads), per-object budgets that
// override it, and the bound on both (WINATTN_MAX_THREADS).
#pragma once

#include <cstdint>

namespace winattn::detail {

constexpr int kMaxThreads = 256;  // WINATTN_MAX_THREADS

void set_num_threads(int num_threads);  // 0 = OpenMP default; validated by the caller
int requested_num_threads();

// Threads a parallel region may use for `work_items` independent pieces of work, given an object's own
// budget (0 = the process setting): at most the budget (or the process setting, or OpenMP's default),
// at most kMaxThreads, at most work_items, at least 1.
int team_size(int budget, int64_t work_items);

// team_size for a small call whose total work is `work` elements: 1 (the calling thread alone) below
// kSerialWork, where starting a team costs more than it saves.
constexpr int64_t kSerialWork = int64_t{1} << 16;
int team_size_for_work(int64_t work_items, int64_t work);

// team_size(0, unbounded work): the process setting, bounded. For code not yet sized by its work.
int effective_num_threads();

// omp_get_thread_num() of the calling thread (0 outside parallel regions).
int thread_index();

}  // namespace winattn::detail
