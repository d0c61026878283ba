"""TLS and API keys, with real clients: tritonclient gRPC with ssl=True (and client certificates for
mutual TLS), HTTPS (KServe REST and the OpenAI client), WSS, and API keys on every protocol. The
certificates are made by openssl at test time (a throwaway CA, a server certificate for
localhost/127.0.0.1, a client certificate)."""
import http.client
import json
import shutil
import socket
import ssl
import subprocess
import time

import numpy as np
import pytest

from conftest import APPS, DEMO_MODEL, ROOT, ServerProcess, read_wav

SAMPLE = ROOT / "tests" / "data" / "samples"
GOOD_KEY, OTHER_KEY = "k-good-0123456789", "k-rotated-9876543210"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d, server_cn="localhost"):
    """ca.pem, server.pem/server.key (SAN localhost, 127.0.0.1), client.pem/client.key, all EC P-256."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    if not (d / "ca.pem").exists():
        openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=u2serve test CA",
                cwd=d)
    for name, cn, ext in (("server", server_cn, "subjectAltName=DNS:localhost,IP:127.0.0.1"),
                          ("client", "test client", "extendedKeyUsage=clientAuth")):
        (d / f"{name}.ext").write_text(ext + "\n")
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
    return d


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def samples():
    key, _, rel = (SAMPLE / "wav.scp").read_text().splitlines()[0].partition(" ")
    return read_wav(SAMPLE / rel.strip())[0], SAMPLE / rel.strip()


@pytest.fixture(scope="module")
def expected(samples):
    r = subprocess.run([str(APPS / "u2recognize"), "--model-dir", str(DEMO_MODEL), "--quiet",
                        str(samples[1])], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.partition(" ")[2].strip()


@pytest.fixture(scope="module")
def secure_server(pki, tmp_path_factory):
    """TLS on gRPC and HTTP, API keys required."""
    d = tmp_path_factory.mktemp("secure")
    keys = d / "keys.txt"
    keys.write_text(f"# test keys\n{GOOD_KEY}\n\n")
    s = ServerProcess(["--model-dir", str(DEMO_MODEL), "--workers", "1", "--threads", "1",
                       "--grpc-use-ssl", "true", "--grpc-server-cert", str(pki / "server.pem"),
                       "--grpc-server-key", str(pki / "server.key"),
                       "--http-ssl-cert", str(pki / "server.pem"), "--http-ssl-key", str(pki / "server.key"),
                       "--api-keys-file", str(keys)], d / "u2serve.log")
    s.keys_file = keys
    try:
        wait_https_ready(s, pki)
        yield s
    finally:
        assert s.stop() == 0, s.log_text()


def https(server, pki):
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    host, port = server.http_url.split(":")
    return http.client.HTTPSConnection("localhost", int(port), context=ctx, timeout=60)


def wait_https_ready(server, pki, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(server.log_text())
        try:
            c = https(server, pki)
            c.request("GET", "/v2/health/ready")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("not ready: " + server.log_text())


def infer_body(samples):
    return json.dumps({"inputs": [
        {"name": "WAV", "shape": [1, len(samples)], "datatype": "FP32", "data": samples.tolist()},
        {"name": "WAV_LENS", "shape": [1, 1], "datatype": "INT32", "data": [len(samples)]}]}).encode()


def grpc_client(server, pki, cert=False):
    import tritonclient.grpc as grpcclient
    opts = dict(ssl=True, root_certificates=str(pki / "ca.pem"))
    if cert:
        opts.update(private_key=str(pki / "client.key"), certificate_chain=str(pki / "client.pem"))
    return grpcclient.InferenceServerClient(f"localhost:{server.grpc_port}", **opts)


def grpc_infer(client, samples, key):
    import tritonclient.grpc as grpcclient
    wav = grpcclient.InferInput("WAV", [1, len(samples)], "FP32")
    wav.set_data_from_numpy(samples[np.newaxis, :])
    lens = grpcclient.InferInput("WAV_LENS", [1, 1], "INT32")
    lens.set_data_from_numpy(np.array([[len(samples)]], dtype=np.int32))
    headers = {"authorization": f"Bearer {key}"} if key else None
    r = client.infer("attention_rescoring", [wav, lens], headers=headers)
    return r.as_numpy("TRANSCRIPTS")[0].decode()


def test_grpc_tls_with_a_key(secure_server, pki, samples, expected):
    from tritonclient.utils import InferenceServerException
    client = grpc_client(secure_server, pki)
    assert grpc_infer(client, samples[0], GOOD_KEY) == expected
    for key in ("wrong-key", None):
        with pytest.raises(InferenceServerException) as e:
            grpc_infer(client, samples[0], key)
        assert "UNAUTHENTICATED" in str(e.value.status()), e.value
    # Health stays open without a key; metadata does not.
    assert client.is_server_live() and client.is_server_ready()
    with pytest.raises(InferenceServerException) as e:
        client.get_server_metadata()
    assert "UNAUTHENTICATED" in str(e.value.status())
    assert client.get_server_metadata(headers={"authorization": f"Bearer {GOOD_KEY}"}).name == "u2serve"


def test_https_kserve_and_openai_with_keys(secure_server, pki, samples, expected):
    body = infer_body(samples[0])
    for key, status in ((GOOD_KEY, 200), ("wrong", 401), (None, 401)):
        c = https(secure_server, pki)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        c.request("POST", "/v2/models/attention_rescoring/infer", body=body, headers=headers)
        r = c.getresponse()
        data = json.loads(r.read())
        assert r.status == status, data
        if status == 200:
            assert data["outputs"][0]["data"] == [expected]
        else:
            assert r.getheader("WWW-Authenticate") == "Bearer" and "key" in data["error"].lower()
    c = https(secure_server, pki)
    c.request("GET", "/v2/health/live")
    assert c.getresponse().status == 200  # open without a key

    import openai
    from openai import OpenAI
    http_client = openai.DefaultHttpxClient(verify=str(pki / "ca.pem"))
    base = f"https://localhost:{secure_server.http_port}/v1"
    good = OpenAI(base_url=base, api_key=GOOD_KEY, http_client=http_client, max_retries=0)
    with open(samples[1], "rb") as f:
        assert good.audio.transcriptions.create(model="attention_rescoring", file=f).text == expected
    bad = OpenAI(base_url=base, api_key="wrong", http_client=http_client, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e, open(samples[1], "rb") as f:
        bad.audio.transcriptions.create(model="attention_rescoring", file=f)
    assert e.value.body["code"] == "invalid_api_key"


def test_wss_needs_a_key_in_the_header_or_the_query(secure_server, pki, samples, expected):
    import websocket
    sslopt = {"ca_certs": str(pki / "ca.pem")}
    url = f"wss://localhost:{secure_server.http_port}/ws"
    pcm = (np.clip(samples[0], -1, 1) * 32767).astype("<i2").tobytes()

    def transcribe(ws):
        ws.send(json.dumps({"signal": "start"}))
        assert json.loads(ws.recv())["type"] == "server_ready"
        ws.send_binary(pcm)
        ws.send(json.dumps({"signal": "end"}))
        final = None
        while True:
            m = json.loads(ws.recv())
            if m.get("type") == "final_result":
                final = json.loads(m["nbest"])[0]["sentence"]
            if m.get("type") == "speech_end":
                return final

    ws = websocket.create_connection(url, sslopt=sslopt, header=[f"Authorization: Bearer {GOOD_KEY}"], timeout=60)
    assert transcribe(ws)
    ws.close()
    ws = websocket.create_connection(url + f"?api_key={GOOD_KEY}", sslopt=sslopt, timeout=60)
    assert transcribe(ws)
    ws.close()
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        websocket.create_connection(url + "?api_key=wrong", sslopt=sslopt, timeout=60)
    assert e.value.status_code == 401


def test_plaintext_to_tls_ports_fails_cleanly(secure_server, pki, samples, expected):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException
    with pytest.raises(InferenceServerException):
        grpcclient.InferenceServerClient(f"127.0.0.1:{secure_server.grpc_port}").is_server_live(client_timeout=5)
    c = http.client.HTTPConnection("127.0.0.1", secure_server.http_port, timeout=10)
    with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
        c.request("GET", "/v2/health/live")
        c.getresponse()
    # Garbage that is not TLS either.
    with socket.create_connection(("127.0.0.1", secure_server.http_port), timeout=10) as s:
        s.sendall(b"\x00" * 64 + b"GET / HTTP/1.1\r\n\r\n")
        s.settimeout(10)
        try:
            s.recv(100)
        except (ConnectionError, socket.timeout):
            pass
    assert grpc_infer(grpc_client(secure_server, pki), samples[0], GOOD_KEY) == expected


def test_keys_file_and_certificate_are_reloaded(secure_server, pki, samples, expected, tmp_path):
    client = grpc_client(secure_server, pki)
    secure_server.keys_file.write_text(f"{OTHER_KEY}\n")
    deadline = time.time() + 10
    from tritonclient.utils import InferenceServerException
    while True:
        try:
            assert grpc_infer(client, samples[0], OTHER_KEY) == expected
            break
        except InferenceServerException:
            assert time.time() < deadline, "the rotated key was not accepted"
            time.sleep(0.3)
    with pytest.raises(InferenceServerException):
        grpc_infer(client, samples[0], GOOD_KEY)
    # A renewed HTTPS certificate (new serial) is served to new connections without a restart.
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))

    def served_serial():
        with socket.create_connection(("127.0.0.1", secure_server.http_port), timeout=10) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.getpeercert()["serialNumber"]

    before = served_serial()
    shutil.copy(pki / "ca.key", tmp_path / "ca.key")
    shutil.copy(pki / "ca.pem", tmp_path / "ca.pem")
    make_pki(tmp_path)  # a new server key and certificate from the same CA
    shutil.copy(tmp_path / "server.pem", pki / "server.pem")
    shutil.copy(tmp_path / "server.key", pki / "server.key")
    deadline = time.time() + 10
    while served_serial() == before:
        assert time.time() < deadline, "the renewed certificate was not served"
        time.sleep(0.3)
    secure_server.keys_file.write_text(f"{GOOD_KEY}\n")


def test_mutual_tls_needs_a_client_certificate(pki, samples, expected, tmp_path):
    s = ServerProcess(["--model-dir", str(DEMO_MODEL), "--workers", "1", "--threads", "1",
                       "--grpc-use-ssl-mutual", "true", "--grpc-server-cert", str(pki / "server.pem"),
                       "--grpc-server-key", str(pki / "server.key"), "--grpc-root-cert", str(pki / "ca.pem")],
                      tmp_path / "mtls.log")
    try:
        s.wait_ready()
        from tritonclient.utils import InferenceServerException
        assert grpc_infer(grpc_client(s, pki, cert=True), samples[0], None) == expected
        with pytest.raises(InferenceServerException):
            grpc_client(s, pki, cert=False).is_server_live(client_timeout=5)
    finally:
        assert s.stop() == 0, s.log_text()


def test_tls_and_key_misconfigurations_fail_at_startup(pki, tmp_path):
    cases = [
        (["--grpc-use-ssl", "true"], "--grpc-server-cert"),
        (["--grpc-use-ssl-mutual", "true", "--grpc-server-cert", str(pki / "server.pem"),
          "--grpc-server-key", str(pki / "server.key")], "--grpc-root-cert"),
        (["--http-ssl-cert", str(pki / "server.pem")], "--http-ssl-key"),
        (["--http-ssl-cert", str(pki / "server.pem"), "--http-ssl-key", str(pki / "client.key")], "TLS key"),
        (["--api-keys-file", str(tmp_path / "missing.txt")], "cannot read"),
    ]
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    cases.append((["--api-keys-file", str(empty)], "no key"))
    for args, fragment in cases:
        r = subprocess.run([str(APPS / "u2serve"), "--model-dir", str(DEMO_MODEL),
                            "--bind", "127.0.0.1", "--http-port", "0", "--grpc-port", "0", "--metrics-port", "-1",
                            *args], capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and fragment in r.stdout + r.stderr, (args, r.stdout + r.stderr)
