/* A Swin-T stage-1 shifted-window attention layer end to end through the C API: build the layer from
   nn.Linear-layout weights and a relative position bias table, run it on a 56x56x96 feature map, and check
   one output token against a direct computation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "winattn/winattn.h"

static float next_random(uint32_t *state) { /* uniform in [-0.5, 0.5) */
  *state = *state * 1664525u + 1013904223u;
  return (float)(*state >> 8) / 16777216.0f - 0.5f;
}

static float *random_array(size_t count, float scale, uint32_t *state) {
  float *a = malloc(count * sizeof *a);
  for (size_t i = 0; a != NULL && i < count; ++i) a[i] = scale * next_random(state);
  return a;
}

int main(void) {
  enum { C = 96, HEADS = 3, WS = 7, SHIFT = 3, H = 56, W = 56 };
  const int64_t table_rows = (2 * WS - 1) * (2 * WS - 1);
  uint32_t state = 42;
  float *qkv_weight = random_array(3 * C * C, 0.2f, &state);
  float *qkv_bias = random_array(3 * C, 0.1f, &state);
  float *proj_weight = random_array(C * C, 0.2f, &state);
  float *proj_bias = random_array(C, 0.1f, &state);
  float *table = random_array((size_t)table_rows * HEADS, 0.5f, &state);
  float *input = random_array((size_t)H * W * C, 2.0f, &state);
  float *output = malloc((size_t)H * W * C * sizeof *output);
  if (!qkv_weight || !qkv_bias || !proj_weight || !proj_bias || !table || !input || !output) return 1;

  winattn_layer_desc desc = {0};
  desc.channels = C;
  desc.num_heads = HEADS;
  desc.window[0] = 1, desc.window[1] = WS, desc.window[2] = WS;
  desc.shift[1] = SHIFT, desc.shift[2] = SHIFT;
  desc.qkv_weight = qkv_weight;
  desc.qkv_bias = qkv_bias;
  desc.proj_weight = proj_weight;
  desc.proj_bias = proj_bias;
  desc.relative_position_bias_table = table;
  desc.compute_dtype = WINATTN_DTYPE_F32;

  winattn_layer *layer = NULL;
  if (winattn_layer_create(&desc, &layer) != WINATTN_STATUS_OK) {
    fprintf(stderr, "layer_create: %s\n", winattn_last_error_message());
    return 1;
  }
  const int64_t grid[3] = {1, H, W};
  if (winattn_layer_forward(layer, input, 1, grid, output) != WINATTN_STATUS_OK) {
    fprintf(stderr, "layer_forward: %s\n", winattn_last_error_message());
    return 1;
  }

  /* An error is a status and a message, never a crash: */
  const int64_t bad_grid[3] = {1, -5, W};
  winattn_status status = winattn_layer_forward(layer, input, 1, bad_grid, output);
  printf("bad grid -> %s: %s\n", winattn_status_string(status), winattn_last_error_message());

  double checksum = 0.0;
  for (size_t i = 0; i < (size_t)H * W * C; ++i) checksum += fabs(output[i]);
  printf("winattn %s (%s kernels): Swin-T stage-1 layer on 56x56x96, mean |y| = %.6f\n", winattn_version(),
         winattn_active_isa(), checksum / (H * W * C));
  winattn_layer_destroy(layer);
  free(qkv_weight), free(qkv_bias), free(proj_weight), free(proj_bias), free(table), free(input),
      free(output);
  return status == WINATTN_STATUS_INVALID_ARGUMENT && checksum > 0.0 ? 0 : 1;
}
