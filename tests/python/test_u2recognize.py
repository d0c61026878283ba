"""The u2recognize command line: output format, scoring, and errors, on the fixture models."""
import json
import os
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / os.environ.get("U2_BUILD_DIR", "build")
U2RECOGNIZE = BUILD / "apps" / "u2recognize"
VARIANT = "conformer_relpos_bn_noncausal_bi"
FIXTURE = REPO / "tests" / "fixtures" / VARIANT


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> None:
    pcm = np.clip(np.round(samples * 32768.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def units() -> list[str]:
    lines = (FIXTURE / "model" / "units.txt").read_text(encoding="utf-8").splitlines()
    return [line.split()[0] for line in lines if line.strip()]


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(U2RECOGNIZE), *args], capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    """The fixture utterances as 16-bit WAV files, with their reference greedy transcripts."""
    if not U2RECOGNIZE.exists():
        pytest.fail(f"{U2RECOGNIZE} is not built")
    tmp = tmp_path_factory.mktemp("wavs")
    ref = load_file(str(FIXTURE / "ref.safetensors"))
    meta = json.loads((FIXTURE / "ref.json").read_text())
    table = units()
    out = []
    for u, utt in enumerate(meta["utts"]):
        path = tmp / f"utt{u}.wav"
        write_wav(path, ref[f"u{u}.wav"])
        text = "".join(table[t] for t in utt["greedy"]).replace("\u2581", " ").strip()
        out.append((f"utt{u}", path, text))
    return out


def test_prints_utt_text_lines_in_input_order(wavs):
    proc = run("--model-dir", str(FIXTURE / "model"), "--mode", "ctc_greedy", *[str(p) for _, p, _ in wavs])
    lines = proc.stdout.splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == [k for k, _, _ in wavs]
    # The text is the reference's greedy transcript (16-bit quantisation of the fixture audio
    # does not move these random-weight models' argmax).
    assert [line.split(" ", 1)[1] if " " in line else "" for line in lines] == [t for _, _, t in wavs]
    assert "RTF" in proc.stderr


def test_wav_scp_batches_and_scoring(wavs, tmp_path):
    scp = tmp_path / "wav.scp"
    scp.write_text("".join(f"{k} {p}\n" for k, p, _ in wavs))
    text = tmp_path / "text"
    # Reference = each utterance's own hypothesis, upper-cased for utt1, with one letter more for utt2.
    outs = {}
    for batch_size in ("1", "3"):
        proc = run("--model-dir", str(FIXTURE / "model"), "--wav-scp", str(scp), "--mode", "ctc_greedy",
                   "--batch-size", batch_size)
        outs[batch_size] = proc.stdout
    assert outs["1"] == outs["3"], "batching changed a transcript"
    hyps = dict(line.split(" ", 1) if " " in line else (line, "") for line in outs["1"].splitlines())
    # Lower-case letters and apostrophes (the fixture's units): each one unit of the CER below.
    assert set("".join(hyps.values())) <= set("abcdefghijklmnopqrstuvwxyz' "), hyps
    text.write_text(f"utt0 {hyps['utt0']}\nutt1 {hyps['utt1'].upper()}\nutt2 {hyps['utt2']}x\n")
    proc = run("--model-dir", str(FIXTURE / "model"), "--wav-scp", str(scp), "--mode", "ctc_greedy",
               "--text", str(text))
    # The CER is letter-level: one deletion ("x" missing from the hypothesis) over every reference
    # letter, case folded. Scored per word (WeNet's --char=1 for English) it would be N=3 S=1.
    n = sum(len(h.replace(" ", "")) for h in hyps.values()) + 1
    cer = f"CER {100 / n:.2f} % (N={n} C={n - 1} S=0 D=1 I=0)"
    # The WER: utt2's last word is substituted.
    words = sum(len(h.split()) for h in hyps.values())
    wer = f"WER {100 / words:.2f} % (N={words} C={words - 1} S=1 D=0 I=0)"
    assert f"{cer} | {wer} over 3 utterances" in proc.stderr, proc.stderr


def test_modes_and_nbest(wavs):
    path = str(wavs[0][1])
    for mode in ("ctc_greedy", "ctc_prefix_beam_search", "attention_rescoring"):
        proc = run("--model-dir", str(FIXTURE / "model"), "--mode", mode, path)
        assert proc.stdout.startswith("utt0"), proc.stdout
    proc = run("--model-dir", str(FIXTURE / "model"), "--mode", "ctc_prefix_beam_search", "--beam", "4",
               "--nbest", "3", path)
    lines = proc.stdout.splitlines()
    assert [line.split(" ")[1] for line in lines] == ["1", "2", "3"]
    scores = [float(line.split(" ")[2]) for line in lines]
    assert scores == sorted(scores, reverse=True)


def test_errors_are_reported_not_crashed(wavs, tmp_path):
    model = str(FIXTURE / "model")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage")
    proc = run("--model-dir", model, str(bad), check=False)
    assert proc.returncode == 1 and "bad" in proc.stderr
    proc = run("--model-dir", model, "--mode", "beam_me_up", str(wavs[0][1]), check=False)
    assert proc.returncode == 1 and "unknown decoding mode" in proc.stderr
    proc = run("--model-dir", str(tmp_path / "nope"), str(wavs[0][1]), check=False)
    assert proc.returncode == 1 and "nope" in proc.stderr
    proc = run("--model-dir", model, "--beam", "0", str(wavs[0][1]), check=False)
    assert proc.returncode == 1 and "beam" in proc.stderr
