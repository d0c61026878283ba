"""u2client --streaming and u2perf --streaming.

Two kinds of server:
- a recording fake Triton server (grpcio + tritonclient's service stubs, in this process) that
  checks what the clients put on the wire: WeNet speech_client.py's chunking (690 ms first chunk,
  then 640 ms, each zero-padded, WAV_LENS = real length), Triton's sequence parameters, one request
  in flight per sequence; and whose latency the tests control (pacing, the p99 budget, the search);
- u2serve on the shipped demo model serving streaming_wenet: finals equal tritonclient's own
  streaming results and u2recognize with the same chunk size (this model is causal, so streaming
  equals the chunk-masked offline decode).
"""
import csv
import json
import subprocess
import threading
import time
from concurrent import futures

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from conftest import DEMO_MODEL, APPS, ROOT, free_port, read_wav, write_wav

SAMPLES = ROOT / "tests" / "data" / "samples"
U2CLIENT = str(APPS / "u2client")
U2PERF = str(APPS / "u2perf")


# ---- A recording fake server ---------------------------------------------------------------------

def param_value(p):
    kind = p.WhichOneof("parameter_choice")
    return kind, getattr(p, kind)


class FakeStreamingServer(service_pb2_grpc.GRPCInferenceServiceServicer):
    """Serves one sequence model. Each chunk's answer is "<sequence id>:<chunk index>:<samples so
    far>", so a client's printed partials and finals show what the server received. `delay_s(live)`
    gives each response's delay from the number of live sequences."""

    def __init__(self, model="streaming_wenet", delay_s=lambda live: 0.0):
        self.model = model
        self.delay_s = delay_s
        self.lock = threading.Lock()
        self.requests = []        # (rpc, sequence_id, start, end, padded, wav_lens, params, arrival)
        self.live = {}            # sequence id -> [chunks, samples]
        self.in_flight = {}       # sequence id -> requests being processed (must stay <= 1)
        self.max_in_flight = 0
        self.protocol_errors = []
        self.sticky = []          # (sequence_id parameter, x-u2-sequence-id header or None) per ModelInfer

    def _answer(self, rpc, req):
        if req.model_name != self.model:
            return None, f"Request for unknown model: '{req.model_name}' is not found"
        params = {k: param_value(v) for k, v in req.parameters.items()}
        kinds = {k: params[k][0] for k in ("sequence_id", "sequence_start", "sequence_end") if k in params}
        if kinds != {"sequence_id": "int64_param", "sequence_start": "bool_param", "sequence_end": "bool_param"}:
            self.protocol_errors.append(f"sequence parameters {params}")
            return None, "bad sequence parameters"
        seq, start, end = params["sequence_id"][1], params["sequence_start"][1], params["sequence_end"][1]
        names = [i.name for i in req.inputs]
        wav, lens = req.inputs[names.index("WAV")], req.inputs[names.index("WAV_LENS")]
        if wav.datatype != "FP32" or lens.datatype != "INT32" or list(lens.shape) != [1, 1] or len(wav.shape) != 2:
            self.protocol_errors.append(f"tensors {req.inputs}")
        samples = np.frombuffer(req.raw_input_contents[names.index("WAV")], dtype="<f4")
        n = int(np.frombuffer(req.raw_input_contents[names.index("WAV_LENS")], dtype="<i4")[0])
        if samples.size != wav.shape[1] or n > samples.size or np.any(samples[n:] != 0):
            self.protocol_errors.append(f"padding: {samples.size} samples, shape {list(wav.shape)}, WAV_LENS {n}")
        with self.lock:
            if seq in self.in_flight and self.in_flight[seq] > 0:
                self.protocol_errors.append(f"two requests of sequence {seq} in flight")
            self.in_flight[seq] = self.in_flight.get(seq, 0) + 1
            if start:
                self.live[seq] = [0, 0]
            elif seq not in self.live:
                self.in_flight[seq] -= 1
                return None, f"inference request for sequence {seq} must specify the START flag"
            state = self.live[seq]
            state[0] += 1
            state[1] += n
            text = f"{seq}:{state[0] - 1}:{state[1]}"
            live = len(self.live)
            self.requests.append((rpc, seq, start, end, int(wav.shape[1]), n, params, time.monotonic(),
                                  samples[:n].copy()))
        time.sleep(self.delay_s(live))
        with self.lock:
            if end:
                self.live.pop(seq, None)
            self.in_flight[seq] -= 1
        resp = service_pb2.ModelInferResponse(model_name=req.model_name, model_version="1", id=req.id)
        out = resp.outputs.add(name="TRANSCRIPTS", datatype="BYTES", shape=[1])
        del out  # data goes in raw_output_contents
        raw = text.encode()
        resp.raw_output_contents.append(len(raw).to_bytes(4, "little") + raw)
        return resp, None

    def ModelReady(self, request, context):
        return service_pb2.ModelReadyResponse(ready=request.name == self.model)

    def ModelInfer(self, request, context):
        header = dict(context.invocation_metadata()).get("x-u2-sequence-id")
        if "sequence_id" in request.parameters:
            with self.lock:
                self.sticky.append((param_value(request.parameters["sequence_id"])[1], header))
        resp, error = self._answer("unary", request)
        if error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, error)
        return resp

    def ModelStreamInfer(self, request_iterator, context):
        for req in request_iterator:
            resp, error = self._answer("stream", req)
            if error:
                yield service_pb2.ModelStreamInferResponse(
                    error_message=error, infer_response=service_pb2.ModelInferResponse(id=req.id))
            else:
                yield service_pb2.ModelStreamInferResponse(infer_response=resp)


