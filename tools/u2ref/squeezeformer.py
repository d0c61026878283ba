"""WeNet's Squeezeformer encoder (wenet/models/squeezeformer), reimplemented with WeNet HEAD's
numerics and state-dict names.

Structure (E = encoder_dim, D = output_size):
  CMVN -> DepthwiseConv2dSubsampling4 (`embed`: pw_conv 3x3/2 -> ReLU -> dw_conv 3x3/2 (depthwise
  with dw_stride) -> ReLU -> flatten -> x*sqrt(E) -> input_proj.0 Linear) -> `preln` LayerNorm ->
  blocks, with the time reduction before every layer in reduce_idx and the recovery before every
  layer in recover_idx -> `final_proj` (E -> D) when D != E. No after_norm.

Facts this module keeps on purpose (they decide agreement with WeNet):
  * the positional scaling sqrt(E) is applied to the flattened conv output BEFORE input_proj, so
    input_proj's bias is not scaled (the conformer front scales after its linear);
  * the subsampled padding mask is mask[:, :, :-2:2][:, :, :-2:2] (frames 0, 4, 8, ...), not the
    conv2d front's [2::2][2::2]: at batch size 1 it is all ones, in a padded batch an utterance
    shorter than the batch gets min(T', ceil(len/4)) valid frames, some computed from padding;
  * blocks are post-LN by default (normalize_before false): x = LN1(x + MHA(x)), LN2(x + FFN1),
    LN3(x + Conv), LN4(x + FFN2); all LayerNorms eps 1e-5;
  * adaptive_scale: MHA (q, k and v inputs alike), both FFNs and the conv module first compute
    ada_scale * x + ada_bias; the tensors exist whatever adaptive_scale says;
  * rel_selfattn has pos_bias_u/v and linear_pos; with do_rel_shift, matrix_bd goes through the
    Transformer-XL shift on the (T1, T2) score matrix whose pos_emb has T2 rows (not 2T-1), so the
    bias of key j for query i uses row T2-1+j-i for j <= i, zero for j == i+1 and row j-i-2 of
    query i+1 for j >= i+2 (when T1 == T2);
  * one time_reduction_layer and one time_recover_layer serve every reduce/recover index;
    reductions subsample the chunk mask [:, ::2, ::2], the padding mask [:, :, ::2] and pos_emb
    [:, ::2]; the recovery repeats each row twice, applies time_recover_layer, keeps the first T
    rows, adds the activation saved at the reduction (WeNet's list + index rule), zeroes padding;
  * the conv module's masked_fill_ is in place: without adaptive_scale, in post-LN blocks it also
    zeroes the padded rows of the block's residual (padded rows only);
  * forward_chunk: caches are kept at the input resolution: a reduced layer's new K/V rows are
    repeated 2^k times and every layer's cache is cut to layer 0's length; the next chunk takes
    every 2^k-th row back (WeNet's calculate_downsampling_factor).
"""

import math
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .mask import add_optional_chunk_mask, make_pad_mask
from .modules import (GlobalCMVN, MultiHeadedAttention, RelPositionalEncoding,
                      make_activation)

TIME_REDUCTION_TYPES = ("conv1d", "stream", "conv2d")


