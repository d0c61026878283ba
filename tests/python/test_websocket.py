"""WebSocket streaming on u2serve's HTTP port (WeNet runtime's websocket protocol), on the shipped
demo model.

The reference for a stream's final result is u2recognize with `--chunk-size 16` (the model's
decoding chunk, all left chunks): for this causal model, chunk-masked offline decoding sees
exactly what streaming sees, so the two transcripts (and n-best lists) must be identical.
"""
import json
import re
import socket
import struct
import subprocess
import time
import urllib.request
from difflib import SequenceMatcher

import numpy as np
import pytest
import websocket

from conftest import DEMO_MODEL, APPS, ROOT, ServerProcess, read_wav, room_noise, sample_table, write_wav

SAMPLES = ROOT / "tests" / "data" / "samples"
CHUNK = 16  # models/demo/model.json decoding_chunk_size


def pcm16(samples):
    return np.clip(np.round(np.asarray(samples) * 32768.0), -32768, 32767).astype("<i2")


def u2recognize(paths, *extra):
    cmd = [str(APPS / "u2recognize"), "--model-dir", str(DEMO_MODEL), "--mode", "attention_rescoring",
           "--chunk-size", str(CHUNK), "--quiet", *extra] + [str(p) for p in paths]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture(scope="module")
def samples():
    """{utt: int16 PCM} of the shipped demo samples."""
    out = {}
    for utt, path in sample_table().items():
        audio, rate = read_wav(path)
        assert rate == 16000
        out[utt] = pcm16(audio)
    return out


@pytest.fixture(scope="module")
def streaming_reference():
    """{utt: transcript} from chunk-masked offline decoding, which is what streaming must give;
    u2recognize --streaming (the same engine the server streams with, fed in 250 ms pieces)
    agrees with it."""
    table = sample_table()
    out = {}
    for extra in [(), ("--streaming", "--piece-ms", "250")]:
        by_file = dict(line.partition(" ")[::2] for line in u2recognize(table.values(), *extra).splitlines())
        out[extra] = {utt: by_file[path.stem] for utt, path in table.items()}
    assert out[()] == out[("--streaming", "--piece-ms", "250")]
    return out[()]


def connect(server, path="/ws", timeout=60):
    return websocket.create_connection(f"ws://{server.http_url}{path}", timeout=timeout)


def receive(ws):
    """The next message as a dict, or None once the server has closed the connection."""
    try:
        opcode, data = ws.recv_data()
    except (websocket.WebSocketConnectionClosedException, ConnectionError):
        return None
    if opcode == websocket.ABNF.OPCODE_CLOSE:
        ws.close_code = struct.unpack(">H", data[:2])[0] if len(data) >= 2 else None
        # websocket-client has answered the close frame; close the socket too (its close() does
        # nothing once the closing handshake was answered, leaving the TCP connection open).
        ws.shutdown()
        return None
    assert opcode == websocket.ABNF.OPCODE_TEXT, f"server sent opcode {opcode}"
    return json.loads(data)


def receive_all(ws):
    messages = []
    while (m := receive(ws)) is not None:
        messages.append(m)
    return messages


def start(ws, **fields):
    ws.send(json.dumps({"signal": "start", **fields}))
    reply = receive(ws)
    assert reply == {"status": "ok", "type": "server_ready"}, reply
    return reply


def stream(server, pcm, frame_ms=250, path="/ws", frame_samples=None, **fields):
    """Streams one utterance: start, frames of frame_ms (or frame_samples), end; returns every
    message after server_ready up to the server's close."""
    ws = connect(server, path)
    try:
        start(ws, **fields)
        step = frame_samples or 16 * frame_ms
        for i in range(0, len(pcm), step):
            ws.send_binary(pcm[i:i + step].tobytes())
        ws.send(json.dumps({"signal": "end"}))
        return receive_all(ws)
    finally:
        ws.close()


def nbest_of(message):
    # WeNet sends "nbest" as a string holding JSON, not as a JSON array.
    assert isinstance(message["nbest"], str), message
    nbest = json.loads(message["nbest"])
    assert isinstance(nbest, list) and nbest, message
    return nbest


def finals_of(messages):
    return [nbest_of(m) for m in messages if m["type"] == "final_result"]


