#!/usr/bin/env python3
"""Convert a WeNet checkpoint into a u2serve model directory (docs/model-format.md).

    convert.py --config train.yaml --checkpoint final.pt [--cmvn global_cmvn] --units units.txt \
               --out DIR [--dtype float32|float16] [--quantize none|int8] [--bpe-model bpe.model]
               [--non-lang-syms FILE]

Handles old (2021-2023: top-level cmvn_file/is_json_cmvn, collate_conf, concat_linear tensors,
no pe buffers) and new (cmvn/cmvn_conf, dataset_conf.fbank_conf, pe buffers) layouts.
What the engine does not implement is refused with one line naming the key and value, exit 2.
"""

import argparse
import json
import math
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from u2ref.cmvn import CmvnError, load_cmvn  # noqa: E402
from u2ref.config import ConfigError, normalize_config, sos_eos_ids  # noqa: E402
from u2ref.branchformer import per_block  # noqa: E402
from u2ref.efficient_conformer import block_kernels, streaming_chunk_multiple  # noqa: E402
from u2ref.modules import make_pe_table  # noqa: E402
from u2ref.squeezeformer import index_list  # noqa: E402

PE_DEFAULT_ROWS = 5000
from u2ref.model import U2Model  # noqa: E402

FORMAT_VERSION = 1


class ConvertError(Exception):
    pass


def _refuse(key, value, why="is not supported by u2serve"):
    raise ConvertError("%s: %r %s" % (key, value, why))


ENCODERS = ("conformer", "transformer", "branchformer", "e_branchformer", "squeezeformer")
BRANCHFORMER_FAMILY = ("branchformer", "e_branchformer")
# WeNet's registry name of the Efficient Conformer (wenet/utils/init_model.py).
EFFICIENT_CONFORMER = "efficientConformer"
ENCODERS = ENCODERS + (EFFICIENT_CONFORMER,)


def _check_kernel(ec, key):
    k = ec[key]
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        _refuse("encoder_conf." + key, k, "must be a positive integer")
    if not ec["causal"] and k % 2 == 0:
        _refuse("encoder_conf." + key, k, "must be odd for a non-causal convolution")


def check_branchformer(kind: str, ec: dict):
    """The Branchformer / E-Branchformer options the engine implements (WeNet's wenet/models/
    branchformer and e_branchformer). learned_ave is refused: its merge weights come from attention
    pooling over the whole utterance, which a streaming engine cannot compute chunk by chunk."""
    bf = kind == "branchformer"
    allowed = {
        "gate_activation": ("identity", "gelu", "swish", "relu"),
        "merge_method": ("concat", "fixed_ave") if bf else ("concat",),
        "use_attn": (True, False) if bf else (True,),
        "use_cgmlp": (True, False) if bf else (True,),
        "use_linear_after_conv": (True, False),
        "final_norm": (True,),
    }
    if not bf:
        allowed.update({"use_ffn": (True, False), "macaron_style": (True, False)})
    for k, ok in allowed.items():
        if k in ec and (ec[k] not in ok or (isinstance(ec[k], bool) != isinstance(ok[0], bool))):
            if k == "merge_method" and ec[k] == "learned_ave":
                _refuse("encoder_conf.merge_method", ec[k],
                        "is not supported by u2serve (its merge weights pool over the whole "
                        "utterance: use concat or fixed_ave)")
            _refuse("encoder_conf." + k, ec[k])
    if not ec["use_attn"] and not ec["use_cgmlp"]:
        _refuse("encoder_conf.use_cgmlp", ec["use_cgmlp"],
                "leaves no branch (use_attn is false too)")
    units = ec["cgmlp_linear_units"]
    if isinstance(units, bool) or not isinstance(units, int) or units < 2 or units % 2 != 0:
        _refuse("encoder_conf.cgmlp_linear_units", units,
                "must be an even integer >= 2 (the cgMLP splits it in halves)")
    if not bf or ec["use_cgmlp"]:
        _check_kernel(ec, "cgmlp_conv_kernel")
    if not bf:
        _check_kernel(ec, "merge_conv_kernel")
    if bf and ec["merge_method"] == "fixed_ave":
        w = ec["cgmlp_weight"]
        values = w if isinstance(w, list) else [w]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) or \
                (isinstance(w, list) and len(w) != ec["num_blocks"]):
            _refuse("encoder_conf.cgmlp_weight", w,
                    "must be a number or a list of num_blocks (%d) numbers" % ec["num_blocks"])
        if not all(0.0 <= v <= 1.0 for v in values):
            _refuse("encoder_conf.cgmlp_weight", w, "must lie within [0, 1]")


