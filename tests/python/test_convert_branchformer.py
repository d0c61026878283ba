"""tools/convert.py for WeNet's `branchformer` and `e_branchformer` encoders: the model.json
encoder keys (docs/model-format.md), WeNet's tensor names kept, the refusals, and which of the new
tensors `--quantize int8` stores as int8."""

import copy
import json
import os
import sys

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_convert import (convert, make_sd, new_yaml, run_cli, run_convert,  # noqa: E402
                          units_new, write_dir)
from test_convert_quantize import header_dtypes  # noqa: E402

from u2ref.config import normalize_config  # noqa: E402
from u2ref.model import U2Model  # noqa: E402

COMMON = {"output_size": 32, "attention_heads": 4, "num_blocks": 2, "cgmlp_linear_units": 48,
          "cgmlp_conv_kernel": 5}


def bf_yaml(**enc):
    y = new_yaml()
    y["encoder"] = "branchformer"
    y["encoder_conf"] = dict(COMMON, **enc)
    return y


def ebf_yaml(**enc):
    y = new_yaml()
    y["encoder"] = "e_branchformer"
    y["encoder_conf"] = dict(COMMON, linear_units=40, merge_conv_kernel=3)
    y["encoder_conf"].update(enc)
    return y


def convert_dir(tmp_path, y, name="c", **kw):
    d = write_dir(str(tmp_path / name), y, make_sd(y), units_new())
    out = str(tmp_path / (name + "_out"))
    return convert.convert(os.path.join(d, "train.yaml"), os.path.join(d, "final.pt"),
                           os.path.join(d, "units.txt"), out, os.path.join(d, "global_cmvn"),
                           **kw), out


def test_branchformer_model_json(tmp_path):
    y = bf_yaml(merge_method="fixed_ave", cgmlp_weight=[0.3, 0.7], use_linear_after_conv=True,
                gate_activation="gelu", causal=True, use_dynamic_chunk=True,
                pos_enc_layer_type="abs_pos", selfattention_layer_type="selfattn")
    doc, out = convert_dir(tmp_path, y)
    with open(os.path.join(out, "model.json")) as f:
        assert json.load(f)["encoder"] == doc["encoder"]
    assert doc["encoder"] == {
        "type": "branchformer", "output_size": 32, "attention_heads": 4,
        "linear_units": 48,  # WeNet passes cgmlp_linear_units as the base linear_units
        "num_blocks": 2, "input_layer": "conv2d", "pos_enc_layer_type": "abs_pos",
        "selfattention_layer_type": "selfattn", "normalize_before": True, "final_norm": True,
        "macaron_style": False, "use_cnn_module": False, "cnn_module_kernel": 15, "causal": True,
        "cnn_module_norm": "batch_norm", "activation_type": "swish", "norm_eps": 1e-5,
        "conv_norm_eps": 1e-5, "use_dynamic_chunk": True, "static_chunk_size": 0,
        "cgmlp_linear_units": 48, "cgmlp_conv_kernel": 5, "use_linear_after_conv": True,
        "gate_activation": "gelu", "use_attn": True, "use_cgmlp": True,
        "merge_method": "fixed_ave", "cgmlp_weight": [0.3, 0.7], "use_ffn": False,
        "merge_conv_kernel": 0}
    assert doc["decoding"]["decoding_chunk_size"] == 16


def test_branchformer_cgmlp_weight_rules(tmp_path):
    # One number: every block. concat: unused, written as 0.5 each.
    doc, _ = convert_dir(tmp_path, bf_yaml(merge_method="fixed_ave", cgmlp_weight=0.25), "a")
    assert doc["encoder"]["cgmlp_weight"] == [0.25, 0.25]
    doc, _ = convert_dir(tmp_path, bf_yaml(merge_method="concat", cgmlp_weight=0.25), "b")
    assert doc["encoder"]["cgmlp_weight"] == [0.5, 0.5]
    # 0.0 / 1.0 keep one branch in that block (WeNet drops the other module: no tensors).
    doc, out = convert_dir(tmp_path, bf_yaml(merge_method="fixed_ave", cgmlp_weight=[0.0, 1.0]),
                           "c")
    assert doc["encoder"]["cgmlp_weight"] == [0.0, 1.0]
    t = load_file(os.path.join(out, "model.safetensors"))
    assert "encoder.encoders.0.cgmlp.channel_proj2.weight" not in t
    assert "encoder.encoders.0.attn.linear_q.weight" in t
    assert "encoder.encoders.1.attn.linear_q.weight" not in t
    assert "encoder.encoders.1.cgmlp.channel_proj2.weight" in t
    assert t["encoder.encoders.1.merge_proj.weight"].shape == (32, 32)


