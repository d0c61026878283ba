"""tools/convert.py keeps WeNet's BPE model and non-language symbols (docs/model-format.md),
tests/data/bpe/cases*.tsv still agree with the Python sentencepiece oracle, and the engine spells a
converted BPE model's hotwords with its bpe.model (docs/language-models.md, "BPE models")."""

import copy
import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import APPS  # noqa: E402
from test_convert import ROOT, TOOLS, convert, make_sd, new_yaml, write_dir  # noqa: E402

BPE = os.path.join(ROOT, "tests", "data", "bpe")


def bpe_units():
    with open(os.path.join(BPE, "units.txt"), encoding="utf-8") as f:
        return [line.split()[0] for line in f if line.strip()]


@pytest.fixture(scope="module")
def bpe_yaml():
    y = new_yaml()
    y["output_dim"] = len(bpe_units())
    y["tokenizer"] = "bpe"
    y["tokenizer_conf"] = {"special_tokens": {"<blank>": 0, "<unk>": 1,
                                              "<sos>": len(bpe_units()) - 1,
                                              "<eos>": len(bpe_units()) - 1}}
    return y, make_sd(y)


def src_dir(tmp_path, bpe_yaml, name="src", yaml_edit=None):
    y, sd = bpe_yaml
    y = copy.deepcopy(y)
    if yaml_edit:
        yaml_edit(y)
    return write_dir(str(tmp_path / name), y, sd, bpe_units())


def run(d, out, **kw):
    return convert.convert(os.path.join(d, "train.yaml"), os.path.join(d, "final.pt"),
                           os.path.join(d, "units.txt"), out, os.path.join(d, "global_cmvn"),
                           **kw)


def read(path, mode="rb"):
    with open(path, mode) as f:
        return f.read()


def test_bpe_model_and_non_lang_syms_are_copied_and_recorded(tmp_path, bpe_yaml):
    d = src_dir(tmp_path, bpe_yaml)
    out = str(tmp_path / "o")
    doc = run(d, out, bpe_model=os.path.join(BPE, "bpe.model"),
              non_lang_syms=os.path.join(BPE, "non_lang_syms.txt"))
    assert doc["tokenizer"] == {"type": "bpe", "bpe_model": "bpe.model",
                                "non_lang_syms": "non_lang_syms.txt"}
    with open(os.path.join(out, "model.json")) as f:
        assert json.load(f)["tokenizer"] == doc["tokenizer"]
    assert read(os.path.join(out, "bpe.model")) == read(os.path.join(BPE, "bpe.model"))
    assert read(os.path.join(out, "non_lang_syms.txt")) == \
        read(os.path.join(BPE, "non_lang_syms.txt"))

    # Converting again into the same folder without them removes the stale copies.
    doc = run(d, out)
    assert "tokenizer" not in doc
    assert not os.path.exists(os.path.join(out, "bpe.model"))
    assert not os.path.exists(os.path.join(out, "non_lang_syms.txt"))


