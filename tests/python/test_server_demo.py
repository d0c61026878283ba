"""The shipped demo model served by u2serve: Triton's own clients (used the way WeNet's client.py
uses them), over gRPC and HTTP, and u2client all get the transcripts of the shipped samples that
u2recognize gives (which test_demo_model.py ties to the PyTorch reference)."""
import subprocess

import numpy as np
import pytest

from conftest import DEMO_MODEL, APPS, ROOT, read_wav

SAMPLES = ROOT / "tests" / "data" / "samples"


def table(path):
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            key, _, value = line.strip().partition(" ")
            out[key] = value.strip()
    return out


@pytest.fixture(scope="module")
def expected():
    r = subprocess.run([str(APPS / "u2recognize"), "--model-dir", str(DEMO_MODEL), "--wav-scp",
                        str(SAMPLES / "wav.scp"), "--quiet"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return dict(line.partition(" ")[::2] for line in r.stdout.splitlines())


def wenet_style_inputs(module, samples):
    """WAV FP32 [1, T] and WAV_LENS INT32 [[T]], as WeNet's client.py sends them."""
    wav = module.InferInput("WAV", [1, len(samples)], "FP32")
    wav.set_data_from_numpy(samples[np.newaxis, :].astype(np.float32))
    lens = module.InferInput("WAV_LENS", [1, 1], "INT32")
    lens.set_data_from_numpy(np.array([[len(samples)]], dtype=np.int32))
    return [wav, lens], [module.InferRequestedOutput("TRANSCRIPTS")]


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_tritonclient_gets_the_demo_transcripts(demo_server, expected, protocol):
    if protocol == "grpc":
        import tritonclient.grpc as module
        client = module.InferenceServerClient(demo_server.grpc_url)
    else:
        import tritonclient.http as module
        client = module.InferenceServerClient(demo_server.http_url)
    assert client.is_model_ready("attention_rescoring")
    for utt, rel in table(SAMPLES / "wav.scp").items():
        samples, rate = read_wav(SAMPLES / rel)
        assert rate == 16000
        inputs, outputs = wenet_style_inputs(module, samples)
        result = client.infer("attention_rescoring", inputs, outputs=outputs, request_id=utt)
        text = result.as_numpy("TRANSCRIPTS")[0]
        assert (text.decode("utf-8") if isinstance(text, bytes) else text) == expected[utt], utt


def test_u2client_gets_the_demo_transcripts(demo_server, expected):
    r = subprocess.run([str(APPS / "u2client"), "--url", demo_server.grpc_url, "--wav-scp",
                        str(SAMPLES / "wav.scp"), "--text", str(SAMPLES / "text")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert dict(line.partition(" ")[::2] for line in r.stdout.splitlines()) == expected
    assert "CER" in r.stderr
