"""u2serve's own Silero VAD against silero's ONNX model run by onnxruntime (PyPI, a test oracle
only): the speech probability of every 32 ms window of real recordings, within 1e-4; and u2vad's
segments of a recording built from known clips and pauses."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import APPS, ROOT, read_wav, room_noise, write_wav

REAL = ROOT / "data" / "real_speech" / "asterisk_en" / "test"
VAD_MODEL = ROOT / "models" / "silero_vad"


def onnx_probabilities(samples):
    import onnxruntime as ort
    silero = pytest.importorskip("silero_vad", reason="PyPI silero-vad (scripts/setup.sh installs it)")
    session = ort.InferenceSession(os.path.join(os.path.dirname(silero.__file__), "data", "silero_vad.onnx"))
    state = np.zeros((2, 1, 128), np.float32)
    context = np.zeros(64, np.float32)
    out = []
    for k in range(len(samples) // 512):
        chunk = samples[k * 512:(k + 1) * 512].astype(np.float32)
        p, state = session.run(None, {"input": np.concatenate([context, chunk])[None, :], "state": state,
                                      "sr": np.array(16000, np.int64)})
        out.append(float(p[0, 0]))
        context = chunk[-64:]
    return np.array(out)


def real_clips(n=5):
    lines = (REAL / "wav.scp").read_text().splitlines()
    return [REAL / line.split(" ", 1)[1] for line in lines[:: max(1, len(lines) // n)][:n]]


def test_probabilities_match_onnxruntime_on_real_speech():
    clips = real_clips()
    r = subprocess.run([str(APPS / "u2vad"), "--vad-model-dir", str(VAD_MODEL), "--probabilities", *map(str, clips)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    ours = np.array([float(x) for x in r.stdout.split()])
    theirs = np.concatenate([onnx_probabilities(read_wav(c)[0]) for c in clips])
    assert len(ours) == len(theirs) > 100
    assert np.abs(ours - theirs).max() < 1e-4
    assert theirs.max() > 0.9 and theirs.min() < 0.1  # real speech and real pauses were in there


def test_segments_of_known_clips_and_pauses(tmp_path):
    rng = np.random.default_rng(5)
    clips = real_clips(6)
    pieces, truth, t = [room_noise(16000, 11)], [], 16000
    for i, c in enumerate(clips):
        speech = read_wav(c)[0]
        pieces.append(speech)
        truth.append((t, t + len(speech)))
        t += len(speech)
        pause = room_noise(int(16000 * rng.uniform(0.8, 3.0)), 20 + i)
        pieces.append(pause)
        t += len(pause)
    path = tmp_path / "long.wav"
    write_wav(path, np.concatenate(pieces))
    r = subprocess.run([str(APPS / "u2vad"), "--vad-model-dir", str(VAD_MODEL), "--vad-speech-pad-ms", "0",
                        "--vad-min-silence-ms", "300", str(path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    got = [tuple(float(x) for x in line.split()[1:]) for line in r.stdout.splitlines()]
    assert len(got) >= len(truth)
    # Every clip's speech lies inside one segment, give or take 150 ms (the clips begin and end
    # with a little silence of their own, which the VAD rightly leaves out).
    for start, end in truth:
        inside = [g for g in got if g[0] < end / 16000 and g[1] > start / 16000]
        assert inside, (start / 16000, end / 16000, got)
        assert inside[0][0] >= start / 16000 - 0.15 and inside[-1][1] <= end / 16000 + 0.15, (start, end, inside)
    # Pauses stay out of the segments.
    for (s0, e0), (s1, e1) in zip(truth, truth[1:]):
        gap_mid = (e0 + s1) / 2 / 16000
        assert not any(g[0] < gap_mid < g[1] for g in got), (gap_mid, got)


def test_bad_settings_and_files_fail_clearly(tmp_path):
    empty = tmp_path / "empty.wav"
    write_wav(empty, np.zeros(0, np.float32))
    truncated = tmp_path / "truncated.wav"
    write_wav(truncated, room_noise(16000, 1))
    truncated.write_bytes(truncated.read_bytes()[:2000])
    for args, fragment in (([str(empty)], "no samples"), ([str(truncated)], "truncated"),
                           (["--vad-threshold", "1.5", str(empty)], "threshold"),
                           (["--vad-max-segment-s", "0", str(empty)], "max_segment_s"),
                           ([str(tmp_path / "missing.wav")], "not found")):
        r = subprocess.run([str(APPS / "u2vad"), "--vad-model-dir", str(VAD_MODEL), *args], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode != 0 and fragment in r.stderr, (args, r.stderr)
