// Targets for serving: thread counts and per-layer budgets ("threads"), layer handles after destroy and
// foreign ones ("lifecycle"), the memory a shifted layer keeps over many grids ("cache"), and forwards on one
// layer from several threads at once while another changes settings ("concurrency").
#include <climits>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "fuzz_common.h"
#include "layer_model.h"
#include "oracle.h"
#include "targets.h"

namespace fz {
namespace {

// A thread count from the input: small, at and around WINATTN_MAX_THREADS, huge, negative or any int.
int read_thread_count(Reader &r) {
  static const int kValues[] = {0,  1,  2,   3,   4,   5,    7,       8,  16,
                                33, 64, 255, 256, 257, 1000, INT_MAX, -1, INT_MIN};
  const uint8_t sel = r.u8();
  if (sel < 240) return kValues[sel % (sizeof kValues / sizeof kValues[0])];
  return static_cast<int>(r.u32());
}

bool thread_count_valid(int n) {
  return n >= 0 && n <= WINATTN_MAX_THREADS;
}

// winattn_set_num_threads(n) with its contract; returns whether it was accepted.
bool set_threads(int n) {
  set_ctx("winattn_set_num_threads(%d)", n);
  const int before = winattn_get_num_threads();
  const std::string prev = last_msg();
  const winattn_status s = winattn_set_num_threads(n);
  const bool valid = thread_count_valid(n);
  check_status(s, valid ? Expect::kOk : Expect::kFail, prev);
  if (!valid) CHECK(s == WINATTN_STATUS_INVALID_ARGUMENT, "status %d", static_cast<int>(s));
  CHECK(winattn_get_num_threads() == (valid ? n : before), "get_num_threads() = %d",
        winattn_get_num_threads());
  return valid;
}

// winattn_layer_set_num_threads(layer, n) and _get with their contract.
void set_layer_threads(winattn_layer *layer, int n) {
  set_ctx("winattn_layer_set_num_threads(layer, %d)", n);
  int before = -7;
  CHECK(winattn_layer_get_num_threads(layer, &before) == WINATTN_STATUS_OK, "layer_get_num_threads failed");
  const std::string prev = last_msg();
  const winattn_status s = winattn_layer_set_num_threads(layer, n);
  const bool valid = thread_count_valid(n);
  check_status(s, valid ? Expect::kOk : Expect::kFail, prev);
  if (!valid) CHECK(s == WINATTN_STATUS_INVALID_ARGUMENT, "status %d", static_cast<int>(s));
  int after = -7;
  CHECK(winattn_layer_get_num_threads(layer, &after) == WINATTN_STATUS_OK, "layer_get_num_threads failed");
  CHECK(after == (valid ? n : before), "layer_get_num_threads = %d (before %d, set %d)", after, before, n);
}

// A small attention problem and its result on one thread.
struct Attention {
  int64_t nw = 1, heads = 1, n = 1, hd = 1, mask_windows = 1;
  float scale = 1;
  std::vector<float> q, k, v, bias, mask, expect;

  void read(Reader &r, int64_t max_windows) {
    nw = 1 + r.u8() % max_windows, heads = 1 + r.u8() % 4, n = 1 + r.u8() % 20, hd = 1 + r.u8() % 16;
    const uint8_t opt = r.u8();
    mask_windows = 1 + (opt >> 2) % nw;
    scale = 1.0f / static_cast<float>(hd);
    const size_t size = static_cast<size_t>(nw * heads * n * hd);
    for (auto *b : {&q, &k, &v}) b->resize(size), fill(r, b->data(), size);
    if (opt & 1) bias.resize(static_cast<size_t>(heads * n * n)), fill(r, bias.data(), bias.size());
    if (opt & 2) mask.resize(static_cast<size_t>(mask_windows * n * n)), fill(r, mask.data(), mask.size());
    expect.resize(size);
    CHECK(run(expect.data()) == WINATTN_STATUS_OK, "window_attention reference failed");
  }
  winattn_status run(float *out) const {
    return winattn_window_attention(nw, heads, n, hd, q.data(), k.data(), v.data(), scale,
                                    bias.empty() ? nullptr : bias.data(),
                                    mask.empty() ? nullptr : mask.data(), mask_windows, out);
  }
  void check_again(const char *when) const {
    set_ctx("winattn_window_attention(nw=%lld, heads=%lld, n=%lld, d=%lld) %s", (long long)nw,
            (long long)heads, (long long)n, (long long)hd, when);
    std::vector<float> out(expect.size());
    const std::string prev = last_msg();
    check_status(run(out.data()), Expect::kOk, prev);
    CHECK(same_bits(out.data(), expect.data(), out.size()), "results differ from the one-thread run");
  }
};

// A small layer, one activation for it and the one-thread results.
struct LayerCase {
  LayerModel m;
  winattn_layer *layer = nullptr;
  int64_t batch = 1, grid[3] = {1, 1, 1};
  std::vector<float> in, expect;

