/* A whole Swin model through the C API.

     swin_model                          builds a small Swin v1 from tensors held here (torchvision names,
                                         random weights) with winattn_model_create, classifies a batch and
                                         checks the logits against its own features (final LayerNorm, mean,
                                         head: computed here in double)
     swin_model WEIGHTS.safetensors [H W] loads a checkpoint (e.g. written by python3 -m winattn.export from
                                         torchvision's swin_t) and classifies one synthetic H x W image
                                         (default 224 x 224), printing the model's description, the top 5
                                         classes and the time of a call. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "winattn/winattn.h"

static float next_random(uint32_t *state) { /* uniform in [-0.5, 0.5) */
  *state = *state * 1664525u + 1013904223u;
  return (float)(*state >> 8) / 16777216.0f - 0.5f;
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int fail(const char *what, winattn_status status) {
  fprintf(stderr, "%s: %s: %s\n", what, winattn_status_string(status), winattn_last_error_message());
  return 1;
}

static void print_info(const winattn_model_info *info) {
  static const char *const families[] = {"?", "Swin", "SwinV2", "Video Swin 3D"};
  printf(
      "%s: %lld input channels, embed %lld, %lld classes, patch %lldx%lldx%lld, window %lldx%lldx%lld, "
      "depths",
      families[info->family >= 1 && info->family <= 3 ? info->family : 0], (long long)info->in_channels,
      (long long)info->embed_dim, (long long)info->num_classes, (long long)info->patch[0],
      (long long)info->patch[1], (long long)info->patch[2], (long long)info->window[0],
      (long long)info->window[1], (long long)info->window[2]);
  for (int64_t s = 0; s < info->num_stages; ++s)
    printf(" %lld(%lld heads)", (long long)info->depths[s], (long long)info->num_heads[s]);
  printf("\n");
}

/* ---- a checkpoint from a file ---------------------------------------------------------------------- */

static int run_file(const char *path, int64_t height, int64_t width) {
  winattn_model *model = NULL;
  double start = now_seconds();
  winattn_status status = winattn_model_load(path, NULL, &model);
  if (status != WINATTN_STATUS_OK) return fail("winattn_model_load", status);
  printf("loaded %s in %.3f s\n", path, now_seconds() - start);
  winattn_model_info info;
  winattn_model_get_info(model, &info);
  print_info(&info);
  if (info.num_classes == 0 || info.family == WINATTN_MODEL_SWIN_3D) {
    printf("(a backbone or a video model: this example classifies 2D images only)\n");
    winattn_model_destroy(model);
    return 0;
  }
  const int64_t size[3] = {1, height, width};
  const size_t pixels = (size_t)(info.in_channels * height * width);
  float *image = malloc(pixels * sizeof *image);
  float *logits = malloc((size_t)info.num_classes * sizeof *logits);
  if (image == NULL || logits == NULL) return fail("malloc", WINATTN_STATUS_OUT_OF_MEMORY);
  uint32_t state = 7;
  for (size_t i = 0; i < pixels; ++i) image[i] = 2.0f * next_random(&state); /* a normalised image */
  double best = 1e30;
  for (int rep = 0; rep < 5 && status == WINATTN_STATUS_OK; ++rep) {
    start = now_seconds();
    status = winattn_model_classify(model, image, 1, size, logits);
    const double elapsed = now_seconds() - start;
    if (elapsed < best) best = elapsed;
  }
  if (status != WINATTN_STATUS_OK) return fail("winattn_model_classify", status);
  printf("classify 1x3x%lldx%lld: best of 5 %.1f ms\ntop 5:", (long long)height, (long long)width,
         1e3 * best);
  for (int k = 0; k < 5 && k < info.num_classes; ++k) {
    int64_t arg = 0;
    for (int64_t c = 1; c < info.num_classes; ++c)
      if (logits[c] > logits[arg]) arg = c;
    printf(" %lld (%.3f)", (long long)arg, logits[arg]);
    logits[arg] = -INFINITY;
  }
  printf("\n");
  free(image);
  free(logits);
  winattn_model_destroy(model);
  return 0;
}

