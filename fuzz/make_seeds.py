#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (fuzz/corpus/<target>/): a few small valid and near-valid
inputs each, so a run starts from the formats' real structure instead of random bytes.

    python3 fuzz/make_seeds.py        # (re)writes fuzz/corpus/; needs protoc, sox for FLAC/OGG

The same files every time, but for the Ogg stream's random serial number (FLAC and OGG come from
sox, skipped if it is missing).
Crash reproducers added by hand (fuzz/corpus/<target>/crash-*) are left alone.
"""

import gzip
import io
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import wave
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
written = []


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
    written.append((target, name, len(data)))


def tone(n, rate, freq=440.0, amp=0.3):
    return [amp * math.sin(2 * math.pi * freq * i / rate) for i in range(n)]


def wav_pcm(samples, rate, width=2, channels=1):
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        frames = bytearray()
        for s in samples:
            for _ in range(channels):
                if width == 1:
                    frames += struct.pack("<B", int(128 + s * 127))
                elif width == 2:
                    frames += struct.pack("<h", int(s * 32767))
                elif width == 3:
                    frames += struct.pack("<i", int(s * 8388607))[:3]
                else:
                    frames += struct.pack("<i", int(s * 2147483647))
        w.writeframes(bytes(frames))
    return buf.getvalue()


def wav_float(samples, rate):
    data = struct.pack("<%df" % len(samples), *samples)
    fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)  # WAVE_FORMAT_IEEE_FLOAT
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def sox_encode(wav_bytes, suffix):
    if not shutil.which("sox"):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.wav"), os.path.join(tmp, "out" + suffix)
        with open(src, "wb") as f:
            f.write(wav_bytes)
        subprocess.run(["sox", src, dst], check=True)
        with open(dst, "rb") as f:
            return f.read()


def audio_seeds():
    t = "audio_decode_fuzzer"
    wav16 = wav_pcm(tone(400, 16000), 16000)
    put(t, "pcm16_16k_mono.wav", wav16)
    put(t, "pcm16_8k_stereo.wav", wav_pcm(tone(200, 8000), 8000, channels=2))
    put(t, "pcm24_44k.wav", wav_pcm(tone(300, 44100), 44100, width=3))
    put(t, "pcm32_48k.wav", wav_pcm(tone(300, 48000), 48000, width=4))
    put(t, "u8_22k.wav", wav_pcm(tone(200, 22050), 22050, width=1))
    put(t, "float32_16k.wav", wav_float(tone(200, 16000), 16000))
    # Near-valid: a data chunk that claims more bytes than follow, and a cut-off header.
    put(t, "truncated_data.wav", wav16[:300])
    put(t, "cut_header.wav", wav16[:30])
    nan = wav_float([0.0, float("nan"), 0.1], 16000)
    put(t, "nan_sample.wav", nan)
    flac = sox_encode(wav_pcm(tone(1600, 16000), 16000), ".flac")
    if flac:
        put(t, "tone_16k.flac", flac)
    ogg = sox_encode(wav_pcm(tone(1600, 16000), 16000), ".ogg")
    if ogg:
        put(t, "tone_16k.ogg", ogg)


def resample_seeds():
    t = "resample_fuzzer"

    def seed(src, dst, piece, samples):
        return struct.pack("<IIB", src, dst, piece) + struct.pack("<%df" % len(samples), *samples)

    lo, hi = 1000, 384000
    fold = lambda rate: rate - lo  # noqa: E731  (the target folds v % range + 1000)
    put(t, "8k_to_16k", seed(fold(8000), fold(16000), 3, tone(160, 8000)))
    put(t, "44k_to_16k", seed(fold(44100), fold(16000), 17, tone(441, 44100)))
    put(t, "min_to_max", seed(0, fold(hi), 1, tone(10, lo)))
    put(t, "equal_rates", seed(fold(16000), fold(16000), 5, tone(64, 16000)))
    put(t, "bad_rate", seed(0x80000000 | (1 << 30) + 999, fold(16000), 2, tone(8, 16000)))
    put(t, "inf_sample", seed(fold(8000), fold(16000), 9, [0.0, float("inf"), 0.5]))
    put(t, "empty", seed(fold(48000), fold(16000), 0, []))


def wav_tensors(rows):
    """The WAV (FP32 [B, T]) and WAV_LENS (INT32 [B, 1]) of a batch, as raw bytes and lists."""
    width = max(len(r) for r in rows)
    flat = [v for r in rows for v in r + [0.0] * (width - len(r))]
    return width, flat, struct.pack("<%df" % len(flat), *flat), struct.pack("<%di" % len(rows), *map(len, rows))


def kserve_body(rows, binary, parameters=None, outputs=None):
    width, flat, wav_raw, lens_raw = wav_tensors(rows)
    wav = {"name": "WAV", "datatype": "FP32", "shape": [len(rows), width]}
    lens = {"name": "WAV_LENS", "datatype": "INT32", "shape": [len(rows), 1]}
    if binary:
        wav["parameters"] = {"binary_data_size": len(wav_raw)}
        lens["parameters"] = {"binary_data_size": len(lens_raw)}
    else:
        wav["data"] = [round(v, 4) for v in flat]
        lens["data"] = [len(r) for r in rows]
    req = {"id": "fuzz-1", "inputs": [wav, lens]}
    if parameters:
        req["parameters"] = parameters
    if outputs:
        req["outputs"] = outputs
    header = json.dumps(req).encode()
    return header, (header + wav_raw + lens_raw if binary else header)


def kserve_seeds():
    t = "kserve_http_fuzzer"
    rows = [tone(32, 16000), tone(20, 16000, 300)]
    whole = lambda body: struct.pack("<H", 0xFFFF) + body  # noqa: E731
    _, body = kserve_body(rows, False)
    put(t, "json_data", whole(body))
    _, body = kserve_body(rows[:1], False, {"beam": 4, "nbest": 2, "decoding_mode": "ctc_prefix_beam_search",
                                            "hotwords": "hello world:3\nwenet", "timeout": 1000000},
                          [{"name": "TRANSCRIPTS", "parameters": {"binary_data": False}}, {"name": "SEGMENTS"}])
    put(t, "json_parameters_outputs", whole(body))
    header, body = kserve_body(rows, True, {"binary_data_output": True, "sequence_id": 7, "sequence_start": True})
    put(t, "binary_tail", struct.pack("<H", len(header)) + body)
    header, body = kserve_body(rows, True)
    put(t, "binary_tail_short", struct.pack("<H", len(header)) + body[:-3])
    put(t, "typed_json", whole(json.dumps({"inputs": [
        {"name": n, "datatype": d, "shape": [2], "data": v} for n, d, v in [
            ("a", "INT8", [1, -1]), ("b", "UINT16", [1, 2]), ("c", "INT64", [[1], [2]]), ("d", "FP64", [0.5, 1e300]),
            ("e", "BOOL", [True, False]), ("f", "BYTES", ["x", "yz"]), ("g", "UINT64", [1, 2])]]}).encode()))
    put(t, "not_object", whole(b"[1, 2, 3]"))


def inflate_seeds():
    t = "inflate_fuzzer"
    _, body = kserve_body([tone(64, 16000)], False)
    put(t, "gzip_kserve", b"\x00" + gzip.compress(body, mtime=0))
    put(t, "zlib_kserve", b"\x0b" + zlib.compress(body))
    put(t, "gzip_limit_100", b"\x03" + gzip.compress(b"a" * 1000, mtime=0))
    put(t, "gzip_truncated", b"\x00" + gzip.compress(body, mtime=0)[:40])
    put(t, "accept_encoding", b"\x00gzip;q=0.5, deflate, br;q=0")
    put(t, "accept_deflate_q0", b"\x00deflate;q=0.0, gzip;q=0")


def multipart_seeds():
    t = "multipart_fuzzer"
    b = "fuzzBoundary7MA4YWxk"
    wav = wav_pcm(tone(160, 16000), 16000)

    def field(name, value):
        return ('--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (b, name, value)).encode()

    file_part = ('--%s\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
                 "Content-Type: audio/wav\r\n\r\n" % b).encode() + wav + b"\r\n"
    body = field("model", "demo") + field("response_format", "verbose_json") + \
        field("timestamp_granularities[]", "word") + file_part + ("--%s--\r\n" % b).encode()
    put(t, "transcription", ("multipart/form-data; boundary=%s\n" % b).encode() + body)
    put(t, "quoted_boundary", ('multipart/form-data; charset=utf-8; boundary="%s"\n' % b).encode() + body)
    put(t, "truncated", ("multipart/form-data; boundary=%s\n" % b).encode() + body[:-30])
    put(t, "no_name", ("multipart/form-data; boundary=B\n--B\r\nContent-Disposition: form-data\r\n\r\nx\r\n--B--\r\n"))
    put(t, "wrong_type", "text/plain; boundary=B\n--B\r\nContent-Disposition: form-data; name=a\r\n\r\n\r\n--B--")


def websocket_seeds():
    t = "websocket_message_fuzzer"
    msgs = {
        "start_wenet": {"signal": "start", "nbest": 1, "continuous_decoding": False},
        "start_continuous": {"signal": "start", "nbest": 3, "continuous_decoding": True, "confidence": True,
                             "model": "demo", "chunk_size": 8, "left_chunks": 4},
        "start_hotwords_array": {"signal": "start", "hotwords": ["hello world:2.5", "wenet"], "beam": 4},
        "start_hotwords_text": {"signal": "start", "hotwords": "u2serve\n# comment\nspeech:1", "lm_weight": 0.5},
        "start_vad": {"signal": "start", "vad_gate": True, "vad_threshold": 0.6, "vad_min_silence_ms": 300,
                      "endpointing": True, "rescoring": 0, "decoding_mode": "attention_rescoring"},
        "start_bad_types": {"signal": "start", "nbest": "two", "confidence": 1},
        "end": {"signal": "end"},
    }
    for name, m in msgs.items():
        put(t, name, json.dumps(m))


PROTO_REQUESTS = {
    "raw_wav": """
