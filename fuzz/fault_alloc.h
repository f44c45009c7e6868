// Allocation failures injected into library calls. The harness replaces operator new (every form), and
// aligned_alloc and posix_memalign; each forwards to the next definition (the sanitizer's allocator), except
// while armed, when allocations made directly by code in libwinattn (and, if asked, libdnnl) are counted
// and the chosen ones fail: operator new throws std::bad_alloc (or returns NULL for the nothrow forms), the
// C functions return NULL / ENOMEM. Allocations of other code (the harness, libstdc++'s own strings,
// OpenMP runtimes) never fail, so what fails is what winattn (or oneDNN beneath it) must handle.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fz::fault {

enum class Mode {
  kNth,    // only the n-th counted allocation fails
  kFrom,   // the n-th and every later one fail (memory stays exhausted)
  kLarge,  // every counted allocation of at least min_bytes fails
};

// Starts counting; n >= 1. include_dnnl: oneDNN's allocations of 64 KiB or more count and fail too (its
// smaller ones are objects whose allocation failure oneDNN itself does not survive, see fault_alloc.cpp).
void arm(Mode mode, int64_t n, size_t min_bytes, bool include_dnnl);
// Stops; returns how many allocations were failed.
int64_t disarm();
// Counted allocations since arm().
int64_t counted();
// Whether the replacement allocators are the ones the library calls (false: the target is skipped).
bool active();

}  // namespace fz::fault
