"""u2serve against Triton's own clients (tritonclient.grpc / tritonclient.http, used the way WeNet's
client.py uses them), raw HTTP and raw gRPC stubs: health, metadata, config, inference in every
encoding, batching, statistics and metrics. Expected transcripts come from u2recognize."""
import gzip
import json
import socket
import subprocess
import threading
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from conftest import MODES


def wenet_inputs(mod, samples):
    """Exactly what WeNet's offline client.py sends: WAV [1, T] float32, WAV_LENS [[T]] int32."""
    wav = mod.InferInput("WAV", [1, len(samples)], "FP32")
    wav.set_data_from_numpy(samples.reshape(1, -1).astype(np.float32))
    lens = mod.InferInput("WAV_LENS", [1, 1], "INT32")
    lens.set_data_from_numpy(np.array([[len(samples)]], dtype=np.int32))
    return [wav, lens]


def grpc_transcript(client, samples, model="attention_rescoring", **kw):
    r = client.infer(model, wenet_inputs(grpcclient, samples),
                     outputs=[grpcclient.InferRequestedOutput("TRANSCRIPTS")], **kw)
    return r.as_numpy("TRANSCRIPTS")[0].decode("utf-8")


def http_get(server, path):
    try:
        with urllib.request.urlopen(f"http://{server.http_url}{path}", timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def http_post(server, path, body, headers=None):
    req = urllib.request.Request(f"http://{server.http_url}{path}", data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read(), {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        return e.code, e.read(), {k.lower(): v for k, v in e.headers.items()}


def binary_body(samples_2d, lens, outputs_binary=None, request_id=None, params=None):
    """A KServe v2 HTTP body with both inputs in the binary extension; returns (body, json_len)."""
    wav = np.ascontiguousarray(samples_2d, dtype=np.float32)
    lens = np.asarray(lens, dtype=np.int32).reshape(-1, 1)
    header = {"inputs": [
        {"name": "WAV", "shape": list(wav.shape), "datatype": "FP32", "parameters": {"binary_data_size": wav.nbytes}},
        {"name": "WAV_LENS", "shape": list(lens.shape), "datatype": "INT32",
         "parameters": {"binary_data_size": lens.nbytes}}]}
    if outputs_binary is not None:
        header["outputs"] = [{"name": "TRANSCRIPTS", "parameters": {"binary_data": outputs_binary}}]
    if request_id is not None:
        header["id"] = request_id
    if params:
        header["parameters"] = params
    head = json.dumps(header).encode()
    return head + wav.tobytes() + lens.tobytes(), len(head)


def decode_bytes_tensor(raw):
    out, i = [], 0
    while i < len(raw):
        n = int.from_bytes(raw[i:i + 4], "little")
        out.append(raw[i + 4:i + 4 + n].decode())
        i += 4 + n
    return out


# --- health and metadata (checklist 1-6, 25-27) -------------------------------------------------

def test_grpc_health_and_server_metadata(gclient):
    assert gclient.is_server_live()
    assert gclient.is_server_ready()
    for m in MODES:
        assert gclient.is_model_ready(m)
        assert gclient.is_model_ready(m, "1")
    assert not gclient.is_model_ready("nope")
    assert not gclient.is_model_ready("attention_rescoring", "2")
    meta = gclient.get_server_metadata(as_json=True)
    assert meta["name"] and meta["version"]
    assert {"model_configuration", "binary_tensor_data", "statistics", "parameters"} <= set(meta["extensions"])


def test_grpc_model_metadata_and_config(gclient):
    for m in MODES:
        meta = gclient.get_model_metadata(m, as_json=True)
        assert meta["name"] == m and meta["versions"] == ["1"] and meta["platform"] == "u2serve"
        assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [
            ("WAV", "FP32", ["-1", "-1"]), ("WAV_LENS", "INT32", ["-1", "1"])]
        assert [(t["name"], t["datatype"]) for t in meta["outputs"]] == [("TRANSCRIPTS", "BYTES")]
        cfg = gclient.get_model_config(m, as_json=True)["config"]
        assert cfg["max_batch_size"] == 64
        assert "dynamic_batching" in cfg and "sequence_batching" not in cfg
        assert cfg.get("platform", "") != "ensemble" and cfg["backend"] == "u2serve"
        assert [i["name"] for i in cfg["input"]] == ["WAV", "WAV_LENS"]
        assert cfg["parameters"]["decoding_mode"]["string_value"] == m
    with pytest.raises(InferenceServerException) as e:
        gclient.get_model_metadata("nope")
    assert e.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException) as e:
        gclient.get_model_config("attention_rescoring", "7")
    assert e.value.status() == "StatusCode.NOT_FOUND"
    index = gclient.get_model_repository_index(as_json=True)
    assert sorted(m["name"] for m in index["models"]) == sorted(MODES + ["streaming_wenet"])


def test_http_health_metadata_config(server, hclient):
    code, body, headers = http_get(server, "/v2/health/ready")
    assert code == 200 and body == b""
    assert http_get(server, "/v2/health/live")[0] == 200
    code, body, _ = http_get(server, "/v2")
    meta = json.loads(body)
    assert code == 200 and meta["name"] and meta["version"] and "binary_tensor_data" in meta["extensions"]
    code, body, _ = http_get(server, "/v2/models/attention_rescoring")
    meta = json.loads(body)
    assert code == 200 and meta["inputs"][0]["shape"] == [-1, -1] and meta["inputs"][1]["shape"] == [-1, 1]
    assert meta["outputs"][0] == {"name": "TRANSCRIPTS", "datatype": "BYTES", "shape": [-1, 1]}
    code, body, _ = http_get(server, "/v2/models/attention_rescoring/versions/1/config")
    cfg = json.loads(body)
    assert code == 200 and cfg["max_batch_size"] == 64 and cfg["input"][0]["dims"] == [-1]
    assert cfg["model_transaction_policy"] == {"decoupled": False} and cfg["response_cache"] == {"enable": False}
    code, body, _ = http_get(server, "/v2/models/nope")
    assert code == 404 and "error" in json.loads(body)
    assert http_get(server, "/v2/models/attention_rescoring/versions/2")[0] == 404
    assert http_get(server, "/v2/models/attention_rescoring/ready")[0] == 200
    assert http_get(server, "/v2/models/nope/ready")[0] == 400
    code, body, _ = http_get(server, "/v2/no/such/path")
    assert code == 404 and json.loads(body) == {"error": "Not Found"}
    assert http_post(server, "/v2/health/ready", b"")[0] == 405
    code, body, _ = http_post(server, "/v2/repository/index", b"{}")
    assert code == 200 and sorted(m["name"] for m in json.loads(body)) == sorted(MODES + ["streaming_wenet"])
    assert hclient.is_server_live() and hclient.is_server_ready() and hclient.is_model_ready("ctc_greedy")
    assert hclient.get_model_metadata("ctc_greedy")["name"] == "ctc_greedy"


# --- inference (checklist 7-9, 12, 22, 28-31, 34) -----------------------------------------------

def test_grpc_transcripts_match_u2recognize_in_every_mode(gclient, audio_set, reference):
    for mode in MODES:
        for utt, (_, samples) in audio_set.items():
            assert grpc_transcript(gclient, samples, model=mode) == reference[mode][utt], (mode, utt)


def test_grpc_response_fields_wenet_style(gclient, audio_set, reference):
    samples = audio_set["speech"][1]
    r = gclient.infer("attention_rescoring", wenet_inputs(grpcclient, samples),
                      outputs=[grpcclient.InferRequestedOutput("TRANSCRIPTS")], request_id="a1")
    resp = r.get_response()
    assert resp.id == "a1" and resp.model_version == "1" and resp.model_name == "attention_rescoring"
    out = resp.outputs[0]
    assert out.name == "TRANSCRIPTS" and out.datatype == "BYTES" and list(out.shape) == [1]
    assert len(resp.raw_output_contents) == 1
    assert r.as_numpy("TRANSCRIPTS").shape == (1,)
    assert r.as_numpy("TRANSCRIPTS")[0].decode() == reference["attention_rescoring"]["speech"]
    # No outputs requested: all outputs come back, still raw.
    r = gclient.infer("attention_rescoring", wenet_inputs(grpcclient, samples))
    assert r.as_numpy("TRANSCRIPTS")[0].decode() == reference["attention_rescoring"]["speech"]


def test_batched_request_equals_single_requests(gclient, audio_set, reference):
    utts = ["speech", "head", "double"]
    rows = [audio_set[u][1] for u in utts]
    width = max(len(r) for r in rows)
    wav = np.zeros((len(rows), width), dtype=np.float32)
    for i, r in enumerate(rows):
        wav[i, :len(r)] = r
    i0 = grpcclient.InferInput("WAV", list(wav.shape), "FP32")
    i0.set_data_from_numpy(wav)
    i1 = grpcclient.InferInput("WAV_LENS", [len(rows), 1], "INT32")
    i1.set_data_from_numpy(np.array([[len(r)] for r in rows], dtype=np.int32))
    out = gclient.infer("attention_rescoring", [i0, i1]).as_numpy("TRANSCRIPTS")
    assert out.shape == (3,)
    assert [t.decode() for t in out] == [reference["attention_rescoring"][u] for u in utts]


def test_http_binary_and_json_give_the_same_answers(server, hclient, audio_set, reference):
    samples = audio_set["tail"][1]
    want = reference["attention_rescoring"]["tail"]
    # tritonclient.http, binary output (checklist 28).
    r = hclient.infer("attention_rescoring", wenet_inputs(httpclient, samples),
                      outputs=[httpclient.InferRequestedOutput("TRANSCRIPTS", binary_data=True)], request_id="h1")
    assert r.as_numpy("TRANSCRIPTS")[0].decode() == want
    assert r.get_response()["id"] == "h1"
    # JSON everywhere (checklist 29): inputs as JSON data, output as JSON data with no parameters.
    inputs = wenet_inputs(httpclient, samples)
    inputs[0].set_data_from_numpy(samples.reshape(1, -1), binary_data=False)
    inputs[1].set_data_from_numpy(np.array([[len(samples)]], dtype=np.int32), binary_data=False)
    r = hclient.infer("attention_rescoring", inputs,
                      outputs=[httpclient.InferRequestedOutput("TRANSCRIPTS", binary_data=False)])
    out = r.get_response()["outputs"][0]
    assert "parameters" not in out and out["data"] == [want] and out["shape"] == [1]
    # No outputs: binary_data_output honoured (checklist 30).
    r = hclient.infer("attention_rescoring", wenet_inputs(httpclient, samples))
    assert r.as_numpy("TRANSCRIPTS")[0].decode() == want
    # Raw HTTP, checking headers, and the C++ client style header length = whole body (31).
    body, head_len = binary_body(samples.reshape(1, -1), [len(samples)], outputs_binary=True, request_id="x")
    code, resp, headers = http_post(server, "/v2/models/attention_rescoring/infer", body,
                                    {"Inference-Header-Content-Length": str(head_len)})
    assert code == 200 and headers["content-type"] == "application/octet-stream"
    n = int(headers["inference-header-content-length"])
    meta = json.loads(resp[:n])
    assert meta["id"] == "x" and meta["outputs"][0]["parameters"]["binary_data_size"] == len(resp) - n
    assert decode_bytes_tensor(resp[n:]) == [want]
    doc = json.dumps({"inputs": [
        {"name": "WAV", "shape": [1, len(samples)], "datatype": "FP32", "data": samples.tolist()},
        {"name": "WAV_LENS", "shape": [1, 1], "datatype": "INT32", "data": [[len(samples)]]}]}).encode()
    code, resp, headers = http_post(server, "/v2/models/attention_rescoring/infer", doc,
                                    {"Inference-Header-Content-Length": str(len(doc))})
    assert code == 200 and headers["content-type"] == "application/json"
    assert json.loads(resp)["outputs"][0]["data"] == [want]
    # gzip and deflate request bodies (checklist 34).
    for encoding, pack in (("gzip", gzip.compress), ("deflate", zlib.compress)):
        code, resp, _ = http_post(server, "/v2/models/attention_rescoring/infer", pack(doc),
                                  {"Content-Encoding": encoding})
        assert code == 200 and json.loads(resp)["outputs"][0]["data"] == [want], encoding
    # Compressed responses when the client accepts them: tritonclient's response_compression_algorithm,
    # and raw requests checking the header and that the body really is compressed.
    for algorithm in ("gzip", "deflate"):
        r = hclient.infer("attention_rescoring", wenet_inputs(httpclient, samples),
                          response_compression_algorithm=algorithm)
        assert r.as_numpy("TRANSCRIPTS")[0].decode() == want, algorithm
    for accept, unpack in (("gzip", gzip.decompress), ("deflate;q=1.0, gzip;q=0", zlib.decompress)):
        code, resp, headers = http_post(server, "/v2/models/attention_rescoring/infer", doc,
                                        {"Accept-Encoding": accept})
        assert code == 200 and headers["content-encoding"] == accept.split(";")[0]
        assert json.loads(unpack(resp))["outputs"][0]["data"] == [want]
    code, resp, headers = http_post(server, "/v2/models/attention_rescoring/infer", body,
                                    {"Inference-Header-Content-Length": str(head_len), "Accept-Encoding": "gzip"})
    plain = gzip.decompress(resp)
    n = int(headers["inference-header-content-length"])  # of the uncompressed header, as Triton does
    assert code == 200 and headers["content-encoding"] == "gzip" and decode_bytes_tensor(plain[n:]) == [want]
    code, resp, headers = http_post(server, "/v2/models/attention_rescoring/infer", doc, {"Accept-Encoding": "br"})
    assert code == 200 and "content-encoding" not in headers and json.loads(resp)["outputs"][0]["data"] == [want]


def raw_request(samples, model="attention_rescoring", typed=False, raw=True):
    req = service_pb2.ModelInferRequest(model_name=model, id="t")
    wav = req.inputs.add(name="WAV", datatype="FP32", shape=[1, len(samples)])
    lens = req.inputs.add(name="WAV_LENS", datatype="INT32", shape=[1, 1])
    if typed:
        wav.contents.fp32_contents.extend(samples.tolist())
        lens.contents.int_contents.append(len(samples))
    if raw:
        req.raw_input_contents.append(samples.astype(np.float32).tobytes())
        req.raw_input_contents.append(np.array([len(samples)], dtype=np.int32).tobytes())
    return req


def test_typed_contents_and_parameters_through_the_raw_stub(stub, audio_set, reference):
    samples = audio_set["head"][1]
    want = reference["attention_rescoring"]["head"]
    resp = stub.ModelInfer(raw_request(samples, typed=True, raw=False))
    assert resp.id == "t" and decode_bytes_tensor(resp.raw_output_contents[0]) == [want]
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(raw_request(samples, typed=True, raw=True))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "contents" in e.value.details()
    req = raw_request(samples)
    req.parameters["triton_enable_empty_final_response"].bool_param = True
    req.parameters["foo"].int64_param = 1
    assert decode_bytes_tensor(stub.ModelInfer(req).raw_output_contents[0]) == [want]
    req = raw_request(samples)
    req.parameters["triton_xyz"].bool_param = True
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(req)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    req = raw_request(samples)
    req.parameters["sequence_id"].uint64_param = 5
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(req)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_request_parameters_override_decoding(gclient, audio_set, reference):
    samples = audio_set["speech"][1]
    # decoding_mode on the attention_rescoring name behaves like the ctc_greedy name.
    r = gclient.infer("attention_rescoring", wenet_inputs(grpcclient, samples), parameters={"foo": 1,
                      "decoding_mode": "ctc_greedy"})
    assert r.as_numpy("TRANSCRIPTS")[0].decode() == reference["ctc_greedy"]["speech"]
    # beam=1 prefix search equals greedy search on the collapsed path.
    r = gclient.infer("ctc_prefix_beam_search", wenet_inputs(grpcclient, samples), parameters={"beam": 1})
    assert isinstance(r.as_numpy("TRANSCRIPTS")[0].decode(), str)
    for bad in ({"beam": 0}, {"ctc_weight": "x"}, {"decoding_mode": "viterbi"}, {"reverse_weight": 2.0}):
        with pytest.raises(InferenceServerException) as e:
            gclient.infer("attention_rescoring", wenet_inputs(grpcclient, samples), parameters=bad)
        assert e.value.status() == "StatusCode.INVALID_ARGUMENT", bad


def test_large_request_64_by_160000(gclient):
    wav = np.zeros((64, 160000), dtype=np.float32)  # 41 MB of float32
    lens = np.full((64, 1), 1600, dtype=np.int32)
    wav[:, :1600] = np.sin(np.arange(1600) * 0.05) * 0.1
    i0 = grpcclient.InferInput("WAV", list(wav.shape), "FP32")
    i0.set_data_from_numpy(wav)
    i1 = grpcclient.InferInput("WAV_LENS", [64, 1], "INT32")
    i1.set_data_from_numpy(lens)
    out = gclient.infer("ctc_greedy", [i0, i1]).as_numpy("TRANSCRIPTS")
    assert out.shape == (64,) and len(set(out.tolist())) == 1


def test_silence_and_empty_audio(gclient, hclient):
    zeros = np.zeros(16000, dtype=np.float32)
    assert isinstance(grpc_transcript(gclient, zeros), str)  # all-zero audio decodes, no error
    empty_wav = grpcclient.InferInput("WAV", [1, 0], "FP32")
    empty_wav.set_data_from_numpy(np.zeros((1, 0), dtype=np.float32))
    empty_lens = grpcclient.InferInput("WAV_LENS", [1, 1], "INT32")
    empty_lens.set_data_from_numpy(np.array([[0]], dtype=np.int32))
    assert gclient.infer("attention_rescoring", [empty_wav, empty_lens]).as_numpy("TRANSCRIPTS")[0] == b""
    tiny = np.full(100, 0.1, dtype=np.float32)  # shorter than one fbank frame
    assert grpc_transcript(gclient, tiny) == ""


def test_stream_infer_returns_one_response_per_request_in_order(server, audio_set, reference):
    client = grpcclient.InferenceServerClient(server.grpc_url)
    results = []
    done = threading.Event()

    def callback(result, error):
        results.append((result, error))
        if len(results) == 4:
            done.set()

    client.start_stream(callback=callback)
    utts = ["speech", "head", "tail"]
    for i, u in enumerate(utts[:2]):
        client.async_stream_infer("attention_rescoring", wenet_inputs(grpcclient, audio_set[u][1]), request_id=f"r{i}")
    bad = grpcclient.InferInput("WAV", [1, 10], "FP64")
    bad.set_data_from_numpy(np.zeros((1, 10), dtype=np.float64))
    client.async_stream_infer("attention_rescoring", [bad, wenet_inputs(grpcclient, np.zeros(10, np.float32))[1]],
                              request_id="r2")
    client.async_stream_infer("attention_rescoring", wenet_inputs(grpcclient, audio_set["tail"][1]), request_id="r3")
    assert done.wait(60)
    client.stop_stream()
    assert [r.get_response().id if r else None for r, _ in results] == ["r0", "r1", None, "r3"]
    assert results[0][0].as_numpy("TRANSCRIPTS")[0].decode() == reference["attention_rescoring"]["speech"]
    assert results[1][0].as_numpy("TRANSCRIPTS")[0].decode() == reference["attention_rescoring"]["head"]
    assert results[2][1] is not None and "FP64" in str(results[2][1])
    assert results[3][0].as_numpy("TRANSCRIPTS")[0].decode() == reference["attention_rescoring"]["tail"]


# --- load, batching, statistics, metrics (checklist 35, 39, 40) ---------------------------------

def model_stats(gclient, model):
    return gclient.get_inference_statistics(model, as_json=True)["model_stats"][0]


def as_int(v):
    return int(v) if v is not None else 0


def test_64_concurrent_clients_get_right_answers_and_batches_form(server, gclient, audio_set, reference):
    before = model_stats(gclient, "attention_rescoring")
    utts = list(audio_set)
    barrier = threading.Barrier(64)

    def one(i):
        client = grpcclient.InferenceServerClient(server.grpc_url)
        u = utts[i % len(utts)]
        barrier.wait()
        return u, grpc_transcript(client, audio_set[u][1])

    with ThreadPoolExecutor(64) as pool:
        results = list(pool.map(one, range(64)))
    for u, text in results:
        assert text == reference["attention_rescoring"][u], u
    after = model_stats(gclient, "attention_rescoring")
    inferences = as_int(after.get("inference_count")) - as_int(before.get("inference_count"))
    executions = as_int(after.get("execution_count")) - as_int(before.get("execution_count"))
    assert inferences == 64
    assert executions < inferences, "no batch of size > 1 was formed"
    assert max(int(b["batch_size"]) for b in after["batch_stats"]) > 1


def test_statistics_follow_triton_rules(server, gclient, audio_set):
    samples = audio_set["head"][1]
    before = model_stats(gclient, "ctc_greedy")
    for _ in range(3):
        grpc_transcript(gclient, samples, model="ctc_greedy")
    with pytest.raises(InferenceServerException):
        bad = wenet_inputs(grpcclient, samples)[:1]
        gclient.infer("ctc_greedy", bad)
    after = model_stats(gclient, "ctc_greedy")
    st, st0 = after["inference_stats"], before["inference_stats"]
    delta = lambda key: as_int(st[key].get("count")) - as_int(st0[key].get("count"))
    assert delta("success") == 3 and delta("queue") == 3 and delta("fail") == 1
    assert as_int(st["compute_input"].get("count")) == as_int(st["compute_infer"].get("count")) == \
        as_int(st["compute_output"].get("count")) == as_int(st["success"].get("count"))
    assert after["version"] == "1" and as_int(after["last_inference"]) > 0
    # HTTP statistics: every count/ns a JSON number, all 8 members, version "1" (checklist 35).
    code, body, _ = http_get(server, "/v2/models/stats")
    doc = json.loads(body)
    assert code == 200 and {m["name"] for m in doc["model_stats"]} == set(MODES) | {"streaming_wenet"}
    for m in doc["model_stats"]:
        assert m["version"] == "1"
        assert set(m["inference_stats"]) == {"success", "fail", "queue", "compute_input", "compute_infer",
                                             "compute_output", "cache_hit", "cache_miss"}
        for d in m["inference_stats"].values():
            assert isinstance(d["count"], int) and isinstance(d["ns"], int)
        assert isinstance(m["inference_count"], int) and isinstance(m["execution_count"], int)
    code, body, _ = http_get(server, "/v2/models/ctc_greedy/stats")
    assert code == 200 and json.loads(body)["model_stats"][0]["inference_stats"]["success"]["count"] == \
        as_int(st["success"].get("count"))


def test_metrics_are_consistent_with_statistics(server, gclient, audio_set):
    grpc_transcript(gclient, audio_set["speech"][1])
    stats = {m["name"]: m for m in gclient.get_inference_statistics("", as_json=True)["model_stats"]}
    with urllib.request.urlopen(server.metrics_url, timeout=10) as r:
        assert r.status == 200
        text = r.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            values[key] = float(value)
    for name, m in stats.items():
        labels = f'model="{name}",version="1"'
        st = m["inference_stats"]
        assert values[f"nv_inference_request_success{{{labels}}}"] == as_int(st["success"].get("count"))
        assert values[f"nv_inference_count{{{labels}}}"] == as_int(m.get("inference_count"))
        assert values[f"nv_inference_exec_count{{{labels}}}"] == as_int(m.get("execution_count"))
        assert values[f"nv_inference_queue_duration_us{{{labels}}}"] == as_int(st["queue"].get("ns")) // 1000
        assert f'nv_inference_request_failure{{{labels},reason="OTHER"}}' in values
        assert f"nv_inference_pending_request_count{{{labels}}}" in values
        assert values[f"u2_batch_size_count{{{labels}}}"] == as_int(m.get("execution_count"))
    assert values['u2_audio_seconds_total{model="attention_rescoring",version="1"}'] > 0
    assert "# TYPE nv_inference_request_success counter" in text


def test_device_and_precision_flags_are_checked():
    """--device names the backend; an unknown one (and, in a CPU-only build, cuda) is a clear
    start-up error, never a crash or a silent fallback."""
    from conftest import APPS
    model = Path(__file__).resolve().parents[2] / "models" / "demo"
    r = subprocess.run([str(APPS / "u2serve"), "--model-dir", str(model), "--device", "tpu",
                        "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "unknown device 'tpu'" in r.stdout + r.stderr
    r = subprocess.run([str(APPS / "u2recognize"), "--model-dir", str(model), "--device", "tpu",
                        str(Path(__file__).resolve().parents[2] / "tests/data/samples/test_000000.wav")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "unknown device 'tpu'" in r.stderr
    # --precision: fp16/bf16 GEMM operands are a GPU mode; on the CPU backend it is refused clearly.
    r = subprocess.run([str(APPS / "u2serve"), "--model-dir", str(model), "--precision", "fp16",
                        "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "precision fp16 needs the CUDA backend" in r.stdout + r.stderr
    r = subprocess.run([str(APPS / "u2recognize"), "--model-dir", str(model), "--precision", "fp8",
                        str(Path(__file__).resolve().parents[2] / "tests/data/samples/test_000000.wav")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "unknown precision 'fp8'" in r.stderr
