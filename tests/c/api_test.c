/*
 * Plain C99 test of the public C API: compiled with -std=c99 -pedantic -Wall -Wextra -Werror (which also
 * checks that winattn.h is valid pedantic C99), includes only winattn.h from the library, and calls every
 * function of the header, checking the results against small double-precision references written here.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "winattn/winattn.h"

static int failures = 0;

#define EXPECT(cond)                                                           \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                              \
    }                                                                          \
  } while (0)

#define EXPECT_OK(call)                                                                            \
  do {                                                                                             \
    winattn_status status_ = (call);                                                               \
    if (status_ != WINATTN_STATUS_OK) {                                                            \
      fprintf(stderr, "%s:%d: %s returned %d (%s): %s\n", __FILE__, __LINE__, #call, (int)status_, \
              winattn_status_string(status_), winattn_last_error_message());                       \
      ++failures;                                                                                  \
    }                                                                                              \
  } while (0)

/* Deterministic pseudo-random numbers in [-1, 1). */
static unsigned long rng_state = 12345u;
static float rnd(void) {
  rng_state = (rng_state * 1103515245u + 12345u) & 0x7fffffffu;
  return (float)rng_state / (float)0x40000000 - 1.0f;
}
static void fill(float *x, size_t count) {
  size_t i;
  for (i = 0; i < count; ++i) x[i] = rnd();
}

static void test_misc(void) {
  int major = -1, minor = -1, patch = -1;
  const char *isa;
  EXPECT(strcmp(winattn_last_error_message(), "") == 0); /* nothing failed yet on this thread */
  EXPECT(sscanf(winattn_version(), "%d.%d.%d", &major, &minor, &patch) == 3);
  EXPECT(major == WINATTN_VERSION_MAJOR && minor == WINATTN_VERSION_MINOR && patch == WINATTN_VERSION_PATCH);
  EXPECT(strcmp(winattn_status_string(WINATTN_STATUS_OK),
                winattn_status_string(WINATTN_STATUS_UNSUPPORTED)) != 0);
  EXPECT(strlen(winattn_status_string(WINATTN_STATUS_OUT_OF_MEMORY)) > 0);
  EXPECT(strlen(winattn_status_string(WINATTN_STATUS_INTERNAL_ERROR)) > 0);
  isa = winattn_active_isa();
  EXPECT(strcmp(isa, "amx_bf16") == 0 || strcmp(isa, "avx512_bf16") == 0 || strcmp(isa, "avx512") == 0 ||
         strcmp(isa, "avx2") == 0 || strcmp(isa, "scalar") == 0);
  EXPECT_OK(winattn_set_max_isa("scalar"));
  EXPECT(strcmp(winattn_active_isa(), "scalar") == 0);
  EXPECT(winattn_set_max_isa("bogus") == WINATTN_STATUS_INVALID_ARGUMENT);
  EXPECT(strlen(winattn_last_error_message()) > 0);
  EXPECT_OK(winattn_set_max_isa("native"));
  EXPECT(strcmp(winattn_active_isa(), isa) == 0);
  EXPECT_OK(winattn_set_num_threads(2));
  EXPECT(winattn_get_num_threads() == 2);
  EXPECT(winattn_set_num_threads(-1) == WINATTN_STATUS_INVALID_ARGUMENT);
  EXPECT_OK(winattn_set_num_threads(0));
  EXPECT(winattn_set_num_threads(WINATTN_MAX_THREADS + 1) == WINATTN_STATUS_INVALID_ARGUMENT);
  winattn_release_thread_memory();
  EXPECT(winattn_get_num_threads() == 0);
}

