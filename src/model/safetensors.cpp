#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <new>
#include <system_error>
#include <utility>

#include <nlohmann/json.hpp>

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors data is little-endian and is read in place: a little-endian host is assumed");

namespace winattn::detail {
namespace {

struct DTypeInfo {
  DType dtype;
  const char *name;
  size_t size;
};

// Every dtype of the format, in the order of the enum.
constexpr DTypeInfo kDTypes[] = {
    {DType::kBool, "BOOL", 1},      {DType::kU8, "U8", 1},          {DType::kI8, "I8", 1},
    {DType::kF8E5M2, "F8_E5M2", 1}, {DType::kF8E4M3, "F8_E4M3", 1}, {DType::kI16, "I16", 2},
    {DType::kU16, "U16", 2},        {DType::kF16, "F16", 2},        {DType::kBF16, "BF16", 2},
    {DType::kI32, "I32", 4},        {DType::kU32, "U32", 4},        {DType::kF32, "F32", 4},
    {DType::kF64, "F64", 8},        {DType::kI64, "I64", 8},        {DType::kU64, "U64", 8},
};
constexpr size_t kNumDTypes = sizeof kDTypes / sizeof kDTypes[0];

constexpr bool dtypes_in_enum_order() {
  for (size_t i = 0; i < kNumDTypes; ++i) {
    if (static_cast<size_t>(kDTypes[i].dtype) != i) return false;
  }
  return true;
}
static_assert(dtypes_in_enum_order(), "kDTypes is indexed by the enum value");

const DTypeInfo *dtype_info(DType dtype) {
  const auto index = static_cast<size_t>(dtype);
  return index < kNumDTypes ? &kDTypes[index] : nullptr;
}

// Longest piece of a name or token from the file that goes into a message.
constexpr size_t kMaxQuoted = 96;

// `text` in double quotes for a message: control bytes, quotes and backslashes escaped, cut (at a UTF-8
// character boundary) after kMaxQuoted bytes. Names from a hostile file can be megabytes long.
std::string quote(std::string_view text) {
  size_t length = text.size();
  bool cut = false;
  if (length > kMaxQuoted) {
    length = kMaxQuoted;
    while (length > 0 && (static_cast<unsigned char>(text[length]) & 0xC0) == 0x80) --length;
    cut = true;
  }
  std::string out = "\"";
  for (size_t i = 0; i < length; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7F) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", c);
      out += escaped;
    } else {
      out += static_cast<char>(c);
    }
  }
  out += cut ? "\"..." : "\"";
  return out;
}