def test_branchformer_single_branch(tmp_path):
    doc, out = convert_dir(tmp_path, bf_yaml(use_attn=False, merge_method="fixed_ave",
                                             cgmlp_weight=[0.2, 0.2]))
    e = doc["encoder"]
    assert (e["use_attn"], e["use_cgmlp"], e["cgmlp_weight"]) == (False, True, [0.5, 0.5])
    assert e["selfattention_layer_type"] == "rel_selfattn"  # no attention tensors: the yaml's
    t = load_file(os.path.join(out, "model.safetensors"))
    assert not [k for k in t if ".attn." in k or ".merge_proj." in k]  # merge_proj = Identity


def test_e_branchformer_model_json(tmp_path):
    doc, out = convert_dir(tmp_path, ebf_yaml(causal=False, merge_conv_kernel=5,
                                              macaron_style=True, use_ffn=True,
                                              norm_eps=1e-12))
    assert doc["encoder"] == {
        "type": "e_branchformer", "output_size": 32, "attention_heads": 4, "linear_units": 40,
        "num_blocks": 2, "input_layer": "conv2d", "pos_enc_layer_type": "rel_pos",
        "selfattention_layer_type": "rel_selfattn", "normalize_before": True,
        "final_norm": True, "macaron_style": True, "use_cnn_module": False,
        "cnn_module_kernel": 15, "causal": False, "cnn_module_norm": "batch_norm",
        "activation_type": "swish", "norm_eps": 1e-12, "conv_norm_eps": 1e-5,
        "use_dynamic_chunk": False, "static_chunk_size": 0, "cgmlp_linear_units": 48,
        "cgmlp_conv_kernel": 5, "use_linear_after_conv": False, "gate_activation": "identity",
        "use_attn": True, "use_cgmlp": True, "merge_method": "concat",
        "cgmlp_weight": [0.5, 0.5], "use_ffn": True, "merge_conv_kernel": 5}
    # macaron_style in model.json means "the macaron FFN exists": use_ffn and macaron_style.
    doc, _ = convert_dir(tmp_path, ebf_yaml(use_ffn=False, macaron_style=True), "n")
    assert (doc["encoder"]["use_ffn"], doc["encoder"]["macaron_style"]) == (False, False)


@pytest.mark.parametrize("y", [
    bf_yaml(causal=True, cgmlp_conv_kernel=4),
    bf_yaml(merge_method="fixed_ave", cgmlp_weight=[0.3, 0.7], use_linear_after_conv=True,
            gate_activation="relu", pos_enc_layer_type="abs_pos"),
    ebf_yaml(causal=True, merge_conv_kernel=4, gate_activation="swish", macaron_style=False),
], ids=["bf_causal", "bf_fixed_ave", "ebf_causal"])
def test_converted_dir_keeps_wenet_names_and_numbers(tmp_path, y):
    sd = make_sd(y)
    d = write_dir(str(tmp_path / "c"), y, sd, units_new())
    run_convert(d, str(tmp_path / "o"))
    t = load_file(str(tmp_path / "o" / "model.safetensors"))
    for k, v in sd.items():
        if k.endswith(".pe") or "num_batches_tracked" in k:
            continue
        assert torch.equal(t[k], v), k
    a = U2Model.from_checkpoint(normalize_config(y), dict(sd, **{
        "encoder.global_cmvn.mean": t["encoder.global_cmvn.mean"],
        "encoder.global_cmvn.istd": t["encoder.global_cmvn.istd"]}))
    b = U2Model.from_checkpoint(normalize_config(y), t)
    x = torch.randn(1, 90, 80)
    with torch.no_grad():
        assert torch.equal(a.encode(x, torch.tensor([90]))[0], b.encode(x, torch.tensor([90]))[0])


def mutated(base, **enc):
    y = copy.deepcopy(base)
    y["encoder_conf"].update(enc)
    return y


