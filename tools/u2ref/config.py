"""WeNet train.yaml (old or new layout) -> one canonical config dict.

The canonical dict has every encoder/decoder key filled with WeNet HEAD's constructor defaults, so
the rest of u2ref (and tools/convert.py) never has to know about the layout history:

    {
      "input_dim": int, "output_dim": int,
      "encoder": "conformer" | "transformer" | "branchformer" | "e_branchformer"
                 | "squeezeformer" | "efficientConformer",
      "encoder_conf": {...all keys...},
      "decoder": "transformer" | "bitransformer", "decoder_conf": {...all keys...},
      "model_conf": {"ctc_weight", "lsm_weight", "reverse_weight", "length_normalized_loss"},
      "ctc_conf": {"ctc_blank_id": 0},
      "cmvn": None | {"cmvn_file": str, "is_json_cmvn": bool},
      "frontend": {"sample_rate", "num_mel_bins", "frame_length_ms", "frame_shift_ms"},
      "tokenizer_conf": {"special_tokens": {...}} (only when the yaml has it),
    }

Old layout (2021-2023): top-level `cmvn_file` / `is_json_cmvn`, features under
`collate_conf.feature_extraction_conf` (mel_bins, frame_shift, frame_length).
New layout (since 2023-12): `cmvn: global_cmvn` + `cmvn_conf`, `dataset_conf.fbank_conf`.
"""

import copy

CONFORMER_DEFAULTS = {
    "output_size": 256,
    "attention_heads": 4,
    "linear_units": 2048,
    "num_blocks": 6,
    "dropout_rate": 0.1,
    "positional_dropout_rate": 0.1,
    "attention_dropout_rate": 0.0,
    "input_layer": "conv2d",
    "pos_enc_layer_type": "rel_pos",
    "normalize_before": True,
    "static_chunk_size": 0,
    "use_dynamic_chunk": False,
    "use_dynamic_left_chunk": False,
    "positionwise_conv_kernel_size": 1,
    "macaron_style": True,
    "selfattention_layer_type": "rel_selfattn",
    "activation_type": "swish",
    "use_cnn_module": True,
    "cnn_module_kernel": 15,
    "causal": False,
    "cnn_module_norm": "batch_norm",
    "query_bias": True,
    "key_bias": True,
    "value_bias": True,
    "conv_bias": True,
    "mlp_bias": True,
    "layer_norm_type": "layer_norm",
    "norm_eps": 1e-5,
    "conv_norm_eps": 1e-5,
    "conv_inner_factor": 2,
    "final_norm": True,
    "concat_after": False,
}

TRANSFORMER_ENCODER_DEFAULTS = dict(
    CONFORMER_DEFAULTS,
    pos_enc_layer_type="abs_pos",
    selfattention_layer_type="selfattn",
    activation_type="relu",
    macaron_style=False,
    use_cnn_module=False,
)

# WeNet HEAD's BranchformerEncoder constructor defaults, then the keys the rest of u2ref and the
# converter read for every encoder, with the values a Branchformer has (no FFN, no conv module,
# pre-norm). linear_units is always cgmlp_linear_units: WeNet passes that as BaseEncoder's.
BRANCHFORMER_DEFAULTS = {
    "output_size": 256,
    "use_attn": True,
    "attention_heads": 4,
    "selfattention_layer_type": "rel_selfattn",
    "pos_enc_layer_type": "rel_pos",
    "use_cgmlp": True,
    "cgmlp_linear_units": 2048,
    "cgmlp_conv_kernel": 31,
    "use_linear_after_conv": False,
    "gate_activation": "identity",
    "merge_method": "concat",
    "cgmlp_weight": 0.5,
    "attn_branch_drop_rate": 0.0,
    "num_blocks": 12,
    "dropout_rate": 0.1,
    "positional_dropout_rate": 0.1,
    "attention_dropout_rate": 0.0,
    "input_layer": "conv2d",
    "stochastic_depth_rate": 0.0,
    "static_chunk_size": 0,
    "use_dynamic_chunk": False,
    "use_dynamic_left_chunk": False,
    "causal": False,
    "query_bias": True,
    "key_bias": True,
    "value_bias": True,
    "gradient_checkpointing": False,
    "use_sdpa": False,
    "layer_norm_type": "layer_norm",
    "norm_eps": 1e-5,
    "n_kv_head": None,
    "head_dim": None,
    # not constructor arguments:
    "normalize_before": True,
    "final_norm": True,
    "macaron_style": False,
    "use_cnn_module": False,
    "use_ffn": False,
    "merge_conv_kernel": 0,
    "cnn_module_kernel": 15,
    "cnn_module_norm": "batch_norm",
    "conv_norm_eps": 1e-5,
    "activation_type": "swish",
}

