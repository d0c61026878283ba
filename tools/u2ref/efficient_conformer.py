"""WeNet's Efficient Conformer encoder (`encoder: efficientConformer`, wenet/models/
efficient_conformer), reimplemented with WeNet HEAD's numerics and state-dict names.

The encoder is a conformer whose blocks may (a) downsample time by a stride (a "stride layer") or
(b) attend over groups of frames (a "grouped" layer). Facts this module keeps on purpose:

  * every LayerNorm inside a block and `after_norm` has eps 1e-5, the conv module's BatchNorm /
    LayerNorm too (WeNet passes no eps); biases everywhere (WeNet passes no bias flags);
  * stride layer (block i in stride_layer_idx, stride s): macaron FFN and attention at the block's
    input rate; the conv module's depthwise conv has stride s (causal: K-1 zero columns or the
    cache on the left; non-causal: (K-1)/2 zeros each side), so it gives ceil(T/s) frames; the
    conv's residual is AvgPool1d(s, s, ceil_mode=True, count_include_pad=False) of the block's
    pre-norm input (a last partial window averages only the frames it has); FFN and norm_final
    at the reduced rate. After the block the encoder takes every s-th entry of the padding mask,
    of both axes of the chunk mask and of pos_emb (`[::s]`, starting at 0);
  * per-block conv kernels: cnn_module_kernel up to and including the first stride layer, then
    (stride_kernel true) the previous kernel // that stride, or (false) the same kernel;
  * grouped attention (block i in group_layer_idx, group size g): q, k, v (B, H, T, d_k) and the
    projected pos_emb get zero rows appended up to a multiple of g, then each run of g frames is
    one "frame" of g*D features split into H heads of g*d_k (pos_bias_u/v are (H, g*d_k)); the
    scores are scaled by 1/sqrt(g*d_k); the mask is `mask[:, ::g, ::g]` (a key group is visible
    when its first frame is, to the group's first query frame); the output rows of the appended
    query frames are dropped. Rel-pos without rel_shift, like every WeNet rel attention;
  * non-grouped blocks: rel_selfattn, or selfattn when pos_enc_layer_type is no_pos;
  * the AvgPool residual does not see the padding mask: in a padded batch, an utterance with an
    odd number of frames (at that block's rate) averages its last frame with a padding row, where
    alone it averages that frame by itself. Batch size 1 is exact (every fixture tensor);
  * forward_chunk restates WeNet's (see EfficientConformerEncoder.forward_chunk for its caches).
"""

import math
from typing import List

import torch
import torch.nn.functional as F
from torch import nn

from .mask import add_optional_chunk_mask, make_pad_mask
from .modules import (BaseEncoder, ConformerEncoderLayer, MultiHeadedAttention,
                      PositionwiseFeedForward, make_activation, make_self_attn)


def as_index_list(value) -> List[int]:
    """WeNet's rule for stride_layer_idx / stride / group_layer_idx: one int or a sequence."""
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    return list(value)


