#include "projection/linear.h"

#include <omp.h>
#include <oneapi/dnnl/dnnl.hpp>
#include <oneapi/dnnl/dnnl_debug.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <string>
#include <tuple>

#include "activation/gelu.h"
#include "common/error.h"
#include "cpu/dispatch.h"
#include "gemm/gemm.h"

namespace winattn::detail {

using dnnl::memory;

// Internal to this file; named (not anonymous) because Linear::Plan and Linear::Impl hold these types.
namespace linear_internal {

// One CPU engine for the process: primitives are cached across Linears and must run on the engine they
// were made for.
const dnnl::engine &cpu_engine() {
  static const dnnl::engine *engine = new dnnl::engine(dnnl::engine::kind::cpu, 0);  // lives until exit
  return *engine;
}

// Runs oneDNN on the calling thread alone for the lifetime of the object. Inside an active parallel region
// oneDNN already does; outside one (or in a team of one) it would start a team of the calling task's
// nthreads ICV, so that ICV is 1 meanwhile. The ICV is the calling task's own: other threads and tasks are
// not affected. Never throws.
class SingleThreadedDnnl {
 public:
  SingleThreadedDnnl() noexcept {
    if (!omp_in_parallel()) {
      const int threads = omp_get_max_threads();
      if (threads != 1) {
        saved_ = threads;
        omp_set_num_threads(1);
      }
    }
  }
  ~SingleThreadedDnnl() {
    if (saved_ > 0) omp_set_num_threads(saved_);
  }
  SingleThreadedDnnl(const SingleThreadedDnnl &) = delete;
  SingleThreadedDnnl &operator=(const SingleThreadedDnnl &) = delete;