std::string shape_string(const std::vector<int64_t> &shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

[[noreturn]] void fail(const std::string &source, const std::string &what) {
  throw Error(WINATTN_STATUS_INVALID_ARGUMENT, source + ": " + what);
}

// Element count and byte size of a shape, or false (with the reason in *why) when either leaves int64.
bool tensor_size(DType dtype, const std::vector<int64_t> &shape, int64_t *numel, uint64_t *nbytes,
                 std::string *why) {
  // A zero anywhere makes the tensor empty, whatever the other entries (the answer must not depend on order).
  const bool empty = std::find(shape.begin(), shape.end(), int64_t{0}) != shape.end();
  int64_t count = empty ? 0 : 1;
  for (int64_t dim : shape) {
    if (!empty && __builtin_mul_overflow(count, dim, &count)) {
      *why = "shape " + shape_string(shape) + " has more elements than fit in 64 bits";
      return false;
    }
  }
  int64_t bytes = 0;
  if (__builtin_mul_overflow(count, static_cast<int64_t>(dtype_size(dtype)), &bytes)) {
    *why = "shape " + shape_string(shape) + " of dtype " + dtype_name(dtype) +
           " is more bytes than fit in 64 bits";
    return false;
  }
  *numel = count;
  *nbytes = static_cast<uint64_t>(bytes);
  return true;
}

// Sorts by name, then refuses repeated names and tensors sharing a byte. `in_file`: the ranges are offsets in
// a data section (else addresses of the caller's memory).
void sort_and_check(std::vector<TensorView> &tensors, const std::string &source, bool in_file) {
  std::sort(tensors.begin(), tensors.end(),
            [](const TensorView &a, const TensorView &b) { return a.name < b.name; });
  for (size_t i = 1; i < tensors.size(); ++i) {
    if (tensors[i].name == tensors[i - 1].name) {
      fail(source, "tensor " + quote(tensors[i].name) + " appears more than once");
    }
  }
  auto begin_of = [](const TensorView &t) { return reinterpret_cast<uintptr_t>(t.data); };
  std::vector<const TensorView *> order;
  order.reserve(tensors.size());
  for (const TensorView &t : tensors) {
    if (t.nbytes > 0) order.push_back(&t);
  }
  std::sort(order.begin(), order.end(), [&](const TensorView *a, const TensorView *b) {
    return begin_of(*a) != begin_of(*b) ? begin_of(*a) < begin_of(*b) : a->nbytes < b->nbytes;
  });
  const TensorView *reach = nullptr;  // the tensor, among those before, whose bytes end last
  for (const TensorView *t : order) {
    if (reach != nullptr && begin_of(*t) < begin_of(*reach) + reach->nbytes) {
      auto range = [&](const TensorView &v) {
        char text[96];
        if (in_file) {
          std::snprintf(text, sizeof text, "bytes [%" PRIu64 ", %" PRIu64 ")", v.offset,
                        v.offset + static_cast<uint64_t>(v.nbytes));
        } else {
          std::snprintf(text, sizeof text, "memory [%p, %p)", static_cast<const void *>(v.data),
                        static_cast<const void *>(v.data + v.nbytes));
        }
        return std::string(text);
      };
      fail(source, "tensors " + quote(reach->name) + " (" + range(*reach) + ") and " + quote(t->name) + " (" +
                       range(*t) + ") overlap");
    }
    if (reach == nullptr || begin_of(*t) + t->nbytes > begin_of(*reach) + reach->nbytes) reach = t;
  }
}

// The header's JSON, read as a stream of SAX events into TensorView records and the metadata map. Any problem
// is recorded in error() and stops the parse (the handler returns false); nothing is thrown through the
// parser except std::bad_alloc.
class HeaderReader final : public nlohmann::json_sax<nlohmann::json> {
 public:
  HeaderReader(const unsigned char *data, uint64_t data_bytes, std::vector<TensorView> *tensors,
               std::map<std::string, std::string> *metadata)
      : data_(data), data_bytes_(data_bytes), tensors_(tensors), metadata_(metadata) {}

  const std::string &error() const { return error_; }

  bool null() override { return scalar("null"); }
  bool boolean(bool value) override { return scalar(value ? "true" : "false"); }
  bool number_integer(number_integer_t value) override {
    if (value >= 0) return number_unsigned(static_cast<number_unsigned_t>(value));  // "-0"
    return scalar(std::to_string(value), /*negative=*/true);
  }
  bool number_unsigned(number_unsigned_t value) override {
    if (state_ == State::kShape) {
      if (entry_.shape.size() == SafetensorsFile::kMaxDims) {
        return entry_fail("shape has more than " + std::to_string(SafetensorsFile::kMaxDims) + " dimensions");
      }
      if (value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return entry_fail("shape entry " + std::to_string(value) + " is larger than 2^63-1");
      }
      entry_.shape.push_back(static_cast<int64_t>(value));
      return true;
    }
    if (state_ == State::kOffsets) {
      if (offset_count_ == 2) return entry_fail("data_offsets has more than 2 entries");
      offsets_[offset_count_++] = value;
      return true;
    }
    return scalar(std::to_string(value));
  }
  bool number_float(number_float_t, const string_t &text) override { return scalar(text); }
  bool binary(binary_t &) override { return scalar("binary"); }

  bool string(string_t &value) override {
    switch (state_) {
      case State::kMetadataValue:
        (*metadata_)[meta_key_] = std::move(value);
        state_ = State::kMetadata;
        return true;
      case State::kEntryValue:
        if (field_ == Field::kDType) {
          if (!parse_dtype(value, &entry_.dtype)) return entry_fail("unknown dtype " + quote(value));
          state_ = State::kEntry;
          return true;
        }
        if (field_ == Field::kOther) {
          state_ = State::kEntry;
          return true;
        }
        return scalar(quote(value));
      case State::kSkip:
        return true;
      default:
        return scalar(quote(value));
    }
  }

  bool start_object(std::size_t) override {
    switch (state_) {
      case State::kStart:
        state_ = State::kTop;
        return true;
      case State::kTopValue:
        if (in_metadata_) {
          state_ = State::kMetadata;
        } else {
          entry_ = TensorView{};
          entry_.name = std::move(name_);
          seen_fields_ = 0;
          offset_count_ = 0;
          state_ = State::kEntry;
        }
        return true;
      case State::kEntryValue:
        if (field_ == Field::kOther) return skip_container();
        return wrong_type("an object");
      case State::kSkip:
        ++skip_depth_;
        return true;
      default:
        return wrong_type("an object");
    }
  }

  bool start_array(std::size_t) override {
    switch (state_) {
      case State::kEntryValue:
        if (field_ == Field::kShape) {
          state_ = State::kShape;
          return true;
        }
        if (field_ == Field::kOffsets) {
          state_ = State::kOffsets;
          return true;
        }
        if (field_ == Field::kOther) return skip_container();
        return wrong_type("an array");
      case State::kSkip:
        ++skip_depth_;
        return true;
      default:
        return wrong_type("an array");
    }
  }

  bool key(string_t &key) override {
    switch (state_) {
      case State::kTop:
        if (key == "__metadata__") {
          if (seen_metadata_) return fail_with("\"__metadata__\" appears more than once");
          seen_metadata_ = true;
          in_metadata_ = true;
        } else {
          in_metadata_ = false;
          name_ = std::move(key);
        }
        state_ = State::kTopValue;
        return true;
      case State::kMetadata:
        if (metadata_->count(key) != 0) {
          return fail_with("\"__metadata__\": key " + quote(key) + " appears more than once");
        }
        meta_key_ = std::move(key);
        state_ = State::kMetadataValue;
        return true;
      case State::kEntry: {
        field_ = key == "dtype"          ? Field::kDType
                 : key == "shape"        ? Field::kShape
                 : key == "data_offsets" ? Field::kOffsets
                                         : Field::kOther;
        if (field_ != Field::kOther) {
          const unsigned bit = 1u << static_cast<unsigned>(field_);
          if ((seen_fields_ & bit) != 0) return entry_fail("field " + quote(key) + " appears more than once");
          seen_fields_ |= bit;
        }
        state_ = State::kEntryValue;
        return true;
      }
      case State::kSkip:
        return true;
      default:
        return fail_with("unexpected key " +
                         quote(key));  // not reached: the parser sends keys in objects only
    }
  }

  bool end_object() override {
    switch (state_) {
      case State::kTop:
        state_ = State::kDone;
        return true;
      case State::kMetadata:
        state_ = State::kTop;
        return true;
      case State::kEntry:
        state_ = State::kTop;
        return finish_entry();
      case State::kSkip:
        return end_skipped();
      default:
        return fail_with("unexpected end of an object");  // not reached
    }
  }

  bool end_array() override {
    switch (state_) {
      case State::kShape:
        state_ = State::kEntry;
        return true;
      case State::kOffsets:
        if (offset_count_ != 2) {
          return entry_fail("data_offsets has " + std::to_string(offset_count_) + " entries, expected 2");
        }
        state_ = State::kEntry;
        return true;
      case State::kSkip:
        return end_skipped();
      default:
        return fail_with("unexpected end of an array");  // not reached
    }
  }

  bool parse_error(std::size_t, const std::string &, const nlohmann::detail::exception &ex) override {
    // what() is "[json.exception.parse_error.101] parse error at line 1, column 7: ..."; keep what follows
    // the bracket.
    std::string what = ex.what();
    const size_t bracket = what.find("] ");
    if (what.rfind("[json.exception.", 0) == 0 && bracket != std::string::npos) what.erase(0, bracket + 2);
    if (what.size() > 2 * kMaxQuoted) what = what.substr(0, 2 * kMaxQuoted) + "...";
    return fail_with("header is not valid JSON: " + what);
  }

 private:
  enum class State {
    kStart,          // before the root value
    kTop,            // in the root object: a key or its end
    kTopValue,       // after a root key: the entry or "__metadata__" object
    kMetadata,       // in "__metadata__": a key or its end
    kMetadataValue,  // after a "__metadata__" key: a string
    kEntry,          // in a tensor entry: a field name or its end
    kEntryValue,     // after a field name: its value
    kShape,          // in "shape"
    kOffsets,        // in "data_offsets"
    kSkip,           // in the value of a field this reader does not use
    kDone,           // after the root object
  };
  enum class Field : unsigned { kDType = 0, kShape = 1, kOffsets = 2, kOther = 3 };

  bool fail_with(std::string message) {
    error_ = std::move(message);
    return false;
  }
  bool entry_fail(const std::string &what) { return fail_with("tensor " + quote(entry_.name) + ": " + what); }

  const char *field_name() const {
    return field_ == Field::kDType ? "dtype" : field_ == Field::kShape ? "shape" : "data_offsets";
  }

  // A value (scalar, object or array) of a kind this state does not take. `kind` says what was found.
  bool wrong_type(const std::string &kind) {
    switch (state_) {
      case State::kStart:
        return fail_with("header is not a JSON object (it is " + kind + ")");
      case State::kTopValue:
        if (in_metadata_) return fail_with("\"__metadata__\" is not an object (it is " + kind + ")");
        return fail_with("tensor " + quote(name_) + ": entry is not an object (it is " + kind + ")");
      case State::kMetadataValue:
        return fail_with("\"__metadata__\": the value of " + quote(meta_key_) + " is not a string (it is " +
                         kind + ")");
      case State::kEntryValue:
        return entry_fail(std::string(field_name()) + " is not " +
                          (field_ == Field::kDType ? "a string" : "an array") + " (it is " + kind + ")");
      case State::kShape:
        return entry_fail("shape entry is not a non-negative integer (it is " + kind + ")");
      case State::kOffsets:
        return entry_fail("data_offsets entry is not a non-negative integer (it is " + kind + ")");
      default:
        return fail_with("unexpected " + kind);  // not reached
    }
  }

  // A scalar other than a string, or a string where none belongs. `negative`: a negative integer.
  bool scalar(const std::string &text, bool negative = false) {
    switch (state_) {
      case State::kEntryValue:
        if (field_ == Field::kOther) {
          state_ = State::kEntry;
          return true;
        }
        return wrong_type(text);
      case State::kSkip:
        return true;
      case State::kShape:
        if (negative) return entry_fail("shape entry " + text + " is negative");
        return wrong_type(text);
      case State::kOffsets:
        if (negative) return entry_fail("data_offsets entry " + text + " is negative");
        return wrong_type(text);
      default:
        return wrong_type(text);
    }
  }

  bool skip_container() {
    skip_depth_ = 1;
    state_ = State::kSkip;
    return true;
  }
  bool end_skipped() {
    if (--skip_depth_ == 0) state_ = State::kEntry;
    return true;
  }

  bool finish_entry() {
    if ((seen_fields_ & 1u) == 0) return entry_fail("missing \"dtype\"");
    if ((seen_fields_ & 2u) == 0) return entry_fail("missing \"shape\"");
    if ((seen_fields_ & 4u) == 0) return entry_fail("missing \"data_offsets\"");
    std::string why;
    uint64_t nbytes = 0;
    if (!tensor_size(entry_.dtype, entry_.shape, &entry_.numel, &nbytes, &why)) return entry_fail(why);
    const uint64_t begin = offsets_[0], end = offsets_[1];
    const std::string offsets = "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + "]";
    if (begin > end) return entry_fail(offsets + ": begin is after end");
    if (end > data_bytes_) {
      return entry_fail(offsets + " run past the end of the data section (" + std::to_string(data_bytes_) +
                        " bytes)");
    }
    if (end - begin != nbytes) {
      return entry_fail(offsets + " hold " + std::to_string(end - begin) + " bytes, but shape " +
                        shape_string(entry_.shape) + " of dtype " + dtype_name(entry_.dtype) + " is " +
                        std::to_string(nbytes) + " bytes");
    }
    entry_.offset = begin;
    entry_.nbytes = static_cast<size_t>(nbytes);
    entry_.data = data_ + begin;  // begin <= data_bytes_: inside the buffer, or its end for an empty tensor
    tensors_->push_back(std::move(entry_));
    entry_ = TensorView{};
    return true;
  }

  const unsigned char *data_;
  uint64_t data_bytes_;
  std::vector<TensorView> *tensors_;
  std::map<std::string, std::string> *metadata_;
  std::string error_;

  State state_ = State::kStart;
  Field field_ = Field::kOther;
  int64_t skip_depth_ = 0;
  bool seen_metadata_ = false;
  bool in_metadata_ = false;
  std::string name_;      // the root key whose value comes next
  std::string meta_key_;  // the "__metadata__" key whose value comes next
  TensorView entry_;      // the entry being read
  unsigned seen_fields_ = 0;
  uint64_t offsets_[2] = {0, 0};
  int offset_count_ = 0;
};

