"""Squeezeformer checks for tools/crosscheck_wenet.py, beyond the fixture tensors (docs/
wenet-crosscheck.md, "Squeezeformer"):

  * streaming of a dynamic-chunk fixture: u2ref's forward_chunk against WeNet's at the fixture's
    chunks and at odd ones, and WeNet's streaming against its own chunk-masked forward at odd
    chunks (not exact: the reduced blocks take other frames);
  * the conv1d fixture's weights in WeNet made causal with dynamic chunks (in-process): WeNet's
    streaming against its chunk-masked forward as WeNet runs it (its conv1d time reduction gets
    no cache), with that reduction's last 3 input rows cached in-process (ReductionCache), and
    with rel_shift kept (its scores depend on the key count);
  * options the converter refuses but u2ref implements (the conv2d time reduction, pre-LN blocks
    with concat_after, no adaptive scale): u2ref against WeNet with seeded random weights on the
    fixture's features; and that WeNet's squeezeformer without rel_pos does not run.
"""

import copy
import types

import torch
import torch.nn.functional as F

ODD_CHUNKS = (5, 3)


class ReductionCache:
    """In-process only: makes WeNet's TimeReductionLayer1D (depthwise conv, kernel 5, stride 2,
    padding 3 on both sides) take the last 3 rows of its previous input as left context instead of
    zeros, across forward_chunk calls. One reduction per model (the layer is shared by all)."""

    def __init__(self, encoder):
        layer = encoder.time_reduction_layer
        self.conv = layer.dw_conv if type(layer).__name__ == "TimeReductionLayer1D" else None

    def __enter__(self):
        conv = self.conv
        self.plain = conv.forward
        pad = conv.padding[0]
        state = {"hist": None}

        def cached(t):
            hist = state["hist"] if state["hist"] is not None else t.new_zeros(t.size(0), t.size(1),
                                                                               pad)
            state["hist"] = torch.cat([hist, t], dim=2)[:, :, -pad:]
            full = torch.cat([hist, t, t.new_zeros(t.size(0), t.size(1), pad)], dim=2)
            return F.conv1d(full, conv.weight, conv.bias, conv.stride, 0, conv.dilation,
                            conv.groups)
        conv.forward = cached
        return self

    def __exit__(self, *exc):
        self.conv.forward = self.plain


def _randomize(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.1 if p.dim() < 2 else
                                                          1.0 / max(1, p[0].numel()) ** 0.5))
            if name.endswith(("ada_scale", "norm1.weight", "norm2.weight", "norm3.weight",
                              "norm4.weight", "preln.weight", "norm.weight")):
                p.add_(1.0)
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.copy_(0.3 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-6)).item()


