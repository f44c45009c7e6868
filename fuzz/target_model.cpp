// Target "model": whole Swin models built from state_dicts (winattn_model_create, winattn_model_load) and run
// (get_info, feature_shapes, classify, features, thread budgets, destroy).
//
// The input decodes into a tiny model with small random dimensions, named as one of the implementations the
// loader recognises: torchvision Swin / SwinV2 (features.N...), timm Swin / SwinV2 (layers.N.blocks.M, the
// merging at the start or the end of a stage, q_bias/v_bias, relative_coords_table with a pretrained
// window), torchvision Video Swin and the original Video Swin (5-D patch embedding, cls_head.fc_cls). Its
// tensors then get input-driven mutations (a tensor dropped, renamed, duplicated, a dimension changed to
// small, zero or huge values, the number of dimensions changed, a wrong dtype, NaN/Inf/huge values, a
// relative_position_index with a wrong entry or as I32, extra tensors, NULL names or data, overlapping data)
// and are handed to winattn_model_create, or serialised as a safetensors file (header entries in any order,
// gaps between tensors, optional __metadata__, F64 too), whose bytes get byte-level mutations (bytes
// changed, numbers and dtypes in the header replaced, the length field changed, truncation, insertion) and
// which is read through a memfd (a temporary file where memfd_create is missing) by winattn_model_load.
//
// What is checked: every call returns a status of the enum with a message on failure; an unmutated model
// is accepted, its winattn_model_info and feature shapes are the ones its tensors describe; a model with a
// single mutation that makes it invalid (a required tensor missing or renamed, a non-finite weight, a
// weight of an integer dtype, a duplicate name, an unknown tensor, a wrong index entry, an argument error) is
// refused; a failing call leaves *model, the info, the shapes, the logits and the features untouched; a model
// whose weights and input are finite and moderate gives finite logits and features; the same call with
// another model thread budget gives the same bits (winattn.h: results are bit-identical for every thread
// count); classify and features agree with each other on repeated calls; the file and the caller's tensors
// give the same bits; calls with a destroyed or foreign handle fail without writing. Work is bounded:
// dimensions are a few units, inputs a few patches per window, so an input takes about a millisecond
// sanitized.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_common.h"
#include "targets.h"

