"""tools/convert.py and u2ref for WeNet's Efficient Conformer (`encoder: efficientConformer`): the
model.json encoder keys (docs/model-format.md), WeNet's tensor names kept, the refusals, which
tensors `--quantize int8` stores as int8, and the u2ref properties the fixtures rely on (streaming
chunk sizes, the padded-batch AvgPool quirk)."""

import copy
import json
import os
import sys

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_convert import (convert, make_sd, new_yaml, run_cli, units_new,  # noqa: E402
                          write_dir)
from test_convert_quantize import header_dtypes  # noqa: E402

from u2ref.config import ConfigError, normalize_config  # noqa: E402
from u2ref.efficient_conformer import block_kernels, streaming_chunk_multiple  # noqa: E402
from u2ref.model import U2Model  # noqa: E402

COMMON = {"output_size": 32, "attention_heads": 4, "linear_units": 48, "num_blocks": 4,
          "input_layer": "conv2d", "cnn_module_norm": "layer_norm"}


def ec_yaml(efficient=None, **enc):
    """A WeNet-style yaml: the efficient keys under encoder_conf.efficient_conf, as the recipes."""
    y = new_yaml()
    y["encoder"] = "efficientConformer"
    y["encoder_conf"] = dict(COMMON, **enc)
    y["encoder_conf"]["efficient_conf"] = dict(
        {"stride_layer_idx": [1], "stride": [2], "group_layer_idx": [0, 1], "group_size": 3,
         "stride_kernel": True}, **(efficient or {}))
    return y


def with_concat_linear(sd, y):
    """WeNet's StrideConformerEncoderLayer owns an unused concat_linear (Linear 2D -> D)."""
    sd = dict(sd)
    D = y["encoder_conf"]["output_size"]
    for i in normalize_config(y)["encoder_conf"]["stride_layer_idx"]:
        sd["encoder.encoders.%d.concat_linear.weight" % i] = torch.randn(D, 2 * D)
        sd["encoder.encoders.%d.concat_linear.bias" % i] = torch.randn(D)
    return sd


def convert_dir(tmp_path, y, name="c", **kw):
    d = write_dir(str(tmp_path / name), y, with_concat_linear(make_sd(y), y), units_new())
    out = str(tmp_path / (name + "_out"))
    return convert.convert(os.path.join(d, "train.yaml"), os.path.join(d, "final.pt"),
                           os.path.join(d, "units.txt"), out, os.path.join(d, "global_cmvn"),
                           **kw), out


def test_model_json_v1_style(tmp_path):
    # WeNet ignores the keys its constructor does not take (norm_eps, selfattention_layer_type):
    # model.json holds what WeNet actually builds.
    y = ec_yaml(causal=False, cnn_module_kernel=15, use_dynamic_chunk=False, norm_eps=1e-12,
                selfattention_layer_type="selfattn")
    doc, out = convert_dir(tmp_path, y)
    with open(os.path.join(out, "model.json")) as f:
        assert json.load(f)["encoder"] == doc["encoder"]
    assert doc["encoder"] == {
        "type": "efficientConformer", "output_size": 32, "attention_heads": 4,
        "linear_units": 48, "num_blocks": 4, "input_layer": "conv2d",
        "pos_enc_layer_type": "rel_pos", "selfattention_layer_type": "rel_selfattn",
        "normalize_before": True, "final_norm": True, "macaron_style": True,
        "use_cnn_module": True, "cnn_module_kernel": 15, "causal": False,
        "cnn_module_norm": "layer_norm", "activation_type": "swish", "norm_eps": 1e-5,
        "conv_norm_eps": 1e-5, "use_dynamic_chunk": False, "static_chunk_size": 0,
        "stride_layer_idx": [1], "stride": [2], "group_layer_idx": [0, 1], "group_size": 3,
        "stride_kernel": True, "cnn_module_kernels": [15, 15, 7, 7]}
    assert doc["decoding"]["decoding_chunk_size"] == -1
    t = load_file(os.path.join(out, "model.safetensors"))
    assert not [k for k in t if "concat_linear" in k]
    assert t["encoder.encoders.0.self_attn.pos_bias_u"].shape == (4, 8 * 3)  # grouped: (H, g*dk)
    assert t["encoder.encoders.2.self_attn.pos_bias_u"].shape == (4, 8)
    assert t["encoder.encoders.1.conv_module.depthwise_conv.weight"].shape == (32, 1, 15)
    assert t["encoder.encoders.2.conv_module.depthwise_conv.weight"].shape == (32, 1, 7)