def test_cli_flags(tmp_path, bpe_yaml):
    d = src_dir(tmp_path, bpe_yaml)
    out = str(tmp_path / "o")
    cmd = [sys.executable, os.path.join(TOOLS, "convert.py"), "--config",
           os.path.join(d, "train.yaml"), "--checkpoint", os.path.join(d, "final.pt"), "--cmvn",
           os.path.join(d, "global_cmvn"), "--units", os.path.join(d, "units.txt"), "--out", out,
           "--bpe-model", os.path.join(BPE, "bpe.model")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert os.path.exists(os.path.join(out, "bpe.model"))
    with open(os.path.join(out, "model.json")) as f:
        assert json.load(f)["tokenizer"] == {"type": "bpe", "bpe_model": "bpe.model"}
    r = subprocess.run(cmd[:-1] + [os.path.join(BPE, "missing.model")], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "--bpe-model" in r.stderr and "no such file" in r.stderr


def test_yaml_tokenizer_conf_paths(tmp_path, bpe_yaml):
    # New-style train.yaml: tokenizer_conf.bpe_path / non_lang_syms_path, resolved against the
    # yaml's folder (then the working directory).
    def edit(y):
        y["tokenizer_conf"]["bpe_path"] = "lang/bpe.model"
        y["tokenizer_conf"]["non_lang_syms_path"] = os.path.join(BPE, "non_lang_syms.txt")
    d = src_dir(tmp_path, bpe_yaml, yaml_edit=edit)
    os.makedirs(os.path.join(d, "lang"))
    with open(os.path.join(d, "lang", "bpe.model"), "wb") as f:
        f.write(read(os.path.join(BPE, "bpe.model")))
    doc = run(d, str(tmp_path / "o"))
    assert doc["tokenizer"]["bpe_model"] == "bpe.model"
    assert doc["tokenizer"]["non_lang_syms"] == "non_lang_syms.txt"
    assert read(str(tmp_path / "o" / "bpe.model")) == read(os.path.join(BPE, "bpe.model"))

    # Old layout: top-level bpe_model. An explicit argument wins over the yaml.
    def old(y):
        y["bpe_model"] = os.path.join(BPE, "bpe.model")
    d2 = src_dir(tmp_path, bpe_yaml, "old", yaml_edit=old)
    assert run(d2, str(tmp_path / "o2"))["tokenizer"] == {"type": "bpe", "bpe_model": "bpe.model"}


def test_yaml_path_that_does_not_resolve_is_skipped_with_a_warning(tmp_path, bpe_yaml, capsys):
    def edit(y):
        y["tokenizer_conf"]["bpe_path"] = "data/lang_char/train_960_unigram5000.model"
    d = src_dir(tmp_path, bpe_yaml, yaml_edit=edit)
    doc = run(d, str(tmp_path / "o"))
    assert "tokenizer" not in doc
    assert "tokenizer_conf.bpe_path" in capsys.readouterr().err


def test_bad_files_are_refused(tmp_path, bpe_yaml):
    d = src_dir(tmp_path, bpe_yaml)
    out = str(tmp_path / "o")
    with pytest.raises(convert.ConvertError, match="--bpe-model .*no such file"):
        run(d, out, bpe_model=str(tmp_path / "nope.model"))
    with pytest.raises(convert.ConvertError, match="--bpe-model .*no such file"):
        run(d, out, bpe_model=str(tmp_path))  # a folder
    empty = tmp_path / "empty.model"
    empty.write_bytes(b"")
    with pytest.raises(convert.ConvertError, match="empty file"):
        run(d, out, bpe_model=str(empty))
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"not a sentencepiece model\n")
    with pytest.raises(convert.ConvertError, match="not a sentencepiece model"):
        run(d, out, bpe_model=str(junk))
    with pytest.raises(convert.ConvertError, match="--non-lang-syms .*no such file"):
        run(d, out, non_lang_syms=str(tmp_path / "nope.txt"))
    syms = tmp_path / "syms.txt"
    syms.write_text("<NOISE>\nnoise\n")
    with pytest.raises(convert.ConvertError, match="line 2: 'noise'"):
        run(d, out, non_lang_syms=str(syms))
    # Nothing half-written for the refused tokenizer files.
    assert not os.path.exists(os.path.join(out, "bpe.model"))


def test_units_of_another_model_are_refused(tmp_path, bpe_yaml):
    y, sd = bpe_yaml
    units = bpe_units()
    units[5] = "\u2581NOTAPIECE"
    d = write_dir(str(tmp_path / "src"), y, sd, units)
    with pytest.raises(convert.ConvertError, match="do not belong together"):
        run(d, str(tmp_path / "o"), bpe_model=os.path.join(BPE, "bpe.model"))


def test_fixture_agrees_with_the_python_oracle():
    # tests/data/bpe/cases.tsv and cases_no_syms.tsv (the expected pieces -> ids of WeNet's
    # BpeTokenizer) are recomputed from the committed model with the Python sentencepiece module.
    r = subprocess.run([sys.executable, os.path.join(TOOLS, "make_bpe_fixture.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr



def test_u2recognize_spells_hotwords_with_the_bpe_model(tmp_path, bpe_yaml):
    # WeNet's spelling: lower-case text is upper-cased, "<noise>" is the listed symbol, CJK
    # characters stand alone. Without the sentencepiece module the model still loads, with a
    # warning, and hotwords are spelled greedily in the text's case (the upper-case units lack 'h').
    u2recognize = APPS / "u2recognize"
    if not u2recognize.exists():
        pytest.fail("build/apps/u2recognize is not built")
    d = src_dir(tmp_path, bpe_yaml)
    out = str(tmp_path / "o")
    run(d, out, bpe_model=os.path.join(BPE, "bpe.model"),
        non_lang_syms=os.path.join(BPE, "non_lang_syms.txt"))
    wav = os.path.join(ROOT, "tests", "data", "samples", "test_000000.wav")

    def recognize(phrases, **env):
        path = tmp_path / "hotwords.txt"
        path.write_text("".join(p + "\n" for p in phrases), encoding="utf-8")
        return subprocess.run([str(u2recognize), "--model-dir", out, "--quiet", "--mode",
                               "ctc_prefix_beam_search", "--hotwords", str(path), wav],
                              capture_output=True, text=True, timeout=120,
                              env=dict(os.environ, **env))

    r = recognize(["hello world", "你好 <noise>:3"])
    assert r.returncode == 0, r.stderr
    assert "spelled greedily" not in r.stderr, r.stderr
    r = recognize(["hello, world"])
    assert r.returncode != 0 and "',' in 'hello, world' is not in the model's units" in r.stderr

    missing = str(tmp_path / "missing.so")
    why = "sentencepiece module %s ($U2_SENTENCEPIECE_MODULE): no such file" % missing
    r = recognize(["HELLO WORLD"], U2_SENTENCEPIECE_MODULE=missing)
    assert r.returncode == 0, r.stderr
    assert "warning: " + why in r.stderr and "spelled greedily" in r.stderr, r.stderr
    # The error a fallback causes says why.
    r = recognize(["hello world"], U2_SENTENCEPIECE_MODULE=missing)
    assert r.returncode != 0 and "'h' in 'hello world'" in r.stderr and why in r.stderr, r.stderr