def index_list(value, key: str) -> Optional[List[int]]:
    """WeNet's reduce_idx / recover_idx: an int becomes [int]; None stays None; a list stays."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("%s: %r must be an integer, a list of integers or null" % (key, value))
    if isinstance(value, int):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool)
                                                for v in value):
        return list(value)
    raise ValueError("%s: %r must be an integer, a list of integers or null" % (key, value))


def rel_shift(x):
    """Transformer-XL shift of (B, H, T1, T2) scores as WeNet's squeezeformer does it: a zero
    column in front, the (T1, T2+1) rows read as T2+1 rows of T1, the first dropped, the rest
    read back as (T1, T2)."""
    b, h, t1, t2 = x.size()
    padded = torch.cat([torch.zeros((b, h, t1, 1), device=x.device, dtype=x.dtype), x], dim=-1)
    padded = padded.view(b, h, t2 + 1, t1)
    return padded[:, :, 1:].reshape(b, h, t1, t2)


class SqueezeformerRelPositionAttention(MultiHeadedAttention):
    """rel_selfattn with adaptive scale and an optional rel_shift. Cache: (K, V) tuple, as the
    other u2ref attentions."""

    def __init__(self, n_head: int, n_feat: int, dropout_rate: float, do_rel_shift: bool,
                 adaptive_scale: bool):
        super().__init__(n_head, n_feat, dropout_rate)
        self.linear_pos = nn.Linear(n_feat, n_feat, bias=False)
        self.do_rel_shift = do_rel_shift
        self.pos_bias_u = nn.Parameter(torch.Tensor(self.h, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.Tensor(self.h, self.d_k))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)
        self.adaptive_scale = adaptive_scale
        self.ada_scale = nn.Parameter(torch.ones(1, 1, n_feat), requires_grad=adaptive_scale)
        self.ada_bias = nn.Parameter(torch.zeros(1, 1, n_feat), requires_grad=adaptive_scale)

    def forward(self, query, key, value, mask=None, pos_emb=None, cache=None):
        if self.adaptive_scale:
            query = self.ada_scale * query + self.ada_bias
            key = self.ada_scale * key + self.ada_bias
            value = self.ada_scale * value + self.ada_bias
        q, k, v = self.forward_qkv(query, key, value)
        k, v, new_cache = self.update_kv_and_cache(k, v, cache)
        q = q.transpose(1, 2)  # (B, T1, H, dk)
        p = self.linear_pos(pos_emb).view(pos_emb.size(0), -1, self.h, self.d_k).transpose(1, 2)
        matrix_ac = torch.matmul((q + self.pos_bias_u).transpose(1, 2), k.transpose(-2, -1))
        matrix_bd = torch.matmul((q + self.pos_bias_v).transpose(1, 2), p.transpose(-2, -1))
        if self.do_rel_shift:
            matrix_bd = rel_shift(matrix_bd)
        scores = (matrix_ac + matrix_bd) / math.sqrt(self.d_k)
        return self.forward_attention(v, scores, mask), new_cache


class SqueezeformerFeedForward(nn.Module):
    def __init__(self, idim: int, hidden: int, dropout_rate: float, activation: nn.Module,
                 adaptive_scale: bool):
        super().__init__()
        self.w_1 = nn.Linear(idim, hidden)
        self.activation = activation
        self.dropout = nn.Dropout(dropout_rate)
        self.w_2 = nn.Linear(hidden, idim)
        self.adaptive_scale = adaptive_scale
        self.ada_scale = nn.Parameter(torch.ones(1, 1, idim), requires_grad=adaptive_scale)
        self.ada_bias = nn.Parameter(torch.zeros(1, 1, idim), requires_grad=adaptive_scale)

    def forward(self, x):
        if self.adaptive_scale:
            x = self.ada_scale * x + self.ada_bias
        return self.w_2(self.dropout(self.activation(self.w_1(x))))


class SqueezeformerConvModule(nn.Module):
    """pointwise_conv1 (E -> 2E) -> GLU -> depthwise (K) -> norm -> activation -> pointwise_conv2.
    Causal: K-1 zero columns (or the cache) on the left of the GLU input's source, as the
    conformer's conv module."""

    def __init__(self, channels: int, kernel_size: int, activation: nn.Module, norm: str,
                 causal: bool, adaptive_scale: bool):
        super().__init__()
        self.adaptive_scale = adaptive_scale
        self.ada_scale = nn.Parameter(torch.ones(1, 1, channels), requires_grad=adaptive_scale)
        self.ada_bias = nn.Parameter(torch.zeros(1, 1, channels), requires_grad=adaptive_scale)
        self.pointwise_conv1 = nn.Conv1d(channels, 2 * channels, 1)
        if causal:
            self.lorder = kernel_size - 1
            padding = 0
        else:
            if (kernel_size - 1) % 2 != 0:
                raise ValueError("cnn_module_kernel: %d must be odd for a non-causal conv" %
                                 kernel_size)
            self.lorder = 0
            padding = (kernel_size - 1) // 2
        self.depthwise_conv = nn.Conv1d(channels, channels, kernel_size, 1, padding,
                                        groups=channels)
        if norm == "batch_norm":
            self.use_layer_norm = False
            self.norm = nn.BatchNorm1d(channels)
        elif norm == "layer_norm":
            self.use_layer_norm = True
            self.norm = nn.LayerNorm(channels)
        else:
            raise ValueError("cnn_norm_type: %r is not supported (batch_norm, layer_norm)" %
                             (norm,))
        self.pointwise_conv2 = nn.Conv1d(channels, channels, 1)
        self.activation = activation

    def forward(self, x, mask_pad=None, cache=None):
        if self.adaptive_scale:
            x = self.ada_scale * x + self.ada_bias
        x = x.transpose(1, 2)  # (B, C, T), a view: the in-place fill reaches the caller's x
        if mask_pad is not None and mask_pad.size(2) > 0:
            x.masked_fill_(~mask_pad, 0.0)
        if self.lorder > 0:
            if cache is None or cache.size(2) == 0:
                x = F.pad(x, (self.lorder, 0), "constant", 0.0)
            else:
                x = torch.cat((cache, x), dim=2)
            new_cache = x[:, :, -self.lorder:]
        else:
            new_cache = torch.zeros((0, 0, 0), dtype=x.dtype, device=x.device)
        x = F.glu(self.pointwise_conv1(x), dim=1)
        x = self.depthwise_conv(x)
        if self.use_layer_norm:
            x = self.norm(x.transpose(1, 2)).transpose(1, 2)
            x = self.activation(x)
        else:
            x = self.activation(self.norm(x))
        x = self.pointwise_conv2(x)
        if mask_pad is not None and mask_pad.size(2) > 0:
            x.masked_fill_(~mask_pad, 0.0)
        return x.transpose(1, 2), new_cache


