// Target "layer": a valid layer (v1/v2, 2D/3D, shifted or not, biases or not) created once and forwarded on
// a few batches and grids. Each forward must equal, bit for bit, the stateless
// winattn_shifted_window_attention given the same weights and the bias looked up by
// winattn_relative_position_index/_bias (v2: from winattn_continuous_position_bias_table): both run the same
// kernels on the same chunks, so any difference is a bug. Sampled output tokens are checked against the
// float64 reference (oracle.h), and a forward repeated with another per-layer thread budget must give the
// same bits.
#include <cstring>
#include <vector>

#include "fuzz_common.h"
#include "layer_model.h"
#include "oracle.h"
#include "targets.h"

namespace fz {

void target_layer(Reader &r) {
  ModelLimits limits;
  limits.max_heads = 4;
  limits.max_head_dim = 12;
  limits.max_window = 7;
  LayerModel m;
  read_model(r, limits, m);
  set_ctx("layer_create(%s)", m.describe().c_str());
  winattn_layer *layer = create_layer(m);
  const LayerRef ref = m.ref();
  const int forwards = 1 + r.u8() % 2;
  for (int f = 0; f < forwards; ++f) {
    int64_t batch = 1 + r.u8() % 3;
    int64_t grid[3];
    read_grid(r, m, 20, grid);
    fit_work(m, kSmallWork, &batch, grid);
    const size_t elems = activation_size(m, batch, grid);
    std::vector<float> in(elems), out(elems), expect(elems);
    fill(r, in.data(), elems);
    set_ctx("layer_forward(%s, batch=%lld, grid={%lld,%lld,%lld})", m.describe().c_str(), (long long)batch,
            (long long)grid[0], (long long)grid[1], (long long)grid[2]);
    std::string prev = last_msg();
    winattn_status s = winattn_layer_forward(layer, in.data(), batch, grid, out.data());
    check_status(s, Expect::kOk, prev);
    set_ctx("shifted_window_attention(%s, batch=%lld, grid={%lld,%lld,%lld}) against the layer",
            m.describe().c_str(), (long long)batch, (long long)grid[0], (long long)grid[1],
            (long long)grid[2]);
    prev = last_msg();
    s = run_stateless(m, in.data(), batch, grid, expect.data());
    check_status(s, Expect::kOk, prev);
    const size_t i = first_difference(out.data(), expect.data(), elems);
    CHECK(i == elems, "layer output[%zu] = %.9g, stateless %.9g (not bit-identical)", i, out[i], expect[i]);
    Rng rng = call_rng();
    check_layer_tokens(ref, batch, grid, in.data(), out.data(), rng, 1, int64_t(1) << 17, "layer_forward");
    const uint8_t budget = r.u8();
    if (budget >= 160) {
      const int threads = budget % 5;  // 0 (process setting) .. 4
      CHECK(winattn_layer_set_num_threads(layer, threads) == WINATTN_STATUS_OK, "layer_set_num_threads(%d)",
            threads);
      std::vector<float> again(elems);
      set_ctx("layer_forward(%s) with budget %d", m.describe().c_str(), threads);
      CHECK(winattn_layer_forward(layer, in.data(), batch, grid, again.data()) == WINATTN_STATUS_OK,
            "failed");
      CHECK(same_bits(again.data(), out.data(), elems), "results differ between thread budgets");
    }
  }
  destroy_layer(layer);
}

}  // namespace fz