def _int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def check_efficient_conformer(ec: dict):
    """The Efficient Conformer options the engine implements (WeNet's wenet/models/
    efficient_conformer; u2ref.config has already merged efficient_conf and made the three index
    keys lists)."""
    n = ec["num_blocks"]

    def blocks(key, increasing):
        v = ec[key]
        if not isinstance(v, list) or not all(_int(i) and 0 <= i < n for i in v) or \
                len(set(v)) != len(v) or \
                (increasing and v != sorted(v)):
            _refuse("encoder_conf." + key, v, "must be distinct%s block indices in 0..%d" %
                    (" increasing" if increasing else "", n - 1))
    blocks("stride_layer_idx", True)
    blocks("group_layer_idx", False)
    idx, stride = ec["stride_layer_idx"], ec["stride"]
    if not isinstance(stride, list) or len(stride) != len(idx) or \
            not all(_int(s) and s >= 1 for s in stride):
        _refuse("encoder_conf.stride", stride, "must be one integer >= 1 per stride layer (%d)" %
                len(idx))
    if not _int(ec["group_size"]) or ec["group_size"] < 1:
        _refuse("encoder_conf.group_size", ec["group_size"], "must be an integer >= 1")
    if not isinstance(ec["stride_kernel"], bool):
        _refuse("encoder_conf.stride_kernel", ec["stride_kernel"], "must be true or false")
    if idx and not ec["use_cnn_module"]:
        _refuse("encoder_conf.use_cnn_module", ec["use_cnn_module"],
                "leaves the stride layers %s without their strided conv module" % (idx,))
    if not ec["use_cnn_module"]:
        return
    k0 = ec["cnn_module_kernel"]
    if not _int(k0) or k0 < 1:
        _refuse("encoder_conf.cnn_module_kernel", k0, "must be a positive integer")
    for i, k in enumerate(block_kernels(ec)):
        if k < 1:
            _refuse("encoder_conf.cnn_module_kernel", k0, "leaves block %d a kernel of %d "
                    "(stride_kernel divides it by the strides)" % (i, k))
        if not ec["causal"] and k % 2 == 0:
            _refuse("encoder_conf.cnn_module_kernel", k0, "gives block %d the even kernel %d "
                    "(stride_kernel): must be odd for a non-causal conv module" % (i, k))


def efficient_conformer_keys(ec: dict) -> dict:
    """model.json encoder keys of an efficientConformer beyond the conformer's."""
    return {
        "macaron_style": bool(ec["macaron_style"]),
        "use_cnn_module": bool(ec["use_cnn_module"]),
        "stride_layer_idx": [int(i) for i in ec["stride_layer_idx"]],
        "stride": [int(s) for s in ec["stride"]],
        "group_layer_idx": sorted(int(i) for i in ec["group_layer_idx"]),
        "group_size": int(ec["group_size"]),
        "stride_kernel": bool(ec["stride_kernel"]),
        "cnn_module_kernels": block_kernels(ec),
    }


def squeezeformer_indices(ec):
    """WeNet's reduce_idx / recover_idx as the engine runs them: ([reduce layers], [recover
    layers]). Refuses what WeNet cannot run and patterns where WeNet's pairing (the recovery takes
    the activation saved at the reduction numbered by the count of open reductions) differs from
    closing the latest open reduction."""
    n = ec["num_blocks"]
    lists = {}
    for key in ("reduce_idx", "recover_idx"):
        try:
            lists[key] = index_list(ec[key], key)
        except ValueError:
            _refuse("encoder_conf." + key, ec[key], "must be an integer, a list of integers or null")
        v = lists[key] or []
        if any(not 0 <= i < n for i in v):
            _refuse("encoder_conf." + key, ec[key], "must lie within 0..num_blocks-1 (%d)" % (n - 1))
        if any(a >= b for a, b in zip(v, v[1:])):
            _refuse("encoder_conf." + key, ec[key], "must be strictly ascending")
    reduce, recover = lists["reduce_idx"], lists["recover_idx"]
    if reduce is None:
        return [], []  # WeNet then never reduces and ignores recover_idx
    if recover is None:
        if reduce:
            _refuse("encoder_conf.recover_idx", None, "must recover every reduce_idx %s (WeNet "
                    "would output the reduced frames with the unreduced mask)" % reduce)
        recover = []
    if len(reduce) != len(recover):
        _refuse("encoder_conf.recover_idx", ec["recover_idx"],
                "must have as many entries as reduce_idx %s" % reduce)
    saved, open_, index = [], [], 0
    for i in range(n):
        if i in reduce:
            saved.append(i)
            open_.append(i)
            index += 1
        if i in recover:
            if index == 0:
                _refuse("encoder_conf.recover_idx", ec["recover_idx"],
                        "recovers layer %d before any reduction" % i)
            index -= 1
            if saved[index] != open_.pop():
                _refuse("encoder_conf.recover_idx", ec["recover_idx"],
                        "interleaves with reduce_idx %s: WeNet would add the activation saved at "
                        "another reduction" % reduce)
    return reduce, recover


def squeezeformer_chunk_multiple(ec: dict) -> int:
    """2^(the most reductions open at once): the decoding chunks that stream exactly."""
    reduce, recover = squeezeformer_indices(ec)
    depth = deepest = 0
    for i in range(ec["num_blocks"]):
        depth += i in reduce
        deepest = max(deepest, depth)
        depth -= i in recover
    return 2 ** deepest


