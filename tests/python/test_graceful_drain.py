"""Graceful drain (docs/deploy.md): on SIGTERM, u2serve turns not-ready at once, refuses new
work with retryable errors (gRPC UNAVAILABLE, HTTP 503 + Retry-After, WebSocket 1013), lets the
streams that are live at that moment run to their end with the right transcripts, exits 0 as
soon as nothing is left, and at the latest after --drain-timeout-s."""
import json
import re
import signal
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import websocket
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from conftest import DEMO_MODEL, ServerProcess, read_wav, sample_table
from test_server_streaming import chunk_inputs, text_of, wenet_chunks
from test_websocket import connect, finals_of, pcm16, receive_all, start

MODEL = "streaming_wenet"


def http_status(server, path):
    try:
        with urllib.request.urlopen(f"http://{server.http_url}{path}", timeout=5) as r:
            return r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers)


def refusals(server, cause):
    with urllib.request.urlopen(server.metrics_url, timeout=5) as r:
        text = r.read().decode()
    m = re.search(rf'^u2_refusals_total{{cause="{cause}"}} (\S+)$', text, re.M)
    assert m, "u2_refusals_total missing from /metrics"
    return float(m.group(1))


def send_chunk(client, seq_id, chunks, i):
    padded, real = chunks[i]
    return client.infer(MODEL, chunk_inputs(grpcclient, padded, real), sequence_id=seq_id,
                        sequence_start=i == 0, sequence_end=i == len(chunks) - 1)


def expect_unavailable(call, *fragments):
    with pytest.raises(InferenceServerException) as e:
        call()
    assert e.value.status() == "StatusCode.UNAVAILABLE", e.value
    for fragment in fragments:
        assert fragment in e.value.message(), e.value.message()


@pytest.fixture(scope="module")
def clip():
    """The longest demo sample: (float samples, WeNet chunks, int16 PCM)."""
    path = max(sample_table().values(), key=lambda p: p.stat().st_size)
    audio, rate = read_wav(path)
    assert rate == 16000
    return audio, wenet_chunks(audio), pcm16(audio)


def test_sigterm_finishes_live_streams_and_refuses_new_work(tmp_path, clip):
    audio, chunks, pcm = clip
    assert len(chunks) >= 4
    server = ServerProcess(["--model-dir", str(DEMO_MODEL), "--workers", "1", "--threads", "2",
                            "--drain-timeout-s", "60"], tmp_path / "u2serve.log")
    try:
        server.wait_ready()
        client = grpcclient.InferenceServerClient(server.grpc_url)
        # The transcript this clip streams to, undisturbed.
        for i in range(len(chunks)):
            expected = text_of(send_chunk(client, 1, chunks, i))
        assert expected

        # Live at the signal: a Triton sequence two chunks in, a WebSocket stream half fed.
        send_chunk(client, 2, chunks, 0)
        send_chunk(client, 2, chunks, 1)
        ws = connect(server)
        start(ws)
        half = len(pcm) // 2
        ws.send_binary(pcm[:half].tobytes())

        server.proc.send_signal(signal.SIGTERM)
        deadline = time.time() + 2
        while http_status(server, "/v2/health/ready")[0] != 400:  # Triton's "not ready"
            assert time.time() < deadline, "readiness did not turn false within 2 s of SIGTERM"
            time.sleep(0.01)
        assert http_status(server, "/v2/health/live")[0] == 200
        assert not client.is_server_ready()
        assert client.is_server_live()

        # New work of every kind is refused, retryably.
        wav = audio.reshape(1, -1).astype(np.float32)
        offline = [grpcclient.InferInput("WAV", list(wav.shape), "FP32"),
                   grpcclient.InferInput("WAV_LENS", [1, 1], "INT32")]
        offline[0].set_data_from_numpy(wav)
        offline[1].set_data_from_numpy(np.array([[wav.shape[1]]], dtype=np.int32))
        expect_unavailable(lambda: client.infer("attention_rescoring", offline), "shutting down")
        body = json.dumps({"inputs": [{"name": "WAV", "shape": [1, 1600], "datatype": "FP32",
                                       "data": wav[0, :1600].tolist()}]}).encode()
        req = urllib.request.Request(f"http://{server.http_url}/v2/models/attention_rescoring/infer", data=body,
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 503 and e.value.headers["Retry-After"] == "1"
        form = (b"--B\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nattention_rescoring\r\n"
                b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.raw\"\r\n\r\n\0\0\r\n--B--\r\n")
        req = urllib.request.Request(f"http://{server.http_url}/v1/audio/transcriptions", data=form,
                                     headers={"Content-Type": "multipart/form-data; boundary=B"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 503 and "shutting down" in e.value.read().decode()
        expect_unavailable(lambda: send_chunk(client, 3, chunks, 0), "sequence", "not started")
        expect_unavailable(lambda: send_chunk(client, 4, chunks, 1), "not held here")
        # A WebSocket upgrade is answered 503 before the handshake, and a new bidirectional gRPC
        # stream ends UNAVAILABLE before any response: both retryable by a load balancer.
        with pytest.raises(websocket.WebSocketBadStatusException) as e:
            connect(server)
        assert e.value.status_code == 503
        stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.grpc_url))
        with pytest.raises(grpc.RpcError) as e:
            list(stub.ModelStreamInfer(iter([service_pb2.ModelInferRequest(model_name="attention_rescoring")]),
                                       timeout=10))
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value
        assert refusals(server, "shutting_down") == 7

        # The live streams go on to their end, with the transcript an undisturbed stream gets.
        for i in range(2, len(chunks)):
            text = text_of(send_chunk(client, 2, chunks, i))
        assert text == expected
        ws.send_binary(pcm[half:].tobytes())
        ws.send(json.dumps({"signal": "end"}))
        finals = finals_of(receive_all(ws))
        ws.close()
        assert [f[0]["sentence"] for f in finals] == [expected]
        ended = time.time()

        # Nothing left: the server exits 0 at once, not at the drain deadline (60 s).
        assert server.proc.wait(timeout=15) == 0, server.log_text()
        assert time.time() - ended < 10
        log = server.log_text()
        assert "draining: " in log and "cut off" not in log, log
    finally:
        server.stop()


def test_drain_deadline_cuts_off_streams_that_never_end_and_unknown_sequences_can_be_retryable(tmp_path, clip):
    _, chunks, _ = clip
    server = ServerProcess(["--model-dir", str(DEMO_MODEL), "--workers", "1", "--threads", "2",
                            "--drain-timeout-s", "2", "--stream-idle-timeout-ms", "120000",
                            "--unknown-sequence-retryable", "true"],
                           tmp_path / "u2serve.log")
    try:
        server.wait_ready()
        client = grpcclient.InferenceServerClient(server.grpc_url)
        # With --unknown-sequence-retryable a sequence this replica does not hold is UNAVAILABLE
        # (retried by a hashing load balancer), not Triton's INVALID_ARGUMENT.
        expect_unavailable(lambda: send_chunk(client, 8, chunks, 1), "START flag", "does not hold it")
        send_chunk(client, 7, chunks, 0)  # and never another
        t0 = time.time()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=20) == 0, server.log_text()
        took = time.time() - t0
        assert 1.8 < took < 8, took
        assert "1 live streams after 2 s; they are cut off" in server.log_text()
    finally:
        server.stop()