 private:
  int saved_ = 0;
};

[[noreturn]] void throw_dnnl(const dnnl::error &e, const char *what) {
  if (e.status == dnnl_out_of_memory)
    throw Error(WINATTN_STATUS_OUT_OF_MEMORY, std::string(what) + ": out of memory");
  throw Error(WINATTN_STATUS_INTERNAL_ERROR, std::string(what) + ": " + e.what());
}

// Caps oneDNN's own primitive cache once, unless the process chose a capacity (see linear.h).
void cap_dnnl_primitive_cache() {
  static const bool done = [] {
    constexpr int kDnnlDefaultCapacity = 1024;
    if (std::getenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY") != nullptr ||
        std::getenv("DNNL_PRIMITIVE_CACHE_CAPACITY") != nullptr) {
      return true;
    }
    int capacity = 0;
    if (dnnl_get_primitive_cache_capacity(&capacity) == dnnl_success && capacity == kDnnlDefaultCapacity)
      dnnl_set_primitive_cache_capacity(Linear::kDnnlPrimitiveCacheCapacity);
    return true;
  }();
  (void)done;
}

// ---- Primitives, shared by every Linear ------------------------------------------------------------------

struct Primitive {
  dnnl::matmul matmul;
  memory::desc src_md, dst_md, weights_md, scratchpad_md;
};
using PrimitiveKey = std::tuple<int64_t, int64_t, int64_t, bool, LinearEpilogue>;
struct CachedPrimitive {
  std::shared_ptr<const Primitive> primitive;
  uint64_t last_use = 0;
};

std::mutex g_primitives_mutex;
uint64_t g_primitives_clock = 0;  // under g_primitives_mutex
std::map<PrimitiveKey, CachedPrimitive> &primitives() {
  static auto *cache = new std::map<PrimitiveKey, CachedPrimitive>();  // lives until exit
  return *cache;
}

std::shared_ptr<const Primitive> get_primitive(const dnnl::engine &engine, int64_t rows, int64_t in,
                                               int64_t out, bool has_bias, LinearEpilogue epilogue) {
  const PrimitiveKey key{rows, in, out, has_bias, epilogue};
  {
    std::lock_guard<std::mutex> lock(g_primitives_mutex);
    auto found = primitives().find(key);
    if (found != primitives().end()) {
      found->second.last_use = ++g_primitives_clock;
      return found->second.primitive;
    }
  }
  auto primitive = std::make_shared<Primitive>();
  try {
    // Made for one thread, as it runs (forward runs oneDNN on the calling thread alone).
    SingleThreadedDnnl single_threaded;
    primitive->src_md = memory::desc({rows, in}, memory::data_type::f32, memory::format_tag::ab);
    primitive->dst_md = memory::desc({rows, out}, memory::data_type::f32, memory::format_tag::ab);
    const memory::desc weights_md({in, out}, memory::data_type::f32, memory::format_tag::any);
    const memory::desc bias_md({1, out}, memory::data_type::f32, memory::format_tag::ab);
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    // GELU is not a post-op (see LinearEpilogue::kGeluErf): its primitive is kStore's.
    if (epilogue == LinearEpilogue::kAccumulate) {
      dnnl::post_ops ops;
      ops.append_sum(1.0f);
      attr.set_post_ops(ops);
    }
    const auto pd = has_bias ? dnnl::matmul::primitive_desc(
                                   {primitive->src_md, weights_md, bias_md, primitive->dst_md}, attr, engine)
                             : dnnl::matmul::primitive_desc(
                                   {primitive->src_md, weights_md, primitive->dst_md}, attr, engine);
    primitive->matmul = dnnl::matmul(pd);
    primitive->weights_md = pd.weights_desc();
    primitive->scratchpad_md = pd.scratchpad_desc();
  } catch (const dnnl::error &e) {
    throw_dnnl(e, "oneDNN matmul setup failed");
  }
  std::lock_guard<std::mutex> lock(g_primitives_mutex);
  auto &cache = primitives();
  auto found = cache.find(key);
  if (found != cache.end()) {  // made meanwhile by another thread: use that one
    found->second.last_use = ++g_primitives_clock;
    return found->second.primitive;
  }
  if (cache.size() >= Linear::kMaxCachedPrimitives) {
    auto oldest = cache.begin();
    for (auto it = cache.begin(); it != cache.end(); ++it)
      if (it->second.last_use < oldest->second.last_use) oldest = it;
    cache.erase(oldest);  // plans using it keep it alive
  }
  CachedPrimitive &entry = cache[key];  // may throw bad_alloc: nothing changed then
  entry.primitive = primitive;
  entry.last_use = ++g_primitives_clock;
  return primitive;
}

// ---- Packed weights
// ----------------------------------------------------------------------------------------

// A 64-byte aligned heap block that reports failure as OUT_OF_MEMORY.
struct AlignedBlock {
  explicit AlignedBlock(size_t size) : bytes(size) {
    const size_t rounded = (size + 63) / 64 * 64;
    data = rounded == 0 ? nullptr : std::aligned_alloc(64, rounded);
    if (rounded != 0 && data == nullptr) {
      throw Error(WINATTN_STATUS_OUT_OF_MEMORY, "cannot allocate " + std::to_string(rounded) + " bytes");
    }
  }
  ~AlignedBlock() { std::free(data); }
  AlignedBlock(const AlignedBlock &) = delete;
  AlignedBlock &operator=(const AlignedBlock &) = delete;
  void *data = nullptr;
  size_t bytes = 0;
};

// The weights in one oneDNN layout, in a buffer of ours, with the memory object primitives read them by.
struct PackedWeights {
  explicit PackedWeights(size_t bytes) : block(bytes) {}
  AlignedBlock block;
  memory::desc md;
  memory mem;
};

// The weights packed for winattn's own GEMM (gemm/gemm.h), with the bias padded to whole panels.
struct NativeWeights {
  explicit NativeWeights(const GemmLayout &l)
      : layout(l),
        packed(sizeof(float) * static_cast<size_t>(l.packed_floats())),
        bias(sizeof(float) * static_cast<size_t>(l.bias_floats())) {}
  GemmLayout layout;
  AlignedBlock packed, bias;
  bool has_bias = false;
};

// The GEMM kernel a new plan runs, or null for oneDNN's matmul. WINATTN_GEMM=onednn or =native chooses;
// by default winattn's own kernels run where oneDNN 2.6 has only its AVX2 code (they measured 1.0-1.9x
// its matmuls on Swin's shapes there, see gemm/gemm.h), and oneDNN's AVX-512 kernels run where the CPU
// has them: on a 16-core Xeon (session 8) they beat f32_gemm_12x32_broadcast_avx512 on one thread (swin_t
// B = 8 1.2-1.7x, B = 1 about even), while winattn's GEMM, whose plans compute any rows alone, lets a layer
// give each chunk a team of threads (swin_t B = 1 on 16 threads 1.1-1.8x oneDNN): WINATTN_GEMM=native there.
// The scalar GEMM is a reference, never chosen for speed: with the kernels capped below AVX2, oneDNN runs.
const GemmKernelInfo *native_gemm_kernel() {
  const CpuFeatures features = active_features();
  const GemmKernelInfo &kernel = select_f32_gemm_kernel(features);
  const bool vector = kernel.required != 0;
  const char *env = std::getenv("WINATTN_GEMM");
  if (env != nullptr && std::strcmp(env, "onednn") == 0) return nullptr;
  if (env != nullptr && std::strcmp(env, "native") == 0) return vector ? &kernel : nullptr;
  return vector && !has_features(features, kFeatureAvx512) ? &kernel : nullptr;
}

// Whether `md` is a plain or blocked f32 layout of a 2D matrix that pack_blocked can fill.
bool packable(const dnnl_memory_desc_t &md) {
  return md.ndims == 2 && md.data_type == dnnl_f32 && md.format_kind == dnnl_blocked && md.extra.flags == 0 &&
         md.format_desc.blocking.inner_nblks >= 0 && md.format_desc.blocking.inner_nblks <= DNNL_MAX_NDIMS;
}

// Offset, in elements, of element (i, o) of the [in][out] matrix described by a blocked `md`: the inner
// blocks (last one fastest) address the position inside a block, the strides the block itself. Each term
// depends on one dimension only, so offset(i, o) = offset0 + part(0, i) + part(1, o).
int64_t blocked_part(const dnnl_memory_desc_t &md, int dim, int64_t index) {
  const dnnl_blocking_desc_t &blocking = md.format_desc.blocking;
  int64_t position = index + md.padded_offsets[dim];
  int64_t offset = 0;
  int64_t inner_stride = 1;
  for (int b = blocking.inner_nblks - 1; b >= 0; --b) {
    const int64_t block = blocking.inner_blks[b];
    if (blocking.inner_idxs[b] == dim) {
      offset += position % block * inner_stride;
      position /= block;
    }
    inner_stride *= block;
  }
  return offset + position * blocking.strides[dim];
}

// The offsets of every index of one dimension.
std::vector<int64_t> blocked_parts(const dnnl_memory_desc_t &md, int dim, int64_t count) {
  std::vector<int64_t> parts(static_cast<size_t>(count));
  for (int64_t k = 0; k < count; ++k) parts[static_cast<size_t>(k)] = blocked_part(md, dim, k);
  return parts;
}

// weight: [out][in] (nn.Linear), i.e. the [in][out] matrix in "ba" order. Packs it for `md` with a plain
// loop on the calling thread (padding zeroed): no oneDNN reorder primitive and no parallel region. Other
// layouts (none for f32 matmul weights in oneDNN 2.6) go through oneDNN's reorder, on this thread alone.
std::shared_ptr<PackedWeights> pack_weights(const dnnl::engine &engine, const memory::desc &md,
                                            const float *weight, int64_t in, int64_t out) {
  auto packed = std::make_shared<PackedWeights>(md.get_size());
  packed->md = md;
  float *dst = static_cast<float *>(packed->block.data);
  try {
    if (packable(md.data)) {
      // Zero the padding (a layout without padding is overwritten whole).
      if (md.get_size() != sizeof(float) * static_cast<size_t>(in * out))
        std::memset(dst, 0, packed->block.bytes);
      const std::vector<int64_t> row = blocked_parts(md.data, 0, in), column = blocked_parts(md.data, 1, out);
      float *const base = dst + md.data.offset0;
      // In 64 x 64 tiles: the source rows and the packed blocks a tile touches stay in L1.
      constexpr int64_t kTile = 64;
      for (int64_t o0 = 0; o0 < out; o0 += kTile) {
        const int64_t o1 = std::min(out, o0 + kTile);
        for (int64_t i0 = 0; i0 < in; i0 += kTile) {
          const int64_t i1 = std::min(in, i0 + kTile);
          for (int64_t i = i0; i < i1; ++i) {
            float *const row_base = base + row[static_cast<size_t>(i)];
            for (int64_t o = o0; o < o1; ++o) row_base[column[static_cast<size_t>(o)]] = weight[o * in + i];
          }
        }
      }
      packed->mem = memory(md, engine, dst);
    } else {
      SingleThreadedDnnl single_threaded;
      const memory::desc user_md({in, out}, memory::data_type::f32, memory::format_tag::ba);
      memory user(user_md, engine, const_cast<float *>(weight));
      packed->mem = memory(md, engine, dst);
      dnnl::stream stream(engine);
      dnnl::reorder(user, packed->mem).execute(stream, user, packed->mem);
      stream.wait();
    }
  } catch (const dnnl::error &e) {
    throw_dnnl(e, "oneDNN weights packing failed");
  }
  return packed;
}

// The [out][in] weights back from a blocked layout made by pack_weights (exact: a permutation).
std::vector<float> unpack_weights(const PackedWeights &packed, int64_t in, int64_t out) {
  std::vector<float> weight(static_cast<size_t>(in * out));
  const dnnl_memory_desc_t &md = packed.md.data;
  const std::vector<int64_t> row = blocked_parts(md, 0, in), column = blocked_parts(md, 1, out);
  const float *const base = static_cast<const float *>(packed.block.data) + md.offset0;
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i)
      weight[static_cast<size_t>(o * in + i)] =
          base[column[static_cast<size_t>(o)] + row[static_cast<size_t>(i)]];
  return weight;
}

void report(winattn_status *failure, winattn_status status, const char *what) noexcept {
  if (failure != nullptr) *failure = status;
  if (std::getenv("WINATTN_DEBUG") != nullptr) std::fprintf(stderr, "winattn: projection failed: %s\n", what);
}

}  // namespace linear_internal