def check_squeezeformer(ec: dict):
    """The Squeezeformer options the engine implements (WeNet's wenet/models/squeezeformer).
    Refused: pos_enc_layer_type other than rel_pos (WeNet then builds a plain attention for
    output_size whose tuple cache cannot take the layer's tensor default: it does not run), the
    `conv2d` time reduction (any type other than conv1d/stream in WeNet: a dense (5, 1) conv
    whose last row is a zero row for odd lengths), normalize_before and concat_after true (no
    WeNet recipe uses them; u2ref implements them)."""
    allowed = {
        "pos_enc_layer_type": ("rel_pos",),
        "time_reduction_layer_type": ("conv1d", "stream"),
        "cnn_norm_type": ("batch_norm", "layer_norm"),
        "activation_type": ("swish", "relu"),
        "normalize_before": (False,),
        "concat_after": (False,),
        "dw_stride": (False, True),
        "do_rel_shift": (False, True),
        "causal": (False, True),
        "adaptive_scale": (False, True),
        "use_dynamic_chunk": (False, True),
    }
    for k, ok in allowed.items():
        if ec[k] not in ok or isinstance(ec[k], bool) != isinstance(ok[0], bool):
            _refuse("encoder_conf." + k, ec[k])
    for k in ("encoder_dim", "output_size", "attention_heads", "num_blocks",
              "feed_forward_expansion_factor"):
        if isinstance(ec[k], bool) or not isinstance(ec[k], int) or ec[k] < 1:
            _refuse("encoder_conf." + k, ec[k], "must be a positive integer")
    s = ec["static_chunk_size"]
    if isinstance(s, bool) or not isinstance(s, int) or s < 0:
        _refuse("encoder_conf.static_chunk_size", s, "must be an integer >= 0")
    if ec["encoder_dim"] % ec["attention_heads"] != 0:
        _refuse("encoder_conf.attention_heads", ec["attention_heads"],
                "does not divide encoder_dim %d" % ec["encoder_dim"])
    _check_kernel(ec, "cnn_module_kernel")
    squeezeformer_indices(ec)


def squeezeformer_encoder_json(ec: dict) -> dict:
    """model.json's encoder object of a squeezeformer (docs/model-format.md): WeNet's own keys,
    then the keys every encoder has, with the values a Squeezeformer implies."""
    reduce, recover = squeezeformer_indices(ec)
    E, F = int(ec["encoder_dim"]), int(ec["feed_forward_expansion_factor"])
    return {
        "type": "squeezeformer",
        "encoder_dim": E,
        "output_size": int(ec["output_size"]),
        "attention_heads": int(ec["attention_heads"]),
        "num_blocks": int(ec["num_blocks"]),
        "reduce_idx": reduce,
        "recover_idx": recover,
        "feed_forward_expansion_factor": F,
        "dw_stride": bool(ec["dw_stride"]),
        "pos_enc_layer_type": ec["pos_enc_layer_type"],
        "time_reduction_layer_type": ec["time_reduction_layer_type"],
        "do_rel_shift": bool(ec["do_rel_shift"]),
        "cnn_module_kernel": int(ec["cnn_module_kernel"]),
        "cnn_norm_type": ec["cnn_norm_type"],
        "causal": bool(ec["causal"]),
        "adaptive_scale": bool(ec["adaptive_scale"]),
        "activation_type": ec["activation_type"],
        "normalize_before": bool(ec["normalize_before"]),
        "use_dynamic_chunk": bool(ec["use_dynamic_chunk"]),
        "static_chunk_size": int(ec["static_chunk_size"]),
        "concat_after": bool(ec["concat_after"]),
        "linear_units": E * F,
        "input_layer": "dw_conv2d4",
        "selfattention_layer_type": ec["selfattention_layer_type"],
        "norm_eps": 1e-5,
        "conv_norm_eps": 1e-5,
        "final_norm": False,
        "macaron_style": False,
        "use_cnn_module": True,
        "cnn_module_norm": ec["cnn_norm_type"],
    }


def check_supported(raw: dict, cfg: dict):
    """Refuses configurations the engine does not implement (raw = the yaml dict)."""
    if cfg["encoder"] not in ENCODERS:
        _refuse("encoder", cfg["encoder"])
    if cfg["decoder"] not in ("transformer", "bitransformer"):
        _refuse("decoder", cfg["decoder"])
    for k in ("model", "ctc"):
        if k in raw and raw[k] not in ({"model": "asr_model", "ctc": "ctc"}[k], None):
            _refuse(k, raw[k])
    ec, dc = cfg["encoder_conf"], cfg["decoder_conf"]
    allowed = {
        "input_layer": ("conv2d2", "conv2d", "conv2d6", "conv2d8"),
        "pos_enc_layer_type": ("rel_pos", "abs_pos", "no_pos"),
        "selfattention_layer_type": ("rel_selfattn", "selfattn"),
        "activation_type": ("swish", "relu"),
        "cnn_module_norm": ("batch_norm", "layer_norm"),
        "layer_norm_type": ("layer_norm",),
        "normalize_before": (True,),
        "concat_after": (False,),
        "conv_inner_factor": (2,),
        "mlp_type": ("position_wise_feed_forward",),
        "n_kv_head": (None,),
        "head_dim": (None,),
        "use_sdpa": (False, True),
    }
    if cfg["encoder"] == "squeezeformer":
        check_squeezeformer(ec)  # its own keys and rules (post-LN blocks, attention on encoder_dim)
        allowed = {}
    for k, ok in allowed.items():
        if k in ec and ec[k] not in ok:
            _refuse("encoder_conf." + k, ec[k])
    if cfg["encoder"] != "squeezeformer" and ec["output_size"] % ec["attention_heads"] != 0:
        _refuse("encoder_conf.attention_heads", ec["attention_heads"],
                "does not divide output_size %d" % ec["output_size"])
    if cfg["encoder"] == "conformer" and ec["use_cnn_module"] and not ec["causal"] and \
            ec["cnn_module_kernel"] % 2 == 0:
        _refuse("encoder_conf.cnn_module_kernel", ec["cnn_module_kernel"],
                "must be odd for a non-causal conv module")
    if cfg["encoder"] in BRANCHFORMER_FAMILY:
        check_branchformer(cfg["encoder"], ec)
    if cfg["encoder"] == EFFICIENT_CONFORMER:
        check_efficient_conformer(ec)
    dallowed = {
        "input_layer": ("embed",),
        "activation_type": ("swish", "relu"),
        "layer_norm_type": ("layer_norm",),
        "normalize_before": (True,),
        "concat_after": (False,),
        "use_output_layer": (True,),
        "src_attention": (True,),
        "tie_word_embedding": (False, True),
        "mlp_type": ("position_wise_feed_forward",),
        "n_kv_head": (None,),
        "head_dim": (None,),
        "use_sdpa": (False, True),
    }
    for k, ok in dallowed.items():
        if k in dc and dc[k] not in ok:
            _refuse("decoder_conf." + k, dc[k])
    if ec["output_size"] % dc["attention_heads"] != 0:
        _refuse("decoder_conf.attention_heads", dc["attention_heads"],
                "does not divide output_size %d" % ec["output_size"])
    if cfg["decoder"] == "bitransformer" and int(dc["r_num_blocks"]) <= 0:
        _refuse("decoder_conf.r_num_blocks", dc["r_num_blocks"],
                "must be > 0 for a bitransformer decoder")
    if cfg["frontend"]["num_mel_bins"] != cfg["input_dim"]:
        _refuse("fbank num_mel_bins", cfg["frontend"]["num_mel_bins"],
                "differs from input_dim %d" % cfg["input_dim"])


