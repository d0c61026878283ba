"""Shared pieces of the offline CPU benchmark: the model configurations, the synthetic test
audio, thread pinning for the Python peers, and the analytic FLOP count.

Nothing here imports torch at module level, so a peer process can fix its thread environment
(`pin_threads`) before torch, numpy's BLAS or ONNX Runtime are loaded.
"""

import json
import math
import os
import statistics
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)
WORK_DIR = os.path.join(BENCH_DIR, "work")
RESULTS_DIR = os.path.join(BENCH_DIR, "results")
SAMPLE_RATE = 16000
CLIP_SECONDS = (5, 10)

# Released WeNet recipes' model sizes, as WeNet train.yaml dicts (new layout). Random weights.
MODELS = {
    # WeNet 20210618_u2pp_conformer_exp (AISHELL-2, U2++): causal conv, dynamic chunk, bi-decoder.
    "aishell2_u2pp": {
        "input_dim": 80,
        "output_dim": 5000,
        "encoder": "conformer",
        "encoder_conf": {
            "output_size": 256, "attention_heads": 4, "linear_units": 2048, "num_blocks": 12,
            "dropout_rate": 0.1, "positional_dropout_rate": 0.1, "attention_dropout_rate": 0.0,
            "input_layer": "conv2d", "normalize_before": True, "cnn_module_kernel": 8,
            "use_cnn_module": True, "activation_type": "swish", "pos_enc_layer_type": "rel_pos",
            "selfattention_layer_type": "rel_selfattn", "causal": True, "use_dynamic_chunk": True,
            "use_dynamic_left_chunk": False, "cnn_module_norm": "layer_norm",
        },
        "decoder": "bitransformer",
        "decoder_conf": {
            "attention_heads": 4, "linear_units": 2048, "num_blocks": 3, "r_num_blocks": 3,
            "dropout_rate": 0.1, "positional_dropout_rate": 0.1,
            "self_attention_dropout_rate": 0.0, "src_attention_dropout_rate": 0.0,
        },
        "model_conf": {"ctc_weight": 0.3, "lsm_weight": 0.1, "length_normalized_loss": False,
                       "reverse_weight": 0.3},
        "cmvn": "global_cmvn",
        "cmvn_conf": {"cmvn_file": "global_cmvn", "is_json_cmvn": True},
        "dataset_conf": {"fbank_conf": {"num_mel_bins": 80, "frame_shift": 10, "frame_length": 25,
                                        "dither": 0.0},
                         "resample_conf": {"resample_rate": 16000}},
    },
    # WeNet 20211025_conformer_exp (WenetSpeech): non-causal K=15, left-to-right decoder only.
    "wenetspeech": {
        "input_dim": 80,
        "output_dim": 5538,
        "encoder": "conformer",
        "encoder_conf": {
            "output_size": 512, "attention_heads": 8, "linear_units": 2048, "num_blocks": 12,
            "dropout_rate": 0.1, "positional_dropout_rate": 0.1, "attention_dropout_rate": 0.0,
            "input_layer": "conv2d", "normalize_before": True, "cnn_module_kernel": 15,
            "use_cnn_module": True, "activation_type": "swish", "pos_enc_layer_type": "rel_pos",
            "selfattention_layer_type": "rel_selfattn", "causal": False, "use_dynamic_chunk": False,
            "cnn_module_norm": "layer_norm",
        },
        "decoder": "transformer",
        "decoder_conf": {
            "attention_heads": 8, "linear_units": 2048, "num_blocks": 6,
            "dropout_rate": 0.1, "positional_dropout_rate": 0.1,
            "self_attention_dropout_rate": 0.0, "src_attention_dropout_rate": 0.0,
        },
        "model_conf": {"ctc_weight": 0.3, "lsm_weight": 0.1, "length_normalized_loss": False,
                       "reverse_weight": 0.0},
        "cmvn": "global_cmvn",
        "cmvn_conf": {"cmvn_file": "global_cmvn", "is_json_cmvn": True},
        "dataset_conf": {"fbank_conf": {"num_mel_bins": 80, "frame_shift": 10, "frame_length": 25,
                                        "dither": 0.0},
                         "resample_conf": {"resample_rate": 16000}},
    },
    # WeNet examples/aishell/s0/conf/train_ebranchformer.yaml: E-Branchformer, 17 blocks, cgMLP
    # 1024 with K=31, merge conv K=31, macaron FFNs of 1024, 8 heads; AISHELL-1's 4233 characters.
    "aishell_ebranchformer": {
        "input_dim": 80,
        "output_dim": 4233,
        "encoder": "e_branchformer",
        "encoder_conf": {
            "output_size": 256, "attention_heads": 8, "linear_units": 1024, "num_blocks": 17,
            "cgmlp_linear_units": 1024, "cgmlp_conv_kernel": 31, "use_linear_after_conv": False,
            "gate_activation": "identity", "merge_conv_kernel": 31, "dropout_rate": 0.1,
            "positional_dropout_rate": 0.1, "attention_dropout_rate": 0.1, "input_layer": "conv2d",
            "activation_type": "swish", "causal": False, "pos_enc_layer_type": "rel_pos",
            "selfattention_layer_type": "rel_selfattn",
        },
        "decoder": "transformer",
        "decoder_conf": {
            "attention_heads": 4, "linear_units": 2048, "num_blocks": 6,
            "dropout_rate": 0.1, "positional_dropout_rate": 0.1,
            "self_attention_dropout_rate": 0.1, "src_attention_dropout_rate": 0.1,
        },
        "tokenizer_conf": {"special_tokens": {"<blank>": 0, "<unk>": 1, "<sos>": 2, "<eos>": 2}},
        "model_conf": {"ctc_weight": 0.3, "lsm_weight": 0.1, "length_normalized_loss": False,
                       "reverse_weight": 0.0},
        "cmvn": "global_cmvn",
        "cmvn_conf": {"cmvn_file": "global_cmvn", "is_json_cmvn": True},
        "dataset_conf": {"fbank_conf": {"num_mel_bins": 80, "frame_shift": 10, "frame_length": 25,
                                        "dither": 0.0},
                         "resample_conf": {"resample_rate": 16000}},
    },
    # WeNet examples/librispeech/s0/conf/train_u2++_conformer.yaml: U2++ Conformer (causal K=15,
    # dynamic chunk, bi-decoder) over LibriSpeech's 5000 sentencepiece units (BPE_MODELS).
    "librispeech_bpe_u2pp": {
        "input_dim": 80,
        "output_dim": 5002,
        "encoder": "conformer",
        "encoder_conf": {
            "output_size": 256, "attention_heads": 4, "linear_units": 2048, "num_blocks": 12,
            "dropout_rate": 0.1, "positional_dropout_rate": 0.1, "attention_dropout_rate": 0.1,
            "input_layer": "conv2d", "normalize_before": True, "cnn_module_kernel": 15,
            "use_cnn_module": True, "activation_type": "swish", "pos_enc_layer_type": "rel_pos",
            "selfattention_layer_type": "rel_selfattn", "causal": True, "use_dynamic_chunk": True,
            "use_dynamic_left_chunk": False, "cnn_module_norm": "layer_norm",
        },
        "decoder": "bitransformer",
        "decoder_conf": {
            "attention_heads": 4, "linear_units": 2048, "num_blocks": 3, "r_num_blocks": 3,
            "dropout_rate": 0.1, "positional_dropout_rate": 0.1,
            "self_attention_dropout_rate": 0.1, "src_attention_dropout_rate": 0.1,
        },
        "tokenizer_conf": {"special_tokens": {"<blank>": 0, "<unk>": 1, "<sos>": 2, "<eos>": 2}},
        "model_conf": {"ctc_weight": 0.3, "lsm_weight": 0.1, "length_normalized_loss": False,
                       "reverse_weight": 0.3},
        "cmvn": "global_cmvn",
        "cmvn_conf": {"cmvn_file": "global_cmvn", "is_json_cmvn": True},
        "dataset_conf": {"fbank_conf": {"num_mel_bins": 80, "frame_shift": 10, "frame_length": 25,
                                        "dither": 0.0},
                         "resample_conf": {"resample_rate": 16000}},
    },
}

