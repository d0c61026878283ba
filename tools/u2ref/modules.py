"""WeNet U2/U2++ building blocks, reimplemented in PyTorch with WeNet's exact state-dict names.

Numerics follow WeNet HEAD (`wenet/models/transformer/*`): see docs/wenet-crosscheck.md for the
measured agreement. Notable points kept on purpose:
  * rel-pos attention adds pos_bias_u/v and has NO rel_shift (matrix_bd uses absolute positions);
  * softmax is computed in float32, masked probabilities are set to 0 (all-masked rows -> 0);
  * causal conv pads/caches *before* pointwise_conv1 (the LN'd conv input), non-causal conv pads
    the depthwise input with zeros; padded frames are zeroed before pointwise_conv1 and after
    pointwise_conv2;
  * the sinusoid table is built with torch float32 ops exactly as WeNet does;
  * no_pos returns x unscaled and a zero pos_emb.
"""

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .mask import add_optional_chunk_mask, make_pad_mask, subsequent_mask

PE_MAX_LEN = 5000


def make_pe_table(d_model: int, max_len: int = PE_MAX_LEN) -> torch.Tensor:
    """(1, max_len, d_model) float32 sinusoid table, bit-identical to WeNet's buffer."""
    pe = torch.zeros(max_len, d_model)
    position = torch.arange(0, max_len, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float32) * -(math.log(10000.0) / d_model))
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    return pe.unsqueeze(0)


def make_activation(name: str) -> nn.Module:
    if name == "swish":
        return nn.SiLU()
    if name == "relu":
        return nn.ReLU()
    raise ValueError("activation_type: %r is not supported (swish, relu)" % (name,))


class GlobalCMVN(nn.Module):
    def __init__(self, mean: torch.Tensor, istd: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean.clone().float())
        self.register_buffer("istd", istd.clone().float())

    def forward(self, x):
        return (x - self.mean) * self.istd


# ----------------------------------------------------------------------------- positional encodings
class PositionalEncoding(nn.Module):
    """abs_pos: x*sqrt(D) + pe[offset:offset+T]."""

    def __init__(self, d_model: int, dropout_rate: float, max_len: int = PE_MAX_LEN):
        super().__init__()
        self.d_model = d_model
        self.xscale = math.sqrt(d_model)
        self.dropout = nn.Dropout(p=dropout_rate)
        self.max_len = max_len
        self.register_buffer("pe", make_pe_table(d_model, max_len))

    def position_encoding(self, offset: int, size: int, apply_dropout: bool = True):
        assert offset >= 0 and offset + size <= self.max_len, "position beyond the PE table"
        pos_emb = self.pe[:, offset:offset + size]
        return self.dropout(pos_emb) if apply_dropout else pos_emb

    def forward(self, x, offset: int = 0):
        pos_emb = self.position_encoding(offset, x.size(1), False)
        x = x * self.xscale + pos_emb
        return self.dropout(x), self.dropout(pos_emb)


class RelPositionalEncoding(PositionalEncoding):
    """rel_pos: x*sqrt(D); pos_emb = pe[offset:offset+T] (used by rel-pos attention)."""

    def forward(self, x, offset: int = 0):
        x = x * self.xscale
        pos_emb = self.position_encoding(offset, x.size(1), False)
        return self.dropout(x), self.dropout(pos_emb)


class NoPositionalEncoding(nn.Module):
    """no_pos: x unscaled, pos_emb zeros."""

    def __init__(self, d_model: int, dropout_rate: float):
        super().__init__()
        self.d_model = d_model
        self.dropout = nn.Dropout(p=dropout_rate)

    def position_encoding(self, offset: int, size: int, apply_dropout: bool = True):
        return torch.zeros(1, size, self.d_model)

    def forward(self, x, offset: int = 0):
        pos_emb = torch.zeros(1, x.size(1), self.d_model, device=x.device, dtype=x.dtype)
        return self.dropout(x), pos_emb