model_name: "demo" id: "fuzz-1"
parameters { key: "beam" value { int64_param: 4 } }
parameters { key: "decoding_mode" value { string_param: "ctc_prefix_beam_search" } }
inputs { name: "WAV" datatype: "FP32" shape: 1 shape: 4 }
inputs { name: "WAV_LENS" datatype: "INT32" shape: 1 shape: 1 }
outputs { name: "TRANSCRIPTS" }
raw_input_contents: "\\000\\000\\000\\000\\315\\314\\314=\\315\\314L\\276\\000\\000\\200?"
raw_input_contents: "\\003\\000\\000\\000"
""",
    "typed_contents": """
model_name: "demo"
parameters { key: "sequence_id" value { uint64_param: 9 } }
parameters { key: "sequence_start" value { bool_param: true } }
parameters { key: "ctc_weight" value { double_param: 0.25 } }
inputs { name: "WAV" datatype: "FP32" shape: 1 shape: 3 contents { fp32_contents: 0.1 fp32_contents: -0.2 fp32_contents: 0 } }
inputs { name: "WAV_LENS" datatype: "INT32" shape: 1 shape: 1 contents { int_contents: 3 } }
""",
    "typed_narrow": """
model_name: "demo"
inputs { name: "a" datatype: "INT8" shape: 2 contents { int_contents: 300 int_contents: -7 } }
inputs { name: "b" datatype: "UINT16" shape: 1 contents { uint_contents: 70000 } }
inputs { name: "c" datatype: "BYTES" shape: 1 contents { bytes_contents: "xyz" } }
inputs { name: "d" datatype: "BOOL" shape: 1 contents { bool_contents: true } }
""",
    "raw_count_mismatch": """