def expect_failure(ws, *fragments, close_code=1008):
    """The next message is {"status": "failed"} naming all fragments, then the server closes
    with `close_code`."""
    m = receive(ws)
    assert m is not None and m["status"] == "failed", m
    assert set(m) == {"status", "message"}, m
    for fragment in fragments:
        assert fragment in m["message"], m
    assert receive(ws) is None, "the connection should be closed after a failure"
    assert getattr(ws, "close_code", None) == close_code
    return m["message"]


def get_json(server, path):
    with urllib.request.urlopen(f"http://{server.http_url}{path}", timeout=10) as r:
        assert r.status == 200
        return json.loads(r.read())


def ws_stats(server):
    stats = get_json(server, "/ws/stats")
    assert len(stats["schedulers"]) == 1, stats
    return stats


def wait_for(predicate, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def assert_healthy(server, pcm, expected):
    with urllib.request.urlopen(f"http://{server.http_url}/v2/health/ready", timeout=10) as r:
        assert r.status == 200
    assert server.proc.poll() is None, server.log_text()
    finals = finals_of(stream(server, pcm, 640))
    assert [f[0]["sentence"] for f in finals] == [expected]


# ---------------------------------------------------------------------------------------------
# The protocol on the demo samples


@pytest.mark.parametrize("frame_ms", [100, 250, 640])
def test_streams_the_demo_samples(demo_server, samples, streaming_reference, frame_ms):
    for utt, pcm in samples.items():
        messages = stream(demo_server, pcm, frame_ms)
        types = [m["type"] for m in messages]
        assert all(m["status"] == "ok" for m in messages), messages
        # Partials while the audio comes in, one final at the end, then speech_end.
        assert types[-2:] == ["final_result", "speech_end"], types
        assert set(types[:-2]) == {"partial_result"}, types
        assert len(types) - 2 >= len(pcm) // (16000 * CHUNK * 40 // 1000) - 1, types
        for m in messages:
            assert set(m) == ({"status", "type"} if m["type"] == "speech_end" else {"status", "type", "nbest"})
        for m in messages[:-2]:
            nbest = nbest_of(m)
            assert len(nbest) == 1 and set(nbest[0]) == {"sentence"} and nbest[0]["sentence"], m
        final = nbest_of(messages[-2])
        assert len(final) == 1 and set(final[0]) == {"sentence", "word_pieces"}
        assert final[0]["sentence"] == streaming_reference[utt], (utt, frame_ms)
        # The last partial is the CTC prefix search's best path: close to the rescored final.
        last_partial = nbest_of(messages[-3])[0]["sentence"]
        assert SequenceMatcher(None, last_partial, final[0]["sentence"]).ratio() > 0.5


def test_tiny_frames(demo_server, samples, streaming_reference):
    # 1.25 ms per frame: thousands of feeds (more than the server lets wait at once, so reading
    # pauses and resumes); the feature framing does not depend on the piece size.
    utt, pcm = list(samples.items())[1]
    finals = finals_of(stream(demo_server, pcm, frame_samples=20))
    assert [f[0]["sentence"] for f in finals] == [streaming_reference[utt]]


def test_server_root_upgrades_too(demo_server, samples, streaming_reference):
    # WeNet's own demo pages connect to ws://host:port/ (no path).
    utt, pcm = next(iter(samples.items()))
    finals = finals_of(stream(demo_server, pcm, 500, path="/"))
    assert [f[0]["sentence"] for f in finals] == [streaming_reference[utt]]


def test_nbest(demo_server, samples):
    table = sample_table()
    lines = u2recognize(table.values(), "--nbest", "3").splitlines()
    reference = {}
    for line in lines:
        key, rank, _score, text = (line.split(" ", 3) + [""])[:4]
        reference.setdefault(key, []).append((int(rank), text))
    for utt, pcm in samples.items():
        messages = stream(demo_server, pcm, 320, nbest=3)
        for m in messages:
            if m["type"] == "partial_result":
                assert 1 <= len(nbest_of(m)) <= 3
        (final,) = finals_of(messages)
        expected = [text for _, text in sorted(reference[table[utt].stem])]
        assert len(expected) == 3
        assert [h["sentence"] for h in final] == expected, utt
        assert all("word_pieces" in h for h in final)


def test_word_pieces_are_monotone_and_inside_the_audio(demo_server, samples):
    for utt, pcm in samples.items():
        (final,) = finals_of(stream(demo_server, pcm, 400))
        best = final[0]
        pieces = best["word_pieces"]
        duration_ms = len(pcm) / 16
        assert pieces, utt
        assert " ".join(p["word"] for p in pieces).split() == best["sentence"].split(), utt
        previous_start = previous_end = 0
        for p in pieces:
            assert isinstance(p["start"], int) and isinstance(p["end"], int)
            assert 0 <= p["start"] <= p["end"] <= duration_ms, (utt, p, duration_ms)
            assert p["start"] >= previous_start and p["end"] >= previous_end, (utt, pieces)
            assert p["start"] >= previous_end - 1, (utt, pieces)  # words do not overlap
            previous_start, previous_end = p["start"], p["end"]
        assert pieces[-1]["end"] - pieces[0]["start"] > duration_ms / 3, (utt, pieces)


def test_continuous_decoding_splits_at_a_pause(demo_server, samples, streaming_reference, tmp_path):
    """Two utterances with 2 s of silence between them: endpointing (rule 2: 1 s of trailing
    silence after something was decoded) gives one final per utterance, and decoding goes on."""
    (first, a), (second, b) = list(samples.items())[:2]
    silence = np.round(room_noise(32000) * 32768).astype("<i2")
    pcm = np.concatenate([a, silence, b])
    messages = stream(demo_server, pcm, 200, continuous_decoding=True)
    assert [m["type"] for m in messages][-1] == "speech_end"
    finals = [f[0] for f in finals_of(messages)]
    spoken = [f for f in finals if f["sentence"]]
    assert len(spoken) == 2, finals
    # The split lies in the pause: the first final's words end before the second's audio, the
    # second's words start after it (times count from the stream's start).
    a_ms, b_start_ms = len(a) / 16, (len(a) + len(silence)) / 16
    assert spoken[0]["word_pieces"][-1]["end"] <= a_ms + 1000, spoken
    assert spoken[1]["word_pieces"][0]["start"] >= b_start_ms - 500, spoken
    assert spoken[1]["word_pieces"][-1]["end"] <= len(pcm) / 16
    # Each segment transcribes its own utterance.
    assert SequenceMatcher(None, spoken[0]["sentence"], streaming_reference[first]).ratio() > 0.8, spoken
    assert SequenceMatcher(None, spoken[1]["sentence"], streaming_reference[second]).ratio() > 0.8, spoken
    # Without continuous decoding (and endpointing off, the default then) one final covers both.
    finals = finals_of(stream(demo_server, pcm, 200))
    assert len(finals) == 1
    # Endpointing on without continuous decoding: the stream ends at the first endpoint.
    messages = stream(demo_server, pcm, 200, endpointing=True)
    assert [m["type"] for m in messages][-2:] == ["final_result", "speech_end"]
    assert len(finals_of(messages)) == 1
    assert SequenceMatcher(None, finals_of(messages)[0][0]["sentence"], streaming_reference[first]).ratio() > 0.8


def test_vad_gate_skips_silence_and_splits_at_pauses(demo_server, samples, streaming_reference):
    """vad_gate in the start message: the VAD lets only speech through (the 3 s pauses are never
    decoded) and ends a segment at each pause, with times counted from the stream's start."""
    (first, a), (second, b) = list(samples.items())[:2]

    def noise(n, seed):
        return np.round(room_noise(n, seed=seed) * 32768).astype("<i2")

    pcm = np.concatenate([noise(48000, 1), a, noise(48000, 2), b, noise(32000, 3)])
    messages = stream(demo_server, pcm, 200, vad_gate=True)
    assert [m["type"] for m in messages][-1] == "speech_end"
    finals = [f[0] for f in finals_of(messages)]
    assert len(finals) == 2, finals
    a_start_ms, b_start_ms = 3000, 3000 + len(a) / 16 + 3000
    assert a_start_ms - 500 <= finals[0]["word_pieces"][0]["start"] <= a_start_ms + 1500, finals
    assert finals[0]["word_pieces"][-1]["end"] <= a_start_ms + len(a) / 16 + 500, finals
    assert b_start_ms - 500 <= finals[1]["word_pieces"][0]["start"] <= b_start_ms + 1500, finals
    assert SequenceMatcher(None, finals[0]["sentence"], streaming_reference[first]).ratio() > 0.8, finals
    assert SequenceMatcher(None, finals[1]["sentence"], streaming_reference[second]).ratio() > 0.8, finals
    # A bad gate setting is refused like any other key.
    for options, fragment in [({"vad_gate": "yes"}, "boolean true or false is expected for vad_gate"),
                              ({"vad_gate": True, "vad_threshold": 1.5}, "vad threshold must be in (0, 1)"),
                              ({"vad_gate": True, "vad_min_silence_ms": -1}, "min_silence_ms")]:
        ws = connect(demo_server)
        ws.send(json.dumps({"signal": "start", **options}))
        expect_failure(ws, fragment)


def test_server_default_vad_gate(samples, tmp_path):
    """stream_vad_gate in the server's YAML gates every stream unless a client turns it off; the
    flag without a VAD stops the server at start with a clear message."""
    (_, a), (_, b) = list(samples.items())[:2]
    quiet = np.round(room_noise(48000, seed=5) * 32768).astype("<i2")
    pcm = np.concatenate([quiet, a, quiet, b, quiet])
    config = tmp_path / "server.yaml"
    config.write_text(f"model_dir: {DEMO_MODEL}\nstream_vad_gate: true\nthreads: 2\n")
    s = ServerProcess(["--config", str(config)], tmp_path / "gate.log")
    try:
        s.wait_ready()
        assert len(finals_of(stream(s, pcm, 200))) == 2
        assert len(finals_of(stream(s, pcm, 200, vad_gate=False))) == 1
    finally:
        assert s.stop() == 0
    r = subprocess.run([str(APPS / "u2serve"), "--model-dir", str(DEMO_MODEL), "--stream-vad-gate", "true",
                        "--vad-model-dir", str(tmp_path / "nothing"), "--http-port", "0", "--grpc-port", "0",
                        "--metrics-port", "-1"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "--stream-vad-gate needs the VAD" in r.stdout + r.stderr, r.stdout + r.stderr


# ---------------------------------------------------------------------------------------------
# Bad input: a "failed" message, the connection closed, the server unharmed


def test_bad_messages_are_refused(demo_server, samples, streaming_reference):
    utt, pcm = next(iter(samples.items()))
    second = pcm[:8000].tobytes()

    ws = connect(demo_server)
    ws.send_binary(second)
    expect_failure(ws, "Start signal is expected before binary data")

    ws = connect(demo_server)
    start(ws)
    ws.send_binary(second + b"\x00")  # half a sample
    expect_failure(ws, "odd")

    for garbage in ["hello", "{not json", "[1, 2]", "42", '"start"', "[" * 30000 + "]" * 30000]:
        ws = connect(demo_server)
        ws.send(garbage)
        expect_failure(ws, "Wrong protocol")

    ws = connect(demo_server)
    ws.send(json.dumps({"sig": "start"}))
    expect_failure(ws, "signal")

    ws = connect(demo_server)
    ws.send(json.dumps({"signal": "pause"}))
    expect_failure(ws, "Unexpected signal type")

    ws = connect(demo_server)
    ws.send(json.dumps({"signal": "end"}))
    expect_failure(ws, "end signal before start")

    ws = connect(demo_server)
    start(ws)
    ws.send_binary(second)
    ws.send(json.dumps({"signal": "start"}))
    expect_failure(ws, "second start")

    ws = connect(demo_server)
    start(ws)
    ws.send(json.dumps({"signal": "end"}))
    ws.send(json.dumps({"signal": "end"}))
    messages = receive_all(ws)  # the second end may come after the stream has ended
    assert messages[-1]["status"] == "failed" or messages[-1]["type"] == "speech_end", messages

    for options, fragment in [({"nbest": "3"}, "integer is expected for nbest"),
                              ({"nbest": 0}, "nbest"),
                              ({"continuous_decoding": 1}, "boolean true or false is expected"),
                              ({"decoding_chunk_size": 0}, "cannot start the stream"),
                              ({"model": "no_such_model"}, "no streaming model named 'no_such_model'"),
                              ({"model": 7}, "string is expected for model")]:
        ws = connect(demo_server)
        ws.send(json.dumps({"signal": "start", **options}))
        expect_failure(ws, fragment)

    ws = connect(demo_server, "/ws?model=nothing_here")
    ws.send(json.dumps({"signal": "start"}))
    expect_failure(ws, "no streaming model named 'nothing_here'")

    assert_healthy(demo_server, pcm, streaming_reference[utt])


def test_audio_after_end_is_refused(demo_server, samples):
    pcm = np.concatenate(list(samples.values()))  # long enough that its final takes a while
    ws = connect(demo_server)
    start(ws)
    ws.send_binary(pcm.tobytes())
    ws.send(json.dumps({"signal": "end"}))
    ws.send_binary(pcm[:1600].tobytes())
    messages = receive_all(ws)
    assert messages[-1] == {"status": "failed", "message": "audio after the end signal"}, messages[-3:]


def test_oversized_frames_are_refused(demo_server, samples, streaming_reference):
    utt, pcm = next(iter(samples.items()))
    ws = connect(demo_server)
    start(ws)
    ws.send_binary(b"\x00\x01" * ((1 << 20) // 2 + 1))
    message = expect_failure(ws, "exceeds 1048576 bytes", close_code=1009)
    assert "smaller frames" in message

    ws = connect(demo_server)
    ws.send("{" + " " * (70 * 1024) + "}")
    expect_failure(ws, "text message exceeds 65536 bytes", close_code=1009)
    # A frame just under the limit is fine (32 s of audio in one frame).
    big = np.tile(pcm, (1 << 19) // len(pcm) + 1)[: (1 << 19) - 8000]
    finals = finals_of(stream(demo_server, big, frame_ms=(1 << 19) // 16))
    assert len(finals) == 1 and finals[0][0]["sentence"]
    assert_healthy(demo_server, pcm, streaming_reference[utt])


def test_invalid_utf8_text_closes_the_connection(demo_server, samples, streaming_reference):
    utt, pcm = next(iter(samples.items()))
    ws = connect(demo_server)
    ws.send(b"\xff\xfe{", opcode=websocket.ABNF.OPCODE_TEXT)
    assert receive(ws) is None  # the WebSocket layer fails the connection (RFC 6455 §8.1)
    assert_healthy(demo_server, pcm, streaming_reference[utt])


def test_http_garbage_at_the_websocket_path(demo_server):
    # Not an upgrade: plain HTTP at /ws is an ordinary (unknown) REST path.
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://{demo_server.http_url}/ws", timeout=10)
    assert e.value.code == 404
    # A broken handshake (no Sec-WebSocket-Key) is refused without harm.
    with socket.create_connection(("127.0.0.1", demo_server.http_port), timeout=10) as s:
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Version: 13\r\n\r\n")
        reply = s.recv(4096)
        assert reply.startswith(b"HTTP/1.1 400"), reply
    assert demo_server.proc.poll() is None


# ---------------------------------------------------------------------------------------------
# Lifetime: clients that vanish, limits, memory


def test_client_gone_mid_stream_closes_its_stream_at_once(demo_server, samples, streaming_reference):
    utt, pcm = next(iter(samples.items()))
    assert wait_for(lambda: ws_stats(demo_server)["schedulers"][0]["live_streams"] == 0)
    before = ws_stats(demo_server)
    ws = connect(demo_server)
    start(ws)
    ws.send_binary(pcm[:16000].tobytes())
    assert wait_for(lambda: ws_stats(demo_server)["schedulers"][0]["live_streams"] == 1)
    assert ws_stats(demo_server)["schedulers"][0]["state_bytes"] > 0
    ws.sock.shutdown(socket.SHUT_RDWR)  # vanish: no close frame
    ws.sock.close()
    # Well before the scheduler's idle timeout (5 s): the stream is closed, its memory freed.
    t0 = time.time()
    assert wait_for(lambda: ws_stats(demo_server)["schedulers"][0]["live_streams"] == 0, timeout=3)
    assert time.time() - t0 < 3
    after = ws_stats(demo_server)
    sched_before, sched_after = before["schedulers"][0], after["schedulers"][0]
    assert sched_after["state_bytes"] == 0
    assert sched_after["streams_closed"] == sched_before["streams_closed"] + 1
    assert sched_after["streams_timed_out"] == sched_before["streams_timed_out"]
    assert after["streams_abandoned"] == before["streams_abandoned"] + 1
    assert wait_for(lambda: ws_stats(demo_server)["connections_open"] == 0)
    assert_healthy(demo_server, pcm, streaming_reference[utt])


def test_stream_limit_gives_a_clear_refusal(tmp_path, samples, streaming_reference):
    utt, pcm = next(iter(samples.items()))
    s = ServerProcess(["--model-dir", str(DEMO_MODEL), "--workers", "1", "--max-streams", "2"],
                      tmp_path / "u2serve.log")
    try:
        s.wait_ready()
        first, second = connect(s), connect(s)
        start(first)
        start(second)
        third = connect(s)
        third.send(json.dumps({"signal": "start"}))
        expect_failure(third, "too many concurrent streams", close_code=1013)
        first.close()
        assert wait_for(lambda: ws_stats(s)["schedulers"][0]["live_streams"] == 1)
        finals = finals_of(stream(s, pcm, 500))
        assert [f[0]["sentence"] for f in finals] == [streaming_reference[utt]]
        second.close()
    finally:
        assert s.stop() == 0, s.log_text()


def test_shutdown_with_open_connections(tmp_path, samples):
    """SIGTERM while one client streams and another is connected without a stream: the server
    exits cleanly and both connections end (with at most a "failed" message)."""
    pcm = next(iter(samples.values()))
    s = ServerProcess(["--model-dir", str(DEMO_MODEL), "--workers", "1"], tmp_path / "u2serve.log")
    try:
        s.wait_ready()
        live, idle = connect(s, timeout=30), connect(s, timeout=30)
        start(live)
        live.send_binary(pcm[:16000].tobytes())
        assert wait_for(lambda: ws_stats(s)["schedulers"][0]["live_streams"] == 1)
        assert ws_stats(s)["connections_open"] == 2
    finally:
        code = s.stop()
    assert code == 0, s.log_text()
    for ws in (live, idle):
        messages = receive_all(ws)
        assert all(m["status"] == "failed" or m["type"] == "partial_result" for m in messages), messages


def test_thousand_streams_keep_memory_flat(demo_server, samples):
    """1,000 streams, opened and closed (half finished normally, half dropped mid-stream): the
    server's RSS stays flat and nothing is left live."""
    pcm = next(iter(samples.values()))[:8000]  # 0.5 s
    payload = pcm.tobytes()

    def one(i):
        ws = connect(demo_server)
        start(ws)
        ws.send_binary(payload)
        if i % 2:
            ws.send(json.dumps({"signal": "end"}))
            assert receive_all(ws)[-1]["type"] == "speech_end"
        else:
            ws.sock.shutdown(socket.SHUT_RDWR)
        ws.close()

    for i in range(100):  # warm-up: allocator pools, thread caches
        one(i)
    rss_start = demo_server.rss_kb()
    t0 = time.time()
    for i in range(1000):
        one(i)
    elapsed = time.time() - t0
    assert wait_for(lambda: ws_stats(demo_server)["schedulers"][0]["live_streams"] == 0)
    assert wait_for(lambda: ws_stats(demo_server)["connections_open"] == 0)
    rss_end = demo_server.rss_kb()
    print(f"1000 streams in {elapsed:.1f} s; RSS {rss_start} -> {rss_end} kB")
    assert rss_end - rss_start < 16 * 1024, (rss_start, rss_end)
    assert ws_stats(demo_server)["schedulers"][0]["state_bytes"] == 0


# ---------------------------------------------------------------------------------------------
# The web page and stats over plain HTTP


def test_root_serves_the_web_page(demo_server):
    with urllib.request.urlopen(f"http://{demo_server.http_url}/", timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/html")
        page = r.read().decode("utf-8")
    source = (ROOT / "src" / "u2" / "server" / "web" / "index.html").read_text(encoding="utf-8")
    assert page == source  # embedded byte for byte
    # Self-contained: nothing loaded from elsewhere (no CDN scripts, styles or fonts).
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|@import|url\(\s*["']?(https?:)?//""", page)
    assert "<script>" in page and "<style>" in page


def test_ws_stats_counts_connections(demo_server, samples):
    before = ws_stats(demo_server)
    stream(demo_server, next(iter(samples.values())), 640)
    after = ws_stats(demo_server)
    assert after["connections_total"] == before["connections_total"] + 1
    assert after["streams_started"] == before["streams_started"] + 1
    assert after["streams_completed"] == before["streams_completed"] + 1
