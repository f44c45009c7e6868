/* A tiny downstream program: prints the library version and checks one small attention against a float64
   reference written here. Exit status 0 on success. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <winattn/winattn.h>

#define WINDOWS 2
#define HEADS 2
#define N 3
#define D 4
#define TOTAL (WINDOWS * HEADS * N * D)

int main(void) {
  char expected_version[32];
  float q[TOTAL], k[TOTAL], v[TOTAL], out[TOTAL];
  unsigned state = 12345u;
  double max_err = 0.0;
  int i;

  snprintf(expected_version, sizeof expected_version, "%d.%d.%d", WINATTN_VERSION_MAJOR,
           WINATTN_VERSION_MINOR, WINATTN_VERSION_PATCH);
  printf("winattn version %s (header %s), isa %s\n", winattn_version(), expected_version,
         winattn_active_isa());
  if (strcmp(winattn_version(), expected_version) != 0) {
    printf("version mismatch\n");
    return 1;
  }

  for (i = 0; i < TOTAL; ++i) {
    state = state * 1103515245u + 12345u;
    q[i] = (float)((state >> 8) % 2001) / 1000.0f - 1.0f;
    state = state * 1103515245u + 12345u;
    k[i] = (float)((state >> 8) % 2001) / 1000.0f - 1.0f;
    state = state * 1103515245u + 12345u;
    v[i] = (float)((state >> 8) % 2001) / 1000.0f - 1.0f;
  }
  if (winattn_window_attention(WINDOWS, HEADS, N, D, q, k, v, 0.5f, NULL, NULL, 0, out) !=
      WINATTN_STATUS_OK) {
    printf("winattn_window_attention failed: %s\n", winattn_last_error_message());
    return 1;
  }
  for (i = 0; i < WINDOWS * HEADS; ++i) {
    const float *qi = q + i * N * D, *ki = k + i * N * D, *vi = v + i * N * D;
    int r, c, d;
    for (r = 0; r < N; ++r) {
      double logits[N], mx = -1e300, sum = 0.0;
      for (c = 0; c < N; ++c) {
        double dot = 0.0;
        for (d = 0; d < D; ++d) dot += (double)qi[r * D + d] * ki[c * D + d];
        logits[c] = 0.5 * dot;
        if (logits[c] > mx) mx = logits[c];
      }
      for (c = 0; c < N; ++c) sum += (logits[c] = exp(logits[c] - mx));
      for (d = 0; d < D; ++d) {
        double ref = 0.0, err;
        for (c = 0; c < N; ++c) ref += logits[c] / sum * vi[c * D + d];
        err = fabs(ref - out[i * N * D + r * D + d]);
        if (err > max_err) max_err = err;
      }
    }
  }
  printf("attention max abs error vs float64 reference: %.3g\n", max_err);
  if (!(max_err < 1e-5)) {
    printf("attention result wrong\n");
    return 1;
  }
  if (winattn_set_num_threads(-1) != WINATTN_STATUS_INVALID_ARGUMENT ||
      winattn_last_error_message()[0] == '\0') {
    printf("error path wrong\n");
    return 1;
  }
  printf("consumer OK\n");
  return 0;
}