def test_model_json_v2_style_and_default_chunk(tmp_path):
    # Two strides, kernels kept, ints instead of lists (WeNet accepts both), no_pos: plain
    # attention in the non-grouped blocks. Exact streaming needs chunks that are multiples of
    # lcm(2*2, 3*1, 3*2) = 12: the default decoding chunk is 24, the first >= 16.
    y = ec_yaml({"stride_layer_idx": [1, 2], "stride": [2, 2], "group_layer_idx": [1, 2],
                 "stride_kernel": False}, causal=True, cnn_module_kernel=8,
                use_dynamic_chunk=True, pos_enc_layer_type="no_pos", macaron_style=False,
                input_layer="conv2d2")
    doc, out = convert_dir(tmp_path, y)
    e = doc["encoder"]
    assert (e["stride_layer_idx"], e["stride"], e["group_layer_idx"]) == ([1, 2], [2, 2], [1, 2])
    assert (e["cnn_module_kernels"], e["stride_kernel"], e["macaron_style"]) == \
        ([8, 8, 8, 8], False, False)
    assert e["selfattention_layer_type"] == "selfattn"
    assert doc["decoding"]["decoding_chunk_size"] == 24
    t = load_file(os.path.join(out, "model.safetensors"))
    assert "encoder.encoders.1.self_attn.linear_pos.weight" in t  # grouped: always rel-pos
    assert "encoder.encoders.0.self_attn.linear_pos.weight" not in t
    y = ec_yaml(causal=True, use_dynamic_chunk=True)
    y["encoder_conf"].pop("efficient_conf")
    y["encoder_conf"].update(stride_layer_idx=2, stride=2, group_layer_idx=3, group_size=2)
    doc, _ = convert_dir(tmp_path, y, "ints")
    e = doc["encoder"]
    assert (e["stride_layer_idx"], e["stride"], e["group_layer_idx"], e["group_size"]) == \
        ([2], [2], [3], 2)
    assert e["cnn_module_kernels"] == [15, 15, 15, 7]
    assert doc["decoding"]["decoding_chunk_size"] == 16  # lcm(2, 2*2) = 4


def test_wenet_defaults():
    c = normalize_config({"input_dim": 80, "output_dim": 10, "encoder": "efficientConformer"})
    ec = c["encoder_conf"]
    assert (ec["stride_layer_idx"], ec["stride"], ec["group_layer_idx"], ec["group_size"],
            ec["stride_kernel"], ec["num_blocks"], ec["cnn_module_kernel"],
            ec["macaron_style"]) == ([3], [2], [0, 1, 2, 3], 3, True, 6, 15, True)
    assert block_kernels(ec) == [15, 15, 15, 15, 7, 7]
    assert streaming_chunk_multiple(ec) == 6
    assert normalize_config(c) == c  # idempotent
    with pytest.raises(ConfigError, match="efficient_conf.group_size"):
        y = ec_yaml(group_size=3)
        normalize_config(y)


def mutated(base, **enc):
    y = copy.deepcopy(base)
    eff = y["encoder_conf"]["efficient_conf"]
    for k, v in enc.items():
        (eff if k in eff else y["encoder_conf"])[k] = v
    return y


