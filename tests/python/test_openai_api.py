"""OpenAI's transcription API on u2serve's HTTP port, driven by the real `openai` client (PyPI) with
base_url = http://127.0.0.1:PORT/v1: every response format gives u2recognize's transcript of the
shipped samples and of real recordings, SSE streaming works, and malformed uploads get OpenAI-style
4xx errors while the server keeps serving."""
import http.client
import json
import subprocess

import pytest

from conftest import APPS, DEMO_MODEL, ROOT, parse_cues

SAMPLES = ROOT / "tests" / "data" / "samples"
REAL = ROOT / "data" / "real_speech" / "asterisk_en" / "test"


def clips():
    """(key, path) of the demo samples and, when set-up built it, three real recordings."""
    out = []
    for line in (SAMPLES / "wav.scp").read_text().splitlines():
        key, _, rel = line.partition(" ")
        out.append((key, SAMPLES / rel.strip()))
    if (REAL / "wav.scp").exists():
        for line in (REAL / "wav.scp").read_text().splitlines()[:3]:
            key, _, rel = line.partition(" ")
            out.append((key, (REAL / rel.strip()).resolve()))
    return out


@pytest.fixture(scope="module")
def expected():
    """u2recognize's transcripts (attention rescoring, the demo model's defaults) of clips()."""
    paths = [str(p) for _, p in clips()]
    r = subprocess.run([str(APPS / "u2recognize"), "--model-dir", str(DEMO_MODEL), "--quiet"] + paths,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    by_stem = dict(line.partition(" ")[::2] for line in r.stdout.splitlines())
    return {key: by_stem[p.stem] for key, p in clips()}


@pytest.fixture(scope="module")
def client(demo_server):
    from openai import OpenAI
    return OpenAI(base_url=f"http://{demo_server.http_url}/v1", api_key="unused", max_retries=0)


def test_every_response_format_gives_u2recognizes_transcript(client, expected):
    for key, path in clips():
        want = expected[key]
        # Cues and segments are made of words, single-spaced; the transcript keeps WeNet's
        # detokenization, where two word markers in a row give two spaces (decode/symbol_table.h).
        words = " ".join(want.split())
        with open(path, "rb") as f:
            r = client.audio.transcriptions.create(model="attention_rescoring", file=f)
        assert r.text == want, key
        with open(path, "rb") as f:
            assert client.audio.transcriptions.create(model="whisper-1", file=f, response_format="text") == want + "\n"
        for fmt in ("srt", "vtt"):
            with open(path, "rb") as f:
                body = client.audio.transcriptions.create(model="attention_rescoring", file=f, response_format=fmt)
            if fmt == "vtt":
                assert body.startswith("WEBVTT\n\n")
            cues = parse_cues(body, fmt == "vtt")
            assert " ".join(c[2] for c in cues) == words, (key, fmt, body)
            assert all(0 <= s < e for s, e, _ in cues) and all(a[1] <= b[0] for a, b in zip(cues, cues[1:]))
        with open(path, "rb") as f:
            v = client.audio.transcriptions.create(model="attention_rescoring", file=f, response_format="verbose_json",
                                                   timestamp_granularities=["word", "segment"])
        assert v.text == want and v.duration > 0 and v.language
        assert " ".join(s.text for s in v.segments) == words
        assert [w.word for w in v.words] == want.split()
        assert all(0 <= w.start <= w.end <= v.duration + 0.05 for w in v.words)


def test_words_only_and_segments_by_default(client, expected):
    key, path = clips()[0]
    with open(path, "rb") as f:
        v = client.audio.transcriptions.create(model="attention_rescoring", file=f, response_format="verbose_json",
                                               timestamp_granularities=["word"])
    assert v.words and not v.segments
    with open(path, "rb") as f:
        v = client.audio.transcriptions.create(model="attention_rescoring", file=f, response_format="verbose_json")
    assert v.segments and not v.words


def test_sse_stream_ends_with_the_whole_transcript(client, expected):
    key, path = clips()[-1]
    with open(path, "rb") as f:
        events = list(client.audio.transcriptions.create(model="attention_rescoring", file=f, stream=True))
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    done = [e for e in events if e.type == "transcript.text.done"]
    assert len(done) == 1 and events[-1].type == "transcript.text.done"
    assert done[0].text == expected[key] == "".join(deltas)


def test_model_names_aliases_and_listing(client, expected):
    names = {m.id for m in client.models.list()}
    assert {"attention_rescoring", "ctc_greedy", "ctc_prefix_beam_search"} <= names
    assert "streaming_wenet" not in names  # not a transcription model
    key, path = clips()[0]
    for model in ("demo", "default", "whisper-1"):  # the model dir's name and the aliases
        with open(path, "rb") as f:
            assert client.audio.transcriptions.create(model=model, file=f).text == expected[key]


def test_translation_and_unknown_model_are_refused(client):
    import openai
    _, path = clips()[0]
    with pytest.raises(openai.BadRequestError) as e, open(path, "rb") as f:
        client.audio.translations.create(model="whisper-1", file=f)
    assert "translat" in e.value.body["message"]
    with pytest.raises(openai.NotFoundError) as e, open(path, "rb") as f:
        client.audio.transcriptions.create(model="no-such-model", file=f)
    assert e.value.body["code"] == "model_not_found"


def post(server, body, content_type, extra_headers=None):
    conn = http.client.HTTPConnection(server.http_url.split(":")[0], int(server.http_url.split(":")[1]), timeout=60)
    headers = {"Content-Type": content_type}
    headers.update(extra_headers or {})
    conn.request("POST", "/v1/audio/transcriptions", body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, data


def form(fields, boundary="XyZ"):
    """A multipart/form-data body from [(name, filename or None, bytes)]."""
    out = b""
    for name, filename, data in fields:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def test_malformed_uploads_get_openai_errors_and_the_server_goes_on(demo_server, client, expected):
    key, path = clips()[0]
    audio = path.read_bytes()
    good = [("model", None, b"attention_rescoring"), ("file", "a.wav", audio)]
    mp = "multipart/form-data; boundary=XyZ"
    cases = [
        ("no boundary", form(good), "multipart/form-data", 400, "boundary"),
        ("not multipart", b'{"file": 1}', "application/json", 400, "multipart/form-data"),
        ("truncated part", form(good)[:len(form(good)) // 2], mp, 400, "truncated"),
        ("no closing delimiter", form(good)[:-9], mp, 400, "multipart"),
        ("no file", form(good[:1]), mp, 400, "'file'"),
        ("no model", form(good[1:]), mp, 400, "'model'"),
        ("not audio", form([good[0], ("file", "a.txt", b"hello, this is not audio at all" * 10)]), mp, 400,
         "decode"),
        ("empty file", form([good[0], ("file", "a.wav", b"")]), mp, 400, "empty"),
        ("unknown format", form(good + [("response_format", None, b"docx")]), mp, 400, "response_format"),
        ("bad granularity", form(good + [("timestamp_granularities[]", None, b"char")]), mp, 400, "granularities"),
        ("bad temperature", form(good + [("temperature", None, b"hot")]), mp, 400, "temperature"),
        ("unknown model", form([("model", None, b"nope"), good[1]]), mp, 404, "nope"),
    ]
    for desc, body, ctype, status, fragment in cases:
        code, data = post(demo_server, body, ctype)
        assert code == status, (desc, data)
        err = json.loads(data)["error"]
        assert fragment.lower() in err["message"].lower(), (desc, err)
        assert set(err) == {"message", "type", "param", "code"}, (desc, err)
    # A declared 2 GB body is refused before it is read (413), without hurting the server.
    conn = http.client.HTTPConnection(*demo_server.http_url.split(":"), timeout=30)
    conn.putrequest("POST", "/v1/audio/transcriptions")
    conn.putheader("Content-Type", mp)
    conn.putheader("Content-Length", str(2 * 1024**3))
    conn.endheaders()
    conn.send(b"--XyZ\r\n")
    assert conn.getresponse().status == 413
    conn.close()
    with open(path, "rb") as f:
        assert client.audio.transcriptions.create(model="attention_rescoring", file=f).text == expected[key]
