"""tools/convert.py --quantize int8: which tensors become int8, the per-row rule (checked against an
independent float64 implementation), the error bound, and the refusals (docs/model-format.md)."""

import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_convert import TOOLS, convert, make_sd, new_yaml, units_new, write_dir  # noqa: E402

from u2ref.config import normalize_config  # noqa: E402
from u2ref.model import U2Model  # noqa: E402

# Rows of ctc.ctc_lo.weight set by hand (D = 32 columns, the rest of each row zero): an all-zero
# row (scale 1), exact halves (scale exactly 1: rint rounds them to even), a row whose largest
# magnitude is negative (-127, never -128), and a float32 value whose quotient w / s rounds to 6
# where w * (1 / s) would round to 5.
EDGE_ROWS = {
    0: [],
    1: [127.0, 0.5, 1.5, 2.5, -2.5, -0.5, 126.5, -126.5],
    2: [-3.0, 1.5, 0.75, -1e-30],
    3: [1.0, 0.04330708459019661, -0.04330708459019661],
}
EDGE_Q = {
    0: [0] * 8,
    1: [127, 0, 2, 2, -2, 0, 126, -126],
    2: [-127],
    3: [127, 6, -6],
}


def source(tmp_path_factory, decoder):
    y = new_yaml()
    y["decoder"] = decoder
    sd = make_sd(y)
    w = sd["ctc.ctc_lo.weight"]
    for r, vals in EDGE_ROWS.items():
        w[r] = 0.0
        w[r, :len(vals)] = torch.tensor(vals)
    return y, sd, write_dir(str(tmp_path_factory.mktemp("ckpt_" + decoder)), y, sd, units_new())


def run(d, out, **kw):
    return convert.convert(os.path.join(d, "train.yaml"), os.path.join(d, "final.pt"),
                           os.path.join(d, "units.txt"), out, os.path.join(d, "global_cmvn"), **kw)