using namespace linear_internal;

// ---- Executors and plans
// -------------------------------------------------------------------------------------

// What one thread needs to run a plan: a stream and memory objects over no data, whose handles are set per
// call, and the argument list of the execute call.
struct Linear::Lease::Executor {
  dnnl::stream stream;
  memory src, dst, scratchpad;
  dnnl_exec_arg_t args[5] = {};
  int nargs = 0;
  Executor *next = nullptr;  // in the plan's list of idle executors
};

struct Linear::Plan {
  int64_t rows = 0;
  // winattn's GEMM (then primitive is null and there are no executors), or null for oneDNN's matmul.
  const GemmKernelInfo *gemm = nullptr;
  std::shared_ptr<const NativeWeights> native;
  bool fused_gelu = false;               // winattn's GEMM with LinearEpilogue::kGeluErf
  const GeluKernelInfo *gelu = nullptr;  // oneDNN's matmul with kGeluErf: the GELU kernel runs after it
  int64_t out = 0;
  std::shared_ptr<const Primitive> primitive;
  std::shared_ptr<const PackedWeights> weights;
  const memory *bias = nullptr;  // the Linear's, or null
  size_t scratchpad_bytes = 0;

  // Idle executors (an intrusive list: giving one back allocates nothing) and how many exist.
  mutable std::mutex executors_mutex;
  mutable Lease::Executor *idle = nullptr;
  mutable int64_t executor_count = 0;