namespace fz {
namespace {

// ---- Tensors ----------------------------------------------------------------------------------------------

// The dtypes of the safetensors format (file names); the first three are also winattn_dtype values.
enum DT : uint8_t {
  kF32,
  kBF16,
  kF16,
  kF64,
  kI64,
  kI32,
  kU8,
  kBool,
  kI8,
  kI16,
  kU16,
  kU32,
  kU64,
  kF8a,
  kF8b
};
constexpr int kNumDT = 15;
const char *const kDTName[kNumDT] = {"F32", "BF16", "F16", "F64", "I64", "I32",     "U8",     "BOOL",
                                     "I8",  "I16",  "U16", "U32", "U64", "F8_E5M2", "F8_E4M3"};
size_t dt_size(DT d) {
  switch (d) {
    case kF64:
    case kI64:
    case kU64:
      return 8;
    case kF32:
    case kI32:
    case kU32:
      return 4;
    case kBF16:
    case kF16:
    case kI16:
    case kU16:
      return 2;
    default:
      return 1;
  }
}
bool dt_float(DT d) {
  return d == kF32 || d == kBF16 || d == kF16 || d == kF64;
}

enum class Kind : uint8_t { kWeight, kIndex, kCoords, kExtra };

struct Tensor {
  std::string name;
  DT dt = kF32;
  std::vector<int64_t> shape;
  std::vector<float> f;     // float values (kWeight, kCoords, kExtra), numel of them once materialised
  std::vector<int64_t> iv;  // kIndex values
  Kind kind = Kind::kWeight;
  // winattn_model_create only:
  bool null_name = false, null_data = false;
  bool bad_dtype = false;  // winattn_model_create gets dtype_value, not a winattn_dtype
  int dtype_value = 0;
  int ndim_override = -100;
  // Set by layout():
  std::vector<unsigned char> bytes;  // the encoded data (empty when not backed)
  bool backed = true;                // bytes holds numel * size bytes
  bool overflow = false;             // the element count or byte size leaves int64 (the library must refuse)
};

// The element count as the library computes it: 0 when any dimension is 0, overflow flagged.
bool shape_numel(const std::vector<int64_t> &shape, size_t elem, int64_t *numel, bool *overflow) {
  *overflow = false;
  for (int64_t d : shape)
    if (d < 0) return false;
  for (int64_t d : shape)
    if (d == 0) {
      *numel = 0;
      return true;
    }
  int64_t count = 1;
  for (int64_t d : shape)
    if (__builtin_mul_overflow(count, d, &count)) *overflow = true;
  int64_t bytes;
  if (!*overflow && __builtin_mul_overflow(count, static_cast<int64_t>(elem), &bytes)) *overflow = true;
  *numel = *overflow ? -1 : count;
  return true;
}

uint16_t f32_to_bf16(float x) {
  uint32_t b;
  std::memcpy(&b, &x, 4);
  if ((b & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((b >> 16) | 0x40);  // quiet NaN
  b += 0x7FFFu + ((b >> 16) & 1u);
  return static_cast<uint16_t>(b >> 16);
}

uint16_t f32_to_f16(float x) {
  uint32_t b;
  std::memcpy(&b, &x, 4);
  const uint16_t sign = static_cast<uint16_t>((b >> 16) & 0x8000u);
  const uint32_t abs = b & 0x7FFFFFFFu;
  if (abs > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7E00u);
  if (abs >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // rounds to >= 65520: inf
  if (abs < 0x38800000u) {                                               // below the smallest normal half
    float a;
    std::memcpy(&a, &abs, 4);
    const float scaled = a * 16777216.0f;  // units of 2^-24, rounded to nearest even by nearbyint
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(std::nearbyint(scaled)));
  }
  const uint32_t mant = abs & 0x7FFFFFu;
  uint32_t h = ((abs >> 23) - 112) << 10 | (mant >> 13);
  const uint32_t rest = mant & 0x1FFFu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

float f16_to_f32(uint16_t h) {
  const int e = (h >> 10) & 0x1F, m = h & 0x3FF;
  const float mag =
      e == 0    ? std::ldexp(static_cast<float>(m), -24)
      : e == 31 ? (m ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity())
                : std::ldexp(static_cast<float>(m | 0x400), e - 25);
  return (h & 0x8000) ? -mag : mag;
}

// v as stored in dtype dt (F16 / BF16) and read back.
float round_trip(float v, DT dt) {
  if (dt == kF16) return f16_to_f32(f32_to_f16(v));
  if (dt == kBF16) {
    const uint32_t bits = static_cast<uint32_t>(f32_to_bf16(v)) << 16;
    float out;
    std::memcpy(&out, &bits, 4);
    return out;
  }
  return v;
}

// Encodes t.f / t.iv (resized to numel) as t.dt. Returns false (nothing encoded) when too large to back.
constexpr int64_t kMaxTensorBytes = int64_t(1) << 20;
void layout(Tensor &t) {
  t.bytes.clear();
  int64_t numel = 0;
  const size_t es = dt_size(t.dt);
  if (!shape_numel(t.shape, es, &numel, &t.overflow) || t.overflow ||
      numel * static_cast<int64_t>(es) > kMaxTensorBytes) {
    t.backed = false;
    return;
  }
  t.backed = true;
  const size_t n = static_cast<size_t>(numel);
  if (t.kind == Kind::kIndex) {
    t.iv.resize(n, 0);
  } else {
    const size_t had = t.f.size();
    t.f.resize(n);
    for (size_t i = had; i < n; ++i) t.f[i] = had ? t.f[i % had] : 0.25f;  // a grown shape repeats the values
  }
  t.bytes.resize(n * es);
  unsigned char *p = t.bytes.data();
  for (size_t i = 0; i < n; ++i) {
    const float v = t.kind == Kind::kIndex ? static_cast<float>(t.iv[i]) : t.f[i];
    const int64_t iv = t.kind == Kind::kIndex ? t.iv[i]
                       : std::fabs(v) < 1e9f  ? static_cast<int64_t>(v * 8)  // integer dtypes: any bytes do
                                              : 0;
    switch (t.dt) {
      case kF32:
        std::memcpy(p + 4 * i, &v, 4);
        break;
      case kF64: {
        const double d = v;
        std::memcpy(p + 8 * i, &d, 8);
        break;
      }
      case kBF16: {
        const uint16_t h = f32_to_bf16(v);
        std::memcpy(p + 2 * i, &h, 2);
        break;
      }
      case kF16: {
        const uint16_t h = f32_to_f16(v);
        std::memcpy(p + 2 * i, &h, 2);
        break;
      }
      case kI64:
      case kU64:
        std::memcpy(p + 8 * i, &iv, 8);
        break;
      case kI32:
      case kU32: {
        const int32_t x = static_cast<int32_t>(iv);
        std::memcpy(p + 4 * i, &x, 4);
        break;
      }
      case kI16:
      case kU16: {
        const int16_t x = static_cast<int16_t>(iv);
        std::memcpy(p + 2 * i, &x, 2);
        break;
      }
      default:
        p[i] = static_cast<unsigned char>(iv);
        break;
    }
  }
}

// ---- The model description ------------------------------------------------------------------------------

enum class Scheme : uint8_t { kTv2d, kTimm, kTv3d, kVideoSwin };
const char *const kSchemeName[4] = {"torchvision", "timm", "torchvision-3d", "video-swin"};

struct Spec {
  Scheme scheme = Scheme::kTv2d;
  bool v2 = false, three_d = false, timm_start = false, head_fc = false, embed_norm = true;
  bool with_index = false, with_coords = false, for_file = false;
  bool mm_prefix = false;  // mmaction2's Video Swin: everything but the head under "backbone."
  DT float_dt = kF32;
  float scale = 1.0f;  // weights' magnitude
  int64_t cin = 3, embed = 4, patch[3] = {1, 1, 1};
  int stages = 1;
  int64_t depth[2] = {1, 1}, heads[2] = {1, 1}, chan[2] = {4, 8}, hidden[2] = {4, 8}, cpb[2] = {4, 4};
  int64_t window[2][3] = {{1, 1, 1}, {1, 1, 1}}, pretrained[2][2] = {{0, 0}, {0, 0}};
  int64_t classes = 3;

  std::string block(int s, int i) const {
    switch (scheme) {
      case Scheme::kTv2d:
        return "features." + std::to_string(2 * s + 1) + "." + std::to_string(i) + ".";
      case Scheme::kTv3d:
        return "features." + std::to_string(2 * s) + "." + std::to_string(i) + ".";
      default:
        return "layers." + std::to_string(s) + ".blocks." + std::to_string(i) + ".";
    }
  }
  std::string merge(int s) const {
    switch (scheme) {
      case Scheme::kTv2d:
        return "features." + std::to_string(2 * s + 2) + ".";
      case Scheme::kTv3d:
        return "features." + std::to_string(2 * s + 1) + ".";
      case Scheme::kTimm:
        return "layers." + std::to_string(timm_start ? s + 1 : s) + ".downsample.";
      default:
        return "layers." + std::to_string(s) + ".downsample.";
    }
  }
  std::string conv() const { return scheme == Scheme::kTv2d ? "features.0.0" : "patch_embed.proj"; }
  std::string embed_norm_name() const {
    return scheme == Scheme::kTv2d ? "features.0.2" : "patch_embed.norm";
  }
  std::string head() const {
    if (scheme == Scheme::kVideoSwin) return "cls_head.fc_cls";
    return head_fc ? "head.fc" : "head";
  }
  bool tv_mlp() const { return scheme == Scheme::kTv2d || scheme == Scheme::kTv3d; }
  std::string full(const std::string &name) const {
    return mm_prefix && name.compare(0, 9, "cls_head.") != 0 ? "backbone." + name : name;
  }
  std::string describe() const {
    char buf[400];
    snprintf(buf, sizeof buf,
             "%s%s cin=%lld E=%lld patch=%lldx%lldx%lld stages=%d depths=(%lld,%lld) heads=(%lld,%lld) "
             "hidden=(%lld,%lld) window0=%lldx%lldx%lld window1=%lldx%lldx%lld classes=%lld dtype=%s%s%s%s",
             kSchemeName[static_cast<int>(scheme)],
             v2          ? " v2"
             : mm_prefix ? " (backbone.)"
                         : "",
             (long long)cin, (long long)embed, (long long)patch[0], (long long)patch[1], (long long)patch[2],
             stages, (long long)depth[0], (long long)depth[1], (long long)heads[0], (long long)heads[1],
             (long long)hidden[0], (long long)hidden[1], (long long)window[0][0], (long long)window[0][1],
             (long long)window[0][2], (long long)window[1][0], (long long)window[1][1],
             (long long)window[1][2], (long long)classes, kDTName[float_dt], with_index ? " +index" : "",
             with_coords ? " +coords" : "", embed_norm ? "" : " no-embed-norm");
    return buf;
  }
};

void read_window(uint8_t b, const Spec &sp, int64_t *w, bool allow_nonsquare) {
  w[0] = sp.three_d ? 1 + (b >> 6) % 2 : 1;
  w[1] = 1 + b % 4;
  w[2] = w[1];
  if (allow_nonsquare && (b & 0x30) == 0x30) w[2] = 1 + (b >> 2) % 4;
}

Spec read_spec(Reader &r, bool for_file) {
  Spec sp;
  sp.for_file = for_file;
  const uint8_t a = r.u8();
  sp.scheme = a < 144   ? Scheme::kTv2d
              : a < 200 ? Scheme::kTimm
              : a < 228 ? Scheme::kTv3d
                        : Scheme::kVideoSwin;
  sp.three_d = sp.scheme == Scheme::kTv3d || sp.scheme == Scheme::kVideoSwin;
  const uint8_t b = r.u8();
  sp.v2 = !sp.three_d && b % 3 == 0;
  sp.timm_start = (b & 8) != 0;
  sp.head_fc = sp.scheme == Scheme::kTimm && (b & 16) != 0;
  sp.embed_norm = (b & 0xE0) != 0xE0;
  sp.mm_prefix = sp.scheme == Scheme::kVideoSwin && (b & 4);
  const uint8_t c = r.u8();
  sp.cin = 1 + c % 3;
  if (sp.three_d) {
    sp.patch[0] = 1 + (c >> 2) % 2;
    sp.patch[1] = sp.patch[2] = 1 + (c >> 3) % 2;
  } else {
    sp.patch[1] = 1 + (c >> 2) % 4;
    sp.patch[2] = (c & 0x80) ? 1 + (c >> 4) % 4 : sp.patch[1];
  }
  const uint8_t d = r.u8();
  sp.stages = 1 + d % 2;
  sp.depth[0] = 1 + (d >> 1) % 2;
  sp.depth[1] = 1 + (d >> 2) % 2;
  sp.heads[0] = 1 + (d >> 3) % 3;
  const int64_t head_dim = 1 + (d >> 5) % 4;
  sp.embed = sp.chan[0] = sp.heads[0] * head_dim;
  sp.chan[1] = 2 * sp.chan[0];
  const uint8_t e = r.u8();
  sp.heads[1] = e % 3 == 0 ? 1 : e % 3 == 1 ? sp.heads[0] : 2 * sp.heads[0];
  sp.hidden[0] = sp.chan[0] * (1 + (e >> 2) % 4);
  sp.hidden[1] = sp.chan[1] * (1 + (e >> 4) % 2);
  sp.classes = (e >> 5) == 7 ? 0 : 1 + (e >> 5) % 5;
  // Buffers: the int64 index only in files (winattn_model_create takes float dtypes); the SwinV2 window
  // needs the coordinate table (or the index), except torchvision's default window of 8.
  const uint8_t f = r.u8();
  const uint8_t wb[2] = {r.u8(), r.u8()};  // the stages' windows (read whether used or not: fixed layout)
  sp.with_index = for_file && f % 3 == 0;
  if (sp.v2) {
    sp.with_coords = f % 4 != 1 || (sp.scheme == Scheme::kTimm && !sp.with_index);
    if (!sp.with_coords && !sp.with_index) {  // torchvision's swin_v2 window
      for (auto &w : sp.window) w[0] = 1, w[1] = w[2] = 8;
    }
  }
  for (int s = 0; s < sp.stages; ++s) {
    if (sp.v2 && !sp.with_coords && !sp.with_index) break;
    // Non-square 2D windows need the index (v1) or the coordinate table (v2) to be recognised.
    read_window(wb[s], sp, sp.window[s], !sp.three_d && (sp.v2 ? sp.with_coords : sp.with_index));
    if (sp.v2 && sp.with_coords && sp.scheme == Scheme::kTimm && (f & 0x40)) {
      for (int a = 0; a < 2; ++a)
        if (sp.window[s][1 + a] > 1) sp.pretrained[s][a] = sp.window[s][1 + a] + 1 + (f >> 7) + a;
    }
  }
  if (sp.stages == 1)
    sp.timm_start = true;  // no merging: the loader cannot tell, and reads timm's newer names
  if (sp.scheme == Scheme::kTimm && !sp.timm_start) sp.head_fc = false;  // older timm: "head"
  const uint8_t g = r.u8();
  sp.cpb[0] = 1 + g % 6;
  sp.cpb[1] = 1 + (g >> 3) % 6;
  static const DT kFloatDT[8] = {kF32, kF32, kF32, kF32, kF32, kBF16, kF16, kF64};
  sp.float_dt = kFloatDT[(g >> 5) % 8];
  if (!for_file && sp.float_dt == kF64) sp.float_dt = kF32;
  static const float kScale[4] = {1.0f, 0.5f, 2.0f, 0.1f};
  sp.scale = kScale[r.u8() % 4];
  return sp;
}

// ---- Building the tensors
// -----------------------------------------------------------------------------------

struct Builder {
  const Spec &sp;
  uint64_t seed;
  std::vector<Tensor> &out;

  void values(Tensor &t, float center, float scale) {
    int64_t numel = 1;
    for (int64_t d : t.shape) numel *= d;
    t.f.resize(static_cast<size_t>(numel));
    uint64_t s = mix(seed ^ (out.size() * 0x9E3779B97F4A7C15ull));
    for (float &v : t.f) {
      s = mix(s);
      v = center + scale * (static_cast<float>(s >> 40) * (2.0f / 16777216.0f) - 1.0f);
    }
  }
  Tensor &add(const std::string &name, std::vector<int64_t> shape, float center = 0.0f, float scale = -1.0f) {
    Tensor t;
    t.name = sp.full(name);
    t.dt = sp.float_dt;
    t.shape = std::move(shape);
    values(t, center, scale < 0 ? sp.scale : scale);
    out.push_back(std::move(t));
    return out.back();
  }
  void norm(const std::string &prefix, int64_t c) {
    add(prefix + "weight", {c}, 1.0f, 0.2f);
    add(prefix + "bias", {c}, 0.0f, 0.2f);
  }
  void index(const std::string &name, const int64_t *w) {
    // torchvision's relative_position_index for a (d, h, w) window: flattened relative coordinates.
    const int64_t n = w[0] * w[1] * w[2];
    Tensor t;
    t.name = sp.full(name);
    t.kind = Kind::kIndex;
    t.dt = kI64;
    t.shape = {n * n};
    t.iv.resize(static_cast<size_t>(n * n));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) {
        const int64_t di = i / (w[1] * w[2]) - j / (w[1] * w[2]) + w[0] - 1;
        const int64_t hi = i / w[2] % w[1] - j / w[2] % w[1] + w[1] - 1;
        const int64_t wi = i % w[2] - j % w[2] + w[2] - 1;
        t.iv[static_cast<size_t>(i * n + j)] = (di * (2 * w[1] - 1) + hi) * (2 * w[2] - 1) + wi;
      }
    out.push_back(std::move(t));
  }
  void coords(const std::string &name, const int64_t *w, const int64_t *pretrained) {
    const int64_t rh = 2 * w[1] - 1, rw = 2 * w[2] - 1;
    Tensor t;
    t.name = sp.full(name);
    t.kind = Kind::kCoords;
    t.dt = sp.float_dt == kF64 ? kF64 : kF32;  // float32 buffers in torch; F16 would round beyond 1e-4
    t.shape = {1, rh, rw, 2};
    t.f.resize(static_cast<size_t>(rh * rw * 2));
    for (int64_t h = 0; h < rh; ++h)
      for (int64_t x = 0; x < rw; ++x)
        for (int a = 0; a < 2; ++a) {
          const int64_t win = w[1 + a], delta = a == 0 ? h - (w[1] - 1) : x - (w[2] - 1);
          const int64_t norm = pretrained[a] > 0 ? pretrained[a] : win;
          double v = static_cast<double>(delta);
          if (norm > 1) v /= static_cast<double>(norm - 1);
          v *= 8.0;
          const double sign = v > 0 ? 1.0 : v < 0 ? -1.0 : 0.0;
          t.f[static_cast<size_t>((h * rw + x) * 2 + a)] =
              static_cast<float>(sign * std::log2(std::fabs(v) + 1.0) / 3.0);
        }
    out.push_back(std::move(t));
  }

  void build() {
    const std::string conv = sp.conv();
    if (sp.three_d)
      add(conv + ".weight", {sp.embed, sp.cin, sp.patch[0], sp.patch[1], sp.patch[2]});
    else
      add(conv + ".weight", {sp.embed, sp.cin, sp.patch[1], sp.patch[2]});
    add(conv + ".bias", {sp.embed});
    if (sp.embed_norm) norm(sp.embed_norm_name() + ".", sp.embed);
    for (int s = 0; s < sp.stages; ++s) {
      const int64_t c = sp.chan[s], h = sp.heads[s], m = sp.hidden[s];
      const int64_t *w = sp.window[s];
      for (int i = 0; i < sp.depth[s]; ++i) {
        const std::string p = sp.block(s, i);
        norm(p + "norm1.", c);
        if (!sp.v2) {
          add(p + "attn.relative_position_bias_table", {(2 * w[0] - 1) * (2 * w[1] - 1) * (2 * w[2] - 1), h});
        } else {
          add(p + "attn.logit_scale", {h, 1, 1}, 2.3f, 0.5f);
          add(p + "attn.cpb_mlp.0.weight", {sp.cpb[s], 2});
          add(p + "attn.cpb_mlp.0.bias", {sp.cpb[s]});
          add(p + "attn.cpb_mlp.2.weight", {h, sp.cpb[s]});
          if (sp.with_coords) coords(p + "attn.relative_coords_table", w, sp.pretrained[s]);
        }
        if (sp.with_index) index(p + "attn.relative_position_index", w);
        add(p + "attn.qkv.weight", {3 * c, c});
        if (sp.v2 && sp.scheme == Scheme::kTimm) {
          add(p + "attn.q_bias", {c});
          add(p + "attn.v_bias", {c});
        } else {
          add(p + "attn.qkv.bias", {3 * c});
        }
        add(p + "attn.proj.weight", {c, c});
        add(p + "attn.proj.bias", {c});
        norm(p + "norm2.", c);
        const std::string m1 = sp.tv_mlp() ? "mlp.0." : "mlp.fc1.", m2 = sp.tv_mlp() ? "mlp.3." : "mlp.fc2.";
        add(p + m1 + "weight", {m, c});
        add(p + m1 + "bias", {m});
        add(p + m2 + "weight", {c, m});
        add(p + m2 + "bias", {c});
      }
      if (s + 1 < sp.stages) {
        const std::string p = sp.merge(s);
        add(p + "reduction.weight", {sp.chan[s + 1], 4 * c});
        norm(p + "norm.", sp.v2 ? sp.chan[s + 1] : 4 * c);
      }
    }
    const int64_t last = sp.chan[sp.stages - 1];
    norm("norm.", last);
    if (sp.classes > 0) {
      add(sp.head() + ".weight", {sp.classes, last});
      add(sp.head() + ".bias", {sp.classes});
    }
  }
};

// A tensor the model cannot do without (not a buffer, not an extra one).
bool required(const Tensor &t) {
  return t.kind == Kind::kWeight;
}

// Whether the value is stored as Inf or NaN in dtype dt.
bool encodes_nonfinite(float v, DT dt) {
  if (!std::isfinite(v)) return true;
  if (dt == kF16) return (f32_to_f16(v) & 0x7C00u) == 0x7C00u;
  if (dt == kBF16) return (f32_to_bf16(v) & 0x7F80u) == 0x7F80u;
  return false;
}

// ---- Mutations
// ----------------------------------------------------------------------------------------------

// What the mutations make of the expected status.
struct Outcome {
  int mutations = 0;
  bool must_fail = false;    // the single mutation makes the model invalid
  bool values_plain = true;  // no value was made non-finite or huge
  std::string what;          // for messages
  void add(const char *fmt, ...) __attribute__((format(printf, 2, 3))) {
    char buf[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (!what.empty()) what += "; ";
    what += buf;
  }
};

int64_t mutated_dim(Reader &r, int64_t old) {
  const uint8_t k = r.u8();
  switch (k % 8) {
    case 0:
      return 0;
    case 1:
      return old < kI64Max ? old + 1 : old - 1;  // old may be huge from an earlier mutation
    case 2:
      return old > 1 ? old - 1 : old + 2;
    case 3:
      return old <= kI64Max / 2 ? 2 * old : old / 2;
    case 4:
    case 5:
      return r.u8() % 72;
    case 6: {  // huge: the element count or byte size overflows, or too large to back
      static const int64_t kHuge[6] = {kI64Max,    int64_t(1) << 62, int64_t(1) << 40,
                                       4294967296, int64_t(1) << 61, 2147483648};
      return kHuge[r.u8() % 6];
    }
    default:
      return -1 - r.u8() % 4;  // negative (winattn_model_create only; a file's header cannot say it)
  }
}

void mutate(Reader &r, const Spec &sp, std::vector<Tensor> &ts, Outcome &o) {
  if (ts.empty()) return;
  const uint8_t op = r.u8();
  const size_t i = r.u16() % ts.size();
  Tensor &t = ts[i];
  ++o.mutations;
  switch (op % 14) {
    case 0:  // drop a tensor
      o.add("drop '%s'", t.name.c_str());
      o.must_fail |= required(t);
      ts.erase(ts.begin() + static_cast<std::ptrdiff_t>(i));
      break;
    case 1: {  // rename
      const std::string old = t.name;
      const uint8_t how = r.u8();
      if (how % 4 == 0) {
        t.name += static_cast<char>(r.u8());
      } else if (how % 4 == 1 && !t.name.empty()) {
        const size_t pos = r.u8() % t.name.size();
        t.name[pos] = static_cast<char>(t.name[pos] == '0' ? '1' : r.u8() % 2 ? '0' + r.u8() % 10 : r.u8());
      } else if (how % 4 == 2) {
        t.name = t.name.substr(0, r.u8() % (t.name.size() + 1));
      } else {
        t.name = ts[r.u16() % ts.size()].name;  // possibly a duplicate
      }
      for (char &ch : t.name)
        if (ch == '\0') ch = 'x';  // a C string ends there: winattn_model_create would see another name
      if (t.name == old) t.name += "x";
      o.add("rename '%s' to '%s'", old.c_str(), t.name.c_str());
      o.must_fail |= required(t);  // the required name is gone
      break;
    }
    case 2:
    case 3: {  // a dimension
      if (t.shape.empty()) break;
      const size_t axis = r.u8() % t.shape.size();
      const int64_t old = t.shape[axis];
      t.shape[axis] = mutated_dim(r, old);
      if (sp.for_file && t.shape[axis] < 0) t.shape[axis] = old < kI64Max - 3 ? old + 3 : 3;
      o.add("'%s' dim %zu %lld -> %lld", t.name.c_str(), axis, (long long)old, (long long)t.shape[axis]);
      break;
    }
    case 4: {  // the number of dimensions
      const uint8_t how = r.u8();
      if (how % 4 == 0 && t.shape.size() < 8) {
        t.shape.insert(t.shape.begin() + static_cast<std::ptrdiff_t>(r.u8() % (t.shape.size() + 1)), 1);
      } else if (how % 4 == 1 && !t.shape.empty()) {
        t.shape.erase(t.shape.begin() + static_cast<std::ptrdiff_t>(r.u8() % t.shape.size()));
      } else if (how % 4 == 2) {
        t.shape.assign(1 + r.u8() % 9, 1);  // up to 9 dimensions: more than the format allows
        t.shape[0] = static_cast<int64_t>(t.f.size() + t.iv.size());
      } else {
        t.ndim_override = static_cast<int8_t>(r.u8());  // winattn_model_create: any int8
        if (sp.for_file) t.shape.clear();
      }
      o.add("'%s' ndim -> %zu (override %d)", t.name.c_str(), t.shape.size(), t.ndim_override);
      if (t.ndim_override != -100 && !sp.for_file && (t.ndim_override < 0 || t.ndim_override > 8))
        o.must_fail = true;
      break;
    }
    case 5: {  // dtype
      const DT old = t.dt;
      if (!sp.for_file && r.u8() % 2) {
        t.bad_dtype = true;
        t.dtype_value = static_cast<int8_t>(r.u8());
        if (t.dtype_value >= 0 && t.dtype_value <= 2) t.dtype_value += 3;
        o.add("'%s' winattn_dtype %d", t.name.c_str(), t.dtype_value);
        o.must_fail = true;
        break;
      }
      t.dt = static_cast<DT>(r.u8() % kNumDT);
      if (!sp.for_file && t.dt > kF16) t.dt = static_cast<DT>(t.dt % 3);
      o.add("'%s' dtype %s -> %s", t.name.c_str(), kDTName[old], kDTName[t.dt]);
      if (t.kind == Kind::kIndex) {
        o.must_fail |= t.dt != kI64 && t.dt != kI32;
      } else if (t.kind != Kind::kExtra) {
        o.must_fail |= !dt_float(t.dt);
        // The coordinate table must match its formula within 1e-4: refused when the rounding to 16 bits
        // moves a value further (log2(9)/3 happens to be within 1.1e-6 of an F16 value: window 2 passes).
        if (t.kind == Kind::kCoords && (t.dt == kF16 || t.dt == kBF16)) {
          float worst = 0.0f;
          for (float v : t.f) worst = std::max(worst, std::fabs(round_trip(v, t.dt) - v));
          if (worst > 2e-4f) o.must_fail = true;
        }
      }
      break;
    }
    case 6:
    case 7: {  // special values
      if ((t.kind != Kind::kWeight && t.kind != Kind::kCoords) || t.f.empty()) break;
      static const float kSpecial[6] = {std::numeric_limits<float>::quiet_NaN(),
                                        std::numeric_limits<float>::infinity(),
                                        -std::numeric_limits<float>::infinity(),
                                        std::numeric_limits<float>::max(),
                                        1e20f,
                                        -1e30f};
      const int which = r.u8() % 6;
      const size_t pos = r.u16() % t.f.size();
      t.f[pos] = kSpecial[which];
      o.values_plain = false;
      o.add("'%s'[%zu] = %g", t.name.c_str(), pos, kSpecial[which]);
      // Non-finite as stored (F16 and BF16 round large values to Inf); the coordinate table is checked
      // exactly.
      if (encodes_nonfinite(kSpecial[which], t.dt) || t.kind == Kind::kCoords) o.must_fail = true;
      break;
    }
    case 8: {  // duplicate
      Tensor copy = t;
      o.add("duplicate '%s'", t.name.c_str());
      ts.push_back(std::move(copy));
      o.must_fail = true;
      break;
    }
    case 9: {  // index buffer: a wrong entry, I32, or one added where there was none
      size_t k = ts.size();
      for (size_t j = 0; j < ts.size(); ++j)
        if (ts[(i + j) % ts.size()].kind == Kind::kIndex) {
          k = (i + j) % ts.size();
          break;
        }
      if (k == ts.size()) {
        // Add one to block 0 of stage 0: in winattn_model_create as F32 (refused), in a file as I64 of a
        // window that may be another one.
        Builder b{sp, 1, ts};
        int64_t w[3] = {sp.window[0][0], sp.window[0][1], sp.window[0][2]};
        if (r.u8() % 2) w[1 + r.u8() % 2] += 1;
        b.index(sp.block(0, 0) + "attn.relative_position_index", w);
        if (!sp.for_file) {
          ts.back().dt = kF32;
          o.must_fail = true;
        }
        o.add("index for %lldx%lldx%lld added", (long long)w[0], (long long)w[1], (long long)w[2]);
        break;
      }
      Tensor &x = ts[k];
      const uint8_t how = r.u8();
      if (how % 3 == 0) {
        x.dt = kI32;
        o.add("'%s' as I32", x.name.c_str());
      } else if (!x.iv.empty()) {
        const size_t pos = r.u16() % x.iv.size();
        static const uint64_t kDelta[4] = {1, ~uint64_t(0), uint64_t(1) << 40, uint64_t(1) << 63};
        x.iv[pos] = how % 3 == 1 ? static_cast<int64_t>(static_cast<uint64_t>(x.iv[pos]) + kDelta[r.u8() % 4])
                                 : ~x.iv[pos];
        o.add("'%s'[%zu] = %lld", x.name.c_str(), pos, (long long)x.iv[pos]);
        o.must_fail = true;
      }
      break;
    }
    case 10: {  // an extra tensor
      const uint8_t how = r.u8();
      Tensor x;
      x.kind = Kind::kExtra;
      x.shape = {1 + r.u8() % 4};
      x.f.assign(static_cast<size_t>(x.shape[0]), 0.5f);
      if (how % 4 == 0) {
        x.name = sp.full(sp.block(0, 0) + "attn_mask");  // a buffer the loader ignores
      } else if (how % 4 == 1) {
        x.name = sp.full(sp.block(0, static_cast<int>(sp.depth[0])) +
                         "norm1.weight");  // a block without its tensors
        o.must_fail = true;
      } else if (how % 4 == 2) {
        x.name = sp.full(sp.block(sp.stages, 0) + "norm1.weight");  // a stage without merging or tensors
        o.must_fail = true;
      } else {
        x.name = "extra." + std::to_string(r.u8());
        o.must_fail = true;
      }
      o.add("extra '%s'", x.name.c_str());
      ts.push_back(std::move(x));
      break;
    }
    case 11: {  // coordinate table values (the loader checks them against the formula)
      if (t.kind != Kind::kCoords || t.f.size() < 2) break;
      const size_t pos = r.u16() % t.f.size();
      t.f[pos] += 0.01f + static_cast<float>(r.u8());
      o.add("'%s'[%zu] changed", t.name.c_str(), pos);
      o.must_fail = true;
      break;
    }
    case 12:  // winattn_model_create only: NULL name or NULL data
      if (sp.for_file) break;
      if (r.u8() % 2) {
        t.null_name = true;
        o.add("'%s' with a NULL name", t.name.c_str());
      } else {
        t.null_data = true;
        o.add("'%s' with NULL data", t.name.c_str());
      }
      o.must_fail = true;
      break;
    default:  // huge or tiny finite values (no failure expected; the outputs may overflow)
      if (t.kind != Kind::kWeight) break;
      for (float &v : t.f) {
        v *= 1e30f;
        if (encodes_nonfinite(v, t.dt)) o.must_fail = true;
      }
      o.values_plain = false;
      o.add("'%s' scaled by 1e30", t.name.c_str());
      break;
  }
}

// ---- The safetensors file
// -----------------------------------------------------------------------------------

std::string json_name(const std::string &s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += static_cast<char>(c);
    } else if (c < 0x20) {
      char b[8];
      snprintf(b, sizeof b, "\\u%04x", c);
      o += b;
    } else {
      o += static_cast<char>(c);
    }
  }
  return o + "\"";
}

std::vector<unsigned char> serialize(Reader &r, const std::vector<Tensor> &ts) {
  const uint8_t opt = r.u8();
  std::vector<size_t> order(ts.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  if (!order.empty() && (opt & 1))
    std::rotate(order.begin(), order.begin() + opt % order.size(), order.end());
  if (opt & 2) std::reverse(order.begin(), order.end());
  std::string header = "{";
  if (opt & 4) header += "\"__metadata__\":{\"format\":\"pt\"},";
  std::vector<unsigned char> data;
  for (size_t k = 0; k < order.size(); ++k) {
    const Tensor &t = ts[order[k]];
    if (opt & 8) data.resize(data.size() + (r.u8() % 8 == 0 ? 1 + r.u8() % 8 : 0), 0);  // a gap
    const size_t begin = data.size();
    if (t.backed) {
      data.insert(data.end(), t.bytes.begin(), t.bytes.end());
    } else {
      data.resize(data.size() + r.u8() % 16, 0x3F);  // a claim the bytes cannot hold
    }
    std::string shape = "[";
    for (size_t d = 0; d < t.shape.size(); ++d) {
      if (d) shape += ",";
      shape += std::to_string(static_cast<uint64_t>(t.shape[d]));
    }
    shape += "]";
    if (k) header += ",";
    header += json_name(t.name) + ":{\"dtype\":\"" + kDTName[t.dt] + "\",\"shape\":" + shape +
              ",\"data_offsets\":[" + std::to_string(begin) + "," + std::to_string(data.size()) + "]}";
  }
  header += "}";
  while (header.size() % 8) header += ' ';
  std::vector<unsigned char> file(8);
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) file[static_cast<size_t>(i)] = static_cast<unsigned char>(n >> (8 * i));
  file.insert(file.end(), header.begin(), header.end());
  file.insert(file.end(), data.begin(), data.end());
  return file;
}

// Byte-level mutations of a file; returns how many were made.
int mutate_bytes(Reader &r, std::vector<unsigned char> &file) {
  const int count = r.u8() % 4 == 0 ? 1 + r.u8() % 3 : 0;
  for (int m = 0; m < count && !file.empty(); ++m) {
    const uint8_t op = r.u8();
    const size_t pos = r.u32() % file.size();
    uint64_t header_n = 0;
    for (int i = 7; i >= 0 && file.size() >= 8; --i) header_n = header_n << 8 | file[static_cast<size_t>(i)];
    const size_t header_end = static_cast<size_t>(std::min<uint64_t>(file.size(), 8 + header_n));
    switch (op % 7) {
      case 0:
        file[pos] = r.u8();
        break;
      case 1:
        file[pos] ^= static_cast<unsigned char>(1u << (r.u8() % 8));
        break;
      case 2:  // truncate
        file.resize(pos);
        break;
      case 3: {  // the length field
        static const uint64_t kLen[6] = {0, 1, 7, uint64_t(100) << 20, ~uint64_t(0), uint64_t(1) << 63};
        uint64_t v =
            r.u8() % 2 ? header_n + static_cast<uint64_t>(static_cast<int8_t>(r.u8())) : kLen[r.u8() % 6];
        for (int i = 0; i < 8 && i < static_cast<int>(file.size()); ++i)
          file[static_cast<size_t>(i)] = static_cast<unsigned char>(v >> (8 * i));
        break;
      }
      case 4: {  // a number in the header replaced
        size_t start = 8 + (header_end > 8 ? r.u32() % (header_end - 8) : 0);
        while (start < header_end && !(file[start] >= '0' && file[start] <= '9')) ++start;
        size_t end = start;
        while (end < header_end && file[end] >= '0' && file[end] <= '9') ++end;
        if (start >= header_end) break;
        static const char *const kNum[10] = {"0",
                                             "-1",
                                             "18446744073709551615",
                                             "9223372036854775807",
                                             "9223372036854775808",
                                             "1e3",
                                             "4294967296",
                                             "99999999999999999999999",
                                             "1.5",
                                             "-0"};
        const std::string s = kNum[r.u8() % 10];
        file.erase(file.begin() + static_cast<std::ptrdiff_t>(start),
                   file.begin() + static_cast<std::ptrdiff_t>(end));
        file.insert(file.begin() + static_cast<std::ptrdiff_t>(start), s.begin(), s.end());
        break;
      }
      case 5: {  // a dtype string replaced
        static const char *const kTypes[6] = {"I64", "F64", "BF16", "XYZ", "F8_E4M3", "F3"};
        const std::string needle = "\"F32\"";
        auto it = std::search(file.begin() + 8, file.begin() + static_cast<std::ptrdiff_t>(header_end),
                              needle.begin(), needle.end());
        if (it == file.begin() + static_cast<std::ptrdiff_t>(header_end)) break;
        const std::string s = std::string("\"") + kTypes[r.u8() % 6] + "\"";
        const auto at = it - file.begin();
        file.erase(it, it + static_cast<std::ptrdiff_t>(needle.size()));
        file.insert(file.begin() + at, s.begin(), s.end());
        break;
      }
      default: {  // insert bytes from the input
        const size_t n = 1 + r.u8() % 8;
        std::vector<unsigned char> b(n);
        for (auto &x : b) x = r.u8();
        file.insert(file.begin() + static_cast<std::ptrdiff_t>(pos), b.begin(), b.end());
        break;
      }
    }
  }
  return count;
}

// A file the library can open: a memfd (its /proc/self/fd path), else a temporary file. Removed on scope
// exit.
class TempFile {
 public:
  explicit TempFile(const std::vector<unsigned char> &bytes) {
#ifdef MFD_CLOEXEC
    fd_ = memfd_create("winattn-fuzz-model", MFD_CLOEXEC);
#endif
    if (fd_ >= 0) {
      snprintf(path_, sizeof path_, "/proc/self/fd/%d", fd_);
    } else {
      snprintf(path_, sizeof path_, "/tmp/winattn-fuzz-model-XXXXXX");
      fd_ = mkstemp(path_);
      CHECK(fd_ >= 0, "cannot create a temporary file");
      unlink_ = true;
    }
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
      CHECK(n > 0, "cannot write the temporary file");
      done += static_cast<size_t>(n);
    }
  }
  ~TempFile() {
    if (unlink_) ::unlink(path_);
    ::close(fd_);
  }
  const char *path() const {
    return path_;
  }

 private:
  int fd_ = -1;
  bool unlink_ = false;
  char path_[64];
};

// ---- Running a model
// ----------------------------------------------------------------------------------------

winattn_model *const kModelSentinel = reinterpret_cast<winattn_model *>(uintptr_t{0x5EED});

struct Run {
  const Spec &sp;
  bool check_info;     // the model is the unmutated spec
  bool expect_finite;  // weights and input moderate and finite
};

std::string status_text(winattn_status s) {
  return std::to_string(static_cast<int>(s)) + " (" + winattn_status_string(s) + ")";
}

// A call that must fail with an argument error (INVALID_ARGUMENT) and leave its outputs alone.
void expect_invalid(winattn_status s, const std::string &prev) {
  check_status(s, Expect::kFail, prev);
  CHECK(s == WINATTN_STATUS_INVALID_ARGUMENT, "expected INVALID_ARGUMENT, got %s", status_text(s).c_str());
}

void check_info(const Spec &sp, const winattn_model_info &info) {
  const winattn_model_family fam = sp.three_d ? WINATTN_MODEL_SWIN_3D
                                   : sp.v2    ? WINATTN_MODEL_SWIN_V2
                                              : WINATTN_MODEL_SWIN;
  CHECK(info.family == fam, "family %d, expected %d", (int)info.family, (int)fam);
  CHECK(info.in_channels == sp.cin && info.embed_dim == sp.embed && info.num_classes == sp.classes &&
            info.num_stages == sp.stages,
        "info: in_channels %lld embed %lld classes %lld stages %lld", (long long)info.in_channels,
        (long long)info.embed_dim, (long long)info.num_classes, (long long)info.num_stages);
  for (int s = 0; s < 8; ++s) {
    const int64_t want_depth = s < sp.stages ? sp.depth[s] : 0, want_heads = s < sp.stages ? sp.heads[s] : 0;
    CHECK(info.depths[s] == want_depth && info.num_heads[s] == want_heads,
          "info: stage %d depth %lld heads %lld, expected %lld %lld", s, (long long)info.depths[s],
          (long long)info.num_heads[s], (long long)want_depth, (long long)want_heads);
  }
  for (int d = 0; d < 3; ++d) {
    const int64_t want_patch = sp.three_d || d > 0 ? sp.patch[d] : 1;
    CHECK(info.patch[d] == want_patch, "info.patch[%d] = %lld, expected %lld", d, (long long)info.patch[d],
          (long long)want_patch);
  }
  // A (1, k) window and its transpose (k, 1) have the same table rows, tokens and index: the tensors cannot
  // tell them apart, and the loader takes (k, 1) (winattn.h). Every other window must be the one given.
  const int64_t *w = sp.window[0];
  const bool transposed = !sp.v2 && w[1] == 1 && w[2] > 1 && info.window[0] == w[0] &&
                          info.window[1] == w[2] && info.window[2] == 1;
  CHECK(transposed || (info.window[0] == w[0] && info.window[1] == w[1] && info.window[2] == w[2]),
        "info.window = %lldx%lldx%lld, expected %lldx%lldx%lld", (long long)info.window[0],
        (long long)info.window[1], (long long)info.window[2], (long long)w[0], (long long)w[1],
        (long long)w[2]);
}

// Argument errors of classify / features / feature_shapes / get_info: each must fail without writing.
void argument_errors(Reader &r, winattn_model *model, const winattn_model_info &info, const int64_t *size,
                     const std::vector<float> &input, int64_t batch) {
  const int count = r.u8() % 3;
  std::vector<float> logits(static_cast<size_t>(std::max<int64_t>(1, batch * info.num_classes)) + 8);
  for (int k = 0; k < count; ++k) {
    const uint8_t op = r.u8();
    int64_t bad[3] = {size[0], size[1], size[2]};
    int64_t b = batch;
    const float *in = input.data();
    float *out = logits.data();
    bool call_features = op & 0x80;
    switch (op % 10) {
      case 0:
        b = -static_cast<int64_t>(r.u8() % 3);
        break;
      case 1:
        bad[r.u8() % 3] = -static_cast<int64_t>(r.u8() % 2);
        break;
      case 2:  // frames for a 2D model, or a size below the patch
        if (info.family != WINATTN_MODEL_SWIN_3D) {
          bad[0] = 2;
        } else {
          bad[1] = 0;
        }
        break;
      case 3:
        if (info.family == WINATTN_MODEL_SWIN_3D || info.patch[1] < 2) {
          bad[2] = kI64Min;
        } else {
          bad[1] = info.patch[1] - 1;
        }
        break;
      case 4:
        in = nullptr;
        break;
      case 5:
        out = nullptr;
        break;
      case 6: {  // sizes whose product overflows
        bad[1] = int64_t(1) << 40;
        bad[2] = int64_t(1) << 40;
        if (info.family == WINATTN_MODEL_SWIN_3D) bad[0] = int64_t(1) << 40;
        break;
      }
      case 7:
        b = kI64Max / 2;
        break;
      case 8:  // output overlapping the input (classify only: features arrays checked below)
        out = const_cast<float *>(input.data()) + input.size() / 2;
        call_features = false;
        break;
      default: {  // feature_shapes and get_info with NULLs or a bad size
        int64_t shapes[32];
        std::memset(shapes, 0x5A, sizeof shapes);
        set_ctx("winattn_model_feature_shapes(bad size / NULL)");
        std::string prev = last_msg();
        expect_invalid(
            winattn_model_feature_shapes(model, (op & 16) ? nullptr : bad, (op & 16) ? shapes : nullptr),
            prev);
        prev = last_msg();
        bad[1] = 0;
        expect_invalid(winattn_model_feature_shapes(model, bad, shapes), prev);
        for (int64_t v : shapes) CHECK(v == 0x5A5A5A5A5A5A5A5All, "a failed feature_shapes wrote shapes");
        set_ctx("winattn_model_get_info(NULL) / get_num_threads(NULL) / set_num_threads(bad)");
        prev = last_msg();
        expect_invalid(winattn_model_get_info(model, nullptr), prev);
        prev = last_msg();
        expect_invalid(winattn_model_get_num_threads(model, nullptr), prev);
        prev = last_msg();
        expect_invalid(winattn_model_set_num_threads(model, (op & 32) ? -1 : WINATTN_MAX_THREADS + 1), prev);
        continue;
      }
    }
    std::fill(logits.begin(), logits.end(), -7.0f);
    const std::vector<float> before_in = input;
    if (!call_features) {
      set_ctx("winattn_model_classify(argument error %d: batch %lld size {%lld,%lld,%lld}%s%s)", op % 10,
              (long long)b, (long long)bad[0], (long long)bad[1], (long long)bad[2], in ? "" : " NULL input",
              out ? "" : " NULL logits");
      const std::string prev = last_msg();
      expect_invalid(winattn_model_classify(model, in, b, bad, out), prev);
    } else {
      std::vector<float> dummy(16, -7.0f);
      float *feats[8];
      for (int s = 0; s < 8; ++s) feats[s] = dummy.data();
      set_ctx("winattn_model_features(argument error %d: batch %lld size {%lld,%lld,%lld}%s)", op % 10,
              (long long)b, (long long)bad[0], (long long)bad[1], (long long)bad[2], in ? "" : " NULL input");
      const std::string prev = last_msg();
      expect_invalid(winattn_model_features(model, in, b, bad, op % 10 == 5 ? nullptr : feats), prev);
      for (float v : dummy) CHECK(v == -7.0f, "a failed features call wrote a feature array");
    }
    for (float v : logits) CHECK(v == -7.0f, "a failed classify wrote logits");
    CHECK(std::memcmp(before_in.data(), input.data(), input.size() * sizeof(float)) == 0,
          "a failed call modified the input");
  }
}

// Everything on a created model; destroys it.
void exercise(Reader &r, winattn_model *model, const Run &run) {
  winattn_model_info info;
  std::memset(&info, 0x33, sizeof info);
  set_ctx("winattn_model_get_info(%s)", run.sp.describe().c_str());
  std::string prev = last_msg();
  check_status(winattn_model_get_info(model, &info), Expect::kOk, prev);
  if (run.check_info) check_info(run.sp, info);
  CHECK(info.num_stages >= 1 && info.num_stages <= 8 && info.in_channels >= 1 && info.num_classes >= 0,
        "info out of range: stages %lld in_channels %lld classes %lld", (long long)info.num_stages,
        (long long)info.in_channels, (long long)info.num_classes);
  int threads = -1;
  CHECK(winattn_model_get_num_threads(model, &threads) == WINATTN_STATUS_OK, "get_num_threads");

  // A small input: a few patches per window, bounded work (a mutated model may have other patches).
  const bool three_d = info.family == WINATTN_MODEL_SWIN_3D;
  int64_t batch = 1 + r.u8() % 2;
  int64_t size[3];
  const uint8_t gs = r.u8(), gs2 = r.u8();
  const int64_t wmax = std::max<int64_t>(1, std::min<int64_t>(8, std::max(info.window[1], info.window[2])));
  if (three_d) {
    size[0] = 1 + gs % 4;
    size[1] = 1 + (gs >> 2) % (2 * wmax * info.patch[1] + 1);
    size[2] = 1 + gs2 % (2 * wmax * info.patch[2] + 1);
  } else {
    size[0] = 1;
    size[1] = info.patch[1] * (1 + gs % (2 * wmax + 1)) + (gs >> 4) % info.patch[1];
    size[2] = info.patch[2] * (1 + gs2 % (2 * wmax + 1)) + (gs2 >> 4) % info.patch[2];
  }
  auto input_elems = [&] { return batch * info.in_channels * size[0] * size[1] * size[2]; };
  while (input_elems() > (int64_t(1) << 15) &&
         (size[1] > info.patch[1] || size[2] > info.patch[2] || batch > 1)) {
    if (batch > 1) {
      --batch;
    } else if (size[1] >= size[2] && size[1] > info.patch[1]) {
      size[1] = std::max(info.patch[1], size[1] / 2);
    } else {
      size[2] = std::max(info.patch[2], size[2] / 2);
    }
  }
  if (input_elems() > (int64_t(1) << 17) || info.embed_dim > 512) {  // a mutated model too large to run
    winattn_model_destroy(model);
    return;
  }
  std::vector<float> input(static_cast<size_t>(input_elems()));
  fill_plain(r, input.data(), input.size());
  for (float &v : input) v = std::max(-2.0f, std::min(2.0f, v));  // moderate even at large fill scales
  const bool input_special = r.rare(8);
  if (input_special) input[r.u16() % input.size()] = std::numeric_limits<float>::quiet_NaN();
  const bool finite_expected = run.expect_finite && !input_special;

  // Feature shapes.
  const int stages = static_cast<int>(info.num_stages);
  std::vector<int64_t> shapes(static_cast<size_t>(4 * stages) + 4, -3);
  set_ctx("winattn_model_feature_shapes(%s, size {%lld,%lld,%lld})", run.sp.describe().c_str(),
          (long long)size[0], (long long)size[1], (long long)size[2]);
  prev = last_msg();
  check_status(winattn_model_feature_shapes(model, size, shapes.data()), Expect::kOk, prev);
  for (int k = 0; k < 4; ++k)
    CHECK(shapes[static_cast<size_t>(4 * stages + k)] == -3, "feature_shapes wrote past [stages][4]");
  int64_t grid[3];
  for (int d = 0; d < 3; ++d)
    grid[d] = three_d ? (size[d] + info.patch[d] - 1) / info.patch[d] : size[d] / info.patch[d];
  std::vector<size_t> counts(static_cast<size_t>(stages));
  size_t total = 0;
  for (int s = 0; s < stages; ++s) {
    if (s > 0) grid[1] = (grid[1] + 1) / 2, grid[2] = (grid[2] + 1) / 2;
    const int64_t *sh = &shapes[static_cast<size_t>(4 * s)];
    CHECK(sh[0] == grid[0] && sh[1] == grid[1] && sh[2] == grid[2] && sh[3] >= 1 && sh[3] <= 4096,
          "feature_shapes stage %d = (%lld,%lld,%lld,%lld), expected grid (%lld,%lld,%lld)", s,
          (long long)sh[0], (long long)sh[1], (long long)sh[2], (long long)sh[3], (long long)grid[0],
          (long long)grid[1], (long long)grid[2]);
    if (run.check_info) {
      CHECK(sh[3] == run.sp.chan[s], "stage %d channels %lld, expected %lld", s, (long long)sh[3],
            (long long)run.sp.chan[s]);
    }
    counts[static_cast<size_t>(s)] = static_cast<size_t>(batch * sh[0] * sh[1] * sh[2] * sh[3]);
    total += counts[static_cast<size_t>(s)];
  }
  if (total > (size_t(1) << 18)) {
    winattn_model_destroy(model);
    return;
  }

  argument_errors(r, model, info, size, input, batch);

  const std::vector<float> input_copy = input;
  const uint8_t what = r.u8();
  // classify
  std::vector<float> logits;
  if (info.num_classes > 0 && what % 4 != 3) {
    logits.assign(static_cast<size_t>(batch * info.num_classes) + 1, -5.0f);
    set_ctx("winattn_model_classify(%s, batch %lld, size {%lld,%lld,%lld})", run.sp.describe().c_str(),
            (long long)batch, (long long)size[0], (long long)size[1], (long long)size[2]);
    prev = last_msg();
    check_status(winattn_model_classify(model, input.data(), batch, size, logits.data()), Expect::kOk, prev);
    CHECK(logits.back() == -5.0f, "classify wrote past [batch][classes]");
    logits.pop_back();
    if (finite_expected)
      CHECK(all_finite(logits.data(), logits.size(), 3e38f),
            "non-finite logits from finite moderate weights");
  } else if (info.num_classes == 0) {
    std::vector<float> l(4, -5.0f);
    set_ctx("winattn_model_classify(backbone)");
    prev = last_msg();
    expect_invalid(winattn_model_classify(model, input.data(), batch, size, l.data()), prev);
    for (float v : l) CHECK(v == -5.0f, "a failed classify wrote logits");
  }
  // features: each stage or NULL, in one allocation with a guard float after each array
  std::vector<float> feats;
  std::vector<float *> ptrs(static_cast<size_t>(stages), nullptr);
  if (what % 4 != 0 || info.num_classes == 0) {
    feats.assign(total + static_cast<size_t>(stages), -6.0f);
    size_t off = 0;
    const uint8_t mask = r.u8();
    bool any = false;
    for (int s = 0; s < stages; ++s) {
      if ((mask >> s) & 1 && !(s == stages - 1 && !any)) {
        off += counts[static_cast<size_t>(s)] + 1;
        continue;
      }
      ptrs[static_cast<size_t>(s)] = feats.data() + off;
      off += counts[static_cast<size_t>(s)] + 1;
      any = true;
    }
    set_ctx("winattn_model_features(%s, batch %lld, size {%lld,%lld,%lld}, mask %02x)",
            run.sp.describe().c_str(), (long long)batch, (long long)size[0], (long long)size[1],
            (long long)size[2], mask);
    prev = last_msg();
    check_status(winattn_model_features(model, input.data(), batch, size, ptrs.data()), Expect::kOk, prev);
    off = 0;
    for (int s = 0; s < stages; ++s) {
      const size_t n = counts[static_cast<size_t>(s)];
      CHECK(feats[off + n] == -6.0f, "features[%d] written past its %zu floats", s, n);
      if (ptrs[static_cast<size_t>(s)] == nullptr) {
        for (size_t k = 0; k < n; ++k) CHECK(feats[off + k] == -6.0f, "features[%d] (NULL) written", s);
      } else if (finite_expected) {
        CHECK(all_finite(feats.data() + off, n, 3e38f),
              "non-finite features[%d] from finite moderate weights", s);
      }
      off += n + 1;
    }
  }
  CHECK(std::memcmp(input_copy.data(), input.data(), input.size() * sizeof(float)) == 0,
        "the input was modified");

  // The same calls with another thread budget (model's, or the process's through budget 0): the same bits.
  if ((what & 0x30) == 0x30) {
    const int budget = (what >> 6) % 3;  // 0: process setting (set to 2), 1, 2
    if (budget == 0) winattn_set_num_threads(2);
    set_ctx("winattn_model_set_num_threads(%d) and the calls again", budget);
    CHECK(winattn_model_set_num_threads(model, budget == 0 ? 0 : (threads == 2 ? 1 : 2)) == WINATTN_STATUS_OK,
          "set_num_threads");
    if (!logits.empty()) {
      std::vector<float> again(logits.size(), -5.0f);
      CHECK(winattn_model_classify(model, input.data(), batch, size, again.data()) == WINATTN_STATUS_OK,
            "classify");
      const size_t i = first_difference(again.data(), logits.data(), logits.size());
      CHECK(i == logits.size(), "logits[%zu] = %.9g with another thread budget, %.9g before", i, again[i],
            logits[i]);
    }
    if (!feats.empty()) {
      std::vector<float> again(feats.size(), -6.0f);
      std::vector<float *> p2(ptrs.size(), nullptr);
      for (size_t s = 0; s < ptrs.size(); ++s)
        if (ptrs[s]) p2[s] = again.data() + (ptrs[s] - feats.data());
      CHECK(winattn_model_features(model, input.data(), batch, size, p2.data()) == WINATTN_STATUS_OK,
            "features");
      const size_t i = first_difference(again.data(), feats.data(), feats.size());
      CHECK(i == feats.size(), "features float %zu = %.9g with another thread budget, %.9g before", i,
            again[i], feats[i]);
    }
    winattn_set_num_threads(1);
  }

  // Overlapping feature arrays: refused, nothing written.
  if (!feats.empty() && stages >= 2 && (what & 0x0C) == 0x0C) {
    std::vector<float> shared(counts[0] + counts[1] + 2, -6.0f);
    std::vector<float *> p(static_cast<size_t>(stages), nullptr);
    p[0] = shared.data();
    p[1] = shared.data() + counts[0] / 2 + (counts[0] > 1 ? 0 : 0);
    if (counts[0] >= 1) {
      set_ctx("winattn_model_features(overlapping feature arrays)");
      prev = last_msg();
      expect_invalid(winattn_model_features(model, input.data(), batch, size, p.data()), prev);
      for (float v : shared) CHECK(v == -6.0f, "a failed features call wrote");
    }
  }

  winattn_model_destroy(model);
  // A destroyed handle: refused, nothing written (the address may be reused only by another model: none).
  if (what & 2) {
    winattn_model_info after;
    std::memset(&after, 0x44, sizeof after);
    set_ctx("winattn_model_get_info / classify on a destroyed model");
    prev = last_msg();
    expect_invalid(winattn_model_get_info(model, &after), prev);
    const unsigned char *bytes = reinterpret_cast<const unsigned char *>(&after);
    for (size_t k = 0; k < sizeof after; ++k) CHECK(bytes[k] == 0x44, "a failed get_info wrote info");
    float l[2] = {-5.0f, -5.0f};
    prev = last_msg();
    expect_invalid(winattn_model_classify(model, input.data(), batch, size, l), prev);
    CHECK(l[0] == -5.0f && l[1] == -5.0f, "a failed classify wrote logits");
    winattn_model_destroy(model);  // ignored
  }
}

// The tensors as winattn_tensor records (pointers into ts) for winattn_model_create.
std::vector<winattn_tensor> as_records(Reader &r, std::vector<Tensor> &ts, Outcome &o,
                                       std::vector<float> &dummy) {
  std::vector<winattn_tensor> rec(ts.size());
  for (size_t i = 0; i < ts.size(); ++i) {
    Tensor &t = ts[i];
    winattn_tensor &w = rec[i];
    std::memset(&w, 0, sizeof w);
    w.name = t.null_name ? nullptr : t.name.c_str();
    // Any int, as a C caller may pass: stored without forming an out-of-range enum value in C++.
    const int dtype = t.bad_dtype ? t.dtype_value : t.dt <= kF16 ? static_cast<int>(t.dt) : 7;
    static_assert(sizeof(int) == sizeof(winattn_dtype), "winattn_dtype is int-sized");
    std::memcpy(&w.dtype, &dtype, sizeof dtype);
    w.ndim =
        static_cast<int32_t>(t.ndim_override != -100 ? t.ndim_override : static_cast<int>(t.shape.size()));
    if (t.shape.size() > 8) w.ndim = static_cast<int32_t>(t.shape.size());  // 9: refused before shape is read
    for (size_t d = 0; d < t.shape.size() && d < 8; ++d) w.shape[d] = t.shape[d];
    if (t.ndim_override >= 0 && t.ndim_override <= 8)
      for (int d = static_cast<int>(t.shape.size()); d < t.ndim_override; ++d) w.shape[d] = 1;
    if (t.backed) {
      w.data = t.bytes.empty() ? (r.u8() % 2 ? nullptr : t.bytes.data()) : t.bytes.data();
    } else {
      w.data = dummy.data();  // the sizes overflow: the library refuses the tensor before reading it
    }
    if (t.null_data) w.data = nullptr;
  }
  // Sizes of records whose (ndim, shape) differ from the Tensor's (ndim overrides): make their claims
  // either overflow or be backed, never a readable lie.
  for (size_t i = 0; i < ts.size(); ++i) {
    winattn_tensor &w = rec[i];
    if (w.ndim < 0 || w.ndim > 8) continue;
    const std::vector<int64_t> shape(w.shape, w.shape + w.ndim);
    int64_t numel;
    bool overflow;
    const size_t es = !ts[i].bad_dtype && ts[i].dt <= kF16 ? dt_size(ts[i].dt) : 4;
    if (!shape_numel(shape, es, &numel, &overflow)) continue;  // negative: refused
    if (overflow) continue;
    const size_t need = static_cast<size_t>(numel) * es;
    if (w.data == dummy.data() || need > ts[i].bytes.size()) {
      // Force an overflow: the claim cannot be backed.
      if (w.ndim == 0) {
        w.ndim = 1;
      }
      w.shape[0] = kI64Max;
      if (numel == 0) w.shape[0] = 0;  // a zero elsewhere: empty, nothing read
    }
  }
  // Overlapping data (two non-empty tensors sharing bytes): refused.
  if (r.rare(16) && ts.size() >= 2) {
    const size_t a = r.u16() % ts.size(), b = r.u16() % ts.size();
    if (a != b && ts[a].backed && ts[b].backed && !ts[a].bytes.empty() && !ts[b].bytes.empty() &&
        rec[a].data && rec[b].data) {
      ++o.mutations;
      o.must_fail = true;
      o.add("'%s' and '%s' share data", ts[a].name.c_str(), ts[b].name.c_str());
      if (ts[b].bytes.size() <= ts[a].bytes.size())
        rec[b].data = rec[a].data;
      else
        rec[a].data = rec[b].data;
    }
  }
  return rec;
}

}  // namespace

void target_model(Reader &r) {
  const uint8_t path = r.u8();
  const bool file = path % 4 == 3;
  const Spec sp = read_spec(r, file);
  std::vector<Tensor> ts;
  Builder b{sp, 0x1234567ull ^ (static_cast<uint64_t>(r.u16()) << 20), ts};
  b.build();
  Outcome o;
  const int mutations = r.u8() % 8;  // 0..3 most of the time: 0 for half of the inputs
  const int count = mutations < 4 ? 0 : mutations - 3;
  for (int m = 0; m < count; ++m) mutate(r, sp, ts, o);
  for (Tensor &t : ts) layout(t);
  // Options: NULL, valid, or invalid (refused whatever the tensors).
  winattn_model_options opts;
  std::memset(&opts, 0, sizeof opts);
  const winattn_model_options *options = nullptr;
  const uint8_t ob = r.u8();
  bool bad_options = false;
  winattn_status options_status = WINATTN_STATUS_OK;
  if (ob % 4 == 1) {
    opts.num_threads = (ob >> 2) % 3;
    options = &opts;
  } else if (ob % 4 == 2 && (ob & 0x30) == 0x30) {
    const int k = (ob >> 6) % 4;
    if (k == 0) opts.compute_dtype = WINATTN_DTYPE_BF16, options_status = WINATTN_STATUS_UNSUPPORTED;
    if (k == 1) {
      const int v = (ob & 8) ? 9 : -1;
      std::memcpy(&opts.compute_dtype, &v, sizeof v);
      options_status = WINATTN_STATUS_INVALID_ARGUMENT;
    }
    if (k == 2)
      opts.num_threads = (ob & 8) ? -1 : WINATTN_MAX_THREADS + 1,
      options_status = WINATTN_STATUS_INVALID_ARGUMENT;
    if (k == 3) opts.flags = 1u << (ob % 32), options_status = WINATTN_STATUS_INVALID_ARGUMENT;
    options = &opts;
    bad_options = true;
  }
  const std::string desc = sp.describe();
  note("model %s; mutations: %s", desc.c_str(), o.what.empty() ? "none" : o.what.c_str());

  winattn_model *model = kModelSentinel;
  winattn_status s;
  int byte_mutations = 0;
  std::vector<unsigned char> bytes;
  if (file) {
    bytes = serialize(r, ts);
    byte_mutations = mutate_bytes(r, bytes);
    const TempFile tmp(bytes);
    const uint8_t how = r.u8();
    if (how % 16 == 15) {  // argument errors of load: a NULL path or model, a directory, a missing file
      const char *bad_path = (how & 16)   ? nullptr
                             : (how & 32) ? "/"
                                          : "/nonexistent/winattn-fuzz.safetensors";
      set_ctx("winattn_model_load(%s)", bad_path ? bad_path : "NULL");
      const std::string prev = last_msg();
      expect_invalid(winattn_model_load(bad_path, nullptr, &model), prev);
      CHECK(model == kModelSentinel, "a failed load wrote *model");
      const std::string prev2 = last_msg();
      expect_invalid(winattn_model_load(tmp.path(), nullptr, nullptr), prev2);
    }
    set_ctx("winattn_model_load(%zu bytes: %s; mutations: %s; %d byte mutations%s)", bytes.size(),
            desc.c_str(), o.what.empty() ? "none" : o.what.c_str(), byte_mutations,
            bad_options ? "; bad options" : "");
    const std::string prev = last_msg();
    s = winattn_model_load(tmp.path(), options, &model);
    const Expect e = bad_options                             ? Expect::kFail
                     : byte_mutations > 0 || o.mutations > 1 ? Expect::kAny
                     : o.mutations == 0                      ? Expect::kOk
                     : o.must_fail                           ? Expect::kFail
                                                             : Expect::kAny;
    check_status(s, e, prev);
  } else {
    std::vector<float> dummy(16, 0.0f);
    std::vector<winattn_tensor> rec = as_records(r, ts, o, dummy);
    int64_t n = static_cast<int64_t>(rec.size());
    const winattn_tensor *tp = rec.data();
    winattn_model **mp = &model;
    const uint8_t how = r.u8();
    bool bad_args = false;
    if (how % 32 == 31) {
      bad_args = true;
      switch ((how >> 5) % 4) {
        case 0:
          n = -1 - (how & 1);
          break;
        case 1:
          tp = nullptr;
          if (n == 0) n = 1;
          break;
        case 2:
          mp = nullptr;
          break;
        default:
          n = 0;  // no tensors: no patch embedding
          break;
      }
    }
    set_ctx("winattn_model_create(%lld tensors: %s; mutations: %s%s%s)", (long long)n, desc.c_str(),
            o.what.empty() ? "none" : o.what.c_str(), bad_options ? "; bad options" : "",
            bad_args ? "; bad arguments" : "");
    const std::string prev = last_msg();
    s = winattn_model_create(tp, n, options, mp);
    const Expect e = bad_options || bad_args ? Expect::kFail
                     : o.mutations > 1       ? Expect::kAny
                     : o.mutations == 0      ? Expect::kOk
                     : o.must_fail           ? Expect::kFail
                                             : Expect::kAny;
    check_status(s, e, prev);
    if (bad_args && !bad_options && s != WINATTN_STATUS_OK)
      CHECK(s == WINATTN_STATUS_INVALID_ARGUMENT, "status %d", (int)s);
  }
  if (bad_options && o.mutations == 0 && byte_mutations == 0 && s != WINATTN_STATUS_OK)
    CHECK(s == options_status || s == WINATTN_STATUS_INVALID_ARGUMENT, "options error %d, expected %d",
          (int)s, (int)options_status);
  if (s != WINATTN_STATUS_OK) {
    CHECK(model == kModelSentinel, "a failed create/load wrote *model");
    return;
  }
  CHECK(model != nullptr && model != kModelSentinel, "OK without a model");
  if (options != nullptr) {
    int t = -1;
    CHECK(winattn_model_get_num_threads(model, &t) == WINATTN_STATUS_OK && t == opts.num_threads,
          "model thread budget %d, options said %d", t, opts.num_threads);
  }
  // The file and the caller's tensors must give the same model: compare a classify on both (unmutated
  // tensors of the create path's dtypes only).
  const bool clean = o.mutations == 0 && byte_mutations == 0;
  Run run{sp, clean, clean || (o.values_plain && byte_mutations == 0)};
  if (file && clean && sp.classes > 0 && sp.float_dt != kF64 && !sp.with_index && (path & 0x40)) {
    std::vector<float> dummy(16, 0.0f);
    Outcome none;
    Reader quiet(nullptr, 0);
    std::vector<winattn_tensor> rec = as_records(quiet, ts, none, dummy);
    winattn_model *twin = nullptr;
    set_ctx("winattn_model_create(the file's tensors: %s)", desc.c_str());
    std::string prev = last_msg();
    check_status(winattn_model_create(rec.data(), static_cast<int64_t>(rec.size()), nullptr, &twin),
                 Expect::kOk, prev);
    winattn_model_info info;
    CHECK(winattn_model_get_info(model, &info) == WINATTN_STATUS_OK, "get_info");
    const int64_t size[3] = {sp.three_d ? sp.patch[0] : 1, sp.patch[1] * 2, sp.patch[2] * 3};
    const size_t n = static_cast<size_t>(info.in_channels * size[0] * size[1] * size[2]);
    std::vector<float> in(n), l1(static_cast<size_t>(sp.classes)), l2(static_cast<size_t>(sp.classes));
    fill_plain(r, in.data(), n);
    set_ctx("classify on the loaded and the created model (%s)", desc.c_str());
    CHECK(winattn_model_classify(model, in.data(), 1, size, l1.data()) == WINATTN_STATUS_OK, "loaded");
    CHECK(winattn_model_classify(twin, in.data(), 1, size, l2.data()) == WINATTN_STATUS_OK, "created");
    const size_t i = first_difference(l1.data(), l2.data(), l1.size());
    CHECK(i == l1.size(), "logit %zu: %.9g from the file, %.9g from the tensors", i, l1[i], l2[i]);
    winattn_model_destroy(twin);
  }
  exercise(r, model, run);
}

}  // namespace fz