uint64_t load_le64(const unsigned char *bytes) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | bytes[i];
  return value;
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1Fu;
  uint32_t mantissa = h & 0x3FFu;
  uint32_t bits;
  if (exponent == 0x1F) {
    bits = sign | 0x7F800000u | (mantissa << 13);  // infinity, or NaN with its payload
  } else if (exponent != 0) {
    bits = sign | ((exponent + (127 - 15)) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;  // +-0
  } else {
    // Subnormal: mantissa * 2^-24. Shift the leading one up to bit 10 (the implicit bit of a normal number).
    const int shift = __builtin_clz(mantissa) - 21;
    mantissa = (mantissa << shift) & 0x3FFu;
    bits = sign | (static_cast<uint32_t>(127 - 15 + 1 - shift) << 23) | (mantissa << 13);
  }
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

// Rounds to nearest even like the hardware conversion (and torch); finite values beyond the float range are
// handled here rather than left to a cast the C++ standard does not define for them.
float f64_to_f32(double d) {
  constexpr double kMax = static_cast<double>(std::numeric_limits<float>::max());
  if (d > kMax || d < -kMax) {
    // Halfway between FLT_MAX and 2^128 rounds to even, which is 2^128: infinity.
    constexpr double kHalfway = 0x1.ffffffp127;
    const float big =
        std::fabs(d) >= kHalfway ? std::numeric_limits<float>::infinity() : std::numeric_limits<float>::max();
    return d < 0 ? -big : big;
  }
  return static_cast<float>(d);  // NaN stays NaN
}

}  // namespace

