"""u2serve --precision int8 (issue 28): the server runs the demo model on the CPU's int8 kernel and
answers offline and streaming requests exactly as u2recognize --precision int8 decodes the same
files (the engine is shared; this proves the flag reaches both paths)."""
import subprocess

import pytest

from conftest import APPS, DEMO_MODEL, ROOT, ServerProcess, result_lines


def samples():
    return sorted((ROOT / "tests" / "data" / "samples").glob("*.wav"))


def u2recognize(*args):
    r = subprocess.run([str(APPS / "u2recognize"), "--model-dir", str(DEMO_MODEL), "--precision", "int8",
                        "--quiet", *args, *[str(p) for p in samples()]], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return result_lines(r.stdout)


def u2client(url, *args):
    r = subprocess.run([str(APPS / "u2client"), "--url", url, *args, *[str(p) for p in samples()]],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return result_lines(r.stdout)


@pytest.fixture(scope="module")
def int8_server(tmp_path_factory):
    s = ServerProcess(["--model-dir", str(DEMO_MODEL), "--workers", "1", "--threads", "2", "--precision", "int8"],
                      tmp_path_factory.mktemp("int8") / "u2serve.log")
    try:
        s.wait_ready()
        yield s
    finally:
        assert s.stop() == 0, s.log_text()


def test_server_runs_the_int8_kernel(int8_server):
    assert "backend cpu(int8 " in int8_server.log_text()


def test_offline_answers_equal_u2recognize_int8(int8_server):
    want = u2recognize("--mode", "attention_rescoring")
    assert len(want) == len(samples()) >= 3
    assert u2client(int8_server.grpc_url) == want


def test_streaming_answers_equal_u2recognize_int8(int8_server):
    want = u2recognize("--streaming", "--chunk-size", "16", "--left-chunks", "-1")
    got = u2client(int8_server.grpc_url, "--streaming", "--partials", "none")
    assert got == want


def test_int8_on_cuda_is_refused(tmp_path):
    s = ServerProcess(["--model-dir", str(DEMO_MODEL), "--device", "cuda", "--precision", "int8"],
                      tmp_path / "u2serve.log")
    assert s.proc.wait(timeout=60) != 0
    s.log.close()
    assert "int8" in s.log_text() and "CPU" in s.log_text()
