"""Float64-capable PyTorch reference models of Swin (2D, v1 and v2) and Video Swin (3D) whose state_dict
names are those of the public checkpoints, for tests that compare winattn's model-level paths against them.

Written from the published formulations (Swin, Swin V2, Video Swin); the code is this file's own. Nothing here
needs timm or a torchvision newer than Debian's 0.14 (which has swin_t / swin_v2_t but not swin3d_t).

VideoSwin3D(..., naming=...)
    "torchvision": torchvision >= 0.15 swin3d_t names (patch_embed.proj/.norm, features.{0,2,4,6}.{i}.norm1,
        .attn.qkv, .attn.proj, .attn.relative_position_bias_table, buffer .attn.relative_position_index [N][N]
        int64, .norm2, .mlp.0, .mlp.3; patch merging at features.{1,3,5}.reduction/.norm; norm; head).
    "videoswin": the original Video Swin repository's backbone names with the head of its recognizer
        (patch_embed.proj/.norm, layers.{s}.blocks.{i}.* with mlp.fc1/mlp.fc2, layers.{s}.downsample.* at the
        END of stages s < last, norm, cls_head.fc_cls).
    "mmaction": as "videoswin" with the backbone under "backbone." (backbone.patch_embed..., backbone.norm,
        cls_head.fc_cls), which is how the released Video Swin .pth files (an mmaction Recognizer3D) spell them.

TimmSwin(..., version=1|2, layout="new"|"old")
    timm's SwinTransformer (version 1) and SwinTransformerV2 (version 2), at the trained resolution.
    layout "new" (timm >= 0.9): layers.{s}.downsample at the START of stages s >= 1, head.fc.
    layout "old" (timm < 0.9 and the Microsoft checkpoints): layers.{s}.downsample at the END of stages
    s < last, head.
    Buffers: by default (persistent_buffers=None) the state_dict holds what the checkpoints of that layout hold.
    timm >= 0.9 registers relative_position_index, relative_coords_table and attn_mask with persistent=False
    (its checkpoint filter drops them from older files), so layout "new" has NO buffers in the state_dict;
    layout "old" has attn.relative_position_index [N][N] int64 (v2 also attn.relative_coords_table) in every
    block and attn_mask [nW][N][N] in each block whose shift is non-zero (as timm < 0.9 and Microsoft's code).
    persistent_buffers=True / False forces them all in / out. The buffers always exist as attributes; the
    forward pass never reads attn_mask or relative_coords_table from the buffer (see below).

Semantics common to both (the generic `WindowAttention.forward`):
    x [B][*S][C] (S = (H, W) or (T, H, W)), per axis: if S_i <= window_i the effective window is S_i and the
    shift on that axis is 0; zero-pad at the end to multiples of the effective window; roll by -shift;
    partition into windows (windows and tokens row-major); qkv; v1: q * head_dim^-0.5 @ k^T; v2: cosine
    similarity * exp(min(logit_scale, ln 100)); + bias; + the -100 mask between tokens of different shift
    regions when any effective shift > 0 (regions per axis on the padded size P: [0, P-w), [P-w, P-s),
    [P-s, P)); softmax; @ v; proj; reverse partition; roll by +shift; crop.
    Bias: table[relative_position_index[:N, :N]] with N = prod(effective window) and the index of the window
    the table was built for (for Video Swin the configured window: the documented quirk of torchvision and the
    original code; for timm the effective window at the trained resolution, so N is the whole index).
    v2 table: 16 * sigmoid(cpb_mlp(relative_coords_table)), the coordinates computed in float64 from the
    formula at every forward (so a float64 model is exact; a checkpoint's float32-rounded buffer is not used).

init_random_(module, seed): deterministic random parameters with non-degenerate outputs.

Run this file (/usr/bin/python3 tests/python/reference_models.py) for its self-checks against torchvision's
2D SwinTransformer (v1 and v2) and a brute-force dense formulation of 3D shifted-window attention.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "VideoSwin3D",
    "TimmSwin",
    "init_random_",
    "relative_position_index",
    "log_spaced_coords_table",
    "shift_region_mask",
    "WindowAttention",
    "SwinBlock",
    "PatchMerging",
]


def _prod(values):
    out = 1
    for v in values:
        out *= int(v)
    return out


def _tuple(value, n):
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError("expected %d values, got %r" % (n, value))
        return tuple(int(v) for v in value)
    return (int(value),) * n


# ----------------------------------------------------------------------------------------------------------
# Position bias helpers
# ----------------------------------------------------------------------------------------------------------


def relative_position_index(window):
    """[N][N] int64 index into a [(2*w0-1)*(2*w1-1)*...][heads] table, N = prod(window), tokens row-major.

    index[i][j] = sum_a (c_a(i) - c_a(j) + w_a - 1) * prod_{b > a} (2*w_b - 1), c(i) the coordinates of token i.
    """
    window = tuple(int(w) for w in window)
    coords = torch.stack(torch.meshgrid(*[torch.arange(w) for w in window], indexing="ij")).flatten(1)  # nd, N
    rel = coords[:, :, None] - coords[:, None, :]  # nd, N, N
    index = torch.zeros(rel.shape[1:], dtype=torch.int64)
    for a, w in enumerate(window):
        stride = _prod(2 * wb - 1 for wb in window[a + 1:])
        index += (rel[a] + (w - 1)) * stride
    return index


def log_spaced_coords_table(window, pretrained_window=0, dtype=torch.float64):
    """Swin V2's [1][2*w0-1][2*w1-1][2] continuous relative coordinates, computed in float64.

    Per axis the offset d in [-(w-1), w-1] is divided by (pretrained_window-1) when pretrained_window > 0, else
    by (w-1); times 8; then sign(d) * log2(|d| + 1) / log2(8). (A window of 1 divides 0 by 1 instead of 0 by
    0: the only coordinate is 0 either way, and timm would give NaN there.)
    """
    window = _tuple(window, 2)
    pretrained = _tuple(pretrained_window, 2)
    axes = [torch.arange(-(w - 1), w, dtype=torch.float64) for w in window]
    table = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)  # 2w0-1, 2w1-1, 2
    for a in range(2):
        denom = (pretrained[a] - 1) if pretrained[a] > 0 else (window[a] - 1)
        table[..., a] /= max(denom, 1)
    table = table * 8.0
    table = torch.sign(table) * torch.log2(table.abs() + 1.0) / math.log2(8.0)
    return table.unsqueeze(0).to(dtype)


def _window_partition(x, window):
    """[B][*P][C] with P divisible by window -> [B*nW][N][C], windows row-major, tokens row-major."""
    b, c = x.shape[0], x.shape[-1]
    padded = x.shape[1:-1]
    nd = len(window)
    shape = [b]
    for p, w in zip(padded, window):
        shape += [p // w, w]
    shape.append(c)
    perm = [0] + [1 + 2 * a for a in range(nd)] + [2 + 2 * a for a in range(nd)] + [1 + 2 * nd]
    return x.reshape(shape).permute(perm).reshape(-1, _prod(window), c)


def _window_reverse(xw, window, padded, batch):
    """Inverse of _window_partition: [B*nW][N][C] -> [B][*P][C]."""
    c = xw.shape[-1]
    nd = len(window)
    grid = [p // w for p, w in zip(padded, window)]
    x = xw.reshape([batch] + grid + list(window) + [c])
    perm = [0]
    for a in range(nd):
        perm += [1 + a, 1 + nd + a]
    perm.append(1 + 2 * nd)
    return x.permute(perm).reshape([batch] + list(padded) + [c])


def _region_labels(padded, window, shift):
    """[*P] int64 label of each padded position's shift region (in the rolled frame), 3 regions per axis."""
    labels = None
    for a, (p, w, s) in enumerate(zip(padded, window, shift)):
        r = torch.arange(p)
        lab = torch.zeros(p, dtype=torch.int64)
        lab[r >= p - w] = 1
        if s > 0:
            lab[r >= p - s] = 2
        view = [1] * len(padded)
        view[a] = p
        lab = lab.view(view) * (3 ** a)
        labels = lab if labels is None else labels + lab
    return labels