@pytest.fixture
def fake_server():
    servers = []

    def start(**kwargs):
        servicer = FakeStreamingServer(**kwargs)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return servicer, f"127.0.0.1:{port}"

    yield start
    for s in servers:
        s.stop(0)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Three utterances of known lengths: 0.5 s (shorter than the first chunk), 2.0 s, 3.33 s."""
    d = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(5)
    out = {}
    for name, n in (("short", 8000), ("two", 32000), ("long", 53280)):
        path = d / f"{name}.wav"
        write_wav(path, rng.uniform(-0.3, 0.3, n))
        out[name] = (path, read_wav(path)[0])
    return out


def expected_chunks(n, first, later):
    """(padded, real) per chunk, as speech_client.py cuts an utterance of n samples."""
    chunks = [(first, min(first, n))]
    pos = chunks[0][1]
    while pos < n:
        chunks.append((later, min(later, n - pos)))
        pos += chunks[-1][1]
    return chunks


def sequences(servicer):
    by_seq = {}
    for rpc, seq, start, end, padded, n, params, t, samples in servicer.requests:
        by_seq.setdefault(seq, []).append((rpc, start, end, padded, n, params, t, samples))
    return by_seq


def parse_finals(stdout):
    return dict(line.split(" ", 1) if " " in line else (line, "") for line in stdout.splitlines()
                if not line.startswith("partial "))


@pytest.mark.parametrize("unary", [False, True])
def test_u2client_sends_wenet_chunks_with_sequence_parameters(fake_server, clips, unary):
    servicer, url = fake_server()
    paths = [str(p) for p, _ in clips.values()]
    r = subprocess.run([U2CLIENT, "--streaming", "--url", url, "--concurrency", "2", "--sequence-id-start", "500"]
                       + (["--unary"] if unary else []) + paths, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert not servicer.protocol_errors, servicer.protocol_errors
    seqs = sequences(servicer)
    # One sequence per file, ids 500.. in file order, every request over the chosen RPC.
    assert sorted(seqs) == [500, 501, 502]
    finals = parse_finals(r.stdout)
    partial_lines = [line for line in r.stderr.splitlines() if line.startswith("partial ")]
    for index, (name, (_, samples)) in enumerate(clips.items()):
        reqs = seqs[500 + index]
        assert {rpc for rpc, *_ in reqs} == {"unary" if unary else "stream"}
        assert [(padded, n) for _, _, _, padded, n, *_ in reqs] == expected_chunks(len(samples), 11040, 10240)
        assert [start for _, start, *_ in reqs] == [True] + [False] * (len(reqs) - 1)
        assert [end for _, _, end, *_ in reqs] == [False] * (len(reqs) - 1) + [True]
        # The samples are the file's, in order.
        assert np.array_equal(np.concatenate([s for *_, s in reqs]), samples)
        # The final is the last chunk's answer; every other answer is printed as a partial.
        assert finals[name] == f"{500 + index}:{len(reqs) - 1}:{len(samples)}"
        # Unary chunks carry the sticky header a load balancer hashes on (deploy/envoy).
        if unary:
            assert [h for seq, h in servicer.sticky if seq == 500 + index] == [str(500 + index)] * len(reqs)
        mine = [line.split(" ", 3) for line in partial_lines if line.split(" ")[1] == name]
        assert [p[3] for p in mine] == [f"{500 + index}:{k}:{sum(n for _, n in expected_chunks(len(samples), 11040, 10240)[:k + 1])}"
                                        for k in range(len(reqs) - 1)]
        # "partial <utt> <seconds sent> <text>"
        assert [float(p[2]) for p in mine] == [round(sum(n for _, n in expected_chunks(len(samples), 11040, 10240)[:k + 1]) / 16000, 2)
                                               for k in range(len(reqs) - 1)]
    assert "latency send->response" in r.stderr


def test_u2client_chunk_size_partials_on_stdout_and_parameters(fake_server, clips):
    servicer, url = fake_server()
    path, samples = clips["long"]
    r = subprocess.run([U2CLIENT, "--streaming", "--url", url, "--chunk-ms", "320", "--partials", "stdout",
                        "--param", "beam=4", "--param", "rescoring=false", str(path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    (reqs,) = sequences(servicer).values()
    # chunk 320 ms -> first chunk 370 ms (5920 samples), later 320 ms (5120).
    assert [(padded, n) for _, _, _, padded, n, *_ in reqs] == expected_chunks(len(samples), 5920, 5120)
    for *_, params, _t, _s in reqs:
        assert params["beam"] == ("int64_param", 4) and params["rescoring"] == ("bool_param", False)
    lines = r.stdout.splitlines()
    assert sum(line.startswith("partial long ") for line in lines) == len(reqs) - 1
    assert not any(line.startswith("partial ") for line in r.stderr.splitlines())
    assert parse_finals(r.stdout)["long"].endswith(f":{len(samples)}")
    # --first-chunk-ms overrides the derived first chunk; --partials none prints none.
    servicer.requests.clear()
    r = subprocess.run([U2CLIENT, "--streaming", "--url", url, "--chunk-ms", "500", "--first-chunk-ms", "1000",
                        "--partials", "none", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    (reqs,) = sequences(servicer).values()
    assert [(padded, n) for _, _, _, padded, n, *_ in reqs] == expected_chunks(len(samples), 16000, 8000)
    assert "partial " not in r.stdout + r.stderr


def test_u2client_realtime_pacing(fake_server, clips):
    servicer, url = fake_server()
    path, samples = clips["long"]  # 3.33 s
    t0 = time.monotonic()
    r = subprocess.run([U2CLIENT, "--streaming", "--realtime", "--url", url, str(path)],
                       capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    (reqs,) = sequences(servicer).values()
    # Chunk k leaves when its last sample has been spoken: arrival gaps follow the chunks'
    # durations (0.69 s, then 0.64 s, the last one shorter).
    arrivals = np.array([t for *_, t, _s in reqs])
    ends = np.cumsum([n for _, _, _, _, n, *_ in reqs]) / 16000
    assert np.all(np.abs(np.diff(arrivals) - np.diff(ends)) < 0.15), (np.diff(arrivals), np.diff(ends))
    assert len(samples) / 16000 - 0.05 < elapsed < len(samples) / 16000 + 2.0
    # Without pacing it is much faster than real time.
    t0 = time.monotonic()
    assert subprocess.run([U2CLIENT, "--streaming", "--url", url, str(path)], capture_output=True,
                          timeout=60).returncode == 0
    assert time.monotonic() - t0 < len(samples) / 16000 - 0.5


def test_u2client_streaming_errors(fake_server, clips, tmp_path):
    servicer, url = fake_server()
    path = str(clips["two"][0])
    # Unknown model: the stream answers with an error message, reported per utterance.
    r = subprocess.run([U2CLIENT, "--streaming", "--url", url, "--model", "nope", path],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "nope" in r.stderr and "two" in r.stderr, r.stderr
    # Nobody listening.
    r = subprocess.run([U2CLIENT, "--streaming", "--url", f"127.0.0.1:{free_port()}", path],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "UNAVAILABLE" in r.stderr.upper(), r.stderr
    # Bad arguments.
    for args, text in ((["--streaming", "--chunk-ms", "0"], "chunk"),
                       (["--streaming", "--chunk-ms", "70000"], "chunk"),
                       (["--streaming", "--first-chunk-ms", "-5"], "chunk"),
                       (["--chunk-ms", "320"], "streaming"),
                       (["--realtime"], "streaming"),
                       (["--streaming", "--partials", "nowhere"], "partials")):
        r = subprocess.run([U2CLIENT, "--url", url] + args + [path], capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and text in r.stderr.lower() + r.stdout.lower(), (args, r.stderr)
    # HTTP has no streaming RPC: chunks go as requests (nobody listening here, so a clean error).
    r = subprocess.run([U2CLIENT, "--streaming", "-i", "http", "--url", f"127.0.0.1:{free_port()}", path],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "two" in r.stderr


def run_perf(url, *args, timeout=180):
    return subprocess.run([U2PERF, "--streaming", "--url", url] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=timeout)


def test_u2perf_streaming_measures_paced_streams(fake_server, clips, tmp_path):
    servicer, url = fake_server(delay_s=lambda live: 0.02)
    out_csv, out_json = tmp_path / "s.csv", tmp_path / "s.json"
    r = run_perf(url, "--concurrency", "1,3", "--chunk-ms", "200", "--measurement-interval", "1000", "--windows", "2",
                 "--output", out_csv, "--json", out_json, clips["two"][0], clips["long"][0])
    assert r.returncode == 0, r.stderr
    assert not servicer.protocol_errors, servicer.protocol_errors
    assert "window 2/2" in r.stderr  # progress
    rows = list(csv.DictReader(out_csv.open()))
    assert [int(row["concurrency"]) for row in rows] == [1, 3]
    assert set(rows[0]) >= {"chunks_per_s", "audio_seconds_per_s", "rtf", "p50_ms", "p90_ms", "p95_ms", "p99_ms",
                            "errors", "lag_p99_ms", "meets_budget"}
    for row in rows:
        c = int(row["concurrency"])
        assert int(row["errors"]) == 0 and int(row["chunks"]) > 0
        # Real-time pacing: c talkers produce c seconds of audio per second, a 200 ms chunk
        # each 0.2 s (within scheduling noise on a shared machine).
        assert 0.7 * c < float(row["audio_seconds_per_s"]) < 1.3 * c, row
        assert 0.7 * c * 5 < float(row["chunks_per_s"]) < 1.3 * c * 5, row
        # The server waits 20 ms per chunk.
        assert 20 <= float(row["p50_ms"]) <= float(row["p90_ms"]) <= float(row["p95_ms"]) <= float(row["p99_ms"])
        assert float(row["p50_ms"]) < 150
        assert 0.02 / 0.2 * 0.9 < float(row["rtf"]) < 0.5
        assert row["meets_budget"] == "1"
    doc = json.loads(out_json.read_text())
    assert doc["held_streams"] == 3 and doc["chunk_ms"] == 200 and doc["first_chunk_ms"] == 250
    assert [lvl["concurrency"] for lvl in doc["results"]] == [1, 3]
    assert "Real-time streams held at p99 <= 300 ms: 3" in r.stdout
    # Sequences are well formed: started, chunks in order, one at a time (checked by the server),
    # ids unique; the ones cut by the end of a level are closed with sequence_end.
    for reqs in sequences(servicer).values():
        assert reqs[0][1] and reqs[-1][2] and not any(start for _, start, *_ in reqs[1:])
    assert not servicer.live


def test_u2perf_streaming_unary_sends_the_sticky_header(fake_server, clips):
    servicer, url = fake_server()
    r = run_perf(url, "--unary", "--no-realtime", "--concurrency", "2", "--chunk-ms", "200", "--measurement-interval",
                 "500", "--windows", "1", "--warmup-ms", "0", "--sequence-id-start", "900", clips["two"][0])
    assert r.returncode == 0, r.stderr
    assert not servicer.protocol_errors, servicer.protocol_errors
    assert servicer.sticky and all(h == str(seq) for seq, h in servicer.sticky), servicer.sticky[:5]
    assert {rpc for rpc, *_ in servicer.requests} == {"unary"}


def test_u2perf_streaming_budget_and_search(fake_server, clips, tmp_path):
    # Latency grows with the number of live sequences: 120 ms per stream. With a 300 ms budget,
    # 2 streams hold (240 ms) and 3 do not (360 ms); 4 (480 ms) still keep up with 640 ms chunks.
    servicer, url = fake_server(delay_s=lambda live: 0.12 * live)
    out = tmp_path / "search.json"
    r = run_perf(url, "--concurrency", "1", "--search", "--max-concurrency", "8", "--p99-budget-ms", "300",
                 "--measurement-interval", "1500", "--windows", "1", "--output", out, clips["long"][0], timeout=300)
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    tried = [lvl["concurrency"] for lvl in doc["results"]]
    holds = {lvl["concurrency"]: lvl["meets_budget"] for lvl in doc["results"]}
    # 1 holds -> 2 holds -> 4 fails -> 3 fails: the answer is 2.
    assert tried == [1, 2, 4, 3], (tried, r.stderr)
    assert holds == {1: True, 2: True, 4: False, 3: False}
    assert doc["held_streams"] == 2
    assert "search: trying 4 streams" in r.stderr


def test_u2perf_streaming_reports_errors_and_bad_arguments(fake_server, clips):
    servicer, url = fake_server()
    wav = clips["two"][0]
    r = run_perf(url, "--model", "nope", wav)  # not ready: fails before measuring
    assert r.returncode != 0 and "nope" in r.stderr
    for args, text in ((["--concurrency", "1,x"], "concurrency"), (["--concurrency", "0"], "concurrency"),
                       (["--chunk-ms", "0"], "chunk"), (["--windows", "0"], "windows"),
                       (["--p99-budget-ms", "0"], "budget")):
        r = run_perf(url, *args, wav)
        assert r.returncode != 0 and text in r.stderr.lower(), (args, r.stderr)
    r = subprocess.run([U2PERF, "--url", url, "--chunk-ms", "320", str(wav)], capture_output=True, text=True)
    assert r.returncode != 0 and "streaming" in r.stderr.lower()


# ---- u2serve on the demo model ---------------------------------------------------------------------

def table(path):
    return dict(line.strip().partition(" ")[::2] for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip())


@pytest.fixture(scope="module")
def chunk16_reference():
    """u2recognize's offline decode with a chunk-16 mask: what streaming with chunk 16 must give
    for this causal model (test_u2recognize / the engine tests tie the two together)."""
    r = subprocess.run([str(APPS / "u2recognize"), "--model-dir", str(DEMO_MODEL), "--chunk-size", "16", "--wav-scp",
                        str(SAMPLES / "wav.scp"), "--quiet"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return dict(line.partition(" ")[::2] for line in r.stdout.splitlines())


def speech_client_py(url, samples, sequence_id, first=11040, later=10240):
    """WeNet runtime/gpu client/speech_client.py's streaming loop with tritonclient: chunks zero-padded
    to 11040 then 10240 samples, WAV_LENS = real length, sequence flags; one response per chunk."""
    import tritonclient.grpc as grpcclient
    client = grpcclient.InferenceServerClient(url)
    answers, pos, k = [], 0, 0
    while True:
        size = first if k == 0 else later
        piece = samples[pos:pos + size]
        pos += len(piece)
        padded = np.zeros((1, size), dtype=np.float32)
        padded[0, :len(piece)] = piece
        wav = grpcclient.InferInput("WAV", [1, size], "FP32")
        wav.set_data_from_numpy(padded)
        lens = grpcclient.InferInput("WAV_LENS", [1, 1], "INT32")
        lens.set_data_from_numpy(np.array([[len(piece)]], dtype=np.int32))
        last = pos >= len(samples)
        result = client.infer("streaming_wenet", [wav, lens], outputs=[grpcclient.InferRequestedOutput("TRANSCRIPTS")],
                              request_id=str(k), sequence_id=sequence_id, sequence_start=k == 0, sequence_end=last)
        text = result.as_numpy("TRANSCRIPTS")[0]
        answers.append(text.decode("utf-8") if isinstance(text, bytes) else text)
        k += 1
        if last:
            return answers


def partials_by_utt(text):
    out = {}
    for line in text.splitlines():
        if line.startswith("partial "):
            _, utt, seconds, *rest = line.split(" ", 3)
            out.setdefault(utt, []).append((float(seconds), rest[0] if rest else ""))
    return out


def test_u2client_streaming_matches_tritonclient_and_chunk16_decode(demo_server, chunk16_reference):
    utts = table(SAMPLES / "wav.scp")
    # Triton's own client, the way WeNet's speech_client.py streams.
    triton = {utt: speech_client_py(demo_server.grpc_url, read_wav(SAMPLES / rel)[0], 7000 + i)
              for i, (utt, rel) in enumerate(utts.items())}
    assert {utt: answers[-1] for utt, answers in triton.items()} == chunk16_reference
    for transport in (["--protocol", "grpc", "--url", demo_server.grpc_url],
                      ["--protocol", "grpc", "--url", demo_server.grpc_url, "--unary"],
                      ["--protocol", "http", "--url", demo_server.http_url]):
        r = subprocess.run([U2CLIENT, "--streaming", "--wav-scp", str(SAMPLES / "wav.scp"), "--text",
                            str(SAMPLES / "text"), "--concurrency", "3"] + transport,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        assert parse_finals(r.stdout) == chunk16_reference, transport
        assert "CER" in r.stderr
        # Partials: every chunk but the last, the same texts tritonclient got for the same chunks.
        partials = partials_by_utt(r.stderr)
        assert {utt: [text for _, text in p] for utt, p in partials.items()} == \
            {utt: answers[:-1] for utt, answers in triton.items() if len(answers) > 1}, transport
        for utt, p in partials.items():
            assert [s for s, _ in p] == [round((11040 + 10240 * k) / 16000, 2) for k in range(len(p))]


def test_u2client_streaming_any_chunk_size_gives_the_same_finals(demo_server, chunk16_reference):
    # u2serve decodes chunk 16 whatever size the pieces come in.
    for chunk_ms in ("320", "1000"):
        r = subprocess.run([U2CLIENT, "--streaming", "--url", demo_server.grpc_url, "--chunk-ms", chunk_ms,
                            "--partials", "stdout", "--wav-scp", str(SAMPLES / "wav.scp")],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        assert parse_finals(r.stdout) == chunk16_reference, chunk_ms
        assert "partial " in r.stdout


def test_u2client_streaming_realtime_and_errors(demo_server, chunk16_reference):
    rel = table(SAMPLES / "wav.scp")["test_000001"]
    seconds = len(read_wav(SAMPLES / rel)[0]) / 16000
    t0 = time.monotonic()
    r = subprocess.run([U2CLIENT, "--streaming", "--realtime", "--url", demo_server.grpc_url, str(SAMPLES / rel)],
                       capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert parse_finals(r.stdout) == {"test_000001": chunk16_reference["test_000001"]}
    assert seconds < elapsed < seconds + 3, (elapsed, seconds)
    # Unknown model: a clear per-utterance error naming it, exit status 1.
    r = subprocess.run([U2CLIENT, "--streaming", "--url", demo_server.grpc_url, "--model", "nope", str(SAMPLES / rel)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "nope" in r.stderr and "test_000001" in r.stderr, r.stderr


def test_u2perf_streaming_on_the_demo_model(demo_server, tmp_path):
    out = tmp_path / "streaming.csv"
    r = subprocess.run([U2PERF, "--streaming", "--url", demo_server.grpc_url, "--concurrency", "1,2",
                        "--measurement-interval", "1500", "--windows", "2", "--output", str(out), "--wav-scp",
                        str(SAMPLES / "wav.scp")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "p99 ms" in r.stdout and "Real-time streams held" in r.stdout
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["concurrency", "chunks", "errors", "sequences", "duration_s", "chunks_per_s",
                             "audio_seconds_per_s", "rtf", "avg_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms",
                             "final_p50_ms", "final_p99_ms", "lag_p99_ms", "lag_max_ms", "meets_budget"]
    assert [int(row["concurrency"]) for row in rows] == [1, 2]
    for row in rows:
        assert int(row["errors"]) == 0 and int(row["chunks"]) > 0
        assert 0 < float(row["p50_ms"]) <= float(row["p90_ms"]) <= float(row["p95_ms"]) <= float(row["p99_ms"])
        assert float(row["audio_seconds_per_s"]) > 0 and float(row["rtf"]) > 0
