#!/usr/bin/env python3
"""Soak test: mixed traffic against one u2serve on loopback for a set time, every answer checked.

One u2serve (models/demo, 2 workers of 1 thread, a queue of 16 requests, 12 live streams) gets,
for --minutes:

  * offline gRPC requests (tritonclient, WeNet's WAV / WAV_LENS inputs, the three offline
    models), from 2 client threads in the "c2" phases and 4 in the "c4" phases;
  * offline HTTP requests from 2 threads: KServe v2 binary bodies (one thread on a keep-alive
    connection, one opening a connection per request) and some OpenAI uploads;
  * Triton sequences on streaming_wenet from 2 threads: one ModelInfer per chunk (WeNet's
    speech_client.py), and all chunks pipelined on one ModelStreamInfer; a tenth are abandoned
    halfway (the server must drop them);
  * WebSocket streams from 2 threads (WeNet's protocol): 60 % finish, 20 % abort (close frame
    after half the audio), 20 % vanish (the TCP socket dropped without a close frame);
  * about 10 % malformed requests of every kind: the bad gRPC and KServe HTTP requests of
    tests/python/test_server_bad_input.py, bad sequence requests, bad OpenAI uploads and hotword
    lists, bad WebSocket messages;
  * every ~30 s (less for short runs; 4 times as often during warm-up) a burst of 32
    simultaneous offline requests, and every other burst 12 more WebSocket streams, above what
    the queue and the stream slots hold.

A client refused retryably waits 0.5-1 s (the Retry-After) before its next request.

Every request gets an id and one record: kind, phase, start, end and outcome, one of

  ok                answered with the transcript u2recognize gives for the same audio and mode
                    (streams: `--chunk-size 16`); aborted / vanished streams: closed cleanly
  refused           a good request turned away retryably: RESOURCE_EXHAUSTED / 503 with
                    Retry-After / WebSocket "try again later" (queue full, too many streams)
  expected_error    a malformed request answered with its expected error
  wrong             a transcript that differs from u2recognize's, or an answer for another id
  unexpected_error  any other error (a 5xx other than 503, a reset connection, a wrong code)
  lost              no answer within 120 s
  duplicated        more than one answer for one request

A sampler reads the server's VmRSS, open file descriptors and threads from /proc every 2 s.
After the traffic stops the server must have no live stream left, must count exactly the
refusals the clients saw, and must exit 0 on SIGTERM.

The run fails (exit code 1) on a crash or a non-zero exit, any wrong, lost, duplicated or
unexpected answer, a good kind never answered, RSS growth after warm-up (the first 20 % of the
run, at least 20 s) of 5 % or more (15 % for runs under 10 minutes: their windows are short), or
open fds growing by more than 10. RSS growth = (mean of the last 10 % of the samples after
warm-up - mean of the first 10 %) / that first mean; fds compare the medians of the same windows
(connections come and go); the least-squares slopes are reported too.
Results: <out>.json and <out>.md; every record and the server log go to --work.

    .venv/bin/python bench/soak.py --minutes 2 [--build build] [--out bench/results/soak] [--seed 1]
"""
import argparse
import http.client
import itertools
import json
import os
import platform
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
import websocket
from tritonclient.grpc import service_pb2_grpc
from tritonclient.utils import InferenceServerException

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
from conftest import free_port, read_wav, sample_table  # noqa: E402
from test_openai_api import form  # noqa: E402
from test_server import binary_body, wenet_inputs  # noqa: E402
from test_server_bad_input import grpc_bad_requests, http_bad_requests  # noqa: E402
from test_server_streaming import chunk_inputs, raw_sequence_request, wenet_chunks  # noqa: E402
from test_websocket import pcm16, receive, receive_all  # noqa: E402

MODEL_DIR = ROOT / "models" / "demo"
OFFLINE_MODELS = ["attention_rescoring", "ctc_greedy", "ctc_prefix_beam_search"]
STREAM_MODEL = "streaming_wenet"
SERVER_ARGS = ["--workers", "2", "--threads", "1", "--max-queue-size", "16", "--max-streams", "12",
               "--stream-idle-timeout-ms", "5000"]
ANSWER_TIMEOUT = 120.0  # seconds without an answer before a request counts as lost
MALFORMED_SHARE = 0.115  # of the steady clients' requests: about 10 % of all, bursts included
BURST_OFFLINE, BURST_STREAMS = 32, 12
SAMPLE_EVERY = 2.0
PROGRESS_EVERY = 10.0
FD_GROWTH_LIMIT = 10

OK, REFUSED, EXPECTED = "ok", "refused", "expected_error"
WRONG, UNEXPECTED, LOST, DUPLICATED = "wrong", "unexpected_error", "lost", "duplicated"
OUTCOMES = [OK, REFUSED, EXPECTED, WRONG, UNEXPECTED, LOST, DUPLICATED]
BAD_OUTCOMES = {WRONG, UNEXPECTED, LOST, DUPLICATED}
GOOD_KINDS = ["grpc_offline", "http_offline", "http_openai", "sequence_unary", "sequence_stream",
              "sequence_abandoned", "ws_finish", "ws_abort", "ws_vanish", "burst_grpc", "burst_http", "burst_ws"]
MALFORMED_KINDS = ["bad_grpc", "bad_http", "bad_sequence", "bad_ws"]


# ------------------------------------------------------------------------------------------------
# References and audio


def u2recognize(build, paths, mode, *extra):
    cmd = [str(ROOT / build / "apps" / "u2recognize"), "--model-dir", str(MODEL_DIR), "--mode", mode, "--quiet",
           *extra] + [str(p) for p in paths]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr}")
    return dict(line.partition(" ")[::2] for line in r.stdout.splitlines())


class Clips:
    """The demo samples as float32, int16 PCM and WAV bytes, with u2recognize's transcripts:
    offline[mode][utt] and streaming[utt] (attention rescoring, --chunk-size 16)."""

    def __init__(self, build):
        table = sample_table()
        self.utts = sorted(table)
        self.float = {u: read_wav(table[u])[0] for u in self.utts}
        self.pcm = {u: pcm16(self.float[u]) for u in self.utts}
        self.wav_bytes = {u: table[u].read_bytes() for u in self.utts}
        self.chunks = {u: wenet_chunks(self.float[u]) for u in self.utts}
        by_stem = {mode: u2recognize(build, table.values(), mode) for mode in OFFLINE_MODELS}
        self.offline = {mode: {u: by_stem[mode][table[u].stem] for u in self.utts} for mode in OFFLINE_MODELS}
        streaming = u2recognize(build, table.values(), "attention_rescoring", "--chunk-size", "16")
        self.streaming = {u: streaming[table[u].stem] for u in self.utts}


