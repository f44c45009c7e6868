/*
 * winattn: Swin-style windowed multi-head attention with relative position bias, on the CPU.
 *
 * C99 interface. Conventions shared by every function below:
 *  - Arrays are dense, row-major, float32 unless stated; the layout is written next to each argument as
 *    [dim0][dim1]... with the last index varying fastest.
 *  - Every fallible function returns a winattn_status. On any status other than WINATTN_STATUS_OK nothing
 *    has been written to any output (one exception, at winattn_layer_forward: a failure inside oneDNN's
 *    execution mid-call), and winattn_last_error_message() returns a sentence naming the offending argument
 *    and its value (per thread).
 *  - No C++ exception, abort, assert or exit ever leaves the library: every input is answered with a status.
 *  - Inputs are never modified. The caller owns every array it passes; the library keeps no pointer to it
 *    after the call returns (winattn_layer_create copies what it needs).
 *  - All functions may be called concurrently from any number of threads unless a comment says otherwise.
 *    The library parallelises its own work with OpenMP (see winattn_set_num_threads).
 */
#ifndef WINATTN_WINATTN_H_
#define WINATTN_WINATTN_H_

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32) && defined(WINATTN_BUILDING_LIBRARY)
#define WINATTN_API __declspec(dllexport)
#elif defined(_WIN32)
#define WINATTN_API __declspec(dllimport)
#elif defined(__GNUC__) || defined(__clang__)
#define WINATTN_API __attribute__((visibility("default")))
#else
#define WINATTN_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define WINATTN_VERSION_MAJOR 0
#define WINATTN_VERSION_MINOR 1
#define WINATTN_VERSION_PATCH 0

/* ------------------------------------------------------------------------------------------------------ */
/* Status, errors, version, dispatch and threading                                                          */
/* ------------------------------------------------------------------------------------------------------ */

/* Values are numbered explicitly and only ever appended. */
typedef enum winattn_status {
  WINATTN_STATUS_OK = 0,
  WINATTN_STATUS_INVALID_ARGUMENT = 1,
  WINATTN_STATUS_UNSUPPORTED = 2,
  WINATTN_STATUS_OUT_OF_MEMORY = 3,
  WINATTN_STATUS_INTERNAL_ERROR = 4
} winattn_status;

/* A static English name for a status, e.g. "invalid argument"; "unknown status" for values outside the
   enum. Never NULL. */
WINATTN_API const char *winattn_status_string(winattn_status status);

/* The message of this thread's last failed call; "" when none failed yet. The pointer stays valid until the
   next failing call on the same thread. A successful call does not clear it. */
WINATTN_API const char *winattn_last_error_message(void);

/* The library's version, "MAJOR.MINOR.PATCH" (static string). */
WINATTN_API const char *winattn_version(void);

/* The instruction sets the kernels may use, named by the highest level they include: "amx_bf16"
   (AVX-512 with AVX512_BF16 and AMX-BF16), "avx512_bf16" (AVX-512 F/BW/DQ/VL with AVX512_BF16), "avx512"
   (AVX-512 F/BW/DQ/VL), "avx2" (AVX2 and FMA) or "scalar". That is the CPU's features masked by the cap of
   winattn_set_max_isa and by the environment variable WINATTN_MAX_ISA. The fp32 kernels are the same for
   the three AVX-512 levels; AVX512_BF16 and AMX-BF16 serve the bf16 kernels only. */
WINATTN_API const char *winattn_active_isa(void);

/* Caps the features the kernels may use at isa: one of the names above, or "native" for no cap of this
   call's own. A cap above what the CPU supports selects what the CPU has. The environment variable
   WINATTN_MAX_ISA (same names, read once, at first use) is a hard cap: the cap of this call applies on top
   of it and "native" does not lift it. An unknown WINATTN_MAX_ISA value is reported once on stderr and
   then ignored. Takes effect for calls that start afterwards; safe to call from any thread.
   NULL or an unknown name: WINATTN_STATUS_INVALID_ARGUMENT. */
WINATTN_API winattn_status winattn_set_max_isa(const char *isa);

/* Number of OpenMP threads the library's parallel loops use; 0 (the default) means OpenMP's default
   (omp_get_max_threads(), i.e. OMP_NUM_THREADS, clamped to WINATTN_MAX_THREADS). Negative or above
   WINATTN_MAX_THREADS: WINATTN_STATUS_INVALID_ARGUMENT. Results are bit-identical for every thread count.
   The setting is process-wide; a layer's own budget (winattn_layer_set_num_threads) overrides it. */
