// libFuzzer harness for the whole winattn C API.
//
// The first byte of an input picks a target (targets.h); the target decodes the rest into structured calls
// and checks each against the contract in winattn.h (statuses, untouched outputs on failure, unmodified
// inputs, and the values of successful calls against references written here). Every input starts from the
// same global state (ISA cap native, one thread, no fault injection, no layer alive), so a crash reproduces
// from its file alone. WINATTN_FUZZ_VERBOSE=1 prints each call and status.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "fault_alloc.h"
#include "fuzz_common.h"
#include "targets.h"

namespace {

// Executions and time per target, printed at exit (libFuzzer exits through exit()), so a run's log shows
// where its time went.
const char *const kTargetNames[fz::kTargets] = {"api",   "threads", "alias",       "lifecycle", "cache",
                                                "layer", "shapes",  "concurrency", "faults",    "model"};
struct TargetStats {
  uint64_t runs = 0;
  double seconds = 0;
};
TargetStats g_stats[fz::kTargets];

void print_stats() {
  uint64_t total = 0;
  double seconds = 0;
  for (const TargetStats &t : g_stats) total += t.runs, seconds += t.seconds;
  if (total < 2) return;
  fprintf(stderr, "fuzz_capi: %llu inputs in %.1f s of target time (%.0f/s), %llu checked calls:",
          (unsigned long long)total, seconds, seconds > 0 ? static_cast<double>(total) / seconds : 0.0,
          (unsigned long long)fz::g_checked_calls);
  for (int t = 0; t < fz::kTargets; ++t)
    if (g_stats[t].runs)
      fprintf(stderr, " %s %llu (%.2f ms)", kTargetNames[t], (unsigned long long)g_stats[t].runs,
              1e3 * g_stats[t].seconds / static_cast<double>(g_stats[t].runs));
  fprintf(stderr, "\n");
}

// WINATTN_FUZZ_TARGET=<name or index>: only inputs whose selector byte picks that target run; the others
// return at once (so a run spends its time on one target and every input it keeps still replays alone).
int g_only_target = -1;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  atexit(print_stats);
  if (const char *only = getenv("WINATTN_FUZZ_TARGET")) {
    const bool number = only[0] != '\0' && strspn(only, "0123456789") == strlen(only);
    for (int t = 0; t < fz::kTargets; ++t)
      if (number ? atoi(only) == t : strcmp(only, kTargetNames[t]) == 0) g_only_target = t;
    if (g_only_target < 0) {
      fprintf(stderr, "fuzz_capi: WINATTN_FUZZ_TARGET=%s is not a target name or index\n", only);
      exit(2);
    }
  }
  // Idle OpenMP workers sleep at once instead of spinning for 200 ms: calls with many threads on a machine
  // with few cores would otherwise starve the next input. Only timing changes; a caller's setting wins.
  setenv("KMP_BLOCKTIME", "0", 0);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  using namespace fz;
  if (size == 0) return 0;
  if (g_only_target >= 0 && data[0] % fz::kTargets != g_only_target) return 0;
  if (winattn_set_max_isa("native") != WINATTN_STATUS_OK || winattn_set_num_threads(1) != WINATTN_STATUS_OK)
    abort();
  reset_input_state();
  Reader r(data + 1, size - 1);
  const int target = data[0] % kTargets;
  const auto start = std::chrono::steady_clock::now();
  switch (target) {
    case 0:
      target_api(r);
      break;
    case 1:
      target_threads(r);
      break;
    case 2:
      target_alias(r);
      break;
    case 3:
      target_lifecycle(r);
      break;
    case 4:
      target_cache(r);
      break;
    case 5:
      target_layer(r);
      break;
    case 6:
      target_shapes(r);
      break;
    case 7:
      target_concurrency(r);
      break;
    case 8:
      target_faults(r);
      break;
    default:
      target_model(r);
      break;
  }
  fault::disarm();
  destroy_all_layers();
  g_stats[target].runs++;
  g_stats[target].seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return 0;
}
