"""n-gram LMs: u2serve's ARPA reader against KenLM (the oracle, PyPI `kenlm`, used only here), LMs
built by tools/build_lm.py, and LM fusion in u2recognize: the flags, a measurable effect on the
shipped samples, and clear errors for broken LMs."""
import random
import subprocess

import pytest

from conftest import APPS, DEMO_MODEL, ROOT

import kenlm  # the oracle (PyPI, installed by scripts/setup.sh), used only in tests

SAMPLES = ROOT / "tests" / "data" / "samples"
# Text to build test LMs from: the real-speech transcripts (fetched by scripts/setup.sh) and the
# committed evaluation sentence lists.
TEXTS = [ROOT / "train" / "eval_text" / "dev.txt", ROOT / "train" / "eval_text" / "test.txt"]


def build_lm(tmp_path, order, name, *extra):
    out = tmp_path / f"{name}.arpa"
    cmd = [str(ROOT / ".venv" / "bin" / "python"), str(ROOT / "tools" / "build_lm.py"), "--order", str(order),
           "--out", str(out), *extra]
    for t in TEXTS:
        cmd += ["--text", str(t)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return out


def u2lm_scores(arpa, sentences, *flags):
    r = subprocess.run([str(APPS / "u2lm"), "--lm", str(arpa), "--score", *flags],
                       input="".join(s + "\n" for s in sentences), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return [[float(x) for x in line.split("\t")] for line in r.stdout.splitlines()]


def random_sentences(arpa, n, seed):
    words = []
    with open(arpa) as f:
        section = None
        for line in f:
            if line.startswith("\\1-grams:"):
                section = 1
            elif line.startswith("\\"):
                section = None
            elif section == 1 and line.strip():
                words.append(line.split()[1])
    words = [w for w in words if w not in ("<s>", "</s>")]
    rng = random.Random(seed)
    vocab = words + ["zebraquux", "<unk>", "qqq"]  # unknown words too
    return [" ".join(rng.choice(vocab) for _ in range(rng.randint(0, 14))) for _ in range(n)]


@pytest.mark.parametrize("order,unk", [(2, True), (3, True), (4, False), (5, True)])
def test_scores_equal_kenlm(tmp_path, order, unk):
    arpa = build_lm(tmp_path, order, f"o{order}", *([] if unk else ["--unk-log10", "nan"]))
    model = kenlm.Model(str(arpa))
    assert model.order == order
    sentences = random_sentences(arpa, 400, seed=order)
    # Real sentences exercise the long n-grams (random ones mostly back off).
    sentences += [line.strip() for line in TEXTS[0].read_text().splitlines()[:200]]
    for bos, eos, flags in ((True, True, []), (False, False, ["--no-bos", "--no-eos"])):
        ours = u2lm_scores(arpa, sentences, *flags)
        assert len(ours) == len(sentences)
        worst = 0.0
        for s, row in zip(sentences, ours):
            theirs = [p for p, _, _ in model.full_scores(s, bos=bos, eos=eos)]
            assert len(row) == len(theirs) + 1, s
            worst = max(worst, abs(row[0] - model.score(s, bos=bos, eos=eos)))
            worst = max([worst] + [abs(a - b) for a, b in zip(row[1:], theirs)])
        assert worst < 1e-4, f"order {order}: max |log10 difference| {worst}"


def test_build_lm_adds_unk_and_keeps_to_the_units(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("The Cat sat\nthe dog sat\nna\u00efve caf\u00e9 here\n")
    arpa = tmp_path / "lm.arpa"
    r = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), str(ROOT / "tools" / "build_lm.py"),
                        "--text", str(text), "--units", str(DEMO_MODEL / "units.txt"), "--order", "2",
                        "--out", str(arpa)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "1 dropped" in r.stderr  # the line with characters the units do not have
    body = arpa.read_text()
    assert "\t<unk>" in body and "-10.0000000\t<unk>" in body
    assert "\tcat" in body and "Cat" not in body  # lower-cased like the units
    info = subprocess.run([str(APPS / "u2lm"), "--lm", str(arpa)], capture_output=True, text=True)
    assert info.returncode == 0 and "order 2" in info.stdout


def recognize(*extra):
    r = subprocess.run([str(APPS / "u2recognize"), "--model-dir", str(DEMO_MODEL), "--wav-scp",
                        str(SAMPLES / "wav.scp"), "--text", str(SAMPLES / "text"), *extra],
                       capture_output=True, text=True, timeout=300)
    return r


def cer_of(stderr):
    line = next(l for l in stderr.splitlines() if "CER" in l)
    return float(line.split("CER")[1].split("%")[0])


def wer_of(stderr):
    line = next(l for l in stderr.splitlines() if "WER" in l)
    return float(line.split("WER")[1].split("%")[0])


@pytest.fixture(scope="module")
def sample_lm(tmp_path_factory):
    """An LM of the shipped samples' own sentences: the strongest possible in-domain LM, so its
    effect on the samples is certain."""
    d = tmp_path_factory.mktemp("lm")
    text = d / "text.txt"
    text.write_text("".join(l.partition(" ")[2] + "\n" for l in (SAMPLES / "text").read_text().splitlines()))
    arpa = d / "samples.arpa"
    r = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), str(ROOT / "tools" / "build_lm.py"), "--text",
                        str(text), "--order", "3", "--out", str(arpa)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "building order 2" in r.stderr  # five sentences support no 3-grams
    return arpa


@pytest.mark.parametrize("mode", ["attention_rescoring", "ctc_prefix_beam_search"])
def test_an_in_domain_lm_fixes_the_samples(sample_lm, mode):
    plain = recognize("--mode", mode, "--lm", "none")
    assert plain.returncode == 0, plain.stderr
    # The weights the synthetic dev set chose for an in-domain LM (docs/language-models.md).
    fused = recognize("--mode", mode, "--lm", str(sample_lm), "--lm-weight", "0.3", "--word-bonus", "1")
    assert fused.returncode == 0, fused.stderr
    # The samples have word errors to fix ("par agraphfor", "dependin", "note buck"); an LM fixes
    # words, so WER is its measure: at least 40 % fewer, and no more character errors.
    assert wer_of(plain.stderr) > 10.0
    assert wer_of(fused.stderr) <= 0.6 * wer_of(plain.stderr)
    assert cer_of(fused.stderr) <= cer_of(plain.stderr)
    # lm_weight 0 and word_bonus 0: exactly the plain output.
    off = recognize("--mode", mode, "--lm", str(sample_lm), "--lm-weight", "0", "--word-bonus", "0")
    assert off.stdout == plain.stdout


def test_streaming_uses_the_lm_too(sample_lm):
    plain = recognize("--streaming", "--lm", "none")
    fused = recognize("--streaming", "--lm", str(sample_lm), "--lm-weight", "0.3", "--word-bonus", "1")
    assert plain.returncode == 0 and fused.returncode == 0, plain.stderr + fused.stderr
    # The LM of the samples' own sentences repairs words in the stream too, and breaks none (a few
    # words stay misspelt where the streaming prefix beam never held the right spelling).
    assert wer_of(fused.stderr) < wer_of(plain.stderr) and cer_of(fused.stderr) <= cer_of(plain.stderr)


@pytest.mark.parametrize("content,message", [
    ("", "no \\data\\"),
    ("\\data\\\nngram 1=0\n\n\\1-grams:\n\n\\end\\\n", "empty"),
    ("\\data\\\nngram 1=3\n\n\\1-grams:\n-1\t<s>\n-0.5\t</s>\n\n\\end\\\n", "has 2 entries"),
    ("\\data\\\nngram 1=3\n\n\\1-grams:\n-1\t<s>\n-0.5\t</s>\n-x\tcat\n\n\\end\\\n", "bad log-probability"),
    ("\\data\\\nngram 1=3\n\n\\1-grams:\n-1\t<s>\n-0.5\t</s>\n-1\tcat\n", "missing \\end\\"),
    ("\\data\\\nngram 1=4\n\n\\1-grams:\n-1\t<s>\n-0.5\t</s>\n-1\tCAT\n-1\tDOG\n\n\\end\\\n", "can be spelled"),
])
def test_broken_lms_are_clear_errors(tmp_path, content, message):
    arpa = tmp_path / "bad.arpa"
    arpa.write_text(content)
    r = recognize("--lm", str(arpa))
    assert r.returncode == 1
    assert message in r.stderr and "Traceback" not in r.stderr
    r = recognize("--lm", str(tmp_path / "missing.arpa"))
    assert r.returncode == 1 and "cannot open language model" in r.stderr


def test_lm_weight_without_an_lm_is_refused():
    r = recognize("--lm", "none", "--lm-weight", "0.5")
    assert r.returncode == 1 and "no language model is loaded" in r.stderr
    r = recognize("--lm", "none", "--lm-weight", "20")
    assert r.returncode == 1 and "lm_weight must be in [0, 10]" in r.stderr


def test_the_demo_model_uses_its_lm_by_default():
    """models/demo ships lm.arpa (chosen on the dev sets, docs/language-models.md): loaded with
    model.json's weights unless --lm none."""
    default, none = recognize(), recognize("--lm", "none")
    assert default.returncode == 0 and none.returncode == 0, default.stderr + none.stderr
    assert "lm_weight=0.3, word_bonus=1" in default.stderr
    assert default.stdout != none.stdout
    assert wer_of(default.stderr) <= wer_of(none.stderr)
