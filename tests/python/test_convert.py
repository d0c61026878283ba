"""tools/convert.py: layouts, CMVN formats, refusals, float16 output, sos/eos rules."""

import copy
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = os.path.join(ROOT, "tools")
sys.path.insert(0, TOOLS)

import convert  # noqa: E402
from u2ref.cmvn import write_json_cmvn, write_kaldi_cmvn  # noqa: E402
from u2ref.config import normalize_config  # noqa: E402
from u2ref.model import U2Model  # noqa: E402
from u2ref.modules import make_pe_table  # noqa: E402

V = 12
I = 80


def new_yaml(**enc):
    ec = {"output_size": 32, "attention_heads": 4, "linear_units": 48, "num_blocks": 2,
          "cnn_module_kernel": 5, "causal": True, "cnn_module_norm": "layer_norm"}
    ec.update(enc)
    return {"input_dim": I, "output_dim": V, "encoder": "conformer", "encoder_conf": ec,
            "decoder": "bitransformer",
            "decoder_conf": {"attention_heads": 4, "linear_units": 48, "num_blocks": 1,
                             "r_num_blocks": 1},
            "model_conf": {"ctc_weight": 0.3, "reverse_weight": 0.4, "lsm_weight": 0.1},
            "cmvn": "global_cmvn", "cmvn_conf": {"cmvn_file": "global_cmvn", "is_json_cmvn": True},
            "dataset_conf": {"fbank_conf": {"num_mel_bins": I, "frame_shift": 10,
                                            "frame_length": 25}},
            "tokenizer_conf": {"special_tokens": {"<blank>": 0, "<unk>": 1, "<sos>": 2,
                                                  "<eos>": 2}}}


def to_old_layout(y):
    o = copy.deepcopy(y)
    cc = o.pop("cmvn_conf")
    o.pop("cmvn")
    o.pop("dataset_conf")
    o.pop("tokenizer_conf", None)
    o["cmvn_file"] = cc["cmvn_file"]
    o["is_json_cmvn"] = cc["is_json_cmvn"]
    o["collate_conf"] = {"feature_extraction_conf": {"feature_type": "fbank", "mel_bins": I,
                                                     "frame_shift": 10, "frame_length": 25}}
    o["encoder_conf"]["concat_after"] = False
    return o


def stats(seed=0):
    rng = np.random.RandomState(seed)
    frames = rng.randn(200, I) * 3 + 10
    frames[:, 5] = 7.0  # a constant feature: variance 0 -> the 1e-20 floor
    return frames.sum(0), (frames ** 2).sum(0), frames.shape[0]


def write_dir(d, y, sd, units, cmvn="json", seed=0):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "train.yaml"), "w") as f:
        yaml.safe_dump(y, f)
    torch.save(sd, os.path.join(d, "final.pt"))
    s, q, n = stats(seed)
    (write_json_cmvn if cmvn == "json" else write_kaldi_cmvn)(os.path.join(d, "global_cmvn"), s,
                                                               q, n)
    with open(os.path.join(d, "units.txt"), "w") as f:
        for i, u in enumerate(units):
            f.write("%s %d\n" % (u, i))
    return d


def units_new():
    return ["<blank>", "<unk>", "<sos/eos>"] + ["t%d" % i for i in range(V - 3)]


def make_sd(y, with_cmvn=False, seed=0):
    torch.manual_seed(seed)
    m = U2Model(normalize_config(y))
    sd = {k: v.clone() for k, v in m.state_dict().items()}
    if not with_cmvn:
        sd = {k: v for k, v in sd.items() if "global_cmvn" not in k}
    return sd


def run_convert(d, out, dtype="float32", cmvn=True):
    return convert.convert(os.path.join(d, "train.yaml"), os.path.join(d, "final.pt"),
                           os.path.join(d, "units.txt"), out,
                           os.path.join(d, "global_cmvn") if cmvn else None, dtype)


