// nn.Linear: dst[m][o] = sum_i src[m][i] * weight[o][i] + bias[o], optionally followed by an epilogue
// (GELU, or accumulation into dst for a residual), through one of two GEMMs chosen per plan:
//  - winattn's own (gemm/gemm.h: weights packed once in panels, the epilogue in the kernel's stores), on
//    CPUs with AVX2 but not AVX-512, where it measured 1.0-1.9x oneDNN 2.6's matmuls on Swin's shapes
//    (1.14x on a whole swin_t at B=1); such a plan has no primitive, no executor and no scratchpad;
//  - oneDNN's matmul with the epilogue as a post-op, everywhere else (its AVX-512 kernels).
// WINATTN_GEMM=onednn or =native overrides the choice, per plan as it is made (tests run both).
// The rest of this comment is about the oneDNN plans.
//
// A matmul primitive is made per row count (the layer uses one or two row counts per input shape) with the
// weights in the layout that primitive prefers, packed once per layout: a fixed row count lets oneDNN use
// its brgemm kernels with the bias fused, where a run-time row count falls back to a GEMM whose bias pass is
// generated on every call.
//
// Where memory goes, and its bounds:
//  - Plans (a primitive, the packed weights it reads, and per-thread executors: a oneDNN stream and memory
//    objects whose data handles are set per call) are cached per Linear by row count. Plans made with
//    prepare(rows, /*pin=*/true) (the layer pins the ones it makes at create) are kept until the Linear is
//    destroyed; the others are an LRU of at most kMaxCachedPlans, and trim() drops them all.
//  - Primitives are shared by every Linear through a process-wide LRU of at most kMaxCachedPrimitives
//    entries keyed by (rows, in, out, bias): the stateless layer makes new Linears on every call, and making
//    a brgemm primitive costs milliseconds. A plan keeps its primitive alive when the LRU drops it.
//  - oneDNN's own primitive cache is capped at kDnnlPrimitiveCacheCapacity entries when the first Linear is
//    made, unless the process set a capacity (ONEDNN_PRIMITIVE_CACHE_CAPACITY / DNNL_PRIMITIVE_CACHE_CAPACITY
//    or dnnl_set_primitive_cache_capacity) before: primitives left in it would otherwise outlive every plan.
//  - Packed weights: one buffer per weights layout in use; trim() frees layouts no remaining plan reads.
//
// Threads and failure: prepare(), the Linear constructor and Lease's constructor may throw Error and run
// outside parallel regions; they make every oneDNN object a forward needs. Lease::forward() and forward()
// never throw, run oneDNN on the calling thread alone (inside an active OpenMP region oneDNN does so by
// itself; outside one, or in a team of one, the calling task's nthreads ICV is set to 1 for the call and
// restored), and may be called concurrently. Lease::forward() makes no oneDNN object and no allocation of
// winattn's (oneDNN's execute may still allocate internally: a failure there is reported, not thrown).
// A failure is reported as false with its kind: WINATTN_STATUS_OUT_OF_MEMORY when oneDNN or the C++
// runtime ran out of memory, WINATTN_STATUS_INTERNAL_ERROR otherwise. dst may be partly written when a
// forward fails.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "winattn/winattn.h"

namespace winattn::detail {

// What a Linear does with x W^T + b before it lands in dst, in the GEMM's epilogue while the result is in
// registers or cache (for oneDNN, a post-op; GELU excepted, see kGeluErf).
enum class LinearEpilogue {
  kStore,       // dst = x W^T + b
  kGeluErf,     // dst = GELU(x W^T + b), nn.GELU()'s erf GELU by the GELU kernels' formula
                // (activation/gelu.h): winattn's GEMM applies it to its accumulators before storing them;
                // after a oneDNN matmul the GELU kernel runs over dst (oneDNN's eltwise_gelu_erf post-op
                // took fc1 of Swin-T stage 1 from 84% to 54% of the peak on AVX2)
  kAccumulate,  // dst = dst + x W^T + b: dst holds a residual before the call (sum post-op, scale 1)
};

class Linear {
 public:
  struct Plan;  // a primitive for one row count, with its packed weights and its executors
  class Lease;