size_t dtype_size(DType dtype) {
  const DTypeInfo *info = dtype_info(dtype);
  return info != nullptr ? info->size : 0;
}

const char *dtype_name(DType dtype) {
  const DTypeInfo *info = dtype_info(dtype);
  return info != nullptr ? info->name : "unknown";
}

bool parse_dtype(std::string_view name, DType *dtype) {
  for (const DTypeInfo &info : kDTypes) {
    if (name == info.name) {
      *dtype = info.dtype;
      return true;
    }
  }
  return false;
}

bool converts_to_f32(DType dtype) {
  return dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16 || dtype == DType::kF64;
}

SafetensorsFile::SafetensorsFile(const std::string &path) : source_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    fail(source_, "cannot open: " + std::generic_category().message(err));
  }
  struct stat info;
  if (::fstat(fd, &info) != 0) {
    const int err = errno;
    ::close(fd);
    fail(source_, "cannot stat: " + std::generic_category().message(err));
  }
  if (!S_ISREG(info.st_mode)) {
    ::close(fd);
    fail(source_, "is not a regular file");
  }
  const auto size = static_cast<uint64_t>(info.st_size);
  if (size >= 8) {  // shorter files (mmap refuses 0 bytes) fail in parse() with the header checks' message
    void *mapping = ::mmap(nullptr, static_cast<size_t>(size), PROT_READ, MAP_PRIVATE, fd, 0);
    if (mapping == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      const std::string message = source_ + ": cannot map " + std::to_string(size) +
                                  " bytes: " + std::generic_category().message(err);
      throw Error(err == ENOMEM ? WINATTN_STATUS_OUT_OF_MEMORY : WINATTN_STATUS_INVALID_ARGUMENT, message);
    }
    mapping_ = mapping;
    mapping_bytes_ = static_cast<size_t>(size);
  }
  ::close(fd);  // the mapping keeps the file
  try {
    parse(static_cast<const unsigned char *>(mapping_), static_cast<size_t>(size));
  } catch (...) {
    release();
    throw;
  }
}

