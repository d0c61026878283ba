"""Per-request hotwords (context biasing) on every front end of u2serve, on the shipped demo model.

The demo samples have words the plain decode (with the demo model's LM) misspells ("dependin",
"note buck"); given as hotwords they come out right. Each front end must give exactly what u2recognize gives
with the same list (offline: the same search; streams: chunk-masked offline decoding with the
model's chunk of 16 equals streaming), requests with different lists must not leak into each other
when they are batched together, and broken lists are clear 400/INVALID_ARGUMENT errors that leave
the server serving."""
import json
import subprocess
import threading

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import websocket
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from conftest import APPS, DEMO_MODEL, ROOT, ServerProcess, read_wav, sample_table

SAMPLES = ROOT / "tests" / "data" / "samples"
TARGETS = ["depending", "notebook"]


def u2recognize(tmp_path, hotwords, *extra):
    """{utt: transcript} of the samples with `hotwords` (a list of lines; None: no biasing)."""
    cmd = [str(APPS / "u2recognize"), "--model-dir", str(DEMO_MODEL), "--quiet", *extra]
    if hotwords is not None:
        path = tmp_path / f"hotwords_{abs(hash(tuple(hotwords)))}.txt"
        path.write_text("".join(h + "\n" for h in hotwords))
        cmd += ["--hotwords", str(path)]
    paths = sample_table()
    r = subprocess.run(cmd + [str(p) for p in paths.values()], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    by_stem = dict(line.partition(" ")[::2] for line in r.stdout.splitlines())
    return {utt: by_stem[p.stem] for utt, p in paths.items()}


@pytest.fixture(scope="module")
def audio():
    out = {}
    for utt, path in sample_table().items():
        x, rate = read_wav(path)
        assert rate == 16000
        out[utt] = x.astype(np.float32)
    return out


def kserve_inputs(module, x):
    wav = module.InferInput("WAV", [1, len(x)], "FP32")
    wav.set_data_from_numpy(x[np.newaxis, :])
    lens = module.InferInput("WAV_LENS", [1, 1], "INT32")
    lens.set_data_from_numpy(np.array([[len(x)]], dtype=np.int32))
    return [wav, lens], [module.InferRequestedOutput("TRANSCRIPTS")]


def text_of(result):
    t = result.as_numpy("TRANSCRIPTS")[0]
    return t.decode() if isinstance(t, bytes) else t


def test_the_targets_are_missed_without_hotwords(tmp_path):
    plain = " ".join(u2recognize(tmp_path, None).values()).split()
    biased = " ".join(u2recognize(tmp_path, TARGETS).values()).split()
    for w in TARGETS:
        assert w not in plain and w in biased, (w, plain, biased)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_kserve_hotwords_equal_u2recognize(demo_server, audio, tmp_path, protocol):
    module = grpcclient if protocol == "grpc" else httpclient
    client = module.InferenceServerClient(demo_server.grpc_url if protocol == "grpc" else demo_server.http_url)
    plain, biased = u2recognize(tmp_path, None), u2recognize(tmp_path, TARGETS)
    for utt, x in audio.items():
        inputs, outputs = kserve_inputs(module, x)
        got = text_of(client.infer("attention_rescoring", inputs, outputs=outputs,
                                   parameters={"hotwords": "\n".join(TARGETS)}))
        assert got == biased[utt], utt
        # A JSON array is the same list; "" turns biasing off.
        got = text_of(client.infer("attention_rescoring", inputs, outputs=outputs,
                                   parameters={"hotwords": json.dumps(TARGETS)}))
        assert got == biased[utt], utt
        got = text_of(client.infer("attention_rescoring", inputs, outputs=outputs, parameters={"hotwords": ""}))
        assert got == plain[utt], utt


def test_concurrent_requests_with_different_lists_do_not_mix(demo_server, audio, tmp_path):
    """Eight clients at once, each its own list (batched together by the dynamic batcher, which must
    keep requests with different lists apart), each must get its list's sequential result."""
    names = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    lists = [TARGETS[:i % 3] + [names[i]] for i in range(8)]
    utt = "test_000004"  # "source of the notebook to execute": only lists with "notebook" fix it
    want = [u2recognize(tmp_path, hw)[utt] for hw in lists]
    assert len(set(want)) > 1  # the lists make a difference
    results = [None] * len(lists)

    def run(i):
        client = grpcclient.InferenceServerClient(demo_server.grpc_url)
        inputs, outputs = kserve_inputs(grpcclient, audio[utt])
        out = []
        for _ in range(3):
            out.append(text_of(client.infer("attention_rescoring", inputs, outputs=outputs,
                                             parameters={"hotwords": "\n".join(lists[i])})))
        results[i] = out

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(lists))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    for i, out in enumerate(results):
        assert out == [want[i]] * 3, (lists[i], out, want[i])