  // eager: compute the reference now (with the settings of now); else at the first check_again.
  void read(Reader &r, const ModelLimits &limits, int64_t max_axis, bool eager = true) {
    read_model(r, limits, m);
    set_ctx("layer_create(%s)", m.describe().c_str());
    layer = create_layer(m);
    batch = 1 + r.u8() % 2;
    read_grid(r, m, max_axis, grid);
    fit_work(m, kSmallWork / 2, &batch, grid);
    in.resize(activation_size(m, batch, grid));
    fill(r, in.data(), in.size());
    if (eager) reference();
  }
  void reference() {
    expect.resize(in.size());
    set_ctx("layer_forward(%s, batch=%lld, grid={%lld,%lld,%lld}) reference", m.describe().c_str(),
            (long long)batch, (long long)grid[0], (long long)grid[1], (long long)grid[2]);
    CHECK(winattn_layer_forward(layer, in.data(), batch, grid, expect.data()) == WINATTN_STATUS_OK, "failed");
  }
  void check_again(const char *when) {
    if (expect.empty()) return reference();
    set_ctx("layer_forward(%s, batch=%lld, grid={%lld,%lld,%lld}) %s", m.describe().c_str(), (long long)batch,
            (long long)grid[0], (long long)grid[1], (long long)grid[2], when);
    std::vector<float> out(in.size());
    const std::string prev = last_msg();
    check_status(winattn_layer_forward(layer, in.data(), batch, grid, out.data()), Expect::kOk, prev);
    CHECK(same_bits(out.data(), expect.data(), out.size()), "results differ from the first run");
  }
  void check_stateless(const char *when) {
    if (expect.empty()) reference();
    set_ctx("shifted_window_attention(%s, batch=%lld, grid={%lld,%lld,%lld}) %s", m.describe().c_str(),
            (long long)batch, (long long)grid[0], (long long)grid[1], (long long)grid[2], when);
    std::vector<float> out(in.size());
    const std::string prev = last_msg();
    check_status(run_stateless(m, in.data(), batch, grid, out.data()), Expect::kOk, prev);
    CHECK(same_bits(out.data(), expect.data(), out.size()), "stateless differs from the layer");
  }
};

// The gradient of the bias lookup, deterministic for every thread count.
struct Backward {
  int64_t rows = 1, heads = 1, n = 1;
  std::vector<int64_t> index;
  std::vector<float> grad, expect;

