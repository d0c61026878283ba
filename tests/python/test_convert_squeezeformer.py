"""tools/convert.py for WeNet's `squeezeformer` encoder: the model.json encoder keys
(docs/model-format.md), WeNet's tensor names kept, the positional tables (encoder_dim wide for the
encoder, output_size wide for the decoders with final_proj), the refusals, and which of the new
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
from u2ref.modules import make_pe_table  # noqa: E402

# Only keys WeNet's SqueezeformerEncoder constructor accepts.
COMMON = {"encoder_dim": 32, "output_size": 32, "attention_heads": 4, "num_blocks": 4,
          "reduce_idx": 1, "recover_idx": 3, "feed_forward_expansion_factor": 2,
          "cnn_module_kernel": 5}


def sq_yaml(decoder="bitransformer", **enc):
    y = new_yaml()
    y["encoder"] = "squeezeformer"
    y["encoder_conf"] = dict(COMMON, **enc)
    if decoder == "transformer":
        y["decoder"] = "transformer"
        y["decoder_conf"].pop("r_num_blocks")
        y["model_conf"]["reverse_weight"] = 0.0
    return y


def convert_dir(tmp_path, y, name="c", **kw):
    d = write_dir(str(tmp_path / name), y, make_sd(y), units_new())
    out = str(tmp_path / (name + "_out"))
    return convert.convert(os.path.join(d, "train.yaml"), os.path.join(d, "final.pt"),
                           os.path.join(d, "units.txt"), out, os.path.join(d, "global_cmvn"),
                           **kw), out


def test_squeezeformer_model_json(tmp_path):
    doc, out = convert_dir(tmp_path, sq_yaml(time_reduction_layer_type="conv1d"))
    with open(os.path.join(out, "model.json")) as f:
        assert json.load(f)["encoder"] == doc["encoder"]
    assert doc["encoder"] == {
        "type": "squeezeformer", "encoder_dim": 32, "output_size": 32, "attention_heads": 4,
        "num_blocks": 4, "reduce_idx": [1], "recover_idx": [3],
        "feed_forward_expansion_factor": 2, "dw_stride": False, "pos_enc_layer_type": "rel_pos",
        "time_reduction_layer_type": "conv1d", "do_rel_shift": True, "cnn_module_kernel": 5,
        "cnn_norm_type": "batch_norm", "causal": False, "adaptive_scale": True,
        "activation_type": "swish", "normalize_before": False, "use_dynamic_chunk": False,
        "static_chunk_size": 0, "concat_after": False,
        # the keys every encoder has
        "linear_units": 64, "input_layer": "dw_conv2d4", "selfattention_layer_type": "rel_selfattn",
        "norm_eps": 1e-5, "conv_norm_eps": 1e-5, "final_norm": False, "macaron_style": False,
        "use_cnn_module": True, "cnn_module_norm": "batch_norm"}
    assert doc["decoding"]["decoding_chunk_size"] == -1


def test_squeezeformer_u2pp_model_json(tmp_path):
    y = sq_yaml(output_size=24, reduce_idx=[1, 2], recover_idx=[2, 3],
                time_reduction_layer_type="stream", causal=True, cnn_module_kernel=4,
                do_rel_shift=False, cnn_norm_type="layer_norm", adaptive_scale=False,
                dw_stride=True, use_dynamic_chunk=True, activation_type="relu")
    doc, _ = convert_dir(tmp_path, y)
    e = doc["encoder"]
    assert (e["encoder_dim"], e["output_size"], e["reduce_idx"], e["recover_idx"]) == \
        (32, 24, [1, 2], [2, 3])
    assert (e["time_reduction_layer_type"], e["causal"], e["do_rel_shift"], e["cnn_norm_type"],
            e["cnn_module_norm"], e["adaptive_scale"], e["dw_stride"], e["activation_type"],
            e["use_dynamic_chunk"], e["cnn_module_kernel"]) == \
        ("stream", True, False, "layer_norm", "layer_norm", False, True, "relu", True, 4)
    assert doc["decoding"]["decoding_chunk_size"] == 16


def test_decoding_chunk_is_a_multiple_of_the_deepest_reduction(tmp_path):
    # Streaming is exact for chunks that are multiples of 2^(reductions open at once): 16 unless
    # they nest five deep.
    doc, _ = convert_dir(tmp_path, sq_yaml(num_blocks=10, reduce_idx=[0, 1, 2, 3, 4],
                                           recover_idx=[5, 6, 7, 8, 9], causal=True,
                                           time_reduction_layer_type="stream", do_rel_shift=False,
                                           use_dynamic_chunk=True), "deep")
    assert doc["decoding"]["decoding_chunk_size"] == 32


@pytest.mark.parametrize("reduce_idx,recover_idx,expected", [
    (None, None, ([], [])),
    (None, 3, ([], [])),  # WeNet never reduces, so it never recovers either
    ([], None, ([], [])),
    ([], [], ([], [])),
    (2, 2, ([2], [2])),  # reduced and recovered before the same layer
    ([0, 1], [2, 3], ([0, 1], [2, 3])),  # nested
])
def test_reduce_recover_indices(tmp_path, reduce_idx, recover_idx, expected):
    doc, _ = convert_dir(tmp_path, sq_yaml(reduce_idx=reduce_idx, recover_idx=recover_idx))
    assert (doc["encoder"]["reduce_idx"], doc["encoder"]["recover_idx"]) == expected


@pytest.mark.parametrize("y", [
    sq_yaml(),
    sq_yaml(output_size=24, time_reduction_layer_type="stream", causal=True, dw_stride=True,
            do_rel_shift=False, cnn_norm_type="layer_norm", use_dynamic_chunk=True),
    sq_yaml(decoder="transformer", output_size=48),
], ids=["conv1d", "stream_final_proj", "transformer_decoder_final_proj"])
def test_converted_dir_keeps_wenet_names_and_numbers(tmp_path, y):
    sd = make_sd(y)
    d = write_dir(str(tmp_path / "c"), y, sd, units_new())
    run_convert(d, str(tmp_path / "o"))
    t = load_file(str(tmp_path / "o" / "model.safetensors"))
    for k, v in sd.items():
        if k.endswith(".pe") or "num_batches_tracked" in k:
            continue
        assert torch.equal(t[k], v), k
    E, D = y["encoder_conf"]["encoder_dim"], y["encoder_conf"]["output_size"]
    for k in ("encoder.embed.pw_conv.weight", "encoder.embed.dw_conv.weight",
              "encoder.embed.input_proj.0.weight", "encoder.preln.weight",
              "encoder.encoders.0.self_attn.ada_scale", "encoder.encoders.0.ffn1.ada_bias",
              "encoder.encoders.3.conv_module.ada_scale", "encoder.encoders.2.layer_norm4.bias",
              "encoder.time_reduction_layer.dw_conv.weight", "encoder.time_recover_layer.weight"):
        assert k in t, k
    assert ("encoder.final_proj.weight" in t) == (D != E)
    # The encoder's table is encoder_dim wide; with final_proj the decoders' (output_size wide,
    # another sinusoid) is kept once, under the (left) decoder's name.
    n = t["encoder.embed.pos_enc.pe"].shape[1]
    assert torch.equal(t["encoder.embed.pos_enc.pe"], make_pe_table(E, n))
    dkey = "decoder.left_decoder.embed.1.pe" if y["decoder"] == "bitransformer" else \
        "decoder.embed.1.pe"
    pes = sorted(k for k in t if k.endswith(".pe"))
    if D != E:
        assert pes == sorted(["encoder.embed.pos_enc.pe", dkey])
        assert torch.equal(t[dkey], make_pe_table(D, n))
    else:
        assert pes == ["encoder.embed.pos_enc.pe"]
    a = U2Model.from_checkpoint(normalize_config(y), dict(sd, **{
        "encoder.global_cmvn.mean": t["encoder.global_cmvn.mean"],
        "encoder.global_cmvn.istd": t["encoder.global_cmvn.istd"]}))
    b = U2Model.from_checkpoint(normalize_config(y), t)
    x = torch.randn(1, 90, 80)
    with torch.no_grad():
        ea, eb = a.encode(x, torch.tensor([90]))[0], b.encode(x, torch.tensor([90]))[0]
        assert ea.shape == (1, 21, D) and torch.equal(ea, eb)
        assert torch.equal(a.forward_attention_decoder([[3, 4]], ea)[0],
                           b.forward_attention_decoder([[3, 4]], eb)[0])


def test_float16_keeps_the_tables_float32(tmp_path):
    doc, out = convert_dir(tmp_path, sq_yaml(output_size=24), dtype="float16")
    h = header_dtypes(os.path.join(out, "model.safetensors"))
    assert h["encoder.embed.pos_enc.pe"][0] == "F32"
    assert h["decoder.left_decoder.embed.1.pe"][0] == "F32"
    assert h["encoder.encoders.0.ffn1.w_1.weight"][0] == "F16"


def mutated(**enc):
    y = sq_yaml()
    y["encoder_conf"].update(enc)
    return y


@pytest.mark.parametrize("y,key,value", [
    (mutated(pos_enc_layer_type="abs_pos"), "pos_enc_layer_type", "abs_pos"),
    (mutated(time_reduction_layer_type="conv2d"), "time_reduction_layer_type", "conv2d"),
    (mutated(normalize_before=True), "normalize_before", "True"),
    (mutated(concat_after=True), "concat_after", "True"),
    (mutated(cnn_norm_type="rms_norm"), "cnn_norm_type", "rms_norm"),
    (mutated(activation_type="gelu"), "activation_type", "gelu"),
    (mutated(dw_stride=1), "dw_stride", "1"),
    (mutated(cnn_module_kernel=4), "cnn_module_kernel", "4"),
    (mutated(attention_heads=3), "attention_heads", "3"),
    (mutated(recover_idx=None), "recover_idx", "None"),
    (mutated(reduce_idx=[1, 2], recover_idx=3), "recover_idx", "3"),
    (mutated(reduce_idx=2, recover_idx=1), "recover_idx", "1"),
    (mutated(reduce_idx=[0, 2], recover_idx=[1, 3]), "recover_idx", "[1, 3]"),
    (mutated(reduce_idx=4), "reduce_idx", "4"),
    (mutated(reduce_idx=[2, 1], recover_idx=[3, 3]), "reduce_idx", "[2, 1]"),
    (mutated(reduce_idx="1"), "reduce_idx", "'1'"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_refusals_name_key_and_value(tmp_path, y, key, value):
    # The checkpoint is a valid one (from the unmutated yaml where the mutation breaks the model):
    # the refusal must come from the configuration check, before any tensor.
    try:
        sd = make_sd(y)
    except (ValueError, AssertionError, RuntimeError, TypeError, IndexError):
        sd = make_sd(sq_yaml())
    d = write_dir(str(tmp_path / "r"), y, sd, units_new())
    r = run_cli(d, str(tmp_path / "o"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    line = r.stderr.strip()
    assert "\n" not in line and key in line and value in line, line
    assert not os.path.exists(tmp_path / "o" / "model.safetensors")


def expected_int8(y):
    """The encoder blocks' linear layers and pointwise convolutions (linear layers over
    channels), the time reduction's pointwise conv, time_recover_layer, final_proj, ctc_lo and
    the decoder's linears; not the subsampling (input_proj)."""
    m = U2Model(normalize_config(y))
    names = set()
    for name, mod in m.named_modules():
        if name.startswith("encoder.embed"):
            continue
        if isinstance(mod, torch.nn.Linear) or (isinstance(mod, torch.nn.Conv1d) and
                                                mod.kernel_size == (1,) and mod.groups == 1):
            names.add(name + ".weight")
    return names


