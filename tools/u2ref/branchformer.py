"""WeNet's Branchformer and E-Branchformer encoders (wenet/models/branchformer, e_branchformer),
reimplemented with WeNet HEAD's numerics and state-dict names.

Facts this module keeps on purpose (they decide bit-level agreement with WeNet):
  * every LayerNorm inside a block (norm_mha, norm_mlp, norm_final, norm_ff, norm_ff_macaron and the
    cgMLP's csgu.norm) uses eps 1e-5 whatever `norm_eps` says; norm_eps reaches only after_norm;
  * cgMLP: channel_proj1 = Linear + exact-erf GELU; the CSGU splits the result in halves
    (x_r, x_g), LayerNorm(x_g) -> depthwise conv -> [linear] -> gate activation, out = x_r * x_g;
  * CSGU causal: x_g is padded with K-1 zero rows (or the cache) BEFORE its LayerNorm, so the
    left padding reaches the conv as LN(0) = the norm's bias; the cache holds the last K-1 pre-norm
    x_g rows. Non-causal: the conv's own zero padding, after the norm;
  * E-Branchformer's depthwise_conv_fusion: causal = K-1 zero columns on the left of every call.
    WeNet's forward_chunk passes no cache for it, so WeNet's streaming restarts the fusion conv
    from zeros at each chunk (see EBranchformerEncoder.forward_chunk_by_chunk);
  * neither conv masks padded frames (WeNet's cgMLP ignores its mask): in a padded batch the
    non-causal convs of valid frames near the end see the padding rows. Batch size 1 is exact;
  * LayerDropModuleList draws torch.empty(n).uniform_() from the global RNG each time the layers
    are iterated, in eval mode too (WeNet does), so training-time RNG streams line up.
"""

from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .modules import BaseEncoder, PositionwiseFeedForward, make_activation, make_self_attn

MERGE_METHODS = ("concat", "learned_ave", "fixed_ave")


def make_gate_activation(name: str) -> nn.Module:
    """The CSGU gate: "identity" or one of WeNet's WENET_ACTIVATION_CLASSES."""
    acts = {"identity": nn.Identity, "gelu": nn.GELU, "swish": nn.SiLU, "relu": nn.ReLU,
            "tanh": nn.Tanh, "hardtanh": nn.Hardtanh, "selu": nn.SELU}
    if name not in acts:
        raise ValueError("gate_activation: %r is not supported (%s)" % (name, ", ".join(acts)))
    return acts[name]()