# Models whose units are sentencepiece pieces ("▁THE", "S", ...) instead of CJK characters.
BPE_MODELS = ("librispeech_bpe_u2pp",)
# The default set: the two Conformer sizes of the first benchmark. The others run with --models.
DEFAULT_MODELS = ("aishell2_u2pp", "wenetspeech")

# Decoding used by every peer: WeNet attention rescoring over a beam-10 CTC prefix beam search,
# with the model's own ctc_weight / reverse_weight (train.yaml model_conf), full context.
BEAM = 10


def decoding_weights(name):
    mc = MODELS[name]["model_conf"]
    rw = mc["reverse_weight"] if MODELS[name]["decoder"] == "bitransformer" else 0.0
    return mc["ctc_weight"], rw


def model_dir(name):
    return os.path.join(WORK_DIR, name)


def pin_threads(n):
    """Fixes every thread pool a Python peer might use to `n` threads. Call before importing
    torch / numpy / onnxruntime."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


def synth_speech_like(seconds, seed=0, sample_rate=SAMPLE_RATE):
    """Speech-like noise: syllable-rate (~4 Hz) bursts of vowel-ish harmonic sound (a pitch
    contour through two formant resonances) and fricative noise, separated by short pauses, at
    a speech-like level. Deterministic for a seed. Returns float32 numpy in [-1, 1)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    out = np.zeros(n, dtype=np.float64)
    pos = int(0.2 * sample_rate)
    while pos < n:
        dur = int(rng.uniform(0.12, 0.30) * sample_rate)
        gap = int(rng.uniform(0.03, 0.12) * sample_rate)
        if rng.random() < 0.1:
            gap += int(rng.uniform(0.2, 0.5) * sample_rate)  # a phrase pause
        end = min(n, pos + dur)
        seg = np.arange(end - pos)
        if rng.random() < 0.75:  # voiced: harmonics of a gliding f0, shaped by two formants
            f0 = rng.uniform(100, 240) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(1, 3) * seg / sample_rate))
            phase = 2 * np.pi * np.cumsum(f0) / sample_rate
            f1, f2 = rng.uniform(300, 900), rng.uniform(900, 2500)
            sig = np.zeros(len(seg))
            for h in range(1, 30):
                fh = h * f0
                amp = 1.0 / (1 + ((fh - f1) / 120) ** 2) + 0.5 / (1 + ((fh - f2) / 200) ** 2)
                sig += amp * np.sin(h * phase) * (fh < sample_rate / 2)
        else:  # unvoiced: high-passed noise
            noise = rng.standard_normal(len(seg))
            sig = np.diff(noise, prepend=0.0)
        env = np.clip(np.sin(np.pi * seg / max(1, len(seg) - 1)), 0.0, 1.0) ** 0.6
        sig = sig * env
        sig = sig / (np.max(np.abs(sig)) + 1e-9) * rng.uniform(0.15, 0.5)
        out[pos:end] += sig
        pos = end + gap
    out += 1e-3 * rng.standard_normal(n)  # room noise floor
    return np.clip(out, -1.0, 0.999).astype(np.float32)