WINATTN_API winattn_status winattn_set_num_threads(int num_threads);

/* The value last set by winattn_set_num_threads (0 = OpenMP default). */
WINATTN_API int winattn_get_num_threads(void);

/* The most threads any winattn call uses. winattn_set_num_threads and winattn_layer_set_num_threads reject
   larger counts; an OpenMP default (OMP_NUM_THREADS) above it is clamped to it. A call never starts more
   threads than it has independent pieces of work, and the small calls (index, bias lookup and its
   gradient, masks, continuous bias table) run on the calling thread alone when their work is small. */
#define WINATTN_MAX_THREADS 256

/* Frees the scratch memory the calling thread keeps between calls to avoid allocating on every call (it is
   allocated again by the next call that needs it). Scratch beyond WINATTN_THREAD_SCRATCH_KEEP_BYTES is
   freed at the end of the call that needed it anyway, so a thread that once ran a large call does not keep
   its scratch. Never fails. */
#define WINATTN_THREAD_SCRATCH_KEEP_BYTES (16 * 1024 * 1024)
WINATTN_API void winattn_release_thread_memory(void);

/* ------------------------------------------------------------------------------------------------------ */
/* Relative position bias and shifted-window masks                                                          */
/* ------------------------------------------------------------------------------------------------------ */

/* index[i*N + j] for the N = prod(window) tokens of a window of ndim = 1..3 dimensions, tokens in row-major
   order: ndim 1 is a temporal axis (T), 2 is Swin (Wh, Ww), 3 is Video Swin (Wd, Wh, Ww).
     1D: (t_i - t_j) + T - 1
     2D: (dh + Wh - 1) * (2Ww - 1) + (dw + Ww - 1)
     3D: (dd + Wd - 1) * (2Wh - 1) * (2Ww - 1) + (dh + Wh - 1) * (2Ww - 1) + (dw + Ww - 1)
   with dh = h_i - h_j etc. The matching table has prod(2*window[d] - 1) rows.
   window: [ndim] entries >= 1. index: [N][N] int64, written.
   Errors: ndim outside 1..3, NULL pointers, window entries < 1, N*N overflowing. */
WINATTN_API winattn_status winattn_relative_position_index(int ndim, const int64_t *window, int64_t *index);

/* The bias-table lookup: bias[h][i][j] = table[index[i*n + j]][h].
   table is [table_rows][num_heads], PyTorch's relative_position_bias_table layout; bias is [num_heads][n][n].
   index: [n][n] int64, every entry in [0, table_rows) (checked before anything is written).
   Errors: NULL pointers, sizes <= 0, num_heads*n*n overflowing, an index entry out of range. */
WINATTN_API winattn_status winattn_relative_position_bias(const float *table, int64_t table_rows,
                                                          int64_t num_heads, const int64_t *index, int64_t n,
                                                          float *bias);

/* Its gradient: grad_table[index[i*n + j]][h] += grad_bias[h][i][j]. Accumulates; the caller zeroes.
   grad_bias: [num_heads][n][n]; grad_table: [table_rows][num_heads]. Deterministic: the same bits for any
   thread count (each table entry sums its contributions in increasing i*n + j order, no atomics).
   Errors: as winattn_relative_position_bias. */
WINATTN_API winattn_status winattn_relative_position_bias_backward(const float *grad_bias, int64_t table_rows,
                                                                   int64_t num_heads, const int64_t *index,
                                                                   int64_t n, float *grad_table);

/* SwinV2 continuous position bias table, [(2Wh-1)(2Ww-1)][num_heads] = 16 * sigmoid(MLP(coords)), exactly as
   torchvision's ShiftedWindowAttentionV2 builds it: relative coords in [-(W-1), W-1] per axis, divided by
   (W-1) (skip the division on an axis whose window is 1), times 8, then sign(x) * log2(|x| + 1) / 3;
   MLP = Linear(2, hidden, bias) -> ReLU -> Linear(hidden, num_heads, no bias), nn.Linear weight layouts:
   w1 [hidden][2], b1 [hidden], w2 [num_heads][hidden]. (16*sigmoid applied per table entry is the same as
   torchvision applying it after the lookup.) Table rows are ordered (dh + Wh - 1) * (2Ww - 1) + (dw + Ww - 1),
   matching winattn_relative_position_index with ndim 2. b1 may be NULL (no bias).
   Errors: NULL pointers, sizes <= 0, sizes overflowing. */