def run_cli(d, out):
    cmd = [sys.executable, os.path.join(TOOLS, "convert.py"), "--config",
           os.path.join(d, "train.yaml"), "--checkpoint", os.path.join(d, "final.pt"), "--cmvn",
           os.path.join(d, "global_cmvn"), "--units", os.path.join(d, "units.txt"), "--out", out]
    return subprocess.run(cmd, capture_output=True, text=True)


def expected_cmvn(seed=0):
    s, q, n = stats(seed)
    mean = s / n
    var = np.maximum(q / n - mean ** 2, 1e-20)
    return mean.astype(np.float32), (1.0 / np.sqrt(var)).astype(np.float32)


def test_old_and_new_layout_give_the_same_model(tmp_path):
    y = new_yaml()
    sd = make_sd(y)
    new_dir = write_dir(str(tmp_path / "new"), y, sd, units_new())
    old_sd = {k: v for k, v in sd.items() if not k.endswith(".pe")}
    D = 32
    for i in range(2):
        old_sd["encoder.encoders.%d.concat_linear.weight" % i] = torch.randn(D, 2 * D)
        old_sd["encoder.encoders.%d.concat_linear.bias" % i] = torch.randn(D)
    old_y = to_old_layout(y)
    old_y["tokenizer_conf"] = y["tokenizer_conf"]  # same sos/eos source for both
    old_dir = write_dir(str(tmp_path / "old"), old_y, old_sd, units_new())
    a = run_convert(new_dir, str(tmp_path / "out_new"))
    b = run_convert(old_dir, str(tmp_path / "out_old"))
    assert a == b
    ta = load_file(str(tmp_path / "out_new" / "model.safetensors"))
    tb = load_file(str(tmp_path / "out_old" / "model.safetensors"))
    assert sorted(ta) == sorted(tb)
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k
    # Unused tensors dropped, generated pe equals the checkpoint's buffer, CMVN from the file.
    assert not [k for k in ta if "concat_linear" in k or "num_batches_tracked" in k]
    assert [k for k in ta if k.endswith(".pe")] == ["encoder.embed.pos_enc.pe"]
    assert torch.equal(ta["encoder.embed.pos_enc.pe"], sd["encoder.embed.pos_enc.pe"])
    mean, istd = expected_cmvn()
    np.testing.assert_array_equal(ta["encoder.global_cmvn.mean"].numpy(), mean)
    np.testing.assert_allclose(ta["encoder.global_cmvn.istd"].numpy(), istd, rtol=1e-6)
    assert ta["encoder.global_cmvn.istd"][5].item() == pytest.approx(1e10, rel=1e-6)
    doc = json.load(open(tmp_path / "out_new" / "model.json"))
    assert doc["cmvn"] is True and doc["sos_id"] == 2 and doc["eos_id"] == 2
    assert doc["decoding"]["ctc_weight"] == 0.3 and doc["decoding"]["reverse_weight"] == 0.4
    # Rescoring weights tuned on a dev set replace train.yaml's in model.json; bad ones are refused.
    tuned = convert.convert(os.path.join(new_dir, "train.yaml"), os.path.join(new_dir, "final.pt"),
                            os.path.join(new_dir, "units.txt"), str(tmp_path / "out_tuned"),
                            os.path.join(new_dir, "global_cmvn"), ctc_weight=0.7, reverse_weight=0.0,
                            beam_size=4)
    assert tuned["decoding"]["ctc_weight"] == 0.7 and tuned["decoding"]["reverse_weight"] == 0.0
    assert tuned["decoding"]["beam_size"] == 4 and doc["decoding"]["beam_size"] == 10
    vocab = tuned["vocab_size"]
    for bad in (dict(ctc_weight=-1.0), dict(ctc_weight=float("nan")), dict(reverse_weight=1.5),
                dict(beam_size=0), dict(beam_size=vocab + 1), dict(beam_size=2.5)):
        with pytest.raises(convert.ConvertError, match="weight|beam"):
            convert.convert(os.path.join(new_dir, "train.yaml"), os.path.join(new_dir, "final.pt"),
                            os.path.join(new_dir, "units.txt"), str(tmp_path / "out_bad"),
                            os.path.join(new_dir, "global_cmvn"), **bad)
    assert doc["encoder"]["selfattention_layer_type"] == "rel_selfattn"
    assert doc["decoding"]["decoding_chunk_size"] == -1
    for f in ("model.json", "model.safetensors", "units.txt", "train.yaml", "global_cmvn"):
        assert os.path.exists(tmp_path / "out_new" / f)