def header_dtypes(path):
    """{name: (dtype string, shape)} straight from the safetensors header."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
    return {k: (v["dtype"], tuple(v["shape"])) for k, v in head.items() if k != "__metadata__"}


def linear_weights(y):
    """The expected int8 tensors, found from the model's modules (not from convert.py's names):
    every nn.Linear and pointwise Conv1d outside the subsampling."""
    m = U2Model(normalize_config(y))
    names = set()
    for name, mod in m.named_modules():
        if name.startswith("encoder.embed"):
            continue
        pointwise = name.endswith((".pointwise_conv1", ".pointwise_conv2"))
        if isinstance(mod, torch.nn.Linear) or (isinstance(mod, torch.nn.Conv1d) and pointwise):
            names.add(name + ".weight")
    return names


def ref_quantize(w32):
    """float64 re-derivation of the rule. A float32 quotient rounded once from the float64 one is
    the correctly rounded float32 quotient (53 >= 2 * 24 + 2 bits), so this reproduces float32
    division exactly; round half to even is written out."""
    w = w32.reshape(w32.shape[0], -1).astype(np.float64)
    amax = np.abs(w).max(axis=1)
    s = (amax / 127.0).astype(np.float32)
    s[s == 0] = 1
    x = (w / s.astype(np.float64)[:, None]).astype(np.float32).astype(np.float64)
    f = np.floor(x)
    frac = x - f
    q = np.where(frac > 0.5, f + 1, np.where(frac < 0.5, f, f + np.mod(f, 2)))
    return np.clip(q, -127, 127).reshape(w32.shape), s


@pytest.fixture(scope="module", params=["bitransformer", "transformer"])
def converted(request, tmp_path_factory):
    y, sd, d = source(tmp_path_factory, request.param)
    out = tmp_path_factory.mktemp("out_" + request.param)
    docs = {}
    for name, kw in (("f32", {}), ("int8", {"quantize": "int8"}),
                     ("f16", {"dtype": "float16"}),
                     ("f16_int8", {"dtype": "float16", "quantize": "int8"})):
        docs[name] = run(d, str(out / name), **kw)
    return y, d, out, docs


def test_exactly_the_linear_weights_become_int8(converted):
    y, _, out, docs = converted
    expected = linear_weights(y)
    decoder_names = [k for k in expected if k.startswith("decoder.")]
    if y["decoder"] == "bitransformer":
        assert {k.split(".")[1] for k in decoder_names} == {"left_decoder", "right_decoder"}
    else:
        assert not [k for k in decoder_names if "_decoder." in k]
    assert any(".feed_forward_macaron." in k for k in expected)
    assert any(".linear_pos." in k for k in expected)
    assert "ctc.ctc_lo.weight" in expected

    f32 = header_dtypes(str(out / "f32" / "model.safetensors"))
    q8 = header_dtypes(str(out / "int8" / "model.safetensors"))
    assert {k for k, (dt, _) in q8.items() if dt == "I8"} == expected
    assert set(q8) == set(f32) | {k + "_scale" for k in expected}
    for k in expected:
        assert q8[k] == ("I8", f32[k][1]), k
        assert q8[k + "_scale"] == ("F32", (f32[k][1][0],)), k
    # Everything else is the float conversion, bit for bit.
    ta = load_file(str(out / "f32" / "model.safetensors"))
    tb = load_file(str(out / "int8" / "model.safetensors"))
    for k in ta:
        if k not in expected:
            assert tb[k].dtype == ta[k].dtype and torch.equal(tb[k], ta[k]), k
    assert docs["int8"]["weights"] == "int8" and "weights" not in docs["f32"]
    assert {k: v for k, v in docs["int8"].items() if k != "weights"} == docs["f32"]
    with open(out / "int8" / "model.json") as f:
        assert json.load(f)["weights"] == "int8"


def test_int8_rule_and_error_bound(converted):
    y, _, out, _ = converted
    ta = load_file(str(out / "f32" / "model.safetensors"))
    tb = load_file(str(out / "int8" / "model.safetensors"))
    for k in linear_weights(y):
        w = ta[k].numpy()
        q, s = tb[k].numpy(), tb[k + "_scale"].numpy()
        assert q.dtype == np.int8 and s.dtype == np.float32
        q_ref, s_ref = ref_quantize(w)
        np.testing.assert_array_equal(s, s_ref, err_msg=k)
        np.testing.assert_array_equal(q.astype(np.float64), q_ref, err_msg=k)
        assert q.min() >= -127, k
        # Every row uses the full range: its largest magnitude maps to +-127 (unless all zero).
        rows = np.abs(q.reshape(q.shape[0], -1)).max(axis=1)
        assert np.all((rows == 127) | (s == 1)), k
        sb = s.reshape((-1,) + (1,) * (w.ndim - 1)).astype(np.float64)
        err = np.abs(q.astype(np.float64) * sb - w.astype(np.float64))
        assert np.all(err <= sb * (0.5 + 1e-6)), k


def test_edge_rows(converted):
    _, _, out, _ = converted
    t = load_file(str(out / "int8" / "model.safetensors"))
    q, s = t["ctc.ctc_lo.weight"].numpy(), t["ctc.ctc_lo.weight_scale"].numpy()
    assert s[0] == 1.0 and not q[0].any()
    assert s[1] == 1.0
    for r, vals in EDGE_Q.items():
        assert q[r, :len(vals)].tolist() == vals, r
    assert s[2] == np.float32(3.0) / np.float32(127)


def test_float16_with_int8(converted):
    y, _, out, _ = converted
    a = load_file(str(out / "int8" / "model.safetensors"))
    h = load_file(str(out / "f16" / "model.safetensors"))
    b = load_file(str(out / "f16_int8" / "model.safetensors"))
    assert set(b) == set(a)
    expected = linear_weights(y)
    for k in b:
        if k in expected or k.endswith("_scale"):
            # int8 values and float32 scales come from the float32 weights, as without float16
            assert b[k].dtype == a[k].dtype and torch.equal(b[k], a[k]), k
        else:
            assert b[k].dtype == h[k].dtype and torch.equal(b[k], h[k]), k
    assert b["encoder.encoders.0.feed_forward.w_1.bias"].dtype == torch.float16


def test_cli_and_refusals(converted, tmp_path):
    _, d, out, _ = converted
    base = [sys.executable, os.path.join(TOOLS, "convert.py"), "--config",
            os.path.join(d, "train.yaml"), "--checkpoint", os.path.join(d, "final.pt"), "--cmvn",
            os.path.join(d, "global_cmvn"), "--units", os.path.join(d, "units.txt")]
    r = subprocess.run(base + ["--out", str(tmp_path / "cli"), "--quantize", "int8"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "int8 weights" in r.stdout, r.stderr
    with open(tmp_path / "cli" / "model.safetensors", "rb") as f, \
            open(out / "int8" / "model.safetensors", "rb") as g:
        assert f.read() == g.read()
    r = subprocess.run(base + ["--out", str(tmp_path / "bad"), "--quantize", "int4"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--quantize" in r.stderr and "int4" in r.stderr
    assert not os.path.exists(tmp_path / "bad")
    with pytest.raises(convert.ConvertError, match="--quantize: 'fp8'"):
        run(d, str(tmp_path / "bad_api"), quantize="fp8")
    assert not os.path.exists(tmp_path / "bad_api")


def test_non_finite_weight_is_refused(tmp_path):
    y = new_yaml()
    sd = make_sd(y)
    sd["encoder.encoders.1.feed_forward.w_2.weight"][3, 5] = float("inf")
    d = write_dir(str(tmp_path / "src"), y, sd, units_new())
    with pytest.raises(convert.ConvertError,
                       match="encoder.encoders.1.feed_forward.w_2.weight has non-finite"):
        run(d, str(tmp_path / "o"), quantize="int8")
    run(d, str(tmp_path / "o"))  # float conversion does not care


def test_quantize_int8_directly():
    w = np.array([[0.0, 0.0], [1.0, -0.25], [-1e-3, 4e-4]], dtype=np.float32)
    q, s = convert.quantize_int8(w[:, :, None])
    assert q.shape == (3, 2, 1) and q.dtype == np.int8 and s.dtype == np.float32
    assert s.tolist() == [1.0, np.float32(1.0) / np.float32(127), np.float32(1e-3) / np.float32(127)]
    assert q[:, :, 0].tolist() == [[0, 0], [127, -32], [-127, 51]]


U2RECOGNIZE = os.path.join(os.environ.get("U2_BUILD_DIR", os.path.join(TOOLS, "..", "build")), "apps",
                           "u2recognize")
SAMPLES = os.path.join(TOOLS, "..", "tests", "data", "samples")


def recognize(model_dir, precision):
    wavs = sorted(os.path.join(SAMPLES, f) for f in os.listdir(SAMPLES) if f.endswith(".wav"))[:3]
    p = subprocess.run([U2RECOGNIZE, "--model-dir", str(model_dir), "--precision", precision, "--nbest", "3",
                        "--mode", "attention_rescoring", "--format", "json", *wavs],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_engine_reads_int8_files_as_it_quantizes_float_ones(converted):
    """At --precision int8 the engine quantizes a float model's weights with the converter's rule,
    so the int8 file and the float32 file give the same n-best lists and scores. At fp32 the int8
    file is dequantized and runs too."""
    _, _, out, _ = converted
    from_float = recognize(out / "f32", "int8")
    lines = from_float.splitlines()
    assert len(lines) == 3 and all(json.loads(line)["key"].startswith("test_") for line in lines)
    assert recognize(out / "int8", "int8") == from_float
    assert recognize(out / "int8", "fp32")