# ------------------------------------------------------------------------------------------------
# The server


class Server:
    def __init__(self, build, log_path):
        self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        self.args = [str(ROOT / build / "apps" / "u2serve"), "--model-dir", "models/demo", "--bind", "127.0.0.1",
                     "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port),
                     "--metrics-port", str(self.metrics_port)] + SERVER_ARGS
        self.log_path = log_path
        self.log = open(log_path, "w")
        # From the repository root, so the default --vad-model-dir models/silero_vad resolves.
        self.proc = subprocess.Popen(self.args, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        self.grpc_url = f"127.0.0.1:{self.grpc_port}"
        self.http_url = f"127.0.0.1:{self.http_port}"

    def wait_ready(self, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"u2serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        sys.exit(f"u2serve not ready after {timeout} s:\n{self.log_tail()}")

    def proc_status(self):
        """(VmRSS kB, open fds, threads), or None once the process is gone."""
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
            fds = len(os.listdir(f"/proc/{self.proc.pid}/fd"))
        except OSError:
            return None
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return int(fields["VmRSS"].split()[0]), fds, int(fields["Threads"])

    def metrics(self):
        """{metric line name with labels: value} of the metrics port."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def stop(self, timeout=60):
        """SIGTERM; returns the exit code (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.log.close()
                return None
        self.log.close()
        return self.proc.returncode

    def log_tail(self, n=4000):
        if not self.log.closed:
            self.log.flush()
        return Path(self.log_path).read_text(errors="replace")[-n:]


def metric_sum(metrics, name):
    return sum(v for k, v in metrics.items() if k == name or k.startswith(name + "{"))


def refusals_by_cause(metrics):
    out = {}
    for key, value in metrics.items():
        m = re.match(r'u2_refusals_total\{cause="([^"]+)"\}', key)
        if m:
            out[m.group(1)] = int(value)
    return out


# ------------------------------------------------------------------------------------------------
# Records


class Schedule:
    """Phases and bursts of a run of `seconds`: warm-up first, then phases alternating between
    offline gRPC concurrency 2 ("c2") and 4 ("c4")."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.warmup = max(20.0, 0.2 * seconds)
        self.phase_len = min(120.0, max(15.0, seconds / 5))
        self.burst_every = min(30.0, max(10.0, seconds / 8))
        # Bursts come 4 times as often during warm-up: the allocator's high-water mark (glibc
        # raises its mmap threshold after big frees, and each arena keeps what it once held)
        # is reached by the bursts' big batches, so it should be reached before measuring.
        self.warmup_burst_every = self.burst_every / 4
        self.t0 = time.monotonic()

    def now(self):
        return time.monotonic() - self.t0

    def concurrency(self, t=None):
        t = self.now() if t is None else t
        return 2 if int(t / self.phase_len) % 2 == 0 else 4

    def phase(self, t=None):
        t = self.now() if t is None else t
        return "warmup" if t < self.warmup else f"c{self.concurrency(t)}"


class Recorder:
    """One record per request: begin() hands out an id, end() sets the outcome. A second end()
    for one id marks it duplicated; a request never ended is lost."""

    def __init__(self, schedule):
        self.schedule = schedule
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.records = {}
        self.local = threading.local()

    def begin(self, kind):
        t = self.schedule.now()
        rec = {"id": next(self.ids), "kind": kind, "phase": self.schedule.phase(t), "start": round(t, 4),
               "end": None, "outcome": None}
        with self.lock:
            self.records[rec["id"]] = rec
        return rec

    def end(self, rec, outcome, detail=""):
        self.local.last = outcome
        with self.lock:
            if rec["outcome"] is not None:
                rec["outcome"] = DUPLICATED
                rec["detail"] = f"answered twice: {detail}"[:500]
                return
            rec["end"] = round(self.schedule.now(), 4)
            rec["outcome"] = outcome
            if detail:
                rec["detail"] = str(detail)[:500]

    def last_outcome(self):
        """The outcome of this thread's last request."""
        return getattr(self.local, "last", None)

    def counts(self):
        with self.lock:
            return Counter(r["outcome"] or "pending" for r in self.records.values())

    def finish(self):
        with self.lock:
            for r in self.records.values():
                if r["outcome"] is None:
                    r["outcome"], r["detail"] = LOST, "no answer before the run ended"
            return list(self.records.values())


# ------------------------------------------------------------------------------------------------
# Classifying answers


def grpc_outcome(code, message, expected=None):
    """The outcome of a gRPC error: `expected` is (status code, text the message must hold)."""
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and re.search(r"(retry|try again) later", message):
        return REFUSED
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return LOST  # the client's deadline: no request carries a server-side timeout here
    if expected and code == expected[0] and expected[1].lower() in message.lower():
        return EXPECTED
    return UNEXPECTED


def triton_error_outcome(e, expected=None):
    if e.status() is None:
        # An error on ModelStreamInfer carries a message only (Triton's stream protocol has no
        # status code): a refusal is known by its "retry later".
        return REFUSED if re.search(r"(retry|try again) later", e.message() or "") else UNEXPECTED
    code = getattr(grpc.StatusCode, e.status().replace("StatusCode.", ""), None)
    return grpc_outcome(code, e.message() or "", expected)


def http_outcome(status, headers, body, expected=None):
    """The outcome of a non-200 HTTP answer: `expected` is (status, text the error must hold)."""
    if status == 503 and headers.get("retry-after") == "1":
        return REFUSED
    if expected and status == expected[0]:
        try:
            error = json.loads(body)["error"]
            message = error["message"] if isinstance(error, dict) else error
        except (ValueError, KeyError, TypeError):
            return UNEXPECTED
        if expected[1].lower() in message.lower():
            return EXPECTED
    return UNEXPECTED


class HttpClient:
    """HTTP requests on one keep-alive connection (reopened when the server closes it), or a new
    connection per request."""

    def __init__(self, url, keep_alive):
        self.host, self.port = url.split(":")
        self.keep_alive = keep_alive
        self.conn = None

    def post(self, path, body, headers):
        """(status, {lowercase header: value}, body); raises socket.timeout or OSError."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, int(self.port), timeout=ANSWER_TIMEOUT)
        try:
            self.conn.request("POST", path, body=body, headers=headers)
            r = self.conn.getresponse()
            data = r.read()
            out = (r.status, {k.lower(): v for k, v in r.getheaders()}, data)
        except Exception:
            self.close()
            raise
        if not self.keep_alive or r.will_close:
            self.close()
        return out

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def http_exception_outcome(e):
    return LOST if isinstance(e, (socket.timeout, TimeoutError)) else UNEXPECTED


# ------------------------------------------------------------------------------------------------
# Traffic


class Soak:
    def __init__(self, server, clips, schedule, recorder, seed):
        self.server, self.clips, self.schedule, self.rec = server, clips, schedule, recorder
        self.seed = seed
        self.stop = threading.Event()
        self.sequence_ids = itertools.count(1)
        self.burst_grpc = grpcclient.InferenceServerClient(server.grpc_url)

    def rng(self, name):
        return random.Random(f"{self.seed}/{name}")

    def running(self):
        return not self.stop.is_set() and self.schedule.now() < self.schedule.seconds

    def back_off(self, rng):
        """After a retryable refusal a client waits about the Retry-After second before its next
        request, as a polite client does (instead of hammering a full server in a tight loop)."""
        if self.rec.last_outcome() == REFUSED:
            self.stop.wait(rng.uniform(0.5, 1.0))

    # --- offline gRPC ---------------------------------------------------------------------------

    def grpc_offline(self, client, rng, kind="grpc_offline"):
        utt, model = rng.choice(self.clips.utts), rng.choice(OFFLINE_MODELS)
        x = self.clips.float[utt]
        rec = self.rec.begin(kind)
        rid = f"r{rec['id']}"
        try:
            r = client.infer(model, wenet_inputs(grpcclient, x), request_id=rid, client_timeout=ANSWER_TIMEOUT,
                             outputs=[grpcclient.InferRequestedOutput("TRANSCRIPTS")])
        except InferenceServerException as e:
            self.rec.end(rec, triton_error_outcome(e), f"{model} {utt}: {e.status()} {e.message()}")
            return
        except Exception as e:  # noqa: BLE001 - every failure is recorded
            self.rec.end(rec, UNEXPECTED, f"{model} {utt}: {e!r}")
            return
        texts = r.as_numpy("TRANSCRIPTS")
        got = texts[0].decode() if texts is not None and texts.shape == (1,) else repr(texts)
        want = self.clips.offline[model][utt]
        if r.get_response().id != rid:
            self.rec.end(rec, WRONG, f"answer for id {r.get_response().id!r}, sent {rid!r}")
        elif got != want:
            self.rec.end(rec, WRONG, f"{model} {utt}: {got!r} != {want!r}")
        else:
            self.rec.end(rec, OK)

    def bad_grpc(self, stub, raw_call, bad, rng):
        """One of test_server_bad_input's bad gRPC requests, or now and then bytes that are not a
        ModelInferRequest at all (gRPC itself refuses those: 1.51's callback server says
        UNIMPLEMENTED)."""
        rec = self.rec.begin("bad_grpc")
        if rng.random() < 0.1:
            desc, message, text = "garbage protobuf", b"\xff\xff\xff\xff\x0f garbage", ""
            send, codes = raw_call, (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT,
                                     grpc.StatusCode.UNIMPLEMENTED)
        else:
            desc, message, code, text = rng.choice(bad)
            send, codes = stub.ModelInfer, (code,)
        try:
            send(message, timeout=ANSWER_TIMEOUT)
        except grpc.RpcError as e:
            details = e.details() or ""
            outcome = grpc_outcome(e.code(), details)
            if outcome == UNEXPECTED and e.code() in codes and text.lower() in details.lower():
                outcome = EXPECTED
            self.rec.end(rec, outcome, f"{desc}: {e.code()} {details}")
            return
        self.rec.end(rec, UNEXPECTED, f"{desc}: answered as if it were good")

    def grpc_loop(self, index):
        rng = self.rng(f"grpc{index}")
        client = grpcclient.InferenceServerClient(self.server.grpc_url)
        channel = grpc.insecure_channel(self.server.grpc_url)
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        raw_call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                       request_serializer=lambda x: x, response_deserializer=lambda x: x)
        bad = grpc_bad_requests(self.clips.float[self.clips.utts[index % len(self.clips.utts)]])
        while self.running():
            if index >= self.schedule.concurrency():  # the 3rd and 4th clients run in c4 phases only
                time.sleep(0.2)
                continue
            if rng.random() < MALFORMED_SHARE:
                self.bad_grpc(stub, raw_call, bad, rng)
            else:
                self.grpc_offline(client, rng)
            self.back_off(rng)
        client.close()
        channel.close()

    # --- offline HTTP ---------------------------------------------------------------------------

    def http_offline(self, client, rng, kind="http_offline"):
        utt, model = rng.choice(self.clips.utts), rng.choice(OFFLINE_MODELS)
        x = self.clips.float[utt]
        rec = self.rec.begin(kind)
        rid = f"r{rec['id']}"
        body, json_len = binary_body(x.reshape(1, -1), [len(x)], outputs_binary=False, request_id=rid)
        try:
            status, headers, data = client.post(f"/v2/models/{model}/infer", body,
                                                {"Inference-Header-Content-Length": str(json_len)})
        except Exception as e:  # noqa: BLE001 - every failure is recorded
            self.rec.end(rec, http_exception_outcome(e), f"{model} {utt}: {e!r}")
            return
        if status != 200:
            self.rec.end(rec, http_outcome(status, headers, data), f"{model} {utt}: {status} {data[:300]!r}")
            return
        try:
            answer = json.loads(data)
            got, rid_back = answer["outputs"][0]["data"][0], answer.get("id")
        except (ValueError, KeyError, IndexError, TypeError):
            self.rec.end(rec, WRONG, f"not a KServe answer: {data[:300]!r}")
            return
        want = self.clips.offline[model][utt]
        if rid_back != rid:
            self.rec.end(rec, WRONG, f"answer for id {rid_back!r}, sent {rid!r}")
        elif got != want:
            self.rec.end(rec, WRONG, f"{model} {utt}: {got!r} != {want!r}")
        else:
            self.rec.end(rec, OK)

    def http_openai(self, client, rng):
        utt, model = rng.choice(self.clips.utts), rng.choice(OFFLINE_MODELS)
        body = form([("model", None, model.encode()), ("file", f"{utt}.wav", self.clips.wav_bytes[utt])])
        rec = self.rec.begin("http_openai")
        try:
            status, headers, data = client.post("/v1/audio/transcriptions", body,
                                                {"Content-Type": "multipart/form-data; boundary=XyZ"})
        except Exception as e:  # noqa: BLE001 - every failure is recorded
            self.rec.end(rec, http_exception_outcome(e), f"{model} {utt}: {e!r}")
            return
        if status != 200:
            self.rec.end(rec, http_outcome(status, headers, data), f"{model} {utt}: {status} {data[:300]!r}")
            return
        try:
            got = json.loads(data)["text"]
        except (ValueError, KeyError, TypeError):
            self.rec.end(rec, WRONG, f"not an OpenAI answer: {data[:300]!r}")
            return
        want = self.clips.offline[model][utt]
        self.rec.end(rec, OK if got == want else WRONG, "" if got == want else f"{model} {utt}: {got!r} != {want!r}")

    def http_bad_cases(self, utt):
        """(description, path, body, headers, expected status, text): test_server_bad_input's
        KServe cases, an unknown model, bad hotword / LM parameters and bad OpenAI uploads."""
        x = self.clips.float[utt]
        path = "/v2/models/attention_rescoring/infer"
        cases = [(desc, path, body, headers, status, text)
                 for desc, body, headers, status, text in http_bad_requests(x)]
        cases.append(("unknown model", "/v2/models/nope/infer", b"{}", {}, 404, "nope"))
        for params, text in [({"hotwords": "[\"paragraph\", "}, "JSON"), ({"hotwords": 7}, "string is expected"),
                             ({"hotwords": "paragraph:500"}, "boost"), ({"lm_weight": 50}, "lm_weight")]:
            body, json_len = binary_body(x.reshape(1, -1), [len(x)], params=params)
            cases.append((f"bad parameter {params}", path, body, {"Inference-Header-Content-Length": str(json_len)},
                          400, text))
        good = [("model", None, b"attention_rescoring"), ("file", "a.wav", self.clips.wav_bytes[utt])]
        multipart = {"Content-Type": "multipart/form-data; boundary=XyZ"}
        openai = "/v1/audio/transcriptions"
        cases += [
            ("OpenAI: no boundary", openai, form(good), {"Content-Type": "multipart/form-data"}, 400, "boundary"),
            ("OpenAI: truncated part", openai, form(good)[:len(form(good)) // 2], multipart, 400, "truncated"),
            ("OpenAI: not audio", openai, form([good[0], ("file", "a.txt", b"not audio at all" * 20)]), multipart,
             400, "decode"),
            ("OpenAI: truncated WAV", openai, form([good[0], ("file", "a.wav", self.clips.wav_bytes[utt][:30])]),
             multipart, 400, "decode"),
            ("OpenAI: empty file", openai, form([good[0], ("file", "a.wav", b"")]), multipart, 400, "empty"),
            ("OpenAI: unknown model", openai, form([("model", None, b"nope"), good[1]]), multipart, 404, "nope"),
        ]
        return cases

    def bad_http(self, client, cases, rng):
        desc, path, body, headers, status_wanted, text = rng.choice(cases)
        rec = self.rec.begin("bad_http")
        try:
            status, headers_back, data = client.post(path, body, headers)
        except Exception as e:  # noqa: BLE001 - every failure is recorded
            self.rec.end(rec, http_exception_outcome(e), f"{desc}: {e!r}")
            return
        self.rec.end(rec, http_outcome(status, headers_back, data, (status_wanted, text)),
                     f"{desc}: {status} {data[:300]!r}")

    def http_loop(self, index):
        rng = self.rng(f"http{index}")
        client = HttpClient(self.server.http_url, keep_alive=index == 0)
        cases = self.http_bad_cases(self.clips.utts[index % len(self.clips.utts)])
        while self.running():
            r = rng.random()
            if r < MALFORMED_SHARE:
                self.bad_http(client, cases, rng)
            elif r < MALFORMED_SHARE + 0.2:
                self.http_openai(client, rng)
            else:
                self.http_offline(client, rng)
            self.back_off(rng)
        client.close()

    # --- Triton sequences -----------------------------------------------------------------------

    def sequence_unary(self, client, rng):
        """speech_client.py: one ModelInfer per chunk; every answer's id checked, the final's text."""
        utt = rng.choice(self.clips.utts)
        chunks = self.clips.chunks[utt]
        abandon = rng.random() < 0.1
        rec = self.rec.begin("sequence_abandoned" if abandon else "sequence_unary")
        sid = 1_000_000 * (self.seed % 1000 + 1) + next(self.sequence_ids)
        last = len(chunks) // 2 if abandon else len(chunks)
        text = None
        for k, (padded, real) in enumerate(chunks[:last]):
            rid = f"s{sid}/{k}"
            try:
                r = client.infer(STREAM_MODEL, chunk_inputs(grpcclient, padded, real), request_id=rid,
                                 sequence_id=sid, sequence_start=k == 0, sequence_end=k == len(chunks) - 1,
                                 outputs=[grpcclient.InferRequestedOutput("TRANSCRIPTS")],
                                 headers={"x-u2-sequence-id": str(sid)},  # sticky behind a balancer
                                 client_timeout=ANSWER_TIMEOUT)
            except InferenceServerException as e:
                outcome = triton_error_outcome(e)
                if outcome == REFUSED and k > 0:
                    outcome = UNEXPECTED  # only a sequence's START may be refused for lack of slots
                self.rec.end(rec, outcome, f"{utt} chunk {k}: {e.status()} {e.message()}")
                return
            except Exception as e:  # noqa: BLE001 - every failure is recorded
                self.rec.end(rec, UNEXPECTED, f"{utt} chunk {k}: {e!r}")
                return
            if r.get_response().id != rid:
                self.rec.end(rec, WRONG, f"answer for id {r.get_response().id!r}, sent {rid!r}")
                return
            text = r.as_numpy("TRANSCRIPTS")[0].decode()
        if abandon or text == self.clips.streaming[utt]:
            self.rec.end(rec, OK)
        else:
            self.rec.end(rec, WRONG, f"{utt}: {text!r} != {self.clips.streaming[utt]!r}")

    def sequence_stream(self, client, rng):
        """All chunks of one sequence pipelined on one ModelStreamInfer: one answer per request,
        in order, and the final's text."""
        utt = rng.choice(self.clips.utts)
        chunks = self.clips.chunks[utt]
        abandon = rng.random() < 0.1
        rec = self.rec.begin("sequence_abandoned" if abandon else "sequence_stream")
        sid = f"soak-{self.seed}-{next(self.sequence_ids)}"
        sent = chunks[:len(chunks) // 2] if abandon else chunks
        answers, all_in = [], threading.Event()
        lock = threading.Lock()

        def callback(result, error):
            with lock:
                answers.append((result, error))
                if len(answers) >= len(sent):
                    all_in.set()

        try:
            client.start_stream(callback=callback, stream_timeout=ANSWER_TIMEOUT)
            for k, (padded, real) in enumerate(sent):
                client.async_stream_infer(STREAM_MODEL, chunk_inputs(grpcclient, padded, real),
                                          request_id=f"{sid}/{k}", sequence_id=sid, sequence_start=k == 0,
                                          sequence_end=k == len(chunks) - 1,
                                          outputs=[grpcclient.InferRequestedOutput("TRANSCRIPTS")])
            all_in.wait(ANSWER_TIMEOUT + 5)
        except Exception as e:  # noqa: BLE001 - every failure is recorded
            client.stop_stream(cancel_requests=True)
            self.rec.end(rec, UNEXPECTED, f"{utt}: {e!r}")
            return
        client.stop_stream()  # the server ends the response stream: anything extra has arrived
        errors = [e for _, e in answers if e is not None]
        ids = [r.get_response().id for r, e in answers if e is None]
        if len(answers) < len(sent):
            self.rec.end(rec, LOST, f"{utt}: {len(answers)} answers for {len(sent)} requests")
        elif len(answers) > len(sent):
            self.rec.end(rec, DUPLICATED, f"{utt}: {len(answers)} answers for {len(sent)} requests: {ids}")
        elif errors:
            # Only a START may be refused (no stream slot); the chunks after it then fail as
            # chunks of a sequence that never started.
            outcome = triton_error_outcome(errors[0])
            if outcome == REFUSED and answers[0][1] is None:
                outcome = UNEXPECTED  # refused mid-sequence
            self.rec.end(rec, outcome, f"{utt}: {[f'{e.status()} {e.message()}' for e in errors[:3]]}")
        elif ids != [f"{sid}/{k}" for k in range(len(sent))]:
            self.rec.end(rec, WRONG, f"{utt}: answers out of order or for other ids: {ids}")
        else:
            text = answers[-1][0].as_numpy("TRANSCRIPTS")[0].decode()
            if abandon or text == self.clips.streaming[utt]:
                self.rec.end(rec, OK)
            else:
                self.rec.end(rec, WRONG, f"{utt}: {text!r} != {self.clips.streaming[utt]!r}")

    def bad_sequence_cases(self):
        """(description, request, status code, text) on the raw stub."""
        utt = self.clips.utts[0]
        padded, real = self.clips.chunks[utt][1]
        x = self.clips.float[utt]
        whole = dict(sequence_start=True, sequence_end=True)
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        cases = [("chunk of a sequence never started", raw_sequence_request(padded[:real], sequence_id=987654321),
                  invalid, "START flag"),
                 ("no correlation id", raw_sequence_request(padded[:real], sequence_id=0), invalid, "correlation ID"),
                 ("unknown parameter", raw_sequence_request(x, sequence_id=43, triton_xyz=True, **whole), invalid, ""),
                 ("sequence_start not a bool", raw_sequence_request(x, sequence_id=44, sequence_start=1,
                                                                    sequence_end=True), invalid, ""),
                 ("beam 0", raw_sequence_request(x, sequence_id=46, beam=0, **whole), invalid, ""),
                 ("offline decoding mode", raw_sequence_request(x, sequence_id=47, decoding_mode="ctc_greedy",
                                                                **whole), invalid, "")]
        req = raw_sequence_request(x, sequence_id=48, **whole)
        req.parameters["sequence_id"].uint64_param = 48
        cases.append(("uint64 sequence id", req, invalid, ""))
        nan = x.copy()
        nan[100] = np.nan
        cases.append(("NaN sample", raw_sequence_request(nan, sequence_id=49, **whole), invalid, "WAV"))
        return cases

    def bad_sequence(self, stub, cases, rng):
        desc, req, code, text = rng.choice(cases)
        rec = self.rec.begin("bad_sequence")
        try:
            stub.ModelInfer(req, timeout=ANSWER_TIMEOUT)
        except grpc.RpcError as e:
            self.rec.end(rec, grpc_outcome(e.code(), e.details() or "", (code, text)),
                         f"{desc}: {e.code()} {e.details()}")
            return
        self.rec.end(rec, UNEXPECTED, f"{desc}: answered as if it were good")

    def sequence_loop(self, index):
        rng = self.rng(f"sequence{index}")
        client = grpcclient.InferenceServerClient(self.server.grpc_url)
        channel = grpc.insecure_channel(self.server.grpc_url)
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        cases = self.bad_sequence_cases()
        while self.running():
            if rng.random() < MALFORMED_SHARE:
                self.bad_sequence(stub, cases, rng)
            elif index == 0:
                self.sequence_unary(client, rng)
            else:
                self.sequence_stream(client, rng)
            self.back_off(rng)
        client.close()
        channel.close()

    # --- WebSocket ------------------------------------------------------------------------------

    def connect(self):
        return websocket.create_connection(f"ws://{self.server.http_url}/ws", timeout=ANSWER_TIMEOUT)

    def ws_stream(self, rng, how="finish", kind=None):
        """One WebSocket stream: `how` is finish, abort (close frame after half the audio) or
        vanish (the socket dropped after half the audio)."""
        utt = rng.choice(self.clips.utts)
        pcm = self.clips.pcm[utt]
        rec = self.rec.begin(kind or f"ws_{how}")
        ws, vanished = None, False
        try:
            ws = self.connect()
            ws.send(json.dumps({"signal": "start"}))
            reply = receive(ws)
            if reply != {"status": "ok", "type": "server_ready"}:
                refused = (reply is not None and reply.get("status") == "failed"
                           and "try again later" in reply.get("message", "") and receive(ws) is None
                           and getattr(ws, "close_code", None) == 1013)
                self.rec.end(rec, REFUSED if refused else UNEXPECTED, f"start answered {reply!r}")
                return
            frame = 16 * rng.choice([100, 250, 640])
            end = len(pcm) if how == "finish" else len(pcm) // 2
            for i in range(0, end, frame):
                ws.send_binary(pcm[i:min(i + frame, end)].tobytes())
            if how == "vanish":
                ws.sock.shutdown(socket.SHUT_RDWR)
                ws.sock.close()
                vanished = True
                self.rec.end(rec, OK)
                return
            if how == "abort":
                ws.send_close()
                messages = receive_all(ws)  # results so far, then the server's close frame
                ok = all(m.get("status") == "ok" for m in messages)
                self.rec.end(rec, OK if ok else UNEXPECTED, "" if ok else f"{utt}: {messages[-3:]}")
                return
            ws.send(json.dumps({"signal": "end"}))
            messages = receive_all(ws)
        except websocket.WebSocketTimeoutException as e:
            self.rec.end(rec, LOST, f"{utt} ({how}): {e!r}")
            return
        except Exception as e:  # noqa: BLE001 - every failure is recorded
            self.rec.end(rec, UNEXPECTED, f"{utt} ({how}): {e!r}")
            return
        finally:
            if ws is not None and not vanished:
                ws.close()
        types = [m.get("type") for m in messages]
        finals = [m for m in messages if m.get("type") == "final_result"]
        if any(m.get("status") != "ok" for m in messages) or types[-2:] != ["final_result", "speech_end"]:
            self.rec.end(rec, UNEXPECTED, f"{utt}: {messages[-3:]}")
        elif len(finals) != 1:
            self.rec.end(rec, DUPLICATED, f"{utt}: {len(finals)} final results")
        else:
            got = json.loads(finals[0]["nbest"])[0]["sentence"]
            want = self.clips.streaming[utt]
            self.rec.end(rec, OK if got == want else WRONG, "" if got == want else f"{utt}: {got!r} != {want!r}")

    def ws_bad_cases(self):
        """(description, text or bytes messages to send, fragment of the "failed" message): bad
        start messages and protocol errors (test_websocket.py's list)."""
        pcm = self.clips.pcm[self.clips.utts[0]][:8000].tobytes()
        start = json.dumps({"signal": "start"})
        return [("binary before start", [pcm], "Start signal is expected before binary data"),
                ("not JSON", ["hello"], "Wrong protocol"),
                ("JSON not an object", ["[1, 2]"], "Wrong protocol"),
                ("no signal", [json.dumps({"sig": "start"})], "signal"),
                ("unknown signal", [json.dumps({"signal": "pause"})], "Unexpected signal type"),
                ("end before start", [json.dumps({"signal": "end"})], "end signal before start"),
                ("nbest not a number", [json.dumps({"signal": "start", "nbest": "x"})],
                 "integer is expected for nbest"),
                ("nbest 0", [json.dumps({"signal": "start", "nbest": 0})], "nbest"),
                ("continuous_decoding 1", [json.dumps({"signal": "start", "continuous_decoding": 1})],
                 "boolean true or false is expected"),
                ("unknown model", [json.dumps({"signal": "start", "model": "no_such_model"})],
                 "no streaming model named"),
                ("half a sample", [start, pcm + b"\x00"], "odd"),
                ("second start", [start, pcm, start], "second start")]

    def bad_ws(self, cases, rng):
        desc, messages, fragment = rng.choice(cases)
        rec = self.rec.begin("bad_ws")
        ws = None
        try:
            ws = self.connect()
            for m in messages:
                if isinstance(m, bytes):
                    ws.send_binary(m)
                else:
                    ws.send(m)
            replies = receive_all(ws)
        except websocket.WebSocketTimeoutException as e:
            self.rec.end(rec, LOST, f"{desc}: {e!r}")
            return
        except Exception as e:  # noqa: BLE001 - every failure is recorded
            self.rec.end(rec, UNEXPECTED, f"{desc}: {e!r}")
            return
        finally:
            if ws is not None:
                ws.close()
        last = replies[-1] if replies else None
        if last and last.get("status") == "failed" and "try again later" in last.get("message", ""):
            outcome = REFUSED  # a start that needed a stream slot while none was free
        elif (last and last.get("status") == "failed" and fragment in last.get("message", "")
              and getattr(ws, "close_code", None) == 1008):
            outcome = EXPECTED
        else:
            outcome = UNEXPECTED
        self.rec.end(rec, outcome, f"{desc}: {replies[-2:]} close {getattr(ws, 'close_code', None)}")

    def ws_loop(self, index):
        rng = self.rng(f"ws{index}")
        cases = self.ws_bad_cases()
        while self.running():
            r = rng.random()
            if r < MALFORMED_SHARE:
                self.bad_ws(cases, rng)
            else:
                self.ws_stream(rng, "finish" if r < 0.64 else "abort" if r < 0.82 else "vanish")
            self.back_off(rng)

    # --- bursts ---------------------------------------------------------------------------------

    def burst(self, number, pool):
        """BURST_OFFLINE offline requests released at once (half gRPC, half HTTP), and every other
        burst BURST_STREAMS WebSocket streams too."""
        streams = BURST_STREAMS if number % 2 else 0
        barrier = threading.Barrier(BURST_OFFLINE + streams)

        def one(i):
            rng = self.rng(f"burst{number}/{i}")
            try:
                barrier.wait(timeout=60)
            except threading.BrokenBarrierError:
                pass  # a thread of the pool was late: this request goes a little after the others
            if i >= BURST_OFFLINE:
                self.ws_stream(rng, "finish", kind="burst_ws")
            elif i % 2:
                self.http_offline(HttpClient(self.server.http_url, keep_alive=False), rng, kind="burst_http")
            else:
                self.grpc_offline(self.burst_grpc, rng, kind="burst_grpc")

        return [pool.submit(one, i) for i in range(BURST_OFFLINE + streams)]

    def burst_loop(self):
        pending = []
        next_at = self.schedule.warmup_burst_every / 2
        with ThreadPoolExecutor(BURST_OFFLINE + BURST_STREAMS) as pool:
            for number in itertools.count():
                while self.running() and self.schedule.now() < next_at:
                    time.sleep(0.1)
                in_warmup = next_at < self.schedule.warmup
                next_at += self.schedule.warmup_burst_every if in_warmup else self.schedule.burst_every
                if not self.running():
                    break
                pending = [f for f in pending if not f.done()]
                if pending:
                    continue  # the last burst is still in flight: skip this one
                pending = self.burst(number, pool)
        for f in pending:
            f.result()

    # --- the run --------------------------------------------------------------------------------

    def run(self, on_sample):
        threads = [threading.Thread(target=self.grpc_loop, args=(i,), name=f"grpc{i}") for i in range(4)]
        threads += [threading.Thread(target=self.http_loop, args=(i,), name=f"http{i}") for i in range(2)]
        threads += [threading.Thread(target=self.sequence_loop, args=(i,), name=f"seq{i}") for i in range(2)]
        threads += [threading.Thread(target=self.ws_loop, args=(i,), name=f"ws{i}") for i in range(2)]
        threads.append(threading.Thread(target=self.burst_loop, name="bursts"))
        for t in threads:
            t.start()
        next_sample = 0.0
        while self.running():
            if self.schedule.now() >= next_sample:
                if not on_sample():
                    self.stop.set()  # the server is gone
                    break
                next_sample += SAMPLE_EVERY
            time.sleep(0.05)
        deadline = time.monotonic() + ANSWER_TIMEOUT + 30
        while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
            on_sample()  # keep sampling while the last requests finish
            time.sleep(SAMPLE_EVERY)
            for t in threads:
                t.join(0)
        stuck = [t.name for t in threads if t.is_alive()]
        self.stop.set()
        return stuck


# ------------------------------------------------------------------------------------------------
# Analysis


def percentile(sorted_values, q):
    if not sorted_values:
        return None
    k = (len(sorted_values) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def slope_per_hour(points):
    """Least-squares slope of [(t seconds, value)] per hour."""
    if len(points) < 2:
        return 0.0
    ts = [p[0] for p in points]
    vs = [p[1] for p in points]
    mt, mv = statistics.fmean(ts), statistics.fmean(vs)
    den = sum((t - mt) ** 2 for t in ts)
    return 0.0 if den == 0 else 3600 * sum((t - mt) * (v - mv) for t, v in zip(ts, vs)) / den


def growth(samples, warmup, column):
    """First and last tenth (means, and medians for the fd count's spikes) of the samples after
    warm-up, and the slope per hour of that column."""
    after = [s for s in samples if s["t"] >= warmup]
    if len(after) < 2:
        return None
    n = max(1, len(after) // 10)
    first = [s[column] for s in after[:n]]
    last = [s[column] for s in after[-n:]]
    return {"samples": len(after), "window": n,
            "first_mean": statistics.fmean(first), "last_mean": statistics.fmean(last),
            "first_median": statistics.median(first), "last_median": statistics.median(last),
            "max": max(s[column] for s in after),
            "slope_per_hour": slope_per_hour([(s["t"], s[column]) for s in after])}


def latency_table(records):
    """{kind: {phase: {n, p50, p90, p99}}} in ms over the answered (ok) requests."""
    by = defaultdict(list)
    for r in records:
        if r["outcome"] == OK and r["end"] is not None:
            by[(r["kind"], r["phase"])].append(1000 * (r["end"] - r["start"]))
            by[(r["kind"], "all")].append(1000 * (r["end"] - r["start"]))
    order = {"warmup": 0, "c2": 1, "c4": 2, "all": 3}
    out = defaultdict(dict)
    for (kind, phase), values in sorted(by.items(), key=lambda item: (item[0][0], order[item[0][1]])):
        values.sort()
        out[kind][phase] = {"n": len(values), **{f"p{q}": round(percentile(values, q), 1) for q in (50, 90, 99)}}
    return dict(out)


def write_markdown(path, result):
    rss, fds = result["rss"], result["fds"]
    lines = [
        f"# Soak test: {result['minutes']:g} minutes of mixed traffic against one u2serve",
        "",
        f"Verdict: **{result['verdict']}** ({result['date']}, {result['machine']['cpu']}, "
        f"{result['machine']['cores']} cores; {result['machine']['note']})",
        "",
        "Command:",
        "",
        "    " + result["command"],
        "",
        f"Server: `{' '.join(result['server']['args'])}`, exit code {result['server']['exit_code']}.",
        f"Warm-up: the first {result['warmup_s']:.0f} s; phases of {result['phase_s']:.0f} s alternate offline gRPC "
        f"concurrency 2 (c2) and 4 (c4); a burst every {result['burst_every_s']:.0f} s "
        f"(every {result['burst_every_s'] / 4:.1f} s during warm-up). "
        f"{result['totals']['requests']} requests, {100 * result['malformed_fraction']:.1f} % malformed.",
        "",
        "| kind | " + " | ".join(OUTCOMES) + " |",
        "|---|" + "---:|" * len(OUTCOMES),
    ]
    for kind, counts in result["counts"].items():
        lines.append(f"| {kind} | " + " | ".join(str(counts.get(o, 0)) for o in OUTCOMES) + " |")
    lines.append("| **all** | " + " | ".join(f"**{result['totals'].get(o, 0)}**" for o in OUTCOMES) + " |")
    lines += [
        "",
        f"RSS after warm-up: {rss['first_mean'] / 1024:.1f} MiB -> {rss['last_mean'] / 1024:.1f} MiB "
        f"(growth {rss['growth_pct']:+.2f} %, bound {rss['bound_pct']:g} %; slope "
        f"{rss['slope_per_hour'] / 1024:+.1f} MiB/h; peak {rss['max'] / 1024:.1f} MiB).",
        f"Open fds after warm-up: median {fds['first_median']:g} -> {fds['last_median']:g} "
        f"(slope {fds['slope_per_hour']:+.1f} fds/h, peak {fds['max']}); threads "
        f"{result['threads']['first_median']:g} -> {result['threads']['last_median']:g}.",
        f"Refusals: the clients saw {result['refused_client']}, the server counted "
        f"{result['refused_server']} ("
        + ", ".join(f"{cause} {n}" for cause, n in result["refusals_server"].items() if n) + ").",
        "",
        "Latency of answered requests, ms (a stream's or a sequence's: from its start to its final answer):",
        "",
        "| kind | phase | n | p50 | p90 | p99 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for kind, phases in result["latency_ms"].items():
        for phase, v in phases.items():
            lines.append(f"| {kind} | {phase} | {v['n']} | {v['p50']} | {v['p90']} | {v['p99']} |")
    lines += ["", "Checks:", ""]
    lines += [f"- {'ok' if c['ok'] else 'FAILED'}: {c['name']} ({c['detail']})" for c in result["checks"]]
    if result["failures"]:
        lines += ["", "First failures:", ""]
        lines += [f"- {f['kind']} at {f['start']:.1f} s: {f['outcome']}: {f.get('detail', '')}"
                  for f in result["failures"][:20]]
    Path(path).write_text("\n".join(lines) + "\n")


def machine_info():
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"cpu": cpu, "cores": os.cpu_count(), "load_at_start": load,
            "note": f"load average {load:.1f} at the start (shared machine)" if load is not None else ""}


# ------------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=2)
    ap.add_argument("--build", default=os.environ.get("U2_BUILD_DIR", "build"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "soak"),
                    help="results: OUT.json and OUT.md")
    ap.add_argument("--work", default=str(ROOT / "bench" / "work" / "soak"),
                    help="the server log, every record and the samples")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    python = os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT)) else "python"
    command = f"{python} bench/soak.py " + " ".join(sys.argv[1:])
    machine = machine_info()

    def say(message):
        print(message, file=sys.stderr, flush=True)

    say("references: u2recognize on tests/data/samples (3 offline modes and --chunk-size 16)")
    clips = Clips(a.build)
    server = Server(a.build, work / "u2serve.log")
    server.wait_ready()
    say(f"u2serve pid {server.proc.pid} ready: http {server.http_port}, grpc {server.grpc_port}; "
        f"{a.minutes:g} min of traffic")

    schedule = Schedule(60 * a.minutes)
    recorder = Recorder(schedule)
    samples = []
    crashed = {"at": None}
    last_progress = [-PROGRESS_EVERY]

    def on_sample():
        t = schedule.now()
        st = server.proc_status() if server.proc.poll() is None else None
        if st is None:
            if crashed["at"] is None:
                crashed["at"] = t
                say(f"u2serve is gone at {t:.0f} s (exit code {server.proc.poll()})")
            return False
        samples.append({"t": round(t, 2), "rss_kb": st[0], "fds": st[1], "threads": st[2]})
        if t - last_progress[0] >= PROGRESS_EVERY:
            last_progress[0] = t
            counts = recorder.counts()
            say(f"[{t:6.0f} s / {schedule.seconds:.0f}] {schedule.phase(t):6s} "
                + " ".join(f"{o} {counts[o]}" for o in OUTCOMES + ["pending"] if counts[o])
                + f" | RSS {st[0] / 1024:.1f} MiB, fds {st[1]}, threads {st[2]}")
        return True

    soak = Soak(server, clips, schedule, recorder, a.seed)
    stuck = soak.run(on_sample)
    traffic_s = schedule.now()

    # After the traffic: no stream may stay live (abandoned ones go at the 5 s idle timeout), and
    # the server must have counted the refusals the clients saw.
    drained, metrics = False, {}
    if server.proc.poll() is None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                metrics = server.metrics()
            except OSError as e:
                say(f"metrics port: {e!r}")
                break
            if (metric_sum(metrics, "u2_streams_live") == 0
                    and metric_sum(metrics, "u2_websocket_connections_open") == 0):
                drained = True
                break
            time.sleep(0.5)
        on_sample()
    exit_code = server.stop()
    records = recorder.finish()

    warmup = schedule.warmup
    counts = defaultdict(Counter)
    for r in records:
        counts[r["kind"]][r["outcome"]] += 1
    totals = Counter(r["outcome"] for r in records)
    malformed = sum(sum(counts[k].values()) for k in MALFORMED_KINDS)
    rss = growth(samples, warmup, "rss_kb") or {}
    fds = growth(samples, warmup, "fds") or {}
    threads = growth(samples, warmup, "threads") or {}
    rss_bound = 5.0 if a.minutes >= 10 else 15.0
    if rss:
        rss["growth_pct"] = 100 * (rss["last_mean"] - rss["first_mean"]) / rss["first_mean"]
        rss["bound_pct"] = rss_bound
    refusals = refusals_by_cause(metrics)
    refused_server = refusals.get("queue_full", 0) + refusals.get("too_many_streams", 0)

    checks = []

    def check(name, ok, detail):
        checks.append({"name": name, "ok": bool(ok), "detail": detail})

    check("no crash", crashed["at"] is None, "alive throughout" if crashed["at"] is None
          else f"gone at {crashed['at']:.0f} s")
    check("clean exit on SIGTERM", exit_code == 0, f"exit code {exit_code}")
    for outcome in [WRONG, UNEXPECTED, LOST, DUPLICATED]:
        check(f"no {outcome} answers", totals[outcome] == 0, f"{totals[outcome]}")
    never = [k for k in GOOD_KINDS if counts[k][OK] == 0]
    check("every kind of good request answered", not never, f"never answered: {never}" if never else "all")
    check("all client threads finished", not stuck, f"stuck: {stuck}" if stuck else "yes")
    check("no stream or WebSocket left open", drained,
          f"u2_streams_live {metric_sum(metrics, 'u2_streams_live'):g}, "
          f"u2_websocket_connections_open {metric_sum(metrics, 'u2_websocket_connections_open'):g}")
    check("every refusal counted by the server", refused_server == totals[REFUSED],
          f"clients {totals[REFUSED]}, server {refused_server}")
    check(f"RSS growth after warm-up < {rss_bound:g} %"
          + ("" if a.minutes >= 10 else " (runs under 10 minutes; 5 % from 10 minutes on)"),
          rss and rss["growth_pct"] < rss_bound,
          f"{rss['growth_pct']:+.2f} %, {rss['slope_per_hour'] / 1024:+.1f} MiB/h" if rss else "no samples")
    fd_growth = fds["last_median"] - fds["first_median"] if fds else None
    check(f"open fds flat (growth <= {FD_GROWTH_LIMIT})", fds and fd_growth <= FD_GROWTH_LIMIT,
          f"{fd_growth:+g}, {fds['slope_per_hour']:+.1f} fds/h" if fds else "no samples")
    verdict = "PASS" if all(c["ok"] for c in checks) else "FAIL"

    failures = [r for r in records if r["outcome"] in BAD_OUTCOMES]
    result = {
        "verdict": verdict, "command": command, "minutes": a.minutes, "seed": a.seed,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine,
        "server": {"args": [os.path.relpath(server.args[0], ROOT)] + server.args[1:], "exit_code": exit_code,
                   "crashed_at_s": crashed["at"]},
        "traffic_s": round(traffic_s, 1), "warmup_s": warmup, "phase_s": schedule.phase_len,
        "burst_every_s": schedule.burst_every,
        "counts": {k: dict(counts[k]) for k in GOOD_KINDS + MALFORMED_KINDS if counts[k]},
        "totals": {"requests": len(records), **{o: totals[o] for o in OUTCOMES}},
        "malformed_fraction": malformed / max(1, len(records)),
        "rss": rss, "fds": fds, "threads": threads,
        "refusals_server": refusals, "refused_server": refused_server, "refused_client": totals[REFUSED],
        "latency_ms": latency_table(records),
        "checks": checks, "failures": failures[:50], "samples": samples,
    }
    Path(a.out + ".json").write_text(json.dumps(result, indent=1) + "\n")
    write_markdown(a.out + ".md", result)
    with open(work / "records.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")

    for c in checks:
        say(f"  {'ok    ' if c['ok'] else 'FAILED'} {c['name']}: {c['detail']}")
    for f in failures[:10]:
        say(f"  {f['kind']} at {f['start']:.1f} s: {f['outcome']}: {f.get('detail', '')}")
    if failures or exit_code != 0:
        say(f"server log (last lines):\n{server.log_tail(3000)}")
    say(f"soak {verdict}: {len(records)} requests in {traffic_s:.0f} s "
        + ", ".join(f"{o} {totals[o]}" for o in OUTCOMES)
        + (f"; RSS {rss['growth_pct']:+.2f} %" if rss else "") + f" -> {a.out}.json, {a.out}.md")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