class SqueezeformerEncoderLayer(nn.Module):
    """MHA -> FFN1 -> conv -> FFN2, each a residual with its own LayerNorm (layer_norm1..4),
    after the sum (post-LN, the default) or before the module (normalize_before)."""

    def __init__(self, size: int, self_attn: nn.Module, ffn1: nn.Module, conv_module: nn.Module,
                 ffn2: nn.Module, normalize_before: bool, dropout_rate: float,
                 concat_after: bool):
        super().__init__()
        self.size = size
        self.self_attn = self_attn
        self.layer_norm1 = nn.LayerNorm(size)
        self.ffn1 = ffn1
        self.layer_norm2 = nn.LayerNorm(size)
        self.conv_module = conv_module
        self.layer_norm3 = nn.LayerNorm(size)
        self.ffn2 = ffn2
        self.layer_norm4 = nn.LayerNorm(size)
        self.normalize_before = normalize_before
        self.dropout = nn.Dropout(dropout_rate)
        self.concat_after = concat_after
        self.concat_linear = nn.Linear(2 * size, size) if concat_after else nn.Identity()

    def _sublayer(self, x, norm, fn):
        residual = x
        if self.normalize_before:
            x = norm(x)
        x = residual + self.dropout(fn(x))
        if not self.normalize_before:
            x = norm(x)
        return x

    def forward(self, x, mask, pos_emb, mask_pad=None, att_cache=None, cnn_cache=None):
        residual = x
        if self.normalize_before:
            x = self.layer_norm1(x)
        x_att, new_att_cache = self.self_attn(x, x, x, mask, pos_emb, att_cache)
        if self.concat_after:
            x = residual + self.concat_linear(torch.cat((x, x_att), dim=-1))
        else:
            x = residual + self.dropout(x_att)
        if not self.normalize_before:
            x = self.layer_norm1(x)
        x = self._sublayer(x, self.layer_norm2, self.ffn1)
        out = {}

        def conv(t):
            y, out["cache"] = self.conv_module(t, mask_pad, cnn_cache)
            return y
        x = self._sublayer(x, self.layer_norm3, conv)
        x = self._sublayer(x, self.layer_norm4, self.ffn2)
        return x, mask, new_att_cache, out["cache"]


