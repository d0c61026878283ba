"""Invariants of the u2ref reference model and of the committed fixtures."""

import itertools
import json
import math
import os
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")

from u2ref.config import normalize_config  # noqa: E402
from u2ref.mask import make_pad_mask  # noqa: E402
from u2ref.model import U2Model  # noqa: E402
from u2ref.search import (ctc_greedy_search, ctc_prefix_beam_search_one,  # noqa: E402
                          remove_duplicates_and_blank)

VARIANTS = sorted(d for d in os.listdir(FIXTURES)
                  if os.path.exists(os.path.join(FIXTURES, d, "ref.safetensors")))


def load_fixture(variant):
    d = os.path.join(FIXTURES, variant)
    with open(os.path.join(d, "model", "train.yaml")) as f:
        y = yaml.safe_load(f)
    t = {k: v.float() if v.is_floating_point() else v
         for k, v in load_file(os.path.join(d, "model", "model.safetensors")).items()}
    model = U2Model.from_checkpoint(normalize_config(y), t)
    ref = load_file(os.path.join(d, "ref.safetensors"))
    with open(os.path.join(d, "ref.json")) as f:
        rj = json.load(f)
    return model, ref, rj


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-6)).item()


def test_expected_variants_exist():
    for v in ("conformer_relpos_bn_noncausal_bi", "conformer_u2pp_causal_ln",
              "conformer_conv2d6_abspos", "conformer_conv2d8_nopos", "conformer_conv2d2_u2pp",
              "transformer_abspos_old", "branchformer_concat_causal_u2pp",
              "branchformer_fixed_ave_abspos", "e_branchformer_noncausal",
              "e_branchformer_causal_u2pp", "conformer_bpe_u2pp",
              "squeezeformer_conv1d_noncausal", "squeezeformer_stream_u2pp"):
        assert v in VARIANTS


@pytest.mark.parametrize("variant", VARIANTS)
def test_converted_model_reproduces_the_fixture(variant):
    """The converted model dir (what C++ loads) gives the fixture's numbers."""
    model, ref, rj = load_fixture(variant)
    with torch.no_grad():
        for u, utt in enumerate(rj["utts"]):
            x = ref["u%d.fbank" % u].unsqueeze(0)
            enc, mask, layers = model.encode(x, torch.tensor([x.size(1)]), return_layers=True)
            assert enc.size(1) == utt["num_enc_frames"] == ref["u%d.encoder_out" % u].size(0)
            assert rel(layers[0][0], ref["u%d.embed" % u]) < 1e-6
            assert rel(enc[0], ref["u%d.encoder_out" % u]) < 1e-6
            logp = model.ctc_logprobs(enc)[0]
            assert rel(logp, ref["u%d.ctc_logp" % u]) < 1e-6
            # Each utterance is decoded into several tokens (well-conditioned fixtures).
            assert len(utt["greedy"]) >= 2


CAUSAL_STREAMING = ["conformer_u2pp_causal_ln", "branchformer_concat_causal_u2pp",
                    "e_branchformer_causal_u2pp", "conformer_bpe_u2pp",
                    "squeezeformer_stream_u2pp"]


@pytest.mark.parametrize("variant", CAUSAL_STREAMING)
def test_streaming_equals_chunk_masked_forward(variant):
    """Causal conv: forward_chunk_by_chunk(C, L) == full forward with the (C, L) chunk mask
    (E-Branchformer: with its fusion conv's history cached, as the engine does)."""
    model, ref, rj = load_fixture(variant)
    assert rj["chunks"]
    kw = {"cache_fusion": True} if variant.startswith("e_branchformer") else {}
    worst = 0.0
    with torch.no_grad():
        for u in range(len(rj["utts"])):
            x = ref["u%d.fbank" % u].unsqueeze(0)
            for C, L in rj["chunks"]:
                s, _ = model.encoder.forward_chunk_by_chunk(x, C, L, **kw)
                full = ref["u%d.chunk%d_left%d.encoder_out" % (u, C, L)]
                assert s.shape[1] == full.shape[0]
                worst = max(worst, (s[0] - full).abs().max().item())
                e, _ = model.encode(x, torch.tensor([x.size(1)]), C, L)
                # The fixture was written on another CPU, whose fp32 kernels round differently: relative
                # to the output's scale, as the other fixture checks (5.7e-7 seen on an AVX-512 machine).
                assert rel(e[0], full) < 2e-6
    assert worst < 1e-5, worst
    # The chunk mask matters: (4, 1) differs from full context.
    assert (ref["u2.chunk4_left1.encoder_out"] - ref["u2.encoder_out"]).abs().max() > 1e-2