WINATTN_API winattn_status winattn_continuous_position_bias_table(int64_t window_h, int64_t window_w,
                                                                  const float *w1, const float *b1,
                                                                  const float *w2, int64_t hidden,
                                                                  int64_t num_heads, float *table);

/* Shifted-window attention mask, [num_windows][N][N]: 0 where two tokens of a window come from the same
   region of the cyclically shifted grid, -100 where they do not; the values torchvision's
   shifted_window_attention and Video Swin build. grid, window and shift have 3 entries (depth, height,
   width); 2D callers pass depth 1, window 1, shift 0 there. Each grid entry must be a multiple of its window
   entry and 0 <= shift < window. Windows are numbered row-major over the grid, N = prod(window).
   Per axis the regions are [0, G-w), [G-w, G-s), [G-s, G).
   num_windows = prod(grid[d] / window[d]).
   Errors: NULL pointers, entries <= 0, a grid entry not a multiple of its window, a shift out of range,
   num_windows*N*N overflowing. */
WINATTN_API winattn_status winattn_shifted_window_mask(const int64_t *grid, const int64_t *window,
                                                       const int64_t *shift, float *mask);

/* ------------------------------------------------------------------------------------------------------ */
/* Fused windowed softmax attention                                                                         */
/* ------------------------------------------------------------------------------------------------------ */

/* out[w][h] = softmax(scale * q[w][h] k[w][h]^T + bias[h] + mask[w % mask_windows]) v[w][h]
   q, k, v, out: [num_windows][num_heads][n][head_dim], contiguous float32, out may not alias q, k or v.
   bias: [num_heads][n][n] or NULL. mask: [mask_windows][n][n] or NULL (then mask_windows is ignored).
   The windows of a batch of B images are numbered image-major (w = b * nW + window), so window w uses mask
   w % nW: exactly Swin's WindowAttention.forward with a [nW, N, N] mask. With n = T and no mask it is the
   temporal attention of video adapters (AIM).

   Fused: scores live in registers and L1 only; no [num_windows][num_heads][n][n] tensor is formed and bias
   and mask are read in place. Softmax subtracts the row maximum. A row whose logits are all -inf yields a
   zero output row (not NaN). NaN anywhere in a row's logits or in the v rows it weighs makes that output row
   NaN; other rows are unaffected. Parallel over (window, head) with OpenMP; bit-identical results for any
   thread count.
   Errors: NULL q/k/v/out, sizes <= 0, mask_windows <= 0 with a mask, sizes whose products overflow,
   out overlapping q, k, v, bias or mask. */
WINATTN_API winattn_status winattn_window_attention(int64_t num_windows, int64_t num_heads, int64_t n,
                                                    int64_t head_dim, const float *q, const float *k,
                                                    const float *v, float scale, const float *bias,
                                                    const float *mask, int64_t mask_windows, float *out);

/* ------------------------------------------------------------------------------------------------------ */
/* The shifted-window attention layer                                                                       */
/* ------------------------------------------------------------------------------------------------------ */

/* Stateless, torchvision-compatible. input and output: [batch][depth][height][width][channels] float32
   (2D feature maps: depth 1, window[0] 1, shift[0] 0). N = window[0]*window[1]*window[2].
   Semantics: torchvision.models.swin_transformer.shifted_window_attention in eval mode, axis by axis in
   3D: zero-pad each axis at its end to a window multiple; on every axis whose window is >= the padded size
   the shift is taken as 0; cyclic shift by -shift; partition into windows (row-major); qkv projection;
   v1 (logit_scale NULL): q scaled by head_dim^-0.5; v2 (logit_scale set): the k third of qkv_bias ignored,
   q and k L2-normalised (eps 1e-12), logits times exp(min(logit_scale[h], ln 100)); + bias; + the -100
   shifted-window mask when any shift > 0; softmax; @ v; output projection; reverse partition and shift,
   crop the padding. output may not overlap input. */