  void read(Reader &r) {
    rows = 1 + r.u8() % 64, heads = 1 + r.u8() % 8, n = 1 + r.u8() % 40;
    index.resize(static_cast<size_t>(n * n));
    const uint64_t seed = r.u16();
    for (size_t i = 0; i < index.size(); ++i) index[i] = static_cast<int64_t>(mix(seed + i) % rows);
    grad.resize(static_cast<size_t>(heads * n * n));
    fill(r, grad.data(), grad.size());
    expect.assign(static_cast<size_t>(rows * heads), 0.0f);
    CHECK(run(expect.data()) == WINATTN_STATUS_OK, "relative_position_bias_backward reference failed");
  }
  winattn_status run(float *table) const {
    return winattn_relative_position_bias_backward(grad.data(), rows, heads, index.data(), n, table);
  }
  void check_again() const {
    set_ctx("winattn_relative_position_bias_backward(rows=%lld, heads=%lld, n=%lld) threads %d",
            (long long)rows, (long long)heads, (long long)n, winattn_get_num_threads());
    std::vector<float> table(expect.size(), 0.0f);
    const std::string prev = last_msg();
    check_status(run(table.data()), Expect::kOk, prev);
    CHECK(same_bits(table.data(), expect.data(), table.size()), "gradient differs between thread counts");
  }
};

ModelLimits small_limits() {
  ModelLimits limits;
  limits.max_heads = 3;
  limits.max_head_dim = 6;
  limits.max_window = 5;
  return limits;
}

}  // namespace

void target_threads(Reader &r) {
  Attention att;
  att.read(r, 16);
  Backward bwd;
  bwd.read(r);
  LayerCase lc;
  const bool with_layer = r.u8() >= 160;  // layers cost more; target layer checks budgets too
  if (with_layer) lc.read(r, small_limits(), 12);
  for (int step = 0; step < 12 && !r.done(); ++step) {
    switch (r.u8() % 8) {
      case 0:
      case 1:
        set_threads(read_thread_count(r));
        break;
      case 2:
        att.check_again("after a thread change");
        break;
      case 3:
        bwd.check_again();
        break;
      case 4:
        if (with_layer) lc.check_again("after a thread change");
        break;
      case 5:
        if (with_layer) set_layer_threads(lc.layer, read_thread_count(r));
        break;
      case 6:
        if (with_layer) lc.check_stateless("after a thread change");
        break;
      default:
        set_ctx("winattn_release_thread_memory()");
        winattn_release_thread_memory();
        break;
    }
  }
  if (with_layer) destroy_layer(lc.layer);
}

// ---- lifecycle --------------------------------------------------------------------------------------------
namespace {

struct Handle {
  LayerCase lc;
  bool live = true;
};

// Every entry point that takes a layer, on a handle that is not a live layer: INVALID_ARGUMENT (destroy: a
// no-op) and nothing written. When the address is live again (reused by a later create), the header's
// best-effort detection cannot tell: nothing is expected then.
void stale_call(const winattn_layer *stale, uint8_t which, const LayerCase *shape, const char *what) {
  if (layer_is_live(stale)) return;
  winattn_layer *h = const_cast<winattn_layer *>(stale);
  std::string prev = last_msg();
  winattn_status s = WINATTN_STATUS_OK;
  switch (which % 6) {
    case 0: {
      set_ctx("winattn_layer_forward(%s layer %p)", what, static_cast<const void *>(stale));
      const int64_t grid[3] = {1, 2, 2};
      std::vector<float> in(64, 1.0f), out(64, 0.0f);
      const float *ip = in.data();
      float *op = out.data();
      int64_t batch = 1;
      const int64_t *gp = grid;
      if (shape) ip = shape->in.data(), batch = shape->batch, gp = shape->grid;
      std::vector<float> out_big(shape ? shape->in.size() : 0);
      if (shape) op = out_big.data();
      std::vector<float> &o = shape ? out_big : out;
      std::memset(o.data(), 0x5A, o.size() * sizeof(float));
      Frozen frozen;
      frozen.add(o.data(), o.size() * sizeof(float), "output");
      s = winattn_layer_forward(stale, ip, batch, gp, op);
      check_status(s, Expect::kFail, prev);
      frozen.check("forward on a stale layer");
      break;
    }
    case 1:
      set_ctx("winattn_layer_trim(%s layer %p)", what, static_cast<const void *>(stale));
      s = winattn_layer_trim(h);
      check_status(s, Expect::kFail, prev);
      break;
    case 2: {
      set_ctx("winattn_layer_set_num_threads(%s layer %p, 1)", what, static_cast<const void *>(stale));
      s = winattn_layer_set_num_threads(h, 1);
      check_status(s, Expect::kFail, prev);
      break;
    }
    case 3: {
      set_ctx("winattn_layer_get_num_threads(%s layer %p)", what, static_cast<const void *>(stale));
      int n = -12345;
      s = winattn_layer_get_num_threads(stale, &n);
      check_status(s, Expect::kFail, prev);
      CHECK(n == -12345, "num_threads written (%d) by a failed call", n);
      break;
    }
    case 4: {
      set_ctx("winattn_layer_memory_bytes(%s layer %p)", what, static_cast<const void *>(stale));
      int64_t bytes = -12345;
      s = winattn_layer_memory_bytes(stale, &bytes);
      check_status(s, Expect::kFail, prev);
      CHECK(bytes == -12345, "bytes written (%lld) by a failed call", (long long)bytes);
      break;
    }
    default:
      set_ctx("winattn_layer_destroy(%s layer %p)", what, static_cast<const void *>(stale));
      winattn_layer_destroy(h);  // must ignore it
      CHECK(last_msg() == prev, "destroy of a stale layer changed the error message");
      return;
  }
  CHECK(s == WINATTN_STATUS_INVALID_ARGUMENT, "status %d for a %s layer", static_cast<int>(s), what);
}

}  // namespace

void target_lifecycle(Reader &r) {
  std::vector<Handle> handles(1 + (r.u8() >= 192));
  const ModelLimits limits = small_limits();
  for (Handle &h : handles) h.lc.read(r, limits, 8, /*eager=*/false);
  std::vector<const winattn_layer *> stale;
  long foreign_storage[8] = {0};
  for (int step = 0; step < 12 && !r.done(); ++step) {
    const uint8_t op = r.u8();
    Handle &h = handles[op % handles.size()];
    switch ((op >> 1) % 9) {
      case 0:
        if (h.live) h.lc.check_again("again");
        break;
      case 1:
        if (h.live) {
          set_ctx("winattn_layer_destroy(%p)", static_cast<void *>(h.lc.layer));
          destroy_layer(h.lc.layer);
          h.live = false;
          stale.push_back(h.lc.layer);
        }
        break;
      case 2:
        if (!h.live) stale_call(h.lc.layer, r.u8(), &h.lc, "destroyed");
        break;
      case 3: {
        // Handles no create returned: inside a harness array, odd, one past a live layer, high addresses.
        const uintptr_t base = reinterpret_cast<uintptr_t>(h.lc.layer);
        const uintptr_t kForeign[] = {reinterpret_cast<uintptr_t>(&foreign_storage[1]),
                                      0x1,
                                      0x5EED,
                                      base + 1,
                                      base + 8,
                                      ~uintptr_t{0} - 7,
                                      uintptr_t{1} << 47};
        const uintptr_t a = kForeign[r.u8() % (sizeof kForeign / sizeof kForeign[0])];
        stale_call(reinterpret_cast<const winattn_layer *>(a), r.u8(), nullptr, "foreign");
        CHECK(foreign_storage[1] == 0, "a call wrote through a foreign handle");
        break;
      }
      case 4:
        if (h.live) set_layer_threads(h.lc.layer, read_thread_count(r));
        break;
      case 5:
        if (h.live) {
          set_ctx("winattn_layer_trim / memory_bytes(%s)", h.lc.m.describe().c_str());
          int64_t before = -1, after = -1;
          CHECK(winattn_layer_memory_bytes(h.lc.layer, &before) == WINATTN_STATUS_OK && before > 0,
                "memory_bytes = %lld", (long long)before);
          CHECK(winattn_layer_trim(h.lc.layer) == WINATTN_STATUS_OK, "trim failed");
          CHECK(winattn_layer_memory_bytes(h.lc.layer, &after) == WINATTN_STATUS_OK && after > 0 &&
                    after <= before,
                "memory_bytes after trim = %lld, before %lld", (long long)after, (long long)before);
        }
        break;
      case 6: {
        // NULL where a pointer is required.
        set_ctx("layer functions with NULL arguments");
        const std::string prev = last_msg();
        winattn_layer *live = h.live ? h.lc.layer : nullptr;
        check_status(winattn_layer_trim(nullptr), Expect::kFail, prev);
        check_status(winattn_layer_set_num_threads(nullptr, 1), Expect::kFail, prev);
        int n = -3;
        check_status(winattn_layer_get_num_threads(nullptr, &n), Expect::kFail, prev);
        CHECK(n == -3, "num_threads written");
        int64_t bytes = -3;
        check_status(winattn_layer_memory_bytes(nullptr, &bytes), Expect::kFail, prev);
        CHECK(bytes == -3, "bytes written");
        if (live) {
          check_status(winattn_layer_get_num_threads(live, nullptr), Expect::kFail, prev);
          check_status(winattn_layer_memory_bytes(live, nullptr), Expect::kFail, prev);
        }
        winattn_layer_destroy(nullptr);
        break;
      }
      case 7:
        // A new layer: its address may be one of a destroyed layer (then that handle is live again).
        if (!h.live) {
          h.lc = LayerCase();
          h.lc.read(r, limits, 8, /*eager=*/false);
          h.live = true;
        }
        break;
      default:
        for (const winattn_layer *s : stale) stale_call(s, r.u8(), nullptr, "destroyed");
        break;
    }
  }
  for (Handle &h : handles)
    if (h.live) destroy_layer(h.lc.layer);
  for (const winattn_layer *s : stale) stale_call(s, 5, nullptr, "destroyed");  // a second destroy: no-op
}

// ---- cache ------------------------------------------------------------------------------------------------
// The memory a shifted layer keeps, by the header: what memory_bytes reports after create, plus at most
// 7 * N * N floats of masks, plus a bounded number of projection plans. The harness allows each projection
// (qkv and proj) kPlansAllowed plans, each at most the size of the whole layer after create, which holds a
// full-chunk plan of both projections and their packed weights.
constexpr int64_t kPlansAllowed = 8;

void target_cache(Reader &r) {
  ModelLimits limits;
  limits.max_heads = 2;
  limits.max_head_dim = 4;
  limits.max_window = 7;
  limits.force_shift = true;
  LayerModel m;
  read_model(r, limits, m);
  set_ctx("layer_create(%s)", m.describe().c_str());
  winattn_layer *layer = create_layer(m);
  int64_t created = 0;
  CHECK(winattn_layer_memory_bytes(layer, &created) == WINATTN_STATUS_OK && created > 0,
        "memory_bytes = %lld", (long long)created);
  const int64_t masks = 7 * m.tokens * m.tokens * static_cast<int64_t>(sizeof(float));
  const int64_t bound = created + masks + 2 * kPlansAllowed * created;
  struct Call {
    int64_t batch, grid[3];
    std::vector<float> in, out;
  };
  std::vector<Call> calls;
  int64_t last_bytes = created;
  bool after_forward = false;  // the previous step was a forward (of calls.back())
  const int forwards = 1 + r.u8() % 10;
  for (int f = 0; f < forwards && !r.done(); ++f) {
    const uint8_t op = r.u8();
    if (op >= 224 && !calls.empty()) {
      // trim: back to what create left at most; later forwards give the same bits.
      set_ctx("winattn_layer_trim(%s)", m.describe().c_str());
      CHECK(winattn_layer_trim(layer) == WINATTN_STATUS_OK, "trim failed");
      int64_t bytes = 0;
      CHECK(winattn_layer_memory_bytes(layer, &bytes) == WINATTN_STATUS_OK, "memory_bytes failed");
      CHECK(bytes <= created, "after trim the layer holds %lld bytes, %lld after create", (long long)bytes,
            (long long)created);
      last_bytes = bytes;
      after_forward = false;
      continue;
    }
    Call c;
    // Repeating the last forward reuses its masks and plans: the layer must not grow. (An older one may
    // need a plan the LRU dropped since.)
    const bool repeat = op >= 192 && after_forward;
    if (repeat) {
      const Call &old = calls.back();
      c.batch = old.batch;
      std::memcpy(c.grid, old.grid, sizeof c.grid);
      c.in = old.in;
    } else {
      c.batch = 1 + op % 4;
      read_grid(r, m, 24, c.grid);
      fit_work(m, kSmallWork, &c.batch, c.grid);
      c.in.resize(activation_size(m, c.batch, c.grid));
      fill_plain(r, c.in.data(), c.in.size());
    }
    c.out.resize(c.in.size());
    set_ctx("layer_forward(%s, batch=%lld, grid={%lld,%lld,%lld}) forward %d of a shifted layer",
            m.describe().c_str(), (long long)c.batch, (long long)c.grid[0], (long long)c.grid[1],
            (long long)c.grid[2], f);
    const std::string prev = last_msg();
    check_status(winattn_layer_forward(layer, c.in.data(), c.batch, c.grid, c.out.data()), Expect::kOk, prev);
    int64_t bytes = 0;
    CHECK(winattn_layer_memory_bytes(layer, &bytes) == WINATTN_STATUS_OK, "memory_bytes failed");
    CHECK(bytes <= bound,
          "the layer holds %lld bytes: more than %lld after create + %lld of masks + %lld plans of at most "
          "%lld",
          (long long)bytes, (long long)created, (long long)masks, (long long)(2 * kPlansAllowed),
          (long long)created);
    if (repeat) {
      const Call &old = calls.back();
      CHECK(same_bits(c.out.data(), old.out.data(), c.out.size()), "a repeated forward gave other bits");
      CHECK(bytes <= last_bytes, "a repeated forward grew the layer from %lld to %lld bytes",
            (long long)last_bytes, (long long)bytes);
    } else {
      calls.push_back(std::move(c));
    }
    last_bytes = bytes;
    after_forward = true;
  }
  destroy_layer(layer);
}

// ---- concurrency ------------------------------------------------------------------------------------------
namespace {

// Worker threads kept for the whole run (creating threads per input would dominate its cost).
class Pool {
 public:
  static constexpr int kWorkers = 4;
  static Pool &get() {
    static Pool *pool = new Pool();  // never destroyed: its threads live as long as the process
    return *pool;
  }
  // Starts jobs[i] on worker i; wait() returns once all have finished.
  void start(std::vector<std::function<void()>> *jobs) {
    std::lock_guard<std::mutex> lock(mutex_);
    jobs_ = jobs;
    done_ = 0;
    ++generation_;
    cv_.notify_all();
  }
  void wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    done_cv_.wait(lock, [&] { return done_ == static_cast<int>(jobs_->size()); });
    jobs_ = nullptr;
  }

