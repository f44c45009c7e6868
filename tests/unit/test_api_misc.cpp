// Status strings, version, dispatch control, threading control and the per-thread error message.
#include "test_util.h"

#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <set>
#include <string>
#include <thread>

TEST_CASE("status strings are non-empty and distinct; unknown values say so") {
  const winattn_status all[] = {WINATTN_STATUS_OK, WINATTN_STATUS_INVALID_ARGUMENT,
                                WINATTN_STATUS_UNSUPPORTED, WINATTN_STATUS_OUT_OF_MEMORY,
                                WINATTN_STATUS_INTERNAL_ERROR};
  std::set<std::string> seen;
  for (winattn_status s : all) {
    const char *text = winattn_status_string(s);
    REQUIRE(text != nullptr);
    CHECK(std::string(text).size() > 0);
    CHECK(std::string(text) != "unknown status");
    seen.insert(text);
  }
  CHECK(seen.size() == 5);
  CHECK(std::string(winattn_status_string(WINATTN_STATUS_INVALID_ARGUMENT)) == "invalid argument");
  for (int bogus : {5, 99, -1, 1 << 30}) {
    const char *text = winattn_status_string(static_cast<winattn_status>(bogus));
    REQUIRE(text != nullptr);
    CHECK(std::string(text) == "unknown status");
  }
}

TEST_CASE("version is MAJOR.MINOR.PATCH and matches the header macros") {
  const char *version = winattn_version();
  REQUIRE(version != nullptr);
  int major = -1, minor = -1, patch = -1;
  char tail = 0;
  REQUIRE(std::sscanf(version, "%d.%d.%d%c", &major, &minor, &patch, &tail) == 3);
  CHECK(major == WINATTN_VERSION_MAJOR);
  CHECK(minor == WINATTN_VERSION_MINOR);
  CHECK(patch == WINATTN_VERSION_PATCH);
  CHECK(std::string(version) ==
        std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch));
}

TEST_CASE("dispatch: active ISA is a known name, caps are honoured, bad names rejected") {
  wt::DispatchGuard guard;
  const std::set<std::string> known = {"amx_bf16", "avx512_bf16", "avx512", "avx2", "scalar"};
  REQUIRE(winattn_set_max_isa("native") == WINATTN_STATUS_OK);
  const std::string native = winattn_active_isa();
  CHECK(known.count(native) == 1);
  const auto isas = wt::available_isas();
  REQUIRE(!isas.empty());
  CHECK(isas.front() == native);  // "native" picks the best the CPU has
  CHECK(isas.back() == "scalar");
  // Every name is accepted; a cap above what the CPU has selects the best it has (never above the cap).
  const char *order[] = {"amx_bf16", "avx512_bf16", "avx512", "avx2", "scalar"};
  for (int i = 0; i < 5; ++i) {
    REQUIRE(winattn_set_max_isa(order[i]) == WINATTN_STATUS_OK);
    const std::string active = winattn_active_isa();
    int active_rank = -1;
    for (int j = 0; j < 5; ++j)
      if (active == order[j]) active_rank = j;
    CAPTURE(order[i]);
    CHECK(active_rank >= i);
  }
  REQUIRE(winattn_set_max_isa("scalar") == WINATTN_STATUS_OK);
  for (const char *bad : {"bogus", "", "AVX-512", "native "}) {
    CAPTURE(bad);
    CHECK(winattn_set_max_isa(bad) == WINATTN_STATUS_INVALID_ARGUMENT);
    CHECK(std::string(winattn_last_error_message()).size() > 0);
    CHECK(std::string(winattn_active_isa()) == "scalar");  // unchanged by a rejected call
  }
  CHECK(winattn_set_max_isa(nullptr) == WINATTN_STATUS_INVALID_ARGUMENT);
  CHECK(std::string(winattn_last_error_message()).size() > 0);
  REQUIRE(winattn_set_max_isa("native") == WINATTN_STATUS_OK);
  CHECK(std::string(winattn_active_isa()) == native);
}

