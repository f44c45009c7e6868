/* Paired comparison of two builds of libwinattn.so in one process: both are loaded with dlopen, calls of the
 * same shape alternate between them, each call is timed alone (CLOCK_MONOTONIC), and the 10th percentiles
 * are compared. On a shared, noisy machine this gives ratios that repeat to about 1%, where separate
 * benchmark runs differ by 20%.
 *
 *   paired_compare OLD.so NEW.so [threads] [calls]
 *
 * Prints, per shape, p10 time of each build and NEW/OLD speed (> 1: NEW faster). Shapes: the attention core
 * (Swin-T stage 1 with bias and mask, n = 64/144 with bias, temporal T = 8 and 16, Video Swin n = 392) and
 * the layer (Swin-T stage 1 and 3, B = 1). */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "winattn/winattn.h"

typedef winattn_status (*attention_fn)(int64_t, int64_t, int64_t, int64_t, const float *, const float *,
                                       const float *, float, const float *, const float *, int64_t, float *);
typedef winattn_status (*threads_fn)(int);
typedef winattn_status (*create_fn)(const winattn_layer_desc *, winattn_layer **);
typedef winattn_status (*forward_fn)(const winattn_layer *, const float *, int64_t, const int64_t *, float *);
typedef void (*destroy_fn)(winattn_layer *);

typedef struct {
  attention_fn attention;
  threads_fn set_threads;
  create_fn create;
  forward_fn forward;
  destroy_fn destroy;
} build;

static void *must(void *p, const char *what) {
  if (p == NULL) {
    fprintf(stderr, "paired_compare: %s: %s\n", what, dlerror());
    exit(2);
  }
  return p;
}