typedef struct winattn_window_attention_args {
  int64_t batch;
  int64_t grid[3];                     /* depth, height, width */
  int64_t channels;
  int64_t num_heads;                   /* channels % num_heads == 0 */
  int64_t window[3];                   /* each >= 1 */
  int64_t shift[3];                    /* 0 <= shift[d] < window[d] */
  const float *qkv_weight;             /* [3*channels][channels], nn.Linear layout */
  const float *qkv_bias;               /* [3*channels] or NULL */
  const float *proj_weight;            /* [channels][channels] */
  const float *proj_bias;              /* [channels] or NULL */
  const float *relative_position_bias; /* [num_heads][N][N], already looked up; NULL = none */
  const float *logit_scale;            /* [num_heads] or NULL; non-NULL selects SwinV2 cosine attention */
  uint32_t flags;                      /* 0; reserved */
} winattn_window_attention_args;

/* Runs the layer described by args on input, writing output (same shape as input).
   Errors: NULL args/input/output or weights, sizes <= 0, channels % num_heads != 0, shifts out of range,
   non-zero flags, sizes that overflow, output overlapping input, a NaN logit_scale entry. OUT_OF_MEMORY
   when the workspace cannot be allocated. */
WINATTN_API winattn_status winattn_shifted_window_attention(const winattn_window_attention_args *args,
                                                            const float *input, float *output);

/* Prepacked layer for serving. create copies and packs everything it needs (the caller may free its arrays
   afterwards) and looks the bias up once. forward may be called concurrently from any number of threads on
   one layer, with any batch and grid per call. */
typedef struct winattn_layer winattn_layer;
typedef enum winattn_dtype { WINATTN_DTYPE_F32 = 0, WINATTN_DTYPE_BF16 = 1, WINATTN_DTYPE_F16 = 2 } winattn_dtype;
typedef struct winattn_layer_desc {
  int64_t channels;
  int64_t num_heads;
  int64_t window[3];
  int64_t shift[3];
  const float *qkv_weight;                   /* [3*channels][channels] */
  const float *qkv_bias;                     /* [3*channels] or NULL */
  const float *proj_weight;                  /* [channels][channels] */
  const float *proj_bias;                    /* [channels] or NULL */
  const float *relative_position_bias_table; /* v1: [prod(2*window[d]-1)][num_heads]; NULL for v2 or none */
  const float *logit_scale;                  /* v2: [num_heads]; NULL for v1 */
  const float *cpb_weight1;                  /* v2 continuous position bias MLP: [cpb_hidden][2] */
  const float *cpb_bias1;                    /* [cpb_hidden] */
  const float *cpb_weight2;                  /* [num_heads][cpb_hidden] */
  int64_t cpb_hidden;                        /* 512 in torchvision */
  winattn_dtype compute_dtype;               /* F32; BF16 may return UNSUPPORTED until it exists */
  uint32_t flags;                            /* 0; reserved */
} winattn_layer_desc;

/* Creates a layer from desc, writing the handle to *layer (set only on success).
   v1: relative_position_bias_table set (or NULL for no bias), logit_scale NULL, cpb_* NULL.
   v2: logit_scale set; cpb_weight1/cpb_bias1/cpb_weight2/cpb_hidden give the continuous position bias
   (2D windows only: window[0] == 1), or all NULL/0 for none; relative_position_bias_table must be NULL.
   Errors: as winattn_shifted_window_attention (including a NaN logit_scale entry), plus an unknown
   compute_dtype (INVALID_ARGUMENT), BF16 (UNSUPPORTED in this version), an inconsistent v1/v2 description. */
WINATTN_API winattn_status winattn_layer_create(const winattn_layer_desc *desc, winattn_layer **layer);

/* Runs the layer: input and output [batch][grid[0]][grid[1]][grid[2]][channels]; same semantics as
   winattn_shifted_window_attention. Thread-safe on one layer. Errors: NULL layer/input/grid/output,
   batch or grid entries <= 0, overflowing sizes, output overlapping input, a destroyed layer (detected on a
   best-effort basis). OUT_OF_MEMORY when memory runs out.
   What the output holds on failure: argument errors and allocation failures of winattn's own memory leave
   it untouched (all memory a call needs is taken before the first write). The output is written window
   chunk by window chunk, each chunk whole after its two projections succeeded; if oneDNN fails inside a
   projection after other chunks were written (an allocation inside oneDNN: OUT_OF_MEMORY; anything else:
   INTERNAL_ERROR), every output element holds either its result or the value it had before the call.
   The same holds for winattn_shifted_window_attention. */
WINATTN_API winattn_status winattn_layer_forward(const winattn_layer *layer, const float *input,
                                                 int64_t batch, const int64_t *grid, float *output);