SafetensorsFile::SafetensorsFile(FromMemory, const void *bytes, size_t size, std::string source)
    : source_(std::move(source)) {
  if (bytes == nullptr && size > 0) fail(source_, "buffer is NULL");
  parse(static_cast<const unsigned char *>(bytes), size);
}

SafetensorsFile SafetensorsFile::from_memory(const void *bytes, size_t size, std::string source) {
  return SafetensorsFile(FromMemory{}, bytes, size, std::move(source));
}

SafetensorsFile::SafetensorsFile(const std::vector<ExternalTensor> &tensors, std::string source)
    : source_(std::move(source)) {
  try {
    tensors_.reserve(tensors.size());
    for (const ExternalTensor &t : tensors) {
      const std::string what = "tensor " + quote(t.name) + ": ";
      if (t.name == "__metadata__") fail(source_, what + "the name is reserved for the metadata of a file");
      if (dtype_info(t.dtype) == nullptr) {
        fail(source_, what + "unknown dtype value " + std::to_string(static_cast<int>(t.dtype)));
      }
      if (t.shape.size() > kMaxDims) {
        fail(source_, what + "shape has " + std::to_string(t.shape.size()) + " dimensions, more than " +
                          std::to_string(kMaxDims));
      }
      for (int64_t dim : t.shape) {
        if (dim < 0) fail(source_, what + "shape " + shape_string(t.shape) + " has a negative entry");
      }
      TensorView view;
      view.name = t.name;
      view.dtype = t.dtype;
      view.shape = t.shape;
      std::string why;
      uint64_t nbytes = 0;
      if (!tensor_size(t.dtype, t.shape, &view.numel, &nbytes, &why)) fail(source_, what + why);
      if (nbytes > 0 && t.data == nullptr) fail(source_, what + "data is NULL");
      const auto address = reinterpret_cast<uintptr_t>(t.data);
      if (nbytes > std::numeric_limits<uintptr_t>::max() - address) {
        fail(source_, what + std::to_string(nbytes) + " bytes from its data pointer pass the end of memory");
      }
      view.data = static_cast<const unsigned char *>(t.data);
      view.nbytes = static_cast<size_t>(nbytes);
      tensors_.push_back(std::move(view));
    }
    sort_and_check(tensors_, source_, /*in_file=*/false);
  } catch (const std::bad_alloc &) {
    throw Error(WINATTN_STATUS_OUT_OF_MEMORY, source_ + ": out of memory describing the tensors");
  }
}