def block_kernels(conf) -> List[int]:
    """The depthwise kernel of each block (WeNet's cnn_module_kernels indexed by the number of
    stride layers before the block)."""
    kernels = [conf["cnn_module_kernel"]]
    for s in conf["stride"]:
        kernels.append(kernels[-1] // s if conf["stride_kernel"] else kernels[-1])
    out, seen = [], 0
    for i in range(conf["num_blocks"]):
        out.append(kernels[seen])
        if i in conf["stride_layer_idx"]:
            seen += 1
    return out


def streaming_chunk_multiple(conf) -> int:
    """Chunk sizes (in embed frames) that are multiples of this stream exactly, i.e.
    forward_chunk_by_chunk equals the chunk-masked forward (causal convs): the product of all
    strides, and group_size times the rate factor of every grouped block's input. For other chunk
    sizes the chunk-masked forward itself reaches into the next chunk (an AvgPool window or a
    frame group straddles the chunk boundary), which no streaming cache can reproduce."""
    idx, strides = as_index_list(conf["stride_layer_idx"]), as_index_list(conf["stride"])
    n = conf["num_blocks"]

    def factor(i):
        f = 1
        for j, s in zip(idx, strides):
            if i > j:
                f *= s
        return f
    m = factor(n + 1)
    for i in as_index_list(conf["group_layer_idx"]):
        if 0 <= i < n:
            m = m * conf["group_size"] * factor(i) // math.gcd(m, conf["group_size"] * factor(i))
    return m


class GroupedRelPositionMultiHeadedAttention(MultiHeadedAttention):
    """`grouped_rel_selfattn`: rel-pos attention over groups of `group_size` frames."""

    def __init__(self, n_head: int, n_feat: int, dropout_rate: float, group_size: int):
        super().__init__(n_head, n_feat, dropout_rate)
        self.group_size = group_size
        self.n_feat = n_feat
        self.linear_pos = nn.Linear(n_feat, n_feat, bias=False)
        self.pos_bias_u = nn.Parameter(torch.Tensor(self.h, self.d_k * group_size))
        self.pos_bias_v = nn.Parameter(torch.Tensor(self.h, self.d_k * group_size))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)

    def _grouped(self, t):
        """(B, H, T, d_k) -> (B, H, ceil(T/g), g*d_k): zero frames appended, g frames per row."""
        g = self.group_size
        b, h, n, dk = t.shape
        extra = (g - n % g) % g
        if extra:
            t = F.pad(t, (0, 0, 0, extra), value=0.0)
        return t.transpose(1, 2).reshape(b, -1, h, dk * g).transpose(1, 2)

    def forward(self, query, key, value, mask=None, pos_emb=None, cache=None):
        g = self.group_size
        q, k, v = self.forward_qkv(query, key, value)  # (B, H, T, d_k)
        k, v, new_cache = self.update_kv_and_cache(k, v, cache)
        if mask is not None and mask.size(2) > 0:
            # WeNet keeps only the last mask-width keys (a no-op unless a cache is longer).
            k = k[:, :, -mask.size(2):, :]
            v = v[:, :, -mask.size(2):, :]
            mask = mask[:, ::g, ::g]
        n_query = q.size(2)
        q, k, v = self._grouped(q), self._grouped(k), self._grouped(v)
        p = self.linear_pos(pos_emb)  # (Bp, P, D) = (Bp, P, H, d_k) in memory
        p = self._grouped(p.view(p.size(0), p.size(1), self.h, self.d_k).transpose(1, 2))
        q = q.transpose(1, 2)  # (B, Tq/g, H, g*d_k)
        q_u = (q + self.pos_bias_u).transpose(1, 2)
        q_v = (q + self.pos_bias_v).transpose(1, 2)
        scores = (torch.matmul(q_u, k.transpose(-2, -1)) +
                  torch.matmul(q_v, p.transpose(-2, -1))) / math.sqrt(self.d_k * g)
        if mask is not None and mask.size(2) > 0:
            masked = mask.unsqueeze(1).eq(0)[:, :, :, :scores.size(-1)]
            scores = scores.masked_fill(masked, -float("inf"))
            attn = torch.softmax(scores, dim=-1).masked_fill(masked, 0.0)
        else:
            attn = torch.softmax(scores, dim=-1)
        x = torch.matmul(self.dropout(attn), v)  # (B, H, Tq/g, g*d_k)
        x = x.transpose(1, 2).reshape(x.size(0), -1, self.n_feat)[:, :n_query]
        return self.linear_out(x), new_cache