/* Frees the layer. NULL does nothing. Must not race with a forward on the same layer. */
WINATTN_API void winattn_layer_destroy(winattn_layer *layer);

/* This layer's thread budget: the most threads one forward on it uses, whatever winattn_set_num_threads
   says. 0 (the value at create) follows the process setting. A server that runs many requests at once
   gives each layer (or each request's layer) a budget such that the budgets of concurrent forwards add up
   to the cores it has: with a budget of 1, a forward runs on the calling thread alone and starts no other.
   May be called while forwards run on the layer; forwards that start afterwards use the new budget.
   Results are bit-identical for every budget.
   Errors: not a live layer, num_threads < 0 or > WINATTN_MAX_THREADS (INVALID_ARGUMENT). */
WINATTN_API winattn_status winattn_layer_set_num_threads(winattn_layer *layer, int num_threads);

/* Writes the layer's thread budget (0 = the process setting) to *num_threads.
   Errors: not a live layer, NULL num_threads. */
WINATTN_API winattn_status winattn_layer_get_num_threads(const winattn_layer *layer, int *num_threads);

/* Frees what the layer keeps to speed up later forwards: the shifted-window masks and the projection plans
   made for unusual batch sizes. The next forward that needs them builds them again. The layer holds at
   most what winattn_layer_memory_bytes reports after create plus, for a shifted layer, 7 * N * N floats of
   masks and a bounded number of projection plans (see the README's reliability section), for any sequence
   of inputs. Safe to call while forwards run on the layer. Errors: not a live layer. */
WINATTN_API winattn_status winattn_layer_trim(winattn_layer *layer);

/* Writes to *bytes the heap memory the layer holds now: weights, packed weights, bias, masks and plans
   (oneDNN's primitive objects are counted by their scratch sizes). Errors: not a live layer, NULL bytes. */
WINATTN_API winattn_status winattn_layer_memory_bytes(const winattn_layer *layer, int64_t *bytes);

/* ------------------------------------------------------------------------------------------------------ */
/* The Swin transformer block                                                                              */
/* ------------------------------------------------------------------------------------------------------ */

/* One Swin block in eval mode (dropout and stochastic depth are identity), torchvision's
   SwinTransformerBlock (v1, pre-norm) and SwinTransformerBlockV2 (res-post-norm), 2D and 3D:
     v1 (post_norm 0): y = x + attn(norm1(x));  out = y + mlp(norm2(y))
     v2 (post_norm 1): y = x + norm1(attn(x));  out = y + norm2(mlp(y))
   attn is the shifted-window attention layer described by `attention` (winattn_layer_desc, v1 or v2 bias);
   norm1 and norm2 are LayerNorm over the channels (eps norm_eps, biased variance as torch); mlp is
   fc2(GELU(fc1(z))) with the exact erf GELU of nn.GELU(). Prepacked at create like the layer; forward may
   be called concurrently from any number of threads on one block, with any batch and grid per call. */
typedef struct winattn_block winattn_block;
typedef struct winattn_block_desc {
  winattn_layer_desc attention;            /* channels, heads, window, shift, qkv/proj, position bias */
  const float *norm1_weight, *norm1_bias;  /* [channels] each */
  const float *norm2_weight, *norm2_bias;  /* [channels] each */
  float norm_eps;                          /* LayerNorm epsilon; 0 selects torchvision's 1e-5 */
  int32_t post_norm;                       /* 0: Swin v1 pre-norm; 1: SwinV2 res-post-norm */
  int64_t mlp_hidden;                      /* fc1's output features (4 * channels in Swin) */
  const float *fc1_weight, *fc1_bias;      /* [mlp_hidden][channels], [mlp_hidden] or NULL */
  const float *fc2_weight, *fc2_bias;      /* [channels][mlp_hidden], [channels] or NULL */
  int num_threads;                         /* this block's thread budget; 0 = the process setting */
  uint32_t flags;                          /* 0; reserved */
} winattn_block_desc;

/* Creates a block from desc (everything copied and packed; the caller may free its arrays afterwards),
   writing the handle to *block (set only on success). Errors: as winattn_layer_create for desc->attention,
   plus NULL norm or fc weights, mlp_hidden <= 0, post_norm not 0 or 1, a negative or NaN norm_eps,
   num_threads outside [0, WINATTN_MAX_THREADS], non-zero flags. */
WINATTN_API winattn_status winattn_block_create(const winattn_block_desc *desc, winattn_block **block);

