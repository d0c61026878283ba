"""Load shedding and limits: more work than the server can take is refused fast and retryably
(HTTP 503 with Retry-After, gRPC RESOURCE_EXHAUSTED) and counted by cause
(u2_refusals_total); a request past its timeout parameter is answered as such; slow senders
(slowloris) are cut off by --http-request-timeout-s; connections beyond --http-max-connections
are refused at once; a WebSocket client that never reads its results is disconnected and its
stream freed. The server keeps serving good requests throughout."""
import json
import socket
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import websocket
from tritonclient.utils import InferenceServerException

from conftest import DEMO_MODEL, SERVER_MODEL, ServerProcess, read_wav, sample_table
from test_server import binary_body, grpc_transcript, http_post, wenet_inputs

MAX_CONNECTIONS = 48


def refusals(server):
    """{cause: count} of u2_refusals_total."""
    with urllib.request.urlopen(server.metrics_url, timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("u2_refusals_total{"):
            cause = line.split('cause="')[1].split('"')[0]
            out[cause] = float(line.split()[-1])
    return out


def metric(server, name):
    with urllib.request.urlopen(server.metrics_url, timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.split()[-1])
    return None


@pytest.fixture(scope="module")
def busy_server(tmp_path_factory):
    """One worker, a queue of 2, requests that must arrive within 2 s, few connections."""
    s = ServerProcess(["--model-dir", str(SERVER_MODEL), "--workers", "1", "--max-queue-size", "2",
                       "--max-queue-delay-us", "0", "--http-request-timeout-s", "2",
                       "--http-max-connections", str(MAX_CONNECTIONS)],
                      tmp_path_factory.mktemp("busy") / "u2serve.log")
    try:
        s.wait_ready()
        yield s
    finally:
        assert s.stop() == 0, s.log_text()


def test_a_full_queue_is_refused_fast_and_retryably(busy_server, audio_set, reference):
    samples = audio_set["double"][1]
    want = reference["attention_rescoring"]["double"]
    before = refusals(busy_server).get("queue_full", 0)
    n = 24
    barrier = threading.Barrier(n)
    body, json_len = binary_body(samples.reshape(1, -1), [len(samples)], outputs_binary=False)

    def one(i):
        barrier.wait()
        t0 = time.perf_counter()
        if i % 2:
            code, resp, headers = http_post(busy_server, "/v2/models/attention_rescoring/infer", body,
                                            {"Inference-Header-Content-Length": str(json_len)})
            seconds = time.perf_counter() - t0
            if code == 200:
                return "ok", json.loads(resp)["outputs"][0]["data"][0], seconds
            return code, (resp.decode(), headers.get("retry-after")), seconds
        try:
            return "ok", grpc_transcript(grpcclient.InferenceServerClient(busy_server.grpc_url), samples), None
        except InferenceServerException as e:
            return e.status(), (e.message(), None), time.perf_counter() - t0

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))
    refused = [r for r in results if r[0] != "ok"]
    assert refused, f"{n} simultaneous requests never overflowed a queue of 2"
    assert all(text == want for kind, text, _ in results if kind == "ok")
    for kind, (message, retry_after), _ in refused:
        assert kind in ("StatusCode.RESOURCE_EXHAUSTED", 503), (kind, message)
        assert "queue is full" in message
        if kind == 503:
            assert retry_after == "1", message
    # Refused at once, not after waiting for the queue: the median refusal takes < 50 ms (the
    # request's upload included).
    http_refusals = sorted(seconds for kind, _, seconds in refused if kind == 503)
    if http_refusals:
        assert http_refusals[len(http_refusals) // 2] < 0.05, http_refusals
    assert refusals(busy_server)["queue_full"] - before == len(refused)


def test_a_full_queue_refuses_openai_uploads_and_counts_them(busy_server, audio_set):
    """OpenAI uploads go through the same queue: the refused ones get 503 + Retry-After and are
    counted in u2_refusals_total{cause="queue_full"} like KServe's (the soak test found them
    uncounted)."""
    from test_openai_api import form
    body = form([("model", None, b"attention_rescoring"), ("file", "a.wav", audio_set["double"][0].read_bytes())])
    before = refusals(busy_server).get("queue_full", 0)
    n = 16
    barrier = threading.Barrier(n)

    def one(_):
        barrier.wait()
        return http_post(busy_server, "/v1/audio/transcriptions", body,
                         {"Content-Type": "multipart/form-data; boundary=XyZ"})

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))
    refused = [(code, resp, headers) for code, resp, headers in results if code != 200]
    assert refused, f"{n} simultaneous uploads never overflowed a queue of 2"
    for code, resp, headers in refused:
        assert code == 503 and headers.get("retry-after") == "1", (code, resp)
        assert "queue is full" in json.loads(resp)["error"]["message"]
    assert refusals(busy_server)["queue_full"] - before == len(refused)

def test_an_expired_deadline_is_answered_as_such(busy_server, audio_set):
    samples = audio_set["speech"][1]
    before = refusals(busy_server).get("deadline_exceeded", 0)
    # Triton's "timeout" parameter (microseconds): 1 us has passed before any worker can start it.
    body, json_len = binary_body(samples.reshape(1, -1), [len(samples)], params={"timeout": 1})
    code, resp, _ = http_post(busy_server, "/v2/models/attention_rescoring/infer", body,
                              {"Inference-Header-Content-Length": str(json_len)})
    assert code == 504 and b"deadline" in resp, (code, resp)
    client = grpcclient.InferenceServerClient(busy_server.grpc_url)
    with pytest.raises(InferenceServerException) as e:
        client.infer("attention_rescoring", wenet_inputs(grpcclient, samples), timeout=1)  # the parameter
    assert e.value.status() == "StatusCode.DEADLINE_EXCEEDED", e.value
    assert refusals(busy_server)["deadline_exceeded"] - before == 2
    # Without the timeout the same request is answered.
    assert grpc_transcript(client, samples)


