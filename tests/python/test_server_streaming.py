"""The streaming_wenet model: Triton sequences (sequence_id / sequence_start / sequence_end) over
gRPC ModelInfer, gRPC ModelStreamInfer and HTTP, used the way WeNet's speech_client.py and
perf_analyzer --streaming use them (checklist 13-22, 24, 38).

Reference: for this causal demo model, streaming decoding with chunk size 16 equals offline
decoding with a chunk-16 attention mask, so the final transcript of a stream must equal
`u2recognize --chunk-size 16` (attention_rescoring) of the same audio, and the partial answered
after chunk k must equal `u2recognize --chunk-size 16 --mode ctc_prefix_beam_search` of the audio
cut after chunk k (11040 + 10240·k samples: exactly k + 1 full chunks)."""
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from conftest import DEMO_MODEL, APPS, ROOT, SERVER_MODEL, ServerProcess, read_wav, write_wav
from test_server import model_stats, as_int

SAMPLES = ROOT / "tests" / "data" / "samples"
PERF_ANALYZER = ROOT / ".venv" / "opt" / "perf_analyzer" / "perf_analyzer"
FIRST_CHUNK, NEXT_CHUNK = 11040, 10240  # WeNet's client: (67 + 2)·160 and 16·4·160 samples
MODEL = "streaming_wenet"


def table(path):
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            key, _, value = line.strip().partition(" ")
            out[key] = value.strip()
    return out


def wenet_chunks(samples):
    """speech_client.py's chunking: (padded chunk, real length) pairs."""
    out, start = [], 0
    while start < len(samples) or start == 0:
        size = FIRST_CHUNK if start == 0 else NEXT_CHUNK
        piece = samples[start:start + size]
        padded = np.zeros(size, dtype=np.float32)
        padded[:len(piece)] = piece
        out.append((padded, len(piece)))
        start += size
    return out


def chunk_inputs(mod, padded, real):
    wav = mod.InferInput("WAV", [1, len(padded)], "FP32")
    wav.set_data_from_numpy(padded.reshape(1, -1).astype(np.float32))
    lens = mod.InferInput("WAV_LENS", [1, 1], "INT32")
    lens.set_data_from_numpy(np.array([[real]], dtype=np.int32))
    return [wav, lens]


def text_of(result):
    t = result.as_numpy("TRANSCRIPTS")
    assert t.shape == (1,)
    return t[0].decode("utf-8") if isinstance(t[0], bytes) else t[0]


def run_u2recognize(model_dir, paths, mode="attention_rescoring", chunk_size=16):
    cmd = [str(APPS / "u2recognize"), "--model-dir", str(model_dir), "--mode", mode, "--quiet",
           "--chunk-size", str(chunk_size)] + [str(p) for p in paths]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return dict(line.partition(" ")[::2] for line in r.stdout.splitlines())


def metric(server, name, model=MODEL):
    with urllib.request.urlopen(server.metrics_url, timeout=10) as r:
        text = r.read().decode()
    m = re.search(rf'^{name}{{model="{model}",version="1"}} (\S+)$', text, re.M)
    assert m, f"{name} missing from /metrics"
    return float(m.group(1))