/* Runs the block: input and output [batch][grid[0]][grid[1]][grid[2]][channels] (2D: grid[0] = 1).
   Thread-safe on one block. Errors and what the output holds on failure: as winattn_layer_forward. */
WINATTN_API winattn_status winattn_block_forward(const winattn_block *block, const float *input, int64_t batch,
                                                 const int64_t *grid, float *output);

/* The block's thread budget, as winattn_layer_set_num_threads. Errors: not a live block, num_threads out
   of [0, WINATTN_MAX_THREADS]. */
WINATTN_API winattn_status winattn_block_set_num_threads(winattn_block *block, int num_threads);

/* Frees the block. NULL does nothing. Must not race with a forward on the same block. */
WINATTN_API void winattn_block_destroy(winattn_block *block);

/* ------------------------------------------------------------------------------------------------------ */
/* Whole models: Swin, SwinV2, Video Swin                                                                  */
/* ------------------------------------------------------------------------------------------------------ */

/* A whole Swin network in eval mode, built from its weights: patch embedding (the k x k stride-k
   convolution computed as a GEMM over patches, then LayerNorm), the stages of blocks (winattn_block_*),
   patch merging between stages (v1: concat 2x2 -> LayerNorm -> Linear; v2: concat -> Linear -> LayerNorm;
   Video Swin merges height and width only), final LayerNorm, average pool and the classifier head.
   Families and the state_dict names they are recognised by:
     - Swin v1: torchvision swin_t/s/b ("features.0.0.weight", ...) and timm swin_*_patch4_window* (newer
       timm, "layers.N.downsample" at the start of stage N; older timm, at the end of stage N);
     - SwinV2: torchvision swin_v2_t/s/b (timm swinv2_* uses separate q_bias/v_bias: recognised as well);
     - Video Swin 3D: torchvision swin3d_t/s/b ("patch_embed.proj.weight" of 5 dimensions, "features.N")
       and the original Video Swin ("layers.N.blocks.M", head "cls_head.fc_cls"; also with mmaction2's
       "backbone." prefix).
   The architecture is inferred from names and shapes: the patch embedding's weight gives the patch size,
   input channels and embedding width; each stage's relative_position_bias_table gives its window and heads
   (SwinV2: the window recorded by relative_coords_table or relative_position_index; without either,
   torchvision's default of 8 for torchvision names, an error otherwise: timm leaves these buffers out of its
   state_dict, pass them from module.named_buffers()); block counts give the depths; the head gives the
   classes (no head: a backbone, num_classes 0). Every weight and bias of the architecture must be present
   (the patch embedding's norm is optional, as in Video Swin). The computation follows
   the implementation the names come from: torchvision's 2D models pad every stage to whole windows and keep
   the window size (the shift is dropped on an axis the window covers); Video Swin shrinks the window to an
   axis not larger than it, with shift 0 on that axis and the bias taken from the first N rows and columns
   of the full window's relative position index, as torchvision and the original code do.
   A model is immutable once created: every entry point may run concurrently on one model. */
typedef struct winattn_model winattn_model;
typedef struct winattn_model_options {
  winattn_dtype compute_dtype; /* WINATTN_DTYPE_F32 (what zero-initialised options mean) or BF16 */
  int num_threads;             /* this model's thread budget; 0 = the process default */
  uint32_t flags;              /* 0; reserved */
} winattn_model_options;

typedef enum winattn_model_family {
  WINATTN_MODEL_SWIN = 1,
  WINATTN_MODEL_SWIN_V2 = 2,
  WINATTN_MODEL_SWIN_3D = 3
} winattn_model_family;
typedef struct winattn_model_info {
  winattn_model_family family;
  int64_t in_channels, num_classes, embed_dim, num_stages; /* num_classes 0: no head (backbone) */
  int64_t depths[8], num_heads[8];                         /* per stage */
  int64_t patch[3], window[3];                             /* (depth, height, width); 2D: depth 1 */
} winattn_model_info;

/* A tensor held by the caller: name as in a torchvision or timm state_dict, dense row-major. */
typedef struct winattn_tensor {
  const char *name;
  winattn_dtype dtype;
  int32_t ndim;
  int64_t shape[8];
  const void *data;
} winattn_tensor;