def per_block(value, num_blocks: int, key: str) -> List[float]:
    """WeNet's rule for cgmlp_weight / attn_branch_drop_rate / stochastic_depth_rate: one number
    for every block, or a list with one per block."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [float(value)] * num_blocks
    if isinstance(value, (list, tuple)) and len(value) == num_blocks:
        return [float(v) for v in value]
    raise ValueError("%s: %r must be a number or a list of num_blocks (%d) numbers" %
                     (key, value, num_blocks))


class LayerDropModuleList(nn.ModuleList):
    """A ModuleList that skips layer i with probability p[i] in training (stochastic depth)."""

    def __init__(self, p: List[float], modules):
        super().__init__(modules)
        assert len(p) == len(self)
        self.p = p

    def __iter__(self):
        draw = torch.empty(len(self)).uniform_()  # every iteration, as WeNet (global RNG)
        for i, m in enumerate(super().__iter__()):
            if not self.training or draw[i] > self.p[i]:
                yield m


class ConvolutionalSpatialGatingUnit(nn.Module):
    """CSGU over `size` channels (the cgMLP's hidden width): output size // 2 channels."""

    def __init__(self, size: int, kernel_size: int, dropout_rate: float,
                 use_linear_after_conv: bool, gate_activation: str, causal: bool):
        super().__init__()
        half = size // 2
        self.norm = nn.LayerNorm(half)
        if causal:
            self.lorder = kernel_size - 1
            padding = 0
        else:
            if kernel_size % 2 == 0:
                raise ValueError("cgmlp_conv_kernel: %d must be odd for a non-causal conv" %
                                 kernel_size)
            self.lorder = 0
            padding = (kernel_size - 1) // 2
        self.conv = nn.Conv1d(half, half, kernel_size, 1, padding, groups=half)
        self.linear = nn.Linear(half, half) if use_linear_after_conv else None
        self.act = make_gate_activation(gate_activation)
        self.dropout = nn.Dropout(dropout_rate)

    def forward(self, x, cache: Optional[torch.Tensor] = None):
        """x (B, T, size); cache (B, size/2, K-1) pre-norm gate rows or None/empty.
        -> (out (B, T, size/2), new cache (B, size/2, K-1), or (0, 0, 0) when non-causal)."""
        x_r, x_g = x.chunk(2, dim=-1)
        g = x_g.transpose(1, 2)  # (B, C, T)
        if self.lorder > 0:
            if cache is None or cache.size(2) == 0:
                g = F.pad(g, (self.lorder, 0), "constant", 0.0)
            else:
                g = torch.cat((cache, g), dim=2)
            new_cache = g[:, :, -self.lorder:]
        else:
            new_cache = torch.zeros((0, 0, 0), dtype=g.dtype, device=g.device)
        g = self.norm(g.transpose(1, 2))
        g = self.conv(g.transpose(1, 2)).transpose(1, 2)
        if self.linear is not None:
            g = self.linear(g)
        g = self.act(g)
        return self.dropout(x_r * g), new_cache


class ConvolutionalGatingMLP(nn.Module):
    """cgMLP: channel_proj1 (D -> U, GELU), CSGU (U -> U/2), channel_proj2 (U/2 -> D)."""

    def __init__(self, size: int, linear_units: int, kernel_size: int, dropout_rate: float,
                 use_linear_after_conv: bool, gate_activation: str, causal: bool):
        super().__init__()
        if linear_units % 2 != 0:
            raise ValueError("cgmlp_linear_units: %d must be even (the CSGU halves it)" %
                             linear_units)
        self.channel_proj1 = nn.Sequential(nn.Linear(size, linear_units), nn.GELU())
        self.csgu = ConvolutionalSpatialGatingUnit(linear_units, kernel_size, dropout_rate,
                                                   use_linear_after_conv, gate_activation, causal)
        self.channel_proj2 = nn.Linear(linear_units // 2, size)

    def forward(self, x, mask_pad=None, cache=None):
        # mask_pad is not used, as in WeNet: padded rows are not zeroed before the conv.
        y, new_cache = self.csgu(self.channel_proj1(x), cache)
        return self.channel_proj2(y), new_cache


def _empty_like_cache(x, att_cache, shape):
    """K and V of zeros, (B, H, t_cache + T, dk), for a block without attention: its slot in the
    stacked streaming cache must have the attending blocks' shape."""
    t = 0 if att_cache is None or att_cache[0].dim() != 4 else att_cache[0].size(2)
    z = torch.zeros(x.size(0), shape[0], t + x.size(1), shape[1], dtype=x.dtype, device=x.device)
    return z, z


class BranchformerEncoderLayer(nn.Module):
    """Attention and cgMLP side by side on the same input, merged, then norm_final.

    concat: x + merge_proj(cat[attn, cgmlp]); fixed_ave: x + merge_proj((1-w) attn + w cgmlp)
    (w = 0.0 or 1.0 keeps only one branch, merge_proj still applied); learned_ave: weights from
    attention pooling over the utterance (pooling_proj*, weight_proj*); one branch (use_attn or
    use_cgmlp false): x + branch (merge_proj = Identity)."""

    def __init__(self, size: int, attn: Optional[nn.Module], cgmlp: Optional[nn.Module],
                 dropout_rate: float, merge_method: str, cgmlp_weight: float = 0.5,
                 attn_branch_drop_rate: float = 0.0, stochastic_depth_rate: float = 0.0,
                 att_cache_shape=(1, 0), cnn_cache_shape=None):
        super().__init__()
        if attn is None and cgmlp is None:
            raise ValueError("use_attn and use_cgmlp: at least one branch is needed")
        if merge_method not in MERGE_METHODS:
            raise ValueError("merge_method: %r is not supported (%s)" %
                             (merge_method, ", ".join(MERGE_METHODS)))
        self.size = size
        self.merge_method = merge_method
        self.cgmlp_weight = float(cgmlp_weight)
        self.attn_branch_drop_rate = attn_branch_drop_rate
        self.stochastic_depth_rate = stochastic_depth_rate
        self.att_cache_shape = tuple(att_cache_shape)  # (heads, d_k)
        self.cnn_cache_shape = cnn_cache_shape  # (U/2, K-1) when causal, else None
        two = attn is not None and cgmlp is not None
        if two and merge_method == "fixed_ave":
            if not 0.0 <= self.cgmlp_weight <= 1.0:
                raise ValueError("cgmlp_weight: %r must be within [0, 1]" % cgmlp_weight)
            if self.cgmlp_weight == 0.0:
                cgmlp = None
            elif self.cgmlp_weight == 1.0:
                attn = None
        self.attn = attn
        self.cgmlp = cgmlp
        if attn is not None:
            self.norm_mha = nn.LayerNorm(size)
        if cgmlp is not None:
            self.norm_mlp = nn.LayerNorm(size)
        self.norm_final = nn.LayerNorm(size)
        self.dropout = nn.Dropout(dropout_rate)
        # Present in every WeNet checkpoint; used by learned_ave only.
        self.pooling_proj1 = nn.Linear(size, 1)
        self.pooling_proj2 = nn.Linear(size, 1)
        self.weight_proj1 = nn.Linear(size, 1)
        self.weight_proj2 = nn.Linear(size, 1)
        self.use_two_branches = attn is not None and cgmlp is not None
        if two:  # decided by the branches built (use_attn/use_cgmlp), before fixed_ave's pruning
            self.merge_proj = nn.Linear(2 * size if merge_method == "concat" else size, size)
        else:
            self.merge_proj = nn.Identity()

    def _pool(self, x, proj, weight_proj, mask_pad):
        score = proj(x).transpose(1, 2) / self.size ** 0.5  # (B, 1, T)
        if mask_pad is not None and mask_pad.size(2) > 0:
            score = score.masked_fill(~mask_pad, -float("inf"))
            score = torch.softmax(score, dim=-1).masked_fill(~mask_pad, 0.0)
        else:
            score = torch.softmax(score, dim=-1)
        return weight_proj(torch.matmul(score, x).squeeze(1))  # (B, 1)

    def forward(self, x, mask, pos_emb, mask_pad=None, att_cache=None, cnn_cache=None):
        coeff = 1.0 / (1.0 - self.stochastic_depth_rate) if self.training else 1.0
        x1 = x
        x2 = x
        if self.attn is not None:
            x1 = self.norm_mha(x1)
            x_att, new_att_cache = self.attn(x1, x1, x1, mask, pos_emb, att_cache)
            x1 = self.dropout(x_att)
        else:  # (WeNet HEAD raises UnboundLocalError here; see docs/wenet-crosscheck.md)
            new_att_cache = _empty_like_cache(x, att_cache, self.att_cache_shape)
        if self.cgmlp is not None:
            x2 = self.norm_mlp(x2)
            x2, new_cnn_cache = self.cgmlp(x2, mask_pad, cnn_cache)
            x2 = self.dropout(x2)
        elif self.cnn_cache_shape is not None:  # same stacked-cache shape as the other blocks
            new_cnn_cache = torch.zeros((x.size(0),) + tuple(self.cnn_cache_shape),
                                        dtype=x.dtype, device=x.device)
        else:
            new_cnn_cache = torch.zeros((0, 0, 0), dtype=x.dtype, device=x.device)

        if self.use_two_branches:
            if self.merge_method == "concat":
                merged = torch.cat([x1, x2], dim=-1)
            elif self.merge_method == "fixed_ave":
                merged = (1.0 - self.cgmlp_weight) * x1 + self.cgmlp_weight * x2
            else:  # learned_ave
                if self.training and self.attn_branch_drop_rate > 0 and \
                        torch.rand(1).item() < self.attn_branch_drop_rate:
                    w1, w2 = torch.tensor(0.0), torch.tensor(1.0)
                else:
                    w = torch.softmax(torch.cat([
                        self._pool(x1, self.pooling_proj1, self.weight_proj1, mask_pad),
                        self._pool(x2, self.pooling_proj2, self.weight_proj2, mask_pad)],
                        dim=-1), dim=-1).unsqueeze(-1).unsqueeze(-1)  # (B, 2, 1, 1)
                    w1, w2 = w[:, 0], w[:, 1]
                merged = w1 * x1 + w2 * x2
            x = x + coeff * self.dropout(self.merge_proj(merged))
        elif self.attn is None:
            x = x + coeff * self.dropout(self.merge_proj(x2))
        else:
            x = x + coeff * self.dropout(self.merge_proj(x1))
        x = self.norm_final(x)
        return x, mask, new_att_cache, new_cnn_cache


class EBranchformerEncoderLayer(nn.Module):
    """[macaron FFN] -> attention | cgMLP -> merge: x + merge_proj(c + dwconv(c)), c = cat[attn,
    cgmlp] -> [FFN] -> norm_final. ff_scale 0.5 with the macaron FFN, else 1.0."""

    def __init__(self, size: int, attn: nn.Module, cgmlp: nn.Module,
                 feed_forward: Optional[nn.Module], feed_forward_macaron: Optional[nn.Module],
                 dropout_rate: float, merge_conv_kernel: int = 3, causal: bool = True,
                 stochastic_depth_rate: float = 0.0):
        super().__init__()
        self.size = size
        self.attn = attn
        self.cgmlp = cgmlp
        self.feed_forward = feed_forward
        self.feed_forward_macaron = feed_forward_macaron
        self.ff_scale = 1.0
        if feed_forward is not None:
            self.norm_ff = nn.LayerNorm(size)
        if feed_forward_macaron is not None:
            self.ff_scale = 0.5
            self.norm_ff_macaron = nn.LayerNorm(size)
        self.norm_mha = nn.LayerNorm(size)
        self.norm_mlp = nn.LayerNorm(size)
        self.norm_final = nn.LayerNorm(size)
        self.dropout = nn.Dropout(dropout_rate)
        if causal:
            self.lorder = merge_conv_kernel - 1
            padding = 0
        else:
            if merge_conv_kernel % 2 == 0:
                raise ValueError("merge_conv_kernel: %d must be odd for a non-causal conv" %
                                 merge_conv_kernel)
            self.lorder = 0
            padding = (merge_conv_kernel - 1) // 2
        self.depthwise_conv_fusion = nn.Conv1d(2 * size, 2 * size, merge_conv_kernel, 1, padding,
                                               groups=2 * size, bias=True)
        self.merge_proj = nn.Linear(2 * size, size)
        self.stochastic_depth_rate = stochastic_depth_rate
        # Streaming with the fusion conv's left context cached (not WeNet's forward_chunk; see
        # EBranchformerEncoder.forward_chunk_by_chunk). Off: WeNet's zero padding every call.
        self.cache_fusion = False
        self.fusion_history = None

    def _fusion(self, x_concat):
        t = x_concat.transpose(1, 2)  # (B, 2D, T)
        if self.lorder > 0:
            if self.cache_fusion and self.fusion_history is not None:
                t = torch.cat((self.fusion_history, t), dim=2)
            else:
                t = F.pad(t, (self.lorder, 0), "constant", 0.0)
            if self.cache_fusion:
                self.fusion_history = t[:, :, -self.lorder:]
        return self.depthwise_conv_fusion(t).transpose(1, 2)

    def forward(self, x, mask, pos_emb, mask_pad=None, att_cache=None, cnn_cache=None):
        coeff = 1.0 / (1.0 - self.stochastic_depth_rate) if self.training else 1.0
        if self.feed_forward_macaron is not None:
            residual = x
            x = self.norm_ff_macaron(x)
            x = residual + coeff * self.ff_scale * self.dropout(self.feed_forward_macaron(x))
        x1 = self.norm_mha(x)
        x_att, new_att_cache = self.attn(x1, x1, x1, mask, pos_emb, att_cache)
        x1 = self.dropout(x_att)
        x2 = self.norm_mlp(x)
        x2, new_cnn_cache = self.cgmlp(x2, mask_pad, cnn_cache)
        x2 = self.dropout(x2)
        x_concat = torch.cat([x1, x2], dim=-1)
        x = x + coeff * self.dropout(self.merge_proj(x_concat + self._fusion(x_concat)))
        if self.feed_forward is not None:
            residual = x
            x = self.norm_ff(x)
            x = residual + coeff * self.ff_scale * self.dropout(self.feed_forward(x))
        x = self.norm_final(x)
        return x, mask, new_att_cache, new_cnn_cache


def _cgmlp(c, D):
    return ConvolutionalGatingMLP(D, c["cgmlp_linear_units"], c["cgmlp_conv_kernel"],
                                  c["dropout_rate"], c["use_linear_after_conv"],
                                  c["gate_activation"], c["causal"])


def _attn(c, D):
    return make_self_attn(c["selfattention_layer_type"], c["attention_heads"], D,
                          c["attention_dropout_rate"], c["query_bias"], c["key_bias"],
                          c["value_bias"])


class BranchformerEncoder(BaseEncoder):
    """WeNet's BranchformerEncoder: pre-norm only (normalize_before must be true)."""

    def __init__(self, input_size: int, conf: dict):
        super().__init__()
        c = conf
        if not c["normalize_before"]:
            raise ValueError("normalize_before: False is not a Branchformer option")
        self._build_front(input_size, c)
        D = c["output_size"]
        n = c["num_blocks"]
        cgmlp_weight = per_block(c["cgmlp_weight"], n, "cgmlp_weight")
        branch_drop = per_block(c["attn_branch_drop_rate"], n, "attn_branch_drop_rate")
        depth = per_block(c["stochastic_depth_rate"], n, "stochastic_depth_rate")
        H = c["attention_heads"]
        cnn_shape = (c["cgmlp_linear_units"] // 2, c["cgmlp_conv_kernel"] - 1) if c["causal"] \
            else None
        self.encoders = LayerDropModuleList(depth, [
            BranchformerEncoderLayer(D, _attn(c, D) if c["use_attn"] else None,
                                     _cgmlp(c, D) if c["use_cgmlp"] else None,
                                     c["dropout_rate"], c["merge_method"], cgmlp_weight[i],
                                     branch_drop[i], depth[i], (H, D // H), cnn_shape)
            for i in range(n)])


class EBranchformerEncoder(BaseEncoder):
    """WeNet's EBranchformerEncoder (a ConformerEncoder whose blocks are replaced)."""

    def __init__(self, input_size: int, conf: dict):
        super().__init__()
        c = conf
        if not c["normalize_before"]:
            raise ValueError("normalize_before: False is not an E-Branchformer option")
        self._build_front(input_size, c)
        D = c["output_size"]
        n = c["num_blocks"]
        depth = per_block(c["stochastic_depth_rate"], n, "stochastic_depth_rate")
        act = make_activation(c["activation_type"])

        def ffn():
            return PositionwiseFeedForward(D, c["linear_units"], c["dropout_rate"], act,
                                           c["mlp_bias"])
        self.encoders = LayerDropModuleList(depth, [
            EBranchformerEncoderLayer(D, _attn(c, D), _cgmlp(c, D),
                                      ffn() if c["use_ffn"] else None,
                                      ffn() if c["use_ffn"] and c["macaron_style"] else None,
                                      c["dropout_rate"], c["merge_conv_kernel"], c["causal"],
                                      depth[i])
            for i in range(n)])

    def forward_chunk_by_chunk(self, xs, decoding_chunk_size: int,
                               num_decoding_left_chunks: int = -1, cache_fusion: bool = False):
        """cache_fusion=False: WeNet's forward_chunk exactly. Its causal depthwise_conv_fusion gets
        no cache and zero-pads each chunk on the left, so the first K-1 frames of every chunk
        after the first lose their left context: this streaming output differs from the
        chunk-masked full forward (what the model was trained with, and the fixtures'
        chunk references).

        cache_fusion=True: the fusion conv keeps its last K-1 input columns across chunks (zeros
        before the first), as the C++ engine does; then streaming equals the chunk-masked
        full forward, like the other causal encoders."""
        layers = [self.encoders[i] for i in range(len(self.encoders))]  # no LayerDrop draw
        for layer in layers:
            layer.cache_fusion = cache_fusion
            layer.fusion_history = None
        try:
            return super().forward_chunk_by_chunk(xs, decoding_chunk_size,
                                                  num_decoding_left_chunks)
        finally:
            for layer in layers:
                layer.cache_fusion = False
                layer.fusion_history = None