/* ---- a model from tensors held here ------------------------------------------------------------------ */

enum { E = 16, CLASSES = 10, WS = 4, PATCH = 4, MAX_TENSORS = 64 };

typedef struct {
  winattn_tensor tensors[MAX_TENSORS];
  char names[MAX_TENSORS][64];
  float *data[MAX_TENSORS];
  int count;
  uint32_t state;
} TensorSet;

/* Adds a tensor of random values (scale around `center`) named like torchvision's state_dict. */
static float *add(TensorSet *set, const char *name, int ndim, const int64_t *shape, float scale,
                  float center) {
  winattn_tensor *t = &set->tensors[set->count];
  snprintf(set->names[set->count], sizeof set->names[0], "%s", name);
  size_t count = 1;
  for (int d = 0; d < ndim; ++d) count *= (size_t)shape[d];
  float *values = malloc(count * sizeof *values);
  for (size_t i = 0; values != NULL && i < count; ++i) values[i] = center + scale * next_random(&set->state);
  t->name = set->names[set->count];
  t->dtype = WINATTN_DTYPE_F32;
  t->ndim = ndim;
  memcpy(t->shape, shape, (size_t)ndim * sizeof shape[0]);
  t->data = values;
  set->data[set->count++] = values;
  return values;
}

static void add_block(TensorSet *set, const char *prefix, int64_t c, int64_t heads) {
  char name[64];
#define ADD(suffix, ndim, scale, center, ...)            \
  do {                                                   \
    const int64_t shape[] = {__VA_ARGS__};               \
    snprintf(name, sizeof name, "%s%s", prefix, suffix); \
    add(set, name, ndim, shape, scale, center);          \
  } while (0)
  ADD("norm1.weight", 1, 0.2f, 1.0f, c);
  ADD("norm1.bias", 1, 0.2f, 0.0f, c);
  ADD("attn.qkv.weight", 2, 0.5f, 0.0f, 3 * c, c);
  ADD("attn.qkv.bias", 1, 0.2f, 0.0f, 3 * c);
  ADD("attn.proj.weight", 2, 0.5f, 0.0f, c, c);
  ADD("attn.proj.bias", 1, 0.2f, 0.0f, c);
  ADD("attn.relative_position_bias_table", 2, 0.5f, 0.0f, (2 * WS - 1) * (2 * WS - 1), heads);
  ADD("norm2.weight", 1, 0.2f, 1.0f, c);
  ADD("norm2.bias", 1, 0.2f, 0.0f, c);
  ADD("mlp.0.weight", 2, 0.5f, 0.0f, 4 * c, c);
  ADD("mlp.0.bias", 1, 0.2f, 0.0f, 4 * c);
  ADD("mlp.3.weight", 2, 0.3f, 0.0f, c, 4 * c);
  ADD("mlp.3.bias", 1, 0.2f, 0.0f, c);
#undef ADD
}

