#!/usr/bin/env python3
"""Generate the PyTorch reference fixtures in tests/fixtures/<variant>/ (format: tests/fixtures/README.md).

    .venv/bin/python tools/gen_fixtures.py --out tests/fixtures [--keep-checkpoints DIR] [--only V]

For each variant: build a random-weight u2ref model (fixed seeds), write a WeNet-layout checkpoint
dir (train.yaml, final.pt, global_cmvn, units.txt) into a temp dir (or DIR/<variant> with
--keep-checkpoints), run tools/convert.py on it into <variant>/model, and write batch-size-1
reference tensors (ref.safetensors) and decodes (ref.json) computed by u2ref from final.pt.

Weights are rounded to float16-representable values, so the float16 fixture models are lossless
and every fixture model describes exactly the same numbers as its final.pt.
"""

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile

TOOLS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TOOLS)
sys.path.insert(0, TOOLS)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchaudio  # noqa: E402
import yaml  # noqa: E402

from u2ref.cmvn import load_cmvn, write_json_cmvn, write_kaldi_cmvn  # noqa: E402
from u2ref.config import normalize_config  # noqa: E402
from u2ref.model import U2Model  # noqa: E402
from u2ref.search import ctc_greedy_search, ctc_prefix_beam_search_one  # noqa: E402

BEAM = 4
CHUNKS = [(4, -1), (4, 1), (8, -1), (16, -1)]
SAMPLE_RATE = 16000


def _enc(**kw):
    base = {"output_size": 64, "attention_heads": 4, "linear_units": 128, "num_blocks": 2,
            "dropout_rate": 0.1, "positional_dropout_rate": 0.1, "attention_dropout_rate": 0.0,
            "input_layer": "conv2d", "normalize_before": True}
    base.update(kw)
    return base


def _bf_enc(**kw):
    """Branchformer / E-Branchformer encoder_conf: only keys their WeNet constructors accept
    (no normalize_before; Branchformer has no linear_units either)."""
    base = {"output_size": 64, "attention_heads": 4, "num_blocks": 2, "dropout_rate": 0.1,
            "positional_dropout_rate": 0.1, "attention_dropout_rate": 0.0,
            "input_layer": "conv2d", "cgmlp_linear_units": 128}
    base.update(kw)
    return base


def _sq_enc(**kw):
    """Squeezeformer encoder_conf: only keys WeNet's SqueezeformerEncoder accepts; 4 blocks, the
    time reduction before block 1 and the recovery before block 3 (blocks 1 and 2 at 80 ms)."""
    base = {"encoder_dim": 64, "output_size": 64, "attention_heads": 4, "num_blocks": 4,
            "reduce_idx": 1, "recover_idx": 3, "feed_forward_expansion_factor": 2,
            "input_dropout_rate": 0.1, "feed_forward_dropout_rate": 0.1,
            "attention_dropout_rate": 0.1, "dropout": 0.1, "pos_enc_layer_type": "rel_pos",
            "normalize_before": False, "activation_type": "swish"}
    base.update(kw)
    return base


BPE_DIR = os.path.join(ROOT, "tests", "data", "bpe")


def _dec(**kw):
    base = {"attention_heads": 4, "linear_units": 128, "num_blocks": 2, "dropout_rate": 0.1,
            "positional_dropout_rate": 0.1, "self_attention_dropout_rate": 0.0,
            "src_attention_dropout_rate": 0.0}
    base.update(kw)
    return base


