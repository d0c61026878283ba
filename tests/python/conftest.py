"""Shared pytest fixtures: a running u2serve, test audio, and reference transcripts from u2recognize.

The server runs build/apps/u2serve (env U2_BUILD_DIR overrides the build dir) on free 127.0.0.1
ports. "Right transcript" means: identical to what u2recognize prints for the same audio and mode.
"""
import os
import re
import signal
import socket
import subprocess
import time
import wave
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = Path(os.environ.get("U2_BUILD_DIR", ROOT / "build"))
# "asan" or "tsan" when scripts/sanitize.sh runs the tests against sanitized binaries.
SANITIZER = os.environ.get("U2_SANITIZER", "")
# ASan keeps this much freed memory in quarantine (to catch use after free): RSS includes it.
ASAN_QUARANTINE_MB = 32
if not BUILD_DIR.is_absolute():
    BUILD_DIR = ROOT / BUILD_DIR
APPS = BUILD_DIR / "apps"
# A small random-weight U2++ model (bidirectional decoder): fast, and exercises every mode.
SERVER_MODEL = ROOT / "tests" / "fixtures" / "conformer_u2pp_causal_ln" / "model"
DEMO_MODEL = ROOT / "models" / "demo"
SPEECH_WAV = ROOT / "tests" / "data" / "audio" / "speech_like_16k.wav"
MODES = ["attention_rescoring", "ctc_greedy", "ctc_prefix_beam_search"]


def free_ports(n):
    """n distinct free loopback ports. The sockets stay bound until all n are chosen: closed one at a
    time, the kernel may hand the same port out twice, and a server given one port for two
    listeners fails to start."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port():
    return free_ports(1)[0]


def room_noise(n, seed=12345):
    """n samples of faint noise (about 3 int16 units peak, as float in [-1, 1)) for test pauses:
    real input (a microphone, a room) never holds exact digital zeros, and the demo model, trained
    on speech with short pauses, does not read long runs of exact zeros as silence."""
    rng = np.random.default_rng(seed)
    return (rng.uniform(-3.0, 3.0, n) / 32768.0).astype(np.float32)


def read_wav(path):
    """16-bit PCM WAV as float32 in [-1, 1) (the scaling soundfile and u2recognize use)."""
    with wave.open(str(path)) as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return data.astype(np.float32) / 32768.0, w.getframerate()


def write_wav(path, samples, rate=16000):
    pcm = np.clip(np.round(np.asarray(samples) * 32768.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


class ServerProcess:
    def __init__(self, args, log_path):
        self.http_port, self.grpc_port, self.metrics_port = free_ports(3)
        self.log_path = log_path
        cmd = [str(APPS / "u2serve"), "--bind", "127.0.0.1", "--http-port", str(self.http_port),
               "--grpc-port", str(self.grpc_port), "--metrics-port", str(self.metrics_port)] + list(args)
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self.grpc_url = f"127.0.0.1:{self.grpc_port}"
        self.http_url = f"127.0.0.1:{self.http_port}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"

    def wait_ready(self, timeout=60):
        import urllib.request
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"u2serve exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"u2serve not ready after {timeout} s:\n{self.log_text()}")

    def log_text(self):
        if not self.log.closed:
            self.log.flush()
        return Path(self.log_path).read_text(errors="replace")

    def rss_kb(self):
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    """u2serve on the shipped demo model, one per test module that asks for it (offline names,
    streaming_wenet, WebSocket and the web page)."""
    s = ServerProcess(["--model-dir", str(DEMO_MODEL), "--workers", "1", "--threads", "2"],
                      tmp_path_factory.mktemp("demo") / "u2serve.log")
    try:
        s.wait_ready()
        yield s
    finally:
        assert s.stop() == 0, s.log_text()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """One u2serve for the whole session (a 50 MB request limit, so the oversize tests are cheap)."""
    log = tmp_path_factory.mktemp("u2serve") / "u2serve.log"
    s = ServerProcess(["--model-dir", str(SERVER_MODEL), "--workers", "2", "--max-queue-delay-us", "5000",
                       "--max-request-bytes", "50000000"], log)
    try:
        s.wait_ready()
        yield s
    finally:
        code = s.stop()
        assert code == 0, f"u2serve exit code {code}\n{s.log_text()}"


@pytest.fixture(scope="session")
def audio_set(tmp_path_factory):
    """Test utterances as 16-bit WAV files (so u2recognize and the clients see identical samples):
    the speech-like clip, parts of it, and a longer concatenation. Returns {utt: (path, samples)}."""
    d = tmp_path_factory.mktemp("audio")
    speech, rate = read_wav(SPEECH_WAV)
    assert rate == 16000
    clips = {
        "speech": speech,
        "head": speech[: len(speech) * 3 // 5],
        "tail": speech[len(speech) // 3:],
        "double": np.concatenate([speech, speech[::-1]]),
        "quiet": speech * 0.25,
    }
    out = {}
    for name, samples in clips.items():
        path = d / f"{name}.wav"
        write_wav(path, samples)
        out[name] = (path, read_wav(path)[0])
    return out


def result_lines(text):
    """u2recognize's `utt text` lines (and Kaldi-style tables) -> {utt: text}."""
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(" ")
        if key:
            out[key] = rest
    return out


def run_u2recognize(paths, mode):
    cmd = [str(APPS / "u2recognize"), "--model-dir", str(SERVER_MODEL), "--mode", mode, "--quiet"] + [str(p) for p in paths]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return result_lines(r.stdout)


@pytest.fixture(scope="session")
def reference(audio_set):
    """{mode: {utt: transcript}} from u2recognize."""
    paths = [p for p, _ in audio_set.values()]
    return {mode: run_u2recognize(paths, mode) for mode in MODES}


@pytest.fixture(scope="session")
def gclient(server):
    import tritonclient.grpc as grpcclient
    return grpcclient.InferenceServerClient(server.grpc_url)


@pytest.fixture(scope="session")
def hclient(server):
    import tritonclient.http as httpclient
    return httpclient.InferenceServerClient(server.http_url, concurrency=4)


@pytest.fixture(scope="session")
def stub(server):
    import grpc
    from tritonclient.grpc import service_pb2_grpc
    opts = [("grpc.max_send_message_length", 2**31 - 1), ("grpc.max_receive_message_length", 2**31 - 1)]
    return service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.grpc_url, options=opts))


def parse_cues(text, vtt):
    """(start s, end s, text) of each SRT (vtt False) or WebVTT cue."""
    sep = r"\." if vtt else ","
    pattern = rf"(\d\d):(\d\d):(\d\d){sep}(\d\d\d) --> (\d\d):(\d\d):(\d\d){sep}(\d\d\d)\n(.*)\n"
    cues = []
    for m in re.finditer(pattern, text):
        g = [int(x) for x in m.groups()[:8]]
        cues.append((g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000, g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000,
                     m.group(9)))
    return cues


def sample_table():
    """{utt: path} of the shipped demo samples (tests/data/samples/wav.scp)."""
    samples = ROOT / "tests" / "data" / "samples"
    out = {}
    for line in (samples / "wav.scp").read_text().splitlines():
        if line.strip():
            utt, _, rel = line.strip().partition(" ")
            out[utt] = samples / rel
    return out