def clip(seconds):
    return synth_speech_like(seconds, seed=1000 + int(seconds))


# ------------------------------------------------------------------------------------------------
# FLOP accounting. One multiply-add = 2 FLOPs. Counts the matrix products (linear layers,
# convolutions, attention score / context products); LayerNorm, softmax, activations and other
# elementwise work are O(T*D) and left out (a few % of the total).


def encoder_frames(num_samples, sample_rate=SAMPLE_RATE):
    """(fbank frames, encoder frames) for conv2d subsampling with 25 ms / 10 ms frames."""
    win, hop = int(0.025 * sample_rate), int(0.010 * sample_rate)
    t = 0 if num_samples < win else 1 + (num_samples - win) // hop
    t1 = (t - 1) // 2
    return t, max(0, (t1 - 1) // 2)


def encoder_macs(name, num_samples):
    """Multiply-adds of CMVN->subsampling->encoder layers->CTC for one utterance, by op class."""
    cfg = MODELS[name]
    ec = cfg["encoder_conf"]
    D, Fe, N, I, V = (ec["output_size"], ec["linear_units"], ec["num_blocks"], cfg["input_dim"],
                      cfg["output_dim"])
    T, Tp = encoder_frames(num_samples)
    T1, F1 = (T - 1) // 2, (I - 1) // 2
    F2 = (F1 - 1) // 2
    m = {}
    # conv2d subsampling: Conv2d(1->D, 3x3, s2) -> Conv2d(D->D, 3x3, s2) -> Linear(D*F2 -> D)
    m["subsampling_conv"] = D * 9 * T1 * F1 + D * D * 9 * Tp * F2
    m["subsampling_linear"] = D * F2 * D * Tp
    # per layer, per frame: two FFNs (macaron + final) 2 x 2*D*Fe; q,k,v,out,pos projections 5 D^2
    m["ffn"] = N * Tp * 4 * D * Fe
    m["attention_proj"] = N * Tp * 5 * D * D
    if cfg["encoder"] == "e_branchformer":
        # cgMLP: channel_proj1 D*U, channel_proj2 U/2*D, depthwise U/2*K; merge: depthwise fusion
        # conv 2D*Km, merge_proj 2D*D
        U, K, Km = ec["cgmlp_linear_units"], ec["cgmlp_conv_kernel"], ec["merge_conv_kernel"]
        m["cgmlp_proj"] = N * Tp * (D * U + U // 2 * D)
        m["merge_proj"] = N * Tp * 2 * D * D
        m["conv_depthwise"] = N * Tp * (U // 2 * K + 2 * D * Km)
    else:
        # conv module: pointwise_conv1 2 D^2, pointwise_conv2 D^2, depthwise D*K
        m["conv_pointwise"] = N * Tp * 3 * D * D
        m["conv_depthwise"] = N * Tp * D * ec["cnn_module_kernel"]
    # rel-pos attention: q.k^T (matrix_ac), q.p^T (matrix_bd), attn.v: 3 * T'^2 * D per layer
    m["attention_scores"] = N * 3 * Tp * Tp * D
    m["ctc"] = Tp * D * V
    return m


def decoder_macs(name, num_encoder_frames, hyp_lengths):
    """Multiply-adds of attention rescoring: every hypothesis (length n, decoder input n+1 tokens)
    through the left decoder, and the right decoder when reverse_weight > 0. The memory's K/V
    projections are counted once per utterance (what an ideal engine needs)."""
    cfg = MODELS[name]
    D = cfg["encoder_conf"]["output_size"]
    dc = cfg["decoder_conf"]
    Fd, V, Tp = dc["linear_units"], cfg["output_dim"], num_encoder_frames
    _, rw = decoding_weights(name)
    layers = dc["num_blocks"] + (dc.get("r_num_blocks", 0) if rw > 0 else 0)
    decoders = 2 if rw > 0 else 1
    m = {"proj": 0, "ffn": 0, "attention_scores": 0, "output_layer": 0, "memory_kv": 0}
    for n in hyp_lengths:
        L = n + 1
        m["proj"] += layers * L * 6 * D * D          # self q,k,v,out + cross q,out
        m["ffn"] += layers * L * 2 * D * Fd
        m["attention_scores"] += layers * (2 * L * L * D + 2 * L * Tp * D)
        m["output_layer"] += decoders * L * D * V
    m["memory_kv"] = layers * 2 * D * D * Tp
    return m


def gflop(macs):
    return 2.0 * sum(macs.values()) / 1e9


# ------------------------------------------------------------------------------------------------
# Timing helpers


def time_runs(fn, warmup, runs):
    """Calls fn() warmup times, then `runs` timed times. Returns (median_s, [all times])."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def torch_matmul_gflops(torch, n=1024, runs=10):
    """GFLOP/s of a float32 torch matmul: shows which BLAS torch calls and with how many threads
    (Debian's torch calls the system libblas, here OpenBLAS pthread via alternatives)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2.0 * n ** 3 / statistics.median(times) / 1e9


def serve(handlers):
    """The peers' request loop (protocol: bench/u2bench.cc `serve`): one JSON object per stdin
    line, one JSON line back on stdout; {"cmd": "quit"} or EOF ends it."""
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            if req.get("cmd") == "quit":
                break
            handler = handlers.get(req.get("cmd"))
            resp = handler(req) if handler else {"error": "unknown command %r" % req.get("cmd")}
        except Exception as e:  # report, keep serving
            resp = {"error": "%s: %s" % (type(e).__name__, e)}
        sys.stdout.write(json.dumps(resp) + "\n")
        sys.stdout.flush()


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def dump_json(obj, path=None):
    text = json.dumps(obj, indent=1, sort_keys=False)
    if path:
        with open(path, "w") as f:
            f.write(text + "\n")
    else:
        print(text, flush=True)