  ~Plan() { free_idle(); }

  // Makes an executor for this plan. Throws Error.
  Lease::Executor *make_executor(const dnnl::engine &engine) const {
    auto executor = std::make_unique<Lease::Executor>();
    try {
      executor->stream = dnnl::stream(engine);
      executor->src = memory(primitive->src_md, engine, DNNL_MEMORY_NONE);
      executor->dst = memory(primitive->dst_md, engine, DNNL_MEMORY_NONE);
      int n = 0;
      executor->args[n++] = {DNNL_ARG_SRC, executor->src.get()};
      executor->args[n++] = {DNNL_ARG_WEIGHTS, weights->mem.get()};
      executor->args[n++] = {DNNL_ARG_DST, executor->dst.get()};
      if (bias != nullptr) executor->args[n++] = {DNNL_ARG_BIAS, bias->get()};
      if (scratchpad_bytes > 0) {
        executor->scratchpad = memory(primitive->scratchpad_md, engine, DNNL_MEMORY_NONE);
        executor->args[n++] = {DNNL_ARG_SCRATCHPAD, executor->scratchpad.get()};
      }
      executor->nargs = n;
    } catch (const dnnl::error &e) {
      throw_dnnl(e, "oneDNN executor setup failed");
    }
    std::lock_guard<std::mutex> lock(executors_mutex);
    ++executor_count;
    return executor.release();
  }