# Each variant: the yaml (WeNet layout as written to train.yaml), vocab size, CMVN file format,
# sos/eos style (special_tokens True: <sos>=<eos>=2, "last": V-1, False: the <sos/eos> unit),
# storage dtype of the converted model, and whether the checkpoint is "old" (concat_linear
# tensors present, no pe buffers). Optional: bpe=True takes units, bpe.model and non-language
# symbols from tests/data/bpe (tokenizer: bpe) and adds WeNet's detokenized texts to ref.json.
VARIANTS = {
    "conformer_relpos_bn_noncausal_bi": dict(
        seed=101, vocab=48, layout="new", cmvn="json", special_tokens=True, dtype="float16",
        encoder="conformer",
        encoder_conf=_enc(num_blocks=3, pos_enc_layer_type="rel_pos",
                          selfattention_layer_type="rel_selfattn", cnn_module_kernel=15,
                          causal=False, cnn_module_norm="batch_norm", macaron_style=True,
                          activation_type="swish", use_cnn_module=True),
        decoder="bitransformer", decoder_conf=_dec(r_num_blocks=1),
        model_conf={"ctc_weight": 0.3, "lsm_weight": 0.1, "reverse_weight": 0.3,
                    "length_normalized_loss": False}),
    "conformer_u2pp_causal_ln": dict(
        seed=202, vocab=52, layout="new", cmvn="kaldi", special_tokens=True, dtype="float16",
        encoder="conformer",
        encoder_conf=_enc(num_blocks=3, pos_enc_layer_type="rel_pos",
                          selfattention_layer_type="rel_selfattn", cnn_module_kernel=8,
                          causal=True, cnn_module_norm="layer_norm", macaron_style=True,
                          activation_type="swish", use_cnn_module=True, use_dynamic_chunk=True,
                          use_dynamic_left_chunk=False),
        decoder="bitransformer", decoder_conf=_dec(r_num_blocks=1),
        model_conf={"ctc_weight": 0.3, "lsm_weight": 0.1, "reverse_weight": 0.5,
                    "length_normalized_loss": False}),
    "conformer_conv2d6_abspos": dict(
        seed=303, vocab=44, layout="new", cmvn="json", special_tokens=False, dtype="float16",
        encoder="conformer",
        encoder_conf=_enc(input_layer="conv2d6", pos_enc_layer_type="abs_pos",
                          selfattention_layer_type="selfattn", macaron_style=False,
                          cnn_module_kernel=7, causal=False, cnn_module_norm="batch_norm",
                          activation_type="swish", use_cnn_module=True),
        decoder="transformer", decoder_conf=_dec(),
        model_conf={"ctc_weight": 0.5, "lsm_weight": 0.1, "reverse_weight": 0.0,
                    "length_normalized_loss": False}),
    "conformer_conv2d8_nopos": dict(
        seed=404, vocab=40, layout="new", cmvn="json", special_tokens=True, dtype="float32",
        encoder="conformer",
        encoder_conf=_enc(input_layer="conv2d8", pos_enc_layer_type="no_pos",
                          selfattention_layer_type="rel_selfattn", macaron_style=True,
                          cnn_module_kernel=5, causal=True, cnn_module_norm="layer_norm",
                          activation_type="swish", use_cnn_module=True, key_bias=False,
                          use_dynamic_chunk=True),
        decoder="bitransformer", decoder_conf=_dec(r_num_blocks=1),
        model_conf={"ctc_weight": 0.3, "lsm_weight": 0.1, "reverse_weight": 0.3,
                    "length_normalized_loss": False}),
    "conformer_conv2d2_u2pp": dict(
        seed=606, vocab=36, layout="new", cmvn="json", special_tokens=True, dtype="float16",
        encoder="conformer",
        encoder_conf=_enc(input_layer="conv2d2", pos_enc_layer_type="rel_pos",
                          selfattention_layer_type="rel_selfattn", macaron_style=True,
                          cnn_module_kernel=8, causal=True, cnn_module_norm="layer_norm",
                          activation_type="swish", use_cnn_module=True, use_dynamic_chunk=True),
        decoder="bitransformer", decoder_conf=_dec(r_num_blocks=1),
        model_conf={"ctc_weight": 0.3, "lsm_weight": 0.1, "reverse_weight": 0.3,
                    "length_normalized_loss": False}),
    "branchformer_concat_causal_u2pp": dict(
        seed=707, vocab=46, layout="new", cmvn="json", special_tokens=True, dtype="float16",
        encoder="branchformer",
        encoder_conf=_bf_enc(pos_enc_layer_type="rel_pos", selfattention_layer_type="rel_selfattn",
                             use_attn=True, use_cgmlp=True, cgmlp_conv_kernel=7,
                             use_linear_after_conv=False, gate_activation="identity",
                             merge_method="concat", causal=True, use_dynamic_chunk=True,
                             use_dynamic_left_chunk=False),
        decoder="bitransformer", decoder_conf=_dec(num_blocks=1, r_num_blocks=1),
        model_conf={"ctc_weight": 0.3, "lsm_weight": 0.1, "reverse_weight": 0.3,
                    "length_normalized_loss": False}),
    "branchformer_fixed_ave_abspos": dict(
        seed=808, vocab=42, layout="new", cmvn="kaldi", special_tokens=False, dtype="float16",
        encoder="branchformer",
        encoder_conf=_bf_enc(pos_enc_layer_type="abs_pos", selfattention_layer_type="selfattn",
                             cgmlp_conv_kernel=5, use_linear_after_conv=True,
                             gate_activation="gelu", merge_method="fixed_ave",
                             cgmlp_weight=[0.3, 0.7], causal=False),
        decoder="transformer", decoder_conf=_dec(num_blocks=1),
        model_conf={"ctc_weight": 0.5, "lsm_weight": 0.1, "reverse_weight": 0.0,
                    "length_normalized_loss": False}),
    # WeNet's examples/aishell/s0/conf/train_ebranchformer.yaml, small.
    "e_branchformer_noncausal": dict(
        seed=909, vocab=50, layout="new", cmvn="json", special_tokens=True, dtype="float16",
        encoder="e_branchformer",
        encoder_conf=_bf_enc(linear_units=128, pos_enc_layer_type="rel_pos",
                             selfattention_layer_type="rel_selfattn", activation_type="swish",
                             cgmlp_conv_kernel=7, use_linear_after_conv=False,
                             gate_activation="identity", merge_conv_kernel=5, causal=False,
                             use_ffn=True, macaron_style=True),
        decoder="transformer", decoder_conf=_dec(num_blocks=1),
        model_conf={"ctc_weight": 0.3, "lsm_weight": 0.1, "length_normalized_loss": False}),
    "e_branchformer_causal_u2pp": dict(
        seed=1010, vocab=44, layout="new", cmvn="kaldi", special_tokens=True, dtype="float16",
        encoder="e_branchformer",
        encoder_conf=_bf_enc(linear_units=128, pos_enc_layer_type="rel_pos",
                             selfattention_layer_type="rel_selfattn", activation_type="swish",
                             cgmlp_conv_kernel=8, use_linear_after_conv=False,
                             gate_activation="swish", merge_conv_kernel=3, causal=True,
                             use_dynamic_chunk=True, use_ffn=True, macaron_style=True),
        decoder="bitransformer", decoder_conf=_dec(num_blocks=1, r_num_blocks=1),
        model_conf={"ctc_weight": 0.3, "lsm_weight": 0.1, "reverse_weight": 0.3,
                    "length_normalized_loss": False}),
    "conformer_bpe_u2pp": dict(
        seed=1111, vocab=118, layout="new", cmvn="json", special_tokens="last", dtype="float16",
        bpe=True, encoder="conformer",
        encoder_conf=_enc(pos_enc_layer_type="rel_pos", selfattention_layer_type="rel_selfattn",
                          cnn_module_kernel=8, causal=True, cnn_module_norm="layer_norm",
                          macaron_style=True, activation_type="swish", use_cnn_module=True,
                          use_dynamic_chunk=True, use_dynamic_left_chunk=False),
        decoder="bitransformer", decoder_conf=_dec(num_blocks=1, r_num_blocks=1),
        model_conf={"ctc_weight": 0.3, "lsm_weight": 0.1, "reverse_weight": 0.3,
                    "length_normalized_loss": False}),
    # WeNet's aishell train_u2++_efficonformer_v1.yaml, small: one stride block (1), grouped
    # attention in the blocks up to it (0, 1), stride_kernel (K 15 -> 7); BatchNorm for coverage.
    "efficient_conformer_v1_noncausal": dict(
        seed=1212, vocab=46, layout="new", cmvn="json", special_tokens=True, dtype="float16",
        encoder="efficientConformer",
        encoder_conf=_enc(num_blocks=4, pos_enc_layer_type="rel_pos", cnn_module_kernel=15,
                          causal=False, cnn_module_norm="batch_norm", macaron_style=True,
                          activation_type="swish", use_cnn_module=True,
                          efficient_conf={"stride_layer_idx": [1], "stride": [2],
                                          "group_layer_idx": [0, 1], "group_size": 3,
                                          "stride_kernel": True}),
        decoder="transformer", decoder_conf=_dec(num_blocks=1),
        model_conf={"ctc_weight": 0.3, "lsm_weight": 0.1, "length_normalized_loss": False}),
    # train_u2++_efficonformer_v2.yaml (conv2d2, stride blocks = grouped blocks, kernels kept),
    # small, causal with dynamic chunks as _v1_stream. Streaming equals the chunk-masked forward
    # only for chunks that are multiples of lcm(2*2, 3*1, 3*2) = 12 (docs/model-format.md), so
    # `chunks` replaces CHUNKS.
    "efficient_conformer_v2_stream": dict(
        seed=1313, vocab=40, layout="new", cmvn="kaldi", special_tokens=True, dtype="float16",
        encoder="efficientConformer",
        encoder_conf=_enc(num_blocks=4, linear_units=64, input_layer="conv2d2",
                          pos_enc_layer_type="rel_pos", cnn_module_kernel=8, causal=True,
                          cnn_module_norm="layer_norm",
                          macaron_style=True, activation_type="swish", use_cnn_module=True,
                          use_dynamic_chunk=True, use_dynamic_left_chunk=False,
                          efficient_conf={"stride_layer_idx": [1, 2], "stride": [2, 2],
                                          "group_layer_idx": [1, 2], "group_size": 3,
                                          "stride_kernel": False}),
        decoder="bitransformer", decoder_conf=_dec(num_blocks=1, r_num_blocks=1, linear_units=64),
        model_conf={"ctc_weight": 0.3, "lsm_weight": 0.1, "reverse_weight": 0.3,
                    "length_normalized_loss": False},
        chunks=[(12, -1), (12, 1), (24, -1)]),
    # WeNet's librispeech train_squeezeformer.yaml, small (conv1d reduction, rel_shift,
    # adaptive scale; BatchNorm as its _bidecoder_large variant).
    "squeezeformer_conv1d_noncausal": dict(
        seed=1414, vocab=48, layout="new", cmvn="json", special_tokens=True, dtype="float16",
        encoder="squeezeformer",
        encoder_conf=_sq_enc(time_reduction_layer_type="conv1d", cnn_module_kernel=15,
                             cnn_norm_type="batch_norm", causal=False, do_rel_shift=True,
                             adaptive_scale=True, dw_stride=False),
        decoder="transformer", decoder_conf=_dec(num_blocks=1),
        model_conf={"ctc_weight": 0.3, "lsm_weight": 0.1, "length_normalized_loss": False}),
    # train_u2++_squeezeformer.yaml, small: stream reduction, causal LayerNorm conv module, no
    # rel_shift, dynamic chunks; plus final_proj (output_size 48 != encoder_dim 64) and a
    # depthwise dw_conv (dw_stride) for coverage.
    "squeezeformer_stream_u2pp": dict(
        seed=1515, vocab=44, layout="new", cmvn="kaldi", special_tokens=True, dtype="float16",
        encoder="squeezeformer",
        encoder_conf=_sq_enc(output_size=48, time_reduction_layer_type="stream",
                             cnn_module_kernel=8, cnn_norm_type="layer_norm", causal=True,
                             do_rel_shift=False, adaptive_scale=True, dw_stride=True,
                             use_dynamic_chunk=True, use_dynamic_left_chunk=False),
        decoder="bitransformer", decoder_conf=_dec(num_blocks=1, r_num_blocks=1),
        model_conf={"ctc_weight": 0.3, "lsm_weight": 0.1, "reverse_weight": 0.3,
                    "length_normalized_loss": False}),
    "transformer_abspos_old": dict(
        seed=505, vocab=56, layout="old", cmvn="json", special_tokens=False, dtype="float16",
        encoder="transformer",
        encoder_conf=_enc(pos_enc_layer_type="abs_pos", concat_after=False, norm_eps=1e-12),
        decoder="transformer", decoder_conf=_dec(concat_after=False, norm_eps=1e-12),
        model_conf={"ctc_weight": 0.3, "lsm_weight": 0.1, "length_normalized_loss": False}),
}