def test_e_branchformer_wenet_streaming_differs_from_the_chunk_masked_forward():
    """WeNet's forward_chunk gives the causal depthwise_conv_fusion no cache (zeros at every
    chunk start): its streaming output is not the chunk-masked forward (docs/wenet-crosscheck.md)."""
    model, ref, rj = load_fixture("e_branchformer_causal_u2pp")
    with torch.no_grad():
        for u in range(len(rj["utts"])):
            x = ref["u%d.fbank" % u].unsqueeze(0)
            full = ref["u%d.chunk4_left-1.encoder_out" % u]
            s, _ = model.encoder.forward_chunk_by_chunk(x, 4, -1)
            first = s[0, :4] - full[:4]  # the first chunk has no history to lose
            assert first.abs().max() < 1e-5
            assert rel(s[0], full) > 1e-2


@pytest.mark.parametrize("variant", ["conformer_u2pp_causal_ln", "branchformer_concat_causal_u2pp",
                                     "e_branchformer_causal_u2pp"])
def test_padded_batch_equals_single_for_causal_model(variant):
    model, ref, rj = load_fixture(variant)
    xs = [ref["u%d.fbank" % u] for u in range(3)]
    T = max(x.size(0) for x in xs)
    batch = torch.zeros(3, T, xs[0].size(1))
    for i, x in enumerate(xs):
        batch[i, :x.size(0)] = x
    lens = torch.tensor([x.size(0) for x in xs])
    with torch.no_grad():
        enc, mask = model.encode(batch, lens)
    out_lens = mask.squeeze(1).sum(1)
    for u in range(3):
        n = rj["utts"][u]["num_enc_frames"]
        assert out_lens[u].item() == n
        assert rel(enc[u, :n], ref["u%d.encoder_out" % u]) < 1e-5


def test_bpe_fixture_texts_are_wenet_detokenized():
    """ref.json's *_text: WeNet's BpeTokenizer.detokenize, i.e. the units joined with no
    separator, '\u2581' -> ' ', str.strip() (crosschecked against WeNet's own tokenizer)."""
    d = os.path.join(FIXTURES, "conformer_bpe_u2pp", "model")
    with open(os.path.join(d, "model.json")) as f:
        assert json.load(f)["tokenizer"] == {"type": "bpe", "bpe_model": "bpe.model",
                                             "non_lang_syms": "non_lang_syms.txt"}
    with open(os.path.join(d, "units.txt"), encoding="utf-8") as f:
        units = [line.split()[0] for line in f if line.strip()]
    _, _, rj = load_fixture("conformer_bpe_u2pp")
    for utt in rj["utts"]:
        for key, ids in (("greedy_text", utt["greedy"]),
                         ("prefix_beam_text", utt["prefix_beam"][0]["tokens"]),
                         ("rescoring_text", utt["rescoring"]["tokens"])):
            text = "".join(units[i] for i in ids).replace("\u2581", " ").strip()
            assert utt[key] == text and text, key