# WeNet HEAD's EBranchformerEncoder constructor defaults (it subclasses ConformerEncoder, whose
# own blocks it replaces), then the keys read for every encoder: pre-norm, no conv module, both
# branches merged by concatenation.
E_BRANCHFORMER_DEFAULTS = {
    "output_size": 256,
    "attention_heads": 4,
    "linear_units": 2048,
    "selfattention_layer_type": "rel_selfattn",
    "pos_enc_layer_type": "rel_pos",
    "activation_type": "swish",
    "cgmlp_linear_units": 2048,
    "cgmlp_conv_kernel": 31,
    "use_linear_after_conv": False,
    "gate_activation": "identity",
    "num_blocks": 12,
    "dropout_rate": 0.1,
    "positional_dropout_rate": 0.1,
    "attention_dropout_rate": 0.0,
    "input_layer": "conv2d",
    "stochastic_depth_rate": 0.0,
    "static_chunk_size": 0,
    "use_dynamic_chunk": False,
    "use_dynamic_left_chunk": False,
    "causal": False,
    "merge_conv_kernel": 3,
    "use_ffn": True,
    "macaron_style": True,
    "query_bias": True,
    "key_bias": True,
    "value_bias": True,
    "conv_bias": True,
    "gradient_checkpointing": False,
    "use_sdpa": False,
    "layer_norm_type": "layer_norm",
    "norm_eps": 1e-5,
    "n_kv_head": None,
    "head_dim": None,
    "mlp_type": "position_wise_feed_forward",
    "mlp_bias": True,
    "n_expert": 8,
    "n_expert_activated": 2,
    # not constructor arguments:
    "normalize_before": True,
    "final_norm": True,
    "use_cnn_module": False,
    "cnn_module_kernel": 15,
    "cnn_module_norm": "batch_norm",
    "conv_norm_eps": 1e-5,
    "use_attn": True,
    "use_cgmlp": True,
    "merge_method": "concat",
    "cgmlp_weight": 0.5,
    "attn_branch_drop_rate": 0.0,
}

# WeNet HEAD's EfficientConformerEncoder constructor defaults (`encoder: efficientConformer`; its
# recipes put the last five under encoder_conf.efficient_conf, which WeNet's init_model passes as
# keyword arguments too). stride_layer_idx / stride / group_layer_idx: one int or a list.
EFFICIENT_CONFORMER_DEFAULTS = {
    "output_size": 256,
    "attention_heads": 4,
    "linear_units": 2048,
    "num_blocks": 6,
    "dropout_rate": 0.1,
    "positional_dropout_rate": 0.1,
    "attention_dropout_rate": 0.0,
    "input_layer": "conv2d",
    "pos_enc_layer_type": "rel_pos",
    "normalize_before": True,
    "static_chunk_size": 0,
    "use_dynamic_chunk": False,
    "use_dynamic_left_chunk": False,
    "macaron_style": True,
    "activation_type": "swish",
    "use_cnn_module": True,
    "cnn_module_kernel": 15,
    "causal": False,
    "cnn_module_norm": "batch_norm",
    "stride_layer_idx": 3,
    "stride": 2,
    "group_layer_idx": [0, 1, 2, 3],
    "group_size": 3,
    "stride_kernel": True,
}

# Keys the rest of u2ref and the converter read for every encoder, with the values WeNet's
# EfficientConformerEncoder always uses: it takes any other key as an ignored keyword argument,
# so these hold whatever train.yaml says (no_pos: plain attention in the non-grouped blocks).
EFFICIENT_CONFORMER_FIXED = {
    "selfattention_layer_type": "rel_selfattn",
    "query_bias": True,
    "key_bias": True,
    "value_bias": True,
    "conv_bias": True,
    "mlp_bias": True,
    "layer_norm_type": "layer_norm",
    "norm_eps": 1e-5,
    "conv_norm_eps": 1e-5,
    "conv_inner_factor": 2,
    "positionwise_conv_kernel_size": 1,
    "final_norm": True,
    "concat_after": False,
}