def slow_sender(server, stop, header_bytes=0):
    """A slowloris connection: a request line, optionally a big header, then a byte every 0.3 s.
    Returns the seconds until the server closed it (None if it never did before `stop`)."""
    s = socket.create_connection(("127.0.0.1", server.http_port), timeout=10)
    t0 = time.monotonic()
    try:
        s.sendall(b"POST /v2/models/attention_rescoring/infer HTTP/1.1\r\nHost: x\r\n")
        if header_bytes:
            s.sendall(b"X-Pad: " + b"a" * header_bytes + b"\r\n")
        while not stop.is_set():
            s.sendall(b"X")
            s.settimeout(0.3)
            try:
                if s.recv(4096) == b"":
                    return time.monotonic() - t0
            except socket.timeout:
                continue
    except (ConnectionResetError, BrokenPipeError):
        return time.monotonic() - t0
    finally:
        s.close()
    return None


def test_slow_senders_are_cut_off_and_their_memory_freed(busy_server, audio_set, reference):
    samples = audio_set["speech"][1]
    client = grpcclient.InferenceServerClient(busy_server.grpc_url)
    before = refusals(busy_server).get("request_timeout", 0)
    rss = []
    for _ in range(3):
        stop = threading.Event()
        with ThreadPoolExecutor(30) as pool:
            # 30 connections, each holding ~40 KB of headers: ~1.2 MB the server must let go.
            cut = [pool.submit(slow_sender, busy_server, stop, 40_000) for _ in range(30)]
            time.sleep(0.5)
            # Good requests are served during the attack.
            assert grpc_transcript(client, samples) == reference["attention_rescoring"]["speech"]
            seconds = [f.result(timeout=30) for f in cut]
        stop.set()
        assert all(s is not None and s < 5.0 for s in seconds), seconds  # --http-request-timeout-s 2
        rss.append(busy_server.rss_kb())
    assert refusals(busy_server)["request_timeout"] - before == 90
    # The second and third rounds reuse what the first freed.
    assert rss[2] - rss[0] < 8 * 1024, rss


def test_connections_beyond_the_limit_are_refused_at_once(busy_server):
    held = []
    try:
        for _ in range(MAX_CONNECTIONS):
            held.append(socket.create_connection(("127.0.0.1", busy_server.http_port), timeout=10))
        time.sleep(0.3)  # the server has accepted them all
        before = refusals(busy_server).get("too_many_connections", 0)
        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", busy_server.http_port), timeout=10) as extra:
            extra.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = b""
            while chunk := extra.recv(4096):
                reply += chunk
        assert time.monotonic() - t0 < 1.0
        assert reply.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in reply, reply
        assert refusals(busy_server)["too_many_connections"] == before + 1
    finally:
        for s in held:
            s.close()
    time.sleep(0.3)
    with urllib.request.urlopen(f"http://{busy_server.http_url}/v2/health/ready", timeout=10) as r:
        assert r.status == 200


def test_a_websocket_client_that_never_reads_is_disconnected(tmp_path):
    s = ServerProcess(["--model-dir", str(DEMO_MODEL), "--workers", "1", "--threads", "1",
                       "--websocket-max-send-queue-bytes", "2048"], tmp_path / "ws.log")
    try:
        s.wait_ready()
        speech = [read_wav(p)[0] for p in sample_table().values()]
        pcm = np.clip(np.round(np.concatenate(speech * 4) * 32768), -32768, 32767).astype("<i2")
        # A tiny receive buffer and no reads: the server's results have nowhere to go.
        ws = websocket.create_connection(f"ws://{s.http_url}/ws", timeout=30,
                                         sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),))
        ws.send(json.dumps({"signal": "start", "nbest": 10, "confidence": True}))
        sent = 0
        try:
            for i in range(0, len(pcm), 1600):
                ws.send_binary(pcm[i:i + 1600].tobytes())
                sent += 1
        except (ConnectionError, websocket.WebSocketException, OSError):
            pass
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and refusals(s).get("slow_reader", 0) < 1:
            time.sleep(0.2)
        assert refusals(s)["slow_reader"] == 1, f"sent {sent} frames; {s.log_text()[-2000:]}"
        # Its stream is gone at once (not at the idle timeout), and the server serves others.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and metric(s, "u2_streams_live") != 0:
            time.sleep(0.1)
        assert metric(s, "u2_streams_live") == 0
        ws.close()
        good = websocket.create_connection(f"ws://{s.http_url}/ws", timeout=30)
        good.send(json.dumps({"signal": "start"}))
        good.send_binary(np.clip(np.round(speech[0] * 32768), -32768, 32767).astype("<i2").tobytes())
        good.send(json.dumps({"signal": "end"}))
        messages = []
        while True:
            m = json.loads(good.recv())
            messages.append(m)
            if m.get("type") == "speech_end":
                break
        assert any(m.get("type") == "final_result" for m in messages)
        good.close()
    finally:
        assert s.stop() == 0, s.log_text()
