// Target "faults": one library call with allocation failures injected (fault_alloc.h): the n-th allocation,
// every one from the n-th on, or every one above a size, made by libwinattn (and, if the input asks, by
// oneDNN). The contract: OUT_OF_MEMORY with a message and nothing written (no *layer, output untouched), or
// OK with the right result when the call needed none of the failed allocations (a layer call failing inside
// oneDNN mid-call may leave each output float its result or its old value); never a crash, a leak, an
// exception escaping an OpenMP region or INTERNAL_ERROR; and the layer (and the library) keep working
// afterwards. Calls whose contract lists no OUT_OF_MEMORY (thread settings, trim, memory report) must
// succeed while allocations fail.
#include <cstring>
#include <vector>

#include "fault_alloc.h"
#include "fuzz_common.h"
#include "layer_model.h"
#include "targets.h"

namespace fz {
namespace {

struct Injection {
  fault::Mode mode = fault::Mode::kNth;
  int64_t n = 1;
  size_t min_bytes = 0;
  bool dnnl = false;
  void read(Reader &r) {
    const uint8_t sel = r.u8();
    mode = sel % 3 == 0 ? fault::Mode::kNth : sel % 3 == 1 ? fault::Mode::kFrom : fault::Mode::kLarge;
    n = 1 + r.u8() % 64;
    min_bytes = size_t(1) << (r.u8() % 24);
    dnnl = (sel & 8) != 0;
  }
  const char *name() const {
    return mode == fault::Mode::kNth    ? "only allocation"
           : mode == fault::Mode::kFrom ? "allocations from"
                                        : "bytes >=";
  }
  int64_t arg() const { return mode == fault::Mode::kLarge ? static_cast<int64_t>(min_bytes) : n; }
  void arm() const { fault::arm(mode, n, min_bytes, dnnl); }
};

// A failed layer call's output (header, winattn_layer_forward): untouched when winattn's own allocation
// failed; when one inside oneDNN failed mid-call, every float holds its result or its old value.
void check_failed_output(const std::vector<float> &out, const std::vector<float> &old,
                         const std::vector<float> &expect, bool dnnl) {
  for (size_t i = 0; i < out.size(); ++i) {
    if (std::memcmp(&out[i], &old[i], sizeof(float)) == 0) continue;
    CHECK(dnnl, "a call that failed in winattn's own allocation wrote output[%zu] = %g", i, out[i]);
    CHECK(same_bits(&out[i], &expect[i], 1),
          "a failed call left output[%zu] = %g: neither its result %g nor "
          "its old value",
          i, out[i], expect[i]);
  }
}

// OK or OUT_OF_MEMORY; returns whether it succeeded.
bool check_oom_status(winattn_status s, const std::string &prev, int64_t failed) {
  check_status(s, Expect::kOk, prev, /*allow_oom=*/true);
  if (s == WINATTN_STATUS_OUT_OF_MEMORY) CHECK(failed > 0, "OUT_OF_MEMORY without a failed allocation");
  note("%lld allocations counted, %lld failed", (long long)fault::counted(), (long long)failed);
  return s == WINATTN_STATUS_OK;
}

}  // namespace

void target_faults(Reader &r) {
  Injection inj;
  inj.read(r);
  const uint8_t opt = r.u8();
  const int threads = 1 + (opt >> 4) % 3;
  const bool warm = opt & 8;  // run the call once unarmed first: caches are warm, the replay is exact
  winattn_set_num_threads(threads);
  ModelLimits limits;
  limits.max_heads = 2;
  limits.max_head_dim = 6;
  limits.max_window = 5;
  LayerModel m;
  read_model(r, limits, m);
  int64_t batch = 1 + r.u8() % 2;
  int64_t grid[3];
  read_grid(r, m, 12, grid);
  fit_work(m, kSmallWork, &batch, grid);
  const size_t elems = activation_size(m, batch, grid);
  std::vector<float> in(elems), expect(elems), out(elems);
  fill(r, in.data(), elems);
  const std::string desc = m.describe();
  char what[96];
  snprintf(what, sizeof what, "%s %lld%s, %d threads", inj.name(), (long long)inj.arg(),
           inj.dnnl ? " (oneDNN too)" : "", threads);
  CHECK(run_stateless(m, in.data(), batch, grid, expect.data()) == WINATTN_STATUS_OK, "stateless reference");
  switch (opt % 4) {
    case 0: {  // create
      const winattn_layer_desc d = m.desc();
      winattn_layer *const kSentinel = reinterpret_cast<winattn_layer *>(uintptr_t{0x5EED});
      winattn_layer *layer = kSentinel;
      if (warm) {
        winattn_layer *tmp = create_layer(m);
        destroy_layer(tmp);
      }
      set_ctx("winattn_layer_create(%s) with %s", desc.c_str(), what);
      const std::string prev = last_msg();
      inj.arm();
      const winattn_status s = winattn_layer_create(&d, &layer);
      const int64_t failed = fault::disarm();
      if (!check_oom_status(s, prev, failed)) {
        CHECK(layer == kSentinel, "a failed create wrote *layer");
        break;
      }
      layer_created(layer);
      set_ctx("layer_forward(%s) after a create with %s", desc.c_str(), what);
      CHECK(winattn_layer_forward(layer, in.data(), batch, grid, out.data()) == WINATTN_STATUS_OK, "failed");
      CHECK(same_bits(out.data(), expect.data(), elems), "layer differs from the stateless result");
      destroy_layer(layer);
      break;
    }
    case 1: {  // forward (and trim, budgets, memory report, which must not fail)
      winattn_layer *layer = create_layer(m);
      if (warm)
        CHECK(winattn_layer_forward(layer, in.data(), batch, grid, out.data()) == WINATTN_STATUS_OK, "warm");
      std::memset(out.data(), 0xA5, elems * sizeof(float));
      const std::vector<float> poisoned = out;
      set_ctx("winattn_layer_forward(%s, batch=%lld, grid={%lld,%lld,%lld}) with %s", desc.c_str(),
              (long long)batch, (long long)grid[0], (long long)grid[1], (long long)grid[2], what);
      const std::string prev = last_msg();
      inj.arm();
      const uint8_t extra = r.u8();
      winattn_status side = WINATTN_STATUS_OK;
      int64_t bytes = 0;
      int budget = -1;
      if (extra & 1) side = winattn_layer_trim(layer);
      const winattn_status s = winattn_layer_forward(layer, in.data(), batch, grid, out.data());
      if ((extra & 2) && side == WINATTN_STATUS_OK) side = winattn_layer_memory_bytes(layer, &bytes);
      if ((extra & 4) && side == WINATTN_STATUS_OK)
        side = winattn_layer_set_num_threads(layer, 1 + extra % 3);
      if ((extra & 8) && side == WINATTN_STATUS_OK) side = winattn_layer_get_num_threads(layer, &budget);
      if (extra & 16) winattn_release_thread_memory();
      const int64_t failed = fault::disarm();
      CHECK(side == WINATTN_STATUS_OK,
            "trim / memory_bytes / layer thread budget failed (%d) while allocations "
            "failed: \"%s\"",
            static_cast<int>(side), winattn_last_error_message());
      if (check_oom_status(s, prev, failed))
        CHECK(same_bits(out.data(), expect.data(), elems), "forward differs from the stateless result");
      else
        check_failed_output(out, poisoned, expect, inj.dnnl);
      set_ctx("winattn_layer_forward(%s) after one with %s", desc.c_str(), what);
      CHECK(winattn_layer_forward(layer, in.data(), batch, grid, out.data()) == WINATTN_STATUS_OK, "failed");
      CHECK(same_bits(out.data(), expect.data(), elems), "the layer computes other values after a failure");
      destroy_layer(layer);
      break;
    }
    case 2: {  // stateless
      std::memset(out.data(), 0xA5, elems * sizeof(float));
      const std::vector<float> poisoned = out;
      set_ctx("winattn_shifted_window_attention(%s, batch=%lld, grid={%lld,%lld,%lld}) with %s", desc.c_str(),
              (long long)batch, (long long)grid[0], (long long)grid[1], (long long)grid[2], what);
      const std::string prev = last_msg();
      inj.arm();
      const winattn_status s = run_stateless(m, in.data(), batch, grid, out.data());
      const int64_t failed = fault::disarm();
      if (check_oom_status(s, prev, failed))
        CHECK(same_bits(out.data(), expect.data(), elems), "result differs from the unarmed one");
      else
        check_failed_output(out, poisoned, expect, inj.dnnl);
      break;
    }
    default: {  // the kernel and the small functions
      const int64_t nw = 1 + r.u8() % 8, heads = m.heads, n = m.tokens, hd = 1 + r.u8() % 16;
      const size_t S = static_cast<size_t>(nw * heads * n * hd);
      std::vector<float> q(S), k(S), v(S), o1(S), o2(S, 0.0f);
      fill(r, q.data(), S), fill(r, k.data(), S), fill(r, v.data(), S);
      const float *bias = m.bias.empty() ? nullptr : m.bias.data();
      CHECK(winattn_window_attention(nw, heads, n, hd, q.data(), k.data(), v.data(), 0.3f, bias, nullptr, 1,
                                     o1.data()) == WINATTN_STATUS_OK,
            "window_attention reference");
      std::memset(o2.data(), 0xA5, S * sizeof(float));
      const std::vector<float> poisoned = o2;
      std::vector<float> cpb_ref, cpb((2 * 7 - 1) * (2 * 5 - 1) * 2, 0.0f);
      std::vector<float> w1(16), w2(16);
      fill_plain(r, w1.data(), w1.size()), fill_plain(r, w2.data(), w2.size());
      CHECK(winattn_continuous_position_bias_table(7, 5, w1.data(), nullptr, w2.data(), 8, 2, cpb.data()) ==
                WINATTN_STATUS_OK,
            "continuous table reference");
      cpb_ref = cpb;
      std::memset(cpb.data(), 0xA5, cpb.size() * sizeof(float));
      const std::vector<float> cpb_poisoned = cpb;
      set_ctx("winattn_window_attention(nw=%lld, heads=%lld, n=%lld, d=%lld) and a continuous table with %s",
              (long long)nw, (long long)heads, (long long)n, (long long)hd, what);
      std::string prev = last_msg();
      inj.arm();
      const winattn_status s = winattn_window_attention(nw, heads, n, hd, q.data(), k.data(), v.data(), 0.3f,
                                                        bias, nullptr, 1, o2.data());
      int64_t failed = fault::disarm();
      if (check_oom_status(s, prev, failed))
        CHECK(same_bits(o2.data(), o1.data(), S), "kernel result differs from the unarmed one");
      else
        CHECK(std::memcmp(o2.data(), poisoned.data(), S * sizeof(float)) == 0,
              "a failed kernel call wrote out");
      prev = last_msg();
      inj.arm();
      const winattn_status s2 =
          winattn_continuous_position_bias_table(7, 5, w1.data(), nullptr, w2.data(), 8, 2, cpb.data());
      failed = fault::disarm();
      if (check_oom_status(s2, prev, failed))
        CHECK(same_bits(cpb.data(), cpb_ref.data(), cpb.size()), "table differs from the unarmed one");
      else
        CHECK(std::memcmp(cpb.data(), cpb_poisoned.data(), cpb.size() * sizeof(float)) == 0,
              "a failed table call wrote the table");
      break;
    }
  }
  // The library still works with memory back.
  set_ctx("shifted_window_attention(%s) after the injected failures", desc.c_str());
  CHECK(run_stateless(m, in.data(), batch, grid, out.data()) == WINATTN_STATUS_OK, "failed");
  CHECK(same_bits(out.data(), expect.data(), elems), "results changed after the injected failures");
}

}  // namespace fz
