"""u2serve on every encoder family (issue 30): a server on a Branchformer, E-Branchformer,
Squeezeformer, Efficient Conformer and BPE Conformer fixture model answers offline and streaming
requests exactly as u2recognize decodes the same files (the engine is shared; this proves the
server's paths carry each family, including the stacks that subsample time inside the encoder and
stream in whole chunk units)."""
import json
import subprocess
import wave

import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import APPS, ROOT, ServerProcess, result_lines

FIXTURES = ROOT / "tests" / "fixtures"
VARIANTS = ["branchformer_concat_causal_u2pp", "e_branchformer_causal_u2pp", "squeezeformer_stream_u2pp",
            "efficient_conformer_v2_stream", "conformer_bpe_u2pp"]


@pytest.fixture(scope="module", params=VARIANTS)
def zoo(request, tmp_path_factory):
    """(model dir, wav paths, streaming chunk, server) for one fixture variant."""
    variant = request.param
    model = FIXTURES / variant / "model"
    tmp = tmp_path_factory.mktemp(variant)
    tensors = load_file(str(FIXTURES / variant / "ref.safetensors"))
    wavs = []
    for u in range(3):
        path = tmp / ("%s_u%d.wav" % (variant, u))
        pcm = np.clip(np.round(tensors["u%d.wav" % u] * 32768.0), -32768, 32767).astype("<i2")
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes(pcm.tobytes())
        wavs.append(path)
    doc = json.loads((model / "model.json").read_text())
    chunk = int(doc.get("decoding", {}).get("decoding_chunk_size", 16))
    chunk = chunk if chunk > 0 else 16
    s = ServerProcess(["--model-dir", str(model), "--workers", "1", "--threads", "2"], tmp / "u2serve.log")
    try:
        s.wait_ready()
        yield model, wavs, chunk, s
    finally:
        assert s.stop() == 0, s.log_text()


def u2recognize(model, wavs, *args):
    r = subprocess.run([str(APPS / "u2recognize"), "--model-dir", str(model), "--quiet", *args,
                        *[str(p) for p in wavs]], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return result_lines(r.stdout)


def u2client(url, wavs, *args):
    r = subprocess.run([str(APPS / "u2client"), "--url", url, *args, *[str(p) for p in wavs]],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return result_lines(r.stdout)


def test_offline_answers_equal_u2recognize(zoo):
    model, wavs, _, server = zoo
    want = u2recognize(model, wavs, "--mode", "attention_rescoring")
    assert len(want) == 3 and any(want.values()), want  # the random models do say something
    assert u2client(server.grpc_url, wavs) == want


def test_streaming_answers_equal_u2recognize(zoo):
    model, wavs, chunk, server = zoo
    want = u2recognize(model, wavs, "--streaming", "--chunk-size", str(chunk), "--left-chunks", "-1")
    assert len(want) == 3 and any(want.values()), want
    assert u2client(server.grpc_url, wavs, "--streaming", "--partials", "none") == want