 private:
  Pool() {
    for (int i = 0; i < kWorkers; ++i) std::thread([this, i] { loop(i); }).detach();
  }
  void loop(int index) {
    uint64_t seen = 0;
    for (;;) {
      std::function<void()> *job = nullptr;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        if (jobs_ && index < static_cast<int>(jobs_->size())) job = &(*jobs_)[index];
      }
      if (!job) continue;
      (*job)();
      std::lock_guard<std::mutex> lock(mutex_);
      ++done_;
      done_cv_.notify_all();
    }
  }
  std::mutex mutex_;
  std::condition_variable cv_, done_cv_;
  std::vector<std::function<void()>> *jobs_ = nullptr;
  uint64_t generation_ = 0;
  int done_ = 0;
};

}  // namespace

void target_concurrency(Reader &r) {
  LayerCase base;
  base.read(r, small_limits(), 10);
  const int workers = 2 + r.u8() % (Pool::kWorkers - 1);
  // Each worker: its own batch and grid on the shared layer (references computed serially first), the
  // stateless layer, or a call that fails (its message must stay in its thread).
  struct Work {
    int kind = 0;  // 0 forward, 1 stateless, 2 failing forward
    int repeats = 1;
    int64_t batch = 1, grid[3] = {1, 1, 1};
    std::vector<float> in, expect, out;
    winattn_status status = WINATTN_STATUS_OK;
    bool same = true;
    std::string message;
  };
  std::vector<Work> work(static_cast<size_t>(workers));
  for (Work &w : work) {
    const uint8_t k = r.u8();
    w.kind = k < 160 ? 0 : k < 224 ? 1 : 2;
    w.repeats = 1 + k % 2;
    w.batch = 1 + r.u8() % 2;
    read_grid(r, base.m, 10, w.grid);
    fit_work(base.m, kSmallWork / 4, &w.batch, w.grid);
    w.in.resize(activation_size(base.m, w.batch, w.grid));
    fill(r, w.in.data(), w.in.size());
    w.expect.resize(w.in.size());
    w.out.resize(w.in.size());
    set_ctx("layer_forward(%s, batch=%lld, grid={%lld,%lld,%lld}) serial reference",
            base.m.describe().c_str(), (long long)w.batch, (long long)w.grid[0], (long long)w.grid[1],
            (long long)w.grid[2]);
    CHECK(
        winattn_layer_forward(base.layer, w.in.data(), w.batch, w.grid, w.expect.data()) == WINATTN_STATUS_OK,
        "failed");
  }
  std::vector<std::function<void()>> jobs;
  const winattn_layer *layer = base.layer;
  const LayerModel &m = base.m;
  for (Work &w : work) {
    jobs.emplace_back([&w, layer, &m] {
      for (int rep = 0; rep < w.repeats; ++rep) {
        if (w.kind == 2) {
          w.status = winattn_layer_forward(layer, w.in.data(), w.batch, w.grid, nullptr);
          w.message = winattn_last_error_message();
          return;
        }
        w.status = w.kind == 0 ? winattn_layer_forward(layer, w.in.data(), w.batch, w.grid, w.out.data())
                               : run_stateless(m, w.in.data(), w.batch, w.grid, w.out.data());
        if (w.status != WINATTN_STATUS_OK) return;
        w.same = w.same && same_bits(w.out.data(), w.expect.data(), w.out.size());
      }
    });
  }
  const std::string main_msg = last_msg();
  // Settings the main thread changes while the workers run (never the ISA cap: results depend on it).
  std::vector<uint8_t> disturb;
  const int changes = r.u8() % 6;
  for (int i = 0; i < changes; ++i) disturb.push_back(r.u8());
  set_ctx("concurrent forwards on one layer (%s), %d workers", m.describe().c_str(), workers);
  Pool::get().start(&jobs);
  for (uint8_t d : disturb) {
    switch (d % 5) {
      case 0:
        winattn_set_num_threads((d >> 3) % 5);
        break;
      case 1:
        winattn_layer_set_num_threads(base.layer, (d >> 3) % 4);
        break;
      case 2:
        winattn_layer_trim(base.layer);
        break;
      case 3: {
        int64_t bytes = 0;
        CHECK(winattn_layer_memory_bytes(base.layer, &bytes) == WINATTN_STATUS_OK && bytes > 0,
              "memory_bytes during forwards");
        break;
      }
      default:
        winattn_release_thread_memory();
        break;
    }
  }
  Pool::get().wait();
  for (size_t i = 0; i < work.size(); ++i) {
    const Work &w = work[i];
    if (w.kind == 2) {
      CHECK(w.status == WINATTN_STATUS_INVALID_ARGUMENT, "worker %zu: NULL output gave status %d", i,
            static_cast<int>(w.status));
      CHECK(!w.message.empty(), "worker %zu: failed without a message", i);
      continue;
    }
    CHECK(w.status == WINATTN_STATUS_OK, "worker %zu (%s): status %d", i,
          w.kind == 0 ? "forward" : "stateless", static_cast<int>(w.status));
    CHECK(w.same, "worker %zu (%s, grid {%lld,%lld,%lld}): result differs from the serial one", i,
          w.kind == 0 ? "forward" : "stateless", (long long)w.grid[0], (long long)w.grid[1],
          (long long)w.grid[2]);
  }
  CHECK(last_msg() == main_msg, "another thread's failure changed this thread's error message to \"%s\"",
        last_msg().c_str());
  destroy_layer(base.layer);
}

}  // namespace fz
