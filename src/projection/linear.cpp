#include "projection/linear.h"

#include <oneapi/dnnl/dnnl.hpp>

#include <string>
#include <unordered_map>

#include "common/error.h"

namespace winattn {

using dnnl::memory;

struct Linear::Plan {
  int64_t rows = 0;
  dnnl::matmul matmul;
  memory::desc src_md, dst_md;
  std::shared_ptr<const memory> weights;
  size_t scratchpad_bytes = 0;
  memory::desc scratchpad_md;
};

struct Linear::Impl {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  std::vector<float> weight;  // [out][in] as given
  bool has_bias = false;
  memory bias;
  std::mutex mutex;
  std::map<int64_t, std::shared_ptr<const Plan>> plans;       // by row count
  std::vector<std::shared_ptr<const memory>> packed_weights;  // one per layout in use
};

namespace {

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
    plan->src_md = memory::desc({rows, in_}, memory::data_type::f32, memory::format_tag::ab);
    plan->dst_md = memory::desc({rows, out_}, memory::data_type::f32, memory::format_tag::ab);
    const memory::desc weights_md({in_, out_}, memory::data_type::f32, memory::format_tag::any);
    const memory::desc bias_md({1, out_}, memory::data_type::f32, memory::format_tag::ab);
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    const auto pd =
        m.has_bias
            ? dnnl::matmul::primitive_desc({plan->src_md, weights_md, bias_md, plan->dst_md}, attr, m.engine)
            : dnnl::matmul::primitive_desc({plan->src_md, weights_md, plan->dst_md}, attr, m.engine);
    plan->matmul = dnnl::matmul(pd);
    plan->scratchpad_md = pd.scratchpad_desc();
    plan->scratchpad_bytes = plan->scratchpad_md.get_size();
    for (const auto &packed : m.packed_weights) {
      if (packed->get_desc() == pd.weights_desc()) plan->weights = packed;
    }
    if (!plan->weights) {
      // nn.Linear's [out][in] storage is the "ba" layout of the [in][out] weights matrix.
      const memory::desc user_md({in_, out_}, memory::data_type::f32, memory::format_tag::ba);
      memory user(user_md, m.engine, m.weight.data());
      auto packed = std::make_shared<memory>(pd.weights_desc(), m.engine);
      dnnl::stream stream(m.engine);
      dnnl::reorder(user, *packed).execute(stream, user, *packed);
      stream.wait();
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
  } catch (...) {
    return false;
  }
}

}  // namespace winattn