  // An idle executor, or null when none is idle. Never allocates.
  Lease::Executor *take() const noexcept {
    std::lock_guard<std::mutex> lock(executors_mutex);
    Lease::Executor *executor = idle;
    if (executor != nullptr) idle = executor->next;
    return executor;
  }

  void give_back(Lease::Executor *executor) const noexcept {
    std::lock_guard<std::mutex> lock(executors_mutex);
    executor->next = idle;
    idle = executor;
  }

  void free_idle() const noexcept {
    Lease::Executor *list;
    {
      std::lock_guard<std::mutex> lock(executors_mutex);
      list = idle;
      idle = nullptr;
      for (Lease::Executor *e = list; e != nullptr; e = e->next) --executor_count;
    }
    while (list != nullptr) {
      Lease::Executor *next = list->next;
      delete list;
      list = next;
    }
  }

  int64_t executors() const {
    std::lock_guard<std::mutex> lock(executors_mutex);
    return executor_count;
  }
};

namespace {

// Runs a plan of winattn's GEMM. Never fails.
bool run_native(const Linear::Plan &plan, const float *src, float *dst, bool accumulate,
                int64_t rows = -1) noexcept {
  const NativeWeights &w = *plan.native;
  if (rows < 0 || rows > plan.rows) rows = plan.rows;
  if (rows == 0) return true;
  GemmArgs args{&w.layout,
                rows,
                src,
                w.layout.in,
                static_cast<const float *>(w.packed.data),
                w.has_bias ? static_cast<const float *>(w.bias.data) : nullptr,
                dst,
                w.layout.out,
                accumulate,
                plan.fused_gelu};
  plan.gemm->run(args);
  return true;
}

// Runs the plan with `executor` on src/dst/scratchpad. Never throws.
bool run(const Linear::Plan &plan, Linear::Lease::Executor &executor, const float *src, float *dst,
         void *scratchpad, winattn_status *failure) noexcept {
  try {
    SingleThreadedDnnl single_threaded;
    const dnnl_stream_t stream = executor.stream.get();
    dnnl_status_t status =
        dnnl_memory_set_data_handle_v2(executor.src.get(), const_cast<float *>(src), stream);
    if (status == dnnl_success) status = dnnl_memory_set_data_handle_v2(executor.dst.get(), dst, stream);
    if (status == dnnl_success && executor.scratchpad) {
      status = dnnl_memory_set_data_handle_v2(executor.scratchpad.get(), scratchpad, stream);
    }
    if (status == dnnl_success) {
      status = dnnl_primitive_execute(plan.primitive->matmul.get(), stream, executor.nargs, executor.args);
    }
    if (status == dnnl_success) status = dnnl_stream_wait(stream);
    if (status == dnnl_success) {
      if (plan.gelu != nullptr) plan.gelu->run(dst, plan.rows * plan.out);
      return true;
    }
    report(failure,
           status == dnnl_out_of_memory ? WINATTN_STATUS_OUT_OF_MEMORY : WINATTN_STATUS_INTERNAL_ERROR,
           dnnl_status2str(status));
  } catch (const std::bad_alloc &) {
    report(failure, WINATTN_STATUS_OUT_OF_MEMORY, "out of memory");
  } catch (const dnnl::error &e) {
    report(failure,
           e.status == dnnl_out_of_memory ? WINATTN_STATUS_OUT_OF_MEMORY : WINATTN_STATUS_INTERNAL_ERROR,
           e.what());
  } catch (const std::exception &e) {
    report(failure, WINATTN_STATUS_INTERNAL_ERROR, e.what());
  } catch (...) {
    report(failure, WINATTN_STATUS_INTERNAL_ERROR, "unknown exception");
  }
  return false;
}

}  // namespace