def read_units(path):
    units = []
    with open(path, "r", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                raise ConvertError("units %s line %d: expected 'token id', got %r" %
                                   (path, n, line.rstrip("\n")))
            try:
                idx = int(parts[1])
            except ValueError:
                raise ConvertError("units %s line %d: id %r is not an integer" % (path, n, parts[1]))
            if idx != len(units):
                raise ConvertError("units %s line %d: id %d, expected %d (ids must be 0..V-1)" %
                                   (path, n, idx, len(units)))
            units.append(parts[0])
    return units


# WeNet's pattern for non-language symbols ("[noise]", "<noise>", "{NOISE}"): file_utils.py
# read_non_lang_symbols refuses a line that does not match it.
NON_LANG_SYM = re.compile(r"^(\[[^\[\]]+\]|<[^<>]+>|{[^{}]+})$")
CJK_CHAR = re.compile("^[\u4e00-\u9fff]$")  # the range WeNet's tokenize_utils.py splits off


def _yaml_path(raw, config_path, keys):
    """The first of `keys` (("tokenizer_conf", "bpe_path"), ("bpe_model",), ...) the yaml sets,
    resolved against the yaml's folder, then the working directory (WeNet's recipes write paths
    relative to the recipe folder). None when unset or when no such file exists."""
    for key in keys:
        v = raw
        for k in key:
            v = v.get(k) if isinstance(v, dict) else None
        if not isinstance(v, str) or not v:
            continue
        for cand in ([v] if os.path.isabs(v) else
                     [os.path.join(os.path.dirname(os.path.abspath(config_path)), v), v]):
            if os.path.isfile(cand):
                return cand
        print("convert.py: warning: %s %r (train.yaml) not found; pass it explicitly" %
              (".".join(key), v), file=sys.stderr)
    return None


def check_bpe_model(path, units):
    """Refuses a missing, unreadable or (when the sentencepiece module is installed) invalid model,
    and one whose pieces do not cover the units (a units file from another model)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConvertError("bpe model %s: cannot be read (%s)" % (path, e.strerror or e))
    if not data:
        raise ConvertError("bpe model %s: empty file" % path)
    try:
        import sentencepiece as spm
    except ImportError:
        return
    sp = spm.SentencePieceProcessor()
    try:
        sp.LoadFromSerializedProto(data)
    except Exception as e:  # noqa: BLE001 - any parse failure is one line
        raise ConvertError("bpe model %s: not a sentencepiece model (%s)" %
                           (path, str(e).splitlines()[0] if str(e) else type(e).__name__))
    pieces = {sp.IdToPiece(i) for i in range(sp.GetPieceSize())}
    # WeNet's units hold the pieces the training text used (so some pieces may have no unit),
    # special and non-language symbols, and in mixed models single CJK characters; any other
    # unit that is no piece means the units of another model.
    missing = [u for u in units if u not in pieces and not NON_LANG_SYM.match(u)
               and not CJK_CHAR.match(u)]
    if missing:
        raise ConvertError("bpe model %s: %d unit(s) are not pieces of this model, e.g. %r: "
                           "units and bpe model do not belong together" %
                           (path, len(missing), missing[0]))


def read_non_lang_syms(path):
    try:
        with open(path, "r", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConvertError("non-lang syms %s: cannot be read (%s)" % (path, e))
    syms = []
    for n, line in enumerate(lines, 1):
        s = line.strip()
        if not s:
            continue
        if not NON_LANG_SYM.match(s):
            raise ConvertError("non-lang syms %s line %d: %r is not a [..], <..> or {..} symbol" %
                               (path, n, s))
        syms.append(s)
    return syms


def load_state_dict(path):
    try:
        sd = torch.load(path, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - report any unreadable checkpoint in one line
        raise ConvertError("checkpoint %s: cannot be loaded (%s)" % (path, str(e).splitlines()[0]))
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ConvertError("checkpoint %s: not a flat state_dict of tensors" % path)
    return sd


# The weights `--quantize int8` stores as int8 (docs/model-format.md, "int8 weights"): those of
# the linear layers (and the conv module's pointwise convolutions, linear layers over channels;
# Branchformer blocks: attn, cgMLP projections and linear, merge_proj). Subsampling, embeddings,
# norms, depthwise convolutions (conv module, cgMLP, E-Branchformer fusion), the Branchformer's
# learned_ave-only pooling_proj*/weight_proj* and all biases stay float.
INT8_WEIGHTS = re.compile(
    r"^(encoder\.encoders\.\d+\.((self_)?attn\.linear_(q|k|v|out|pos)|feed_forward(_macaron)?\.w_[12]"
    r"|conv_module\.pointwise_conv[12]|cgmlp\.(channel_proj1\.0|csgu\.linear|channel_proj2)"
    r"|merge_proj|ffn[12]\.w_[12])"
    r"|encoder\.(time_reduction_layer\.pw_conv|time_recover_layer|final_proj)"
    r"|ctc\.ctc_lo"
    r"|decoder\.((left|right)_decoder\.)?(decoders\.\d+\.((self|src)_attn\.linear_(q|k|v|out)"
    r"|feed_forward\.w_[12])|output_layer))\.weight$")
QUANTIZE_CHOICES = ("none", "int8")


def quantize_int8(w):
    """Symmetric per-output-row int8 of a float weight of shape (n, k) or (n, k, 1). Row r, all
    in float32: s = max(abs(w[r])) / 127, s = 1 when that is 0, q = clip(rint(w[r] / s), -127, 127)
    (rint rounds half to even; -128 is never used); w[r] ~ q * s. The C++ loader's
    `--precision int8` computes exactly this from float weights: change both or neither.
    Returns (q: int8 numpy of w's shape, s: float32 numpy (n,))."""
    a = np.ascontiguousarray(w, dtype=np.float32)
    rows = a.reshape(a.shape[0], -1)
    s = np.abs(rows).max(axis=1) / np.float32(127)
    s[s == 0] = np.float32(1)
    q = np.clip(np.rint(rows / s[:, None]), -127, 127).astype(np.int8)
    return q.reshape(a.shape), s


def povey_window(frontend):
    """(frame_length_samples,) float32: torchaudio.compliance.kaldi's povey window, bit for bit."""
    n = int(frontend["sample_rate"] * frontend["frame_length_ms"] * 0.001)
    return torch.hann_window(n, periodic=False, dtype=torch.float32).pow(0.85).contiguous()


def convert(config_path, checkpoint_path, units_path, out_dir, cmvn_path=None, dtype="float32",
            max_positions=PE_DEFAULT_ROWS, ctc_weight=None, reverse_weight=None, beam_size=10,
            bpe_model=None, non_lang_syms=None, quantize="none"):
    """ctc_weight / reverse_weight: attention rescoring's default weights in model.json; None takes
    train.yaml's model_conf (the training loss weights, WeNet's usual starting point). beam_size:
    the default CTC prefix beam width (WeNet's recipes decode with 10). bpe_model /
    non_lang_syms: WeNet's sentencepiece model and non-language symbols file, copied into the
    model directory; None takes train.yaml's tokenizer_conf.bpe_path / non_lang_syms_path (or
    the old top-level bpe_model / non_lang_syms) when that file exists. quantize: "int8" stores
    the linear layers' weights as int8 with per-row scales (INT8_WEIGHTS, quantize_int8)."""
    quantize = "none" if quantize is None else quantize
    if quantize not in QUANTIZE_CHOICES:
        raise ConvertError("--quantize: %r is not one of %s" % (quantize, ", ".join(QUANTIZE_CHOICES)))
    with open(config_path, "r", encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    if not isinstance(raw, dict):
        raise ConvertError("config %s: not a YAML mapping" % config_path)
    try:
        cfg = normalize_config(raw)
    except ConfigError as e:
        raise ConvertError(str(e))
    check_supported(raw, cfg)
    sd = load_state_dict(checkpoint_path)

    # Attention class from the checkpoint (spec: rel iff linear_pos exists).
    ec = cfg["encoder_conf"]
    # (Branchformer blocks name their attention `attn`; with use_attn false there is none and the
    # yaml's value stays.)
    attn_keys = [k for k in sd if re.match(r"encoder\.encoders\.\d+\.(self_)?attn\.", k)]
    if attn_keys or cfg["encoder"] not in BRANCHFORMER_FAMILY:
        rel = any(re.search(r"\.(self_)?attn\.linear_pos\.", k) for k in attn_keys)
        ec["selfattention_layer_type"] = "rel_selfattn" if rel else "selfattn"
    if cfg["encoder"] == EFFICIENT_CONFORMER:
        # Grouped blocks always have linear_pos; the others follow WeNet's rule (u2ref.config).
        ec["selfattention_layer_type"] = ("selfattn" if ec["pos_enc_layer_type"] == "no_pos"
                                          else "rel_selfattn")
    if cfg["decoder_conf"].get("tie_word_embedding"):
        _refuse("decoder_conf.tie_word_embedding", True)

    # CMVN: checkpoint buffers win; else the file named by --cmvn (format from the yaml).
    I = cfg["input_dim"]
    mean = sd.get("encoder.global_cmvn.mean")
    istd = sd.get("encoder.global_cmvn.istd")
    if (mean is None) != (istd is None):
        raise ConvertError("checkpoint: has only one of encoder.global_cmvn.mean/istd")
    if mean is None and cfg["cmvn"] is not None:
        if not cmvn_path:
            raise ConvertError("cmvn: the config uses global CMVN but the checkpoint has no "
                               "encoder.global_cmvn buffers and no --cmvn file was given")
        try:
            m, s = load_cmvn(cmvn_path, cfg["cmvn"]["is_json_cmvn"])
        except (CmvnError, OSError, ValueError, UnicodeDecodeError) as e:
            raise ConvertError("cmvn %s: %s" % (cmvn_path, e))
        mean, istd = torch.from_numpy(m), torch.from_numpy(s)
    use_cmvn = mean is not None
    if use_cmvn:
        for n, t in (("mean", mean), ("istd", istd)):
            if tuple(t.shape) != (I,):
                raise ConvertError("cmvn: %s has shape %s, input_dim wants (%d,)" %
                                   (n, tuple(t.shape), I))
        sd = dict(sd)
        sd["encoder.global_cmvn.mean"] = mean.float()
        sd["encoder.global_cmvn.istd"] = istd.float()

    # Validate names and shapes by loading into the reference model.
    model_cfg = dict(cfg)
    model_cfg["cmvn"] = {"cmvn_file": None, "is_json_cmvn": True} if use_cmvn else None
    try:
        model = U2Model.from_checkpoint(model_cfg, sd)
    except KeyError as e:
        raise ConvertError("checkpoint %s: %s" % (checkpoint_path, e.args[0]))
    except ValueError as e:
        raise ConvertError("checkpoint %s: %s" % (checkpoint_path, e))

    # Token table and special ids.
    units = read_units(units_path)
    V = cfg["output_dim"]
    if len(units) != V:
        raise ConvertError("units %s: %d tokens, but output_dim is %d" % (units_path, len(units), V))
    sos, eos = sos_eos_ids(cfg, units)
    for name, v in (("sos", sos), ("eos", eos)):
        if not 0 <= v < V:
            raise ConvertError("tokenizer_conf.special_tokens: %s id %d outside 0..%d" %
                               (name, v, V - 1))
    blank = cfg["ctc_conf"]["ctc_blank_id"]
    unk = units.index("<unk>") if "<unk>" in units else 1

    # Tokenizer files: explicit paths must exist; the yaml's are taken when they resolve.
    if bpe_model is None:
        bpe_model = _yaml_path(raw, config_path, (("tokenizer_conf", "bpe_path"), ("bpe_model",)))
    elif not os.path.isfile(bpe_model):
        raise ConvertError("--bpe-model %s: no such file" % bpe_model)
    if bpe_model is not None:
        check_bpe_model(bpe_model, units)
    if non_lang_syms is None:
        non_lang_syms = _yaml_path(raw, config_path, (("tokenizer_conf", "non_lang_syms_path"),
                                                      ("non_lang_syms",)))
    elif not os.path.isfile(non_lang_syms):
        raise ConvertError("--non-lang-syms %s: no such file" % non_lang_syms)
    syms = read_non_lang_syms(non_lang_syms) if non_lang_syms is not None else None

    # Tensors: WeNet names, unused ones dropped, encoder pe always present (float32).
    D = ec["output_size"]
    tensors = {}
    for k, v in model.state_dict().items():
        if "num_batches_tracked" in k or "concat_linear" in k:
            continue
        if k.endswith(".pe") and k != "encoder.embed.pos_enc.pe":
            continue  # decoders' embed.1.pe: same table as the encoder's
        tensors[k] = v.detach().clone().contiguous()
    # The table bounds the longest input (max_positions encoder frames). Shorter: a slice of the
    # checkpoint's rows; longer than the checkpoint's: regenerated with the same float32 torch
    # expressions, whose first rows are bit-identical to WeNet's buffer.
    if max_positions < 16:
        raise ConvertError("--max-positions: %d is too small (at least 16)" % max_positions)
    pe_dim = int(ec["encoder_dim"]) if cfg["encoder"] == "squeezeformer" else D
    pe = sd.get("encoder.embed.pos_enc.pe")
    if pe is None or pe.shape[1] < max_positions:
        pe = make_pe_table(pe_dim, max_positions)
    tensors["encoder.embed.pos_enc.pe"] = pe[:, :max_positions].float().contiguous()
    if pe_dim != D:
        # A squeezeformer with final_proj: the decoders' table has their own width, output_size
        # (its columns are not the encoder table's); one copy, under the (left) decoder's name.
        key = "decoder.left_decoder.embed.1.pe" if cfg["decoder"] == "bitransformer" else \
            "decoder.embed.1.pe"
        dpe = sd.get(key)
        if dpe is None or dpe.shape[1] < max_positions or dpe.shape[2] != D:
            dpe = make_pe_table(D, max_positions)
        tensors[key] = dpe[:, :max_positions].float().contiguous()
    # The analysis window exactly as torchaudio's kaldi.fbank computes it (torch's own cos/pow
    # differ from correctly rounded values in the last bit at a few points, which matters for
    # bit-level parity on pure tones); the engine uses it instead of recomputing the window.
    tensors["frontend.window"] = povey_window(cfg["frontend"])
    # int8 weights from the float32 values (also under --dtype float16); their scales stay float32.
    if quantize == "int8":
        for k in [k for k in tensors if INT8_WEIGHTS.match(k)]:
            w = tensors[k].float().numpy()
            if w.ndim not in (2, 3) or (w.ndim == 3 and w.shape[2] != 1):
                raise ConvertError("--quantize int8: tensor %s has shape %s, expected (n, k) or "
                                   "(n, k, 1)" % (k, tuple(w.shape)))
            if not np.isfinite(w).all():
                raise ConvertError("--quantize int8: tensor %s has non-finite values" % k)
            q, s = quantize_int8(w)
            tensors[k] = torch.from_numpy(q)
            tensors[k + "_scale"] = torch.from_numpy(s)
    keep_f32 = ("encoder.embed.pos_enc.pe", "encoder.global_cmvn.mean",
                "encoder.global_cmvn.istd", "frontend.window")
    if dtype == "float16":
        for k in list(tensors):
            if k in keep_f32 or k.endswith(".pe") or k.endswith("running_mean") or \
                    k.endswith("running_var") or k.endswith(".weight_scale"):
                continue
            t = tensors[k]
            if t.is_floating_point():
                if t.abs().max().item() > 65504.0:
                    raise ConvertError("--dtype float16: tensor %s exceeds the float16 range" % k)
                tensors[k] = t.half()

    ec_out = {
        "type": cfg["encoder"],
        "output_size": D,
        "attention_heads": ec["attention_heads"],
        "linear_units": ec["linear_units"],
        "num_blocks": ec["num_blocks"],
        "input_layer": ec["input_layer"],
        "pos_enc_layer_type": ec["pos_enc_layer_type"],
        "selfattention_layer_type": ec["selfattention_layer_type"],
        "normalize_before": bool(ec["normalize_before"]),
        "final_norm": bool(ec.get("final_norm", True)),
        # e_branchformer: the macaron FFN exists when use_ffn and macaron_style are both true.
        "macaron_style": (bool(ec["macaron_style"]) if cfg["encoder"] == "conformer" else
                          bool(ec["use_ffn"] and ec["macaron_style"])
                          if cfg["encoder"] == "e_branchformer" else False),
        "use_cnn_module": bool(ec["use_cnn_module"]) if cfg["encoder"] == "conformer" else False,
        "cnn_module_kernel": int(ec["cnn_module_kernel"]),
        "causal": bool(ec["causal"]),
        "cnn_module_norm": ec["cnn_module_norm"],
        "activation_type": ec["activation_type"],
        "norm_eps": float(ec["norm_eps"]),
        "conv_norm_eps": float(ec["conv_norm_eps"]),
        "use_dynamic_chunk": bool(ec["use_dynamic_chunk"]),
        "static_chunk_size": int(ec["static_chunk_size"]),
    }
    if cfg["encoder"] in BRANCHFORMER_FAMILY:
        bf = cfg["encoder"] == "branchformer"
        n = int(ec["num_blocks"])
        fixed = bf and ec["use_attn"] and ec["use_cgmlp"] and ec["merge_method"] == "fixed_ave"
        ec_out.update({
            "cgmlp_linear_units": int(ec["cgmlp_linear_units"]),
            "cgmlp_conv_kernel": int(ec["cgmlp_conv_kernel"]),
            "use_linear_after_conv": bool(ec["use_linear_after_conv"]),
            "gate_activation": ec["gate_activation"],
            "use_attn": bool(ec["use_attn"]) if bf else True,
            "use_cgmlp": bool(ec["use_cgmlp"]) if bf else True,
            "merge_method": ec["merge_method"] if bf else "concat",
            "cgmlp_weight": per_block(ec["cgmlp_weight"], n, "cgmlp_weight") if fixed
            else [0.5] * n,
            "use_ffn": False if bf else bool(ec["use_ffn"]),
            "merge_conv_kernel": 0 if bf else int(ec["merge_conv_kernel"]),
        })
    if cfg["encoder"] == EFFICIENT_CONFORMER:
        ec_out.update(efficient_conformer_keys(ec))
    if cfg["encoder"] == "squeezeformer":
        ec_out = squeezeformer_encoder_json(ec)
    dc = cfg["decoder_conf"]
    dc_out = {
        "type": cfg["decoder"],
        "attention_heads": dc["attention_heads"],
        "linear_units": dc["linear_units"],
        "num_blocks": dc["num_blocks"],
        "r_num_blocks": int(dc["r_num_blocks"]) if cfg["decoder"] == "bitransformer" else 0,
        "normalize_before": bool(dc["normalize_before"]),
        "norm_eps": float(dc["norm_eps"]),
        "activation_type": dc["activation_type"],
    }
    mc = cfg["model_conf"]
    if ec["use_dynamic_chunk"]:
        chunk = 16
    elif ec["static_chunk_size"] > 0:
        chunk = int(ec["static_chunk_size"])
    else:
        chunk = -1
    if cfg["encoder"] == EFFICIENT_CONFORMER and ec["use_dynamic_chunk"]:
        # The smallest chunk >= 16 that streams exactly (docs/model-format.md).
        m = streaming_chunk_multiple(ec)
        chunk = -(-16 // m) * m
    if cfg["encoder"] == "squeezeformer" and ec["use_dynamic_chunk"]:
        m = squeezeformer_chunk_multiple(ec)  # 16 unless reductions nest more than 4 deep
        chunk = -(-16 // m) * m
    rescoring_ctc_weight = float(mc["ctc_weight"] if ctc_weight is None else ctc_weight)
    rescoring_reverse_weight = float(
        (mc["reverse_weight"] if cfg["decoder"] == "bitransformer" else 0.0) if reverse_weight is None
        else reverse_weight)
    if not (math.isfinite(rescoring_ctc_weight) and rescoring_ctc_weight >= 0):
        raise ConvertError("--ctc-weight: %r must be finite and >= 0" % rescoring_ctc_weight)
    if not 0 <= rescoring_reverse_weight <= 1:
        raise ConvertError("--reverse-weight: %r must be in [0, 1]" % rescoring_reverse_weight)
    if rescoring_reverse_weight > 0 and cfg["decoder"] != "bitransformer":
        raise ConvertError("--reverse-weight: %r needs a bitransformer decoder" % rescoring_reverse_weight)
    # WeNet's search takes the beam's top-k over the vocabulary each frame, so k <= V.
    if not (isinstance(beam_size, int) and 1 <= beam_size <= V):
        raise ConvertError("--beam-size: %r must be an integer in [1, vocabulary size %d]" % (beam_size, V))
    doc = {
        "format": "u2serve-model",
        "format_version": FORMAT_VERSION,
        "input_dim": I,
        "vocab_size": V,
        "blank_id": blank,
        "unk_id": unk,
        "sos_id": sos,
        "eos_id": eos,
        "cmvn": use_cmvn,
        "max_positions": max_positions,
        "frontend": {
            "sample_rate": cfg["frontend"]["sample_rate"],
            "num_mel_bins": cfg["frontend"]["num_mel_bins"],
            "frame_length_ms": cfg["frontend"]["frame_length_ms"],
            "frame_shift_ms": cfg["frontend"]["frame_shift_ms"],
        },
        "encoder": ec_out,
        "decoder": dc_out,
        "decoding": {
            "ctc_weight": rescoring_ctc_weight,
            "reverse_weight": rescoring_reverse_weight,
            "beam_size": beam_size,
            "decoding_chunk_size": chunk,
            "num_decoding_left_chunks": -1,
        },
    }
    if quantize == "int8":
        doc["weights"] = "int8"  # informational: the engine goes by the tensors' dtypes
    if bpe_model is not None or syms is not None:
        tok = {"type": "bpe" if bpe_model is not None else "char"}
        if bpe_model is not None:
            tok["bpe_model"] = "bpe.model"
        if syms is not None:
            tok["non_lang_syms"] = "non_lang_syms.txt"
        doc["tokenizer"] = tok

    from safetensors.torch import save_file
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "model.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    save_file(dict(sorted(tensors.items())), os.path.join(out_dir, "model.safetensors"),
              metadata={"format": "pt"})  # one key: safetensors orders metadata randomly
    with open(os.path.join(out_dir, "units.txt"), "w", encoding="utf-8") as f:
        for i, u in enumerate(units):
            f.write("%s %d\n" % (u, i))
    shutil.copyfile(config_path, os.path.join(out_dir, "train.yaml"))
    if cmvn_path and os.path.exists(cmvn_path):
        shutil.copyfile(cmvn_path, os.path.join(out_dir, "global_cmvn"))
    for name, src in (("bpe.model", bpe_model), ("non_lang_syms.txt", non_lang_syms)):
        dst = os.path.join(out_dir, name)
        if src is not None:
            shutil.copyfile(src, dst)
        elif os.path.exists(dst):
            os.remove(dst)  # a stale file from an earlier conversion into the same folder
    return doc


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="WeNet train.yaml")
    ap.add_argument("--checkpoint", required=True, help="final.pt (a plain state_dict)")
    ap.add_argument("--cmvn", default=None, help="global_cmvn (JSON or Kaldi text)")
    ap.add_argument("--units", required=True, help="units.txt / words.txt")
    ap.add_argument("--out", required=True, help="output model directory")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    ap.add_argument("--quantize", default="none", choices=list(QUANTIZE_CHOICES),
                    help="int8: store the linear layers' weights as int8 with a float32 scale per "
                         "output row (docs/model-format.md); other tensors follow --dtype "
                         "(default none)")
    ap.add_argument("--max-positions", type=int, default=PE_DEFAULT_ROWS,
                    help="rows of the positional table = longest encoder output in frames "
                         "(default %d, WeNet's: 200 s at 40 ms per frame)" % PE_DEFAULT_ROWS)
    ap.add_argument("--ctc-weight", type=float, default=None,
                    help="attention rescoring's default CTC weight (default: train.yaml model_conf)")
    ap.add_argument("--reverse-weight", type=float, default=None,
                    help="attention rescoring's default right-to-left weight (default: train.yaml "
                         "model_conf; tune both on a dev set, e.g. train/tune_decoding.py)")
    ap.add_argument("--beam-size", type=int, default=10,
                    help="default CTC prefix beam width (default 10, WeNet's; at most the vocabulary size)")
    ap.add_argument("--bpe-model", default=None,
                    help="WeNet's sentencepiece model (BPE units), copied as bpe.model "
                         "(default: train.yaml tokenizer_conf.bpe_path when that file exists)")
    ap.add_argument("--non-lang-syms", default=None,
                    help="WeNet's non-language symbols file, copied as non_lang_syms.txt "
                         "(default: train.yaml tokenizer_conf.non_lang_syms_path when it exists)")
    args = ap.parse_args(argv)
    try:
        doc = convert(args.config, args.checkpoint, args.units, args.out, args.cmvn, args.dtype,
                      args.max_positions, args.ctc_weight, args.reverse_weight, args.beam_size,
                      args.bpe_model, args.non_lang_syms, args.quantize)
    except (ConvertError, OSError, yaml.YAMLError) as e:
        print("convert.py: error: %s" % e, file=sys.stderr)
        return 2
    print("wrote %s (%s encoder, %d blocks, D=%d, V=%d, %s%s)" %
          (args.out, doc["encoder"]["type"], doc["encoder"]["num_blocks"],
           doc["encoder"]["output_size"], doc["vocab_size"], args.dtype,
           ", int8 weights" if args.quantize == "int8" else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
