"""Recordings of any length (VAD segmentation): a recording built at test time from real clips with
known pauses and background noise is cut where the pauses are and transcribed as well as the clips
one by one; a 2-hour file runs in flat memory; the timed formats parse back; silence and broken
files behave; and the server takes long recordings on its KServe and OpenAI paths."""
import json
import resource
import subprocess
import sys
import wave

import numpy as np
import pytest

from conftest import APPS, DEMO_MODEL, ROOT, ServerProcess, parse_cues, read_wav, room_noise, write_wav

REAL = ROOT / "data" / "real_speech" / "asterisk_en" / "test"
sys.path.insert(0, str(ROOT / "train"))
import common  # noqa: E402


def speech_bounds(x, frame=160, threshold=0.02):
    """(first, last) sample of the frames whose peak passes `threshold`, and the longest quiet run
    between them in samples."""
    loud = [i for i in range(len(x) // frame) if np.abs(x[i * frame:(i + 1) * frame]).max() > threshold]
    gaps = [(b - a - 1) * frame for a, b in zip(loud, loud[1:])]
    return loud[0] * frame, (loud[-1] + 1) * frame, max(gaps, default=0)


@pytest.fixture(scope="module")
def long_recording(tmp_path_factory):
    """About a minute and a half: real clips of one phrase each (no pause of their own over 150 ms),
    separated by 0.3-3 s of room noise, with faint white noise over everything."""
    d = tmp_path_factory.mktemp("long")
    scp, text = common.read_table(REAL / "wav.scp"), common.read_table(REAL / "text")
    rng = np.random.default_rng(11)
    pieces, truth, clips, at = [room_noise(8000, 1)], [], [], 8000
    for key in sorted(scp):
        x = read_wav(REAL / scp[key])[0]
        first, last, gap = speech_bounds(x)
        if gap > 2400 or not 1.0 < len(x) / 16000 < 6.0:
            continue
        clips.append(key)
        truth.append((at + first, at + last))
        pieces.append(x)
        at += len(x)
        pause = room_noise(int(16000 * rng.uniform(0.3, 3.0)), len(clips))
        pieces.append(pause)
        at += len(pause)
        if len(clips) == 16:
            break
    audio = np.concatenate(pieces)
    audio = audio + rng.normal(0, 3e-4, len(audio)).astype(np.float32)
    path = d / "long.wav"
    write_wav(path, audio)
    (d / "clips.scp").write_text("".join(f"{k} {(REAL / scp[k]).resolve()}\n" for k in clips))
    return dict(path=path, truth=truth, clips=clips, refs=[text[k] for k in clips], dir=d)


def u2recognize(*args):
    # Without the demo model's LM: segmentation and stitching are under test, and the LM's word
    # context differs between a long recording's segments and clips decoded one by one.
    r = subprocess.run([str(APPS / "u2recognize"), "--model-dir", str(DEMO_MODEL), "--quiet", "--lm", "none",
                        *map(str, args)],
                       capture_output=True, text=True, timeout=1200)
    return r


def cer(refs, hyp):
    e = common.ErrorRate()
    e.add(" ".join(refs), hyp)
    return e.cer()


def test_segments_follow_the_pauses_and_the_text_matches_the_clips(long_recording):
    r = u2recognize("--segment", "always", "--format", "json", "--vad-speech-pad-ms", "0", "--vad-min-silence-ms",
                    "200", long_recording["path"])
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    starts = [s["start"] for s in doc["segments"]]
    assert starts == sorted(starts)
    # Every clip's speech starts within 150 ms of a segment's first word... the VAD's segments are
    # not in the JSON (caption segments are), so the VAD's own boundaries come from u2vad.
    vad = subprocess.run([str(APPS / "u2vad"), "--vad-speech-pad-ms", "0", "--vad-min-silence-ms", "200",
                          str(long_recording["path"])], capture_output=True, text=True, timeout=300)
    assert vad.returncode == 0, vad.stderr
    segments = [tuple(map(float, line.split()[1:])) for line in vad.stdout.splitlines()]
    assert len(segments) == len(long_recording["truth"]), (segments, long_recording["truth"])
    for (start, end), (s, e) in zip(long_recording["truth"], segments):
        assert abs(s - start / 16000) <= 0.15 and abs(e - end / 16000) <= 0.15, (start / 16000, end / 16000, s, e)
    # The stitched transcript reads like the clips decoded one by one: no word lost or doubled.
    # Decoded as a user would, with the segments' default 200 ms of audio around the speech: cut
    # exactly at the VAD's boundaries (as above), a segment can lose a first or last consonant.
    r = u2recognize("--segment", "always", "--format", "json", "--vad-min-silence-ms", "200", long_recording["path"])
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    one_by_one = u2recognize("--wav-scp", long_recording["dir"] / "clips.scp")
    assert one_by_one.returncode == 0, one_by_one.stderr
    hyps = dict(line.partition(" ")[::2] for line in one_by_one.stdout.splitlines())
    joined = " ".join(hyps[k] for k in long_recording["clips"])
    refs = long_recording["refs"]
    print(f"CER stitched {cer(refs, doc['text']):.2f} %, one by one {cer(refs, joined):.2f} %")
    # A model that garbles real speech (about 45 % CER) garbles it differently in another context
    # (the segments' padding is not the clips' own silence): the CERs differ by up to 10 % of the CER
    # itself with no word lost (exp21 model: 46.4 vs 45.2 %), and the garbled words split
    # differently ("alfor" / "calfor"), so the word counts differ by a few. A lost or doubled phrase
    # moves both by more.
    assert cer(refs, doc["text"]) <= cer(refs, joined) + max(1.0, 0.1 * cer(refs, joined))
    words = len(joined.split())
    assert abs(len(doc["text"].split()) - words) <= max(2, 0.1 * words)


def test_a_live_stream_with_the_vad_gate_reads_like_the_clips(long_recording):
    """u2recognize --streaming --vad-gate decodes the recording as one live stream: the pauses are
    skipped, each ends a segment, and the stitched text reads like the clips streamed one by one."""
    gated = u2recognize("--streaming", "--vad-gate", "--vad-min-silence-ms", "200", "--segment", "never",
                        "--format", "json", long_recording["path"])
    assert gated.returncode == 0, gated.stderr
    doc = json.loads(gated.stdout)
    starts = [s["start"] for s in doc["segments"]]
    assert starts == sorted(starts) and starts[0] >= 0.3, starts  # times from the stream's start
    clips = u2recognize("--streaming", "--wav-scp", long_recording["dir"] / "clips.scp")
    assert clips.returncode == 0, clips.stderr
    hyps = dict(line.partition(" ")[::2] for line in clips.stdout.splitlines())
    joined = " ".join(hyps[k] for k in long_recording["clips"])
    refs = long_recording["refs"]
    print(f"CER gated stream {cer(refs, doc['text']):.2f} %, clips streamed one by one {cer(refs, joined):.2f} %")
    # As above, the tolerance grows with the model's CER on these clips (exp21 model: 47.8 vs 44.9 %).
    assert cer(refs, doc["text"]) <= cer(refs, joined) + max(2.0, 0.1 * cer(refs, joined))
    # Nothing lost or doubled (the demo model's words on real speech are too garbled to count).
    assert abs(len(doc["text"]) - len(joined)) <= 0.1 * len(joined)


def test_timed_formats_parse_back(long_recording, tmp_path):
    plain = u2recognize("--segment", "always", long_recording["path"])
    assert plain.returncode == 0, plain.stderr
    text = plain.stdout.partition(" ")[2].strip()
    assert text
    doc = json.loads(u2recognize("--segment", "always", "--format", "json", long_recording["path"]).stdout)
    assert doc["text"] == text and doc["duration"] > 60
    words = [w for s in doc["segments"] for w in s["words"]]
    assert " ".join(w["word"] for w in words) == text
    assert all(0 <= w["start"] <= w["end"] <= doc["duration"] and 0 <= w["confidence"] <= 1 for w in words)
    assert [w["start"] for w in words] == sorted(w["start"] for w in words)
    for fmt in ("srt", "vtt"):
        body = u2recognize("--segment", "always", "--format", fmt, long_recording["path"]).stdout
        cues = parse_cues(body, fmt == "vtt")
        assert " ".join(c[2] for c in cues) == text
        assert all(s < e for s, e, _ in cues) and all(a[1] <= b[0] for a, b in zip(cues, cues[1:]))
    # Several files need a folder for their captions.
    r = u2recognize("--format", "srt", long_recording["path"], long_recording["path"])
    assert r.returncode != 0 and "--output-dir" in r.stderr
    r = u2recognize("--format", "vtt", "--output-dir", tmp_path, "--wav-scp", long_recording["dir"] / "clips.scp")
    assert r.returncode == 0 and len(list(tmp_path.glob("*.vtt"))) == len(long_recording["clips"])


def write_long_wav(path, seconds, clip, every_s=600):
    """A long 16 kHz file written a minute at a time: faint room noise with `clip` every `every_s`."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        for minute in range(seconds // 60):
            block = room_noise(60 * 16000, minute)
            if minute * 60 % every_s == 0:
                block[16000:16000 + len(clip)] += clip
            w.writeframes(np.clip(np.round(block * 32768), -32768, 32767).astype("<i2").tobytes())


def test_two_hours_run_in_flat_memory(tmp_path):
    clip = read_wav(next(iter(sorted(REAL.glob("../wavs/*vm-instructions*.wav")))))[0]
    # A clip every 5 minutes: both files fill whole batches of segments, so the two runs differ in
    # length only.
    short, long = tmp_path / "one_hour.wav", tmp_path / "two_hours.wav"
    write_long_wav(short, 3600, clip, every_s=300)
    write_long_wav(long, 7200, clip, every_s=300)
    results = {}
    peaks = {}
    for name, path in (("short", short), ("long", long)):
        r = u2recognize("--format", "json", path)
        assert r.returncode == 0, r.stderr
        results[name] = json.loads(r.stdout)
        peaks[name] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB, the largest child so far
    assert results["long"]["duration"] == pytest.approx(7200, abs=0.1)
    assert len(results["long"]["segments"]) >= 24  # the clip every 5 minutes
    print(f"peak RSS: 1 h {peaks['short'] / 1024:.0f} MiB, 2 h {peaks['long'] / 1024:.0f} MiB")
    # Twice the length, the same memory (an hour of float samples alone would be 230 MB more).
    assert peaks["long"] < peaks["short"] + 20 * 1024


def test_silence_broken_files_and_absurd_settings(tmp_path):
    quiet = tmp_path / "quiet.wav"
    write_wav(quiet, room_noise(16000 * 300, 3))
    r = u2recognize("--format", "json", "--segment", "always", quiet)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["text"] == "" and doc["segments"] == []
    empty = tmp_path / "empty.wav"
    write_wav(empty, np.zeros(0, np.float32))
    truncated = tmp_path / "truncated.wav"
    write_long_wav(truncated, 240, np.zeros(1, np.float32))
    truncated.write_bytes(truncated.read_bytes()[:16000 * 2 * 230])
    for args, fragment in (([empty], "no samples"), ([truncated], "truncated"),
                           (["--vad-threshold", "2", quiet], "threshold"),
                           (["--vad-min-silence-ms", "-5", quiet], "min_silence_ms"),
                           (["--segment", "always", "--vad-model-dir", tmp_path / "nothing", quiet], "VAD")):
        r = u2recognize(*args)
        assert r.returncode != 0 and fragment in r.stderr, (args, r.stderr)


@pytest.fixture(scope="module")
def long_server(tmp_path_factory):
    s = ServerProcess(["--model-dir", str(DEMO_MODEL), "--workers", "1", "--threads", "2", "--lm", "none"],
                      tmp_path_factory.mktemp("long_server") / "u2serve.log")
    try:
        s.wait_ready()
        yield s
    finally:
        assert s.stop() == 0, s.log_text()


def test_server_transcribes_long_recordings(long_server, tmp_path):
    clip = read_wav(next(iter(sorted(REAL.glob("../wavs/*vm-instructions*.wav")))))[0]
    path = tmp_path / "four_minutes.wav"
    write_long_wav(path, 240, clip, every_s=60)
    want = u2recognize(path).stdout.partition(" ")[2].strip()  # u2recognize segments it the same way
    assert want
    import tritonclient.grpc as grpcclient
    samples = read_wav(path)[0]
    client = grpcclient.InferenceServerClient(long_server.grpc_url)
    wav = grpcclient.InferInput("WAV", [1, len(samples)], "FP32")
    wav.set_data_from_numpy(samples[np.newaxis, :])
    lens = grpcclient.InferInput("WAV_LENS", [1, 1], "INT32")
    lens.set_data_from_numpy(np.array([[len(samples)]], dtype=np.int32))
    r = client.infer("attention_rescoring", [wav, lens], outputs=[grpcclient.InferRequestedOutput("TRANSCRIPTS"),
                                                                 grpcclient.InferRequestedOutput("SEGMENTS")])
    assert r.as_numpy("TRANSCRIPTS")[0].decode() == want
    doc = json.loads(r.as_numpy("SEGMENTS")[0])
    assert doc["text"] == want and len(doc["segments"]) >= 4 and doc["segments"][-1]["start"] > 180
    from openai import OpenAI
    oa = OpenAI(base_url=f"http://{long_server.http_url}/v1", api_key="x", max_retries=0)
    with open(path, "rb") as f:
        v = oa.audio.transcriptions.create(model="attention_rescoring", file=f, response_format="verbose_json")
    assert v.text == want and v.duration == pytest.approx(240, abs=0.1)
    assert [s.start for s in v.segments] == sorted(s.start for s in v.segments) and v.segments[-1].end <= 240
    with open(path, "rb") as f:
        events = list(oa.audio.transcriptions.create(model="attention_rescoring", file=f, stream=True))
    deltas = [e for e in events if e.type == "transcript.text.delta"]
    assert len(deltas) >= 4 and "".join(e.delta for e in deltas) == want  # a delta per segment, in order


def test_server_without_a_vad_refuses_long_recordings_clearly(tmp_path):
    s = ServerProcess(["--model-dir", str(DEMO_MODEL), "--workers", "1", "--vad-model-dir", str(tmp_path / "none")],
                      tmp_path / "u2serve.log")
    try:
        s.wait_ready()
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException
        samples = np.zeros(16000 * 210, dtype=np.float32)
        wav = grpcclient.InferInput("WAV", [1, len(samples)], "FP32")
        wav.set_data_from_numpy(samples[np.newaxis, :])
        lens = grpcclient.InferInput("WAV_LENS", [1, 1], "INT32")
        lens.set_data_from_numpy(np.array([[len(samples)]], dtype=np.int32))
        with pytest.raises(InferenceServerException) as e:
            grpcclient.InferenceServerClient(s.grpc_url).infer("attention_rescoring", [wav, lens])
        assert "limit" in e.value.message()
    finally:
        assert s.stop() == 0, s.log_text()
