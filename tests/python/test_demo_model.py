"""The shipped demo model (models/demo) on the shipped samples (tests/data/samples).

u2recognize (the C++ engine) must produce exactly the transcripts that the PyTorch reference
(tools/u2ref, WeNet's numerics) produces for the same model and audio, in every decoding mode,
offline and streaming (WeNet's forward_chunk_by_chunk + prefix beam search + rescoring).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchaudio
import yaml
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
from u2ref.config import normalize_config  # noqa: E402
from u2ref.model import U2Model  # noqa: E402
from u2ref.search import ctc_prefix_beam_search  # noqa: E402

MODEL = REPO / "models" / "demo"
SAMPLES = REPO / "tests" / "data" / "samples"
U2RECOGNIZE = REPO / os.environ.get("U2_BUILD_DIR", "build") / "apps" / "u2recognize"
MODES = {"ctc_greedy": "ctc_greedy_search", "ctc_prefix_beam_search": "ctc_prefix_beam_search",
         "attention_rescoring": "attention_rescoring"}


def read_table(path):
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            key, _, value = line.strip().partition(" ")
            out[key] = value.strip()
    return out


def load_reference_model():
    with open(MODEL / "train.yaml") as f:
        cfg = normalize_config(yaml.safe_load(f))
    weights = {k: v.float() if v.is_floating_point() else v
               for k, v in load_file(str(MODEL / "model.safetensors")).items()}
    model = U2Model.from_checkpoint(cfg, weights).eval()
    doc = json.loads((MODEL / "model.json").read_text())
    units = [line.split()[0] for line in (MODEL / "units.txt").read_text(encoding="utf-8").splitlines()
             if line.strip()]
    return model, doc, units


def tokens_to_text(tokens, doc, units):
    special = {doc["blank_id"], doc["sos_id"], doc["eos_id"]}
    return "".join(units[t] for t in tokens if t not in special).replace("\u2581", " ").strip()


def sample_features(list_dir=SAMPLES, limit=0):
    """(utt, fbank) of a wav.scp list (relative paths: to the list's folder), as the engine computes it."""
    items = list(read_table(list_dir / "wav.scp").items())
    for utt, rel in items[:limit] if limit else items:
        wav, rate = torchaudio.load(str(list_dir / rel))
        assert rate == 16000
        yield utt, torchaudio.compliance.kaldi.fbank(wav * 32768, num_mel_bins=80, frame_length=25,
                                                      frame_shift=10, dither=0.0, energy_floor=0.0)


def run_u2recognize(*args, list_dir=SAMPLES):
    """u2recognize without the demo model's LM: the PyTorch reference has none."""
    assert U2RECOGNIZE.exists(), f"{U2RECOGNIZE} is not built"
    proc = subprocess.run([str(U2RECOGNIZE), "--model-dir", str(MODEL), "--wav-scp",
                           str(list_dir / "wav.scp"), "--text", str(list_dir / "text"), "--lm", "none", *args],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = {}
    for line in proc.stdout.splitlines():
        key, _, text = line.partition(" ")
        got[key] = text
    assert "CER" in proc.stderr
    return got


@pytest.mark.parametrize("chunk,left", [(16, -1), (8, -1), (4, -1), (16, 4), (8, 0)])
def test_streaming_engine_matches_pytorch_streaming(chunk, left):
    """u2recognize --streaming == the PyTorch model run chunk by chunk with caches (WeNet's
    forward_chunk_by_chunk), prefix beam search over all chunks, attention rescoring at the end."""
    model, doc, units = load_reference_model()
    dec = doc["decoding"]
    want = {}
    for utt, feats in sample_features():
        with torch.no_grad():
            enc, _ = model.encoder.forward_chunk_by_chunk(feats.unsqueeze(0), chunk, left)
            logp = model.ctc_logprobs(enc)
            nbest = ctc_prefix_beam_search(logp, torch.tensor([enc.size(1)]), dec["beam_size"],
                                           doc["blank_id"])[0]
            idx, _, _ = model.rescore(nbest, enc, dec["ctc_weight"], dec["reverse_weight"])
        want[utt] = tokens_to_text(nbest[idx][0], doc, units)
    got = run_u2recognize("--streaming", "--chunk-size", str(chunk), "--left-chunks", str(left),
                          "--batch-size", "3", "--piece-ms", "250")
    assert got == want


@pytest.fixture(scope="module")
def reference():
    """PyTorch transcripts of every sample in every mode, with the model.json decoding weights."""
    model, doc, units = load_reference_model()
    dec = doc["decoding"]
    out = {mode: {} for mode in MODES}
    for utt, feats in sample_features():
        for mode, ref_mode in MODES.items():
            with torch.no_grad():
                hyp = model.decode(feats.unsqueeze(0), torch.tensor([feats.size(0)]), ref_mode,
                                   beam_size=dec["beam_size"], ctc_weight=dec["ctc_weight"],
                                   reverse_weight=dec["reverse_weight"])[0]
            out[mode][utt] = tokens_to_text(hyp, doc, units)
    return out


@pytest.mark.parametrize("mode", list(MODES))
def test_engine_matches_pytorch_on_the_shipped_samples(reference, mode):
    assert run_u2recognize("--mode", mode) == reference[mode]


def test_samples_are_complete():
    scp, text = read_table(SAMPLES / "wav.scp"), read_table(SAMPLES / "text")
    assert len(scp) >= 3 and scp.keys() == text.keys()
    for rel in scp.values():
        assert (SAMPLES / rel).is_file()


@pytest.mark.parametrize("args", [["--mode", "ctc_greedy"], ["--mode", "attention_rescoring"],
                                  ["--streaming", "--chunk-size", "8", "--left-chunks", "4"]])
def test_demo_model_says_nothing_over_digital_silence(tmp_path, args):
    """Exact zeros (a muted microphone, a padded buffer) must decode to nothing, however long.
    Models trained without train.py's --silence-pad-prob emitted stray letters here."""
    import wave
    paths = []
    for seconds in (1, 5, 20):
        path = tmp_path / f"zeros_{seconds}s.wav"
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes(b"\0\0" * 16000 * seconds)
        paths.append(str(path))
    proc = subprocess.run([str(U2RECOGNIZE), "--model-dir", str(MODEL), *args, *paths],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3
    for line in lines:
        key, _, text = line.partition(" ")
        assert text.strip() == "", f"{key}: {text!r}"
