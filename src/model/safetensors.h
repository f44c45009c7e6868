// Weights in the safetensors format: a file read through a read-only memory mapping, or tensors the caller
// holds in memory, checked once and then described by TensorView records that point at their bytes.
//
// The format (https://huggingface.co/docs/safetensors): an 8-byte little-endian unsigned header length N, N
// bytes of UTF-8 JSON, then the data section. The JSON object maps each tensor name to
//   {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]}
// with offsets relative to the first byte of the data section, and may hold one "__metadata__" object of
// string values. Tensor data is little-endian and row-major.
//
// Everything a file says is checked against the file before any byte of tensor data is reached, and every
// failure throws Error: INVALID_ARGUMENT with a message that names the file (or source) and the problem,
// OUT_OF_MEMORY when memory runs out. What is checked:
//   - the 8-byte length field is present, N <= kMaxHeaderBytes and 8 + N <= the file size;
//   - the header is valid JSON (UTF-8, no trailing bytes other than whitespace) and a JSON object, with no
//     key repeated in any object of it (a repeated tensor name or field is refused, not silently resolved);
//   - each tensor entry is an object with a known "dtype" string, a "shape" array of at most kMaxDims
//     integers in [0, 2^63) and a "data_offsets" array of exactly two integers; other fields are ignored;
//   - the element count and the byte size (count * dtype size) do not overflow 64 bits, begin <= end <= the
//     size of the data section, and end - begin is exactly the byte size;
//   - no two tensors share a byte;
//   - "__metadata__", when present, is an object of string values.
// Gaps between tensors and unused bytes at the end of the data section are allowed (the format does not
// forbid them). Parsing is streaming (nlohmann::json's SAX interface): no JSON document is built, so memory
// stays proportional to the number of tensors, and nesting depth costs one bit per level.
//
// A file that another process truncates while it is mapped makes later reads of the vanished pages raise
// SIGBUS; the format gives no way to guard against that, so files being loaded must not be rewritten in
// place.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace winattn::detail {

// The element types of the format, named as in the file ("F32", "BF16", ...).
enum class DType : uint8_t {
  kBool,
  kU8,
  kI8,
  kF8E5M2,
  kF8E4M3,
  kI16,
  kU16,
  kF16,
  kBF16,
  kI32,
  kU32,
  kF32,
  kF64,
  kI64,
  kU64,
};

// Bytes per element (1, 2, 4 or 8); 0 for a value outside the enum.
size_t dtype_size(DType dtype);
// The name used in files ("F32"), or "unknown" for a value outside the enum.
const char *dtype_name(DType dtype);
// The dtype named `name` (case-sensitive, as in files); false when the name is not one of the format's.
bool parse_dtype(std::string_view name, DType *dtype);
// Whether to_f32 converts this dtype (F32, F16, BF16, F64).
bool converts_to_f32(DType dtype);

// One tensor, read-only. `data` points into the file mapping (or at the caller's memory) and is NOT
// necessarily aligned to the element size: read it with memcpy or convert it with to_f32.
struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;  // row-major; empty for a scalar
  int64_t numel = 0;           // product of shape (1 for a scalar)
  const unsigned char *data = nullptr;
  size_t nbytes = 0;    // numel * dtype_size(dtype)
  uint64_t offset = 0;  // files: begin offset in the data section; caller's tensors: 0
};

// A tensor in the caller's memory (the future winattn_model_create(const winattn_tensor *, count, ...) path).
struct ExternalTensor {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void *data = nullptr;  // numel * dtype_size(dtype) bytes; may be NULL when that is 0
};

class SafetensorsFile {
 public:
  // Headers larger than this are refused (the reference implementation's limit is 100 MB as well).
  static constexpr uint64_t kMaxHeaderBytes = uint64_t{100} << 20;
  static constexpr size_t kMaxDims = 8;

  // Opens, maps (read-only, private) and checks the file at `path`. A file that cannot be opened or mapped
  // is INVALID_ARGUMENT with the system's reason (OUT_OF_MEMORY when the system says it is out of memory).
  explicit SafetensorsFile(const std::string &path);

  // Describes tensors the caller holds: the same checks as a file's header, except the file bounds (names
  // unique and not "__metadata__", known dtypes, at most kMaxDims non-negative dimensions, sizes that do not
  // overflow, data not NULL unless empty, no two tensors sharing a byte). Nothing is copied: the caller's
  // memory must stay valid and unchanged while the object is used. `source` names them in messages.
  SafetensorsFile(const std::vector<ExternalTensor> &tensors, std::string source);

  // Checks `size` bytes at `bytes`, laid out as a file, without copying them: the caller keeps them alive
  // and unchanged while the object is used. `source` names them in messages. (Fuzzing and tests use this;
  // an exact-size heap buffer lets AddressSanitizer see any read past the end.)
  static SafetensorsFile from_memory(const void *bytes, size_t size, std::string source);

  SafetensorsFile(SafetensorsFile &&other) noexcept;
  SafetensorsFile &operator=(SafetensorsFile &&other) noexcept;
  SafetensorsFile(const SafetensorsFile &) = delete;
  SafetensorsFile &operator=(const SafetensorsFile &) = delete;
  ~SafetensorsFile();

  // The path, or the source name given.
  const std::string &source() const { return source_; }
  // Every tensor, sorted by name (byte-wise). The views stay valid as long as this object (also when it is
  // moved).
  const std::vector<TensorView> &tensors() const { return tensors_; }
  // The tensor called `name`, or nullptr.
  const TensorView *find(std::string_view name) const;
  // The tensor called `name`, or INVALID_ARGUMENT naming the source and the tensor.
  const TensorView &at(std::string_view name) const;
  // The "__metadata__" object (empty when absent or for caller's tensors).
  const std::map<std::string, std::string> &metadata() const { return metadata_; }
  // The header length N of a file (0 for caller's tensors) and the total size of the file or buffer.
  uint64_t header_bytes() const { return header_bytes_; }
  size_t total_bytes() const { return total_bytes_; }

 private:
  struct FromMemory {};
  SafetensorsFile(FromMemory, const void *bytes, size_t size, std::string source);
  void parse(const unsigned char *bytes, size_t size);
  void release() noexcept;

  std::string source_;
  std::vector<TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
  uint64_t header_bytes_ = 0;
  size_t total_bytes_ = 0;
  void *mapping_ = nullptr;  // owned mmap region (files only)
  size_t mapping_bytes_ = 0;
};

// Converts the tensor's numel elements to float32 into dst (numel floats, not overlapping the tensor) the way
// torch's .float() does: F32 copied, F16 and BF16 widened exactly (NaN payloads kept), F64 rounded to nearest
// even (out of range becomes +-inf). Any other dtype is INVALID_ARGUMENT naming the tensor.
void to_f32(const TensorView &tensor, float *dst);

}  // namespace winattn::detail