model_name: "demo"
inputs { name: "WAV" datatype: "FP32" shape: 1 shape: 1 }
inputs { name: "WAV_LENS" datatype: "INT32" shape: 1 shape: 1 }
raw_input_contents: "\\000\\000\\000\\000"
""",
}


def grpc_seeds():
    t = "grpc_infer_request_fuzzer"
    protoc = shutil.which("protoc")
    if not protoc:
        print("protoc not found: no grpc_infer_request_fuzzer seeds", file=sys.stderr)
        return
    for name, text in PROTO_REQUESTS.items():
        out = subprocess.run([protoc, "-I", os.path.join(ROOT, "proto"), "--encode=inference.ModelInferRequest",
                              os.path.join(ROOT, "proto", "grpc_service.proto")],
                             input=text.encode(), capture_output=True, check=True)
        put(t, name, out.stdout)


def model_config_seeds():
    t = "model_config_fuzzer"
    with open(os.path.join(ROOT, "models", "demo", "model.json"), "rb") as f:
        demo = f.read()
    put(t, "demo.json", demo)
    for fixture in ["transformer_abspos_old", "conformer_conv2d8_nopos", "conformer_relpos_bn_noncausal_bi"]:
        with open(os.path.join(ROOT, "tests", "fixtures", fixture, "model", "model.json"), "rb") as f:
            put(t, fixture + ".json", f.read())
    j = json.loads(demo)
    j["encoder"]["input_layer"] = "linear"
    put(t, "bad_input_layer.json", json.dumps(j))
    j = json.loads(demo)
    j["encoder"]["attention_heads"] = 0
    put(t, "zero_heads.json", json.dumps(j))
    put(t, "minimal.json", json.dumps({"format": "u2serve-model", "format_version": 1, "vocab_size": 5}))


def yaml_seeds():
    t = "yaml_config_fuzzer"
    put(t, "server.yaml", """model_dir: [demo=models/demo]