def extras(name, y, ckpt, sd, ref, rj, ours, model, init_model, wenet_config, acc, quirks,
           excused):
    """Runs the checks above for a squeezeformer fixture; adds acc entries and quirk lines."""
    from u2ref.config import squeezeformer_conf
    from u2ref.squeezeformer import SqueezeformerEncoder as Ours
    from wenet.models.squeezeformer.encoder import SqueezeformerEncoder as Theirs

    ec = y["encoder_conf"]
    utts = range(len(rj["utts"]))
    feats = [ref["u%d.fbank" % u].unsqueeze(0) for u in utts]
    with torch.no_grad():
        if rj.get("chunks"):
            for x in feats:
                for C, L in [tuple(c) for c in rj["chunks"]] + [(c, -1) for c in ODD_CHUNKS]:
                    s, _ = model.encoder.forward_chunk_by_chunk(x, C, L)
                    o, _ = ours.encoder.forward_chunk_by_chunk(x, C, L)
                    acc.add("wenet_streaming_vs_u2ref_streaming", s[0], o[0])
                    if C in ODD_CHUNKS:
                        e, _ = model.encoder(x, torch.tensor([x.size(1)]), C, L)
                        acc.add("odd_chunk_c%d" % C, s[0], e[0])
            parts = []
            for C in ODD_CHUNKS:
                excused.add("odd_chunk_c%d" % C)
                parts.append("C=%d: max rel %.1e" % (C, acc.v["odd_chunk_c%d" % C][1]))
            quirks.append(
                "%s: odd decoding chunks do not stream exactly (a chunk starting on an odd frame "
                "makes the stream reduction take the other frames): WeNet's streaming vs its own "
                "chunk-masked forward, %s; u2ref's forward_chunk equals WeNet's at every chunk "
                "size, fixture chunks and odd ones (wenet_streaming_vs_u2ref_streaming, max rel "
                "%.1e)" % (name, "; ".join(parts), acc.v["wenet_streaming_vs_u2ref_streaming"][1]))

        if ec.get("time_reduction_layer_type", "conv1d") == "conv1d" and not ec.get("causal"):
            # The same weights, causal, dynamic chunks (depthwise kernels keep their shapes).
            found = {}
            for shift in (False, True):
                y2 = copy.deepcopy(y)
                y2["encoder_conf"].update(causal=True, do_rel_shift=shift, use_dynamic_chunk=True)
                m2, _ = init_model(types.SimpleNamespace(), wenet_config(y2, ckpt))
                m2.load_state_dict(sd, strict=False)
                m2.eval()
                cache = ReductionCache(m2.encoder)
                for x in feats:
                    for C, L in ((4, -1), (4, 1), (8, -1), (16, -1)):
                        e, _ = m2.encoder(x, torch.tensor([x.size(1)]), C, L)
                        s, _ = m2.encoder.forward_chunk_by_chunk(x, C, L)
                        with cache:
                            c, _ = m2.encoder.forward_chunk_by_chunk(x, C, L)
                        k = "rel_shift" if shift else "plain"
                        for tag, v in (("wenet", s), ("cached", c)):
                            key = "causal_conv1d_%s_%s_streaming_vs_chunk_masked" % (k, tag)
                            acc.add(key, v[0], e[0])
                            excused.add(key)
                            found[(shift, tag)] = acc.v[key][1]
            quirks.append(
                "%s made causal with dynamic chunks (in-process, same weights): WeNet's streaming "
                "vs its chunk-masked forward, max rel %.1e: the conv1d time reduction (kernel 5, "
                "padding 3) gets no cache in forward_chunk, so each chunk's first two reduced rows "
                "lose their left context; with its last 3 input rows cached (ReductionCache) "
                "%.1e; with rel_shift as in the fixture %.1e uncached and %.1e cached (the "
                "shifted position scores depend on the number of keys)" %
                (name, found[(False, "wenet")], found[(False, "cached")],
                 found[(True, "wenet")], found[(True, "cached")]))

            # Options the converter refuses; u2ref implements them.
            base = dict(ec)
            results = []
            for label, change in (("time_reduction_layer_type conv2d",
                                   {"time_reduction_layer_type": "conv2d"}),
                                  ("normalize_before + concat_after, adaptive_scale false",
                                   {"normalize_before": True, "concat_after": True,
                                    "adaptive_scale": False}),
                                  ("two nested reductions (stream, causal, dynamic chunks)",
                                   {"reduce_idx": [1, 2], "recover_idx": [2, 3],
                                    "time_reduction_layer_type": "stream", "causal": True,
                                    "do_rel_shift": False, "use_dynamic_chunk": True,
                                    "cnn_module_kernel": 8})):
                kw = dict(base, **change)
                torch.manual_seed(0)
                theirs = Theirs(y["input_dim"], **kw)
                _randomize(theirs, 17)
                theirs.eval()
                mine = Ours(y["input_dim"], squeezeformer_conf(kw))
                mine.load_state_dict(theirs.state_dict(), strict=True)
                mine.eval()
                worst = 0.0
                for x in feats:
                    xl = torch.tensor([x.size(1)])
                    worst = max(worst, _rel(mine(x, xl, -1, -1)[0], theirs(x, xl, -1, -1)[0]))
                    if kw.get("use_dynamic_chunk"):
                        for C in (4, 8):
                            worst = max(worst, _rel(mine.forward_chunk_by_chunk(x, C, -1)[0],
                                                    theirs.forward_chunk_by_chunk(x, C, -1)[0]))
                acc.v["u2ref_option_" + label.split()[0]] = (worst, worst)
                results.append("%s: max rel %.1e" % (label, worst))
            try:
                t = Theirs(y["input_dim"], **dict(base, pos_enc_layer_type="abs_pos")).eval()
                t(feats[0], torch.tensor([feats[0].size(1)]), -1, -1)
                runs = "runs"
            except (ValueError, RuntimeError, TypeError) as e:
                runs = "fails (%s: %s)" % (type(e).__name__, e)
            quirks.append(
                "%s: u2ref vs WeNet with seeded random weights on options the converter refuses "
                "or the fixtures do not cover: %s; WeNet's squeezeformer with pos_enc_layer_type "
                "abs_pos %s" % (name, "; ".join(results), runs))