def shift_region_mask(padded, window, shift, dtype=torch.float64):
    """[nW][N][N]: -100 between tokens of a window that lie in different shift regions, else 0.

    Regions per axis on the padded size P (rolled frame): [0, P-w), [P-w, P-s), [P-s, P). With s = 0 the split
    at P-w falls on a window boundary, so it never separates tokens of one window.
    """
    padded = tuple(int(p) for p in padded)
    window = tuple(int(w) for w in window)
    labels = _region_labels(padded, window, shift)  # *P
    lw = _window_partition(labels.reshape((1,) + padded + (1,)), window)[..., 0]  # nW, N
    diff = lw[:, :, None] != lw[:, None, :]
    return torch.zeros(diff.shape, dtype=dtype).masked_fill(diff, -100.0)


def _effective_window_shift(size, window, shift):
    """Per axis: size <= window -> (size, 0), else (window, shift)."""
    eff_w, eff_s = [], []
    for n, w, s in zip(size, window, shift):
        if n <= w:
            eff_w.append(int(n))
            eff_s.append(0)
        else:
            eff_w.append(int(w))
            eff_s.append(int(s))
    return tuple(eff_w), tuple(eff_s)


# ----------------------------------------------------------------------------------------------------------
# Modules
# ----------------------------------------------------------------------------------------------------------


