// The library's OpenMP thread count (winattn_set_num_threads).
#pragma once

namespace winattn::detail {

void set_num_threads(int num_threads);  // 0 = OpenMP default
int requested_num_threads();
// Threads a parallel region of the library should use now.
int effective_num_threads();

}  // namespace winattn::detail

namespace winattn::detail {
// omp_get_thread_num() of the calling thread (0 outside parallel regions).
int thread_index();
}  // namespace winattn::detail
