// Allocation fault injection for the whole process (fault_malloc.cpp): the executable that links
// fault_malloc.cpp defines malloc, calloc, realloc, free, posix_memalign, aligned_alloc, memalign, valloc,
// pvalloc and every replaceable operator new/delete, so libwinattn, oneDNN, libgomp, libstdc++ and glibc
// allocate through it. While armed, the k-th allocation request (counted over all threads) fails: the C
// functions return NULL (errno ENOMEM), operator new throws std::bad_alloc. Exactly one request fails per
// arming; the rest are forwarded to glibc.
#pragma once

#include <cstdint>

namespace fault {

// Makes the k-th allocation request from now on fail (k >= 1) and starts counting.
void arm(int64_t k);
// Stops counting; returns whether the failure was injected (the k-th request happened).
bool disarm();
// Requests counted since arm().
int64_t counted();
// Whether a failure has been injected since the last arm() (still armed or not).
bool injected();

// The call stack of the request that was made to fail (return addresses), for reports.
int injected_stack(void **frames, int max_frames);

// Prints the injected request's stack to stderr with backtrace_symbols_fd (no allocation). Safe in a signal
// handler as far as backtrace_symbols_fd is.
void print_injected_stack(const char *title);

// Call once before arming: loads what backtrace() needs, so capturing a stack later does not allocate.
void init();

}  // namespace fault