// ctest runs this file again with WINATTN_MAX_ISA set (to avx2, and to an unknown name): the environment's
// cap is hard, "native" does not lift it, and an unknown name is ignored (and reported on stderr).
TEST_CASE("dispatch: WINATTN_MAX_ISA is a hard cap") {
  wt::DispatchGuard guard;
  const char *env = std::getenv("WINATTN_MAX_ISA");
  if (env == nullptr) return;
  const std::vector<std::string> order = {"amx_bf16", "avx512_bf16", "avx512", "avx2", "scalar"};
  auto rank = [&](const std::string &name) {
    return static_cast<int>(std::find(order.begin(), order.end(), name) - order.begin());
  };
  REQUIRE(winattn_set_max_isa("native") == WINATTN_STATUS_OK);
  const std::string native = winattn_active_isa();
  if (rank(env) < static_cast<int>(order.size())) {
    CHECK(rank(native) >= rank(env));  // never above the environment's cap
    for (const std::string &name : order) {
      REQUIRE(winattn_set_max_isa(name.c_str()) == WINATTN_STATUS_OK);
      CHECK(rank(winattn_active_isa()) >= rank(env));
    }
  } else {
    CHECK(rank(native) < static_cast<int>(order.size()));  // unknown: ignored, the CPU's best is used
  }
}

TEST_CASE("threads: set/get round trip, negatives rejected") {
  wt::DispatchGuard guard;
  CHECK(winattn_get_num_threads() == 0);
  for (int n : {1, 2, 3, 64, 0}) {
    REQUIRE(winattn_set_num_threads(n) == WINATTN_STATUS_OK);
    CHECK(winattn_get_num_threads() == n);
  }
  REQUIRE(winattn_set_num_threads(2) == WINATTN_STATUS_OK);
  CHECK(winattn_set_num_threads(-1) == WINATTN_STATUS_INVALID_ARGUMENT);
  CHECK(std::string(winattn_last_error_message()).size() > 0);
  CHECK(winattn_set_num_threads(-1000) == WINATTN_STATUS_INVALID_ARGUMENT);
  CHECK(winattn_get_num_threads() == 2);  // unchanged
}

TEST_CASE("last error message: empty on a fresh thread, per thread, kept after success") {
  std::string fresh = "x";
  std::thread([&] { fresh = winattn_last_error_message(); }).join();
  CHECK(fresh.empty());

  // Fail on this thread; another thread still sees "" and its own failure does not change ours.
  REQUIRE(winattn_set_max_isa("bogus") == WINATTN_STATUS_INVALID_ARGUMENT);
  const std::string mine = winattn_last_error_message();
  CHECK(!mine.empty());
  std::string other_before = "x", other_after;
  std::thread([&] {
    other_before = winattn_last_error_message();
    winattn_set_num_threads(-5);
    other_after = winattn_last_error_message();
  }).join();
  CHECK(other_before.empty());
  CHECK(!other_after.empty());
  CHECK(std::string(winattn_last_error_message()) == mine);

  // A successful call does not clear it.
  const int64_t window[2] = {2, 2};
  int64_t index[16];
  REQUIRE(winattn_relative_position_index(2, window, index) == WINATTN_STATUS_OK);
  CHECK(std::string(winattn_last_error_message()) == mine);

  // The message names the offending argument.
  const int64_t bad[2] = {2, 0};
  REQUIRE(winattn_relative_position_index(2, bad, index) == WINATTN_STATUS_INVALID_ARGUMENT);
  const std::string message = winattn_last_error_message();
  CHECK(message.find("window") != std::string::npos);
  winattn_set_max_isa("native");
}

TEST_CASE("concurrent calls from several threads give the same results") {
  // The functions may be called concurrently: run the same attention on 4 threads and compare bits.
  wt::Rng rng(201);
  const int64_t W = 3, H = 2, n = 49, d = 32;
  const auto q = rng.vec(W * H * n * d), k = rng.vec(W * H * n * d), v = rng.vec(W * H * n * d);
  std::vector<float> reference(q.size());
  REQUIRE(winattn_window_attention(W, H, n, d, q.data(), k.data(), v.data(), 0.2f, nullptr, nullptr, 0,
                                   reference.data()) == WINATTN_STATUS_OK);
  std::vector<std::vector<float>> outs(4, std::vector<float>(q.size()));
  std::vector<int> status(4, -1);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 5; ++rep)
        status[t] = winattn_window_attention(W, H, n, d, q.data(), k.data(), v.data(), 0.2f, nullptr, nullptr,
                                             0, outs[t].data());
    });
  for (auto &t : threads) t.join();
  for (int t = 0; t < 4; ++t) {
    CHECK(status[t] == WINATTN_STATUS_OK);
    CHECK(std::memcmp(outs[t].data(), reference.data(), reference.size() * sizeof(float)) == 0);
  }
}
