// SafetensorsFile (src/model/safetensors.h): files this test writes itself into a temporary directory, valid
// ones (values checked against this file's own conversions) and hostile ones (each refused with a message
// that names the problem), the caller's-tensors constructor, and a mutation loop over a valid file that must
// never crash (it runs under ASan + UBSan in .ci/sanitize.sh, which runs every ctest test).
//
// WINATTN_TEST_SAFETENSORS=/path/model.safetensors also loads that file, converts every floating-point tensor
// and prints the time of the load (map + parse + checks) and of the conversions.
#include <doctest/doctest.h>

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "model/safetensors.h"

namespace wd = winattn::detail;
namespace fs = std::filesystem;

REGISTER_EXCEPTION_TRANSLATOR(const wd::Error &e) {
  return doctest::String(e.message().c_str());
}

namespace {

// A fresh temporary directory, removed with everything in it at the end of the test case.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "winattn-safetensors-XXXXXX").string();
    REQUIRE(mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  std::string file(const std::string &name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

void write_bytes(const std::string &path, const std::string &bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

std::string le64(uint64_t value) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((value >> (8 * i)) & 0xFF);
  return out;
}

// The bytes of a file: length field, header (padded with spaces to a multiple of 8 when `pad`), data.
std::string make_file(std::string header, const std::string &data, bool pad = true) {
  if (pad) header.append((8 - header.size() % 8) % 8, ' ');
  return le64(header.size()) + header + data;
}

template <typename T>
std::string bytes_of(const std::vector<T> &values) {
  return std::string(reinterpret_cast<const char *>(values.data()), values.size() * sizeof(T));
}

// Loads `bytes` from an exact-size heap copy (AddressSanitizer sees any read past its end).
wd::SafetensorsFile load_memory(const std::vector<unsigned char> &copy, const std::string &name) {
  return wd::SafetensorsFile::from_memory(copy.data(), copy.size(), name);
}

// Both ways (memory and file) must refuse `bytes` with INVALID_ARGUMENT and a message holding `needle` and
// the source's name.
void expect_error(const TempDir &dir, const std::string &bytes, const std::string &needle) {
  CAPTURE(needle);
  const std::vector<unsigned char> copy(bytes.begin(), bytes.end());
  const std::string path = dir.file("hostile.safetensors");
  write_bytes(path, bytes);
  for (int way = 0; way < 2; ++way) {
    const std::string source = way == 0 ? "buffer" : path;
    try {
      if (way == 0) {
        load_memory(copy, source);
      } else {
        wd::SafetensorsFile file(path);
      }
      FAIL_CHECK("accepted; expected an error holding: " << needle);
    } catch (const wd::Error &e) {
      CHECK(e.status() == WINATTN_STATUS_INVALID_ARGUMENT);
      CHECK_MESSAGE(e.message().find(needle) != std::string::npos, e.message());
      CHECK_MESSAGE(e.message().rfind(source + ": ", 0) == 0, e.message());
    }
  }
}

// A header entry.
std::string entry(const std::string &name, const std::string &dtype, const std::string &shape, uint64_t begin,
                  uint64_t end) {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" +
         std::to_string(begin) + "," + std::to_string(end) + "]}";
}

uint32_t bits_of(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  return bits;
}

// IEEE half to float by arithmetic (this test's own conversion; NaN handled by the caller).
double half_value(uint16_t h) {
  const int sign = h >> 15, exponent = (h >> 10) & 31, mantissa = h & 1023;
  double value;
  if (exponent == 31) {
    value = std::numeric_limits<double>::infinity();
  } else if (exponent == 0) {
    value = std::ldexp(mantissa, -24);
  } else {
    value = std::ldexp(mantissa + 1024, exponent - 25);
  }
  return sign ? -value : value;
}

// bfloat16 to float by arithmetic (NaN handled by the caller).
double bfloat_value(uint16_t h) {
  const int sign = h >> 15, exponent = (h >> 7) & 255, mantissa = h & 127;
  double value;
  if (exponent == 255) {
    value = std::numeric_limits<double>::infinity();
  } else if (exponent == 0) {
    value = std::ldexp(mantissa, -133);
  } else {
    value = std::ldexp(mantissa + 128, exponent - 134);
  }
  return sign ? -value : value;
}

std::vector<float> convert(const wd::TensorView &t) {
  std::vector<float> out(static_cast<size_t>(t.numel));
  wd::to_f32(t, out.data());
  return out;
}

// A valid file with every kind of tensor the checks below use. With pad = false the data section starts at
// an odd address offset, so every tensor is unaligned.
struct ValidFile {
  std::vector<float> f32 = {1.5f, -2.25f, 0.0f, -0.0f, 3.0e38f, 1.0e-45f};
  std::vector<uint16_t> f16, bf16;
  std::vector<int64_t> i64 = {0, -1, std::numeric_limits<int64_t>::max(),
                              std::numeric_limits<int64_t>::min()};
  std::vector<double> f64;
  std::string bytes;

  explicit ValidFile(bool pad, const std::string &name_suffix = "") {
    for (uint32_t h = 0; h < 65536; ++h) f16.push_back(static_cast<uint16_t>(h));
    bf16 = f16;
    f64 = {1.0,
           1.0 + std::ldexp(1.0, -24),                         // halfway: ties to even (1)
           1.0 + std::ldexp(1.0, -24) + std::ldexp(1.0, -40),  // just above halfway: rounds up
           1.0 + 3 * std::ldexp(1.0, -24),                     // halfway: ties to even (up)
           -0.0,
           1e39,
           -1e39,
           0x1.ffffffp127,         // halfway to 2^128: infinity
           0x1.fffffefffffffp127,  // just below: FLT_MAX
           std::ldexp(1.0, -149),  // smallest float subnormal
           std::ldexp(1.0, -151),  // below half of it: 0
           std::numeric_limits<double>::infinity(),
           std::numeric_limits<double>::quiet_NaN(),
           0.1};
    std::string data, header = "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"caf\xc3\xa9\"},";
    auto add = [&](const std::string &name, const std::string &dtype, const std::string &shape,
                   const std::string &payload) {
      const uint64_t begin = data.size();
      data += payload;
      header += entry(name + name_suffix, dtype, shape, begin, data.size()) + ",";
    };
    add("weight", "F32", "[2,3]", bytes_of(f32));
    add("half", "F16", "[256,256]", bytes_of(f16));
    add("bfloat", "BF16", "[65536]", bytes_of(bf16));
    add("index", "I64", "[2,2]", bytes_of(i64));
    add("double", "F64", "[" + std::to_string(f64.size()) + "]", bytes_of(f64));
    add("scalar", "F32", "[]", bytes_of(std::vector<float>{7.0f}));
    add("empty", "F32", "[0,3]", "");
    add("flags", "BOOL", "[3]", std::string("\x01\x00\x01", 3));
    header.back() = '}';
    if (!pad && (8 + header.size()) % 2 == 0) header += ' ';  // odd data start
    bytes = make_file(header, data, pad);
  }
};

}  // namespace

TEST_CASE("safetensors: a valid file: tensors, metadata, and values converted exactly") {
  TempDir dir;
  for (bool pad : {true, false}) {
    CAPTURE(pad);
    ValidFile valid(pad);
    const std::string path = dir.file(pad ? "valid.safetensors" : "unaligned.safetensors");
    write_bytes(path, valid.bytes);
    wd::SafetensorsFile file(path);
    CHECK(file.source() == path);
    CHECK(file.total_bytes() == valid.bytes.size());
    CHECK((pad ? file.header_bytes() % 8 == 0 : (8 + file.header_bytes()) % 2 == 1));
    REQUIRE(file.metadata().size() == 2);
    CHECK(file.metadata().at("format") == "pt");
    CHECK(file.metadata().at("note") == "caf\xc3\xa9");

    // Sorted by name.
    std::vector<std::string> names;
    for (const auto &t : file.tensors()) names.push_back(t.name);
    CHECK(names == std::vector<std::string>{"bfloat", "double", "empty", "flags", "half", "index", "scalar",
                                            "weight"});
    CHECK(file.find("missing") == nullptr);
    try {
      file.at("missing");
      FAIL_CHECK("at() of a missing tensor returned");
    } catch (const wd::Error &e) {
      CHECK(e.message().find("no tensor named \"missing\"") != std::string::npos);
    }

    const wd::TensorView &w = file.at("weight");
    CHECK(w.dtype == wd::DType::kF32);
    CHECK(w.shape == std::vector<int64_t>{2, 3});
    CHECK(w.numel == 6);
    CHECK(w.nbytes == 24);
    CHECK(w.offset == 0);
    const std::vector<float> w32 = convert(w);
    for (size_t i = 0; i < w32.size(); ++i) CHECK(bits_of(w32[i]) == bits_of(valid.f32[i]));

    // Every half and bfloat16 bit pattern against this test's arithmetic.
    const std::vector<float> half = convert(file.at("half"));
    const std::vector<float> bfloat = convert(file.at("bfloat"));
    int half_wrong = 0, bfloat_wrong = 0;
    for (uint32_t h = 0; h < 65536; ++h) {
      const bool half_nan = ((h >> 10) & 31) == 31 && (h & 1023) != 0;
      const bool bfloat_nan = ((h >> 7) & 255) == 255 && (h & 127) != 0;
      if (half_nan) {  // NaN: sign and payload kept, as torch's conversion does
        const uint32_t expected = ((h & 0x8000u) << 16) | 0x7F800000u | ((h & 1023u) << 13);
        half_wrong += bits_of(half[h]) != expected;
      } else {
        half_wrong += bits_of(half[h]) != bits_of(static_cast<float>(half_value(static_cast<uint16_t>(h))));
      }
      if (bfloat_nan) {
        bfloat_wrong += !(std::isnan(bfloat[h]) && bits_of(bfloat[h]) == h << 16);
      } else {
        bfloat_wrong +=
            bits_of(bfloat[h]) != bits_of(static_cast<float>(bfloat_value(static_cast<uint16_t>(h))));
      }
    }
    CHECK(half_wrong == 0);
    CHECK(bfloat_wrong == 0);

    const std::vector<float> d = convert(file.at("double"));
    const float inf = std::numeric_limits<float>::infinity();
    const std::vector<float> expected = {
        1.0f, 1.0f, 1.0f + std::ldexp(1.0f, -23),      1.0f + 2 * std::ldexp(1.0f, -23), -0.0f, inf,
        -inf, inf,  std::numeric_limits<float>::max(), std::ldexp(1.0f, -149),           0.0f,  inf};
    for (size_t i = 0; i < expected.size(); ++i) {
      CAPTURE(i);
      CHECK(bits_of(d[i]) == bits_of(expected[i]));
    }
    CHECK(std::isnan(d[12]));
    CHECK(d[13] == 0.1f);

    const wd::TensorView &index = file.at("index");
    CHECK(index.dtype == wd::DType::kI64);
    for (size_t i = 0; i < 4; ++i) {
      int64_t value;
      std::memcpy(&value, index.data + 8 * i, 8);
      CHECK(value == valid.i64[i]);
    }
    try {
      convert(index);
      FAIL_CHECK("to_f32 converted an I64 tensor");
    } catch (const wd::Error &e) {
      CHECK(e.status() == WINATTN_STATUS_INVALID_ARGUMENT);
      CHECK(e.message().find("dtype I64") != std::string::npos);
    }
    CHECK_THROWS_AS(convert(file.at("flags")), wd::Error);

    const wd::TensorView &scalar = file.at("scalar");
    CHECK(scalar.shape.empty());
    CHECK(scalar.numel == 1);
    CHECK(convert(scalar) == std::vector<float>{7.0f});
    const wd::TensorView &empty = file.at("empty");
    CHECK(empty.numel == 0);
    CHECK(empty.nbytes == 0);
    CHECK(convert(empty).empty());

    // The views stay valid when the object moves.
    const unsigned char *weight_data = w.data;
    wd::SafetensorsFile moved(std::move(file));
    CHECK(moved.at("weight").data == weight_data);
    wd::SafetensorsFile assigned =
        wd::SafetensorsFile::from_memory(valid.bytes.data(), valid.bytes.size(), "x");
    assigned = std::move(moved);
    CHECK(convert(assigned.at("weight")) == w32);
  }
}

TEST_CASE("safetensors: what the format allows") {
  TempDir dir;
  auto load = [&](const std::string &bytes) {
    write_bytes(dir.file("ok.safetensors"), bytes);
    return wd::SafetensorsFile(dir.file("ok.safetensors"));
  };
  SUBCASE("no tensors") {
    CHECK(load(make_file("{}", "")).tensors().empty());
    CHECK(load(make_file("  {\"__metadata__\":{}}  ", "", false)).tensors().empty());
  }
  SUBCASE("gaps, trailing bytes, unknown fields, empty tensors inside others' bytes") {
    const std::string header =
        "{" + entry("a", "F32", "[2]", 8, 16) + "," + entry("b", "U8", "[0]", 10, 10) +
        ",\"c\":{\"extra\":{\"deep\":[[[1],{\"x\":null}]],\"s\":\"t\"},\"dtype\":\"I8\","
        "\"shape\":[1],\"flag\":true,\"data_offsets\":[20,21]}}";
    wd::SafetensorsFile file = load(make_file(header, std::string(32, '\0')));
    REQUIRE(file.tensors().size() == 3);
    CHECK(file.at("c").shape == std::vector<int64_t>{1});
    CHECK(file.at("c").offset == 20);
  }
  SUBCASE("every dtype of the format") {
    const char *names[] = {"BOOL", "U8",  "I8",  "F8_E5M2", "F8_E4M3", "I16", "U16", "F16",
                           "BF16", "I32", "U32", "F32",     "F64",     "I64", "U64"};
    std::string header = "{";
    uint64_t at = 0;
    for (const char *name : names) {
      wd::DType dtype;
      REQUIRE(wd::parse_dtype(name, &dtype));
      CHECK(std::string(wd::dtype_name(dtype)) == name);
      const uint64_t size = wd::dtype_size(dtype);
      header += entry(std::string("t_") + name, name, "[3]", at, at + 3 * size) + ",";
      at += 3 * size;
    }
    header.back() = '}';
    wd::SafetensorsFile file = load(make_file(header, std::string(at, '\x01')));
    CHECK(file.tensors().size() == 15);
    CHECK(file.at("t_U64").nbytes == 24);
  }
  SUBCASE("deep nesting inside an ignored field costs no stack") {
    const int depth = 200000;
    const std::string header =
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4],\"x\":" + std::string(depth, '[') +
        std::string(depth, ']') + "}}";
    CHECK(load(make_file(header, std::string(4, '\0'))).tensors().size() == 1);
  }
}

TEST_CASE("safetensors: hostile files are refused with a message naming the problem") {
  TempDir dir;
  const std::string f32x4 = std::string(16, '\0');
  auto one = [&](const std::string &body) { return make_file("{\"t\":" + body + "}", f32x4); };

  SUBCASE("length field and header bounds") {
    expect_error(dir, "", "0 bytes: too short for the 8-byte header length");
    expect_error(dir, std::string("\x02\0\0\0\0\0\0", 7), "7 bytes: too short");
    expect_error(dir, std::string("\x02\0\0", 3), "3 bytes: too short");
    expect_error(dir, le64(100) + "{}", "header length 100 runs past the end of the file (10 bytes)");
    expect_error(dir, le64(3) + "{}", "runs past the end of the file");
    expect_error(dir, le64(std::numeric_limits<uint64_t>::max()) + "{}", "is larger than the limit");
    expect_error(dir, le64(uint64_t{1} << 63) + "{}", "is larger than the limit");
    expect_error(dir, le64((uint64_t{100} << 20) + 1) + "{}", "is larger than the limit of 104857600 bytes");
    expect_error(dir, le64(0), "header is not valid JSON");
  }
  SUBCASE("not JSON, not an object") {
    expect_error(dir, make_file("{abc", ""), "header is not valid JSON: parse error at line 1, column 2");
    expect_error(dir, make_file("{\"a\"", ""), "header is not valid JSON");
    expect_error(dir, make_file("{} x", ""), "header is not valid JSON");
    expect_error(dir, make_file(std::string("{}\0\0", 4), "", false),
                 "header is not valid JSON: NUL byte at offset 10");
    expect_error(dir, make_file(std::string("{\"a\0\":{}}", 9), ""), "NUL byte at offset 11");
    expect_error(dir, make_file("{\"\xff\":{}}", ""), "header is not valid JSON");  // not UTF-8
    expect_error(dir, make_file("[1,2]", ""), "header is not a JSON object (it is an array)");
    expect_error(dir, make_file("\"x\"", ""), "header is not a JSON object (it is \"x\")");
    expect_error(dir, make_file("5", ""), "header is not a JSON object (it is 5)");
    expect_error(dir, make_file("null", ""), "header is not a JSON object (it is null)");
  }
  SUBCASE("entries") {
    expect_error(dir, one("5"), "tensor \"t\": entry is not an object (it is 5)");
    expect_error(dir, one("[1]"), "tensor \"t\": entry is not an object (it is an array)");
    expect_error(dir, one("{\"shape\":[4],\"data_offsets\":[0,16]}"), "tensor \"t\": missing \"dtype\"");
    expect_error(dir, one("{\"dtype\":\"F32\",\"data_offsets\":[0,16]}"), "tensor \"t\": missing \"shape\"");
    expect_error(dir, one("{\"dtype\":\"F32\",\"shape\":[4]}"), "tensor \"t\": missing \"data_offsets\"");
    expect_error(dir, one("{\"dtype\":\"F4\",\"shape\":[4],\"data_offsets\":[0,16]}"),
                 "tensor \"t\": unknown dtype \"F4\"");
    expect_error(dir, one("{\"dtype\":\"f32\",\"shape\":[4],\"data_offsets\":[0,16]}"),
                 "unknown dtype \"f32\"");
    expect_error(dir, one("{\"dtype\":4,\"shape\":[4],\"data_offsets\":[0,16]}"),
                 "tensor \"t\": dtype is not a string (it is 4)");
    expect_error(dir, one("{\"dtype\":\"F32\",\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}"),
                 "tensor \"t\": field \"dtype\" appears more than once");
    expect_error(
        dir,
        make_file("{" + entry("t", "F32", "[4]", 0, 16) + "," + entry("t", "F32", "[4]", 0, 16) + "}", f32x4),
        "tensor \"t\" appears more than once");
    // Names from the file are quoted with escapes and cut short in messages.
    expect_error(dir, make_file("{" + entry(std::string(5000, 'n') + "\\n", "X", "[1]", 0, 1) + "}", f32x4),
                 "tensor \"nnnnnnnnnn");
    expect_error(dir, make_file("{" + entry("a\\u0001\\\"b", "X", "[1]", 0, 1) + "}", f32x4),
                 "tensor \"a\\x01\\\"b\": unknown dtype \"X\"");
  }
  SUBCASE("shapes") {
    auto shape = [&](const std::string &s) {
      return one("{\"dtype\":\"F32\",\"shape\":" + s + ",\"data_offsets\":[0,16]}");
    };
    expect_error(dir, shape("[-1]"), "tensor \"t\": shape entry -1 is negative");
    expect_error(dir, shape("[4,-4]"), "shape entry -4 is negative");
    expect_error(dir, shape("[9223372036854775808]"),
                 "shape entry 9223372036854775808 is larger than 2^63-1");
    expect_error(dir, shape("[18446744073709551615]"), "is larger than 2^63-1");
    expect_error(dir, shape("[99999999999999999999999]"), "shape entry is not a non-negative integer");
    expect_error(dir, shape("[1e30]"), "shape entry is not a non-negative integer (it is 1e30)");
    expect_error(dir, shape("[4.0]"), "shape entry is not a non-negative integer (it is 4.0)");
    expect_error(dir, shape("[\"4\"]"), "shape entry is not a non-negative integer (it is \"4\")");
    expect_error(dir, shape("[[4]]"), "shape entry is not a non-negative integer (it is an array)");
    expect_error(dir, shape("[1,1,1,1,1,1,1,1,4]"), "shape has more than 8 dimensions");
    expect_error(dir, shape("4"), "tensor \"t\": shape is not an array (it is 4)");
    expect_error(dir, shape("{}"), "shape is not an array (it is an object)");
    expect_error(dir, shape("[4294967296,4294967296]"),
                 "shape [4294967296, 4294967296] has more elements than fit in 64 bits");
    expect_error(dir, shape("[3037000500,3037000500]"), "more elements than fit in 64 bits");
    expect_error(dir, shape("[2305843009213693952]"), "of dtype F32 is more bytes than fit in 64 bits");
    // A zero dimension makes the tensor empty whatever the others are, in any order.
    expect_error(dir, shape("[4294967296,4294967296,0]"),
                 "but shape [4294967296, 4294967296, 0] of dtype F32 is 0 bytes");
    expect_error(dir, shape("[0,4294967296,4294967296]"), "is 0 bytes");
  }
  SUBCASE("offsets and sizes") {
    auto offsets = [&](const std::string &shape, const std::string &o) {
      return one("{\"dtype\":\"F32\",\"shape\":" + shape + ",\"data_offsets\":" + o + "}");
    };
    expect_error(dir, offsets("[4]", "[0,1000]"),
                 "tensor \"t\": data_offsets [0, 1000] run past the end of the data section (16 bytes)");
    expect_error(dir, offsets("[0]", "[17,17]"), "run past the end of the data section");
    expect_error(dir, offsets("[4]", "[18446744073709551615,18446744073709551615]"), "run past the end");
    expect_error(dir, offsets("[1]", "[8,4]"), "tensor \"t\": data_offsets [8, 4]: begin is after end");
    expect_error(dir, offsets("[3]", "[0,16]"),
                 "tensor \"t\": data_offsets [0, 16] hold 16 bytes, but shape [3] of dtype F32 is 12 bytes");
    expect_error(dir, offsets("[4611686018427387904]", "[0,16]"), "more bytes than fit in 64 bits");
    expect_error(dir, offsets("[4]", "[0]"), "data_offsets has 1 entries, expected 2");
    expect_error(dir, offsets("[4]", "[]"), "data_offsets has 0 entries, expected 2");
    expect_error(dir, offsets("[4]", "[0,16,16]"), "data_offsets has more than 2 entries");
    expect_error(dir, offsets("[4]", "[-1,16]"), "data_offsets entry -1 is negative");
    expect_error(dir, offsets("[4]", "[0.0,16]"), "data_offsets entry is not a non-negative integer");
    expect_error(dir, offsets("[4]", "[null,16]"),
                 "data_offsets entry is not a non-negative integer (it is null)");
    expect_error(dir, offsets("[4]", "\"0,16\""), "data_offsets is not an array");
  }
  SUBCASE("overlapping tensors") {
    expect_error(
        dir,
        make_file("{" + entry("a", "F32", "[4]", 0, 16) + "," + entry("b", "F32", "[2]", 8, 16) + "}", f32x4),
        "tensors \"a\" (bytes [0, 16)) and \"b\" (bytes [8, 16)) overlap");
    expect_error(
        dir,
        make_file("{" + entry("a", "F32", "[2]", 0, 8) + "," + entry("b", "F32", "[2]", 0, 8) + "}", f32x4),
        "tensors \"a\" (bytes [0, 8)) and \"b\" (bytes [0, 8)) overlap");
    // The first tensor reaches past the second and third: the third still overlaps the first.
    expect_error(dir,
                 make_file("{" + entry("a", "F32", "[4]", 0, 16) + "," + entry("b", "U8", "[1]", 1, 2) + "," +
                               entry("c", "U8", "[1]", 12, 13) + "}",
                           f32x4),
                 "overlap");
  }
  SUBCASE("metadata") {
    expect_error(dir, make_file("{\"__metadata__\":{\"a\":1}}", ""),
                 "\"__metadata__\": the value of \"a\" is not a string (it is 1)");
    expect_error(dir, make_file("{\"__metadata__\":{\"a\":\"x\",\"b\":{}}}", ""),
                 "the value of \"b\" is not a string (it is an object)");
    expect_error(dir, make_file("{\"__metadata__\":{\"a\":null}}", ""), "is not a string (it is null)");
    expect_error(dir, make_file("{\"__metadata__\":{\"a\":[\"x\"]}}", ""),
                 "is not a string (it is an array)");
    expect_error(dir, make_file("{\"__metadata__\":[]}", ""),
                 "\"__metadata__\" is not an object (it is an array)");
    expect_error(dir, make_file("{\"__metadata__\":\"x\"}", ""), "\"__metadata__\" is not an object");
    expect_error(dir, make_file("{\"__metadata__\":{\"a\":\"x\",\"a\":\"y\"}}", ""),
                 "\"__metadata__\": key \"a\" appears more than once");
    expect_error(dir, make_file("{\"__metadata__\":{},\"__metadata__\":{}}", ""),
                 "\"__metadata__\" appears more than once");
  }
}

TEST_CASE("safetensors: files that cannot be opened") {
  TempDir dir;
  const std::string missing = dir.file("missing.safetensors");
  try {
    wd::SafetensorsFile file(missing);
    FAIL_CHECK("opened a missing file");
  } catch (const wd::Error &e) {
    CHECK(e.status() == WINATTN_STATUS_INVALID_ARGUMENT);
    CHECK(e.message() == missing + ": cannot open: No such file or directory");
  }
  const std::string folder = dir.file("folder");
  fs::create_directory(folder);
  try {
    wd::SafetensorsFile file(folder);
    FAIL_CHECK("opened a directory");
  } catch (const wd::Error &e) {
    CHECK(e.message() == folder + ": is not a regular file");
  }
}

TEST_CASE("safetensors: the caller's tensors") {
  std::vector<float> a(6, 1.0f);
  std::vector<uint16_t> b = {0x3C00, 0xC000};  // F16 1, -2
  std::vector<int64_t> c = {5};
  auto make = [&] {
    return std::vector<wd::ExternalTensor>{{"b", wd::DType::kF16, {2}, b.data()},
                                           {"a", wd::DType::kF32, {2, 3}, a.data()},
                                           {"c", wd::DType::kI64, {}, c.data()},
                                           {"empty", wd::DType::kBF16, {0, 7}, nullptr}};
  };
  wd::SafetensorsFile tensors(make(), "caller");
  REQUIRE(tensors.tensors().size() == 4);
  CHECK(tensors.tensors()[0].name == "a");
  CHECK(tensors.at("a").data == reinterpret_cast<const unsigned char *>(a.data()));
  CHECK(tensors.at("a").nbytes == 24);
  CHECK(convert(tensors.at("b")) == std::vector<float>{1.0f, -2.0f});
  CHECK(tensors.metadata().empty());
  CHECK(tensors.header_bytes() == 0);

  auto expect = [&](std::vector<wd::ExternalTensor> list, const std::string &needle) {
    CAPTURE(needle);
    try {
      wd::SafetensorsFile refused(list, "caller");
      FAIL_CHECK("accepted");
    } catch (const wd::Error &e) {
      CHECK(e.status() == WINATTN_STATUS_INVALID_ARGUMENT);
      CHECK_MESSAGE(e.message().rfind("caller: ", 0) == 0, e.message());
      CHECK_MESSAGE(e.message().find(needle) != std::string::npos, e.message());
    }
  };
  auto list = make();
  list[1].name = "b";
  expect(list, "tensor \"b\" appears more than once");
  list = make();
  list.push_back({"a_view", wd::DType::kF32, {2}, a.data() + 5});
  expect(list, "tensors \"a\" (memory [");
  list = make();
  list[1].shape = {2, -3};
  expect(list, "tensor \"a\": shape [2, -3] has a negative entry");
  list = make();
  list[1].shape = {1, 1, 1, 1, 1, 1, 1, 1, 6};
  expect(list, "tensor \"a\": shape has 9 dimensions, more than 8");
  list = make();
  list[1].shape = {int64_t{1} << 62, 4};
  expect(list, "more elements than fit in 64 bits");
  list = make();
  list[1].shape = {int64_t{1} << 62};
  expect(list, "is more bytes than fit in 64 bits");
  list = make();
  list[1].data = nullptr;
  expect(list, "tensor \"a\": data is NULL");
  list = make();
  list[1].name = "__metadata__";
  expect(list, "tensor \"__metadata__\": the name is reserved");
  list = make();
  list[1].dtype = static_cast<wd::DType>(200);
  expect(list, "tensor \"a\": unknown dtype value 200");
  list = make();
  list[1].data = reinterpret_cast<const void *>(~uintptr_t{0} - 8);
  expect(list, "pass the end of memory");

  // to_f32 refuses a view whose sizes disagree and a destination overlapping the data.
  wd::TensorView bad = tensors.at("a");
  bad.nbytes = 1000;
  CHECK_THROWS_AS(convert(bad), wd::Error);
  std::vector<float> in_place(4, 0.0f);
  wd::SafetensorsFile aliasing({{"x", wd::DType::kF32, {4}, in_place.data()}}, "caller");
  CHECK_THROWS_AS(wd::to_f32(aliasing.at("x"), in_place.data()), wd::Error);
}

TEST_CASE("safetensors: mutated files never crash") {
  // Flips, overwrites, truncates and edits a valid file (fixed seed); each variant loads (from an exact-size
  // heap copy, so AddressSanitizer sees any read past the end) and either succeeds, when every tensor is then
  // read in full, or throws Error.
  ValidFile valid(true, "_x");
  const std::string &base = valid.bytes;
  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | static_cast<unsigned char>(base[i]);
  const size_t header_end = 8 + static_cast<size_t>(header_bytes);
  std::mt19937_64 rng(20240614);
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  TempDir dir;
  int accepted = 0, refused = 0;
  const int variants = 4000;
  for (int v = 0; v < variants; ++v) {
    std::string bytes = base;
    const int kind = static_cast<int>(rng() % 7);
    switch (kind) {
      case 0:  // flip bits anywhere in the header (or the length field)
        for (int k = 0; k < 1 + static_cast<int>(rng() % 4); ++k) {
          bytes[pick(header_end)] ^= static_cast<char>(1u << (rng() % 8));
        }
        break;
      case 1: {  // change a digit of the header: sizes, offsets
        for (int tries = 0; tries < 64; ++tries) {
          const size_t at = 8 + pick(header_end - 8);
          if (bytes[at] >= '0' && bytes[at] <= '9') {
            bytes[at] = static_cast<char>('0' + rng() % 10);
            break;
          }
        }
        break;
      }
      case 2: {  // insert digits into a number
        for (int tries = 0; tries < 64; ++tries) {
          const size_t at = 8 + pick(header_end - 8);
          if (bytes[at] >= '0' && bytes[at] <= '9') {
            bytes.insert(at, std::string(1 + rng() % 20, static_cast<char>('1' + rng() % 9)));
            break;
          }
        }
        break;
      }
      case 3:  // truncate
        bytes.resize(pick(bytes.size() + 1));
        break;
      case 4: {  // delete a range of the header, keeping the length field
        const size_t at = 8 + pick(header_end - 8);
        bytes.erase(at, 1 + pick(16));
        break;
      }
      case 5: {  // the length field
        uint64_t n = header_end - 8;
        const int how = static_cast<int>(rng() % 4);
        n = how == 0 ? n + 1 - 2 * (rng() % 2) : how == 1 ? rng() : how == 2 ? rng() % (base.size() + 16) : 0;
        bytes.replace(0, 8, le64(n));
        break;
      }
      default:  // random bytes anywhere
        for (int k = 0; k < 1 + static_cast<int>(rng() % 8); ++k) {
          bytes[pick(bytes.size())] = static_cast<char>(rng());
        }
        break;
    }
    const std::vector<unsigned char> copy(bytes.begin(), bytes.end());
    try {
      wd::SafetensorsFile file = v % 100 == 0 ? (write_bytes(dir.file("m.safetensors"), bytes),
                                                 wd::SafetensorsFile(dir.file("m.safetensors")))
                                              : load_memory(copy, "mutated");
      for (const wd::TensorView &t : file.tensors()) {
        if (wd::converts_to_f32(t.dtype)) {
          std::vector<float> out(static_cast<size_t>(t.numel));
          wd::to_f32(t, out.data());
        } else {
          unsigned sum = 0;
          for (size_t i = 0; i < t.nbytes; ++i) sum += t.data[i];
          (void)sum;
        }
      }
      ++accepted;
    } catch (const wd::Error &e) {
      REQUIRE(e.status() == WINATTN_STATUS_INVALID_ARGUMENT);
      REQUIRE(!e.message().empty());
      ++refused;
    }
  }
  MESSAGE("mutated files: " << accepted << " accepted, " << refused << " refused");
  CHECK(accepted + refused == variants);
  CHECK(accepted > 0);
  CHECK(refused > 0);
}

TEST_CASE("safetensors: a file named by WINATTN_TEST_SAFETENSORS") {
  const char *path = std::getenv("WINATTN_TEST_SAFETENSORS");
  if (path == nullptr || *path == '\0') return;
  using clock = std::chrono::steady_clock;
  double first = 0, best = 1e30;
  size_t count = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = clock::now();
    wd::SafetensorsFile file(path);
    const double seconds = std::chrono::duration<double>(clock::now() - t0).count();
    if (rep == 0) first = seconds;
    best = std::min(best, seconds);
    count = file.tensors().size();
  }
  wd::SafetensorsFile file(path);
  const auto t0 = clock::now();
  size_t floats = 0;
  for (const wd::TensorView &t : file.tensors()) {
    if (!wd::converts_to_f32(t.dtype)) continue;
    std::vector<float> out(static_cast<size_t>(t.numel));
    wd::to_f32(t, out.data());
    floats += out.size();
  }
  const double convert_s = std::chrono::duration<double>(clock::now() - t0).count();
  MESSAGE(std::string(path) << ": " << count << " tensors, header " << file.header_bytes() << " bytes, file "
                            << file.total_bytes() << " bytes; load (map + parse + checks): first "
                            << first * 1e3 << " ms, best of 5 " << best * 1e3 << " ms; to_f32 of " << floats
                            << " values (page faults included): " << convert_s * 1e3 << " ms");
  CHECK(count > 0);
}