# ----------------------------------------------------------------------------- data
def synth_utterances(seed):
    """Three deterministic 16 kHz waveforms in [-1, 1): tones, chirps, noise bursts + light noise."""
    rng = np.random.RandomState(seed)
    out = []
    for dur in (0.8, 1.15, 1.6):
        n = int(dur * SAMPLE_RATE)
        t = np.arange(n) / SAMPLE_RATE
        x = np.zeros(n)
        pos = 0
        while pos < n:
            seg = int(rng.uniform(0.12, 0.35) * SAMPLE_RATE)
            end = min(n, pos + seg)
            tt = t[pos:end] - t[pos]
            kind = rng.randint(3)
            env = np.sin(np.pi * np.arange(end - pos) / max(1, end - pos)) ** 2
            if kind == 0:
                f0 = rng.uniform(120, 400)
                y = sum(np.sin(2 * np.pi * f0 * h * tt) / h for h in range(1, 6))
            elif kind == 1:
                f0, f1 = rng.uniform(200, 3000, size=2)
                y = np.sin(2 * np.pi * (f0 * tt + 0.5 * (f1 - f0) * tt ** 2 / max(tt[-1], 1e-3)))
            else:
                y = rng.randn(end - pos)
                y = np.convolve(y, np.ones(4) / 4, mode="same")
            x[pos:end] += rng.uniform(0.05, 0.3) * env * y
            pos = end + int(rng.uniform(0.0, 0.1) * SAMPLE_RATE)
        x += 0.002 * rng.randn(n)
        x = np.clip(x, -0.99, 0.99).astype(np.float32)
        out.append(torch.from_numpy(x))
    return out


