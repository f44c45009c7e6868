// Serving limits (issue 13): bounded thread counts, per-layer thread budgets, bounded layer memory, trim,
// thread scratch release, and out overlapping bias or mask rejected.
#include "test_util.h"

#include <dirent.h>

#include <atomic>
#include <cmath>
#include <thread>
#include <vector>

namespace {

winattn_layer *make_layer(wt::Rng &rng, int64_t channels, int64_t heads, int64_t window, int64_t shift,
                          std::vector<float> *storage) {
  const int64_t rows = (2 * window - 1) * (2 * window - 1);
  storage->clear();
  const auto qkv = rng.vec(3 * channels * channels, -0.3f, 0.3f);
  const auto proj = rng.vec(channels * channels, -0.3f, 0.3f);
  const auto table = rng.vec(rows * heads, -1.0f, 1.0f);
  winattn_layer_desc desc = {};
  desc.channels = channels;
  desc.num_heads = heads;
  desc.window[0] = 1;
  desc.window[1] = desc.window[2] = window;
  desc.shift[1] = desc.shift[2] = shift;
  desc.qkv_weight = qkv.data();
  desc.proj_weight = proj.data();
  desc.relative_position_bias_table = table.data();
  winattn_layer *layer = nullptr;
  REQUIRE(winattn_layer_create(&desc, &layer) == WINATTN_STATUS_OK);
  return layer;
}

int os_threads() {
  int count = 0;
  if (DIR *dir = opendir("/proc/self/task")) {
    while (dirent *entry = readdir(dir))
      if (entry->d_name[0] != '.') ++count;
    closedir(dir);
  }
  return count;
}

}  // namespace

TEST_CASE("threads: counts above WINATTN_MAX_THREADS rejected, the bound itself works") {
  wt::DispatchGuard guard;
  for (int bad : {WINATTN_MAX_THREADS + 1, 2000, 100000, -1}) {
    CAPTURE(bad);
    CHECK(winattn_set_num_threads(bad) == WINATTN_STATUS_INVALID_ARGUMENT);
    CHECK(std::string(winattn_last_error_message()).find("num_threads") != std::string::npos);
  }
  CHECK(winattn_get_num_threads() == 0);
  // At the bound, small calls run serially and larger ones start no more threads than they have work.
  REQUIRE(winattn_set_num_threads(WINATTN_MAX_THREADS) == WINATTN_STATUS_OK);
  const int64_t window[2] = {7, 7};
  std::vector<int64_t> index(49 * 49);
  CHECK(winattn_relative_position_index(2, window, index.data()) == WINATTN_STATUS_OK);
  wt::Rng rng(3);
  const auto table = rng.vec(13 * 13 * 3);
  std::vector<float> bias(3 * 49 * 49);
  const int before = os_threads();
  CHECK(winattn_relative_position_bias(table.data(), 169, 3, index.data(), 49, bias.data()) == WINATTN_STATUS_OK);
  const auto q = rng.vec(2 * 3 * 49 * 32);
  std::vector<float> out(q.size());
  CHECK(winattn_window_attention(2, 3, 49, 32, q.data(), q.data(), q.data(), 0.2f, bias.data(), nullptr, 0,
                                 out.data()) == WINATTN_STATUS_OK);
  CHECK(os_threads() <= before + 6);  // 6 (window, head) items: at most 5 more threads
}

TEST_CASE("window_attention: out overlapping bias or mask is rejected, nothing written") {
  const int64_t n = 4, d = 4, heads = 2, windows = 2;
  wt::Rng rng(5);
  const auto q = rng.vec(windows * heads * n * d);
  // One buffer holding out and, inside it, the bias or mask.
  for (int which = 0; which < 2; ++which) {
    CAPTURE(which);
    auto buffer = wt::sentinel_buffer<float>(q.size() + 64);
    float *out = buffer.data();
    const float *terms = buffer.data() + 8;  // overlaps out
    const winattn_status status =
        which == 0 ? winattn_window_attention(windows, heads, n, d, q.data(), q.data(), q.data(), 1.0f, terms,
                                              nullptr, 0, out)
                   : winattn_window_attention(windows, heads, n, d, q.data(), q.data(), q.data(), 1.0f, nullptr,
                                              terms, 1, out);
    CHECK(status == WINATTN_STATUS_INVALID_ARGUMENT);
    CHECK(std::string(winattn_last_error_message()).find(which == 0 ? "bias" : "mask") != std::string::npos);
    CHECK(wt::is_sentinel(buffer));
  }
}

TEST_CASE("layer: thread budget round trip, bounds, and the same bits for every budget") {
  wt::Rng rng(11);
  std::vector<float> storage;
  winattn_layer *layer = make_layer(rng, 32, 2, 7, 3, &storage);
  int threads = -1;
  CHECK(winattn_layer_get_num_threads(layer, &threads) == WINATTN_STATUS_OK);
  CHECK(threads == 0);
  for (int bad : {-1, WINATTN_MAX_THREADS + 1}) {
    CHECK(winattn_layer_set_num_threads(layer, bad) == WINATTN_STATUS_INVALID_ARGUMENT);
  }
  CHECK(winattn_layer_get_num_threads(layer, nullptr) == WINATTN_STATUS_INVALID_ARGUMENT);
  CHECK(winattn_layer_set_num_threads(nullptr, 1) == WINATTN_STATUS_INVALID_ARGUMENT);
  const int64_t grid[3] = {1, 30, 23};
  const auto input = rng.vec(2 * 30 * 23 * 32);
  std::vector<float> first(input.size()), again(input.size());
  REQUIRE(winattn_layer_forward(layer, input.data(), 2, grid, first.data()) == WINATTN_STATUS_OK);
  for (int budget : {1, 2, 3, 0}) {
    CAPTURE(budget);
    REQUIRE(winattn_layer_set_num_threads(layer, budget) == WINATTN_STATUS_OK);
    CHECK(winattn_layer_get_num_threads(layer, &threads) == WINATTN_STATUS_OK);
    CHECK(threads == budget);
    REQUIRE(winattn_layer_forward(layer, input.data(), 2, grid, again.data()) == WINATTN_STATUS_OK);
    CHECK(std::memcmp(first.data(), again.data(), first.size() * sizeof(float)) == 0);
  }
  winattn_layer_destroy(layer);
  CHECK(winattn_layer_set_num_threads(layer, 1) == WINATTN_STATUS_INVALID_ARGUMENT);  // destroyed
}

