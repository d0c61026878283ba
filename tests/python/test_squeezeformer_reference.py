"""u2ref's Squeezeformer and its fixtures: the per-layer resolutions the fixture format records,
the rel_shift formula docs/model-format.md gives the engine, WeNet's padded-batch mask, and which
chunk sizes stream exactly (docs/wenet-crosscheck.md)."""

import math
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_reference import load_fixture, rel  # noqa: E402

from u2ref.squeezeformer import rel_shift  # noqa: E402


@pytest.mark.parametrize("variant,D", [("squeezeformer_conv1d_noncausal", 64),
                                       ("squeezeformer_stream_u2pp", 48)])
def test_layers_at_their_own_resolution(variant, D):
    """embed = preln's output (block 0's input); layerN = what block N returns: blocks 1 and 2
    run after the reduction (ceil(T'/2) rows), block 3 after the recovery."""
    _, ref, rj = load_fixture(variant)
    for u, utt in enumerate(rj["utts"]):
        T = utt["num_enc_frames"]
        assert ref["u%d.embed" % u].shape == (T, 64)
        assert [ref["u%d.layer%d" % (u, j)].shape[0] for j in range(4)] == \
            [T, math.ceil(T / 2), math.ceil(T / 2), T]
        assert ref["u%d.encoder_out" % u].shape == (T, D)
        # post-LN blocks: every layer output is a LayerNorm's output
        assert ref["u%d.layer3" % u].std(-1).mean() < 2.0


def test_rel_shift_formula():
    """docs/model-format.md: bd'[i][j] with f = T1 + i*T2 + j, r, c = divmod(f, T2 + 1): 0 if c == 0
    else bd[r][c-1]; for T1 == T2 == T: bd[i][T-1+j-i] (j <= i), 0 (j = i+1), bd[i+1][j-i-2]."""
    g = torch.Generator().manual_seed(5)
    for t1, t2 in ((6, 6), (3, 8), (5, 2)):
        x = torch.randn(1, 2, t1, t2, generator=g)
        y = rel_shift(x)
        for i in range(t1):
            for j in range(t2):
                r, c = divmod(t1 + i * t2 + j, t2 + 1)
                want = torch.zeros(2) if c == 0 else x[0, :, r, c - 1]
                assert torch.equal(y[0, :, i, j], want)
                if t1 == t2:
                    T = t1
                    want = x[0, :, i, T - 1 + j - i] if j <= i else \
                        torch.zeros(2) if j == i + 1 else x[0, :, i + 1, j - i - 2]
                    assert torch.equal(y[0, :, i, j], want)


def test_padded_batch_mask_is_wenets():
    """WeNet's DepthwiseConv2dSubsampling4 subsamples the padding mask as [:-2:2][:-2:2]: a shorter
    utterance gets min(T', ceil(len/4)) valid frames in a padded batch, not its own T'."""
    model, ref, rj = load_fixture("squeezeformer_stream_u2pp")
    xs = [ref["u%d.fbank" % u] for u in range(3)]
    T = max(x.size(0) for x in xs)
    batch = torch.zeros(3, T, 80)
    for i, x in enumerate(xs):
        batch[i, :x.size(0)] = x
    lens = torch.tensor([x.size(0) for x in xs])
    with torch.no_grad():
        enc, mask = model.encode(batch, lens)
    Tp = enc.size(1)
    assert mask.squeeze(1).sum(1).tolist() == [min(Tp, -(-int(n) // 4)) for n in lens]
    alone = [utt["num_enc_frames"] for utt in rj["utts"]]
    assert alone == [((int(n) - 1) // 2 - 1) // 2 for n in lens]
    assert mask.squeeze(1).sum(1).tolist()[:2] != alone[:2]
    # The longest utterance has no padding: its frames are the fixture's.
    assert rel(enc[2], ref["u2.encoder_out"]) < 1e-5


def test_odd_chunks_do_not_stream_exactly():
    """Streaming equals the chunk-masked forward for even chunks (test_reference's streaming test
    covers 4, 8, 16) but not for odd ones: a chunk that starts on an odd frame makes the stream
    reduction take the other frames."""
    model, ref, _ = load_fixture("squeezeformer_stream_u2pp")
    x = ref["u2.fbank"].unsqueeze(0)
    with torch.no_grad():
        for C, exact in ((6, True), (2, True), (5, False), (3, False)):
            s, _ = model.encoder.forward_chunk_by_chunk(x, C, -1)
            e, _ = model.encode(x, torch.tensor([x.size(1)]), C, -1)
            assert s.shape == e.shape
            assert (rel(s[0], e[0]) < 1e-5) == exact, (C, rel(s[0], e[0]))
        # The first chunk has no history yet: equal whatever the chunk size.
        s, _ = model.encoder.forward_chunk_by_chunk(x, 5, -1)
        e, _ = model.encode(x, torch.tensor([x.size(1)]), 5, -1)
        assert (s[0, :4] - e[0, :4]).abs().max() < 1e-5


def test_recovery_pairs_with_the_saved_activation():
    """The recovery before block 3 adds the activation saved before the reduction (block 0's
    output) to time_recover_layer of the repeated rows; block 3's input is that sum."""
    model, ref, _ = load_fixture("squeezeformer_conv1d_noncausal")
    enc = model.encoder
    seen = {}
    h = enc.encoders[3].register_forward_pre_hook(lambda m, a: seen.update(x=a[0]))
    with torch.no_grad():
        x = ref["u1.fbank"].unsqueeze(0)
        enc(x, torch.tensor([x.size(1)]))
        h.remove()
        l0, l2 = ref["u1.layer0"], ref["u1.layer2"]
        rep = l2.repeat_interleave(2, dim=0)[:l0.size(0)]
        want = l0 + enc.time_recover_layer(rep)
    assert rel(seen["x"][0], want) < 1e-5
