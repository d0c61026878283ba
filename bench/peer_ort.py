#!/usr/bin/env python3
"""The ONNX Runtime peer: the same checkpoint exported to ONNX, run by PyPI onnxruntime.

    peer_ort.py --model M --export      writes bench/work/<M>/onnx/{encoder,decoder}.onnx
    peer_ort.py --model M               serves the request protocol of bench/u2bench.cc
    peer_ort.py --model M --precision int8 [--export]
                                        the same with {encoder,decoder}.int8.onnx (peer
                                        onnxruntime-int8); --export writes them from the float
                                        files (exporting those first when missing)

Export (torch.onnx.export, opset 13, as WeNet's export_onnx_gpu.py does for offline models):
  * encoder.onnx: (feats (1,T,80), feats_lens (1,)) -> (encoder_out (1,T',D), ctc_log_probs
    (1,T',V)); dynamic T. Like WeNet's export, use_dynamic_chunk is switched off so the graph is
    the full-context encoder (for a single utterance that is what decoding_chunk_size=-1 computes).
  * decoder.onnx: (memory (N,T',D), memory_mask (N,1,T'), ys_in (N,L), ys_in_lens (N,),
    r_ys_in (N,L)) -> log-softmax of the left (and right) decoder, (N,L,V); dynamic N, T', L.
    The encoder output is repeated per hypothesis, as WeNet's rescoring and its ONNX decoder do.
The export checks ORT against PyTorch at a clip length other than the traced one.

int8 (onnxruntime.quantization.quantize_dynamic of the float files: weight_type QInt8,
per_channel, op_types_to_quantize ["MatMul"]): every MatMul with a constant weight, i.e. the
linear layers (encoder, CTC head, decoders, also the subsampling's output linear), becomes a
MatMulInteger over int8 weights per output channel and activations quantized per call; the
convolutions (subsampling, the conv module's pointwise and depthwise ones), the embedding lookup
and everything else stay float32. MatMul only is ONNX Runtime's fastest choice here: adding "Conv"
(ConvInteger) made the AISHELL-2-size encoder on 1000 frames take 0.230 s instead of 0.081 s
(float32: 0.120 s) on the 2-core development machine (AVX-512 VNNI), 2026-12-02.

Pipeline of `full`: kaldi-native-fbank (C++) -> encoder.onnx -> CTC prefix beam search (beam 10,
u2ref.search, WeNet's Python algorithm; there is no ONNX form of it) -> decoder.onnx -> the
rescoring formula (numpy). Sessions: intra_op_num_threads = --threads, inter_op 1, sequential,
ORT_ENABLE_ALL graph optimizations.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common as bc  # noqa: E402


def onnx_dir(name):
    return os.path.join(bc.model_dir(name), "onnx")


def onnx_path(name, part, precision="fp32"):
    """bench/work/<name>/onnx/<part>.onnx, or <part>.int8.onnx for precision int8."""
    return os.path.join(onnx_dir(name), part + (".int8" if precision == "int8" else "") + ".onnx")


def load_torch_model(name):
    import torch
    import yaml

    sys.path.insert(0, os.path.join(bc.ROOT, "tools"))
    from u2ref.model import U2Model

    wdir = os.path.join(bc.model_dir(name), "wenet")
    with open(os.path.join(wdir, "train.yaml")) as f:
        cfg = yaml.safe_load(f)
    return U2Model.from_checkpoint(cfg, torch.load(os.path.join(wdir, "final.pt"), map_location="cpu"))


def export(name, threads):
    import numpy as np
    import torch

    from make_models import clip_path, fbank, read_wav

    model = load_torch_model(name)
    model.encoder.use_dynamic_chunk = False  # full context, as export_onnx_gpu.py
    odir = onnx_dir(name)
    os.makedirs(odir, exist_ok=True)

    class EncoderCtc(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, feats, feats_lens):
            enc, _ = self.m.encode(feats, feats_lens)
            return enc, self.m.ctc_logprobs(enc)

    class Decoder(torch.nn.Module):
        def __init__(self, m, with_right):
            super().__init__()
            self.m = m
            self.with_right = with_right

        def forward(self, memory, memory_mask, ys_in, ys_in_lens, r_ys_in):
            rw = 1.0 if self.with_right else 0.0
            l_x, r_x, _ = self.m.decoder(memory, memory_mask, ys_in, ys_in_lens, r_ys_in, rw)
            l_logp = torch.log_softmax(l_x, dim=-1)
            if self.with_right:
                return l_logp, torch.log_softmax(r_x, dim=-1)
            return l_logp

    samples, _ = read_wav(clip_path(max(bc.CLIP_SECONDS)))
    feats = fbank(samples).unsqueeze(0)
    lens = torch.tensor([feats.size(1)], dtype=torch.long)
    enc_path = os.path.join(odir, "encoder.onnx")
    with torch.no_grad():
        torch.onnx.export(EncoderCtc(model).eval(), (feats, lens), enc_path, opset_version=13,
                          input_names=["feats", "feats_lens"],
                          output_names=["encoder_out", "ctc_log_probs"],
                          dynamic_axes={"feats": {1: "T"}, "encoder_out": {1: "T_enc"},
                                        "ctc_log_probs": {1: "T_enc"}})
        _, rw = bc.decoding_weights(name)
        with_right = rw > 0
        enc, _ = model.encode(feats, lens)
        N, L = bc.BEAM, 12
        mem = enc.repeat(N, 1, 1)
        mem_mask = torch.ones(N, 1, mem.size(1), dtype=torch.bool)
        ys = torch.randint(0, model.vocab_size, (N, L))
        ys_lens = torch.full((N,), L, dtype=torch.long)
        outs = ["l_logp", "r_logp"] if with_right else ["l_logp"]
        dyn = {"memory": {0: "N", 1: "T_enc"}, "memory_mask": {0: "N", 2: "T_enc"},
               "ys_in": {0: "N", 1: "L"}, "ys_in_lens": {0: "N"}, "r_ys_in": {0: "N", 1: "L"}}
        for o in outs:
            dyn[o] = {0: "N", 1: "L"}
        torch.onnx.export(Decoder(model, with_right).eval(), (mem, mem_mask, ys, ys_lens, ys),
                          os.path.join(odir, "decoder.onnx"), opset_version=13,
                          input_names=["memory", "memory_mask", "ys_in", "ys_in_lens", "r_ys_in"],
                          output_names=outs, dynamic_axes=dyn)

    # Check: ORT vs PyTorch at another length than the traced one (the axes really are dynamic).
    model.encoder.use_dynamic_chunk = bc.MODELS[name]["encoder_conf"].get("use_dynamic_chunk", False)
    sess = make_session(enc_path, threads)
    s2, _ = read_wav(clip_path(min(bc.CLIP_SECONDS)))
    f2 = fbank(s2).unsqueeze(0)
    l2 = torch.tensor([f2.size(1)])
    with torch.no_grad():
        ref_enc, _ = model.encode(f2, l2)
        ref = model.ctc_logprobs(ref_enc).numpy()
    got = sess.run(None, {"feats": f2.numpy(), "feats_lens": l2.numpy()})[1]
    err = float(np.abs(got - ref).max())
    bc.log("[onnxruntime %s] exported to %s; ORT vs PyTorch CTC log-probs (%d frames): max abs "
           "diff %.2e" % (name, odir, ref.shape[1], err))
    if got.shape != ref.shape or not err < 1e-2:
        raise SystemExit("ONNX export check failed: shape %s vs %s, max diff %g"
                         % (got.shape, ref.shape, err))


def quantize(name, threads):
    """Writes {encoder,decoder}.int8.onnx from the float files (see the top), then compares the
    int8 encoder's CTC log-probs with the float one's (informational: int8 is not exact)."""
    import numpy as np
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from make_models import clip_path, fbank, read_wav

    for part in ("encoder", "decoder"):
        quantize_dynamic(onnx_path(name, part), onnx_path(name, part, "int8"),
                         op_types_to_quantize=["MatMul"], per_channel=True,
                         weight_type=QuantType.QInt8)
    samples, _ = read_wav(clip_path(min(bc.CLIP_SECONDS)))
    feats = fbank(samples).unsqueeze(0).numpy()
    feeds = {"feats": feats, "feats_lens": np.array([feats.shape[1]], dtype=np.int64)}
    ref = make_session(onnx_path(name, "encoder"), threads).run(None, feeds)[1]
    got = make_session(onnx_path(name, "encoder", "int8"), threads).run(None, feeds)[1]
    bc.log("[onnxruntime-int8 %s] wrote %s, %s (%.1f, %.1f MB); int8 vs float CTC log-probs (%d "
           "frames): max abs diff %.3f, same argmax on %.1f%% of frames"
           % (name, onnx_path(name, "encoder", "int8"), onnx_path(name, "decoder", "int8"),
              os.path.getsize(onnx_path(name, "encoder", "int8")) / 1e6,
              os.path.getsize(onnx_path(name, "decoder", "int8")) / 1e6, ref.shape[1],
              float(np.abs(got - ref).max()),
              100.0 * float((got.argmax(-1) == ref.argmax(-1)).mean())))


def make_session(path, threads):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def serve(name, threads, seconds, precision="fp32"):
    import kaldi_native_fbank as knf
    import numpy as np
    import onnxruntime as ort
    import torch

    torch.set_num_threads(1)  # torch only holds the search's input here
    sys.path.insert(0, os.path.join(bc.ROOT, "tools"))
    from make_models import clip_path, read_wav
    from u2ref.search import ctc_prefix_beam_search

    cfg = bc.MODELS[name]
    V = cfg["output_dim"]
    sos = eos = V - 1
    ctc_weight, rw = bc.decoding_weights(name)
    enc_sess = make_session(onnx_path(name, "encoder", precision), threads)
    dec_sess = make_session(onnx_path(name, "decoder", precision), threads)
    peer = "onnxruntime-int8" if precision == "int8" else "onnxruntime"

    def kaldi_fbank(samples):
        opts = knf.FbankOptions()
        opts.frame_opts.dither = 0.0
        opts.frame_opts.samp_freq = bc.SAMPLE_RATE
        opts.mel_opts.num_bins = cfg["input_dim"]
        fb = knf.OnlineFbank(opts)
        fb.accept_waveform(bc.SAMPLE_RATE, samples * 32768.0)
        fb.input_finished()
        return np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)])[None].astype(np.float32)

    clips = {}
    for s in seconds:
        samples, _ = read_wav(clip_path(s))
        clips[str(s)] = (samples, kaldi_fbank(samples))

    def info(_):
        return {"peer": peer, "precision": precision, "threads": threads, "ort_version": ort.__version__,
                "providers": enc_sess.get_providers(), "ctc_weight": ctc_weight,
                "reverse_weight": rw}

    def run_encoder(feats):
        lens = np.array([feats.shape[1]], dtype=np.int64)
        return enc_sess.run(None, {"feats": feats, "feats_lens": lens})

    def encoder(req):
        feats = clips[req["clip"]][1]
        t0 = time.perf_counter()
        run_encoder(feats)
        return {"time_s": time.perf_counter() - t0}

    def full(req):
        samples = clips[req["clip"]][0]
        t0 = time.perf_counter()
        feats = kaldi_fbank(samples)
        t1 = time.perf_counter()
        enc, logp = run_encoder(feats)
        t2 = time.perf_counter()
        nbest = ctc_prefix_beam_search(torch.from_numpy(logp), torch.tensor([logp.shape[1]]),
                                       bc.BEAM)[0]
        t3 = time.perf_counter()
        hyps = [list(h) for h, _ in nbest]
        n, L = len(hyps), max(len(h) for h in hyps) + 1
        ys = np.full((n, L), eos, dtype=np.int64)
        rys = np.full((n, L), eos, dtype=np.int64)
        ys[:, 0] = rys[:, 0] = sos
        for i, h in enumerate(hyps):
            ys[i, 1:len(h) + 1] = h
            rys[i, 1:len(h) + 1] = h[::-1]
        feeds = {"memory": np.repeat(enc, n, axis=0),
                 "memory_mask": np.ones((n, 1, enc.shape[1]), dtype=bool),
                 "ys_in": ys, "ys_in_lens": np.array([len(h) + 1 for h in hyps], dtype=np.int64)}
        if rw > 0:
            feeds["r_ys_in"] = rys
        outs = dec_sess.run(None, feeds)
        best, best_score = 0, -float("inf")
        for i, h in enumerate(hyps):
            tgt = np.array(h + [eos], dtype=np.int64)
            pos = np.arange(len(tgt))
            score = float(outs[0][i, pos, tgt].sum())
            if rw > 0:
                rtgt = np.array(h[::-1] + [eos], dtype=np.int64)
                score = score * (1 - rw) + float(outs[1][i, pos, rtgt].sum()) * rw
            score += nbest[i][1] * ctc_weight
            if score > best_score:
                best, best_score = i, score
        t4 = time.perf_counter()
        return {"time_s": t4 - t0,
                "stages_s": {"fbank": t1 - t0, "encoder": t2 - t1, "search": t3 - t2,
                             "rescoring": t4 - t3},
                "best": hyps[best], "nbest_lengths": [len(h) for h in hyps],
                "encoder_frames": int(logp.shape[1])}

    bc.log("[%s %s] ready: onnxruntime %s, %d intra-op threads"
           % (peer, name, ort.__version__, threads))
    bc.serve({"info": info, "encoder": encoder, "full": full})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", required=True, choices=list(bc.MODELS))
    ap.add_argument("--seconds", type=int, nargs="+", default=list(bc.CLIP_SECONDS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--export", action="store_true", help="export the ONNX models and exit")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "int8"],
                    help="int8: the dynamically quantized models (see above)")
    args = ap.parse_args()
    bc.pin_threads(args.threads)
    if args.export:
        import torch

        torch.set_num_threads(args.threads)
        if args.precision == "fp32" or not os.path.exists(onnx_path(args.model, "decoder")):
            export(args.model, args.threads)
        if args.precision == "int8":
            quantize(args.model, args.threads)
    else:
        serve(args.model, args.threads, args.seconds, args.precision)


if __name__ == "__main__":
    main()