// ---- Linear
// ----------------------------------------------------------------------------------------------------

struct Linear::Impl {
  explicit Impl(const dnnl::engine &e) : engine(e) {}
  const dnnl::engine &engine;
  std::vector<float> weight;  // [out][in] as given
  std::vector<float> bias_values;
  bool has_bias = false;
  memory bias;  // over bias_values

  std::mutex mutex;  // guards what follows
  struct CachedPlan {
    std::shared_ptr<const Plan> plan;
    bool pinned = false;
    uint64_t last_use = 0;
  };
  std::map<int64_t, CachedPlan> plans;  // by row count
  uint64_t clock = 0;
  std::vector<std::shared_ptr<const PackedWeights>> packed_weights;  // one per oneDNN layout in use
  std::shared_ptr<const NativeWeights> native;                       // for winattn's GEMM, once used

  // A packed layout the weights can be unpacked from (blocked, filled by pack_weights), or null.
  const PackedWeights *packed_source() const {
    for (const auto &packed : packed_weights)
      if (packable(packed->md.data)) return packed.get();
    return nullptr;
  }
  // Whether some packed copy holds every weight (then the copy as given may go).
  bool weights_packed() const { return native != nullptr || packed_source() != nullptr; }

  // The [out][in] weights as given: the copy kept, or unpacked from a packed one.
  std::vector<float> weights_as_given(int64_t in, int64_t out) const {
    if (!weight.empty()) return weight;
    if (native != nullptr) {
      std::vector<float> unpacked(static_cast<size_t>(in * out));
      unpack_gemm_weights(native->layout, static_cast<const float *>(native->packed.data), unpacked.data());
      return unpacked;
    }
    return unpack_weights(*packed_source(), in, out);
  }
};

Linear::Linear(const float *weight, const float *bias, int64_t in_features, int64_t out_features,
               LinearEpilogue epilogue)
    : in_(in_features), out_(out_features), epilogue_(epilogue) {
  const dnnl::engine *engine = nullptr;
  try {
    engine = &cpu_engine();
  } catch (const dnnl::error &e) {
    throw_dnnl(e, "oneDNN engine setup failed");
  }
  cap_dnnl_primitive_cache();
  impl_ = std::make_unique<Impl>(*engine);
  impl_->weight.assign(weight, weight + in_features * out_features);
  impl_->has_bias = bias != nullptr;
  if (bias != nullptr) {
    impl_->bias_values.assign(bias, bias + out_features);
    try {
      impl_->bias = memory({{1, out_features}, memory::data_type::f32, memory::format_tag::ab}, impl_->engine,
                           impl_->bias_values.data());
    } catch (const dnnl::error &e) {
      throw_dnnl(e, "oneDNN bias setup failed");
    }
  }
}

Linear::~Linear() = default;