static void test_position_bias(void) {
  const int64_t window[2] = {3, 4}; /* N = 12, table rows 5 * 7 = 35 */
  int64_t index[144];
  float table[35 * 2], bias[2 * 144], grad_table[35 * 2];
  double expected_grad[35 * 2];
  int64_t i, j, h;
  EXPECT_OK(winattn_relative_position_index(2, window, index));
  for (i = 0; i < 12; ++i)
    for (j = 0; j < 12; ++j) {
      const int64_t dh = i / 4 - j / 4, dw = i % 4 - j % 4;
      EXPECT(index[i * 12 + j] == (dh + 2) * 7 + (dw + 3));
    }
  fill(table, 70);
  EXPECT_OK(winattn_relative_position_bias(table, 35, 2, index, 12, bias));
  for (h = 0; h < 2; ++h)
    for (i = 0; i < 144; ++i) EXPECT(bias[h * 144 + i] == table[index[i] * 2 + h]);
  for (i = 0; i < 70; ++i) grad_table[i] = 1.0f, expected_grad[i] = 1.0;
  for (h = 0; h < 2; ++h)
    for (i = 0; i < 144; ++i) expected_grad[index[i] * 2 + h] += bias[h * 144 + i];
  EXPECT_OK(winattn_relative_position_bias_backward(bias, 35, 2, index, 12, grad_table));
  for (i = 0; i < 70; ++i) EXPECT(fabs(grad_table[i] - expected_grad[i]) <= 1e-5);
  {
    int64_t bad_index[144];
    memcpy(bad_index, index, sizeof index);
    bad_index[7] = 35;
    memset(bias, 0x5a, sizeof bias);
    EXPECT(winattn_relative_position_bias(table, 35, 2, bad_index, 12, bias) ==
           WINATTN_STATUS_INVALID_ARGUMENT);
    for (i = 0; i < (int64_t)sizeof bias; ++i) EXPECT(((unsigned char *)bias)[i] == 0x5a);
  }
}

static double cpb_transform(double x, int64_t window) {
  if (window > 1) x /= (double)(window - 1);
  x *= 8.0;
  return (x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0)) * (log(fabs(x) + 1.0) / log(2.0)) / 3.0;
}

static void test_continuous_position_bias(void) {
  enum { WH = 3, WW = 2, HIDDEN = 8, HEADS = 2, ROWS = (2 * WH - 1) * (2 * WW - 1) };
  float w1[HIDDEN * 2], b1[HIDDEN], w2[HEADS * HIDDEN], table[ROWS * HEADS];
  int64_t dh, dw, h, k;
  fill(w1, HIDDEN * 2);
  fill(b1, HIDDEN);
  fill(w2, HEADS * HIDDEN);
  EXPECT_OK(winattn_continuous_position_bias_table(WH, WW, w1, b1, w2, HIDDEN, HEADS, table));
  for (dh = -(WH - 1); dh <= WH - 1; ++dh)
    for (dw = -(WW - 1); dw <= WW - 1; ++dw)
      for (h = 0; h < HEADS; ++h) {
        const double ch = cpb_transform((double)dh, WH), cw = cpb_transform((double)dw, WW);
        double y = 0.0, expected;
        for (k = 0; k < HIDDEN; ++k) {
          const double z = w1[k * 2] * ch + w1[k * 2 + 1] * cw + b1[k];
          y += w2[h * HIDDEN + k] * (z > 0 ? z : 0.0);
        }
        expected = 16.0 / (1.0 + exp(-y));
        EXPECT(fabs(table[((dh + WH - 1) * (2 * WW - 1) + (dw + WW - 1)) * HEADS + h] - expected) <= 1e-4);
      }
}

static void test_mask(void) {
  /* 4x4 grid, window 2x2, shift 1x1: window 3 (bottom right) mixes 4 regions, windows 1 and 2 mix 2. */
  const int64_t grid[3] = {1, 4, 4}, window[3] = {1, 2, 2}, shift[3] = {0, 1, 1};
  float mask[4 * 4 * 4];
  int64_t w, i, j;
  EXPECT_OK(winattn_shifted_window_mask(grid, window, shift, mask));
  for (w = 0; w < 4; ++w)
    for (i = 0; i < 4; ++i)
      for (j = 0; j < 4; ++j) {
        /* token t of window w sits at row (w/2)*2 + t/2, column (w%2)*2 + t%2; regions [0,2), [2,3), [3,4) */
        const int64_t hi = (w / 2) * 2 + i / 2, wi = (w % 2) * 2 + i % 2;
        const int64_t hj = (w / 2) * 2 + j / 2, wj = (w % 2) * 2 + j % 2;
        const int ri = (hi < 2 ? 0 : hi < 3 ? 1 : 2) * 3 + (wi < 2 ? 0 : wi < 3 ? 1 : 2);
        const int rj = (hj < 2 ? 0 : hj < 3 ? 1 : 2) * 3 + (wj < 2 ? 0 : wj < 3 ? 1 : 2);
        EXPECT(mask[(w * 4 + i) * 4 + j] == (ri == rj ? 0.0f : -100.0f));
      }
}