def efficient_conformer_conf(given):
    """encoder_conf of an efficientConformer: efficient_conf merged in (a key given in both is an
    error, as in WeNet), constructor defaults filled, the fixed keys set, the three index keys as
    lists."""
    given = dict(given or {})
    extra = given.pop("efficient_conf", None) or {}
    both = sorted(set(extra) & set(given))
    if both:
        raise ConfigError("encoder_conf.efficient_conf.%s: also given in encoder_conf" % both[0])
    given.update(extra)
    ec = _fill(EFFICIENT_CONFORMER_DEFAULTS, given)
    ec.update(EFFICIENT_CONFORMER_FIXED)
    if ec["pos_enc_layer_type"] == "no_pos":
        ec["selfattention_layer_type"] = "selfattn"
    for k in ("stride_layer_idx", "stride", "group_layer_idx"):
        v = ec[k]
        if isinstance(v, int) and not isinstance(v, bool):
            ec[k] = [v]
        elif isinstance(v, (list, tuple)) or v is None:
            ec[k] = list(v or [])
    return ec


ENCODER_DEFAULTS = {
    "conformer": CONFORMER_DEFAULTS,
    "transformer": TRANSFORMER_ENCODER_DEFAULTS,
    "branchformer": BRANCHFORMER_DEFAULTS,
    "e_branchformer": E_BRANCHFORMER_DEFAULTS,
    "efficientConformer": EFFICIENT_CONFORMER_DEFAULTS,
}

# WeNet HEAD's SqueezeformerEncoder constructor defaults (`encoder: squeezeformer`; it accepts no
# other keyword argument). reduce_idx / recover_idx: an int, a list of ints or null.
SQUEEZEFORMER_DEFAULTS = {
    "encoder_dim": 256,
    "output_size": 256,
    "attention_heads": 4,
    "num_blocks": 12,
    "reduce_idx": 5,
    "recover_idx": 11,
    "feed_forward_expansion_factor": 4,
    "dw_stride": False,
    "input_dropout_rate": 0.1,
    "pos_enc_layer_type": "rel_pos",
    "time_reduction_layer_type": "conv1d",
    "do_rel_shift": True,
    "feed_forward_dropout_rate": 0.1,
    "attention_dropout_rate": 0.1,
    "cnn_module_kernel": 31,
    "cnn_norm_type": "batch_norm",
    "dropout": 0.1,
    "causal": False,
    "adaptive_scale": True,
    "activation_type": "swish",
    "init_weights": True,
    "normalize_before": False,
    "use_dynamic_chunk": False,
    "concat_after": False,
    "static_chunk_size": 0,
    "use_dynamic_left_chunk": False,
}


def squeezeformer_conf(given):
    """encoder_conf of a squeezeformer: constructor defaults filled, then the keys the rest of
    u2ref and the converter read for every encoder, derived from WeNet's own (linear_units =
    encoder_dim * feed_forward_expansion_factor, cnn_module_norm = cnn_norm_type; all LayerNorms
    and the conv norm have PyTorch's default eps; no after_norm; the DepthwiseConv2dSubsampling4
    front is named "dw_conv2d4")."""
    ec = _fill(SQUEEZEFORMER_DEFAULTS, given)
    ec.update({
        "linear_units": int(ec["encoder_dim"]) * int(ec["feed_forward_expansion_factor"]),
        "input_layer": "dw_conv2d4",
        "selfattention_layer_type": "rel_selfattn" if ec["pos_enc_layer_type"] == "rel_pos"
        else "selfattn",
        "cnn_module_norm": ec["cnn_norm_type"],
        "norm_eps": 1e-5,
        "conv_norm_eps": 1e-5,
        "final_norm": False,
        "macaron_style": False,
        "use_cnn_module": True,
    })
    return ec


DECODER_DEFAULTS = {
    "attention_heads": 4,
    "linear_units": 2048,
    "num_blocks": 6,
    "r_num_blocks": 0,
    "dropout_rate": 0.1,
    "positional_dropout_rate": 0.1,
    "self_attention_dropout_rate": 0.0,
    "src_attention_dropout_rate": 0.0,
    "input_layer": "embed",
    "use_output_layer": True,
    "normalize_before": True,
    "src_attention": True,
    "query_bias": True,
    "key_bias": True,
    "value_bias": True,
    "mlp_bias": True,
    "activation_type": "relu",
    "tie_word_embedding": False,
    "layer_norm_type": "layer_norm",
    "norm_eps": 1e-5,
    "concat_after": False,
}

MODEL_CONF_DEFAULTS = {
    "ctc_weight": 0.5,
    "lsm_weight": 0.0,
    "reverse_weight": 0.0,
    "length_normalized_loss": False,
}


class ConfigError(ValueError):
    """A train.yaml that u2ref cannot represent; the message names the key and value."""


def _fill(defaults, given):
    out = dict(defaults)
    for k, v in (given or {}).items():
        out[k] = v
    return out