static int run_tensors(void) {
  TensorSet set;
  set.count = 0;
  set.state = 42;
  const int64_t conv[] = {E, 3, PATCH, PATCH}, e[] = {E}, e4[] = {4 * E}, reduction[] = {2 * E, 4 * E};
  const int64_t e2[] = {2 * E}, head[] = {CLASSES, 2 * E}, classes[] = {CLASSES};
  add(&set, "features.0.0.weight", 4, conv, 0.5f, 0.0f);
  add(&set, "features.0.0.bias", 1, e, 0.2f, 0.0f);
  add(&set, "features.0.2.weight", 1, e, 0.2f, 1.0f);
  add(&set, "features.0.2.bias", 1, e, 0.2f, 0.0f);
  add_block(&set, "features.1.0.", E, 1);
  add_block(&set, "features.1.1.", E, 1);
  add(&set, "features.2.reduction.weight", 2, reduction, 0.3f, 0.0f);
  add(&set, "features.2.norm.weight", 1, e4, 0.2f, 1.0f);
  add(&set, "features.2.norm.bias", 1, e4, 0.2f, 0.0f);
  add_block(&set, "features.3.0.", 2 * E, 2);
  add_block(&set, "features.3.1.", 2 * E, 2);
  const float *norm_weight = add(&set, "norm.weight", 1, e2, 0.2f, 1.0f);
  const float *norm_bias = add(&set, "norm.bias", 1, e2, 0.2f, 0.0f);
  const float *head_weight = add(&set, "head.weight", 2, head, 0.5f, 0.0f);
  const float *head_bias = add(&set, "head.bias", 1, classes, 0.2f, 0.0f);

  winattn_model *model = NULL;
  winattn_status status = winattn_model_create(set.tensors, set.count, NULL, &model);
  if (status != WINATTN_STATUS_OK) return fail("winattn_model_create", status);
  winattn_model_info info;
  winattn_model_get_info(model, &info);
  print_info(&info);

  enum { B = 2, H = 38, W = 45 }; /* 9x11 patches: the merging pads the odd edge */
  const int64_t size[3] = {1, H, W};
  float *images = malloc(sizeof(float) * B * 3 * H * W);
  float logits[B * CLASSES];
  int64_t shapes[2][4];
  status = winattn_model_feature_shapes(model, size, &shapes[0][0]);
  if (status != WINATTN_STATUS_OK) return fail("winattn_model_feature_shapes", status);
  const int64_t tokens = shapes[1][0] * shapes[1][1] * shapes[1][2], channels = shapes[1][3];
  float *last = malloc(sizeof(float) * (size_t)(B * tokens * channels));
  float *features[2] = {NULL, last}; /* skip stage 0's copy */
  for (int i = 0; i < B * 3 * H * W; ++i) images[i] = 2.0f * next_random(&set.state);
  status = winattn_model_classify(model, images, B, size, logits);
  if (status != WINATTN_STATUS_OK) return fail("winattn_model_classify", status);
  status = winattn_model_features(model, images, B, size, features);
  if (status != WINATTN_STATUS_OK) return fail("winattn_model_features", status);

  /* logits = head(mean over tokens of LayerNorm(last stage)), in double. */
  double worst = 0.0, scale = 0.0;
  for (int b = 0; b < B; ++b) {
    double pooled[2 * E] = {0};
    for (int64_t t = 0; t < tokens; ++t) {
      const float *x = last + (b * tokens + t) * channels;
      double mean = 0.0, var = 0.0;
      for (int64_t c = 0; c < channels; ++c) mean += x[c];
      mean /= (double)channels;
      for (int64_t c = 0; c < channels; ++c) var += (x[c] - mean) * (x[c] - mean);
      var /= (double)channels;
      for (int64_t c = 0; c < channels; ++c)
        pooled[c] += ((x[c] - mean) / sqrt(var + 1e-5) * norm_weight[c] + norm_bias[c]) / (double)tokens;
    }
    for (int k = 0; k < CLASSES; ++k) {
      double want = head_bias[k];
      for (int64_t c = 0; c < channels; ++c) want += head_weight[k * channels + c] * pooled[c];
      worst = fmax(worst, fabs(want - logits[b * CLASSES + k]));
      scale = fmax(scale, fabs(want));
    }
  }
  printf(
      "stage 1 output %lldx%lldx%lld per image; logits vs head(mean(norm(features))): max |diff| %.2e of "
      "%.2e\n",
      (long long)shapes[1][1], (long long)shapes[1][2], (long long)channels, worst, scale);
  free(images);
  free(last);
  winattn_model_destroy(model);
  for (int i = 0; i < set.count; ++i) free(set.data[i]); /* (the model copied what it needed at create) */
  if (!(worst <= 1e-4 * scale) || scale == 0.0) {
    fprintf(stderr, "swin_model: the logits do not match the model's own features\n");
    return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 2) {
    const int64_t height = argc >= 4 ? atoll(argv[2]) : 224, width = argc >= 4 ? atoll(argv[3]) : 224;
    return run_file(argv[1], height, width);
  }
  return run_tensors();
}