class StrideConvolutionModule(nn.Module):
    """WeNet's efficient_conformer ConvolutionModule: the conformer conv module with a strided
    depthwise conv (stride 1 in ordinary blocks). Padded frames are zeroed in place on the input
    (WeNet's masked_fill_ on a view of the caller's tensor) and on the output, whose mask is the
    input's [::stride]."""

    def __init__(self, channels: int, kernel_size: int, activation: nn.Module,
                 norm: str = "batch_norm", causal: bool = False, stride: int = 1):
        super().__init__()
        self.pointwise_conv1 = nn.Conv1d(channels, 2 * channels, 1, 1, 0)
        if causal:
            padding = 0
            self.lorder = kernel_size - 1
        else:
            if (kernel_size - 1) % 2 != 0:
                raise ValueError("conv kernel %d must be odd for a non-causal conv" % kernel_size)
            padding = (kernel_size - 1) // 2
            self.lorder = 0
        self.depthwise_conv = nn.Conv1d(channels, channels, kernel_size, stride, padding,
                                        groups=channels)
        if norm == "batch_norm":
            self.use_layer_norm = False
            self.norm = nn.BatchNorm1d(channels)
        elif norm == "layer_norm":
            self.use_layer_norm = True
            self.norm = nn.LayerNorm(channels)
        else:
            raise ValueError("cnn_module_norm: %r is not supported" % (norm,))
        self.pointwise_conv2 = nn.Conv1d(channels, channels, 1, 1, 0)
        self.activation = activation
        self.stride = stride

    def forward(self, x, mask_pad=None, cache=None):
        x = x.transpose(1, 2)  # (B, C, T), a view of the caller's tensor
        has_mask = mask_pad is not None and mask_pad.size(2) > 0
        if has_mask:
            x.masked_fill_(~mask_pad, 0.0)
        if self.lorder > 0:
            if cache is None or cache.size(2) == 0:
                x = F.pad(x, (self.lorder, 0), "constant", 0.0)
            else:
                x = torch.cat((cache[:, :, -self.lorder:], x), dim=2)
            new_cache = x[:, :, -self.lorder:]
        else:
            new_cache = torch.zeros((0, 0, 0), dtype=x.dtype, device=x.device)
        x = F.glu(self.pointwise_conv1(x), dim=1)
        x = self.depthwise_conv(x)
        if self.use_layer_norm:
            x = x.transpose(1, 2)
        x = self.activation(self.norm(x))
        if self.use_layer_norm:
            x = x.transpose(1, 2)
        x = self.pointwise_conv2(x)
        if has_mask:
            if mask_pad.size(2) != x.size(2):
                mask_pad = mask_pad[:, :, ::self.stride]
            x.masked_fill_(~mask_pad, 0.0)
        return x.transpose(1, 2), new_cache


class StrideConformerEncoderLayer(ConformerEncoderLayer):
    """A conformer block whose conv module downsamples; the conv's residual is average-pooled by
    `pointwise_conv_layer` (nn.AvgPool1d, no weights). WeNet's block also owns an unused
    `concat_linear` (Linear 2D -> D), left out here: checkpoints' concat_linear tensors are
    dropped on load as for old conformers."""

    def __init__(self, size, self_attn, feed_forward, feed_forward_macaron, conv_module,
                 pointwise_conv_layer, dropout_rate, normalize_before=True):
        super().__init__(size, self_attn, feed_forward, feed_forward_macaron, conv_module,
                         dropout_rate, normalize_before, 1e-5)
        self.pointwise_conv_layer = pointwise_conv_layer

    def conv_residual(self, residual):
        # The conv module downsamples: its residual is the block input average-pooled the same way.
        if self.pointwise_conv_layer is None:
            return residual
        return self.pointwise_conv_layer(residual.transpose(1, 2)).transpose(1, 2)


