"""Real human speech in the suite: the set-up script that builds the Asterisk dev/test halves from
Debian's packages, the transcript normalizer, and the engine against the PyTorch reference on real
recordings (real speech is not special-cased anywhere: the engine must equal the reference there
too)."""
import json
import subprocess
import sys
import wave
from pathlib import Path

import pytest
import torch

from test_demo_model import (MODES, load_reference_model, read_table, run_u2recognize, sample_features,
                             tokens_to_text)

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
from text_norm import normalize, number_to_words  # noqa: E402

REAL = REPO / "data" / "real_speech" / "asterisk_en"


def test_normalizer_writes_what_is_spoken():
    assert normalize("Please press 1 to mute, or 8 to exit.") == "please press one to mute or eight to exit"
    assert normalize("press * to toggle, press # to enter") == "press star to toggle press pound to enter"
    assert normalize("3D audio enabled") == "three d audio enabled"
    assert normalize("I'm sorry, the PBX is 'busy'") == "i'm sorry the p b x is busy"
    assert normalize("Call-Forward on No Answer.") == "call forward on no answer"
    assert normalize("dollar [$]") == "dollar"
    assert normalize("Please leave your message. (simple tone sound plays)") == "please leave your message"
    assert [number_to_words(n) for n in (0, 13, 20, 42, 99)] == ["zero", "thirteen", "twenty", "forty two",
                                                                 "ninety nine"]
    # Not speech, or no single reading: refused rather than guessed.
    for text in ("[beep tone]", "<beep ascending>", "(4 seconds of silence)", "dial 8500", "a 28.8 kilobit modem", "at 10:30", "", "é"):
        assert normalize(text) is None, text


@pytest.fixture(scope="module")
def built_set(tmp_path_factory):
    """The set built from scratch by the set-up script into a fresh folder."""
    out = tmp_path_factory.mktemp("real")
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "fetch_real_speech.py"), "--out", str(out), "--force"],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 and "apt-get download" in proc.stdout + proc.stderr and "E: " in proc.stderr:
        pytest.skip("the Debian packages asterisk-core-sounds-en(-g722) could not be fetched: " + proc.stderr[-300:])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out / "asterisk_en"


def test_setup_script_builds_disjoint_dev_and_test_halves(built_set):
    summary = json.loads((built_set / "summary.json").read_text())
    halves = {h: read_table(built_set / h / "text") for h in ("dev", "test")}
    assert summary["dev"]["utterances"] == len(halves["dev"]) > 200
    assert summary["test"]["utterances"] == len(halves["test"]) > 200
    assert 20 < summary["dev"]["minutes"] + summary["test"]["minutes"] < 30  # about 24 min of speech
    assert not set(halves["dev"]) & set(halves["test"])
    assert not set(halves["dev"].values()) & set(halves["test"].values())  # split by transcript
    for texts in halves.values():
        assert all(t and set(t) <= set("abcdefghijklmnopqrstuvwxyz' ") for t in texts.values())
    dropped = (built_set / "dropped.tsv").read_text()
    assert "beep" in dropped and "demo-instruct" in dropped  # non-speech, and "dial 8500" (ambiguous)
    assert "silence/4" in dropped
    durations = read_table(built_set / "test" / "utt2dur")
    for key, rel in list(read_table(built_set / "test" / "wav.scp").items())[:20]:
        with wave.open(str(built_set / "test" / rel)) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
            assert abs(w.getnframes() / 16000 - float(durations[key])) < 1e-3
    # The same recipe gives the same set: the split does not depend on the machine.
    if (REAL / "summary.json").exists():
        assert read_table(REAL / "test" / "text") == halves["test"]


@pytest.fixture(scope="module")
def real_clips(tmp_path_factory):
    """The first clips of the real test half (built by scripts/setup.sh) as a list of their own."""
    if not (REAL / "test" / "wav.scp").exists():
        pytest.fail(f"{REAL} is missing: scripts/setup.sh builds it (tools/fetch_real_speech.py)")
    d = tmp_path_factory.mktemp("clips")
    scp, text = read_table(REAL / "test" / "wav.scp"), read_table(REAL / "test" / "text")
    keys = list(scp)[:: max(1, len(scp) // 6)][:6]
    (d / "wav.scp").write_text("".join(f"{k} {(REAL / 'test' / scp[k]).resolve()}\n" for k in keys))
    (d / "text").write_text("".join(f"{k} {text[k]}\n" for k in keys))
    return d


def test_engine_matches_pytorch_on_real_recordings(real_clips):
    model, doc, units = load_reference_model()
    dec = doc["decoding"]
    for mode, ref_mode in MODES.items():
        want = {}
        for utt, feats in sample_features(real_clips):
            with torch.no_grad():
                hyp = model.decode(feats.unsqueeze(0), torch.tensor([feats.size(0)]), ref_mode,
                                   beam_size=dec["beam_size"], ctc_weight=dec["ctc_weight"],
                                   reverse_weight=dec["reverse_weight"])[0]
            want[utt] = tokens_to_text(hyp, doc, units)
        assert run_u2recognize("--mode", mode, list_dir=real_clips) == want, mode
    # Streaming (chunk 16) equals the chunk-masked reference forward on real speech too.
    want = {}
    for utt, feats in sample_features(real_clips):
        with torch.no_grad():
            hyp = model.decode(feats.unsqueeze(0), torch.tensor([feats.size(0)]), "attention_rescoring",
                               beam_size=dec["beam_size"], ctc_weight=dec["ctc_weight"],
                               reverse_weight=dec["reverse_weight"], decoding_chunk_size=16)[0]
        want[utt] = tokens_to_text(hyp, doc, units)
    assert run_u2recognize("--streaming", "--chunk-size", "16", list_dir=real_clips) == want