def test_openai_keywords(demo_server, tmp_path):
    biased, plain = u2recognize(tmp_path, TARGETS), u2recognize(tmp_path, None)
    url = f"http://{demo_server.http_url}/v1/audio/transcriptions"
    for utt, path in sample_table().items():
        with open(path, "rb") as f:
            r = requests.post(url, files={"file": (path.name, f, "audio/wav")},
                              data=[("model", "attention_rescoring")] + [("keywords[]", w) for w in TARGETS],
                              timeout=120)
        assert r.status_code == 200, r.text
        assert r.json()["text"] == biased[utt], utt
        with open(path, "rb") as f:
            r = requests.post(url, files={"file": (path.name, f, "audio/wav")}, data={"model": "attention_rescoring"},
                              timeout=120)
        assert r.json()["text"] == plain[utt], utt


def stream_websocket(server, x, **start):
    ws = websocket.create_connection(f"ws://{server.http_url}/ws", timeout=120)
    try:
        ws.send(json.dumps({"signal": "start", **start}))
        reply = json.loads(ws.recv())
        if reply.get("status") != "ok":
            return reply, None
        pcm = np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2")
        for i in range(0, len(pcm), 4000):
            ws.send_binary(pcm[i:i + 4000].tobytes())
        ws.send(json.dumps({"signal": "end"}))
        finals = []
        while True:
            try:
                data = ws.recv()
            except (websocket.WebSocketConnectionClosedException, ConnectionError):
                break
            if not data:
                break
            m = json.loads(data)
            if m.get("type") == "final_result":
                finals.append(json.loads(m["nbest"])[0]["sentence"])
        return reply, " ".join(finals)
    finally:
        ws.close()


def test_websocket_start_hotwords(demo_server, audio, tmp_path):
    # Streams: the model's decoding chunk (16) offline gives what streaming gives.
    biased = u2recognize(tmp_path, TARGETS, "--chunk-size", "16")
    for utt, x in audio.items():
        for hotwords in (TARGETS, "\n".join(TARGETS)):
            reply, text = stream_websocket(demo_server, x, hotwords=hotwords)
            assert reply.get("status") == "ok", reply
            assert text == biased[utt], (utt, hotwords)
    reply, _ = stream_websocket(demo_server, audio[sorted(audio)[0]], hotwords=["na\u00efve"])
    assert reply.get("status") == "failed" and "\u00ef" in reply.get("message", ""), reply


def test_triton_sequence_start_hotwords(demo_server, audio, tmp_path):
    biased = u2recognize(tmp_path, TARGETS, "--chunk-size", "16")
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(demo_server.grpc_url))
    for n, (utt, x) in enumerate(sorted(audio.items())):
        r = service_pb2.ModelInferRequest(model_name="streaming_wenet")
        r.inputs.add(name="WAV", datatype="FP32", shape=[1, len(x)])
        r.inputs.add(name="WAV_LENS", datatype="INT32", shape=[1, 1])
        r.raw_input_contents.append(x.tobytes())
        r.raw_input_contents.append(np.array([len(x)], dtype=np.int32).tobytes())
        r.parameters["sequence_id"].int64_param = 7000 + n
        r.parameters["sequence_start"].bool_param = True
        r.parameters["sequence_end"].bool_param = True
        r.parameters["hotwords"].string_param = "\n".join(TARGETS)
        resp = stub.ModelInfer(r)
        assert resp.raw_output_contents[0][4:].decode() == biased[utt], utt