def make_pos_enc(kind: str, d_model: int, dropout_rate: float) -> nn.Module:
    if kind == "rel_pos":
        return RelPositionalEncoding(d_model, dropout_rate)
    if kind == "abs_pos":
        return PositionalEncoding(d_model, dropout_rate)
    if kind == "no_pos":
        return NoPositionalEncoding(d_model, dropout_rate)
    raise ValueError("pos_enc_layer_type: %r is not supported (rel_pos, abs_pos, no_pos)" % (kind,))


# ----------------------------------------------------------------------------- subsampling
class Conv2dSubsampling4(nn.Module):
    subsampling_rate = 4
    right_context = 6

    def __init__(self, idim: int, odim: int, pos_enc: nn.Module):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, odim, 3, 2), nn.ReLU(), nn.Conv2d(odim, odim, 3, 2),
                                  nn.ReLU())
        self.out = nn.Sequential(nn.Linear(odim * (((idim - 1) // 2 - 1) // 2), odim))
        self.pos_enc = pos_enc

    def project(self, x):
        return self.out(x)

    def subsample_mask(self, m):
        return m[:, :, 2::2][:, :, 2::2]

    def forward(self, x, x_mask, offset: int = 0):
        x = self.conv(x.unsqueeze(1))
        b, c, t, f = x.size()
        x = self.project(x.transpose(1, 2).contiguous().view(b, t, c * f))
        x, pos_emb = self.pos_enc(x, offset)
        return x, pos_emb, self.subsample_mask(x_mask)

    def position_encoding(self, offset, size):
        return self.pos_enc.position_encoding(offset, size, False)


class Conv2dSubsampling6(Conv2dSubsampling4):
    subsampling_rate = 6
    right_context = 10

    def __init__(self, idim: int, odim: int, pos_enc: nn.Module):
        nn.Module.__init__(self)
        self.conv = nn.Sequential(nn.Conv2d(1, odim, 3, 2), nn.ReLU(), nn.Conv2d(odim, odim, 5, 3),
                                  nn.ReLU())
        self.linear = nn.Linear(odim * (((idim - 1) // 2 - 2) // 3), odim)
        self.pos_enc = pos_enc

    def project(self, x):
        return self.linear(x)

    def subsample_mask(self, m):
        return m[:, :, 2::2][:, :, 4::3]


class Conv2dSubsampling8(Conv2dSubsampling4):
    subsampling_rate = 8
    right_context = 14

    def __init__(self, idim: int, odim: int, pos_enc: nn.Module):
        nn.Module.__init__(self)
        self.conv = nn.Sequential(nn.Conv2d(1, odim, 3, 2), nn.ReLU(), nn.Conv2d(odim, odim, 3, 2),
                                  nn.ReLU(), nn.Conv2d(odim, odim, 3, 2), nn.ReLU())
        self.linear = nn.Linear(odim * ((((idim - 1) // 2 - 1) // 2 - 1) // 2), odim)
        self.pos_enc = pos_enc

    def project(self, x):
        return self.linear(x)

    def subsample_mask(self, m):
        return m[:, :, 2::2][:, :, 2::2][:, :, 2::2]


class Conv2dSubsampling2(Conv2dSubsampling4):
    """One stride-2 convolution: 20 ms encoder frames, for character units at fast speech rates."""
    subsampling_rate = 2
    right_context = 2

    def __init__(self, idim: int, odim: int, pos_enc: nn.Module):
        nn.Module.__init__(self)
        self.conv = nn.Sequential(nn.Conv2d(1, odim, 3, 2), nn.ReLU())
        self.out = nn.Sequential(nn.Linear(odim * ((idim - 1) // 2), odim))
        self.pos_enc = pos_enc

    def subsample_mask(self, m):
        return m[:, :, 2::2]


SUBSAMPLING = {"conv2d2": Conv2dSubsampling2, "conv2d": Conv2dSubsampling4,
               "conv2d6": Conv2dSubsampling6, "conv2d8": Conv2dSubsampling8}


# ----------------------------------------------------------------------------- attention
class MultiHeadedAttention(nn.Module):
    """Plain MHA (`selfattn`, decoder self/src attention). linear_out.bias follows query_bias."""

    def __init__(self, n_head: int, n_feat: int, dropout_rate: float, query_bias: bool = True,
                 key_bias: bool = True, value_bias: bool = True):
        super().__init__()
        assert n_feat % n_head == 0
        self.d_k = n_feat // n_head
        self.h = n_head
        self.linear_q = nn.Linear(n_feat, n_feat, bias=query_bias)
        self.linear_k = nn.Linear(n_feat, n_feat, bias=key_bias)
        self.linear_v = nn.Linear(n_feat, n_feat, bias=value_bias)
        self.linear_out = nn.Linear(n_feat, n_feat, bias=query_bias)
        self.dropout = nn.Dropout(p=dropout_rate)

    def forward_qkv(self, query, key, value):
        b = query.size(0)
        q = self.linear_q(query).view(b, -1, self.h, self.d_k).transpose(1, 2)
        k = self.linear_k(key).view(key.size(0), -1, self.h, self.d_k).transpose(1, 2)
        v = self.linear_v(value).view(value.size(0), -1, self.h, self.d_k).transpose(1, 2)
        return q, k, v  # (B, H, T, dk)

    def forward_attention(self, value, scores, mask):
        n_batch = value.size(0)
        if mask is not None and mask.size(2) > 0:
            mask = mask.unsqueeze(1).eq(0)  # (B, 1, *, T2), True = masked
            mask = mask[:, :, :, :scores.size(-1)]
            scores = scores.masked_fill(mask, -float("inf"))
            attn = torch.softmax(scores.float(), dim=-1).type_as(value).masked_fill(mask, 0.0)
        else:
            attn = torch.softmax(scores.float(), dim=-1).type_as(value)
        x = torch.matmul(self.dropout(attn), value)
        x = x.transpose(1, 2).contiguous().view(n_batch, -1, self.h * self.d_k)
        return self.linear_out(x)

    @staticmethod
    def update_kv_and_cache(k, v, cache: Optional[Tuple[torch.Tensor, torch.Tensor]]):
        if cache is not None and cache[0].size(0) > 0 and cache[0].size(2) > 0:
            k = torch.cat([cache[0], k], dim=2)
            v = torch.cat([cache[1], v], dim=2)
        return k, v, (k, v)

    def forward(self, query, key, value, mask=None, pos_emb=None, cache=None):
        q, k, v = self.forward_qkv(query, key, value)
        k, v, new_cache = self.update_kv_and_cache(k, v, cache)
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.d_k)
        return self.forward_attention(v, scores, mask), new_cache


class RelPositionMultiHeadedAttention(MultiHeadedAttention):
    """`rel_selfattn` as WeNet implements it: pos_bias_u/v, linear_pos (no bias), NO rel_shift."""

    def __init__(self, n_head: int, n_feat: int, dropout_rate: float, query_bias: bool = True,
                 key_bias: bool = True, value_bias: bool = True):
        super().__init__(n_head, n_feat, dropout_rate, query_bias, key_bias, value_bias)
        self.linear_pos = nn.Linear(n_feat, n_feat, bias=False)
        self.pos_bias_u = nn.Parameter(torch.Tensor(self.h, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.Tensor(self.h, self.d_k))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)

    def forward(self, query, key, value, mask=None, pos_emb=None, cache=None):
        q, k, v = self.forward_qkv(query, key, value)
        q = q.transpose(1, 2)  # (B, T1, H, dk)
        k, v, new_cache = self.update_kv_and_cache(k, v, cache)
        n_batch_pos = pos_emb.size(0)
        p = self.linear_pos(pos_emb).view(n_batch_pos, -1, self.h, self.d_k).transpose(1, 2)
        q_u = (q + self.pos_bias_u).transpose(1, 2)
        q_v = (q + self.pos_bias_v).transpose(1, 2)
        matrix_bd = torch.matmul(q_v, p.transpose(-2, -1))
        matrix_ac = torch.matmul(q_u, k.transpose(-2, -1))
        scores = (matrix_ac + matrix_bd) / math.sqrt(self.d_k)
        return self.forward_attention(v, scores, mask), new_cache


def make_self_attn(kind: str, h: int, d: int, dropout: float, qb: bool, kb: bool, vb: bool):
    if kind == "rel_selfattn":
        return RelPositionMultiHeadedAttention(h, d, dropout, qb, kb, vb)
    if kind == "selfattn":
        return MultiHeadedAttention(h, d, dropout, qb, kb, vb)
    raise ValueError("selfattention_layer_type: %r is not supported (rel_selfattn, selfattn)" %
                     (kind,))


# ----------------------------------------------------------------------------- FFN / conv module
class PositionwiseFeedForward(nn.Module):
    def __init__(self, idim: int, hidden: int, dropout_rate: float, activation: nn.Module,
                 bias: bool = True):
        super().__init__()
        self.w_1 = nn.Linear(idim, hidden, bias=bias)
        self.activation = activation
        self.dropout = nn.Dropout(dropout_rate)
        self.w_2 = nn.Linear(hidden, idim, bias=bias)

    def forward(self, x):
        return self.w_2(self.dropout(self.activation(self.w_1(x))))


class ConvolutionModule(nn.Module):
    def __init__(self, channels: int, kernel_size: int, activation: nn.Module,
                 norm: str = "batch_norm", causal: bool = False, bias: bool = True,
                 norm_eps: float = 1e-5, inner_factor: int = 2):
        super().__init__()
        self.pointwise_conv1 = nn.Conv1d(channels, inner_factor * channels, 1, 1, 0, bias=bias)
        if causal:
            padding = 0
            self.lorder = kernel_size - 1
        else:
            if (kernel_size - 1) % 2 != 0:
                raise ValueError("cnn_module_kernel: %d must be odd for a non-causal conv" %
                                 kernel_size)
            padding = (kernel_size - 1) // 2
            self.lorder = 0
        inner = inner_factor * channels // 2
        self.depthwise_conv = nn.Conv1d(inner, inner, kernel_size, 1, padding, groups=inner,
                                        bias=bias)
        if norm == "batch_norm":
            self.use_layer_norm = False
            self.norm = nn.BatchNorm1d(inner, eps=norm_eps)
        elif norm == "layer_norm":
            self.use_layer_norm = True
            self.norm = nn.LayerNorm(inner, eps=norm_eps)
        else:
            raise ValueError("cnn_module_norm: %r is not supported" % (norm,))
        self.pointwise_conv2 = nn.Conv1d(inner, channels, 1, 1, 0, bias=bias)
        self.activation = activation

    def forward(self, x, mask_pad=None, cache=None):
        x = x.transpose(1, 2)  # (B, C, T)
        if mask_pad is not None and mask_pad.size(2) > 0:
            x = x.masked_fill(~mask_pad, 0.0)
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
            x = x.transpose(1, 2)
        x = self.activation(self.norm(x))
        if self.use_layer_norm:
            x = x.transpose(1, 2)
        x = self.pointwise_conv2(x)
        if mask_pad is not None and mask_pad.size(2) > 0:
            x = x.masked_fill(~mask_pad, 0.0)
        return x.transpose(1, 2), new_cache


# ----------------------------------------------------------------------------- encoder layers
class ConformerEncoderLayer(nn.Module):
    def __init__(self, size, self_attn, feed_forward, feed_forward_macaron, conv_module,
                 dropout_rate, normalize_before=True, norm_eps=1e-5):
        super().__init__()
        self.self_attn = self_attn
        self.feed_forward = feed_forward
        self.feed_forward_macaron = feed_forward_macaron
        self.conv_module = conv_module
        self.norm_ff = nn.LayerNorm(size, eps=norm_eps)
        self.norm_mha = nn.LayerNorm(size, eps=norm_eps)
        if feed_forward_macaron is not None:
            self.norm_ff_macaron = nn.LayerNorm(size, eps=norm_eps)
            self.ff_scale = 0.5
        else:
            self.ff_scale = 1.0
        if conv_module is not None:
            self.norm_conv = nn.LayerNorm(size, eps=norm_eps)
            self.norm_final = nn.LayerNorm(size, eps=norm_eps)
        self.dropout = nn.Dropout(dropout_rate)
        self.size = size
        self.normalize_before = normalize_before

    def conv_residual(self, residual):
        """What the conv module's output is added to: the block's input to it (a stride block
        pools it, efficient_conformer.StrideConformerEncoderLayer)."""
        return residual

    def forward(self, x, mask, pos_emb, mask_pad=None, att_cache=None, cnn_cache=None):
        nb = self.normalize_before
        if self.feed_forward_macaron is not None:
            residual = x
            if nb:
                x = self.norm_ff_macaron(x)
            x = residual + self.ff_scale * self.dropout(self.feed_forward_macaron(x))
            if not nb:
                x = self.norm_ff_macaron(x)
        residual = x
        if nb:
            x = self.norm_mha(x)
        x_att, new_att_cache = self.self_attn(x, x, x, mask, pos_emb, att_cache)
        x = residual + self.dropout(x_att)
        if not nb:
            x = self.norm_mha(x)
        new_cnn_cache = torch.zeros((0, 0, 0), dtype=x.dtype, device=x.device)
        if self.conv_module is not None:
            residual = x
            if nb:
                x = self.norm_conv(x)
            x, new_cnn_cache = self.conv_module(x, mask_pad, cnn_cache)
            x = self.conv_residual(residual) + self.dropout(x)
            if not nb:
                x = self.norm_conv(x)
        residual = x
        if nb:
            x = self.norm_ff(x)
        x = residual + self.ff_scale * self.dropout(self.feed_forward(x))
        if not nb:
            x = self.norm_ff(x)
        if self.conv_module is not None:
            x = self.norm_final(x)
        return x, mask, new_att_cache, new_cnn_cache


class TransformerEncoderLayer(nn.Module):
    def __init__(self, size, self_attn, feed_forward, dropout_rate, normalize_before=True,
                 norm_eps=1e-5):
        super().__init__()
        self.self_attn = self_attn
        self.feed_forward = feed_forward
        self.norm1 = nn.LayerNorm(size, eps=norm_eps)
        self.norm2 = nn.LayerNorm(size, eps=norm_eps)
        self.dropout = nn.Dropout(dropout_rate)
        self.size = size
        self.normalize_before = normalize_before

    def forward(self, x, mask, pos_emb, mask_pad=None, att_cache=None, cnn_cache=None):
        nb = self.normalize_before
        residual = x
        if nb:
            x = self.norm1(x)
        x_att, new_att_cache = self.self_attn(x, x, x, mask, pos_emb, att_cache)
        x = residual + self.dropout(x_att)
        if not nb:
            x = self.norm1(x)
        residual = x
        if nb:
            x = self.norm2(x)
        x = residual + self.dropout(self.feed_forward(x))
        if not nb:
            x = self.norm2(x)
        return x, mask, new_att_cache, torch.zeros((0, 0, 0), dtype=x.dtype, device=x.device)


# ----------------------------------------------------------------------------- encoders
class BaseEncoder(nn.Module):
    """Shared forward / forward_chunk / forward_chunk_by_chunk (WeNet BaseEncoder semantics)."""

    def _build_front(self, input_size, c):
        self.conf = dict(c)
        D = c["output_size"]
        self._output_size = D
        self.global_cmvn = None
        if c["input_layer"] not in SUBSAMPLING:
            raise ValueError("input_layer: %r is not supported (%s)" %
                             (c["input_layer"], ", ".join(SUBSAMPLING)))
        pos_enc = make_pos_enc(c["pos_enc_layer_type"], D, c["positional_dropout_rate"])
        self.embed = SUBSAMPLING[c["input_layer"]](input_size, D, pos_enc)
        self.normalize_before = c["normalize_before"]
        self.final_norm = c.get("final_norm", True)
        self.after_norm = nn.LayerNorm(D, eps=c["norm_eps"])
        self.static_chunk_size = c["static_chunk_size"]
        self.use_dynamic_chunk = c["use_dynamic_chunk"]
        self.use_dynamic_left_chunk = c["use_dynamic_left_chunk"]

    def set_cmvn(self, mean: torch.Tensor, istd: torch.Tensor):
        self.global_cmvn = GlobalCMVN(mean, istd)

    def output_size(self):
        return self._output_size

    def forward(self, xs, xs_lens, decoding_chunk_size: int = -1,
                num_decoding_left_chunks: int = -1, return_layers: bool = False):
        """xs (B,T,I) raw fbank, xs_lens (B,) -> (encoder_out (B,T',D), mask (B,1,T'))
        [, list of per-layer outputs when return_layers, plus the embed output first]."""
        T = xs.size(1)
        masks = ~make_pad_mask(xs_lens, T).unsqueeze(1)
        if self.global_cmvn is not None:
            xs = self.global_cmvn(xs)
        xs, pos_emb, masks = self.embed(xs, masks)
        mask_pad = masks
        chunk_masks = add_optional_chunk_mask(
            xs, masks, self.use_dynamic_chunk, self.use_dynamic_left_chunk, decoding_chunk_size,
            self.static_chunk_size, num_decoding_left_chunks,
            max_chunk_size=int(100.0 / self.embed.subsampling_rate))
        layers = [xs]
        for layer in self.encoders:
            xs, chunk_masks, _, _ = layer(xs, chunk_masks, pos_emb, mask_pad)
            layers.append(xs)
        if self.normalize_before and self.final_norm:
            xs = self.after_norm(xs)
        if return_layers:
            return xs, masks, layers
        return xs, masks

    def forward_chunk(self, xs, offset: int, required_cache_size: int,
                      att_cache=torch.zeros(0, 0, 0, 0), cnn_cache=torch.zeros(0, 0, 0, 0)):
        """Batch-1 streaming step. att_cache (N,H,t1,2dk) [K|V]; cnn_cache (N,1,D,K-1).
        Returns (chunk_out (1,C',D), new_att_cache, new_cnn_cache)."""
        assert xs.size(0) == 1
        tmp_masks = torch.ones(1, 1, xs.size(1), dtype=torch.bool, device=xs.device)
        if self.global_cmvn is not None:
            xs = self.global_cmvn(xs)
        xs, _, _ = self.embed(xs, tmp_masks, offset)
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
        r_att, r_cnn = [], []
        empty_mask = torch.ones((0, 0, 0), dtype=torch.bool)
        for i, layer in enumerate(self.encoders):
            if elayers == 0:
                kv = None
            else:
                c = att_cache[i:i + 1]
                half = c.size(-1) // 2
                kv = (c[:, :, :, :half], c[:, :, :, half:])
            cc = cnn_cache[i] if cnn_cache.size(0) > 0 else None
            xs, _, new_kv, new_cnn = layer(xs, empty_mask, pos_emb, None, kv, cc)
            new_att = torch.cat(new_kv, dim=-1)
            r_att.append(new_att[:, :, next_cache_start:, :])
            r_cnn.append(new_cnn.unsqueeze(0))
        if self.normalize_before and self.final_norm:
            xs = self.after_norm(xs)
        return xs, torch.cat(r_att, dim=0), torch.cat(r_cnn, dim=0)

    def forward_chunk_by_chunk(self, xs, decoding_chunk_size: int,
                               num_decoding_left_chunks: int = -1):
        """Streaming over a whole (1,T,I) feature sequence, windows as WeNet's Python does."""
        assert decoding_chunk_size > 0
        subsampling = self.embed.subsampling_rate
        context = self.embed.right_context + 1
        stride = subsampling * decoding_chunk_size
        window = (decoding_chunk_size - 1) * subsampling + context
        num_frames = xs.size(1)
        att_cache = torch.zeros((0, 0, 0, 0), device=xs.device)
        cnn_cache = torch.zeros((0, 0, 0, 0), device=xs.device)
        outputs = []
        offset = 0
        required = decoding_chunk_size * num_decoding_left_chunks
        for cur in range(0, num_frames - context + 1, stride):
            end = min(cur + window, num_frames)
            y, att_cache, cnn_cache = self.forward_chunk(xs[:, cur:end, :], offset, required,
                                                         att_cache, cnn_cache)
            outputs.append(y)
            offset += y.size(1)
        ys = torch.cat(outputs, 1)
        return ys, torch.ones((1, 1, ys.size(1)), dtype=torch.bool, device=xs.device)


class ConformerEncoder(BaseEncoder):
    def __init__(self, input_size: int, conf: dict):
        super().__init__()
        c = conf
        self._build_front(input_size, c)
        D = c["output_size"]
        act = make_activation(c["activation_type"])
        layers = []
        for _ in range(c["num_blocks"]):
            attn = make_self_attn(c["selfattention_layer_type"], c["attention_heads"], D,
                                  c["attention_dropout_rate"], c["query_bias"], c["key_bias"],
                                  c["value_bias"])
            ff = PositionwiseFeedForward(D, c["linear_units"], c["dropout_rate"], act,
                                         c["mlp_bias"])
            ffm = (PositionwiseFeedForward(D, c["linear_units"], c["dropout_rate"], act,
                                           c["mlp_bias"]) if c["macaron_style"] else None)
            conv = (ConvolutionModule(D, c["cnn_module_kernel"], act, c["cnn_module_norm"],
                                      c["causal"], c["conv_bias"], c["conv_norm_eps"],
                                      c.get("conv_inner_factor", 2))
                    if c["use_cnn_module"] else None)
            layers.append(ConformerEncoderLayer(D, attn, ff, ffm, conv, c["dropout_rate"],
                                                c["normalize_before"], c["norm_eps"]))
        self.encoders = nn.ModuleList(layers)


class TransformerEncoder(BaseEncoder):
    def __init__(self, input_size: int, conf: dict):
        super().__init__()
        c = conf
        self._build_front(input_size, c)
        D = c["output_size"]
        act = make_activation(c["activation_type"])
        self.encoders = nn.ModuleList([
            TransformerEncoderLayer(
                D,
                make_self_attn(c["selfattention_layer_type"], c["attention_heads"], D,
                               c["attention_dropout_rate"], c["query_bias"], c["key_bias"],
                               c["value_bias"]),
                PositionwiseFeedForward(D, c["linear_units"], c["dropout_rate"], act,
                                        c["mlp_bias"]), c["dropout_rate"], c["normalize_before"],
                c["norm_eps"]) for _ in range(c["num_blocks"])
        ])


# ----------------------------------------------------------------------------- decoders
class DecoderLayer(nn.Module):
    def __init__(self, size, self_attn, src_attn, feed_forward, dropout_rate,
                 normalize_before=True, norm_eps=1e-5):
        super().__init__()
        self.size = size
        self.self_attn = self_attn
        self.src_attn = src_attn
        self.feed_forward = feed_forward
        self.norm1 = nn.LayerNorm(size, eps=norm_eps)
        self.norm2 = nn.LayerNorm(size, eps=norm_eps)
        self.norm3 = nn.LayerNorm(size, eps=norm_eps)
        self.dropout = nn.Dropout(dropout_rate)
        self.normalize_before = normalize_before

    def forward(self, tgt, tgt_mask, memory, memory_mask):
        nb = self.normalize_before
        residual = tgt
        if nb:
            tgt = self.norm1(tgt)
        x = residual + self.dropout(self.self_attn(tgt, tgt, tgt, tgt_mask)[0])
        if not nb:
            x = self.norm1(x)
        if self.src_attn is not None:
            residual = x
            if nb:
                x = self.norm2(x)
            x = residual + self.dropout(self.src_attn(x, memory, memory, memory_mask)[0])
            if not nb:
                x = self.norm2(x)
        residual = x
        if nb:
            x = self.norm3(x)
        x = residual + self.dropout(self.feed_forward(x))
        if not nb:
            x = self.norm3(x)
        return x, tgt_mask, memory, memory_mask


class TransformerDecoder(nn.Module):
    def __init__(self, vocab_size: int, encoder_output_size: int, conf: dict,
                 num_blocks: Optional[int] = None):
        super().__init__()
        c = conf
        D = encoder_output_size
        n = c["num_blocks"] if num_blocks is None else num_blocks
        if c.get("input_layer", "embed") != "embed":
            raise ValueError("decoder input_layer: %r is not supported" % (c["input_layer"],))
        self.embed = nn.Sequential(nn.Embedding(vocab_size, D),
                                   PositionalEncoding(D, c["positional_dropout_rate"]))
        self.normalize_before = c["normalize_before"]
        self.after_norm = nn.LayerNorm(D, eps=c["norm_eps"])
        self.use_output_layer = c["use_output_layer"]
        self.output_layer = nn.Linear(D, vocab_size) if self.use_output_layer else nn.Identity()
        act = make_activation(c["activation_type"])
        H = c["attention_heads"]
        self.decoders = nn.ModuleList([
            DecoderLayer(
                D,
                MultiHeadedAttention(H, D, c["self_attention_dropout_rate"], c["query_bias"],
                                     c["key_bias"], c["value_bias"]),
                MultiHeadedAttention(H, D, c["src_attention_dropout_rate"], c["query_bias"],
                                     c["key_bias"], c["value_bias"])
                if c["src_attention"] else None,
                PositionwiseFeedForward(D, c["linear_units"], c["dropout_rate"], act,
                                        c["mlp_bias"]), c["dropout_rate"], c["normalize_before"],
                c["norm_eps"]) for _ in range(n)
        ])

    def forward(self, memory, memory_mask, ys_in_pad, ys_in_lens, r_ys_in_pad=None,
                reverse_weight: float = 0.0):
        """-> (logits (B,L,V), 0.0, olens). Logits, not log-probs (as WeNet)."""
        maxlen = ys_in_pad.size(1)
        tgt_mask = ~make_pad_mask(ys_in_lens, maxlen).unsqueeze(1)
        m = subsequent_mask(maxlen, tgt_mask.device).unsqueeze(0)
        tgt_mask = tgt_mask & m
        x, _ = self.embed(ys_in_pad)
        for layer in self.decoders:
            x, tgt_mask, memory, memory_mask = layer(x, tgt_mask, memory, memory_mask)
        if self.normalize_before:
            x = self.after_norm(x)
        if self.use_output_layer:
            x = self.output_layer(x)
        return x, torch.tensor(0.0), tgt_mask.sum(1)


class BiTransformerDecoder(nn.Module):
    def __init__(self, vocab_size: int, encoder_output_size: int, conf: dict):
        super().__init__()
        self.left_decoder = TransformerDecoder(vocab_size, encoder_output_size, conf,
                                               conf["num_blocks"])
        self.right_decoder = TransformerDecoder(vocab_size, encoder_output_size, conf,
                                                conf["r_num_blocks"])

    def forward(self, memory, memory_mask, ys_in_pad, ys_in_lens, r_ys_in_pad=None,
                reverse_weight: float = 0.0):
        l_x, _, olens = self.left_decoder(memory, memory_mask, ys_in_pad, ys_in_lens)
        r_x = torch.tensor(0.0)
        if reverse_weight > 0.0:
            r_x, _, olens = self.right_decoder(memory, memory_mask, r_ys_in_pad, ys_in_lens)
        return l_x, r_x, olens


class CTC(nn.Module):
    def __init__(self, odim: int, encoder_output_size: int, blank_id: int = 0):
        super().__init__()
        self.ctc_lo = nn.Linear(encoder_output_size, odim)
        self.ctc_loss = nn.CTCLoss(blank=blank_id, reduction="sum", zero_infinity=True)

    def forward(self, hs_pad, hlens, ys_pad, ys_lens):
        """Summed CTC loss / batch size (WeNet)."""
        ys_hat = self.ctc_lo(hs_pad).transpose(0, 1).log_softmax(2)
        loss = self.ctc_loss(ys_hat, ys_pad, hlens, ys_lens) / ys_hat.size(1)
        return loss, ys_hat.transpose(0, 1)

    def log_softmax(self, hs_pad):
        return F.log_softmax(self.ctc_lo(hs_pad), dim=2)