class EfficientConformerEncoder(BaseEncoder):
    """WeNet's EfficientConformerEncoder. `conf` is the canonical encoder_conf (u2ref.config:
    efficient_conf merged in, stride_layer_idx / stride / group_layer_idx as lists)."""

    def __init__(self, input_size: int, conf: dict):
        super().__init__()
        c = conf
        self._build_front(input_size, c)
        D = c["output_size"]
        self.num_blocks = c["num_blocks"]
        self.cnn_module_kernel = c["cnn_module_kernel"]
        self.stride_layer_idx = as_index_list(c["stride_layer_idx"])
        self.stride = as_index_list(c["stride"])
        self.group_layer_idx = as_index_list(c["group_layer_idx"])
        self.group_size = c["group_size"]
        if len(self.stride) != len(self.stride_layer_idx):
            raise ValueError("stride: %r needs one value per stride_layer_idx %r" %
                             (self.stride, self.stride_layer_idx))
        kernels = block_kernels(dict(c, stride_layer_idx=self.stride_layer_idx,
                                     stride=self.stride))
        act = make_activation(c["activation_type"])
        H = c["attention_heads"]
        layers, index = [], 0
        for i in range(self.num_blocks):
            if i in self.group_layer_idx:
                attn = GroupedRelPositionMultiHeadedAttention(H, D, c["attention_dropout_rate"],
                                                              self.group_size)
            else:
                kind = "selfattn" if c["pos_enc_layer_type"] == "no_pos" else "rel_selfattn"
                attn = make_self_attn(kind, H, D, c["attention_dropout_rate"], True, True, True)
            ff = PositionwiseFeedForward(D, c["linear_units"], c["dropout_rate"], act)
            ffm = (PositionwiseFeedForward(D, c["linear_units"], c["dropout_rate"], act)
                   if c["macaron_style"] else None)
            stride = self.stride[index] if i in self.stride_layer_idx else 1
            conv = (StrideConvolutionModule(D, kernels[i], act, c["cnn_module_norm"], c["causal"],
                                            stride) if c["use_cnn_module"] else None)
            if i in self.stride_layer_idx:
                pool = nn.AvgPool1d(kernel_size=stride, stride=stride, padding=0, ceil_mode=True,
                                    count_include_pad=False)
                layers.append(StrideConformerEncoderLayer(D, attn, ff, ffm, conv, pool,
                                                          c["dropout_rate"],
                                                          c["normalize_before"]))
                index += 1
            else:
                layers.append(ConformerEncoderLayer(D, attn, ff, ffm, conv, c["dropout_rate"],
                                                    c["normalize_before"], 1e-5))
        self.encoders = nn.ModuleList(layers)

    def downsampling_factor(self, i: int) -> int:
        """Product of the strides of the stride layers before block i (i = num_blocks + 1: all)."""
        f = 1
        for idx, s in zip(self.stride_layer_idx, self.stride):
            if i > idx:
                f *= s
        return f

    def forward(self, xs, xs_lens, decoding_chunk_size: int = -1,
                num_decoding_left_chunks: int = -1, return_layers: bool = False):
        """As BaseEncoder.forward; after each stride layer the padding mask, the chunk mask (both
        axes) and pos_emb keep every s-th entry. Returned mask: the final rate's. return_layers:
        [embed output, output of block 0, 1, ...], each at its own frame rate."""
        T = xs.size(1)
        masks = ~make_pad_mask(xs_lens, T).unsqueeze(1)
        if self.global_cmvn is not None:
            xs = self.global_cmvn(xs)
        xs, pos_emb, masks = self.embed(xs, masks)
        mask_pad = masks
        # WeNet's efficient encoder leaves max_chunk_size at its default (25) for training.
        chunk_masks = add_optional_chunk_mask(xs, masks, self.use_dynamic_chunk,
                                              self.use_dynamic_left_chunk, decoding_chunk_size,
                                              self.static_chunk_size, num_decoding_left_chunks)
        layers = [xs]
        index = 0
        for i, layer in enumerate(self.encoders):
            xs, chunk_masks, _, _ = layer(xs, chunk_masks, pos_emb, mask_pad)
            if i in self.stride_layer_idx:
                s = self.stride[index]
                masks = masks[:, :, ::s]
                chunk_masks = chunk_masks[:, ::s, ::s]
                mask_pad = masks
                pos_emb = pos_emb[:, ::s, :]
                index += 1
            layers.append(xs)
        if self.normalize_before:
            xs = self.after_norm(xs)
        if return_layers:
            return xs, masks, layers
        return xs, masks

    def forward_chunk(self, xs, offset: int, required_cache_size: int,
                      att_cache=torch.zeros(0, 0, 0, 0), cnn_cache=torch.zeros(0, 0, 0, 0)):
        """WeNet's EfficientConformerEncoder.forward_chunk (batch 1, no ONNX padding):

        * `offset` counts output frames; times the total stride it is the embed-rate offset;
        * att_cache (N, H, t, 2*d_k) is held at the embed rate: block i (input rate factor f)
          reads att_cache[i, :, ::f] (minus `att_cache_trunc` leading frames when that would be
          longer than its pos_emb allows) and its new cache, cut at next_cache_start // f, is
          stored repeat_interleave(f) and then cut to block 0's length;
        * pos_emb covers the cache and the chunk at the embed rate, from offset - t, and keeps
          every s-th row after a stride layer, like the full forward;
        * cnn_cache (N, 1, D, cnn_module_kernel - 1): each block's cache left-padded with zero
          columns to cnn_module_kernel - 1 (blocks with a smaller kernel use the last K-1);
        * no attention mask: every block sees its whole cache and chunk (grouped blocks group
          the cached keys from the first cached frame on).
        """
        assert xs.size(0) == 1
        offset = offset * self.downsampling_factor(self.num_blocks + 1)
        masks = torch.ones(1, 1, xs.size(1), dtype=torch.bool, device=xs.device)
        if self.global_cmvn is not None:
            xs = self.global_cmvn(xs)
        xs, _, _ = self.embed(xs, masks, offset)
        cache_t1 = att_cache.size(2)
        attention_key_size = cache_t1 + xs.size(1)
        if required_cache_size < 0:
            next_cache_start = 0
        elif required_cache_size == 0:
            next_cache_start = attention_key_size
        else:
            next_cache_start = max(attention_key_size - required_cache_size, 0)
        mask_pad = torch.ones(1, 1, xs.size(1), dtype=torch.bool, device=xs.device)
        att_mask = torch.ones((0, 0, 0), dtype=torch.bool, device=xs.device)
        pos_emb = self.embed.position_encoding(offset - cache_t1, attention_key_size)
        r_att, r_cnn = [], []
        max_att_len = max_cnn_len = 0
        for i, layer in enumerate(self.encoders):
            f = self.downsampling_factor(i)
            trunc = 0
            if xs.size(1) + att_cache.size(2) / f > pos_emb.size(1):
                trunc = xs.size(1) + att_cache.size(2) // f - pos_emb.size(1) + 1
            c = att_cache[i:i + 1, :, ::f, :][:, :, trunc:, :]
            kv = None
            if c.size(0) > 0:
                half = c.size(-1) // 2
                kv = (c[:, :, :, :half], c[:, :, :, half:])
            cc = cnn_cache[i] if cnn_cache.size(0) > 0 else None
            xs, _, new_kv, new_cnn = layer(xs, att_mask, pos_emb, mask_pad, kv, cc)
            if i in self.stride_layer_idx:
                s = self.stride[self.stride_layer_idx.index(i)]
                att_mask = att_mask[:, ::s, ::s]
                mask_pad = mask_pad[:, ::s, ::s]
                pos_emb = pos_emb[:, ::s, :]
            new_att = torch.cat(new_kv, dim=-1)[:, :, next_cache_start // f:, :]
            new_att = new_att.repeat_interleave(repeats=f, dim=2)
            new_cnn = new_cnn.unsqueeze(0)
            new_cnn = F.pad(new_cnn, (self.cnn_module_kernel - 1 - new_cnn.size(3), 0))
            if i == 0:
                max_att_len = new_att.size(2)
                max_cnn_len = new_cnn.size(3)
            # (As WeNet: a zero length keeps everything, Python's [-0:].)
            r_att.append(new_att[:, :, -max_att_len:, :])
            r_cnn.append(new_cnn[:, :, :, -max_cnn_len:])
        if self.normalize_before:
            xs = self.after_norm(xs)
        return xs, torch.cat(r_att, dim=0), torch.cat(r_cnn, dim=0)