def fbank(wav):
    return torchaudio.compliance.kaldi.fbank(wav.unsqueeze(0) * 32768, num_mel_bins=80,
                                             frame_length=25, frame_shift=10, dither=0.0,
                                             energy_floor=0.0, sample_frequency=SAMPLE_RATE)


def make_units(V, sos_style_new):
    names = ["<blank>", "<unk>"]
    if sos_style_new:
        names.append("<sos/eos>")
    pool = [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["'", "\u2581"]
    pool += [a + b for a in "aeiou" for b in "nrst"]
    while len(names) < V - (0 if sos_style_new else 1):
        names.append(pool[len(names) % len(pool)] if pool[len(names) % len(pool)] not in names
                     else "t%d" % len(names))
    if not sos_style_new:
        names.append("<sos/eos>")
    assert len(names) == V and len(set(names)) == V
    return names


def read_units(path):
    with open(path, "r", encoding="utf-8") as f:
        return [line.split()[0] for line in f if line.strip()]


def wenet_text(units, ids):
    """WeNet's BpeTokenizer.detokenize (wenet/text/bpe_tokenizer.py, char_tokenizer.py): the
    units of `ids` joined with no separator (connect_symbol ''), every '\u2581' replaced by a space,
    then Python's str.strip() (Unicode whitespace). Non-language symbols get no special treatment
    on this way: they are joined like any other unit."""
    return "".join(units[i] for i in ids).replace("\u2581", " ").strip()


# ----------------------------------------------------------------------------- weights
def fp16_round_(sd):
    for k, v in sd.items():
        if v.is_floating_point() and not k.endswith(".pe") and "global_cmvn" not in k:
            v.copy_(v.half().float())


def randomize(model, gen):
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.copy_(1.0 + 0.1 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
            elif isinstance(m, torch.nn.BatchNorm1d):
                m.weight.copy_(1.0 + 0.1 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
                m.running_mean.copy_(0.3 * torch.randn(m.running_mean.shape, generator=gen))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(m.running_var.shape, generator=gen))
                m.num_batches_tracked.fill_(1000)
        # Squeezeformer's adaptive scales (ones and zeros at init): random, so that they matter.
        for name, p in model.named_parameters():
            if name.endswith(".ada_scale"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".ada_bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))


def tune_ctc(model, feats, blank_id):
    """Scale ctc_lo so log-probs are peaky and bias blank so ~45 % of frames are blank."""
    with torch.no_grad():
        encs = []
        for f in feats:
            e, _ = model.encode(f.unsqueeze(0), torch.tensor([f.size(0)]))
            encs.append(e[0])
        enc = torch.cat(encs, 0)
        lo = model.ctc.ctc_lo
        logits = enc @ lo.weight.t() + lo.bias
        scale = 4.0 / logits.std().item()
        lo.weight.mul_(scale)
        lo.bias.mul_(scale)
        logits = enc @ lo.weight.t() + lo.bias
        others = torch.cat([logits[:, :blank_id], logits[:, blank_id + 1:]], 1).max(1).values
        margin = others - logits[:, blank_id]
        lo.bias[blank_id] += torch.quantile(margin, 0.45).item()


def build_checkpoint(name, spec, ckpt_dir):
    """Writes train.yaml, final.pt, global_cmvn, units.txt into ckpt_dir; returns (model, wavs)."""
    torch.manual_seed(spec["seed"])
    gen = torch.Generator().manual_seed(spec["seed"] + 1)
    V = spec["vocab"]
    if spec.get("bpe"):
        units = read_units(os.path.join(BPE_DIR, "units.txt"))
        assert len(units) == V and units[-1] == "<sos/eos>"
        for f in ("bpe.model", "non_lang_syms.txt"):
            shutil.copyfile(os.path.join(BPE_DIR, f), os.path.join(ckpt_dir, f))
    else:
        units = make_units(V, spec["special_tokens"])
    wavs = synth_utterances(spec["seed"])
    feats = [fbank(w) for w in wavs]

    # CMVN statistics over the three utterances (double), as compute_cmvn_stats.py would.
    allf = torch.cat(feats, 0).double()
    sums, sqs, n = allf.sum(0).numpy(), (allf ** 2).sum(0).numpy(), allf.size(0)
    cmvn_path = os.path.join(ckpt_dir, "global_cmvn")
    if spec["cmvn"] == "json":
        write_json_cmvn(cmvn_path, sums, sqs, n)
    else:
        write_kaldi_cmvn(cmvn_path, sums, sqs, n)
    mean, istd = load_cmvn(cmvn_path, spec["cmvn"] == "json")

    y = {"input_dim": 80, "output_dim": V, "encoder": spec["encoder"],
         "encoder_conf": copy.deepcopy(spec["encoder_conf"]), "decoder": spec["decoder"],
         "decoder_conf": copy.deepcopy(spec["decoder_conf"]),
         "model_conf": copy.deepcopy(spec["model_conf"])}
    if spec["layout"] == "new":
        y.update({
            "ctc_conf": {"ctc_blank_id": 0},
            "cmvn": "global_cmvn",
            "cmvn_conf": {"cmvn_file": "global_cmvn", "is_json_cmvn": spec["cmvn"] == "json"},
            "dataset_conf": {"fbank_conf": {"num_mel_bins": 80, "frame_shift": 10,
                                            "frame_length": 25, "dither": 1.0},
                             "resample_conf": {"resample_rate": 16000}},
        })
        if spec["special_tokens"] == "last":
            y["tokenizer_conf"] = {"special_tokens": {"<blank>": 0, "<unk>": 1, "<sos>": V - 1,
                                                      "<eos>": V - 1}}
        elif spec["special_tokens"]:
            y["tokenizer_conf"] = {"special_tokens": {"<blank>": 0, "<unk>": 1, "<sos>": 2,
                                                      "<eos>": 2}}
        if spec.get("bpe"):  # as WeNet's English recipes write it (paths beside train.yaml)
            y["tokenizer"] = "bpe"
            y["tokenizer_conf"].update({"symbol_table_path": "units.txt",
                                        "bpe_path": "bpe.model",
                                        "non_lang_syms_path": "non_lang_syms.txt",
                                        "split_with_space": False})
    else:
        y.update({
            "cmvn_file": "global_cmvn",
            "is_json_cmvn": spec["cmvn"] == "json",
            "raw_wav": True,
            "collate_conf": {"feature_extraction_conf": {
                "feature_type": "fbank", "mel_bins": 80, "frame_shift": 10, "frame_length": 25,
                "using_pitch": False}, "feature_dither": 0.0},
        })

    model = U2Model(normalize_config(y))
    model.encoder.global_cmvn.mean.copy_(torch.from_numpy(mean))
    model.encoder.global_cmvn.istd.copy_(torch.from_numpy(istd))
    randomize(model, gen)
    model.eval()
    fp16_round_(model.state_dict())
    tune_ctc(model, feats, 0)
    fp16_round_(model.state_dict())

    sd = {k: v.clone() for k, v in model.state_dict().items()}
    if spec["layout"] == "old":
        D = spec["encoder_conf"]["output_size"]
        for k in [k for k in sd if k.endswith(".pe")]:
            del sd[k]
        g = torch.Generator().manual_seed(spec["seed"] + 2)
        for i in range(spec["encoder_conf"]["num_blocks"]):
            sd["encoder.encoders.%d.concat_linear.weight" % i] = torch.randn(D, 2 * D, generator=g)
            sd["encoder.encoders.%d.concat_linear.bias" % i] = torch.randn(D, generator=g)
        for j in range(spec["decoder_conf"]["num_blocks"]):
            for c in ("concat_linear1", "concat_linear2"):
                sd["decoder.decoders.%d.%s.weight" % (j, c)] = torch.randn(D, 2 * D, generator=g)
                sd["decoder.decoders.%d.%s.bias" % (j, c)] = torch.randn(D, generator=g)
    torch.save(sd, os.path.join(ckpt_dir, "final.pt"))
    with open(os.path.join(ckpt_dir, "train.yaml"), "w", encoding="utf-8") as f:
        yaml.safe_dump(y, f, sort_keys=True, allow_unicode=True)
    with open(os.path.join(ckpt_dir, "units.txt"), "w", encoding="utf-8") as f:
        for i, u in enumerate(units):
            f.write("%s %d\n" % (u, i))
    return wavs, feats


# ----------------------------------------------------------------------------- references
def reference(name, spec, ckpt_dir, wavs, feats, out_dir):
    with open(os.path.join(ckpt_dir, "train.yaml"), "r", encoding="utf-8") as f:
        y = yaml.safe_load(f)
    sd = torch.load(os.path.join(ckpt_dir, "final.pt"), map_location="cpu")
    model = U2Model.from_checkpoint(normalize_config(y), sd)
    cfg = model.cfg
    bi = model.has_right_decoder()
    ctc_weight = float(cfg["model_conf"]["ctc_weight"])
    reverse_weight = float(cfg["model_conf"]["reverse_weight"]) if bi else 0.0
    tensors = {}
    utts = []
    with torch.no_grad():
        for u, (w, x) in enumerate(zip(wavs, feats)):
            xs, xl = x.unsqueeze(0), torch.tensor([x.size(0)])
            enc, mask, layers = model.encode(xs, xl, -1, -1, return_layers=True)
            logp = model.ctc_logprobs(enc)
            T1 = enc.size(1)
            tensors["u%d.wav" % u] = w
            tensors["u%d.fbank" % u] = x
            tensors["u%d.embed" % u] = layers[0][0]
            for j, l in enumerate(layers[1:]):
                tensors["u%d.layer%d" % (u, j)] = l[0]
            tensors["u%d.encoder_out" % u] = enc[0]
            tensors["u%d.ctc_logp" % u] = logp[0]
            greedy = ctc_greedy_search(logp, torch.tensor([T1]))[0]
            nbest = ctc_prefix_beam_search_one(logp[0], T1, BEAM)
            idx, finals, sc = model.rescore(nbest, enc, ctc_weight, reverse_weight)
            hyps = [list(h) for h, _ in nbest]
            if bi:  # always record R2L for bi-decoders, whatever reverse_weight is
                l_logp, r_logp = model.forward_attention_decoder(hyps, enc, with_r2l=True)
                from u2ref.search import decoder_scores
                sc = [(float(a), float(b)) for a, b in decoder_scores(l_logp, r_logp, hyps,
                                                                       model.eos)]
            K = len(hyps)
            Lmax = max([len(h) for h in hyps] + [1])
            nt = torch.full((K, Lmax), -1, dtype=torch.int32)
            for i, h in enumerate(hyps):
                if h:
                    nt[i, :len(h)] = torch.tensor(h, dtype=torch.int32)
            tensors["u%d.nbest_tokens" % u] = nt
            tensors["u%d.l2r_score" % u] = torch.tensor([a for a, _ in sc], dtype=torch.float32)
            tensors["u%d.r2l_score" % u] = torch.tensor([b if b is not None else 0.0
                                                         for _, b in sc], dtype=torch.float32)
            if cfg["encoder_conf"]["use_dynamic_chunk"]:
                for C, L in spec.get("chunks", CHUNKS):
                    e, _ = model.encode(xs, xl, C, L)
                    tensors["u%d.chunk%d_left%d.encoder_out" % (u, C, L)] = e[0]
            utts.append({
                "num_samples": int(w.numel()), "num_frames": int(x.size(0)),
                "num_enc_frames": int(T1), "greedy": greedy,
                "prefix_beam": [{"tokens": list(h), "score": s} for h, s in nbest],
                "rescoring": {"tokens": hyps[idx], "index": idx, "scores": finals},
            })
            if spec.get("bpe"):
                units = read_units(os.path.join(ckpt_dir, "units.txt"))
                utts[-1].update({"greedy_text": wenet_text(units, greedy),
                                 "prefix_beam_text": wenet_text(units, hyps[0]),
                                 "rescoring_text": wenet_text(units, hyps[idx])})
    ref = {"variant": name, "beam": BEAM, "ctc_weight": ctc_weight,
           "reverse_weight": reverse_weight, "sos_id": model.sos, "eos_id": model.eos,
           "chunks": [[C, L] for C, L in spec.get("chunks", CHUNKS)]
           if cfg["encoder_conf"]["use_dynamic_chunk"] else [], "utts": utts}
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in sorted(tensors.items())},
              os.path.join(out_dir, "ref.safetensors"))
    with open(os.path.join(out_dir, "ref.json"), "w", encoding="utf-8") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")


FIXTURE_MAX_POSITIONS = 256


def run_convert(ckpt_dir, model_dir, dtype, bpe=False):
    cmd = [sys.executable, os.path.join(TOOLS, "convert.py"), "--config",
           os.path.join(ckpt_dir, "train.yaml"), "--checkpoint", os.path.join(ckpt_dir, "final.pt"),
           "--cmvn", os.path.join(ckpt_dir, "global_cmvn"), "--units",
           os.path.join(ckpt_dir, "units.txt"), "--out", model_dir, "--dtype", dtype,
           # The fixture clips are short: a 256-row positional table keeps each model small.
           "--max-positions", str(FIXTURE_MAX_POSITIONS)]
    if bpe:
        cmd += ["--bpe-model", os.path.join(ckpt_dir, "bpe.model"), "--non-lang-syms",
                os.path.join(ckpt_dir, "non_lang_syms.txt")]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(TOOLS), "tests", "fixtures"))
    ap.add_argument("--keep-checkpoints", default=None,
                    help="write the WeNet-layout checkpoint dirs to DIR/<variant> (cross-check)")
    ap.add_argument("--only", action="append", default=None, help="variant name (repeatable)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    names = args.only or list(VARIANTS)
    for name in names:
        spec = VARIANTS[name]
        tmp = None
        if args.keep_checkpoints:
            ckpt_dir = os.path.join(args.keep_checkpoints, name)
            os.makedirs(ckpt_dir, exist_ok=True)
        else:
            tmp = tempfile.mkdtemp(prefix="u2fix_")
            ckpt_dir = tmp
        out_dir = os.path.join(args.out, name)
        if os.path.isdir(out_dir):
            shutil.rmtree(out_dir)
        os.makedirs(out_dir)
        wavs, feats = build_checkpoint(name, spec, ckpt_dir)
        run_convert(ckpt_dir, os.path.join(out_dir, "model"), spec["dtype"], spec.get("bpe", False))
        reference(name, spec, ckpt_dir, wavs, feats, out_dir)
        if tmp:
            shutil.rmtree(tmp)
        size = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(out_dir)
                   for f in fs)
        print("%-36s %7.1f KB" % (name, size / 1024.0))


if __name__ == "__main__":
    main()