def normalize_config(yaml_cfg):
    """Returns the canonical dict (see module docstring) for a WeNet train.yaml dict.

    Already-canonical dicts pass through unchanged (idempotent)."""
    cfg = copy.deepcopy(yaml_cfg)
    out = {}
    encoder = cfg.get("encoder", "conformer")
    decoder = cfg.get("decoder", "bitransformer")
    out["encoder"] = encoder
    out["decoder"] = decoder
    out["encoder_conf"] = _fill(ENCODER_DEFAULTS.get(encoder, CONFORMER_DEFAULTS),
                                cfg.get("encoder_conf"))
    if encoder == "branchformer":
        out["encoder_conf"]["linear_units"] = out["encoder_conf"]["cgmlp_linear_units"]
    if encoder == "squeezeformer":
        out["encoder_conf"] = squeezeformer_conf(cfg.get("encoder_conf"))
    if encoder == "efficientConformer":
        out["encoder_conf"] = efficient_conformer_conf(cfg.get("encoder_conf"))
    out["decoder_conf"] = _fill(DECODER_DEFAULTS, cfg.get("decoder_conf"))
    if decoder == "transformer":
        out["decoder_conf"]["r_num_blocks"] = 0
    out["model_conf"] = _fill(MODEL_CONF_DEFAULTS, cfg.get("model_conf"))
    out["ctc_conf"] = {"ctc_blank_id": int((cfg.get("ctc_conf") or {}).get("ctc_blank_id", 0))}

    # Frontend: new layout dataset_conf.fbank_conf, old collate_conf.feature_extraction_conf.
    ds = cfg.get("dataset_conf") or {}
    fb = ds.get("fbank_conf") or {}
    old_fe = (cfg.get("collate_conf") or {}).get("feature_extraction_conf") or {}
    frontend = cfg.get("frontend") if isinstance(cfg.get("frontend"), dict) else {}
    mel = fb.get("num_mel_bins", old_fe.get("mel_bins", frontend.get("num_mel_bins")))
    out["frontend"] = {
        "sample_rate": int((ds.get("resample_conf") or {}).get("resample_rate",
                                                                frontend.get("sample_rate", 16000))),
        "num_mel_bins": int(mel) if mel is not None else None,
        "frame_length_ms": float(fb.get("frame_length", old_fe.get(
            "frame_length", frontend.get("frame_length_ms", 25)))),
        "frame_shift_ms": float(fb.get("frame_shift", old_fe.get(
            "frame_shift", frontend.get("frame_shift_ms", 10)))),
    }
    input_dim = cfg.get("input_dim", out["frontend"]["num_mel_bins"])
    if input_dim is None:
        raise ConfigError("input_dim: missing (and no fbank num_mel_bins to take it from)")
    out["input_dim"] = int(input_dim)
    if out["frontend"]["num_mel_bins"] is None:
        out["frontend"]["num_mel_bins"] = out["input_dim"]
    if "output_dim" not in cfg:
        raise ConfigError("output_dim: missing")
    out["output_dim"] = int(cfg["output_dim"])

    # CMVN: new `cmvn: global_cmvn` + cmvn_conf; old top-level cmvn_file/is_json_cmvn.
    cmvn = None
    if isinstance(cfg.get("cmvn"), dict):  # canonical form
        cmvn = dict(cfg["cmvn"])
    elif cfg.get("cmvn") == "global_cmvn":
        cc = cfg.get("cmvn_conf") or {}
        cmvn = {"cmvn_file": cc.get("cmvn_file"), "is_json_cmvn": bool(cc.get("is_json_cmvn", True))}
    elif cfg.get("cmvn") not in (None, "global_cmvn"):
        raise ConfigError("cmvn: %r (only global_cmvn is supported)" % (cfg.get("cmvn"),))
    elif cfg.get("cmvn_file"):
        cmvn = {"cmvn_file": cfg["cmvn_file"], "is_json_cmvn": bool(cfg.get("is_json_cmvn", True))}
    out["cmvn"] = cmvn

    tok = cfg.get("tokenizer_conf") or {}
    if tok.get("special_tokens"):
        out["tokenizer_conf"] = {"special_tokens": dict(tok["special_tokens"])}
    return out


def sos_eos_ids(cfg, units=None):
    """(sos, eos) per the resolution rule: special_tokens, else the `<sos/eos>` unit, else V-1.

    `units` is an optional list of token strings indexed by id."""
    special = (cfg.get("tokenizer_conf") or {}).get("special_tokens") or {}
    V = cfg["output_dim"]
    if "<sos>" in special or "<eos>" in special:
        sos = int(special.get("<sos>", special.get("<eos>")))
        eos = int(special.get("<eos>", special.get("<sos>")))
        return sos, eos
    if units is not None and "<sos/eos>" in units:
        i = units.index("<sos/eos>")
        return i, i
    return V - 1, V - 1