TEST_CASE("layer: N concurrent callers with a budget of 1 start no other threads") {
  wt::DispatchGuard guard;
  REQUIRE(winattn_set_num_threads(8) == WINATTN_STATUS_OK);  // a process default that would oversubscribe
  wt::Rng rng(12);
  std::vector<float> storage;
  winattn_layer *layer = make_layer(rng, 32, 2, 7, 3, &storage);
  REQUIRE(winattn_layer_set_num_threads(layer, 1) == WINATTN_STATUS_OK);
  const int64_t grid[3] = {1, 28, 28};
  const auto input = rng.vec(28 * 28 * 32);
  constexpr int kCallers = 4;
  const int before = os_threads();
  std::atomic<int> peak{0}, running{0};
  std::atomic<bool> ok{true};
  std::vector<std::thread> callers;
  for (int t = 0; t < kCallers; ++t) {
    callers.emplace_back([&] {
      std::vector<float> out(input.size());
      running.fetch_add(1);
      for (int i = 0; i < 20; ++i) {
        if (winattn_layer_forward(layer, input.data(), 1, grid, out.data()) != WINATTN_STATUS_OK) ok = false;
        int now = os_threads();
        int seen = peak.load();
        while (now > seen && !peak.compare_exchange_weak(seen, now)) {
        }
      }
    });
  }
  for (auto &caller : callers) caller.join();
  CHECK(ok.load());
  CHECK(peak.load() <= before + kCallers);
  winattn_layer_destroy(layer);
}

TEST_CASE("layer: memory stays bounded over many distinct grids; trim frees the masks") {
  wt::Rng rng(13);
  std::vector<float> storage;
  winattn_layer *layer = make_layer(rng, 16, 2, 7, 3, &storage);
  int64_t created = 0, bytes = 0;
  REQUIRE(winattn_layer_memory_bytes(layer, &created) == WINATTN_STATUS_OK);
  CHECK(created > 0);
  CHECK(winattn_layer_memory_bytes(layer, nullptr) == WINATTN_STATUS_INVALID_ARGUMENT);
  // The masks of a shifted layer: at most 7 [N][N] float matrices, whatever the grids.
  const int64_t ceiling = created + 7 * 49 * 49 * 4 + (int64_t{4} << 20);  // + plans for unusual row counts
  std::vector<float> out;
  for (int64_t h = 8; h < 40; ++h) {
    const int64_t grid[3] = {1, h, 3 * h % 37 + 8};
    const auto input = rng.vec(static_cast<size_t>(h * grid[2] * 16));
    out.resize(input.size());
    REQUIRE(winattn_layer_forward(layer, input.data(), 1, grid, out.data()) == WINATTN_STATUS_OK);
    REQUIRE(winattn_layer_memory_bytes(layer, &bytes) == WINATTN_STATUS_OK);
    CHECK(bytes <= ceiling);
  }
  const int64_t grid[3] = {1, 21, 17};
  const auto input = rng.vec(21 * 17 * 16);
  std::vector<float> before(input.size()), after(input.size());
  REQUIRE(winattn_layer_forward(layer, input.data(), 1, grid, before.data()) == WINATTN_STATUS_OK);
  CHECK(winattn_layer_trim(layer) == WINATTN_STATUS_OK);
  REQUIRE(winattn_layer_memory_bytes(layer, &bytes) == WINATTN_STATUS_OK);
  CHECK(bytes <= created);
  REQUIRE(winattn_layer_forward(layer, input.data(), 1, grid, after.data()) == WINATTN_STATUS_OK);
  CHECK(std::memcmp(before.data(), after.data(), before.size() * sizeof(float)) == 0);
  CHECK(winattn_layer_trim(nullptr) == WINATTN_STATUS_INVALID_ARGUMENT);
  winattn_layer_destroy(layer);
}

TEST_CASE("thread scratch: released on demand, and not kept after a large call") {
  // A large call (about 40 MiB of scratch), then the same call again: both correct; release is callable
  // at any time, also with nothing to release.
  winattn_release_thread_memory();
  const int64_t n = 392, d = 32, heads = 4, windows = 8;
  wt::Rng rng(17);
  const auto q = rng.vec(windows * heads * n * d);
  const auto mask = rng.vec(windows * n * n, -1.0f, 0.0f);
  std::vector<float> a(q.size()), b(q.size());
  REQUIRE(winattn_window_attention(windows, heads, n, d, q.data(), q.data(), q.data(), 0.1f, nullptr,
                                   mask.data(), windows, a.data()) == WINATTN_STATUS_OK);
  winattn_release_thread_memory();
  winattn_release_thread_memory();
  REQUIRE(winattn_window_attention(windows, heads, n, d, q.data(), q.data(), q.data(), 0.1f, nullptr,
                                   mask.data(), windows, b.data()) == WINATTN_STATUS_OK);
  CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}