@pytest.mark.parametrize("layer,formula", [
    ("conv2d2", lambda t: (t - 1) // 2),
    ("conv2d", lambda t: ((t - 1) // 2 - 1) // 2),
    ("conv2d6", lambda t: ((t - 1) // 2 - 2) // 3),
    ("conv2d8", lambda t: (((t - 1) // 2 - 1) // 2 - 1) // 2),
])
def test_subsampled_mask_counts_match_conv_lengths(layer, formula):
    from u2ref.modules import SUBSAMPLING, NoPositionalEncoding
    sub = SUBSAMPLING[layer](80, 8, NoPositionalEncoding(8, 0.0))
    T = 90
    lens = torch.arange(sub.right_context + 1, T + 1)
    m = ~make_pad_mask(lens, T).unsqueeze(1)
    x, _, m2 = sub(torch.zeros(len(lens), T, 80), m)
    assert x.size(1) == formula(T)
    assert m2.squeeze(1).sum(1).tolist() == [formula(int(t)) for t in lens]


def brute_force_prefix_scores(logp):
    """log P(labeling) summed over every alignment (float64), by enumeration."""
    T, V = logp.shape
    out = {}
    for path in itertools.product(range(V), repeat=T):
        lab = tuple(remove_duplicates_and_blank(list(path), 0))
        s = sum(logp[t, path[t]].item() for t in range(T))
        if lab in out:
            hi, lo = max(out[lab], s), min(out[lab], s)
            out[lab] = hi + math.log1p(math.exp(lo - hi))
        else:
            out[lab] = s
    return out


def test_prefix_beam_search_is_exact_with_a_wide_beam():
    g = torch.Generator().manual_seed(3)
    for _ in range(5):
        logp = torch.log_softmax(torch.randn(5, 3, generator=g, dtype=torch.float64) * 2, -1)
        exact = brute_force_prefix_scores(logp)
        nbest = ctc_prefix_beam_search_one(logp, 5, beam_size=3 ** 5)
        # Like WeNet, the search also creates entries for impossible prefixes (score -inf).
        assert all(p not in exact for p, s in nbest if s == -math.inf)
        nbest = [(p, s) for p, s in nbest if s > -math.inf]
        assert len(nbest) == len(exact)
        for prefix, score in nbest:
            assert score == pytest.approx(exact[prefix], abs=1e-9)
        scores = [s for _, s in nbest]
        assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("variant", VARIANTS)
def test_greedy_is_the_best_path(variant):
    _, ref, rj = load_fixture(variant)
    for u, utt in enumerate(rj["utts"]):
        logp = ref["u%d.ctc_logp" % u]
        path = logp.argmax(-1).tolist()
        assert utt["greedy"] == remove_duplicates_and_blank(path, 0)
        assert ctc_greedy_search(logp.unsqueeze(0), torch.tensor([logp.size(0)]))[0] == \
            utt["greedy"]
        best_path = logp.max(-1).values.double().sum().item()
        # A prefix's score sums over alignments, so the best prefix is at least the best path.
        assert utt["prefix_beam"][0]["score"] >= best_path - 1e-6
        again = ctc_prefix_beam_search_one(logp, logp.size(0), rj["beam"])
        assert [list(h) for h, _ in again] == [e["tokens"] for e in utt["prefix_beam"]]


@pytest.mark.parametrize("variant", VARIANTS)
def test_rescoring_formula(variant):
    model, ref, rj = load_fixture(variant)
    cw, rw = rj["ctc_weight"], rj["reverse_weight"]
    with torch.no_grad():
        for u, utt in enumerate(rj["utts"]):
            enc = ref["u%d.encoder_out" % u].unsqueeze(0)
            l2r = ref["u%d.l2r_score" % u].double()
            r2l = ref["u%d.r2l_score" % u].double()
            ctc = torch.tensor([e["score"] for e in utt["prefix_beam"]], dtype=torch.float64)
            att = (1 - rw) * l2r + rw * r2l if rw > 0 else l2r
            final = att + cw * ctc
            assert final.tolist() == pytest.approx(utt["rescoring"]["scores"], abs=1e-4)
            assert utt["rescoring"]["index"] == int(final.argmax())
            assert utt["rescoring"]["tokens"] == utt["prefix_beam"][utt["rescoring"]["index"]][
                "tokens"]
            # Independent teacher-forced decoder scores, one hypothesis at a time (float64 sums).
            for i, e in enumerate(utt["prefix_beam"]):
                h = e["tokens"]
                ys = torch.tensor([[model.sos] + h])
                lens = torch.tensor([len(h) + 1])
                mem_mask = torch.ones(1, 1, enc.size(1), dtype=torch.bool)
                dec = model.decoder.left_decoder if model.has_right_decoder() else model.decoder
                logits, _, _ = dec(enc, mem_mask, ys, lens)
                lp = torch.log_softmax(logits[0].double(), -1)
                s = sum(lp[j, w].item() for j, w in enumerate(h)) + lp[len(h), model.eos].item()
                assert s == pytest.approx(l2r[i].item(), abs=1e-4)
                if model.has_right_decoder():
                    ys = torch.tensor([[model.sos] + h[::-1]])
                    logits, _, _ = model.decoder.right_decoder(enc, mem_mask, ys, lens)
                    lp = torch.log_softmax(logits[0].double(), -1)
                    s = sum(lp[len(h) - 1 - j, w].item() for j, w in enumerate(h)) + \
                        lp[len(h), model.eos].item()
                    assert s == pytest.approx(r2l[i].item(), abs=1e-4)


def test_decode_api_matches_fixture():
    model, ref, rj = load_fixture("conformer_relpos_bn_noncausal_bi")
    x = ref["u1.fbank"].unsqueeze(0)
    xl = torch.tensor([x.size(1)])
    utt = rj["utts"][1]
    assert model.decode(x, xl, "ctc_greedy_search") == [utt["greedy"]]
    assert model.decode(x, xl, "ctc_prefix_beam_search", beam_size=rj["beam"]) == \
        [utt["prefix_beam"][0]["tokens"]]
    assert model.decode(x, xl, "attention_rescoring", beam_size=rj["beam"],
                        ctc_weight=rj["ctc_weight"], reverse_weight=rj["reverse_weight"]) == \
        [utt["rescoring"]["tokens"]]


def test_forward_train_losses():
    """WeNet semantics: loss = cw*ctc + (1-cw)*att; CTC summed / B; lsm=0 att = CE sum / B."""
    torch.manual_seed(0)
    cfg = {"input_dim": 80, "output_dim": 10, "encoder": "conformer",
           "encoder_conf": {"output_size": 32, "attention_heads": 4, "linear_units": 32,
                            "num_blocks": 1, "cnn_module_kernel": 3},
           "decoder": "bitransformer",
           "decoder_conf": {"attention_heads": 4, "linear_units": 32, "num_blocks": 1,
                            "r_num_blocks": 1},
           "model_conf": {"ctc_weight": 0.3, "lsm_weight": 0.0, "reverse_weight": 0.0}}
    m = U2Model(cfg)
    m.eval()
    x = torch.randn(2, 60, 80)
    xl = torch.tensor([60, 45])
    text = torch.tensor([[3, 4, 5], [6, 7, -1]])
    tl = torch.tensor([3, 2])
    out = m.forward_train(x, xl, text, tl)
    assert out["loss"].item() == pytest.approx(
        0.3 * out["loss_ctc"].item() + 0.7 * out["loss_att"].item(), rel=1e-6)
    enc, mask = m.encode(x, xl)
    lens = mask.squeeze(1).sum(1)
    lp = m.ctc_logprobs(enc).transpose(0, 1)
    ctc = torch.nn.functional.ctc_loss(lp, text.clamp_min(0), lens, tl, reduction="sum",
                                       zero_infinity=True) / 2
    assert out["loss_ctc"].item() == pytest.approx(ctc.item(), rel=1e-5)
    ce = 0.0
    for b in range(2):
        h = text[b, :tl[b]].tolist()
        ys = torch.tensor([[m.sos] + h])
        logits, _, _ = m.decoder.left_decoder(enc[b:b + 1, :lens[b]],
                                              torch.ones(1, 1, int(lens[b]), dtype=torch.bool),
                                              ys, torch.tensor([len(h) + 1]))
        lpd = torch.log_softmax(logits[0], -1)
        ce -= sum(lpd[j, w].item() for j, w in enumerate(h + [m.eos]))
    assert out["loss_att"].item() == pytest.approx(ce / 2, rel=1e-5)
