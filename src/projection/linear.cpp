#include "projection/linear.h"

#include <omp.h>
#include <oneapi/dnnl/dnnl.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <tuple>
#include <unordered_map>

#include "common/error.h"

namespace winattn::detail {

using dnnl::memory;

struct Linear::Plan {
  int64_t rows = 0;
  dnnl::matmul matmul;
  memory::desc src_md, dst_md;
  std::shared_ptr<const memory> weights;
  size_t scratchpad_bytes = 0;
  memory::desc scratchpad_md;
};

// One CPU engine for the process: primitives are cached across Linears and must run on the engine they
// were made for.
const dnnl::engine &cpu_engine() {
  static const dnnl::engine *engine = new dnnl::engine(dnnl::engine::kind::cpu, 0);  // lives until exit
  return *engine;
}

struct Linear::Impl {
  const dnnl::engine &engine = cpu_engine();
  std::vector<float> weight;  // [out][in] as given
  bool has_bias = false;
  memory bias;
  std::mutex mutex;
  std::map<int64_t, std::shared_ptr<const Plan>> plans;       // by row count
  std::vector<std::shared_ptr<const memory>> packed_weights;  // one per layout in use
};

namespace {

// Primitives by (rows, in, out, bias), shared by every Linear: the stateless layer makes new Linears on
// every call, and making a brgemm primitive costs milliseconds. Weights are not part of a primitive.
struct Primitive {
  dnnl::matmul matmul;
  memory::desc src_md, dst_md, weights_md, scratchpad_md;
};
using PrimitiveKey = std::tuple<int64_t, int64_t, int64_t, bool>;
std::mutex g_primitives_mutex;
std::map<PrimitiveKey, std::shared_ptr<const Primitive>> &primitives() {
  static auto *cache = new std::map<PrimitiveKey, std::shared_ptr<const Primitive>>();  // lives until exit
  return *cache;
}
constexpr size_t kMaxCachedPrimitives = 256;

std::shared_ptr<const Primitive> get_primitive(const dnnl::engine &engine, int64_t rows, int64_t in,
                                               int64_t out, bool has_bias) {
  const PrimitiveKey key{rows, in, out, has_bias};
  {
    std::lock_guard<std::mutex> lock(g_primitives_mutex);
    auto found = primitives().find(key);
    if (found != primitives().end()) return found->second;
  }
  auto primitive = std::make_shared<Primitive>();
  primitive->src_md = memory::desc({rows, in}, memory::data_type::f32, memory::format_tag::ab);
  primitive->dst_md = memory::desc({rows, out}, memory::data_type::f32, memory::format_tag::ab);
  const memory::desc weights_md({in, out}, memory::data_type::f32, memory::format_tag::any);
  const memory::desc bias_md({1, out}, memory::data_type::f32, memory::format_tag::ab);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  const auto pd = has_bias ? dnnl::matmul::primitive_desc(
                                 {primitive->src_md, weights_md, bias_md, primitive->dst_md}, attr, engine)
                           : dnnl::matmul::primitive_desc({primitive->src_md, weights_md, primitive->dst_md},
                                                          attr, engine);
  primitive->matmul = dnnl::matmul(pd);
  primitive->weights_md = pd.weights_desc();
  primitive->scratchpad_md = pd.scratchpad_desc();
  std::lock_guard<std::mutex> lock(g_primitives_mutex);
  if (primitives().size() >= kMaxCachedPrimitives) primitives().clear();  // plans keep theirs alive
  return primitives().emplace(key, std::move(primitive)).first->second;
}

[[noreturn]] void rethrow_dnnl(const dnnl::error &e, const char *what) {
  if (e.status == dnnl_out_of_memory) throw Error(WINATTN_STATUS_OUT_OF_MEMORY, "oneDNN: out of memory");
  throw Error(WINATTN_STATUS_INTERNAL_ERROR, std::string(what) + ": " + e.what());
}

}  // namespace

Linear::Linear(const float *weight, const float *bias, int64_t in_features, int64_t out_features)
    : in_(in_features), out_(out_features), impl_(new Impl) {
  impl_->weight.assign(weight, weight + in_features * out_features);
  impl_->has_bias = bias != nullptr;
  try {
    if (bias != nullptr) {
      impl_->bias =
          memory({{1, out_features}, memory::data_type::f32, memory::format_tag::ab}, impl_->engine);
      float *dst = static_cast<float *>(impl_->bias.get_data_handle());
      for (int64_t o = 0; o < out_features; ++o) dst[o] = bias[o];
    }
  } catch (const dnnl::error &e) {
    rethrow_dnnl(e, "oneDNN bias setup failed");
  }
}

Linear::~Linear() = default;

std::shared_ptr<const Linear::Plan> Linear::prepare(int64_t rows) const {
  Impl &m = *impl_;
  std::lock_guard<std::mutex> lock(m.mutex);
  auto found = m.plans.find(rows);
  if (found != m.plans.end()) return found->second;
  auto plan = std::make_shared<Plan>();
  plan->rows = rows;
  try {
    const auto primitive = get_primitive(m.engine, rows, in_, out_, m.has_bias);
    plan->matmul = primitive->matmul;
    plan->src_md = primitive->src_md;
    plan->dst_md = primitive->dst_md;
    plan->scratchpad_md = primitive->scratchpad_md;
    plan->scratchpad_bytes = plan->scratchpad_md.get_size();
    const memory::desc &weights_md = primitive->weights_md;
    for (const auto &packed : m.packed_weights) {
      if (packed->get_desc() == weights_md) plan->weights = packed;
    }
    if (!plan->weights) {
      // nn.Linear's [out][in] storage is the "ba" layout of the [in][out] weights matrix.
      const memory::desc user_md({in_, out_}, memory::data_type::f32, memory::format_tag::ba);
      memory user(user_md, m.engine, m.weight.data());
      auto packed = std::make_shared<memory>(weights_md, m.engine);
      // Single-threaded: a small copy, not worth waking (or waiting for) a team of threads.
      bool reordered = false;
#pragma omp parallel num_threads(1)
      {
        omp_set_num_threads(1);
        try {
          dnnl::stream stream(m.engine);
          dnnl::reorder(user, *packed).execute(stream, user, *packed);
          stream.wait();
          reordered = true;
        } catch (...) {
        }
      }
      if (!reordered) throw Error(WINATTN_STATUS_INTERNAL_ERROR, "oneDNN weights reorder failed");
      m.packed_weights.push_back(packed);
      plan->weights = packed;
    }
  } catch (const dnnl::error &e) {
    rethrow_dnnl(e, "oneDNN matmul setup failed");
  }
  m.plans.emplace(rows, plan);
  return plan;
}

size_t Linear::scratchpad_bytes(const Plan &plan) {
  return plan.scratchpad_bytes;
}

bool Linear::forward(const Plan &plan, const float *src, float *dst, void *scratchpad) const noexcept {
  try {
    const Impl &m = *impl_;
    dnnl::stream stream(m.engine);
    memory src_mem(plan.src_md, m.engine, const_cast<float *>(src));
    memory dst_mem(plan.dst_md, m.engine, dst);
    memory scratch_mem(plan.scratchpad_md, m.engine, scratchpad);
    std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, src_mem},
                                            {DNNL_ARG_WEIGHTS, *plan.weights},
                                            {DNNL_ARG_DST, dst_mem},
                                            {DNNL_ARG_SCRATCHPAD, scratch_mem}};
    if (m.has_bias) args.insert({DNNL_ARG_BIAS, m.bias});
    plan.matmul.execute(stream, args);
    stream.wait();
    return true;
  } catch (const dnnl::error &e) {
    if (std::getenv("WINATTN_DEBUG")) std::fprintf(stderr, "winattn: oneDNN: %s\n", e.what());
    return false;
  } catch (const std::exception &e) {
    if (std::getenv("WINATTN_DEBUG")) std::fprintf(stderr, "winattn: %s\n", e.what());
    return false;
  } catch (...) {
    return false;
  }
}

}  // namespace winattn::detail
