#include "projection/linear.h"

#include <oneapi/dnnl/dnnl.hpp>

#include <string>

#include "common/error.h"

namespace winattn {

using dnnl::memory;

struct Linear::Impl {
  int64_t in = 0, out = 0;
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::matmul::primitive_desc pd;
  dnnl::matmul matmul;
  memory weights, bias;
  bool has_bias = false;
};

Linear::Linear(const float *weight, const float *bias, int64_t in_features, int64_t out_features)
    : impl_(new Impl) {
  Impl &m = *impl_;
  m.in = in_features;
  m.out = out_features;
  m.has_bias = bias != nullptr;
  try {
    const memory::dims src_dims = {DNNL_RUNTIME_DIM_VAL, in_features};
    const memory::desc src_md(src_dims, memory::data_type::f32, memory::format_tag::ab);
    const memory::desc dst_md({DNNL_RUNTIME_DIM_VAL, out_features}, memory::data_type::f32,
                              memory::format_tag::ab);
    // Weights as a [in][out] matrix; nn.Linear's [out][in] storage is its "ba" layout.
    const memory::desc user_weights_md({in_features, out_features}, memory::data_type::f32,
                                       memory::format_tag::ba);
    const memory::desc weights_md({in_features, out_features}, memory::data_type::f32,
                                  memory::format_tag::any);
    const memory::desc bias_md({1, out_features}, memory::data_type::f32, memory::format_tag::ab);
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    try {
      m.pd = m.has_bias ? dnnl::matmul::primitive_desc({src_md, weights_md, bias_md, dst_md}, attr, m.engine)
                        : dnnl::matmul::primitive_desc({src_md, weights_md, dst_md}, attr, m.engine);
    } catch (const dnnl::error &) {
      // Some implementations cannot choose a weights layout with a run-time row count: use the plain one.
      const memory::desc plain_md({in_features, out_features}, memory::data_type::f32,
                                  memory::format_tag::ab);
      m.pd = m.has_bias ? dnnl::matmul::primitive_desc({src_md, plain_md, bias_md, dst_md}, attr, m.engine)
                        : dnnl::matmul::primitive_desc({src_md, plain_md, dst_md}, attr, m.engine);
    }
    m.matmul = dnnl::matmul(m.pd);
    dnnl::stream stream(m.engine);
    memory user_weights(user_weights_md, m.engine, const_cast<float *>(weight));
    m.weights = memory(m.pd.weights_desc(), m.engine);
    dnnl::reorder(user_weights, m.weights).execute(stream, user_weights, m.weights);
    if (m.has_bias) {
      m.bias = memory(bias_md, m.engine);
      float *dst = static_cast<float *>(m.bias.get_data_handle());
      for (int64_t o = 0; o < out_features; ++o) dst[o] = bias[o];
    }
    stream.wait();
  } catch (const dnnl::error &e) {
    if (e.status == dnnl_out_of_memory) throw Error(WINATTN_STATUS_OUT_OF_MEMORY, "oneDNN: out of memory");
    throw Error(WINATTN_STATUS_INTERNAL_ERROR, std::string("oneDNN matmul setup failed: ") + e.what());
  }
}

Linear::~Linear() = default;

int64_t Linear::in_features() const {
  return impl_->in;
}
int64_t Linear::out_features() const {
  return impl_->out;
}
size_t Linear::scratchpad_bytes() const {
  return impl_->pd.scratchpad_desc().get_size();
}

bool Linear::forward(const float *src, int64_t rows, float *dst, void *scratchpad) const noexcept {
  try {
    const Impl &m = *impl_;
    const memory::desc src_md({rows, m.in}, memory::data_type::f32, memory::format_tag::ab);
    const memory::desc dst_md({rows, m.out}, memory::data_type::f32, memory::format_tag::ab);
    dnnl::stream stream(m.engine);
    memory src_mem(src_md, m.engine, const_cast<float *>(src));
    memory dst_mem(dst_md, m.engine, dst);
    memory scratch_mem(m.pd.scratchpad_desc(), m.engine, scratchpad);
    std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, src_mem},
                                            {DNNL_ARG_WEIGHTS, m.weights},
                                            {DNNL_ARG_DST, dst_mem},
                                            {DNNL_ARG_SCRATCHPAD, scratch_mem}};
    if (m.has_bias) args.insert({DNNL_ARG_BIAS, m.bias});
    m.matmul.execute(stream, args);
    stream.wait();
    return true;
  } catch (...) {
    return false;
  }
}

}  // namespace winattn