@pytest.mark.parametrize("params,fragment", [
    ({"hotwords": "na\u00efve caf\u00e9"}, "\u00ef"),                  # characters the model cannot spell
    ({"hotwords": "\n".join(f"w{i}" for i in range(100000))}, "1024"),  # more phrases than allowed
    ({"hotwords": "[\"paragraph\", "}, "JSON"),                         # a broken JSON list
    ({"hotwords": 7}, "string is expected for hotwords"),
    ({"hotwords": "paragraph:500"}, "boost must be in [-20, 20]"),
    ({"hotwords": "x" * 70}, "64"),                                      # a phrase over the token limit
    ({"lm_weight": 50}, "lm_weight must be in [0, 10]"),
    ({"word_bonus": 1e9}, "word_bonus"),
])
def test_bad_lists_are_clear_errors_and_the_server_keeps_serving(demo_server, audio, tmp_path, params, fragment):
    client = httpclient.InferenceServerClient(demo_server.http_url, connection_timeout=120, network_timeout=120)
    utt = sorted(audio)[0]
    inputs, outputs = kserve_inputs(httpclient, audio[utt])
    with pytest.raises(InferenceServerException) as e:
        client.infer("attention_rescoring", inputs, outputs=outputs, parameters=params)
    assert "400" in str(e.value.status()) or e.value.status() == "400", e.value
    assert fragment in e.value.message(), e.value.message()
    assert text_of(client.infer("attention_rescoring", inputs, outputs=outputs)) == \
        u2recognize(tmp_path, None)[utt]


def test_server_refuses_broken_lm_and_hotword_files_at_start(tmp_path):
    bad = tmp_path / "bad.arpa"
    bad.write_text("\\data\\\nngram 1=2\n\n\\1-grams:\n-1\t<s>\n")
    bad_list = tmp_path / "hot.txt"
    bad_list.write_text("na\u00efve\n")
    for args, fragment in (([ "--lm", str(bad)], "bad.arpa"),
                           (["--lm", str(tmp_path / "missing.arpa")], "cannot open language model"),
                           (["--hotwords-file", str(bad_list)], "\u00ef"),
                           (["--hotwords-file", str(tmp_path / "missing.txt")], "cannot open hotwords file")):
        s = ServerProcess(["--model-dir", str(DEMO_MODEL), *args], tmp_path / "u2serve.log")
        try:
            code = s.proc.wait(timeout=60)
        finally:
            s.stop()
        assert code != 0 and fragment in s.log_text(), s.log_text()


def test_server_default_hotwords_file(tmp_path, audio):
    hot = tmp_path / "hot.txt"
    hot.write_text("".join(w + "\n" for w in TARGETS))
    s = ServerProcess(["--model-dir", str(DEMO_MODEL), "--workers", "1", "--hotwords-file", str(hot)],
                      tmp_path / "u2serve.log")
    try:
        s.wait_ready()
        client = grpcclient.InferenceServerClient(s.grpc_url)
        biased, plain = u2recognize(tmp_path, TARGETS), u2recognize(tmp_path, None)
        for utt, x in audio.items():
            inputs, outputs = kserve_inputs(grpcclient, x)
            assert text_of(client.infer("attention_rescoring", inputs, outputs=outputs)) == biased[utt]
            # A request's own list replaces the default; "" turns it off.
            assert text_of(client.infer("attention_rescoring", inputs, outputs=outputs,
                                        parameters={"hotwords": ""})) == plain[utt]
    finally:
        assert s.stop() == 0, s.log_text()