/* Loads a model from a .safetensors file (memory-mapped; every tensor's dtype, shape and byte range is
   checked against the file before use). options may be NULL (defaults). Tensors may be F32, F16, BF16 or
   F64 (converted to float32 as torch's .float() does); the buffers a state_dict carries besides the
   weights are checked when they matter (relative_position_index must be the index the window implies,
   relative_coords_table gives a SwinV2 model's pretrained window) and ignored otherwise (attn_mask, ...).
   Errors (with a message naming the file and the first tensor that does not fit): a file that cannot be
   read or is not valid safetensors, an unrecognised architecture, a missing tensor, a wrong shape, a
   tensor that is not used, a NaN or infinite weight (INVALID_ARGUMENT); compute_dtype BF16 (UNSUPPORTED
   in this version), an unknown compute_dtype, num_threads outside [0, WINATTN_MAX_THREADS], non-zero
   flags (INVALID_ARGUMENT); OUT_OF_MEMORY. *model is set only on success. */
WINATTN_API winattn_status winattn_model_load(const char *path, const winattn_model_options *options,
                                              winattn_model **model);

/* As winattn_model_load from tensors the caller holds (count of them, names unique). Everything is copied:
   the caller may free the tensors when the call returns. */
WINATTN_API winattn_status winattn_model_create(const winattn_tensor *tensors, int64_t count,
                                                const winattn_model_options *options, winattn_model **model);

/* Writes the model's architecture to *info (unused entries of depths/num_heads are 0).
   Errors: not a live model, NULL info. */
WINATTN_API winattn_status winattn_model_get_info(const winattn_model *model, winattn_model_info *info);

/* input: [batch][in_channels][size[0]][size[1]][size[2]] float32, size = (frames, height, width), frames 1
   for 2D models (i.e. [batch][3][H][W]), normalised as torchvision's transforms leave them; logits:
   [batch][num_classes]. Any size the network accepts: 2D models need height and width >= the patch (the
   convolution drops the rows and columns a patch does not cover, as torch's does); Video Swin pads frames,
   height and width at the end to patch multiples, as its patch embedding does. Thread-safe on one model.
   Errors: not a live model, NULL pointers, batch or size entries <= 0, frames != 1 for a 2D model, a size
   smaller than the patch, overflowing sizes, a backbone (num_classes 0: use winattn_model_features);
   OUT_OF_MEMORY. On failure the logits are untouched (the head writes into the model's scratch and the
   logits are copied out once it succeeded). */
WINATTN_API winattn_status winattn_model_classify(const winattn_model *model, const float *input, int64_t batch,
                                                  const int64_t *size, float *logits);

/* Writes the shape of each stage's output for an input of `size` (frames, height, width), as
   shapes[stage][0..3] = (frames, height, width, channels): shapes is [num_stages][4]. The features of
   stage s are then [batch][frames][height][width][channels] float32, channels last (the layout of
   torchvision's model.features outputs; 2D: frames 1). Errors: not a live model, NULL pointers, a size
   the model does not accept (as winattn_model_classify). */
WINATTN_API winattn_status winattn_model_feature_shapes(const winattn_model *model, const int64_t *size,
                                                        int64_t *shapes);

/* Runs the backbone and writes each stage's output (after its blocks, before the next patch merging; the
   last stage's output before the final norm) to features[stage], a [batch][frames][height][width][channels]
   array as winattn_model_feature_shapes gives it. features is [num_stages] pointers; a NULL pointer skips
   that stage's copy (the stages still run up to the last one requested). The arrays must not overlap
   input or each other. Errors: as winattn_model_classify. On failure every feature float holds its result
   or the value it had before the call (a stage's output may be complete when a later stage fails). */
WINATTN_API winattn_status winattn_model_features(const winattn_model *model, const float *input, int64_t batch,
                                                  const int64_t *size, float *const *features);

/* The model's thread budget, as winattn_layer_set_num_threads: the most threads one call on the model
   uses (0 = the process setting). Errors: not a live model, num_threads outside [0, WINATTN_MAX_THREADS]. */
WINATTN_API winattn_status winattn_model_set_num_threads(winattn_model *model, int num_threads);

/* Writes the model's thread budget to *num_threads. Errors: not a live model, NULL num_threads. */
WINATTN_API winattn_status winattn_model_get_num_threads(const winattn_model *model, int *num_threads);

/* Frees the model. NULL does nothing. Must not race with a call on the same model. */
WINATTN_API void winattn_model_destroy(winattn_model *model);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* WINATTN_WINATTN_H_ */