void SafetensorsFile::parse(const unsigned char *bytes, size_t size) {
  total_bytes_ = size;
  if (size < 8) {
    fail(source_, std::to_string(size) + " bytes: too short for the 8-byte header length");
  }
  const uint64_t n = load_le64(bytes);
  if (n > kMaxHeaderBytes) {
    fail(source_, "header length " + std::to_string(n) + " is larger than the limit of " +
                      std::to_string(kMaxHeaderBytes) + " bytes");
  }
  if (n > size - 8) {
    fail(source_, "header length " + std::to_string(n) + " runs past the end of the file (" +
                      std::to_string(size) + " bytes)");
  }
  header_bytes_ = n;
  const unsigned char *header = bytes + 8;
  const unsigned char *data = header + n;
  // JSON has no place for a raw NUL byte, and nlohmann's lexer would take one for the end of the input.
  if (const void *nul = std::memchr(header, 0, static_cast<size_t>(n))) {
    fail(source_, "header is not valid JSON: NUL byte at offset " +
                      std::to_string(static_cast<const unsigned char *>(nul) - bytes) + " of the file");
  }
  try {
    HeaderReader reader(data, size - 8 - n, &tensors_, &metadata_);
    bool ok = false;
    try {
      ok = nlohmann::json::sax_parse(header, header + n, &reader);
    } catch (const nlohmann::json::exception &e) {
      fail(source_, std::string("header is not valid JSON: ") + e.what());
    }
    if (!ok) fail(source_, reader.error().empty() ? "header is not valid JSON" : reader.error());
    sort_and_check(tensors_, source_, /*in_file=*/true);
  } catch (const std::bad_alloc &) {
    throw Error(WINATTN_STATUS_OUT_OF_MEMORY, source_ + ": out of memory reading the header");
  }
}

