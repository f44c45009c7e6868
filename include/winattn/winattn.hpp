// Header-only C++17 wrapper over the C API (winattn.h): exceptions instead of status codes, std::vector
// results, and an RAII Layer. Everything here calls the C functions and adds no behaviour of its own.
#ifndef WINATTN_WINATTN_HPP_
#define WINATTN_WINATTN_HPP_

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "winattn/winattn.h"

namespace winattn {

// A failed call: the status and the library's message.
class Error : public std::runtime_error {
 public:
  Error(winattn_status status, const std::string &message)
      : std::runtime_error(std::string(winattn_status_string(status)) + ": " + message), status_(status) {}
  winattn_status status() const noexcept { return status_; }

 private:
  winattn_status status_;
};

// Throws Error when status is not WINATTN_STATUS_OK.
inline void check(winattn_status status) {
  if (status != WINATTN_STATUS_OK) throw Error(status, winattn_last_error_message());
}

inline std::string version() {
  return winattn_version();
}
inline std::string active_isa() {
  return winattn_active_isa();
}
inline void set_max_isa(const std::string &isa) {
  check(winattn_set_max_isa(isa.c_str()));
}
inline void set_num_threads(int num_threads) {
  check(winattn_set_num_threads(num_threads));
}

// [N][N] index of a window of 1..3 dimensions.
inline std::vector<int64_t> relative_position_index(const std::vector<int64_t> &window) {
  int64_t n = 1;
  for (int64_t w : window) n *= w > 0 ? w : 1;
  std::vector<int64_t> index(static_cast<size_t>(n * n));
  check(winattn_relative_position_index(static_cast<int>(window.size()), window.data(), index.data()));
  return index;
}

// [num_heads][n][n] bias looked up from a [table_rows][num_heads] table with an [n][n] index.
inline std::vector<float> relative_position_bias(const std::vector<float> &table, int64_t num_heads,
                                                 const std::vector<int64_t> &index, int64_t n) {
  if (num_heads <= 0 || table.size() % static_cast<size_t>(num_heads) != 0) {
    throw Error(WINATTN_STATUS_INVALID_ARGUMENT, "table size is not a multiple of num_heads");
  }
  if (n <= 0 || index.size() != static_cast<size_t>(n * n)) {
    throw Error(WINATTN_STATUS_INVALID_ARGUMENT, "index must have n*n entries");
  }
  std::vector<float> bias(static_cast<size_t>(num_heads * n * n));
  check(winattn_relative_position_bias(table.data(), static_cast<int64_t>(table.size()) / num_heads,
                                       num_heads, index.data(), n, bias.data()));
  return bias;
}

// [num_windows][N][N] shifted-window mask.
inline std::vector<float> shifted_window_mask(const std::array<int64_t, 3> &grid,
                                              const std::array<int64_t, 3> &window,
                                              const std::array<int64_t, 3> &shift) {
  int64_t windows = 1, n = 1;
  for (int d = 0; d < 3; ++d) {
    if (window[d] <= 0 || grid[d] <= 0)
      throw Error(WINATTN_STATUS_INVALID_ARGUMENT, "grid and window must be positive");
    windows *= grid[d] / window[d];
    n *= window[d];
  }
  std::vector<float> mask(static_cast<size_t>(windows * n * n));
  check(winattn_shifted_window_mask(grid.data(), window.data(), shift.data(), mask.data()));
  return mask;
}

// A prepacked layer. Movable, not copyable; forward is const and thread-safe.
class Layer {
 public:
  explicit Layer(const winattn_layer_desc &desc) { check(winattn_layer_create(&desc, &layer_)); }
  Layer(Layer &&other) noexcept : layer_(std::exchange(other.layer_, nullptr)) {}
  Layer &operator=(Layer &&other) noexcept {
    if (this != &other) {
      winattn_layer_destroy(layer_);
      layer_ = std::exchange(other.layer_, nullptr);
    }
    return *this;
  }
  Layer(const Layer &) = delete;
  Layer &operator=(const Layer &) = delete;
  ~Layer() { winattn_layer_destroy(layer_); }

  // input/output: [batch][grid[0]][grid[1]][grid[2]][channels].
  void forward(const float *input, int64_t batch, const std::array<int64_t, 3> &grid, float *output) const {
    check(winattn_layer_forward(layer_, input, batch, grid.data(), output));
  }
  const winattn_layer *get() const noexcept { return layer_; }

 private:
  winattn_layer *layer_ = nullptr;
};

}  // namespace winattn

#endif  // WINATTN_WINATTN_HPP_