static build load(const char *path) {
  void *h = must(dlopen(path, RTLD_NOW | RTLD_LOCAL), path);
  build b;
  *(void **)&b.attention = must(dlsym(h, "winattn_window_attention"), "winattn_window_attention");
  *(void **)&b.set_threads = must(dlsym(h, "winattn_set_num_threads"), "winattn_set_num_threads");
  *(void **)&b.create = must(dlsym(h, "winattn_layer_create"), "winattn_layer_create");
  *(void **)&b.forward = must(dlsym(h, "winattn_layer_forward"), "winattn_layer_forward");
  *(void **)&b.destroy = must(dlsym(h, "winattn_layer_destroy"), "winattn_layer_destroy");
  return b;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static float *randoms(size_t count, float lo, float hi) {
  float *x = malloc(count * sizeof *x);
  if (x == NULL) exit(3);
  for (size_t i = 0; i < count; ++i) x[i] = lo + (hi - lo) * (float)rand() / (float)RAND_MAX;
  return x;
}

typedef struct {
  const char *name;
  int64_t windows, heads, n, d, mask_windows;
  int bias;
} attention_case;

static void report(const char *name, double *t_old, double *t_new, int calls) {
  qsort(t_old, (size_t)calls, sizeof *t_old, cmp);
  qsort(t_new, (size_t)calls, sizeof *t_new, cmp);
  const double p10_old = t_old[calls / 10], p10_new = t_new[calls / 10];
  printf("%-34s old %9.1f us  new %9.1f us  new/old speed %.3f\n", name, 1e6 * p10_old, 1e6 * p10_new,
         p10_old / p10_new);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s OLD.so NEW.so [threads] [calls]\n", argv[0]);
    return 2;
  }
  build builds[2] = {load(argv[1]), load(argv[2])};
  const int threads = argc > 3 ? atoi(argv[3]) : 1;
  const int calls = argc > 4 ? atoi(argv[4]) : 400;
  for (int b = 0; b < 2; ++b) builds[b].set_threads(threads);
  double *times[2] = {malloc((size_t)calls * sizeof(double)), malloc((size_t)calls * sizeof(double))};
  printf("threads %d, %d calls per build and shape, p10\n", threads, calls);

  const attention_case cases[] = {
      {"attention swin-t s1 B=1 (n49)", 64, 3, 49, 32, 64, 1},
      {"attention swin-t s1 B=8 (n49)", 512, 3, 49, 32, 64, 1},
      {"attention n64 bias", 64, 4, 64, 32, 0, 1},
      {"attention n144 bias", 16, 4, 144, 32, 0, 1},
      {"attention temporal T=8 d64", 784, 12, 8, 64, 0, 0},
      {"attention temporal T=16 d64", 392, 12, 16, 64, 0, 0},
      {"attention video swin n392 bias", 8, 3, 392, 32, 0, 1},
      /* short windows on data that stays in L2 */
      {"attention T=8 d64 L2 (48 items)", 4, 12, 8, 64, 0, 0},
      {"attention T=16 d64 L2 (24 items)", 2, 12, 16, 64, 0, 0},
      {"attention n16 d32 bias L2", 4, 4, 16, 32, 0, 1},
      {"attention n25 d32 bias L2", 4, 4, 25, 32, 0, 1},
      {"attention n32 d32 bias L2", 4, 4, 32, 32, 0, 1},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; ++c) {
    const attention_case *k = &cases[c];
    const size_t size = (size_t)(k->windows * k->heads * k->n * k->d);
    float *q = randoms(size, -1, 1), *kk = randoms(size, -1, 1), *v = randoms(size, -1, 1);
    float *out = malloc(size * sizeof *out);
    float *bias = k->bias ? randoms((size_t)(k->heads * k->n * k->n), -2, 2) : NULL;
    float *mask = NULL;
    if (k->mask_windows > 0) {
      mask = calloc((size_t)(k->mask_windows * k->n * k->n), sizeof *mask);
      for (int64_t w = k->mask_windows * 3 / 4; w < k->mask_windows; ++w)  /* the last quarter shifted */
        for (int64_t i = 0; i < k->n * k->n; ++i) mask[w * k->n * k->n + i] = (i % 7 < 3) ? -100.0f : 0.0f;
    }
    for (int i = 0; i < 2 * calls + 20; ++i) {
      const int b = i & 1;
      const double t0 = now();
      builds[b].attention(k->windows, k->heads, k->n, k->d, q, kk, v, 0.17f, bias, mask, k->mask_windows, out);
      if (i >= 20) times[b][(i - 20) / 2] = now() - t0;
    }
    report(k->name, times[0], times[1], calls);
    free(q), free(kk), free(v), free(out), free(bias), free(mask);
  }

  const struct {
    const char *name;
    int64_t c, heads, grid;
  } layers[] = {{"layer swin-t s1 B=1 (56x56 C96)", 96, 3, 56}, {"layer swin-t s3 B=1 (14x14 C384)", 384, 12, 14}};
  for (size_t l = 0; l < 2; ++l) {
    const int64_t c = layers[l].c, heads = layers[l].heads, g = layers[l].grid;
    float *qkv_w = randoms((size_t)(3 * c * c), -0.1f, 0.1f), *proj_w = randoms((size_t)(c * c), -0.1f, 0.1f);
    float *table = randoms((size_t)(169 * heads), -1, 1);
    winattn_layer_desc desc;
    memset(&desc, 0, sizeof desc);
    desc.channels = c;
    desc.num_heads = heads;
    desc.window[0] = 1, desc.window[1] = desc.window[2] = 7;
    desc.shift[1] = desc.shift[2] = 3;
    desc.qkv_weight = qkv_w, desc.proj_weight = proj_w, desc.relative_position_bias_table = table;
    winattn_layer *layer[2];
    for (int b = 0; b < 2; ++b)
      if (builds[b].create(&desc, &layer[b]) != WINATTN_STATUS_OK) return 4;
    const int64_t grid[3] = {1, g, g};
    float *in = randoms((size_t)(g * g * c), -1, 1), *out = malloc((size_t)(g * g * c) * sizeof(float));
    for (int i = 0; i < 2 * calls + 20; ++i) {
      const int b = i & 1;
      const double t0 = now();
      builds[b].forward(layer[b], in, 1, grid, out);
      if (i >= 20) times[b][(i - 20) / 2] = now() - t0;
    }
    report(layers[l].name, times[0], times[1], calls);
    for (int b = 0; b < 2; ++b) builds[b].destroy(layer[b]);
    free(qkv_w), free(proj_w), free(table), free(in), free(out);
  }
  free(times[0]), free(times[1]);
  return 0;
}