std::shared_ptr<const Linear::Plan> Linear::prepare(int64_t rows, bool pin) const {
  Impl &m = *impl_;
  std::lock_guard<std::mutex> lock(m.mutex);
  auto found = m.plans.find(rows);
  if (found != m.plans.end()) {
    found->second.last_use = ++m.clock;
    found->second.pinned = found->second.pinned || pin;
    return found->second.plan;
  }
  auto plan = std::make_shared<Plan>();
  plan->rows = rows;
  plan->out = out_;
  plan->gemm = native_gemm_kernel();
  if (plan->gemm != nullptr) {
    if (!m.native) {
      auto native = std::make_shared<NativeWeights>(GemmLayout(in_, out_));
      if (m.weight.empty()) {
        const std::vector<float> unpacked = m.weights_as_given(in_, out_);
        pack_gemm_weights(native->layout, unpacked.data(), static_cast<float *>(native->packed.data));
      } else {
        pack_gemm_weights(native->layout, m.weight.data(), static_cast<float *>(native->packed.data));
      }
      float *bias = static_cast<float *>(native->bias.data);
      std::fill(bias, bias + native->layout.bias_floats(), 0.0f);
      if (m.has_bias) std::copy(m.bias_values.begin(), m.bias_values.end(), bias);
      native->has_bias = m.has_bias;
      m.native = std::move(native);
      std::vector<float>().swap(m.weight);  // the packed copy holds every weight
    }
    plan->native = m.native;
    plan->fused_gelu = epilogue_ == LinearEpilogue::kGeluErf;
  } else {
    if (epilogue_ == LinearEpilogue::kGeluErf) plan->gelu = &select_f32_gelu_kernel(active_features());
    plan->primitive =
        get_primitive(m.engine, rows, in_, out_, m.has_bias,
                      epilogue_ == LinearEpilogue::kGeluErf ? LinearEpilogue::kStore : epilogue_);
    plan->scratchpad_bytes = plan->primitive->scratchpad_md.get_size();
    plan->bias = m.has_bias ? &m.bias : nullptr;
    for (const auto &packed : m.packed_weights) {
      if (packed->md == plan->primitive->weights_md) plan->weights = packed;
    }
    if (!plan->weights) {
      m.packed_weights.reserve(m.packed_weights.size() + 1);  // the push_back below cannot throw then
      // The source: the weights as given, or (once they were dropped) unpacked from a packed layout.
      std::vector<float> unpacked;
      if (m.weight.empty()) unpacked = m.weights_as_given(in_, out_);
      const float *source = m.weight.empty() ? unpacked.data() : m.weight.data();
      auto packed = pack_weights(m.engine, plan->primitive->weights_md, source, in_, out_);
      m.packed_weights.push_back(packed);
      plan->weights = std::move(packed);
      // A blocked layout holds every weight: the copy as given is no longer needed (half the memory).
      if (!m.weight.empty() && m.packed_source() != nullptr) std::vector<float>().swap(m.weight);
    }
  }
  Impl::CachedPlan &entry = m.plans[rows];  // may throw bad_alloc: nothing else changed but the packing
  entry.plan = plan;
  entry.pinned = pin;
  entry.last_use = ++m.clock;
  // Keep at most kMaxCachedPlans unpinned plans: drop the least recently prepared.
  size_t unpinned = 0;
  for (const auto &p : m.plans) unpinned += p.second.pinned ? 0 : 1;
  while (unpinned > kMaxCachedPlans) {
    auto oldest = m.plans.end();
    for (auto it = m.plans.begin(); it != m.plans.end(); ++it) {
      if (!it->second.pinned && (oldest == m.plans.end() || it->second.last_use < oldest->second.last_use))
        oldest = it;
    }
    m.plans.erase(oldest);
    --unpinned;
  }
  return plan;
}

size_t Linear::scratchpad_bytes(const Plan &plan) {
  return plan.scratchpad_bytes;
}

bool Linear::forward(const Plan &plan, const float *src, float *dst, void *scratchpad,
                     winattn_status *failure) const noexcept {
  if (plan.gemm != nullptr) return run_native(plan, src, dst, epilogue_ == LinearEpilogue::kAccumulate);
  Lease::Executor *executor = plan.take();
  if (executor == nullptr) {
    try {
      executor = plan.make_executor(impl_->engine);
    } catch (const Error &e) {
      report(failure, e.status(), e.message().c_str());
      return false;
    } catch (const std::bad_alloc &) {
      report(failure, WINATTN_STATUS_OUT_OF_MEMORY, "out of memory");
      return false;
    } catch (...) {
      report(failure, WINATTN_STATUS_INTERNAL_ERROR, "executor setup failed");
      return false;
    }
  }
  const bool ok = run(plan, *executor, src, dst, scratchpad, failure);
  plan.give_back(executor);
  return ok;
}