static void test_window_attention(void) {
  enum { W = 2, H = 2, N = 5, D = 3, SIZE = W * H * N * D };
  float q[SIZE], k[SIZE], v[SIZE], out[SIZE], bias[H * N * N], mask[1 * N * N];
  int64_t w, h, i, j, c;
  const float scale = 0.7f;
  fill(q, SIZE);
  fill(k, SIZE);
  fill(v, SIZE);
  fill(bias, H * N * N);
  for (i = 0; i < N * N; ++i) mask[i] = (i % 3 == 1) ? -100.0f : 0.0f;
  EXPECT_OK(winattn_window_attention(W, H, N, D, q, k, v, scale, bias, mask, 1, out));
  for (w = 0; w < W; ++w)
    for (h = 0; h < H; ++h)
      for (i = 0; i < N; ++i) {
        const int64_t base = (w * H + h) * N * D;
        double logit[N], mx = -1e300, den = 0.0;
        for (j = 0; j < N; ++j) {
          double dot = 0.0;
          for (c = 0; c < D; ++c) dot += (double)q[base + i * D + c] * k[base + j * D + c];
          logit[j] = scale * dot + bias[(h * N + i) * N + j] + mask[i * N + j];
          if (logit[j] > mx) mx = logit[j];
        }
        for (j = 0; j < N; ++j) den += logit[j] = exp(logit[j] - mx);
        for (c = 0; c < D; ++c) {
          double o = 0.0;
          for (j = 0; j < N; ++j) o += logit[j] / den * v[base + j * D + c];
          EXPECT(fabs(out[base + i * D + c] - o) <= 1e-5);
        }
      }
  EXPECT(winattn_window_attention(W, H, N, D, q, k, v, scale, NULL, NULL, 0, q) ==
         WINATTN_STATUS_INVALID_ARGUMENT);
}

/* One 2x2 window, no shift, 1 head of 2 channels: the whole layer by hand. */
static void test_layer(void) {
  enum { C = 2, T = 4 };
  float input[T * C], qkv_w[3 * C * C], qkv_b[3 * C], proj_w[C * C], proj_b[C], out[T * C], out2[T * C];
  double qkv[T][3 * C], o[T][C];
  winattn_window_attention_args args;
  winattn_layer_desc desc;
  winattn_layer *layer = NULL;
  const int64_t grid[3] = {1, 2, 2};
  int t, r, c, j;
  fill(input, T * C);
  fill(qkv_w, 3 * C * C);
  fill(qkv_b, 3 * C);
  fill(proj_w, C * C);
  fill(proj_b, C);
  for (t = 0; t < T; ++t)
    for (r = 0; r < 3 * C; ++r) {
      qkv[t][r] = qkv_b[r];
      for (c = 0; c < C; ++c) qkv[t][r] += (double)qkv_w[r * C + c] * input[t * C + c];
    }
  for (t = 0; t < T; ++t) {
    double logit[T], mx = -1e300, den = 0.0;
    for (j = 0; j < T; ++j) {
      logit[j] = (qkv[t][0] * qkv[j][C] + qkv[t][1] * qkv[j][C + 1]) / sqrt((double)C);
      if (logit[j] > mx) mx = logit[j];
    }
    for (j = 0; j < T; ++j) den += logit[j] = exp(logit[j] - mx);
    for (c = 0; c < C; ++c) {
      o[t][c] = 0.0;
      for (j = 0; j < T; ++j) o[t][c] += logit[j] / den * qkv[j][2 * C + c];
    }
  }

  memset(&args, 0, sizeof args);
  args.batch = 1;
  args.grid[0] = 1, args.grid[1] = 2, args.grid[2] = 2;
  args.channels = C;
  args.num_heads = 1;
  args.window[0] = 1, args.window[1] = 2, args.window[2] = 2;
  args.qkv_weight = qkv_w;
  args.qkv_bias = qkv_b;
  args.proj_weight = proj_w;
  args.proj_bias = proj_b;
  EXPECT_OK(winattn_shifted_window_attention(&args, input, out));
  for (t = 0; t < T; ++t)
    for (r = 0; r < C; ++r) {
      double y = proj_b[r];
      for (c = 0; c < C; ++c) y += (double)proj_w[r * C + c] * o[t][c];
      EXPECT(fabs(out[t * C + r] - y) <= 1e-5);
    }

  memset(&desc, 0, sizeof desc);
  desc.channels = C;
  desc.num_heads = 1;
  desc.window[0] = 1, desc.window[1] = 2, desc.window[2] = 2;
  desc.qkv_weight = qkv_w;
  desc.qkv_bias = qkv_b;
  desc.proj_weight = proj_w;
  desc.proj_bias = proj_b;
  desc.compute_dtype = WINATTN_DTYPE_F32;
  EXPECT_OK(winattn_layer_create(&desc, &layer));
  EXPECT(layer != NULL);
  if (layer) {
    EXPECT_OK(winattn_layer_forward(layer, input, 1, grid, out2));
    for (t = 0; t < T * C; ++t) EXPECT(fabs(out2[t] - out[t]) <= 1e-5);
    EXPECT(winattn_layer_forward(layer, input, 0, grid, out2) == WINATTN_STATUS_INVALID_ARGUMENT);
  }
  {
    int threads = -1;
    int64_t bytes = -1;
    EXPECT_OK(winattn_layer_set_num_threads(layer, 1));
    EXPECT_OK(winattn_layer_get_num_threads(layer, &threads));
    EXPECT(threads == 1);
    EXPECT(winattn_layer_set_num_threads(layer, WINATTN_MAX_THREADS + 1) == WINATTN_STATUS_INVALID_ARGUMENT);
    EXPECT_OK(winattn_layer_memory_bytes(layer, &bytes));
    EXPECT(bytes > 0);
    EXPECT_OK(winattn_layer_trim(layer));
    EXPECT_OK(winattn_layer_forward(layer, input, 1, grid, out2));
  }
  winattn_layer_destroy(layer);
  winattn_layer_destroy(NULL);
  desc.flags = 1;
  layer = NULL;
  EXPECT(winattn_layer_create(&desc, &layer) == WINATTN_STATUS_INVALID_ARGUMENT);
  EXPECT(layer == NULL);
}

