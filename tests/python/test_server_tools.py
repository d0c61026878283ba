"""u2client, u2perf and Triton's perf_analyzer against u2serve; the YAML config, several model
dirs, and graceful shutdown (checklist 37, 39)."""
import csv
import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from conftest import APPS, ROOT, SERVER_MODEL, ServerProcess, write_wav
import urllib.request

from test_server import as_int, binary_body, grpc_transcript, http_post, model_stats

PERF_ANALYZER = ROOT / ".venv" / "opt" / "perf_analyzer" / "perf_analyzer"


def test_u2client_grpc_and_http_match_u2recognize(server, audio_set, reference, tmp_path):
    paths = [str(p) for p, _ in audio_set.values()]
    for protocol, url in (("grpc", server.grpc_url), ("http", server.http_url)):
        for mode in ("attention_rescoring", "ctc_prefix_beam_search"):
            r = subprocess.run([str(APPS / "u2client"), "--protocol", protocol, "--url", url, "--model", mode,
                                "--concurrency", "3"] + paths, capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr
            got = dict(line.split(" ", 1) if " " in line else (line, "") for line in r.stdout.splitlines())
            assert got == reference[mode], (protocol, mode)
    # wav.scp + text: CER is printed, scored like u2recognize.
    scp = tmp_path / "wav.scp"
    text = tmp_path / "text"
    scp.write_text("".join(f"{u} {p}\n" for u, (p, _) in audio_set.items()))
    text.write_text("".join(f"{u} {reference['attention_rescoring'][u]}\n" for u in audio_set))
    r = subprocess.run([str(APPS / "u2client"), "--url", server.grpc_url, "--wav-scp", str(scp), "--text", str(text),
                        "--concurrency", "2"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "CER 0.00 %" in r.stderr
    r = subprocess.run([str(APPS / "u2client"), "--url", server.grpc_url, "--model", "nope", paths[0]],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "nope" in r.stderr


def perf_input(tmp_path, samples):
    """WeNet generate_perf_input.py's offline format."""
    path = tmp_path / "offline_input.json"
    path.write_text(json.dumps({"data": [{"WAV_LENS": [len(samples)],
                                          "WAV": {"shape": [len(samples)], "content": samples.tolist()}}]}))
    return path


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_perf_analyzer_offline(server, gclient, audio_set, tmp_path, protocol):
    assert PERF_ANALYZER.exists(), "run scripts/install_perf_analyzer.sh (setup.sh does)"
    data = perf_input(tmp_path, audio_set["head"][1])
    out = tmp_path / "out.csv"
    url = server.grpc_url if protocol == "grpc" else server.http_url
    before = model_stats(gclient, "attention_rescoring")
    r = subprocess.run([str(PERF_ANALYZER), "-m", "attention_rescoring", "-b", "1", "-p", "1000",
                        "--concurrency-range", "1:2", "-i", protocol, "-u", url, "--input-data", str(data),
                        # A shared 2-core CI machine is noisy: accept a wide stability band; this
                        # test is about the protocol, not the numbers.
                        "-f", str(out), "-s", "200", "-r", "10"], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Concurrency: 2, throughput:" in r.stdout
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["Concurrency", "Inferences/Second", "Client Send", "Network+Server Send/Recv", "Server Queue",
                       "Server Compute Input", "Server Compute Infer", "Server Compute Output", "Client Recv",
                       "p50 latency", "p90 latency", "p95 latency", "p99 latency"]
    assert sorted(int(row[0]) for row in rows[1:]) == [1, 2]
    after = model_stats(gclient, "attention_rescoring")
    st, st0 = after["inference_stats"], before["inference_stats"]
    sent = as_int(st["success"].get("count")) - as_int(st0["success"].get("count"))
    assert sent > 0
    assert as_int(st["queue"].get("count")) - as_int(st0["queue"].get("count")) == sent
    assert as_int(st["fail"].get("count")) == as_int(st0["fail"].get("count"))


def test_u2perf_reports_a_table_csv_and_json(server, audio_set, tmp_path):
    wav = audio_set["speech"][0]
    csv_path, json_path = tmp_path / "perf.csv", tmp_path / "perf.json"
    r = subprocess.run([str(APPS / "u2perf"), "--url", server.grpc_url, "--model", "ctc_greedy",
                        "--concurrency-range", "1:2", "--measurement-interval", "400", "--max-windows", "4",
                        "--csv", str(csv_path), "--json", str(json_path), str(wav)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Concurrency" in r.stdout and "p99" in r.stdout
    rows = list(csv.DictReader(csv_path.open()))
    assert [int(row["concurrency"]) for row in rows] == [1, 2]
    doc = json.loads(json_path.read_text())
    for level in doc["results"]:
        assert level["requests"] > 0 and level["errors"] == 0
        assert level["throughput_infer_per_s"] > 0 and level["audio_seconds_per_s"] > 0
        assert 0 < level["latency_ms"]["p50"] <= level["latency_ms"]["p99"]
        assert level["rtf"] > 0


def test_yaml_config_several_models_and_graceful_shutdown(tmp_path, audio_set, reference):
    other = ROOT / "tests" / "fixtures" / "conformer_conv2d6_abspos" / "model"
    config = tmp_path / "server.yaml"
    config.write_text(f"model_dir:\n  - u2pp={SERVER_MODEL}\n  - other={other}\nworkers: 1\n"
                      f"max_queue_delay_us: 20000\npreferred_batch_size: [4]\n")
    s = ServerProcess(["--config", str(config)], tmp_path / "log.txt")
    try:
        s.wait_ready()
        client = grpcclient.InferenceServerClient(s.grpc_url)
        names = sorted(m["name"] for m in client.get_model_repository_index(as_json=True)["models"])
        assert names == sorted(f"{d}-{m}" for d in ("u2pp", "other")
                               for m in ("attention_rescoring", "ctc_greedy", "ctc_prefix_beam_search",
                                         "streaming_wenet"))
        cfg = client.get_model_config("u2pp-attention_rescoring", as_json=True)["config"]
        assert cfg["dynamic_batching"]["preferred_batch_size"] == [4]
        samples = audio_set["speech"][1]
        assert grpc_transcript(client, samples, model="u2pp-attention_rescoring") == \
            reference["attention_rescoring"]["speech"]
        # Requests in flight when SIGTERM arrives still complete; new ones are refused.
        results, errors = [], []

        def send():
            try:
                results.append(grpc_transcript(grpcclient.InferenceServerClient(s.grpc_url), samples,
                                               model="u2pp-attention_rescoring"))
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=send) for _ in range(6)]
        for t in threads:
            t.start()
        time.sleep(0.01)
        s.proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(60)
        assert s.proc.wait(timeout=60) == 0
        # Each request either finished with the right answer or was refused as UNAVAILABLE (if
        # it arrived after the signal); none was dropped half-way.
        assert all(text == reference["attention_rescoring"]["speech"] for text in results)
        for e in errors:
            assert "UNAVAILABLE" in str(e.status()) or "StatusCode.UNAVAILABLE" in str(e), e
        assert "u2serve stopped" in s.log_text()
    finally:
        s.stop()


def test_bad_startup_configurations_fail_with_a_message(tmp_path):
    cases = [
        (["--model-dir", str(tmp_path / "missing")], "missing"),
        (["--model-dir", str(SERVER_MODEL), "--max-batch-size", "0"], "max_batch_size"),
        (["--model-dir", str(SERVER_MODEL), "--model-dir", str(SERVER_MODEL)], "NAME=PATH"),
    ]
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("model_dir: x\nno_such_option: 1\n")
    cases.append((["--config", str(bad_yaml)], "no_such_option"))
    for args, text in cases:
        r = subprocess.run([str(APPS / "u2serve"), "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"]
                           + args, capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and text in (r.stdout + r.stderr), (args, r.stdout + r.stderr)


def test_full_queue_is_refused_at_once(tmp_path, audio_set, reference):
    s = ServerProcess(["--model-dir", str(SERVER_MODEL), "--workers", "1", "--max-queue-size", "1",
                       "--max-queue-delay-us", "0"], tmp_path / "log.txt")
    try:
        s.wait_ready()
        samples = audio_set["double"][1]
        want = reference["attention_rescoring"]["double"]
        barrier = threading.Barrier(24)

        def one(i):
            barrier.wait()
            if i % 2:
                body, n = binary_body(samples.reshape(1, -1), [len(samples)], outputs_binary=False)
                code, resp, _ = http_post(s, "/v2/models/attention_rescoring/infer", body,
                                          {"Inference-Header-Content-Length": str(n)})
                return ("ok", json.loads(resp)["outputs"][0]["data"][0]) if code == 200 else (code, resp)
            try:
                return "ok", grpc_transcript(grpcclient.InferenceServerClient(s.grpc_url), samples)
            except Exception as e:  # noqa: BLE001
                return e.status(), e.message()

        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(24) as pool:
            results = list(pool.map(one, range(24)))
        refused = [r for r in results if r[0] != "ok"]
        assert all(text == want for kind, text in results if kind == "ok")
        assert refused, "24 simultaneous requests never overflowed a queue of 1"
        for kind, text in refused:
            assert kind in ("StatusCode.RESOURCE_EXHAUSTED", 503), (kind, text)
            assert "queue is full" in str(text)
        with urllib.request.urlopen(s.metrics_url, timeout=10) as r:
            metrics = r.read().decode()
        line = [x for x in metrics.splitlines()
                if x.startswith('nv_inference_request_failure{model="attention_rescoring",version="1",reason="REJECTED"}')]
        assert line and float(line[0].split()[-1]) == len(refused)
    finally:
        assert s.stop() == 0


def test_grpc_health_service(server):
    import grpc
    check = grpc.insecure_channel(server.grpc_url).unary_unary(
        "/grpc.health.v1.Health/Check", request_serializer=lambda x: x, response_deserializer=lambda x: x)
    assert check(b"") == b"\x08\x01"  # HealthCheckResponse{status: SERVING}