http_port: 8000
grpc_port: 8001
metrics_port: 8002
bind: 0.0.0.0
threads: 1
workers: 2
max_batch_size: 64
max_queue_delay_us: 2000
preferred_batch_size: [16, 32]
max_queue_size: 1024
length_aware_batching: true
max_request_bytes: 268435456
drain_timeout_s: 30
max_streams: 1024
stream_idle_timeout_ms: 5000
stream_chunk_size: 16
stream_left_chunks: -1
stream_vad_gate: false
websocket_idle_timeout_s: 120
""")
    put(t, "dashes_and_optional.yaml", "http-port: -1\nbeam: 4\nctc-weight: 0.3\ndevice: cpu\nprecision: fp32\n")
    put(t, "bad_value.yaml", "http_port: [1, 2]\n")
    put(t, "unknown_key.yaml", "no_such_option: 1\n")
    put(t, "not_a_map.yaml", "- a\n- b\n")
    put(t, "anchors.yaml", "base: &b 16\nstream_chunk_size: *b\n")


ARPA = """\\data\\
ngram 1=6
ngram 2=5
ngram 3=2

\\1-grams:
-99\t<s>\t-0.5
-1.2\t</s>
-1.0\t<unk>
-0.8\thello\t-0.3
-0.9\tworld\t-0.2
-1.1\twenet\t-0.1

\\2-grams:
-0.4\t<s> hello\t-0.1
-0.3\thello world\t-0.05
-0.5\tworld </s>
-0.6\thello wenet
-0.7\twenet </s>

\\3-grams:
-0.2\t<s> hello world
-0.1\thello world </s>

\\end\\
"""


def arpa_seeds():
    t = "arpa_fuzzer"
    put(t, "trigram.arpa", ARPA)
    put(t, "unigram_no_unk.arpa", "\\data\\\nngram 1=3\n\n\\1-grams:\n-1\t<s>\n-1\t</s>\n-0.5\ta\n\n\\end\\\n")
    put(t, "count_mismatch.arpa", ARPA.replace("ngram 2=5", "ngram 2=6"))
    put(t, "crlf.arpa", ARPA.replace("\n", "\r\n"))
    with open(os.path.join(ROOT, "models", "demo", "lm.arpa"), encoding="utf-8") as f:
        head = [next(f) for _ in range(40)]
    put(t, "demo_head.arpa", "".join(head))  # the real file's start: counts that disagree


def hotwords_seeds():
    t = "hotwords_fuzzer"
    put(t, "lines", "u2serve\nkubernetes cluster:4.5\n# a comment\n\nnew york:2\n")
    put(t, "json_array", '["new york:2", "wenet", "speech recognition:-1.5"]')
    put(t, "bad_boost", "hello:abc\nworld:99\n")
    put(t, "unknown_char", "héllo\n")
    put(t, "crlf", "one\r\ntwo:1\r\n")


def main():
    audio_seeds()
    resample_seeds()
    kserve_seeds()
    inflate_seeds()
    multipart_seeds()
    websocket_seeds()
    grpc_seeds()
    model_config_seeds()
    yaml_seeds()
    arpa_seeds()
    hotwords_seeds()
    total = sum(n for _, _, n in written)
    print("wrote %d seeds in %s (%d bytes)" % (len(written), os.path.relpath(CORPUS, ROOT), total))


if __name__ == "__main__":
    main()