class DepthwiseConv2dSubsampling4(nn.Module):
    """WeNet's DepthwiseConv2dSubsampling4 (x4, right context 6)."""
    subsampling_rate = 4
    right_context = 6

    def __init__(self, idim: int, odim: int, pos_enc: nn.Module, dw_stride: bool,
                 input_dropout_rate: float):
        super().__init__()
        self.pw_conv = nn.Conv2d(1, odim, 3, 2)
        self.act1 = nn.ReLU()
        self.dw_conv = nn.Conv2d(odim, odim, 3, 2, groups=odim if dw_stride else 1)
        self.act2 = nn.ReLU()
        self.pos_enc = pos_enc
        self.input_proj = nn.Sequential(nn.Linear(odim * (((idim - 1) // 2 - 1) // 2), odim),
                                        nn.Dropout(p=input_dropout_rate))

    def forward(self, x, x_mask, offset: int = 0):
        x = self.act2(self.dw_conv(self.act1(self.pw_conv(x.unsqueeze(1)))))
        b, c, t, f = x.size()
        x = x.permute(0, 2, 1, 3).contiguous().view(b, t, c * f)
        x, pos_emb = self.pos_enc(x, offset)  # scales by sqrt(E) before the projection
        x = self.input_proj(x)
        return x, pos_emb, x_mask[:, :, :-2:2][:, :, :-2:2]

    def position_encoding(self, offset, size):
        return self.pos_enc.position_encoding(offset, size, False)


def _reduced_masks(mask, mask_pad, stride):
    return mask[:, ::stride, ::stride], mask_pad[:, :, ::stride]


def _fit_rows(xs, L):
    """Cut or zero-extend (B, T, C) to L rows (WeNet's TimeReductionLayer1D/Stream tail)."""
    B, T, C = xs.size()
    if L - T < 0:
        return xs[:, :L - T, :].contiguous()
    return torch.cat([xs, torch.zeros(B, L - T, C, device=xs.device)], dim=1)


class TimeReductionLayer1D(nn.Module):
    """`conv1d`: depthwise Conv1d K=5 stride 2 padding 3 (both sides) -> pointwise Conv1d;
    output row j sees input rows 2j-3 .. 2j+1; ceil(T/2) rows kept."""

    def __init__(self, channel: int, out_dim: int, kernel_size: int = 5, stride: int = 2):
        super().__init__()
        self.stride = stride
        self.padding = max(0, kernel_size - stride)
        self.dw_conv = nn.Conv1d(channel, channel, kernel_size, stride, self.padding,
                                 groups=channel)
        self.pw_conv = nn.Conv1d(channel, out_dim, 1)

    def forward(self, xs, xs_lens, mask, mask_pad):
        xs = xs.transpose(1, 2).masked_fill(mask_pad.eq(0), 0.0)
        xs = self.pw_conv(self.dw_conv(xs)).transpose(1, 2)
        mask, mask_pad = _reduced_masks(mask, mask_pad, self.stride)
        xs = _fit_rows(xs, mask_pad.size(-1))
        return xs, torch.div(xs_lens + 1, 2, rounding_mode="trunc"), mask, mask_pad


class TimeReductionLayerStream(TimeReductionLayer1D):
    """`stream`: depthwise Conv1d K=1 stride 2 (row j = input row 2j, scaled) -> pointwise."""

    def __init__(self, channel: int, out_dim: int, kernel_size: int = 1, stride: int = 2):
        nn.Module.__init__(self)
        self.stride = stride
        self.dw_conv = nn.Conv1d(channel, channel, kernel_size, stride, 0, groups=channel)
        self.pw_conv = nn.Conv1d(channel, out_dim, 1)


class TimeReductionLayer2D(nn.Module):
    """`conv2d` (WeNet: any type other than conv1d/stream): input zero-padded with K-S = 3 rows
    at the end, a dense (not depthwise) Conv2d (E, E, (5, 1)) stride 2 -> Conv2d 1x1; output row
    j sees input rows 2j .. 2j+4; floor(T/2) rows computed, then zero rows up to
    ceil(max length / 2)."""

    def __init__(self, kernel_size: int = 5, stride: int = 2, encoder_dim: int = 256):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride
        # WeNet's Conv2dValid: its "valid" padding works out to 0 for these shapes.
        self.dw_conv = nn.Conv2d(encoder_dim, encoder_dim, (kernel_size, 1), stride)
        self.pw_conv = nn.Conv2d(encoder_dim, encoder_dim, 1, 1)

    def forward(self, xs, xs_lens, mask, mask_pad):
        xs = xs.masked_fill(mask_pad.transpose(1, 2).eq(0), 0.0)
        xs = F.pad(xs.unsqueeze(2), (0, 0, 0, 0, 0, self.kernel_size - self.stride, 0, 0))
        xs = self.dw_conv(xs.permute(0, 3, 1, 2))  # (B, E, T+3, 1) -> (B, E, T', 1)
        xs = self.pw_conv(xs).permute(0, 3, 2, 1).squeeze(1).contiguous()
        xs_lens = torch.div(xs_lens + 1, 2, rounding_mode="trunc")
        extra = max(0, int(xs_lens.max().item()) - xs.size(1))
        xs = torch.cat([xs, torch.zeros(xs.size(0), extra, xs.size(2), device=xs.device)], dim=1)
        mask, mask_pad = _reduced_masks(mask, mask_pad, 2)
        return xs, xs_lens, mask, mask_pad


class SqueezeformerEncoder(nn.Module):
    """WeNet's SqueezeformerEncoder. conf: the canonical encoder_conf (config.py
    SQUEEZEFORMER_DEFAULTS filled)."""

    def __init__(self, input_size: int, conf: dict):
        super().__init__()
        c = conf
        self.conf = dict(c)
        E = int(c["encoder_dim"])
        D = int(c["output_size"])
        self._output_size = D
        self.global_cmvn = None
        self.reduce_idx = index_list(c["reduce_idx"], "reduce_idx")
        self.recover_idx = index_list(c["recover_idx"], "recover_idx")
        for key, idx in (("reduce_idx", self.reduce_idx), ("recover_idx", self.recover_idx)):
            if idx is not None and idx != sorted(idx):
                raise ValueError("%s: %r must be ascending" % (key, idx))
        if self.reduce_idx is None:
            self.time_reduce = None
        elif self.recover_idx is None:
            self.time_reduce = "normal"
        else:
            self.time_reduce = "recover"
            if len(self.reduce_idx) != len(self.recover_idx):
                raise ValueError("reduce_idx %r and recover_idx %r must have the same length" %
                                 (self.reduce_idx, self.recover_idx))
        self.static_chunk_size = c["static_chunk_size"]
        self.use_dynamic_chunk = c["use_dynamic_chunk"]
        self.use_dynamic_left_chunk = c["use_dynamic_left_chunk"]
        if c["pos_enc_layer_type"] != "rel_pos":
            # WeNet then builds transformer MultiHeadedAttention(heads, output_size), whose
            # tuple cache cannot take the layer's default tensor cache: it does not run.
            raise ValueError("pos_enc_layer_type: %r is not supported for squeezeformer (rel_pos)"
                             % (c["pos_enc_layer_type"],))
        act = make_activation(c["activation_type"])
        adaptive = bool(c["adaptive_scale"])
        self.embed = DepthwiseConv2dSubsampling4(input_size, E, RelPositionalEncoding(E, 0.1),
                                                 bool(c["dw_stride"]), c["input_dropout_rate"])
        self.preln = nn.LayerNorm(E)

        def ffn():
            return SqueezeformerFeedForward(E, E * int(c["feed_forward_expansion_factor"]),
                                            c["feed_forward_dropout_rate"], act, adaptive)
        self.encoders = nn.ModuleList([
            SqueezeformerEncoderLayer(
                E,
                SqueezeformerRelPositionAttention(c["attention_heads"], E,
                                                  c["attention_dropout_rate"],
                                                  bool(c["do_rel_shift"]), adaptive),
                ffn(),
                SqueezeformerConvModule(E, c["cnn_module_kernel"], act, c["cnn_norm_type"],
                                        bool(c["causal"]), adaptive),
                ffn(), bool(c["normalize_before"]), c["dropout"], bool(c["concat_after"]))
            for _ in range(c["num_blocks"])])
        kind = c["time_reduction_layer_type"]
        if kind == "conv1d":
            self.time_reduction_layer = TimeReductionLayer1D(E, E)
        elif kind == "stream":
            self.time_reduction_layer = TimeReductionLayerStream(E, E)
        else:  # WeNet: anything else is the 2-D layer
            self.time_reduction_layer = TimeReductionLayer2D(encoder_dim=E)
        self.time_recover_layer = nn.Linear(E, E)
        self.final_proj = nn.Linear(E, D) if D != E else None

    def set_cmvn(self, mean: torch.Tensor, istd: torch.Tensor):
        self.global_cmvn = GlobalCMVN(mean, istd)

    def output_size(self):
        return self._output_size

    def downsampling_factor(self, i: int) -> int:
        """2^(reductions at or before layer i - recoveries at or before layer i)."""
        if self.reduce_idx is None:
            return 1
        reduced = sum(1 for r in self.reduce_idx if i >= r)
        recovered = sum(1 for r in self.recover_idx if i >= r) if self.recover_idx else 0
        return int(2 ** (reduced - recovered))

    def _reduce(self, xs, xs_lens, mask, mask_pad, pos_emb, saved):
        saved.append((xs, mask, pos_emb, mask_pad))
        xs, xs_lens, mask, mask_pad = self.time_reduction_layer(xs, xs_lens, mask, mask_pad)
        return xs, xs_lens, mask, mask_pad, pos_emb[:, ::2, :]

    def _recover(self, xs, item, fill_mask):
        """item: (saved xs, mask, pos_emb, mask_pad); fill_mask: zero these rows' padding."""
        saved_xs = item[0]
        xs = self.time_recover_layer(xs.unsqueeze(2).repeat(1, 1, 2, 1).flatten(1, 2))
        xs = saved_xs + xs[:, :saved_xs.size(1), :].contiguous()
        if fill_mask is not None:
            xs = xs.masked_fill(~fill_mask[:, 0, :].unsqueeze(-1), 0.0)
        return xs

    def forward(self, xs, xs_lens, decoding_chunk_size: int = -1,
                num_decoding_left_chunks: int = -1, return_layers: bool = False):
        """xs (B,T,I) raw fbank -> (encoder_out (B,T',D), mask (B,1,T')) [, layers]: layers[0] is
        preln's output (layer 0's input), layers[1 + j] what layer j returns, at that layer's own
        time resolution (ceil(T'/2) rows after one reduction)."""
        T = xs.size(1)
        masks = ~make_pad_mask(xs_lens, T).unsqueeze(1)
        if self.global_cmvn is not None:
            xs = self.global_cmvn(xs)
        xs, pos_emb, masks = self.embed(xs, masks)
        mask_pad = masks
        chunk_masks = add_optional_chunk_mask(xs, masks, self.use_dynamic_chunk,
                                              self.use_dynamic_left_chunk, decoding_chunk_size,
                                              self.static_chunk_size, num_decoding_left_chunks)
        xs_lens = mask_pad.squeeze(1).sum(1)
        xs = self.preln(xs)
        layers = [xs]
        saved = []
        index = 0
        for i, layer in enumerate(self.encoders):
            if self.time_reduce is not None and i in self.reduce_idx:
                xs, xs_lens, chunk_masks, mask_pad, pos_emb = self._reduce(
                    xs, xs_lens, chunk_masks, mask_pad, pos_emb, saved)
                index += 1
            if self.time_reduce == "recover" and i in self.recover_idx:
                index -= 1
                item = saved[index]
                _, chunk_masks, pos_emb, mask_pad = item
                xs = self._recover(xs, item, mask_pad)
            xs, chunk_masks, _, _ = layer(xs, chunk_masks, pos_emb, mask_pad)
            layers.append(xs)
        if self.final_proj is not None:
            xs = self.final_proj(xs)
        if return_layers:
            layers[-1] = layers[-1].clone()  # without final_proj: not encoder_out's storage
            return xs, masks, layers
        return xs, masks

    def forward_chunk(self, xs, offset: int, required_cache_size: int,
                      att_cache=torch.zeros(0, 0, 0, 0), cnn_cache=torch.zeros(0, 0, 0, 0)):
        """WeNet's SqueezeformerEncoder.forward_chunk (batch 1). att_cache (N, H, t, 2dk) holds
        every layer's K|V at the input resolution (a reduced layer's rows repeated); cnn_cache
        (N, 1, E, K-1) each layer's conv history at that layer's own resolution."""
        assert xs.size(0) == 1
        ones = torch.ones(1, 1, xs.size(1), dtype=torch.bool, device=xs.device)
        if self.global_cmvn is not None:
            xs = self.global_cmvn(xs)
        xs, _, _ = self.embed(xs, ones, offset)
        elayers, cache_t1 = att_cache.size(0), att_cache.size(2)
        chunk_size = xs.size(1)
        attention_key_size = cache_t1 + chunk_size
        pos_emb = self.embed.position_encoding(offset - cache_t1, attention_key_size)
        if required_cache_size < 0:
            next_cache_start = 0
        elif required_cache_size == 0:
            next_cache_start = attention_key_size
        else:
            next_cache_start = max(attention_key_size - required_cache_size, 0)
        att_mask = torch.ones((0, 0, 0), dtype=torch.bool, device=xs.device)
        mask_pad = torch.ones(1, 1, xs.size(1), dtype=torch.bool, device=xs.device)
        xs_lens = torch.tensor([xs.size(1)], dtype=torch.int, device=xs.device)
        xs = self.preln(xs)
        r_att, r_cnn = [], []
        saved = []
        index = 0
        max_att_len = 0
        for i, layer in enumerate(self.encoders):
            if self.time_reduce is not None and i in self.reduce_idx:
                xs, xs_lens, att_mask, mask_pad, pos_emb = self._reduce(
                    xs, xs_lens, att_mask, mask_pad, pos_emb, saved)
                index += 1
            if self.time_reduce == "recover" and i in self.recover_idx:
                index -= 1
                item = saved[index]
                _, att_mask, pos_emb, mask_pad = item
                xs = self._recover(xs, item, att_mask if att_mask.size(1) != 0 else None)
            factor = self.downsampling_factor(i)
            if elayers > 0:
                c = att_cache[i:i + 1][:, :, ::factor, :][:, :, :pos_emb.size(1) - xs.size(1), :]
                half = c.size(-1) // 2
                kv = (c[..., :half], c[..., half:])
            else:
                kv = None
            cc = cnn_cache[i] if cnn_cache.size(0) > 0 else None
            # WeNet passes no mask_pad here (its default, an empty mask).
            xs, _, new_kv, new_cnn = layer(xs, att_mask, pos_emb, None, kv, cc)
            new_att = torch.cat(new_kv, dim=-1)[:, :, next_cache_start // factor:, :]
            new_att = new_att.unsqueeze(3).repeat(1, 1, 1, factor, 1).flatten(2, 3)
            if i == 0:
                max_att_len = new_att.size(2)
            r_att.append(new_att[:, :, :max_att_len, :])
            r_cnn.append(new_cnn.unsqueeze(0))
        if self.final_proj is not None:
            xs = self.final_proj(xs)
        return xs, torch.cat(r_att, dim=0), torch.cat(r_cnn, dim=0)

    def forward_chunk_by_chunk(self, xs, decoding_chunk_size: int,
                               num_decoding_left_chunks: int = -1):
        """Streaming over a whole (1,T,I) feature sequence, windows as WeNet's Python does."""
        assert decoding_chunk_size > 0
        subsampling = self.embed.subsampling_rate
        context = self.embed.right_context + 1
        stride = subsampling * decoding_chunk_size
        window = (decoding_chunk_size - 1) * subsampling + context
        att_cache = torch.zeros((0, 0, 0, 0), device=xs.device)
        cnn_cache = torch.zeros((0, 0, 0, 0), device=xs.device)
        outputs = []
        offset = 0
        required = decoding_chunk_size * num_decoding_left_chunks
        for cur in range(0, xs.size(1) - context + 1, stride):
            end = min(cur + window, xs.size(1))
            y, att_cache, cnn_cache = self.forward_chunk(xs[:, cur:end, :], offset, required,
                                                         att_cache, cnn_cache)
            outputs.append(y)
            offset += y.size(1)
        ys = torch.cat(outputs, 1)
        return ys, torch.ones((1, 1, ys.size(1)), dtype=torch.bool, device=xs.device)