class WindowAttention(nn.Module):
    """Windowed multi-head self-attention with relative position bias, 2D or 3D, Swin v1 or v2.

    table_window: the window the bias table / index are built for. Parameters (v1): qkv (bias), proj,
    relative_position_bias_table; (v2): qkv (no bias), q_bias, v_bias, logit_scale, cpb_mlp.{0,2}, proj.
    """

    def __init__(self, dim, num_heads, table_window, version=1, pretrained_window=0, persistent_buffers=True):
        super().__init__()
        if dim % num_heads:
            raise ValueError("dim %d is not a multiple of num_heads %d" % (dim, num_heads))
        self.dim = dim
        self.num_heads = num_heads
        self.table_window = tuple(int(w) for w in table_window)
        self.version = version
        self.pretrained_window = pretrained_window
        if version == 1:
            self.qkv = nn.Linear(dim, 3 * dim, bias=True)
            self.relative_position_bias_table = nn.Parameter(
                torch.zeros(_prod(2 * w - 1 for w in self.table_window), num_heads))
        elif version == 2:
            if len(self.table_window) != 2:
                raise ValueError("Swin V2 attention is 2D here")
            self.logit_scale = nn.Parameter(torch.log(10 * torch.ones(num_heads, 1, 1)))
            self.cpb_mlp = nn.Sequential(nn.Linear(2, 512, bias=True), nn.ReLU(inplace=False),
                                         nn.Linear(512, num_heads, bias=False))
            self.qkv = nn.Linear(dim, 3 * dim, bias=False)
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
            coords = log_spaced_coords_table(self.table_window, pretrained_window)
            self.register_buffer("relative_coords_table", coords.to(torch.get_default_dtype()),
                                 persistent=persistent_buffers)
            self._coords_exact = coords  # float64, not a buffer: what forward uses
        else:
            raise ValueError("version must be 1 or 2")
        self.register_buffer("relative_position_index", relative_position_index(self.table_window),
                             persistent=persistent_buffers)
        self.proj = nn.Linear(dim, dim, bias=True)

    def bias_table(self):
        """[rows][heads] in the parameters' dtype (v2: 16 * sigmoid(cpb_mlp(coords)))."""
        if self.version == 1:
            return self.relative_position_bias_table
        w = self.cpb_mlp[0].weight
        coords = self._coords_exact.to(device=w.device, dtype=w.dtype)
        return 16.0 * torch.sigmoid(self.cpb_mlp(coords).reshape(-1, self.num_heads))

    def position_bias(self, n):
        """[heads][n][n] = table[index[:n, :n]] (the first n rows and columns of the table window's index)."""
        index = self.relative_position_index[:n, :n].reshape(-1)
        return self.bias_table()[index].reshape(n, n, self.num_heads).permute(2, 0, 1)

    def qkv_bias(self):
        if self.version == 1:
            return self.qkv.bias
        return torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])

    def forward(self, x, window, shift):
        """x [B][*S][C] (already normalised); window / shift: the configured ones (shrunk here per axis)."""
        b, c = x.shape[0], x.shape[-1]
        size = tuple(x.shape[1:-1])
        nd = len(size)
        window, shift = _effective_window_shift(size, window, shift)
        pads = [(-n) % w for n, w in zip(size, window)]
        if any(pads):
            spec = [0, 0]
            for p in reversed(pads):
                spec += [0, p]
            x = F.pad(x, spec)
        padded = tuple(x.shape[1:-1])
        dims = tuple(range(1, nd + 1))
        shifted = any(s > 0 for s in shift)
        if shifted:
            x = torch.roll(x, shifts=tuple(-s for s in shift), dims=dims)
        xw = _window_partition(x, window)  # B*nW, N, C
        bw, n, _ = xw.shape
        heads = self.num_heads
        qkv = F.linear(xw, self.qkv.weight, self.qkv_bias())
        qkv = qkv.reshape(bw, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if self.version == 1:
            attn = (q * (c // heads) ** -0.5) @ k.transpose(-2, -1)
        else:
            attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
            attn = attn * torch.clamp(self.logit_scale, max=math.log(100.0)).exp()
        attn = attn + self.position_bias(n).unsqueeze(0)
        if shifted:
            mask = shift_region_mask(padded, window, shift, dtype=attn.dtype).to(attn.device)  # nW, N, N
            nw = mask.shape[0]
            attn = attn.reshape(bw // nw, nw, heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.reshape(bw, heads, n, n)
        attn = torch.softmax(attn, dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(bw, n, c)
        out = self.proj(out)
        x = _window_reverse(out, window, padded, b)
        if shifted:
            x = torch.roll(x, shifts=shift, dims=dims)
        if any(pads):
            x = x[(slice(None),) + tuple(slice(0, m) for m in size)]
        return x.contiguous()


class _MlpSeq(nn.Sequential):
    """torchvision's MLP: mlp.0 (C -> hidden), GELU, Dropout, mlp.3 (hidden -> C), Dropout."""

    def __init__(self, dim, hidden):
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.0), nn.Linear(hidden, dim), nn.Dropout(0.0))


class _MlpFc(nn.Module):
    """timm / Video Swin Mlp: fc1, exact GELU, fc2."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class SwinBlock(nn.Module):
    """v1 (pre-norm): x + attn(norm1(x)), x + mlp(norm2(x)); v2 (res-post-norm): x + norm1(attn(x)),
    x + norm2(mlp(x)). window / shift are the configured ones; the attention shrinks them per input size."""

    def __init__(self, dim, num_heads, window, shift, table_window=None, mlp_ratio=4.0, version=1, mlp="fc",
                 pretrained_window=0, persistent_buffers=True, attn_mask_for=None):
        super().__init__()
        self.window = tuple(int(w) for w in window)
        self.shift = tuple(int(s) for s in shift)
        self.version = version
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = WindowAttention(dim, num_heads, table_window or self.window, version=version,
                                    pretrained_window=pretrained_window, persistent_buffers=persistent_buffers)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        hidden = int(dim * mlp_ratio)
        self.mlp = _MlpSeq(dim, hidden) if mlp == "seq" else _MlpFc(dim, hidden)
        if attn_mask_for is not None:
            # timm < 0.9 / Microsoft: a [nW][N][N] buffer for the trained resolution in shifted blocks. Names only.
            w, s = _effective_window_shift(attn_mask_for, self.window, self.shift)
            if any(v > 0 for v in s):
                padded = [n + (-n) % ww for n, ww in zip(attn_mask_for, w)]
                self.register_buffer("attn_mask", shift_region_mask(padded, w, s, torch.get_default_dtype()),
                                     persistent=persistent_buffers)

    def forward(self, x):
        if self.version == 1:
            x = x + self.attn(self.norm1(x), self.window, self.shift)
            x = x + self.mlp(self.norm2(x))
        else:
            x = x + self.norm1(self.attn(x, self.window, self.shift))
            x = x + self.norm2(self.mlp(x))
        return x


class PatchMerging(nn.Module):
    """[..., H, W, C] -> [..., ceil(H/2), ceil(W/2), 2C]: pad H, W to even, concat x[0::2,0::2], x[1::2,0::2],
    x[0::2,1::2], x[1::2,1::2]; v1: reduction(norm(.)) with norm over 4C; v2: norm(reduction(.)), norm 2C."""

    def __init__(self, dim, version=1):
        super().__init__()
        self.version = version
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim if version == 1 else 2 * dim, eps=1e-5)

    def forward(self, x):
        h, w = x.shape[-3], x.shape[-2]
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[..., 0::2, 0::2, :], x[..., 1::2, 0::2, :], x[..., 0::2, 1::2, :], x[..., 1::2, 1::2, :]],
                      dim=-1)
        if self.version == 1:
            return self.reduction(self.norm(x))
        return self.norm(self.reduction(x))


class _PatchEmbed(nn.Module):
    """Conv (kernel = stride = patch, bias) after zero-padding the spatial axes at the end to patch multiples,
    then channels-last and LayerNorm."""

    def __init__(self, patch, in_chans, dim):
        super().__init__()
        self.patch = tuple(int(p) for p in patch)
        conv = nn.Conv3d if len(self.patch) == 3 else nn.Conv2d
        self.proj = conv(in_chans, dim, kernel_size=self.patch, stride=self.patch)
        self.norm = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, x):
        size = x.shape[2:]
        pads = [(-n) % p for n, p in zip(size, self.patch)]
        if any(pads):
            spec = []
            for p in reversed(pads):
                spec += [0, p]
            x = F.pad(x, spec)
        x = self.proj(x)
        x = x.movedim(1, -1)
        return self.norm(x)


class _Stage(nn.Module):
    """A parameterless container: blocks (nn.Sequential) and an optional downsample, named as the checkpoints
    want; the models' forward passes walk their own stage lists, not this module."""


class _Namespace(nn.Module):
    """A parameterless container used only to nest names (head.fc, cls_head.fc_cls, backbone.*)."""


def _per_stage(v, n):
    return list(v) if isinstance(v, (list, tuple)) else [v] * n


# ----------------------------------------------------------------------------------------------------------
# Video Swin (3D)
# ----------------------------------------------------------------------------------------------------------


class VideoSwin3D(nn.Module):
    """Video Swin Transformer (torchvision swin3d_t semantics). Input [B][3][T][H][W] -> logits [B][classes].

    Blocks with odd index are shifted by window // 2; each block shrinks its window (and drops the shift) per
    axis where the feature size is <= the window; the bias always indexes the full window's table and index
    (first N rows / columns). Patch merging halves H and W only.
    """

    def __init__(self, patch=(2, 4, 4), embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24),
                 window=(8, 7, 7), mlp_ratio=4.0, num_classes=400, naming="torchvision", in_chans=3):
        super().__init__()
        if naming not in ("torchvision", "videoswin", "mmaction"):
            raise ValueError("naming must be 'torchvision', 'videoswin' or 'mmaction'")
        self.naming = naming
        self.patch = _tuple(patch, 3)
        self.window = _tuple(window, 3)
        self.depths = tuple(depths)
        mlp = "seq" if naming == "torchvision" else "fc"
        patch_embed = _PatchEmbed(self.patch, in_chans, embed_dim)
        stages, merges = [], []
        for s, depth in enumerate(depths):
            dim = embed_dim * 2 ** s
            blocks = [SwinBlock(dim, num_heads[s], self.window,
                                (0, 0, 0) if i % 2 == 0 else tuple(w // 2 for w in self.window),
                                mlp_ratio=mlp_ratio, version=1, mlp=mlp, persistent_buffers=True)
                      for i in range(depth)]
            stages.append(nn.Sequential(*blocks))
            merges.append(PatchMerging(dim, version=1) if s < len(depths) - 1 else None)
        num_features = embed_dim * 2 ** (len(depths) - 1)
        norm = nn.LayerNorm(num_features, eps=1e-5)
        head = nn.Linear(num_features, num_classes)
        if naming == "torchvision":
            self.patch_embed = patch_embed
            feats = []
            for blocks, merge in zip(stages, merges):
                feats.append(blocks)
                if merge is not None:
                    feats.append(merge)
            # Registered directly: "features" is also the name of the method below. Attribute lookup (and
            # get_submodule) finds the method; the submodule, which names the state_dict keys, is
            # self._modules["features"].
            self._modules["features"] = nn.Sequential(*feats)
            self.norm = norm
            self.head = head
        else:
            layers = nn.ModuleList()
            for blocks, merge in zip(stages, merges):
                layer = _Stage()
                layer.blocks = blocks
                if merge is not None:
                    layer.downsample = merge
                layers.append(layer)
            owner = self
            if naming == "mmaction":
                self.backbone = _Namespace()
                owner = self.backbone
            owner.patch_embed = patch_embed
            owner.layers = layers
            owner.norm = norm
            self.cls_head = _Namespace()
            self.cls_head.fc_cls = head
        # Aliases set past nn.Module.__setattr__, so they are not registered twice (state_dict names unchanged).
        object.__setattr__(self, "_stages", list(zip(stages, merges)))
        object.__setattr__(self, "_patch_embed", patch_embed)
        object.__setattr__(self, "_norm", norm)
        object.__setattr__(self, "_head", head)

    def features(self, x):
        """Each stage's output (after its blocks, before the next merging), channels-last [B][T][H][W][C]."""
        x = self._patch_embed(x)
        outs = []
        for blocks, merge in self._stages:
            x = blocks(x)
            outs.append(x)
            if merge is not None:
                x = merge(x)
        return outs

    def forward(self, x):
        x = self._norm(self.features(x)[-1])
        return self._head(x.mean(dim=(1, 2, 3)))


# ----------------------------------------------------------------------------------------------------------
# timm Swin (2D), v1 and v2
# ----------------------------------------------------------------------------------------------------------


class TimmSwin(nn.Module):
    """timm's SwinTransformer (version=1) / SwinTransformerV2 (version=2) at the trained resolution img_size.

    Per stage the window is min(feature size, window) per axis with shift 0 where shrunk (timm's rule; the
    table and index are built for that effective window). Feature sizes must be multiples of the effective
    window (as every timm configuration at its trained size; timm < 1.0 refuses otherwise).
    pretrained_window_size: int or per-stage sequence (v2 only; 0 = normalise coordinates by window - 1).
    """

    def __init__(self, img_size=224, patch=4, embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24),
                 window=7, num_classes=1000, version=1, pretrained_window_size=0, layout="new", mlp_ratio=4.0,
                 in_chans=3, persistent_buffers=None):
        super().__init__()
        if layout not in ("new", "old"):
            raise ValueError("layout must be 'new' or 'old'")
        if version not in (1, 2):
            raise ValueError("version must be 1 or 2")
        if persistent_buffers is None:
            persistent_buffers = layout == "old"
        self.version = version
        self.layout = layout
        self.img_size = _tuple(img_size, 2)
        self.patch = _tuple(patch, 2)
        window = _tuple(window, 2)
        pretrained = _per_stage(pretrained_window_size, len(depths))
        self.patch_embed = _PatchEmbed(self.patch, in_chans, embed_dim)
        res = [self.img_size[0] // self.patch[0], self.img_size[1] // self.patch[1]]
        if res[0] * self.patch[0] != self.img_size[0] or res[1] * self.patch[1] != self.img_size[1]:
            raise ValueError("img_size must be a multiple of the patch")
        self.layers = nn.ModuleList()
        self._stages = []
        self.resolutions = []
        n_stages = len(depths)
        for s, depth in enumerate(depths):
            dim = embed_dim * 2 ** s
            merge_in = None
            if s > 0:
                if res[0] % 2 or res[1] % 2:
                    raise ValueError("feature size %r is odd before stage %d" % (res, s))
                merge_in = PatchMerging(dim // 2, version=version)
                res = [res[0] // 2, res[1] // 2]
            eff_w, _ = _effective_window_shift(res, window, (0, 0))
            for n, w in zip(res, eff_w):
                if n % w:
                    raise ValueError("feature size %r is not a multiple of the window %r at stage %d"
                                     % (res, eff_w, s))
            blocks = nn.Sequential(*[
                SwinBlock(dim, num_heads[s], eff_w,
                          (0, 0) if i % 2 == 0 else tuple(w // 2 for w in window),
                          mlp_ratio=mlp_ratio, version=version, mlp="fc", pretrained_window=pretrained[s],
                          persistent_buffers=persistent_buffers, attn_mask_for=tuple(res))
                for i in range(depth)])
            # A shrunk axis: the configured shift w // 2 is dropped by the size <= window rule at forward time,
            # since the block's window equals the feature size there.
            self.resolutions.append(tuple(res))
            stage = _Stage()
            if layout == "new":
                stage.downsample = merge_in if merge_in is not None else nn.Identity()
                stage.blocks = blocks
                self.layers.append(stage)
            else:
                stage.blocks = blocks
                self.layers.append(stage)
                if merge_in is not None:
                    self.layers[s - 1].downsample = merge_in
            self._stages.append((merge_in, blocks))
        num_features = embed_dim * 2 ** (n_stages - 1)
        self.norm = nn.LayerNorm(num_features, eps=1e-5)
        if layout == "new":
            self.head = _Namespace()
            self.head.fc = nn.Linear(num_features, num_classes)
            object.__setattr__(self, "_head", self.head.fc)
        else:
            self.head = nn.Linear(num_features, num_classes)
            object.__setattr__(self, "_head", self.head)

    def features(self, x):
        """Each stage's output (after its blocks), channels-last [B][H][W][C]."""
        if tuple(x.shape[-2:]) != self.img_size:
            raise ValueError("TimmSwin runs at its trained resolution %r, got %r" % (self.img_size,
                                                                                   tuple(x.shape[-2:])))
        x = self.patch_embed(x)
        outs = []
        for merge, blocks in self._stages:
            if merge is not None:
                x = merge(x)
            x = blocks(x)
            outs.append(x)
        return outs

    def forward(self, x):
        x = self.norm(self.features(x)[-1])
        return self._head(x.mean(dim=(1, 2)))


# ----------------------------------------------------------------------------------------------------------
# Deterministic random initialisation
# ----------------------------------------------------------------------------------------------------------


@torch.no_grad()
def init_random_(module, seed=0):
    """Fills every parameter of module with deterministic random values (a torch.Generator seeded with seed,
    parameters in named_parameters() order, drawn in float64 then cast). Returns module.

    Linear / conv weights N(0, 1/fan_in) (unit-variance outputs: attention logits of order 1, not uniform);
    their biases N(0, 0.05^2); LayerNorm weight 1 + N(0, 0.1^2), bias N(0, 0.05^2); relative_position_bias_table
    N(0, 0.3^2) (visible next to logits of order 1); q_bias / v_bias N(0, 0.05^2); logit_scale
    ln(10) + N(0, 0.2^2). Buffers are left alone.
    """
    g = torch.Generator().manual_seed(int(seed))
    modules = dict(module.named_modules())
    for name, p in module.named_parameters():
        owner_name, _, leaf = name.rpartition(".")
        owner = modules[owner_name]
        r = torch.randn(p.shape, generator=g, dtype=torch.float64)
        if isinstance(owner, nn.LayerNorm):
            v = 1.0 + 0.1 * r if leaf == "weight" else 0.05 * r
        elif leaf == "logit_scale":
            v = math.log(10.0) + 0.2 * r
        elif leaf == "relative_position_bias_table":
            v = 0.3 * r
        elif leaf in ("q_bias", "v_bias", "bias"):
            v = 0.05 * r
        elif p.dim() >= 2:
            fan_in = p[0].numel()
            v = r / math.sqrt(fan_in)
        else:
            v = 0.05 * r
        p.copy_(v.to(device=p.device, dtype=p.dtype))
    return module


# ----------------------------------------------------------------------------------------------------------
# Self-checks
# ----------------------------------------------------------------------------------------------------------


def _tv_key_from_timm(k, n_stages, layout):
    """timm name -> torchvision 2D SwinTransformer name (None for buffers torchvision has its own of)."""
    parts = k.split(".")
    if parts[0] == "patch_embed":
        return {"proj": "features.0.0", "norm": "features.0.2"}[parts[1]] + "." + parts[2]
    if parts[0] == "layers":
        s = int(parts[1])
        if parts[2] == "downsample":
            after = s - 1 if layout == "new" else s  # the stage the merging follows
            return "features.%d.%s" % (2 * after + 2, ".".join(parts[3:]))
        assert parts[2] == "blocks"
        rest = ".".join(parts[4:]).replace("mlp.fc1", "mlp.0").replace("mlp.fc2", "mlp.3")
        return "features.%d.%s.%s" % (2 * s + 1, parts[3], rest)
    if parts[0] == "head":
        return "head." + parts[-1]
    return k


def _copy_timm_to_torchvision(model, tv, version, n_stages):
    """Loads model's (TimmSwin) parameters into torchvision's SwinTransformer tv (both float64)."""
    sd = model.state_dict(keep_vars=False)
    tv_sd = tv.state_dict()
    used = set()
    for k, v in sd.items():
        if k.endswith(("relative_position_index", "relative_coords_table", "attn_mask")):
            continue
        if k.endswith("attn.q_bias") or k.endswith("attn.v_bias"):
            tk = _tv_key_from_timm(k[: -len("q_bias")] + "qkv.bias", n_stages, model.layout)
            c = v.numel()
            if tk not in used:
                tv_sd[tk] = torch.full((3 * c,), 7.0, dtype=v.dtype)  # k part: torchvision zeroes it itself
                used.add(tk)
            if k.endswith("q_bias"):
                tv_sd[tk][:c] = v
            else:
                tv_sd[tk][2 * c:] = v
            continue
        tk = _tv_key_from_timm(k, n_stages, model.layout)
        assert tk in tv_sd, (k, tk)
        assert tv_sd[tk].shape == v.shape, (k, tk, tv_sd[tk].shape, v.shape)
        tv_sd[tk] = v.clone()
        used.add(tk)
    missing = [k for k in tv_sd if k not in used and not k.endswith(("relative_position_index",
                                                                     "relative_coords_table"))]
    assert not missing, missing
    tv.load_state_dict(tv_sd)
    if version == 2:
        # torchvision computes the v2 coordinates in float32; put the exact float64 ones in (a precision
        # artifact, not semantics: float32 coordinates move float64 logits by ~1e-7).
        for name, m in tv.named_modules():
            if hasattr(m, "relative_coords_table") and isinstance(m.relative_coords_table, torch.Tensor):
                m.relative_coords_table.copy_(log_spaced_coords_table(m.window_size))


def _check_timm_vs_torchvision(version, img, window, embed_dim, depths, heads, layout, batch=2):
    from torchvision.models import swin_transformer as tvs

    torch.manual_seed(0)
    model = TimmSwin(img_size=img, patch=4, embed_dim=embed_dim, depths=depths, num_heads=heads, window=window,
                     num_classes=11, version=version, layout=layout)
    init_random_(model, seed=1 + version)
    model = model.double().eval()
    kw = {}
    if version == 2:
        kw = dict(block=tvs.SwinTransformerBlockV2, downsample_layer=tvs.PatchMergingV2)
    tv = tvs.SwinTransformer(patch_size=[4, 4], embed_dim=embed_dim, depths=list(depths), num_heads=list(heads),
                             window_size=[window, window], stochastic_depth_prob=0.0, num_classes=11, **kw)
    tv = tv.double().eval()
    with torch.no_grad():
        _copy_timm_to_torchvision(model, tv, version, len(depths))
        g = torch.Generator().manual_seed(5)
        x = torch.randn(batch, 3, img, img, generator=g, dtype=torch.float64)
        got = model(x)
        ref = tv(x)
        err = (got - ref).abs().max().item()
        # stage outputs too
        y = tv.features[0](x)
        feats_ref = []
        for i in range(1, len(tv.features)):
            y = tv.features[i](y)
            if i % 2 == 1:
                feats_ref.append(y)
        feats = model.features(x)
        ferr = max((a - b).abs().max().item() for a, b in zip(feats, feats_ref))
    scale = ref.abs().max().item()
    ok = err <= 1e-10 and ferr <= 1e-10 and scale > 1e-3
    print("timm v%d layout=%s img %d window %d vs torchvision SwinTransformer: max|logit diff| %.2e "
          "(max|logit| %.3f, logit std %.3f), max|stage diff| %.2e  %s"
          % (version, layout, img, window, err, scale, ref.std().item(), ferr, "OK" if ok else "FAIL"))
    return ok


def _bruteforce_attention(attn, x, window_cfg, shift_cfg):
    """Dense formulation of attn.forward (v1) from the definitions, without partition/roll: every pair of
    tokens of the zero-padded grid, -inf between different windows of the rolled frame."""
    b, c = x.shape[0], x.shape[-1]
    size = tuple(x.shape[1:-1])
    nd = len(size)
    window, shift = _effective_window_shift(size, window_cfg, shift_cfg)
    padded = [n + (-n) % w for n, w in zip(size, window)]
    xp = torch.zeros([b] + padded + [c], dtype=x.dtype)
    xp[(slice(None),) + tuple(slice(0, n) for n in size)] = x
    pos = torch.stack(torch.meshgrid(*[torch.arange(p) for p in padded], indexing="ij"), dim=-1).reshape(-1, nd)
    m = pos.shape[0]
    r = torch.stack([(pos[:, a] - shift[a]) % padded[a] for a in range(nd)], dim=1)  # rolled-frame position
    win_id = torch.zeros(m, dtype=torch.int64)
    local = torch.zeros(m, dtype=torch.int64)
    label = torch.zeros(m, dtype=torch.int64)
    for a in range(nd):
        win_id = win_id * (padded[a] // window[a]) + r[:, a] // window[a]
        local = local * window[a] + r[:, a] % window[a]
        p, w, s = padded[a], window[a], shift[a]
        la = (r[:, a] >= p - w).long() + ((r[:, a] >= p - s) & (s > 0)).long()
        label = label * 3 + la
    full_index = relative_position_index(attn.table_window)  # the configured window's index
    heads = attn.num_heads
    hd = c // heads
    tok = xp.reshape(b, m, c)
    qkv = tok @ attn.qkv.weight.t() + attn.qkv.bias
    q, k, v = [qkv[..., i * c:(i + 1) * c].reshape(b, m, heads, hd).transpose(1, 2) for i in range(3)]
    logits = (q @ k.transpose(-2, -1)) * hd ** -0.5
    bias = attn.relative_position_bias_table[full_index[local[:, None], local[None, :]]]  # m, m, heads
    logits = logits + bias.permute(2, 0, 1).unsqueeze(0)
    if any(s > 0 for s in shift):
        logits = logits + torch.where(label[:, None] != label[None, :], -100.0, 0.0).to(x.dtype)
    logits = logits.masked_fill((win_id[:, None] != win_id[None, :]).unsqueeze(0).unsqueeze(0), float("-inf"))
    out = torch.softmax(logits, dim=-1) @ v  # b, heads, m, hd
    out = out.transpose(1, 2).reshape(b, m, c) @ attn.proj.weight.t() + attn.proj.bias
    out = out.reshape([b] + padded + [c])
    return out[(slice(None),) + tuple(slice(0, n) for n in size)]


def _check_3d_attention_bruteforce():
    ok = True
    cases = [
        # size (T, H, W), configured window, configured shift
        ((3, 9, 10), (4, 4, 3), (2, 2, 1)),  # T shrinks (3 <= 4, shift dropped), H and W padded and shifted
        ((3, 9, 10), (4, 4, 3), (0, 0, 0)),
        ((5, 6, 7), (2, 3, 3), (1, 1, 1)),  # all axes shifted, T and W padded
        ((2, 5, 4), (8, 7, 7), (4, 3, 3)),  # every axis shrinks: N = 40 < 392, bias from index[:40, :40]
        ((4, 4, 8), (2, 7, 7), (1, 3, 3)),  # H shrinks to 4 (shift 0), W padded to 14 and shifted
    ]
    g = torch.Generator().manual_seed(11)
    for size, window, shift in cases:
        attn = WindowAttention(12, 3, window, version=1)
        init_random_(attn, seed=3)
        attn = attn.double()
        x = torch.randn((2,) + size + (12,), generator=g, dtype=torch.float64)
        with torch.no_grad():
            got = attn(x, window, shift)
            ref = _bruteforce_attention(attn, x, window, shift)
        err = (got - ref).abs().max().item()
        good = err <= 1e-12
        ok &= good
        print("3D attention size %r window %r shift %r vs dense brute force: max|diff| %.2e  %s"
              % (size, window, shift, err, "OK" if good else "FAIL"))
    return ok


def _check_index():
    """relative_position_index against per-pair loops (3D) and torchvision's own 2D buffer."""
    from torchvision.models import swin_transformer as tvs

    ok = True
    for window in ((3, 2, 4), (2, 7, 7)):
        idx = relative_position_index(window)
        wt, wh, ww = window
        n = wt * wh * ww
        worst = 0
        for i in range(n):
            ti, hi, wi = i // (wh * ww), (i // ww) % wh, i % ww
            for j in range(n):
                tj, hj, wj = j // (wh * ww), (j // ww) % wh, j % ww
                want = ((ti - tj + wt - 1) * (2 * wh - 1) + (hi - hj + wh - 1)) * (2 * ww - 1) + (wi - wj + ww - 1)
                worst = max(worst, abs(int(idx[i, j]) - want))
        ok &= worst == 0
    tv_index = tvs.ShiftedWindowAttention(8, [7, 7], [0, 0], 2).relative_position_index
    ok &= torch.equal(relative_position_index((7, 7)).reshape(-1), tv_index)
    ok &= torch.equal(relative_position_index((1, 7, 7)), relative_position_index((7, 7)))
    print("relative_position_index vs per-pair loops (3D) and torchvision's 2D buffer  %s" % ("OK" if ok else "FAIL"))
    return ok


def _check_video_vs_2d(img, frames, embed_dim=16, depths=(2, 2, 2, 2), heads=(1, 2, 4, 8)):
    """VideoSwin3D with patch (1,4,4), window (1,7,7) on a clip == torchvision's 2D SwinTransformer per frame."""
    from torchvision.models import swin_transformer as tvs

    model = VideoSwin3D(patch=(1, 4, 4), embed_dim=embed_dim, depths=depths, num_heads=heads, window=(1, 7, 7),
                        num_classes=9, naming="torchvision")
    init_random_(model, seed=21)
    model = model.double().eval()
    tv = tvs.SwinTransformer(patch_size=[4, 4], embed_dim=embed_dim, depths=list(depths), num_heads=list(heads),
                             window_size=[7, 7], stochastic_depth_prob=0.0, num_classes=9).double().eval()
    sd = model.state_dict()
    tv_sd = tv.state_dict()
    for k, v in sd.items():
        if k.endswith("relative_position_index"):
            continue
        if k == "patch_embed.proj.weight":
            tk, v = "features.0.0.weight", v[:, :, 0]
        elif k.startswith("patch_embed."):
            tk = {"proj": "features.0.0", "norm": "features.0.2"}[k.split(".")[1]] + "." + k.split(".")[2]
        elif k.startswith("features."):
            parts = k.split(".")
            tk = ".".join(["features", str(int(parts[1]) + 1)] + parts[2:])
        else:
            tk = k
        assert tv_sd[tk].shape == v.shape, (k, tk)
        tv_sd[tk] = v.clone()
    tv.load_state_dict(tv_sd)
    g = torch.Generator().manual_seed(31)
    x = torch.randn(2, 3, frames, img, img, generator=g, dtype=torch.float64)
    with torch.no_grad():
        feats = model.features(x)
        logits = model(x)
        ferr = 0.0
        pooled = []
        for t in range(frames):
            y = tv.features[0](x[:, :, t])
            j = 0
            for i in range(1, len(tv.features)):
                y = tv.features[i](y)
                if i % 2 == 1:
                    ferr = max(ferr, (feats[j][:, t] - y).abs().max().item())
                    j += 1
            pooled.append(tv.norm(y).mean(dim=(1, 2)))
        # the clip's logits: mean over frames of the normed last stage, then the head
        ref = tv.head(torch.stack(pooled).mean(0))
        lerr = (logits - ref).abs().max().item()
        if frames == 1:
            lerr = max(lerr, (logits - tv(x[:, :, 0])).abs().max().item())
    ok = ferr <= 1e-10 and lerr <= 1e-10
    print("VideoSwin3D patch (1,4,4) window (1,7,7), %d frame(s) %dx%d vs torchvision 2D SwinTransformer per "
          "frame: max|stage diff| %.2e, max|logit diff| %.2e  %s" % (frames, img, img, ferr, lerr,
                                                                     "OK" if ok else "FAIL"))
    return ok


def _rename_video(k, src, dst, n_stages):
    """Video Swin names between the torchvision and videoswin / mmaction namings."""
    if src == dst:
        return k
    if src == "mmaction":
        k = k[len("backbone."):] if k.startswith("backbone.") else k
        src = "videoswin"
    if src == "torchvision":
        parts = k.split(".")
        if parts[0] == "features":
            i = int(parts[1])
            if i % 2 == 0:
                rest = ".".join(parts[3:]).replace("mlp.0", "mlp.fc1").replace("mlp.3", "mlp.fc2")
                k = "layers.%d.blocks.%s.%s" % (i // 2, parts[2], rest)
            else:
                k = "layers.%d.downsample.%s" % (i // 2, ".".join(parts[2:]))
        elif parts[0] == "head":
            k = "cls_head.fc_cls." + parts[1]
        if dst == "mmaction" and not k.startswith("cls_head."):
            k = "backbone." + k
        return k
    raise ValueError("rename only from torchvision / mmaction")


def _check_video_namings():
    ok = True
    cfg = dict(patch=(2, 4, 4), embed_dim=12, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window=(8, 7, 7),
               num_classes=5)
    ref_model = init_random_(VideoSwin3D(naming="torchvision", **cfg), seed=41).double().eval()
    g = torch.Generator().manual_seed(43)
    x = torch.randn(1, 3, 9, 60, 52, generator=g, dtype=torch.float64)  # T, H, W all need patch padding
    with torch.no_grad():
        ref = ref_model(x)
        feats = ref_model.features(x)
    shapes = [tuple(f.shape) for f in feats]
    expect = [(1, 5, 15, 13, 12), (1, 5, 8, 7, 24), (1, 5, 4, 4, 48), (1, 5, 2, 2, 96)]
    good = shapes == expect
    ok &= good
    print("VideoSwin3D stage shapes for a [1][3][9][60][52] clip: %r  %s" % (shapes, "OK" if good else "FAIL"))
    sd = ref_model.state_dict()
    for naming in ("videoswin", "mmaction"):
        other = VideoSwin3D(naming=naming, **cfg).double().eval()
        mapped = {_rename_video(k, "torchvision", naming, 4): v for k, v in sd.items()}
        other.load_state_dict(mapped, strict=True)
        with torch.no_grad():
            err = (other(x) - ref).abs().max().item()
        good = err == 0.0
        ok &= good
        print("VideoSwin3D naming %r == naming 'torchvision' after renaming (strict load): max|diff| %.2e  %s"
              % (naming, err, "OK" if good else "FAIL"))
    return ok


def _check_timm_layouts():
    ok = True
    cfg = dict(img_size=224, embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window=7, num_classes=7)
    for version in (1, 2):
        new = init_random_(TimmSwin(version=version, layout="new", **cfg), seed=51).double().eval()
        old = TimmSwin(version=version, layout="old", **cfg).double().eval()
        sd = {}
        for k, v in new.state_dict().items():
            parts = k.split(".")
            if parts[0] == "layers" and parts[2] == "downsample":
                k = "layers.%d.downsample.%s" % (int(parts[1]) - 1, ".".join(parts[3:]))
            elif k.startswith("head.fc."):
                k = "head." + parts[-1]
            sd[k] = v
        missing, unexpected = old.load_state_dict(sd, strict=False)
        buffers_only = all(m.endswith(("relative_position_index", "relative_coords_table", "attn_mask"))
                           for m in missing)
        x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(53), dtype=torch.float64)
        with torch.no_grad():
            err = (new(x) - old(x)).abs().max().item()
        good = err == 0.0 and not unexpected and buffers_only
        ok &= good
        print("TimmSwin v%d layout 'old' == layout 'new' after renaming (the old one's extra keys are only its "
              "persistent buffers, %d of them): max|diff| %.2e  %s"
              % (version, len(missing), err, "OK" if good else "FAIL"))
    return ok


def _check_names():
    """Name / shape spot checks of the full-size configurations (float32, random init)."""
    ok = True
    v3 = VideoSwin3D()
    sd = v3.state_dict()
    want = {
        "patch_embed.proj.weight": (96, 3, 2, 4, 4),
        "patch_embed.proj.bias": (96,),
        "patch_embed.norm.weight": (96,),
        "features.0.0.attn.relative_position_bias_table": (15 * 13 * 13, 3),
        "features.0.0.attn.relative_position_index": (392, 392),
        "features.0.1.attn.qkv.bias": (288,),
        "features.0.1.mlp.0.weight": (384, 96),
        "features.0.1.mlp.3.weight": (96, 384),
        "features.1.reduction.weight": (192, 384),
        "features.1.norm.weight": (384,),
        "features.4.5.attn.proj.weight": (384, 384),
        "features.6.1.attn.relative_position_bias_table": (2535, 24),
        "norm.weight": (768,),
        "head.weight": (400, 768),
    }
    good = all(tuple(sd[k].shape) == s for k, s in want.items()) and sd[
        "features.0.0.attn.relative_position_index"].dtype == torch.int64
    n_params = sum(p.numel() for p in v3.parameters())
    good &= n_params == 28158070  # torchvision's swin3d_t (Swin3D_T_Weights meta): 28,158,070 parameters
    print("VideoSwin3D() swin3d_t names/shapes: %d keys, %d parameters  %s" % (len(sd), n_params,
                                                                             "OK" if good else "FAIL"))
    ok &= good
    vs = VideoSwin3D(naming="videoswin").state_dict()
    mm = VideoSwin3D(naming="mmaction").state_dict()
    good = ("layers.0.blocks.1.mlp.fc1.weight" in vs and "layers.2.downsample.reduction.weight" in vs
            and "layers.3.downsample.norm.weight" not in vs and "cls_head.fc_cls.weight" in vs
            and "backbone.layers.0.blocks.0.attn.relative_position_index" in mm and "backbone.norm.bias" in mm
            and "cls_head.fc_cls.bias" in mm and len(vs) == len(sd) == len(mm))
    print("VideoSwin3D naming 'videoswin' / 'mmaction' spot checks  %s" % ("OK" if good else "FAIL"))
    ok &= good
    t1 = TimmSwin().state_dict()
    good = (tuple(t1["patch_embed.proj.weight"].shape) == (96, 3, 4, 4)
            and tuple(t1["layers.1.downsample.reduction.weight"].shape) == (192, 384)
            and tuple(t1["layers.1.downsample.norm.weight"].shape) == (384,)
            and tuple(t1["layers.3.blocks.1.attn.relative_position_bias_table"].shape) == (169, 24)
            and tuple(t1["head.fc.weight"].shape) == (1000, 768)
            and not any(k.endswith(("relative_position_index", "attn_mask")) for k in t1))
    from torchvision.models import swin_t, swin_v2_t

    n1 = sum(p.numel() for p in TimmSwin().parameters())
    good &= n1 == sum(p.numel() for p in swin_t().parameters()) == 28288354  # same architecture as swin_t
    print("TimmSwin() swin_tiny_patch4_window7_224 layout 'new': %d keys, %d parameters  %s"
          % (len(t1), n1, "OK" if good else "FAIL"))
    ok &= good
    t1o = TimmSwin(layout="old").state_dict()
    masks = sorted(k for k in t1o if k.endswith("attn_mask"))
    good = (tuple(t1o["layers.0.downsample.reduction.weight"].shape) == (192, 384) and "head.weight" in t1o
            and tuple(t1o["layers.0.blocks.0.attn.relative_position_index"].shape) == (49, 49)
            and masks == ["layers.%d.blocks.1.attn_mask" % s for s in range(3)] + [
                "layers.2.blocks.%d.attn_mask" % i for i in (3, 5)]
            and tuple(t1o["layers.0.blocks.1.attn_mask"].shape) == (64, 49, 49))
    print("TimmSwin(layout='old'): %d keys (relative_position_index in every block, attn_mask in the %d shifted "
          "blocks of stages 0-2)  %s" % (len(t1o), len(masks), "OK" if good else "FAIL"))
    ok &= good
    t2 = TimmSwin(img_size=256, window=8, version=2).state_dict()
    good = (tuple(t2["layers.0.blocks.0.attn.cpb_mlp.0.weight"].shape) == (512, 2)
            and tuple(t2["layers.0.blocks.0.attn.cpb_mlp.0.bias"].shape) == (512,)
            and tuple(t2["layers.0.blocks.0.attn.cpb_mlp.2.weight"].shape) == (3, 512)
            and "layers.0.blocks.0.attn.cpb_mlp.2.bias" not in t2
            and tuple(t2["layers.0.blocks.0.attn.logit_scale"].shape) == (3, 1, 1)
            and tuple(t2["layers.2.blocks.0.attn.q_bias"].shape) == (384,)
            and "layers.2.blocks.0.attn.qkv.bias" not in t2
            and tuple(t2["layers.1.downsample.norm.weight"].shape) == (192,))
    n2 = sum(p.numel() for p in TimmSwin(img_size=256, window=8, version=2).parameters())
    # torchvision's swin_v2_t less the k third of its qkv bias (timm has only q_bias and v_bias): sum of C over
    # the blocks = 2*96 + 2*192 + 6*384 + 2*768 = 4416.
    good &= n2 == sum(p.numel() for p in swin_v2_t().parameters()) - 4416 == 28347154
    print("TimmSwin(img 256, window 8, version 2) swinv2_tiny_window8_256: %d keys, %d parameters  %s"
          % (len(t2), n2, "OK" if good else "FAIL"))
    ok &= good
    return ok


def _main():
    import time

    torch.set_num_threads(2)
    t0 = time.time()
    results = [
        _check_timm_vs_torchvision(1, 224, 7, 16, (2, 2, 2, 2), (1, 2, 4, 8), "new"),
        _check_timm_vs_torchvision(1, 224, 7, 16, (2, 2, 2, 2), (1, 2, 4, 8), "old"),
        _check_timm_vs_torchvision(2, 224, 7, 16, (2, 2, 2, 2), (1, 2, 4, 8), "new"),
        _check_timm_vs_torchvision(2, 256, 8, 16, (2, 2, 2, 2), (1, 2, 4, 8), "old"),
        _check_timm_layouts(),
        _check_index(),
        _check_3d_attention_bruteforce(),
        _check_video_vs_2d(224, 1),
        _check_video_vs_2d(256, 2),  # stage 4 is 8x8 > 7: padded to 14 and shifted in both
        _check_video_namings(),
        _check_names(),
    ]
    print("%d/%d checks passed in %.1f s" % (sum(bool(r) for r in results), len(results), time.time() - t0))
    return 0 if all(results) else 1


if __name__ == "__main__":
    raise SystemExit(_main())