def test_pe_table_is_the_float32_torch_formula():
    pe = make_pe_table(64)
    assert pe.shape == (1, 5000, 64) and pe.dtype == torch.float32
    p = np.arange(5000)[:, None].astype(np.float64)
    w = np.exp(np.arange(0, 64, 2) * -(math.log(10000.0) / 64))
    # float64 regeneration differs by up to ~5e-4 at large p (spec), much less at small p
    np.testing.assert_allclose(pe[0, :100, 0::2].numpy(), np.sin(p[:100] * w), atol=2e-5)
    np.testing.assert_allclose(pe[0, :, 1::2].numpy(), np.cos(p * w), atol=1e-3)


def test_json_and_kaldi_cmvn_agree(tmp_path):
    y = new_yaml()
    sd = make_sd(y)
    yk = copy.deepcopy(y)
    yk["cmvn_conf"]["is_json_cmvn"] = False
    a = write_dir(str(tmp_path / "j"), y, sd, units_new(), cmvn="json")
    b = write_dir(str(tmp_path / "k"), yk, sd, units_new(), cmvn="kaldi")
    run_convert(a, str(tmp_path / "oj"))
    run_convert(b, str(tmp_path / "ok"))
    ta = load_file(str(tmp_path / "oj" / "model.safetensors"))
    tb = load_file(str(tmp_path / "ok" / "model.safetensors"))
    for k in ("encoder.global_cmvn.mean", "encoder.global_cmvn.istd"):
        assert torch.equal(ta[k], tb[k])
    mean, istd = expected_cmvn()
    np.testing.assert_allclose(tb["encoder.global_cmvn.istd"].numpy(), istd, rtol=1e-6)


def test_checkpoint_cmvn_buffers_win(tmp_path):
    y = new_yaml()
    sd = make_sd(y, with_cmvn=True)
    sd["encoder.global_cmvn.mean"] = torch.full((I,), 0.25)
    sd["encoder.global_cmvn.istd"] = torch.full((I,), 2.0)
    d = write_dir(str(tmp_path / "c"), y, sd, units_new())
    run_convert(d, str(tmp_path / "o"))
    t = load_file(str(tmp_path / "o" / "model.safetensors"))
    assert torch.equal(t["encoder.global_cmvn.mean"], torch.full((I,), 0.25))
    assert torch.equal(t["encoder.global_cmvn.istd"], torch.full((I,), 2.0))


def test_no_cmvn_in_config_or_checkpoint(tmp_path):
    y = new_yaml()
    del y["cmvn"], y["cmvn_conf"]
    d = write_dir(str(tmp_path / "c"), y, make_sd(y), units_new())
    doc = run_convert(d, str(tmp_path / "o"), cmvn=False)
    assert doc["cmvn"] is False
    t = load_file(str(tmp_path / "o" / "model.safetensors"))
    assert "encoder.global_cmvn.mean" not in t