void Linear::trim() const {
  Impl &m = *impl_;
  std::lock_guard<std::mutex> lock(m.mutex);
  for (auto it = m.plans.begin(); it != m.plans.end();) {
    if (it->second.pinned) {
      it->second.plan->free_idle();
      ++it;
    } else {
      it = m.plans.erase(it);
    }
  }
  // Drop the layouts no plan reads, but keep one blocked layout when it is the only copy of the weights
  // (the native packing, once made, is kept: it is one).
  const PackedWeights *keep = m.weight.empty() && !m.native ? m.packed_source() : nullptr;
  for (const auto &packed : m.packed_weights) {
    if (keep != nullptr && packed.use_count() > 1 && packable(packed->md.data)) keep = packed.get();
  }
  for (auto it = m.packed_weights.begin(); it != m.packed_weights.end();) {
    it =
        (it->use_count() == 1 && it->get() != keep) ? m.packed_weights.erase(it) : it + 1;  // read by no plan
  }
}

int64_t Linear::memory_bytes() const {
  const Impl &m = *impl_;
  std::lock_guard<std::mutex> lock(impl_->mutex);
  size_t bytes = sizeof(Impl) + sizeof(float) * (m.weight.capacity() + m.bias_values.capacity());
  for (const auto &packed : m.packed_weights) bytes += sizeof(PackedWeights) + packed->block.bytes;
  if (m.native) bytes += sizeof(NativeWeights) + m.native->packed.bytes + m.native->bias.bytes;
  for (const auto &entry : m.plans) {
    const Plan &plan = *entry.second.plan;
    bytes += sizeof(Plan) + plan.scratchpad_bytes +
             static_cast<size_t>(plan.executors()) * sizeof(Lease::Executor);
  }
  return static_cast<int64_t>(bytes);
}

// ---- Lease
// -------------------------------------------------------------------------------------------------------

Linear::Lease::Lease(const Linear &linear, std::shared_ptr<const Plan> plan, int threads)
    : plan_(std::move(plan)), accumulate_(linear.epilogue() == LinearEpilogue::kAccumulate) {
  const size_t count = static_cast<size_t>(threads > 0 ? threads : 1);
  if (plan_->gemm != nullptr) {  // winattn's GEMM needs no executor
    executors_.assign(count, nullptr);
    return;
  }
  executors_.reserve(count);
  try {
    while (executors_.size() < count) {
      Executor *executor = plan_->take();
      if (executor == nullptr) executor = plan_->make_executor(linear.impl_->engine);
      executors_.push_back(executor);  // within the reserved capacity: cannot throw
    }
  } catch (...) {
    for (Executor *executor : executors_) plan_->give_back(executor);
    throw;
  }
}

Linear::Lease::~Lease() {
  for (Executor *executor : executors_)
    if (executor != nullptr) plan_->give_back(executor);
}

bool Linear::Lease::forward(int slot, const float *src, float *dst, void *scratchpad,
                            winattn_status *failure) const noexcept {
  if (plan_->gemm != nullptr) return run_native(*plan_, src, dst, accumulate_);
  return run(*plan_, *executors_[static_cast<size_t>(slot)], src, dst, scratchpad, failure);
}

bool Linear::computes_rows_alone(const Plan &plan) {
  return plan.gemm != nullptr;
}

bool Linear::Lease::forward_rows(int slot, int64_t rows, const float *src, float *dst, void *scratchpad,
                                 winattn_status *failure) const noexcept {
  if (plan_->gemm != nullptr) return run_native(*plan_, src, dst, accumulate_, rows);
  return run(*plan_, *executors_[static_cast<size_t>(slot)], src, dst, scratchpad, failure);
}

}  // namespace winattn::detail