def wait_for(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def samples():
    """{utt: float32 samples} of the shipped demo samples."""
    out = {}
    for utt, rel in table(SAMPLES / "wav.scp").items():
        x, rate = read_wav(SAMPLES / rel)
        assert rate == 16000
        out[utt] = x
    return out


@pytest.fixture(scope="module")
def expected(samples, tmp_path_factory):
    """Finals: {utt: text}; partials of the first utterance: [text after chunk 0, 1, ...]; and the
    final of its first 0.3 s (shorter than one chunk)."""
    d = tmp_path_factory.mktemp("cuts")
    finals = run_u2recognize(DEMO_MODEL, [SAMPLES / rel for rel in table(SAMPLES / "wav.scp").values()])
    utt = sorted(samples)[0]
    x = samples[utt]
    cut_paths = []
    for k in range(len(wenet_chunks(x)) - 1):  # every chunk but the last (that one answers the final)
        path = d / f"cut{k:02d}.wav"
        write_wav(path, x[:FIRST_CHUNK + NEXT_CHUNK * k])
        cut_paths.append(path)
    partials = run_u2recognize(DEMO_MODEL, cut_paths, mode="ctc_prefix_beam_search")
    short = d / "short.wav"
    write_wav(short, x[:4800])
    return {"finals": finals, "partial_utt": utt,
            "partials": [partials[p.stem] for p in cut_paths],
            "short": run_u2recognize(DEMO_MODEL, [short])["short"]}


def stream_unary(client, x, sequence_id, mod=grpcclient, **kw):
    """WeNet speech_client.py: one ModelInfer per chunk; returns the texts answered. Every request
    carries the sticky header x-u2-sequence-id, as our clients send it (docs/streaming.md, "Behind a
    load balancer")."""
    texts = []
    chunks = wenet_chunks(x)
    for i, (padded, real) in enumerate(chunks):
        r = client.infer(MODEL, chunk_inputs(mod, padded, real),
                         outputs=[mod.InferRequestedOutput("TRANSCRIPTS")], request_id=str(i),
                         sequence_id=sequence_id, sequence_start=i == 0, sequence_end=i == len(chunks) - 1,
                         headers={"x-u2-sequence-id": str(sequence_id)}, **kw)
        assert r.get_response().id == str(i) if mod is grpcclient else True
        texts.append(text_of(r))
    return texts


# --- metadata (checklist 3-5) --------------------------------------------------------------------

def test_streaming_wenet_metadata_and_config(demo_server):
    client = grpcclient.InferenceServerClient(demo_server.grpc_url)
    assert "sequence" in client.get_server_metadata(as_json=True)["extensions"]
    assert client.is_model_ready(MODEL)
    meta = client.get_model_metadata(MODEL, as_json=True)
    assert meta["platform"] == "u2serve" and meta["versions"] == ["1"]
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [
        ("WAV", "FP32", ["-1", "-1"]), ("WAV_LENS", "INT32", ["-1", "1"])]
    assert [(t["name"], t["datatype"]) for t in meta["outputs"]] == [("TRANSCRIPTS", "BYTES")]
    cfg = client.get_model_config(MODEL, as_json=True)["config"]
    assert cfg["max_batch_size"] == 512 and "dynamic_batching" not in cfg
    sb = cfg["sequence_batching"]
    assert int(sb["max_sequence_idle_microseconds"]) == 5_000_000
    assert sb["oldest"]["max_candidate_sequences"] == 1024
    assert [c["name"] for c in sb["control_input"]] == ["START", "READY", "END", "CORRID"]
    assert cfg["parameters"]["decoding_chunk_size"]["string_value"] == "16"
    assert "dynamic_batching" in client.get_model_config("attention_rescoring", as_json=True)["config"]
    with urllib.request.urlopen(f"http://{demo_server.http_url}/v2/models/{MODEL}/config", timeout=10) as r:
        http_cfg = json.loads(r.read())
    assert http_cfg["sequence_batching"]["max_sequence_idle_microseconds"] == 5_000_000


# --- streaming transcripts (checklist 13, 14, 20) --------------------------------------------------

def test_wenet_speech_client_style_stream_gets_the_engine_transcripts(demo_server, samples, expected):
    client = grpcclient.InferenceServerClient(demo_server.grpc_url)
    for i, (utt, x) in enumerate(sorted(samples.items())):
        texts = stream_unary(client, x, 10086 + i)
        assert len(texts) == len(wenet_chunks(x))
        assert texts[-1] == expected["finals"][utt], utt
        if utt == expected["partial_utt"]:
            # One partial per chunk, each the CTC prefix-beam result of the audio so far.
            assert texts[:-1] == expected["partials"]


def test_stream_infer_interleaved_sequences_with_string_ids(demo_server, samples, expected):
    """All samples at once on one ModelStreamInfer call, chunks interleaved round-robin, string ids:
    one callback per request, in request order, and each sequence's final is right."""
    client = grpcclient.InferenceServerClient(demo_server.grpc_url)
    got = []
    done = threading.Event()
    plan = []  # (request id, utt, chunk index, chunk count)
    chunked = {utt: wenet_chunks(x) for utt, x in samples.items()}
    for k in range(max(len(c) for c in chunked.values())):
        for utt, chunks in sorted(chunked.items()):
            if k < len(chunks):
                plan.append((f"{utt}/{k}", utt, k, len(chunks)))

    def callback(result, error):
        got.append((result, error))
        if len(got) == len(plan):
            done.set()

    client.start_stream(callback=callback)
    try:
        for rid, utt, k, n in plan:
            padded, real = chunked[utt][k]
            client.async_stream_infer(MODEL, chunk_inputs(grpcclient, padded, real), request_id=rid,
                                      sequence_id=f"utt-{utt}", sequence_start=k == 0, sequence_end=k == n - 1,
                                      outputs=[grpcclient.InferRequestedOutput("TRANSCRIPTS")])
        assert done.wait(300), f"{len(got)} of {len(plan)} responses"
    finally:
        client.stop_stream()
    assert [e for _, e in got] == [None] * len(plan)
    assert [r.get_response().id for r, _ in got] == [rid for rid, *_ in plan]
    finals = {utt: text_of(r) for (r, _), (_, utt, k, n) in zip(got, plan) if k == n - 1}
    assert finals == expected["finals"]


def test_http_sequences(demo_server, samples, expected):
    client = httpclient.InferenceServerClient(demo_server.http_url)
    utt, x = sorted(samples.items())[1]
    assert stream_unary(client, x, 5, mod=httpclient)[-1] == expected["finals"][utt]
    assert stream_unary(client, x, "http-utt", mod=httpclient)[-1] == expected["finals"][utt]
    # One sequence whose chunks alternate between HTTP and two gRPC channels: one state, in order.
    clients = [(client, httpclient), (grpcclient.InferenceServerClient(demo_server.grpc_url), grpcclient),
               (grpcclient.InferenceServerClient(demo_server.grpc_url), grpcclient)]
    chunks = wenet_chunks(x)
    for k, (padded, real) in enumerate(chunks):
        c, mod = clients[k % 3]
        r = c.infer(MODEL, chunk_inputs(mod, padded, real), sequence_id=606, sequence_start=k == 0,
                    sequence_end=k == len(chunks) - 1)
    assert text_of(r) == expected["finals"][utt]
    with pytest.raises(InferenceServerException) as e:
        padded, real = wenet_chunks(x)[1]
        client.infer(MODEL, chunk_inputs(httpclient, padded, real), sequence_id=777)
    assert "must specify the START flag on the first request of the sequence" in e.value.message()
    assert e.value.status() == "400"


# --- sequence rules (checklist 15-19, 22) ---------------------------------------------------------

def test_sequence_rules(demo_server, samples, expected):
    client = grpcclient.InferenceServerClient(demo_server.grpc_url)
    utts = sorted(samples)
    a, b = samples[utts[0]], samples[utts[2]]
    padded, real = wenet_chunks(a)[1]
    # 15: a non-start request for an id that was never started.
    with pytest.raises(InferenceServerException) as e:
        client.infer(MODEL, chunk_inputs(grpcclient, padded, real), sequence_id=777)
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert ("inference request for sequence 777 to model 'streaming_wenet' must specify the START flag "
            "on the first request of the sequence") in e.value.message()
    # 16: no correlation id at all, or 0 / "".
    for sid in (0, ""):
        with pytest.raises(InferenceServerException) as e:
            client.infer(MODEL, chunk_inputs(grpcclient, padded, real), sequence_id=sid)
        assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert "must specify a non-zero or non-empty correlation ID" in e.value.message()
    # 17: start and end on one request: the whole utterance at once gives the streaming final,
    # and the sequence is gone afterwards.
    r = client.infer(MODEL, chunk_inputs(grpcclient, a, len(a)), sequence_id=31, sequence_start=True,
                     sequence_end=True)
    assert text_of(r) == expected["finals"][utts[0]]
    with pytest.raises(InferenceServerException) as e:
        client.infer(MODEL, chunk_inputs(grpcclient, padded, real), sequence_id=31)
    assert "START flag" in e.value.message()
    # Audio shorter than WeNet's first chunk (its Triton model fails on it): decoded.
    r = client.infer(MODEL, chunk_inputs(grpcclient, a[:4800], 4800), sequence_id=32, sequence_start=True,
                     sequence_end=True)
    assert text_of(r) == expected["short"]
    # 19: START again on a live id resets it: the first utterance's chunks are forgotten.
    first, first_len = wenet_chunks(a)[0]
    client.infer(MODEL, chunk_inputs(grpcclient, first, first_len), sequence_id=33, sequence_start=True)
    assert stream_unary(client, b, 33)[-1] == expected["finals"][utts[2]]
    # 14: string and integer ids are separate sequences ("33" is not 33).
    with pytest.raises(InferenceServerException):
        client.infer(MODEL, chunk_inputs(grpcclient, padded, real), sequence_id="33")


def test_restart_leaves_queued_requests_of_the_old_sequence_alone(demo_server, samples, expected):
    """START on a live id while its earlier requests are still queued (pipelined on one stream):
    those requests are answered from the old state (Triton finishes what is queued), the new
    sequence starts from nothing."""
    client = grpcclient.InferenceServerClient(demo_server.grpc_url)
    a_utt = expected["partial_utt"]
    b_utt = sorted(samples)[2]
    a, b = wenet_chunks(samples[a_utt]), wenet_chunks(samples[b_utt])
    plan = [(a[0], True, False), (a[1], False, False), (a[2], False, False)]
    plan += [(c, k == 0, k == len(b) - 1) for k, c in enumerate(b)]
    got, done = [], threading.Event()

    def callback(result, error):
        got.append((result, error))
        if len(got) == len(plan):
            done.set()

    client.start_stream(callback=callback)
    try:
        for i, ((padded, real), start, end) in enumerate(plan):
            client.async_stream_infer(MODEL, chunk_inputs(grpcclient, padded, real), request_id=str(i),
                                      sequence_id=4242, sequence_start=start, sequence_end=end)
        assert done.wait(300)
    finally:
        client.stop_stream()
    assert [e for _, e in got] == [None] * len(plan)
    texts = [text_of(r) for r, _ in got]
    assert texts[:3] == expected["partials"][:3]
    assert texts[-1] == expected["finals"][b_utt]


def raw_sequence_request(samples, **params):
    r = service_pb2.ModelInferRequest(model_name=MODEL)
    r.inputs.add(name="WAV", datatype="FP32", shape=[1, len(samples)])
    r.inputs.add(name="WAV_LENS", datatype="INT32", shape=[1, 1])
    r.raw_input_contents.append(samples.astype(np.float32).tobytes())
    r.raw_input_contents.append(np.array([len(samples)], dtype=np.int32).tobytes())
    for key, value in params.items():
        if isinstance(value, bool):
            r.parameters[key].bool_param = value
        elif isinstance(value, int):
            r.parameters[key].int64_param = value
        else:
            r.parameters[key].string_param = value
    return r


def test_sequence_parameters_through_the_raw_stub(demo_server, samples, expected):
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(demo_server.grpc_url))
    utt = sorted(samples)[0]
    x = samples[utt]
    whole = dict(sequence_start=True, sequence_end=True)
    # C++ client style: triton_enable_empty_final_response, plus unknown custom parameters.
    req = raw_sequence_request(x, sequence_id=41, triton_enable_empty_final_response=True, foo=1, **whole)
    resp = stub.ModelInfer(req)
    assert resp.model_version == "1"
    assert resp.raw_output_contents[0][4:].decode() == expected["finals"][utt]
    bad = []
    req = raw_sequence_request(x, **whole)
    req.parameters["sequence_id"].uint64_param = 42  # Triton accepts int64 or string only
    bad.append(req)
    bad.append(raw_sequence_request(x, sequence_id=43, triton_xyz=True, **whole))
    bad.append(raw_sequence_request(x, sequence_id=44, sequence_start=1, sequence_end=True))  # not a bool
    req = raw_sequence_request(x, sequence_id=45, **whole)  # a batch of 2
    req.inputs[0].shape[:] = [2, len(x) // 2]
    req.inputs[1].shape[:] = [2, 1]
    req.raw_input_contents[0] = x[:2 * (len(x) // 2)].tobytes()
    req.raw_input_contents[1] = np.array([len(x) // 2] * 2, dtype=np.int32).tobytes()
    bad.append(req)
    bad.append(raw_sequence_request(x, sequence_id=46, beam=0, **whole))
    bad.append(raw_sequence_request(x, sequence_id=47, decoding_mode="ctc_greedy", **whole))
    for req in bad:
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelInfer(req)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    # Per-stream options on the START request: without rescoring the final is the CTC prefix
    # beam search result, which equals u2recognize's ctc_prefix_beam_search with chunk 16.
    resp = stub.ModelInfer(raw_sequence_request(x, sequence_id=48, decoding_mode="ctc_prefix_beam_search", **whole))
    want = run_u2recognize(DEMO_MODEL, [SAMPLES / f"{utt}.wav"], mode="ctc_prefix_beam_search")[utt]
    assert resp.raw_output_contents[0][4:].decode() == want
    # A chunk size of 8 with 2 left chunks, in WeNet-sized pieces (no longer chunk-aligned).
    pieces = wenet_chunks(x)
    for k, (padded, real) in enumerate(pieces):
        params = dict(sequence_id=49, sequence_start=k == 0, sequence_end=k == len(pieces) - 1)
        if k == 0:
            params.update(chunk_size=8, left_chunks=2)
        resp = stub.ModelInfer(raw_sequence_request(padded[:real], **params))
    cmd = [str(APPS / "u2recognize"), "--model-dir", str(DEMO_MODEL), "--quiet", "--chunk-size", "8",
           "--left-chunks", "2", str(SAMPLES / f"{utt}.wav")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert resp.raw_output_contents[0][4:].decode() == r.stdout.strip().partition(" ")[2]


def test_bad_request_mid_stream_keeps_the_sequence_usable(demo_server, samples, expected):
    client = grpcclient.InferenceServerClient(demo_server.grpc_url)
    utt = sorted(samples)[3]
    chunks = wenet_chunks(samples[utt])
    assert len(chunks) >= 2
    got, done = [], threading.Event()
    n_requests = len(chunks) + 2

    def callback(result, error):
        got.append((result, error))
        if len(got) == n_requests:
            done.set()

    client.start_stream(callback=callback)
    try:
        ids = []
        for k, (padded, real) in enumerate(chunks):
            if k == 1:
                # Wrong datatype, then a non-finite sample: both fail alone, nothing of them is fed.
                wav = grpcclient.InferInput("WAV", [1, len(padded)], "FP64")
                wav.set_data_from_numpy(padded.reshape(1, -1).astype(np.float64))
                lens = grpcclient.InferInput("WAV_LENS", [1, 1], "INT32")
                lens.set_data_from_numpy(np.array([[real]], dtype=np.int32))
                client.async_stream_infer(MODEL, [wav, lens], request_id="bad-dtype", sequence_id="mid")
                nan = padded.copy()
                nan[5] = np.nan
                client.async_stream_infer(MODEL, chunk_inputs(grpcclient, nan, real), request_id="bad-nan",
                                          sequence_id="mid")
                ids += ["bad-dtype", "bad-nan"]
            client.async_stream_infer(MODEL, chunk_inputs(grpcclient, padded, real), request_id=f"c{k}",
                                      sequence_id="mid", sequence_start=k == 0, sequence_end=k == len(chunks) - 1)
            ids.append(f"c{k}")
        assert done.wait(300)
    finally:
        client.stop_stream()
    good = [(r, e) for r, e in got if e is None]
    assert [r.get_response().id for r, _ in good] == [i for i in ids if i.startswith("c")]
    assert sum(1 for _, e in got if e is not None) == 2
    assert all("WAV" in e.message() for r, e in got if e is not None)
    assert text_of(good[-1][0]) == expected["finals"][utt]


# --- limits: idle timeout, max streams, disconnects, memory (checklist 18, 24) ---------------------

@pytest.fixture(scope="module")
def small_server(tmp_path_factory):
    """The small random-weight test model with 2 streams at most and a 1 s idle timeout."""
    s = ServerProcess(["--model-dir", str(SERVER_MODEL), "--workers", "1", "--max-streams", "2",
                       "--stream-idle-timeout-ms", "1000"], tmp_path_factory.mktemp("small") / "u2serve.log")
    try:
        s.wait_ready()
        yield s
    finally:
        assert s.stop() == 0, s.log_text()


def test_idle_timeout_and_stream_limit(small_server):
    client = grpcclient.InferenceServerClient(small_server.grpc_url)
    x = (0.1 * np.sin(np.arange(FIRST_CHUNK) * 0.05)).astype(np.float32)
    start = dict(sequence_start=True)
    # 18: a sequence silent for longer than the idle timeout is gone.
    client.infer(MODEL, chunk_inputs(grpcclient, x, len(x)), sequence_id=5, **start)
    assert metric(small_server, "u2_streams_live") == 1
    time.sleep(2.0)
    with pytest.raises(InferenceServerException) as e:
        client.infer(MODEL, chunk_inputs(grpcclient, x, len(x)), sequence_id=5)
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT" and "START flag" in e.value.message()
    assert metric(small_server, "u2_streams_live") == 0
    assert metric(small_server, "u2_streams_timed_out_total") >= 1
    # --max-streams 2: a third live sequence is refused clearly; it fits once one ends.
    client.infer(MODEL, chunk_inputs(grpcclient, x, len(x)), sequence_id=1, **start)
    client.infer(MODEL, chunk_inputs(grpcclient, x, len(x)), sequence_id=2, **start)
    with pytest.raises(InferenceServerException) as e:
        client.infer(MODEL, chunk_inputs(grpcclient, x, len(x)), sequence_id=3, **start)
    assert e.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert "--max-streams" in e.value.message() and "sequence 3" in e.value.message()
    client.infer(MODEL, chunk_inputs(grpcclient, x, len(x)), sequence_id=1, sequence_end=True)
    wait_for(lambda: metric(small_server, "u2_streams_live") == 1, 10, "sequence 1 to end")
    client.infer(MODEL, chunk_inputs(grpcclient, x, len(x)), sequence_id=3, **start)
    # Restarting a live id does not need a second slot when nothing of it is queued.
    client.infer(MODEL, chunk_inputs(grpcclient, x, len(x)), sequence_id=3, **start)
    for sid in (2, 3):
        client.infer(MODEL, chunk_inputs(grpcclient, x, len(x)), sequence_id=sid, sequence_end=True)
    wait_for(lambda: metric(small_server, "u2_streams_live") == 0, 10, "all sequences to end")


DISCONNECTING_CLIENT = r"""
import os, sys, numpy as np, tritonclient.grpc as g
c = g.InferenceServerClient(sys.argv[1])
answered = []
c.start_stream(callback=lambda result, error: answered.append(error))
x = np.zeros((1, 11040), np.float32)
for sid in ("gone-1", "gone-2"):
    w = g.InferInput("WAV", [1, 11040], "FP32"); w.set_data_from_numpy(x)
    n = g.InferInput("WAV_LENS", [1, 1], "INT32"); n.set_data_from_numpy(np.array([[11040]], np.int32))
    c.async_stream_infer("streaming_wenet", [w, n], sequence_id=sid, sequence_start=True)
import time
deadline = time.time() + 60
while len(answered) < 2 and time.time() < deadline: time.sleep(0.01)
assert answered == [None, None], answered
print("started", flush=True)
os._exit(0)  # no goodbye: the connection just drops
"""


def test_client_disconnect_mid_sequence_frees_its_streams(demo_server, samples, expected):
    # The demo server's idle timeout is 5 s: the streams must go well before that.
    before_closed = metric(demo_server, "u2_streams_closed_total")
    r = subprocess.run([sys.executable, "-c", DISCONNECTING_CLIENT, demo_server.grpc_url],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "started" in r.stdout, r.stderr
    t0 = time.time()
    wait_for(lambda: metric(demo_server, "u2_streams_live") == 0, 3, "the vanished client's streams to close")
    assert time.time() - t0 < 3
    assert metric(demo_server, "u2_streams_closed_total") >= before_closed + 2
    # The server keeps serving.
    client = grpcclient.InferenceServerClient(demo_server.grpc_url)
    utt = sorted(samples)[4]
    assert stream_unary(client, samples[utt], 99)[-1] == expected["finals"][utt]


def test_memory_flat_over_1000_sequences(small_server):
    """1,000 sequences opened and closed (three chunks each, over one ModelStreamInfer call, many
    in flight at once) leave the server's RSS where it was."""
    x = (0.1 * np.sin(np.arange(FIRST_CHUNK + 2 * NEXT_CHUNK) * 0.03)).astype(np.float32)
    chunks = wenet_chunks(x)

    def run(first_id, count):
        client = grpcclient.InferenceServerClient(small_server.grpc_url)
        errors, answered, done = [], [0], threading.Event()
        total = count * len(chunks)

        def callback(result, error):
            if error is not None:
                errors.append(error)
            answered[0] += 1
            if answered[0] == total:
                done.set()

        client.start_stream(callback=callback)
        try:
            # Two sequences at a time (the server allows 2), fed chunk by chunk, interleaved; the
            # next pair starts once both have answered their END.
            for pair in range(first_id, first_id + count, 2):
                for k, (padded, real) in enumerate(chunks):
                    for sid in (pair, pair + 1):
                        client.async_stream_infer(MODEL, chunk_inputs(grpcclient, padded, real), sequence_id=sid,
                                                  sequence_start=k == 0, sequence_end=k == len(chunks) - 1)
                sent = (pair - first_id + 2) * len(chunks)
                deadline = time.time() + 60
                while answered[0] < sent and time.time() < deadline:
                    time.sleep(0.001)
                assert not errors, errors[:3]
            assert done.wait(60)
        finally:
            client.stop_stream()
        assert errors == []

    run(100_000, 200)  # warm-up: allocator pools, gRPC buffers
    wait_for(lambda: metric(small_server, "u2_streams_live") == 0, 10, "warm-up sequences to end")
    before = small_server.rss_kb()
    run(200_000, 1000)
    wait_for(lambda: metric(small_server, "u2_streams_live") == 0, 10, "sequences to end")
    after = small_server.rss_kb()
    print(f"RSS over 1000 sequences: {before} kB -> {after} kB ({after - before:+d} kB)")
    # A leak of one stream's state (tens of kB: caches, features) per sequence would be > 20 MB.
    assert after - before < 8 * 1024, f"RSS grew from {before} kB to {after} kB"
    assert metric(small_server, "u2_stream_state_bytes") == 0


# --- statistics, metrics, perf_analyzer (checklist 38, 39) -----------------------------------------

def test_statistics_and_metrics_count_sequence_requests(demo_server, samples):
    client = grpcclient.InferenceServerClient(demo_server.grpc_url)
    x = samples[sorted(samples)[0]]
    before = model_stats(client, MODEL)["inference_stats"]
    chunks_before = metric(demo_server, "u2_stream_chunks_total")
    n = len(stream_unary(client, x, 123))
    after = model_stats(client, MODEL)["inference_stats"]
    for key in ("success", "queue", "compute_input", "compute_infer", "compute_output"):
        assert as_int(after[key].get("count")) - as_int(before[key].get("count")) == n, key
    # Every chunk but the last is a full 16-frame chunk; the last one adds at least one.
    assert metric(demo_server, "u2_stream_chunks_total") - chunks_before >= n
    assert metric(demo_server, "nv_inference_request_success") == as_int(after["success"]["count"])
    assert metric(demo_server, "u2_stream_step_seconds_total") > 0


def perf_input(tmp_path, x):
    """WeNet generate_perf_input.py's streaming format: one stream, one step per padded chunk."""
    steps = [{"WAV": {"content": padded.tolist(), "shape": [len(padded)]}, "WAV_LENS": [real]}
             for padded, real in wenet_chunks(x)]
    path = tmp_path / "online_input.json"
    path.write_text(json.dumps({"data": [steps]}))
    return path, len(steps)


@pytest.mark.parametrize("protocol,streaming", [("grpc", True), ("grpc", False), ("http", False)])
def test_perf_analyzer_streaming(demo_server, samples, tmp_path, protocol, streaming):
    assert PERF_ANALYZER.exists(), "run scripts/install_perf_analyzer.sh (setup.sh does)"
    data, steps = perf_input(tmp_path, samples[sorted(samples)[0]])
    out = tmp_path / "out.csv"
    client = grpcclient.InferenceServerClient(demo_server.grpc_url)
    before = model_stats(client, MODEL)["inference_stats"]
    url = demo_server.grpc_url if protocol == "grpc" else demo_server.http_url
    cmd = [str(PERF_ANALYZER), "-m", MODEL, "-i", protocol, "-u", url, "--input-data", str(data),
           "-b", "1", "--concurrency-range", "2", "-p", "1000", "--sequence-length", str(steps),
           "-s", "200", "-r", "10", "-f", str(out)] + (["--streaming"] if streaming else [])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "START" not in r.stdout + r.stderr and "rror" not in r.stdout + r.stderr, r.stdout + r.stderr
    m = re.search(r"Sequence count: (\d+)", r.stdout)
    assert m and int(m.group(1)) > 0, r.stdout
    after = model_stats(client, MODEL)["inference_stats"]
    assert as_int(after["fail"].get("count")) == as_int(before["fail"].get("count"))
    assert as_int(after["success"].get("count")) > as_int(before["success"].get("count"))
    wait_for(lambda: metric(demo_server, "u2_streams_live") == 0, 10, "perf_analyzer's sequences to end")


def test_stream_settings_from_yaml_and_streaming_off(tmp_path):
    config = tmp_path / "server.yaml"
    config.write_text(f"model_dir: {SERVER_MODEL}\nmax_streams: 3\nstream_idle_timeout_ms: 2500\n"
                      "stream_chunk_size: 8\nstream_left_chunks: 4\nmax_stream_batch: 16\nstream_workers: 1\n")
    s = ServerProcess(["--config", str(config)], tmp_path / "yaml.log")
    try:
        s.wait_ready()
        cfg = grpcclient.InferenceServerClient(s.grpc_url).get_model_config(MODEL, as_json=True)["config"]
        sb = cfg["sequence_batching"]
        assert int(sb["max_sequence_idle_microseconds"]) == 2_500_000
        assert sb["oldest"]["max_candidate_sequences"] == 3 and sb["oldest"]["preferred_batch_size"] == [16]
        assert cfg["parameters"]["decoding_chunk_size"]["string_value"] == "8"
        assert cfg["parameters"]["num_decoding_left_chunks"]["string_value"] == "4"
    finally:
        assert s.stop() == 0
    s = ServerProcess(["--model-dir", str(SERVER_MODEL), "--max-streams", "0"], tmp_path / "off.log")
    try:
        s.wait_ready()
        client = grpcclient.InferenceServerClient(s.grpc_url)
        assert not client.is_model_ready(MODEL) and client.is_model_ready("attention_rescoring")
        assert "sequence" not in client.get_server_metadata(as_json=True)["extensions"]
    finally:
        assert s.stop() == 0
    r = subprocess.run([str(APPS / "u2serve"), "--model-dir", str(SERVER_MODEL), "--stream-left-chunks", "-2",
                        "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "stream_left_chunks" in r.stdout + r.stderr