def test_binary_kaldi_cmvn_is_refused(tmp_path):
    y = new_yaml()
    y["cmvn_conf"]["is_json_cmvn"] = False
    d = write_dir(str(tmp_path / "b"), y, make_sd(y), units_new())
    with open(os.path.join(d, "global_cmvn"), "wb") as f:
        f.write(b"\0BDM \x04\x02")
    r = run_cli(d, str(tmp_path / "o"))
    assert r.returncode == 2 and "binary Kaldi" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("mutate,key,value", [
    (lambda y: y.update(encoder="dual_conformer"), "encoder", "dual_conformer"),
    (lambda y: y["encoder_conf"].update(input_layer="linear"), "input_layer", "linear"),
    (lambda y: y["encoder_conf"].update(layer_norm_type="rms_norm"), "layer_norm_type",
     "rms_norm"),
    (lambda y: y["encoder_conf"].update(concat_after=True), "concat_after", "True"),
    (lambda y: y["encoder_conf"].update(normalize_before=False), "normalize_before", "False"),
    (lambda y: y["encoder_conf"].update(activation_type="gelu"), "activation_type", "gelu"),
    (lambda y: y["encoder_conf"].update(conv_inner_factor=4), "conv_inner_factor", "4"),
    (lambda y: y["encoder_conf"].update(pos_enc_layer_type="rope_pos"), "pos_enc_layer_type",
     "rope_pos"),
    (lambda y: y["encoder_conf"].update(selfattention_layer_type="rope_abs_selfattn"),
     "selfattention_layer_type", "rope_abs_selfattn"),
    (lambda y: y["encoder_conf"].update(mlp_type="gated"), "mlp_type", "gated"),
    (lambda y: y["encoder_conf"].update(n_kv_head=2), "n_kv_head", "2"),
    (lambda y: y["encoder_conf"].update(head_dim=32), "head_dim", "32"),
    (lambda y: y["encoder_conf"].update(cnn_module_norm="group_norm"), "cnn_module_norm",
     "group_norm"),
    (lambda y: y["decoder_conf"].update(normalize_before=False), "decoder_conf.normalize_before",
     "False"),
    (lambda y: y["encoder_conf"].update(causal=False, cnn_module_kernel=8), "cnn_module_kernel",
     "8"),
])
def test_refusals_name_key_and_value(tmp_path, mutate, key, value):
    y = new_yaml()
    sd = make_sd(y)
    mutate(y)
    d = write_dir(str(tmp_path / "r"), y, sd, units_new())
    r = run_cli(d, str(tmp_path / "o"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    line = r.stderr.strip()
    assert "\n" not in line and key in line and value in line, line
    assert not os.path.exists(tmp_path / "o" / "model.safetensors")


def test_missing_and_misshaped_tensors_are_refused(tmp_path):
    y = new_yaml()
    sd = make_sd(y)
    sd.pop("encoder.encoders.1.self_attn.linear_q.weight")
    d = write_dir(str(tmp_path / "m"), y, sd, units_new())
    r = run_cli(d, str(tmp_path / "o"))
    assert r.returncode == 2 and "encoder.encoders.1.self_attn.linear_q.weight" in r.stderr
    assert "Traceback" not in r.stderr
    sd = make_sd(y)
    sd["ctc.ctc_lo.weight"] = torch.zeros(V + 1, 32)
    d = write_dir(str(tmp_path / "s"), y, sd, units_new())
    r = run_cli(d, str(tmp_path / "o2"))
    assert r.returncode == 2 and "ctc.ctc_lo.weight" in r.stderr and "(13, 32)" in r.stderr


def test_units_count_must_match_output_dim(tmp_path):
    y = new_yaml()
    d = write_dir(str(tmp_path / "u"), y, make_sd(y), units_new()[:-1])
    r = run_cli(d, str(tmp_path / "o"))
    assert r.returncode == 2 and "output_dim" in r.stderr


def test_float16_output(tmp_path):
    y = new_yaml(cnn_module_norm="batch_norm", causal=False, cnn_module_kernel=5)
    sd = make_sd(y)
    d = write_dir(str(tmp_path / "h"), y, sd, units_new())
    run_convert(d, str(tmp_path / "o"), dtype="float16")
    path = str(tmp_path / "o" / "model.safetensors")
    t = load_file(path)
    w = "encoder.encoders.0.self_attn.linear_q.weight"
    assert t[w].dtype == torch.float16
    assert torch.equal(t[w], sd[w].half())
    for k in ("encoder.embed.pos_enc.pe", "encoder.global_cmvn.mean",
              "encoder.encoders.0.conv_module.norm.running_var"):
        assert t[k].dtype == torch.float32, k
    with safe_open(path, "pt") as f:
        assert f.metadata()["format"] == "pt"


def test_sos_eos_rules(tmp_path):
    y = new_yaml()
    sd = make_sd(y)
    # 1. special_tokens in train.yaml
    doc = run_convert(write_dir(str(tmp_path / "a"), y, sd, units_new()), str(tmp_path / "oa"))
    assert (doc["sos_id"], doc["eos_id"]) == (2, 2)
    # 2. no special_tokens: the `<sos/eos>` line of the units file
    y2 = copy.deepcopy(y)
    del y2["tokenizer_conf"]
    doc = run_convert(write_dir(str(tmp_path / "b"), y2, sd, units_new()), str(tmp_path / "ob"))
    assert (doc["sos_id"], doc["eos_id"]) == (2, 2)
    # 3. neither: V-1
    units = ["<blank>", "<unk>"] + ["t%d" % i for i in range(V - 2)]
    doc = run_convert(write_dir(str(tmp_path / "c"), y2, sd, units), str(tmp_path / "oc"))
    assert (doc["sos_id"], doc["eos_id"]) == (V - 1, V - 1)


def test_attention_type_comes_from_the_checkpoint(tmp_path):
    y = new_yaml(pos_enc_layer_type="abs_pos", selfattention_layer_type="selfattn")
    sd = make_sd(y)
    y2 = copy.deepcopy(y)
    del y2["encoder_conf"]["selfattention_layer_type"]  # HEAD default would be rel_selfattn
    doc = run_convert(write_dir(str(tmp_path / "a"), y2, sd, units_new()), str(tmp_path / "o"))
    assert doc["encoder"]["selfattention_layer_type"] == "selfattn"
    assert doc["encoder"]["pos_enc_layer_type"] == "abs_pos"


def test_max_positions_slices_or_extends_the_pe_table(tmp_path):
    y = new_yaml()
    sd = make_sd(y)
    d = write_dir(str(tmp_path / "h"), y, sd, units_new())
    D = y["encoder_conf"]["output_size"]
    full = make_pe_table(D)[0]
    for rows in (64, 5000, 7000):
        out = str(tmp_path / ("o%d" % rows))
        convert.convert(os.path.join(d, "train.yaml"), os.path.join(d, "final.pt"),
                        os.path.join(d, "units.txt"), out, os.path.join(d, "global_cmvn"),
                        "float32", rows)
        pe = load_file(os.path.join(out, "model.safetensors"))["encoder.embed.pos_enc.pe"]
        assert tuple(pe.shape) == (1, rows, D)
        # The rows WeNet has are bit-identical whether sliced or regenerated longer.
        n = min(rows, 5000)
        assert torch.equal(pe[0, :n], full[:n])
        with open(os.path.join(out, "model.json")) as f:
            assert json.load(f)["max_positions"] == rows
    with pytest.raises(convert.ConvertError, match="max-positions"):
        convert.convert(os.path.join(d, "train.yaml"), os.path.join(d, "final.pt"),
                        os.path.join(d, "units.txt"), str(tmp_path / "bad"),
                        os.path.join(d, "global_cmvn"), "float32", 8)


def test_window_is_torchaudios_povey_window(tmp_path):
    from torchaudio.compliance import kaldi
    y = new_yaml()
    d = write_dir(str(tmp_path / "h"), y, make_sd(y), units_new())
    run_convert(d, str(tmp_path / "o"), dtype="float16")
    w = load_file(str(tmp_path / "o" / "model.safetensors"))["frontend.window"]
    ref = kaldi._feature_window_function("povey", 400, 0.42, torch.device("cpu"), torch.float32)
    assert w.dtype == torch.float32  # kept float32 even in a float16 model
    assert torch.equal(w, ref)