  // Unpinned plans kept per Linear (least recently prepared dropped first).
  static constexpr size_t kMaxCachedPlans = 8;
  // Primitives kept by the process-wide cache (least recently used dropped first).
  static constexpr size_t kMaxCachedPrimitives = 32;
  // oneDNN's own primitive cache capacity set by the first Linear when the process has not chosen one
  // (oneDNN's default is 1024).
  static constexpr int kDnnlPrimitiveCacheCapacity = 64;

  // weight: [out_features][in_features] (nn.Linear), bias: [out_features] or nullptr. Copies both.
  // Throws Error (OUT_OF_MEMORY when memory runs out).
  Linear(const float *weight, const float *bias, int64_t in_features, int64_t out_features,
         LinearEpilogue epilogue = LinearEpilogue::kStore);
  ~Linear();
  Linear(const Linear &) = delete;
  Linear &operator=(const Linear &) = delete;

  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  LinearEpilogue epilogue() const { return epilogue_; }

  // The plan for `rows` rows (made once, then cached; thread-safe). pin: keep it until the Linear is
  // destroyed (trim() and the LRU skip it); a cached plan prepared again with pin becomes pinned.
  // Throws Error.
  std::shared_ptr<const Plan> prepare(int64_t rows, bool pin = false) const;
  // Whether Lease::forward_rows on this plan computes exactly the rows it is given (winattn's GEMM; oneDNN
  // plans compute all of theirs), so that threads may split one call's rows between them.
  static bool computes_rows_alone(const Plan &plan);
  // Bytes of scratch a forward of this plan needs (the scratchpad argument).
  static size_t scratchpad_bytes(const Plan &plan);

  // src: [rows][in_features], dst: [rows][out_features], dense; rows as prepared (with kAccumulate, dst
  // holds what the result is added to; src and dst must not overlap). scratchpad: at least
  // scratchpad_bytes(plan) bytes. Takes an idle executor of the plan, or makes one when all are busy (which
  // allocates: reserve them with a Lease beforehand to avoid that). False on failure, with its kind in
  // *failure when failure is not null. Never throws.
  bool forward(const Plan &plan, const float *src, float *dst, void *scratchpad,
               winattn_status *failure = nullptr) const noexcept;

  // Drops the unpinned plans, the idle executors of pinned ones and the packed weights no plan reads.
  // Plans held by running forwards (or Leases) stay alive until those end. Thread-safe.
  void trim() const;
  // Heap bytes held now: the weight and bias copies, packed weights, and per plan its scratchpad size (the
  // measure of its oneDNN primitive) and its executors.
  int64_t memory_bytes() const;

 private:
  struct Impl;
  int64_t in_, out_;
  LinearEpilogue epilogue_;
  std::unique_ptr<Impl> impl_;
};

// Executors of one plan reserved for one call: made (or taken from the plan's idle ones) by the
// constructor, outside the parallel region, and given back by the destructor. Slot t serves one thread at
// a time (e.g. omp_get_thread_num() of a team of `threads`).
class Linear::Lease {
 public:
  // threads >= 1. Throws Error (OUT_OF_MEMORY when memory runs out).
  Lease(const Linear &linear, std::shared_ptr<const Plan> plan, int threads);
  ~Lease();
  Lease(const Lease &) = delete;
  Lease &operator=(const Lease &) = delete;

  const Plan &plan() const { return *plan_; }
  int threads() const { return static_cast<int>(executors_.size()); }

  // As Linear::forward with the executor of `slot` (0 <= slot < threads()): makes nothing, allocates
  // nothing of winattn's.
  bool forward(int slot, const float *src, float *dst, void *scratchpad,
               winattn_status *failure = nullptr) const noexcept;
  // As above when only the first `rows` (<= the plan's) rows of src are needed: a plan of winattn's GEMM
  // computes those alone; a oneDNN plan computes all of its rows (so src must still hold them all).
  bool forward_rows(int slot, int64_t rows, const float *src, float *dst, void *scratchpad,
                    winattn_status *failure = nullptr) const noexcept;

  struct Executor;

 private:
  std::shared_ptr<const Plan> plan_;
  bool accumulate_ = false;
  std::vector<Executor *> executors_;  // null for a plan of winattn's own GEMM
};

}  // namespace winattn::detail