/* LayerNorm of one row of c values (biased variance, eps 1e-5), in double. */
static void layer_norm_row(const double *x, int c, const float *w, const float *b, double *y) {
  double mean = 0.0, var = 0.0;
  int i;
  for (i = 0; i < c; ++i) mean += x[i] / c;
  for (i = 0; i < c; ++i) var += (x[i] - mean) * (x[i] - mean) / c;
  for (i = 0; i < c; ++i) y[i] = (x[i] - mean) / sqrt(var + 1e-5) * w[i] + b[i];
}

/* One 2x2 window, no shift, 1 head of 4 channels, MLP width 8: the v1 (pre-norm) block by hand. */
static void test_block(void) {
  enum { C = 4, T = 4, HID = 8 };
  float input[T * C], qkv_w[3 * C * C], qkv_b[3 * C], proj_w[C * C], proj_b[C], out[T * C];
  float n1w[C], n1b[C], n2w[C], n2b[C], fc1_w[HID * C], fc1_b[HID], fc2_w[C * HID], fc2_b[C];
  double x[T][C], z[T][C], qkv[T][3 * C], y[T][C];
  winattn_block_desc desc;
  winattn_block *block = NULL;
  const int64_t grid[3] = {1, 2, 2};
  int t, r, c, j;
  fill(input, T * C), fill(qkv_w, 3 * C * C), fill(qkv_b, 3 * C), fill(proj_w, C * C), fill(proj_b, C);
  fill(n1w, C), fill(n1b, C), fill(n2w, C), fill(n2b, C);
  fill(fc1_w, HID * C), fill(fc1_b, HID), fill(fc2_w, C * HID), fill(fc2_b, C);
  for (t = 0; t < T; ++t)
    for (c = 0; c < C; ++c) x[t][c] = input[t * C + c];
  for (t = 0; t < T; ++t) layer_norm_row(x[t], C, n1w, n1b, z[t]);
  for (t = 0; t < T; ++t)
    for (r = 0; r < 3 * C; ++r) {
      qkv[t][r] = qkv_b[r];
      for (c = 0; c < C; ++c) qkv[t][r] += (double)qkv_w[r * C + c] * z[t][c];
    }
  for (t = 0; t < T; ++t) { /* y = x + proj(softmax(q k^T / sqrt(C)) v) */
    double logit[T], o[C], mx = -1e300, den = 0.0;
    for (j = 0; j < T; ++j) {
      logit[j] = 0.0;
      for (c = 0; c < C; ++c) logit[j] += qkv[t][c] * qkv[j][C + c] / sqrt((double)C);
      if (logit[j] > mx) mx = logit[j];
    }
    for (j = 0; j < T; ++j) den += logit[j] = exp(logit[j] - mx);
    for (c = 0; c < C; ++c) {
      o[c] = 0.0;
      for (j = 0; j < T; ++j) o[c] += logit[j] / den * qkv[j][2 * C + c];
    }
    for (r = 0; r < C; ++r) {
      y[t][r] = x[t][r] + proj_b[r];
      for (c = 0; c < C; ++c) y[t][r] += (double)proj_w[r * C + c] * o[c];
    }
  }

  memset(&desc, 0, sizeof desc);
  desc.attention.channels = C;
  desc.attention.num_heads = 1;
  desc.attention.window[0] = 1, desc.attention.window[1] = 2, desc.attention.window[2] = 2;
  desc.attention.qkv_weight = qkv_w;
  desc.attention.qkv_bias = qkv_b;
  desc.attention.proj_weight = proj_w;
  desc.attention.proj_bias = proj_b;
  desc.attention.compute_dtype = WINATTN_DTYPE_F32;
  desc.norm1_weight = n1w, desc.norm1_bias = n1b, desc.norm2_weight = n2w, desc.norm2_bias = n2b;
  desc.norm_eps = 0.0f; /* torchvision's 1e-5 */
  desc.post_norm = 0;
  desc.mlp_hidden = HID;
  desc.fc1_weight = fc1_w, desc.fc1_bias = fc1_b, desc.fc2_weight = fc2_w, desc.fc2_bias = fc2_b;
  desc.num_threads = 1;
  EXPECT_OK(winattn_block_create(&desc, &block));
  EXPECT(block != NULL);
  if (block) {
    EXPECT_OK(winattn_block_forward(block, input, 1, grid, out));
    for (t = 0; t < T; ++t) { /* out = y + fc2(GELU(fc1(norm2(y)))) */
      double n[C], h[HID];
      layer_norm_row(y[t], C, n2w, n2b, n);
      for (j = 0; j < HID; ++j) {
        h[j] = fc1_b[j];
        for (c = 0; c < C; ++c) h[j] += (double)fc1_w[j * C + c] * n[c];
        h[j] = 0.5 * h[j] * (1.0 + erf(h[j] / sqrt(2.0)));
      }
      for (r = 0; r < C; ++r) {
        double expected = y[t][r] + fc2_b[r];
        for (j = 0; j < HID; ++j) expected += (double)fc2_w[r * HID + j] * h[j];
        EXPECT(fabs(out[t * C + r] - expected) <= 1e-5);
      }
    }
    EXPECT_OK(winattn_block_set_num_threads(block, 2));
    EXPECT(winattn_block_set_num_threads(block, -1) == WINATTN_STATUS_INVALID_ARGUMENT);
    EXPECT(winattn_block_forward(block, input, 1, grid, input) == WINATTN_STATUS_INVALID_ARGUMENT);
  }
  winattn_block_destroy(block);
  winattn_block_destroy(NULL);
  desc.post_norm = 2;
  block = NULL;
  EXPECT(winattn_block_create(&desc, &block) == WINATTN_STATUS_INVALID_ARGUMENT);
  EXPECT(block == NULL);
  EXPECT(strlen(winattn_last_error_message()) > 0);
}

int main(void) {
  test_misc();
  test_position_bias();
  test_continuous_position_bias();
  test_mask();
  test_window_attention();
  test_layer();
  test_block();
  if (failures) {
    fprintf(stderr, "api_test: %d check(s) failed\n", failures);
    return EXIT_FAILURE;
  }
  printf("api_test: all checks passed (winattn %s, %s)\n", winattn_version(), winattn_active_isa());
  return EXIT_SUCCESS;
}