@pytest.mark.parametrize("y,key,value", [
    (mutated(ec_yaml(), stride_layer_idx=[4]), "stride_layer_idx", "[4]"),
    (mutated(ec_yaml(), stride_layer_idx=[2, 1], stride=[2, 2]), "stride_layer_idx", "[2, 1]"),
    (mutated(ec_yaml(), stride=[2, 2]), "stride", "[2, 2]"),
    (mutated(ec_yaml(), stride=[0]), "stride", "[0]"),
    (mutated(ec_yaml(), group_layer_idx=[0, 7]), "group_layer_idx", "[0, 7]"),
    (mutated(ec_yaml(), group_size=0), "group_size", "0"),
    (mutated(ec_yaml(), use_cnn_module=False), "use_cnn_module", "False"),
    (mutated(ec_yaml(), causal=False, cnn_module_kernel=13), "cnn_module_kernel", "13"),
    (mutated(ec_yaml(), causal=True, cnn_module_kernel=3, stride=[4]), "cnn_module_kernel", "3"),
    (mutated(ec_yaml(), normalize_before=False), "normalize_before", "False"),
    (mutated(ec_yaml(), input_layer="dwconv2d4"), "input_layer", "dwconv2d4"),
    (mutated(ec_yaml(), activation_type="gelu"), "activation_type", "gelu"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_refusals_name_key_and_value(tmp_path, y, key, value):
    # The checkpoint is a valid one (from the unmutated yaml where the mutation breaks the model):
    # the refusal must come from the configuration check, before any tensor.
    try:
        sd = make_sd(y)
    except (ValueError, AssertionError, RuntimeError, KeyError, IndexError,
            ZeroDivisionError):
        sd = make_sd(ec_yaml())
    d = write_dir(str(tmp_path / "r"), y, sd, units_new())
    r = run_cli(d, str(tmp_path / "o"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    line = r.stderr.strip()
    assert "\n" not in line and key in line and value in line, line
    assert not os.path.exists(tmp_path / "o" / "model.safetensors")


def test_efficient_conf_key_given_twice_is_refused(tmp_path):
    y = ec_yaml(group_size=3)
    d = write_dir(str(tmp_path / "r"), y, make_sd(ec_yaml()), units_new())
    r = run_cli(d, str(tmp_path / "o"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "efficient_conf.group_size" in r.stderr.strip()


def test_converted_dir_keeps_wenet_names_and_numbers(tmp_path):
    y = ec_yaml({"stride_layer_idx": [0, 2], "stride": [2, 2], "group_layer_idx": [0, 3]},
                causal=True, cnn_module_kernel=9, use_dynamic_chunk=True)
    sd = with_concat_linear(make_sd(y), y)
    d = write_dir(str(tmp_path / "c"), y, sd, units_new())
    convert.convert(os.path.join(d, "train.yaml"), os.path.join(d, "final.pt"),
                    os.path.join(d, "units.txt"), str(tmp_path / "o"),
                    os.path.join(d, "global_cmvn"))
    t = load_file(str(tmp_path / "o" / "model.safetensors"))
    for k, v in sd.items():
        if k.endswith(".pe") or "num_batches_tracked" in k or "concat_linear" in k:
            continue
        assert torch.equal(t[k], v), k
    b = U2Model.from_checkpoint(normalize_config(y), t)
    x = torch.randn(1, 90, 80)
    with torch.no_grad():
        enc, mask, layers = b.encode(x, torch.tensor([90]), return_layers=True)
    # conv2d: 90 -> 21 frames; block 0 strides to 11, block 2 to 6.
    assert [l.size(1) for l in layers] == [21, 11, 11, 6, 6]
    assert enc.size(1) == 6 and int(mask.sum()) == 6


def expected_int8(y):
    """Every nn.Linear of the encoder blocks (grouped attention included), the conv modules'
    pointwise convs, ctc_lo and the decoder's linears (found from the modules)."""
    m = U2Model(normalize_config(y))
    names = set()
    for name, mod in m.named_modules():
        if name.startswith("encoder.embed"):
            continue
        if isinstance(mod, torch.nn.Linear) or (isinstance(mod, torch.nn.Conv1d) and
                                                mod.kernel_size == (1,)):
            names.add(name + ".weight")
    return names


def test_int8_takes_the_linear_layers_and_leaves_the_depthwise_convs(tmp_path):
    y = ec_yaml(causal=True)
    _, f32 = convert_dir(tmp_path, y, "f")
    _, q8 = convert_dir(tmp_path, y, "q", quantize="int8")
    a = header_dtypes(os.path.join(f32, "model.safetensors"))
    b = header_dtypes(os.path.join(q8, "model.safetensors"))
    expected = expected_int8(y)
    for k in ("encoder.encoders.1.self_attn.linear_q.weight",
              "encoder.encoders.1.self_attn.linear_pos.weight",
              "encoder.encoders.1.conv_module.pointwise_conv1.weight",
              "encoder.encoders.1.feed_forward_macaron.w_1.weight"):
        assert k in expected, k
    assert {k for k, (dt, _) in b.items() if dt == "I8"} == expected
    assert set(b) == set(a) | {k + "_scale" for k in expected}
    for k in ("encoder.encoders.1.conv_module.depthwise_conv.weight",
              "encoder.encoders.1.self_attn.pos_bias_u"):
        assert b[k] == a[k] and a[k][0] == "F32", k


# ----------------------------------------------------------------------------- u2ref properties
def small_model(efficient, **enc):
    torch.manual_seed(3)
    y = ec_yaml(efficient, **enc)
    m = U2Model(normalize_config(y))
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn(p.shape))
    return m.eval()


def test_streaming_equals_chunk_masked_forward_for_multiples_only():
    m = small_model({"stride_layer_idx": [1, 2], "stride": [2, 2], "group_layer_idx": [1, 2]},
                    causal=True, cnn_module_kernel=8, use_dynamic_chunk=True,
                    input_layer="conv2d2")
    assert streaming_chunk_multiple(m.encoder.conf) == 12
    x = torch.randn(1, 131, 80)
    xl = torch.tensor([131])
    with torch.no_grad():
        for C, L in ((12, -1), (12, 1), (24, -1)):
            s, _ = m.encoder.forward_chunk_by_chunk(x, C, L)
            e, _ = m.encode(x, xl, C, L)
            assert (s - e).abs().max() < 1e-5, (C, L)
        # 8: a multiple of the strides, not of 3 * 2: groups straddle chunk boundaries.
        s, _ = m.encoder.forward_chunk_by_chunk(x, 8, -1)
        e, _ = m.encode(x, xl, 8, -1)
        assert s.shape == e.shape and (s - e).abs().max() > 1e-3
        # 6: not a multiple of the strides: streaming does not even give the same frame count.
        s, _ = m.encoder.forward_chunk_by_chunk(x, 6, -1)
        e, _ = m.encode(x, xl, 6, -1)
        assert s.size(1) != e.size(1)


def test_padded_batch_differs_at_an_odd_length_like_wenet():
    """The AvgPool residual of a stride layer does not see the padding mask (WeNet's): a padded
    row enters the last window of a shorter utterance with an odd number of frames."""
    m = small_model({"stride_layer_idx": [1], "stride": [2], "group_layer_idx": []},
                    causal=True)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(99, 80, generator=g), torch.randn(79, 80, generator=g)  # 24 / 19 frames
    batch = torch.nn.utils.rnn.pad_sequence([a, b], True)
    with torch.no_grad():
        eb, mb, lb = m.encode(batch, torch.tensor([99, 79]), return_layers=True)
        e0, _ = m.encode(a[None], torch.tensor([99]))
        _, _, l1 = m.encode(b[None], torch.tensor([79]), return_layers=True)
    assert mb.squeeze(1).sum(1).tolist() == [12, 10]
    assert (eb[0] - e0[0]).abs().max() < 1e-5  # the longest utterance has no padded row
    stride_out_b, alone = lb[2][1], l1[2][0]  # block 1 (the stride layer), 10 frames
    assert (stride_out_b[:9] - alone[:9]).abs().max() < 1e-5
    assert (stride_out_b[9] - alone[9]).abs().max() > 1e-3  # window (18, padded 19) vs (18)


def test_chunk_masked_forward_reads_the_next_chunk_off_the_grid():
    """Why off-grid chunk sizes cannot stream exactly: with C = 8 (a multiple of the strides,
    not of 3 * 2) the chunk-masked forward's first chunk changes when only later frames change;
    with C = 12 it does not."""
    m = small_model({"stride_layer_idx": [1, 2], "stride": [2, 2], "group_layer_idx": [1, 2]},
                    causal=True, cnn_module_kernel=8, use_dynamic_chunk=True,
                    input_layer="conv2d2")
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 121, 80, generator=g)
    xl = torch.tensor([121])
    with torch.no_grad():
        for C, changes in ((8, True), (12, False)):
            # conv2d2: embed frame j reads fbank frames 2j..2j+2, so frames >= 2C + 1 reach only
            # embed frames >= C, i.e. the later chunks; the first chunk is C / 4 output frames.
            y = x.clone()
            y[:, 2 * C + 1:] += torch.randn(y[:, 2 * C + 1:].shape, generator=g)
            a, _ = m.encode(x, xl, C, -1)
            b, _ = m.encode(y, xl, C, -1)
            first = (a[0, :C // 4] - b[0, :C // 4]).abs().max().item()
            assert (first > 1e-3) == changes, (C, first)


# ----------------------------------------------------------------------------- the fixtures
FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "fixtures")


def load_fixture(variant):
    import yaml
    d = os.path.join(FIXTURES, variant)
    with open(os.path.join(d, "model", "train.yaml")) as f:
        y = yaml.safe_load(f)
    t = {k: v.float() if v.is_floating_point() else v
         for k, v in load_file(os.path.join(d, "model", "model.safetensors")).items()}
    with open(os.path.join(d, "ref.json")) as f:
        rj = json.load(f)
    return U2Model.from_checkpoint(normalize_config(y), t), \
        load_file(os.path.join(d, "ref.safetensors")), rj


@pytest.mark.parametrize("variant", ["efficient_conformer_v1_noncausal",
                                     "efficient_conformer_v2_stream"])
def test_fixture_layers_at_their_own_rates(variant):
    model, ref, rj = load_fixture(variant)
    n = model.encoder.num_blocks
    with torch.no_grad():
        for u, utt in enumerate(rj["utts"]):
            x = ref["u%d.fbank" % u].unsqueeze(0)
            _, _, layers = model.encode(x, torch.tensor([x.size(1)]), return_layers=True)
            T = layers[0].size(1)
            assert ref["u%d.embed" % u].shape[0] == T
            for j in range(n):
                f = model.encoder.downsampling_factor(j + 1)
                assert ref["u%d.layer%d" % (u, j)].shape[0] == -(-T // f)
                assert (layers[j + 1][0] - ref["u%d.layer%d" % (u, j)]).abs().max() < 1e-5
            assert utt["num_enc_frames"] == -(-T // model.encoder.downsampling_factor(n + 1))


def test_fixture_streaming_equals_its_chunk_references():
    model, ref, rj = load_fixture("efficient_conformer_v2_stream")
    assert rj["chunks"] == [[12, -1], [12, 1], [24, -1]]
    assert streaming_chunk_multiple(model.encoder.conf) == 12
    with torch.no_grad():
        for u in range(len(rj["utts"])):
            x = ref["u%d.fbank" % u].unsqueeze(0)
            for C, L in rj["chunks"]:
                s, _ = model.encoder.forward_chunk_by_chunk(x, C, L)
                full = ref["u%d.chunk%d_left%d.encoder_out" % (u, C, L)]
                assert s.shape[1] == full.shape[0]
                assert (s[0] - full).abs().max() < 1e-5, (u, C, L)
    # The chunk mask matters: (12, 1) differs from full context.
    assert (ref["u2.chunk12_left1.encoder_out"] - ref["u2.encoder_out"]).abs().max() > 1e-2