@pytest.mark.parametrize("y,key,value", [
    (mutated(bf_yaml(), merge_method="learned_ave"), "merge_method", "learned_ave"),
    (mutated(bf_yaml(), gate_activation="tanh"), "gate_activation", "tanh"),
    (mutated(bf_yaml(), cgmlp_conv_kernel=6), "cgmlp_conv_kernel", "6"),
    (mutated(ebf_yaml(), merge_conv_kernel=4), "merge_conv_kernel", "4"),
    (mutated(ebf_yaml(), cgmlp_conv_kernel=8), "cgmlp_conv_kernel", "8"),
    (mutated(bf_yaml(), normalize_before=False), "normalize_before", "False"),
    (mutated(ebf_yaml(), normalize_before=False), "normalize_before", "False"),
    (mutated(bf_yaml(), use_attn=False, use_cgmlp=False), "use_cgmlp", "False"),
    (mutated(bf_yaml(), merge_method="fixed_ave", cgmlp_weight=[0.5]), "cgmlp_weight", "[0.5]"),
    (mutated(bf_yaml(), merge_method="fixed_ave", cgmlp_weight=1.5), "cgmlp_weight", "1.5"),
    (mutated(bf_yaml(), cgmlp_linear_units=47), "cgmlp_linear_units", "47"),
    (mutated(ebf_yaml(), merge_method="fixed_ave"), "merge_method", "fixed_ave"),
    (mutated(ebf_yaml(), use_attn=False), "use_attn", "False"),
    (mutated(ebf_yaml(), activation_type="gelu"), "activation_type", "gelu"),
    (mutated(bf_yaml(), layer_norm_type="rms_norm"), "layer_norm_type", "rms_norm"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_refusals_name_key_and_value(tmp_path, y, key, value):
    # The checkpoint is a valid one (made from the unmutated yaml where the mutation breaks the
    # model): the refusal must come from the configuration check, before any tensor.
    base = bf_yaml() if y["encoder"] == "branchformer" else ebf_yaml()
    try:
        sd = make_sd(y)
    except (ValueError, AssertionError, RuntimeError):
        sd = make_sd(base)
    d = write_dir(str(tmp_path / "r"), y, sd, units_new())
    r = run_cli(d, str(tmp_path / "o"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    line = r.stderr.strip()
    assert "\n" not in line and key in line and value in line, line
    assert not os.path.exists(tmp_path / "o" / "model.safetensors")


def expected_int8(y):
    """Every nn.Linear of the encoder blocks except the learned_ave-only pooling/weight
    projections, plus ctc_lo and the decoder's linears (found from the modules)."""
    m = U2Model(normalize_config(y))
    names = set()
    for name, mod in m.named_modules():
        if name.startswith("encoder.embed") or ".pooling_proj" in name or ".weight_proj" in name:
            continue
        if isinstance(mod, torch.nn.Linear):
            names.add(name + ".weight")
    return names


@pytest.mark.parametrize("y", [bf_yaml(use_linear_after_conv=True, causal=True),
                               ebf_yaml(use_linear_after_conv=True)], ids=["bf", "ebf"])
def test_int8_takes_the_new_linear_layers_and_leaves_the_convs(tmp_path, y):
    _, f32 = convert_dir(tmp_path, y, "f")
    _, q8 = convert_dir(tmp_path, y, "q", quantize="int8")
    a = header_dtypes(os.path.join(f32, "model.safetensors"))
    b = header_dtypes(os.path.join(q8, "model.safetensors"))
    expected = expected_int8(y)
    for part in ("attn.linear_q", "cgmlp.channel_proj1.0", "cgmlp.csgu.linear",
                 "cgmlp.channel_proj2", "merge_proj"):
        assert "encoder.encoders.1.%s.weight" % part in expected, part
    if y["encoder"] == "e_branchformer":
        assert "encoder.encoders.0.feed_forward_macaron.w_1.weight" in expected
    assert {k for k, (dt, _) in b.items() if dt == "I8"} == expected
    assert set(b) == set(a) | {k + "_scale" for k in expected}
    for k in ("encoder.encoders.0.cgmlp.csgu.conv.weight",
              "encoder.encoders.0.pooling_proj1.weight",
              "encoder.encoders.0.depthwise_conv_fusion.weight"):
        if k in a:
            assert b[k] == a[k] and a[k][0] == "F32", k