def test_int8_takes_the_new_linear_layers_and_leaves_the_convs(tmp_path):
    y = sq_yaml(output_size=24, time_reduction_layer_type="stream", causal=True)
    _, f32 = convert_dir(tmp_path, y, "f")
    _, q8 = convert_dir(tmp_path, y, "q", quantize="int8")
    a = header_dtypes(os.path.join(f32, "model.safetensors"))
    b = header_dtypes(os.path.join(q8, "model.safetensors"))
    expected = expected_int8(y)
    for k in ("encoder.encoders.1.ffn1.w_1.weight", "encoder.encoders.1.ffn2.w_2.weight",
              "encoder.encoders.0.self_attn.linear_pos.weight",
              "encoder.encoders.0.conv_module.pointwise_conv1.weight",
              "encoder.time_reduction_layer.pw_conv.weight", "encoder.time_recover_layer.weight",
              "encoder.final_proj.weight"):
        assert k in expected, k
    assert {k for k, (dt, _) in b.items() if dt == "I8"} == expected
    assert set(b) == set(a) | {k + "_scale" for k in expected}
    for k in ("encoder.embed.input_proj.0.weight", "encoder.embed.dw_conv.weight",
              "encoder.time_reduction_layer.dw_conv.weight",
              "encoder.encoders.0.conv_module.depthwise_conv.weight",
              "encoder.encoders.0.self_attn.ada_scale"):
        assert b[k] == a[k] and a[k][0] == "F32", k


def test_normalized_config_is_idempotent():
    c = normalize_config(sq_yaml(output_size=24, cnn_norm_type="layer_norm"))
    assert normalize_config(copy.deepcopy(c)) == c
    ec = c["encoder_conf"]
    assert (ec["linear_units"], ec["cnn_module_norm"], ec["input_layer"]) == \
        (64, "layer_norm", "dw_conv2d4")