SafetensorsFile::SafetensorsFile(SafetensorsFile &&other) noexcept
    : source_(std::move(other.source_)),
      tensors_(std::move(other.tensors_)),
      metadata_(std::move(other.metadata_)),
      header_bytes_(other.header_bytes_),
      total_bytes_(other.total_bytes_),
      mapping_(std::exchange(other.mapping_, nullptr)),
      mapping_bytes_(std::exchange(other.mapping_bytes_, 0)) {}

SafetensorsFile &SafetensorsFile::operator=(SafetensorsFile &&other) noexcept {
  if (this != &other) {
    release();
    source_ = std::move(other.source_);
    tensors_ = std::move(other.tensors_);
    metadata_ = std::move(other.metadata_);
    header_bytes_ = other.header_bytes_;
    total_bytes_ = other.total_bytes_;
    mapping_ = std::exchange(other.mapping_, nullptr);
    mapping_bytes_ = std::exchange(other.mapping_bytes_, 0);
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() {
  release();
}

void SafetensorsFile::release() noexcept {
  if (mapping_ != nullptr) ::munmap(mapping_, mapping_bytes_);
  mapping_ = nullptr;
  mapping_bytes_ = 0;
}

const TensorView *SafetensorsFile::find(std::string_view name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const TensorView &t, std::string_view key) { return t.name < key; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

const TensorView &SafetensorsFile::at(std::string_view name) const {
  const TensorView *t = find(name);
  if (t == nullptr) fail(source_, "no tensor named " + quote(name));
  return *t;
}

void to_f32(const TensorView &tensor, float *dst) {
  if (!converts_to_f32(tensor.dtype)) {
    invalid_argument("tensor %s has dtype %s: only F32, F16, BF16 and F64 convert to float32",
                     quote(tensor.name).c_str(), dtype_name(tensor.dtype));
  }
  const size_t size = dtype_size(tensor.dtype);
  uint64_t expected = 0;
  if (tensor.numel < 0 || __builtin_mul_overflow(static_cast<uint64_t>(tensor.numel), size, &expected) ||
      expected != tensor.nbytes) {
    invalid_argument("tensor %s: %lld elements of %s do not match its %zu bytes", quote(tensor.name).c_str(),
                     static_cast<long long>(tensor.numel), dtype_name(tensor.dtype), tensor.nbytes);
  }
  const auto n = static_cast<size_t>(tensor.numel);
  if (n == 0) return;
  require_not_null(dst, "to_f32: dst");
  require_not_null(tensor.data, "to_f32: tensor data");
  if (overlaps(dst, n * sizeof(float), tensor.data, tensor.nbytes)) {
    invalid_argument("to_f32: dst overlaps the data of tensor %s", quote(tensor.name).c_str());
  }
  const unsigned char *src = tensor.data;  // possibly unaligned: every load is a memcpy
  switch (tensor.dtype) {
    case DType::kF32:
      std::memcpy(dst, src, n * sizeof(float));
      break;
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        const uint32_t bits = static_cast<uint32_t>(h) << 16;
        std::memcpy(dst + i, &bits, 4);
      }
      break;
    case DType::kF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = f16_to_f32(h);
      }
      break;
    case DType::kF64:
      for (size_t i = 0; i < n; ++i) {
        double d;
        std::memcpy(&d, src + 8 * i, 8);
        dst[i] = f64_to_f32(d);
      }
      break;
    default:
      break;  // refused above
  }
}

}  // namespace winattn::detail
