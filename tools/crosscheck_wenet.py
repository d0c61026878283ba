#!/usr/bin/env python3
"""Cross-check the u2ref fixtures against WeNet itself.

    .venv/bin/python tools/crosscheck_wenet.py --wenet-dir /tmp/wenet --fixtures tests/fixtures \
        [--checkpoints DIR] [--markdown OUT.md] [--only VARIANT ...]

WeNet is not part of this project: point --wenet-dir at a checkout of wenet-e2e/wenet (the
`wenet/` package is imported from there). Optional packages WeNet imports at module level but
never uses on this path (librosa, tqdm, whisper, ...) are replaced by inert stub modules inside
this process only.

For each fixture variant: (re)create the WeNet-layout checkpoint with tools/gen_fixtures.py
(deterministic; or read it from --checkpoints DIR written by `gen_fixtures.py
--keep-checkpoints DIR`), check that it is the checkpoint the fixture was converted from, build
WeNet's own model from the same train.yaml (old layouts rewritten to the cmvn/cmvn_conf form,
as WeNet HEAD needs), load the same final.pt, run the fixture's fbank through it and compare with
ref.safetensors / ref.json. BPE fixtures' texts (ref.json *_text) are compared with WeNet's own
BpeTokenizer.detokenize.

E-Branchformer with a causal fusion conv: WeNet's forward_chunk gives depthwise_conv_fusion no
cache, so WeNet's streaming differs from the chunk-masked reference. The script shows that this is
the whole difference: u2ref's WeNet-style streaming equals WeNet's, and WeNet's streaming with the
fusion conv's history cached in-process equals the chunk-masked reference.
"""

import argparse
import copy
import importlib
import importlib.abc
import importlib.machinery
import json
import os
import sys
import tempfile
import types

TOOLS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TOOLS)


# ----------------------------------------------------------------------------- optional-import stubs
class _StubModule(types.ModuleType):
    """Any attribute is another stub; calling gives a stub; iterating gives nothing."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        sub = _StubModule(self.__name__ + "." + name)
        sub.__path__ = []
        return sub

    def __call__(self, *args, **kwargs):
        return _StubModule(self.__name__ + "()")

    def __iter__(self):
        return iter(())


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):

    def __init__(self):
        self.names = set()

    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in self.names:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        m = _StubModule(spec.name)
        m.__path__ = []
        return m

    def exec_module(self, module):
        pass


def import_wenet(wenet_dir):
    sys.path.insert(0, os.path.abspath(wenet_dir))
    finder = _StubFinder()
    sys.meta_path.insert(0, finder)
    for _ in range(40):
        try:
            init_model = importlib.import_module("wenet.utils.init_model").init_model
            search = importlib.import_module("wenet.models.transformer.search")
            return init_model, search, sorted(finder.names)
        except ModuleNotFoundError as e:
            top = (e.name or "").split(".")[0]
            if not top or top == "wenet" or top in finder.names:
                raise
            finder.names.add(top)
            for k in [k for k in sys.modules if k == "wenet" or k.startswith("wenet.")]:
                del sys.modules[k]
    raise RuntimeError("could not import WeNet")


# ----------------------------------------------------------------------------- config
def wenet_config(y, ckpt_dir):
    """train.yaml dict -> the dict WeNet HEAD's init_model wants (new layout, absolute cmvn)."""
    c = copy.deepcopy(y)
    if "cmvn_file" in c:  # old layout: top-level cmvn_file / is_json_cmvn
        c["cmvn"] = "global_cmvn"
        c["cmvn_conf"] = {"cmvn_file": c.pop("cmvn_file"),
                          "is_json_cmvn": c.pop("is_json_cmvn", True)}
    if c.get("cmvn") == "global_cmvn":
        c["cmvn_conf"]["cmvn_file"] = os.path.join(ckpt_dir, c["cmvn_conf"]["cmvn_file"])
    for k in ("collate_conf", "raw_wav"):
        c.pop(k, None)
    for conf in ("encoder_conf", "decoder_conf"):
        c.get(conf, {}).pop("concat_after", None)  # removed from WeNet (always false here)
    if c.get("decoder") == "transformer":
        c["decoder_conf"].pop("r_num_blocks", None)
    return c


# ----------------------------------------------------------------------------- metrics
def diff(a, b):
    a = a.double()
    b = b.double()
    if a.shape != b.shape:
        return float("inf"), float("inf")
    d = (a - b).abs().max().item() if a.numel() else 0.0
    return d, d / max(b.abs().max().item(), 1e-6) if b.numel() else 0.0


class Acc:

    def __init__(self):
        self.v = {}

    def add(self, key, a, b):
        d, r = diff(a, b)
        pa, pr = self.v.get(key, (0.0, 0.0))
        self.v[key] = (max(pa, d), max(pr, r))


def is_causal(encoder):
    """A causal conv anywhere in the blocks (conv module, cgMLP, E-Branchformer fusion)."""
    return any(getattr(m, "lorder", 0) > 0 for m in encoder.encoders.modules())


class FusionCache:
    """In-process only: makes each WeNet EBranchformerEncoderLayer's causal depthwise_conv_fusion
    keep its last K-1 input columns across forward_chunk calls instead of WeNet's zero padding.
    The layer pads K-1 zero columns on the left before calling the conv; the wrapper swaps them
    for the history."""

    def __init__(self, encoder):
        self.convs = [(layer.depthwise_conv_fusion, layer.lorder)
                      for layer in encoder.encoders.modules()
                      if hasattr(layer, "depthwise_conv_fusion") and layer.lorder > 0]

    def __enter__(self):
        import torch
        self.saved = []
        for conv, lorder in self.convs:
            plain = conv.forward
            state = {"hist": None}

            def cached(t, plain=plain, state=state, lorder=lorder):
                if state["hist"] is not None:
                    t = torch.cat([state["hist"], t[:, :, lorder:]], dim=2)
                state["hist"] = t[:, :, -lorder:]
                return plain(t)
            conv.forward = cached
            self.saved.append((conv, plain))
        return self

    def __exit__(self, *exc):
        for conv, plain in self.saved:
            conv.forward = plain


class EfficientCaches:
    """In-process only: lets WeNet HEAD's EfficientConformerEncoder run at all. Its code (2022)
    passes each block's attention cache as one (1, H, t, 2*d_k) tensor [K|V]: forward_chunk
    slices, subsamples and repeat_interleaves it, StrideConformerEncoderLayer's default cache is
    such a tensor and GroupedRelPositionMultiHeadedAttention splits one. HEAD's rel/plain
    attention and ConformerEncoderLayer now take and return a (K, V) tuple. So WeNet HEAD raises
    in the full forward when a grouped block is not a stride block (a tuple reaches the grouped
    attention) or a stride block is not grouped (a tensor reaches the tuple attention), and in
    forward_chunk at every non-grouped block. This wrapper converts at each attention's boundary
    (a tensor into a tuple attention: split in halves, its new cache concatenated back; a tuple
    into the grouped attention: concatenated) and changes no number."""

    def __init__(self, encoder):
        self.mods = [layer.self_attn for layer in encoder.encoders] \
            if type(encoder).__name__ == "EfficientConformerEncoder" else []
        self.saved = []

    def __enter__(self):
        import torch

        def empty():
            return torch.zeros(0, 0, 0, 0)
        for m in self.mods:
            plain = m.forward
            grouped = hasattr(m, "group_size")

            def adapted(q, k, v, mask=torch.ones((0, 0, 0), dtype=torch.bool),
                        pos_emb=torch.empty(0), cache=None, plain=plain, grouped=grouped):
                if grouped:
                    if isinstance(cache, tuple):
                        cache = empty() if cache[0].size(0) == 0 else torch.cat(cache, dim=-1)
                    return plain(q, k, v, mask, pos_emb, empty() if cache is None else cache)
                if isinstance(cache, torch.Tensor):
                    half = cache.size(-1) // 2
                    kv = (empty(), empty()) if cache.size(0) == 0 else \
                        (cache[..., :half], cache[..., half:])
                    out, new = plain(q, k, v, mask, pos_emb, kv)
                    return out, torch.cat(new, dim=-1)
                return plain(q, k, v, mask, pos_emb, (empty(), empty()) if cache is None else cache)
            m.forward = adapted
            self.saved.append((m, plain))
        return self

    def __exit__(self, *exc):
        for m, plain in self.saved:
            m.forward = plain
        self.saved = []


# Efficient Conformer chunk sizes off the exact-streaming grid (docs/model-format.md), run on top
# of the fixture's chunks to record how WeNet's streaming differs from its chunk-masked forward.
EFFICIENT_OFF_GRID_CHUNKS = (4, 6, 8, 16)


def wenet_tokenizer(y, ckpt):
    """WeNet's own tokenizer for a BPE fixture's train.yaml (paths relative to the checkpoint)."""
    from wenet.utils.init_tokenizer import init_tokenizer
    c = copy.deepcopy(y)
    tc = c["tokenizer_conf"]
    for k in ("symbol_table_path", "bpe_path", "non_lang_syms_path"):
        if tc.get(k):
            tc[k] = os.path.join(ckpt, tc[k])
    return init_tokenizer(c)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wenet-dir", required=True)
    ap.add_argument("--fixtures", default=os.path.join(os.path.dirname(TOOLS), "tests", "fixtures"))
    ap.add_argument("--checkpoints", default=None,
                    help="dir with <variant>/{train.yaml,final.pt,...} from gen_fixtures.py "
                    "--keep-checkpoints; default: regenerate into a temp dir")
    ap.add_argument("--markdown", default=None, help="also write the table to this file")
    ap.add_argument("--only", action="append", default=None,
                    help="check only this variant (repeatable); default: every fixture variant")
    args = ap.parse_args()

    import torch
    import yaml
    from safetensors.torch import load_file

    import gen_fixtures

    torch.set_num_threads(1)
    init_model, wsearch, stubbed = import_wenet(args.wenet_dir)
    print("WeNet imported from %s (stubbed optional modules: %s)" %
          (args.wenet_dir, ", ".join(stubbed) or "none"))

    variants = sorted(d for d in os.listdir(args.fixtures)
                      if os.path.exists(os.path.join(args.fixtures, d, "ref.safetensors")))
    if args.only:
        unknown = sorted(set(args.only) - set(variants))
        if unknown:
            raise SystemExit("--only: no fixture variant %s under %s" % (unknown, args.fixtures))
        variants = [v for v in variants if v in args.only]
    rows = []
    quirks = []  # differences that are WeNet's own quirks, each shown to be the whole difference
    all_ok = True
    for name in variants:
        fdir = os.path.join(args.fixtures, name)
        ref = load_file(os.path.join(fdir, "ref.safetensors"))
        rj = json.load(open(os.path.join(fdir, "ref.json"), encoding="utf-8"))
        tmp = None
        if args.checkpoints:
            ckpt = os.path.join(args.checkpoints, name)
        else:
            tmp = tempfile.TemporaryDirectory(prefix="u2xc_")
            ckpt = tmp.name
            gen_fixtures.build_checkpoint(name, gen_fixtures.VARIANTS[name], ckpt)
        sd = torch.load(os.path.join(ckpt, "final.pt"), map_location="cpu")
        # The checkpoint must be the one the fixture model was converted from.
        model_t = load_file(os.path.join(fdir, "model", "model.safetensors"))
        # (The converter keeps only the first max_positions rows of the positional table.)
        def as_converted(k):
            t = sd[k].float()
            return t[:, :model_t[k].shape[1]] if k.endswith(".pe") else t
        mism = [k for k, v in model_t.items()
                if k in sd and not torch.equal(v.float(), as_converted(k))]
        if mism:
            raise SystemExit("%s: checkpoint differs from the fixture model (%s)" % (name, mism[:3]))

        y = yaml.safe_load(open(os.path.join(ckpt, "train.yaml"), encoding="utf-8"))
        wcfg = wenet_config(y, ckpt)
        # WeNet's load_checkpoint (torch.load(mmap=True) + load_state_dict(strict=False)); done
        # here because torch 1.13's torch.load has no mmap argument.
        model, _ = init_model(types.SimpleNamespace(), wcfg)
        missing, unexpected = model.load_state_dict(sd, strict=False)
        notes = []
        if missing:
            notes.append("missing in checkpoint (WeNet keeps its own): %s" %
                         sorted({k.split(".")[-1] for k in missing}))
        if unexpected:
            notes.append("unused checkpoint tensors: %s" %
                         sorted({k.split(".")[-2] for k in unexpected}))
        print("%s: %s" % (name, "; ".join(notes) or "all tensors loaded"))
        model.eval()
        ctc_w, rev_w, beam = rj["ctc_weight"], rj["reverse_weight"], rj["beam"]
        bi = hasattr(model.decoder, "right_decoder")
        acc = Acc()
        same = {"greedy": True, "nbest": True, "rescoring": True, "decode": True}
        max_score_diff = 0.0
        captured = []
        hooks = [layer.register_forward_hook(lambda m, i, o: captured.append(o[0]))
                 for layer in model.encoder.encoders]
        # (A squeezeformer's block 0 input is preln's output, after the subsampling.)
        hooks.append(getattr(model.encoder, "preln", model.encoder.embed).register_forward_hook(
            lambda m, i, o: captured.insert(0, o if isinstance(o, torch.Tensor) else o[0])))
        causal = is_causal(model.encoder)
        # E-Branchformer's causal fusion conv is not cached by WeNet's forward_chunk (see above).
        fusion = FusionCache(model.encoder)
        efficient = EfficientCaches(model.encoder).__enter__()
        off_grid_frames = {}
        texts = "greedy_text" in rj["utts"][0]
        if texts:
            same["text"] = True
            tokenizer = wenet_tokenizer(y, ckpt)
        from u2ref.config import normalize_config
        from u2ref.model import U2Model
        ours = U2Model.from_checkpoint(normalize_config(y), sd)
        with torch.no_grad():
            for u, utt in enumerate(rj["utts"]):
                x = ref["u%d.fbank" % u].unsqueeze(0)
                xl = torch.tensor([x.size(1)])
                captured.clear()
                enc, mask = model.encoder(x, xl, decoding_chunk_size=-1,
                                          num_decoding_left_chunks=-1)
                acc.add("embed", captured[0][0], ref["u%d.embed" % u])
                for j in range(len(model.encoder.encoders)):
                    acc.add("layers", captured[1 + j][0], ref["u%d.layer%d" % (u, j)])
                acc.add("encoder_out", enc[0], ref["u%d.encoder_out" % u])
                lens = mask.squeeze(1).sum(1)
                logp = model.ctc.log_softmax(enc)
                acc.add("ctc_logp", logp[0], ref["u%d.ctc_logp" % u])
                # Searches run by WeNet on the fixture's log-probs (isolates search from encoder).
                rlogp = ref["u%d.ctc_logp" % u].unsqueeze(0)
                g = wsearch.ctc_greedy_search(rlogp, lens)[0].tokens
                same["greedy"] &= list(g) == utt["greedy"]
                pb = wsearch.ctc_prefix_beam_search(rlogp, lens, beam)[0]
                exp = utt["prefix_beam"]
                same["nbest"] &= [list(h) for h in pb.nbest] == [e["tokens"] for e in exp]
                for s, e in zip(pb.nbest_scores, exp):
                    max_score_diff = max(max_score_diff, abs(s - e["score"]))
                # Decoder scores with WeNet's forward_attention_decoder on the fixture's n-best.
                hyps = [e["tokens"] for e in exp]
                hp = torch.nn.utils.rnn.pad_sequence(
                    [torch.tensor(h, dtype=torch.long) for h in hyps], True, model.ignore_id)
                hl = torch.tensor([len(h) for h in hyps], dtype=torch.long)
                from wenet.utils.common import add_sos_eos
                hp, _ = add_sos_eos(hp, model.sos, model.eos, model.ignore_id)
                dec, rdec = model.forward_attention_decoder(hp, hl + 1, enc,
                                                            1.0 if bi else 0.0)
                l2r = torch.tensor([sum(dec[i][j][w].item() for j, w in enumerate(h)) +
                                    dec[i][len(h)][model.eos].item() for i, h in enumerate(hyps)])
                acc.add("l2r_score", l2r, ref["u%d.l2r_score" % u])
                if bi:
                    r2l = torch.tensor([
                        sum(rdec[i][len(h) - j - 1][w].item() for j, w in enumerate(h)) +
                        rdec[i][len(h)][model.eos].item() for i, h in enumerate(hyps)])
                    acc.add("r2l_score", r2l, ref["u%d.r2l_score" % u])
                rs = wsearch.attention_rescoring(model, [pb], enc, lens, ctc_w, rev_w)[0]
                same["rescoring"] &= list(rs.tokens) == utt["rescoring"]["tokens"]
                # WeNet end to end (its own encoder output) through ASRModel.decode.
                res = model.decode(["ctc_greedy_search", "ctc_prefix_beam_search",
                                    "attention_rescoring"], x, xl, beam_size=beam,
                                   ctc_weight=ctc_w, reverse_weight=rev_w)
                same["decode"] &= (
                    list(res["ctc_greedy_search"][0].tokens) == utt["greedy"] and
                    list(res["ctc_prefix_beam_search"][0].tokens) == exp[0]["tokens"] and
                    list(res["attention_rescoring"][0].tokens) == utt["rescoring"]["tokens"])
                if texts:  # WeNet's text of WeNet's own hypotheses
                    for mode, key in (("ctc_greedy_search", "greedy_text"),
                                      ("ctc_prefix_beam_search", "prefix_beam_text"),
                                      ("attention_rescoring", "rescoring_text")):
                        text = tokenizer.detokenize(list(res[mode][0].tokens))[0]
                        same["text"] &= text == utt[key]
                for C, L in rj.get("chunks", []):
                    key = "u%d.chunk%d_left%d.encoder_out" % (u, C, L)
                    e, _ = model.encoder(x, xl, decoding_chunk_size=C,
                                         num_decoding_left_chunks=L)
                    acc.add("chunk_masked", e[0], ref[key])
                    if causal and fusion.convs:
                        s, _ = model.encoder.forward_chunk_by_chunk(x, C, L)
                        acc.add("wenet_streaming_vs_chunk_ref", s[0], ref[key])
                        o, _ = ours.encoder.forward_chunk_by_chunk(x, C, L)
                        acc.add("wenet_streaming_vs_u2ref_streaming", s[0], o[0])
                        with fusion:
                            s, _ = model.encoder.forward_chunk_by_chunk(x, C, L)
                        acc.add("streaming_vs_chunk_ref", s[0], ref[key])
                    elif causal:
                        s, _ = model.encoder.forward_chunk_by_chunk(x, C, L)
                        acc.add("streaming_vs_chunk_ref", s[0], ref[key])
                if efficient.mods and causal and rj.get("chunks"):
                    for C in EFFICIENT_OFF_GRID_CHUNKS:
                        e, _ = model.encoder(x, xl, decoding_chunk_size=C,
                                             num_decoding_left_chunks=-1)
                        s, _ = model.encoder.forward_chunk_by_chunk(x, C, -1)
                        o, _ = ours.encoder.forward_chunk_by_chunk(x, C, -1)
                        acc.add("wenet_streaming_vs_u2ref_streaming", s[0], o[0])
                        if s.shape == e.shape:
                            acc.add("off_grid_c%d" % C, s[0], e[0])
                        else:
                            off_grid_frames.setdefault(C, []).append((s.size(1), e.size(1)))
        for h in hooks:
            h.remove()
        # Training losses: WeNet ASRModel.forward vs U2Model.forward_train on a padded batch of
        # the three utterances (eval mode: no dropout; same torch seed for the random chunk).
        feats = [ref["u%d.fbank" % u] for u in range(len(rj["utts"]))]
        xb = torch.nn.utils.rnn.pad_sequence(feats, True)
        xlb = torch.tensor([f.size(0) for f in feats])
        g = torch.Generator().manual_seed(7)
        tl = torch.tensor([4, 6, 3])
        text = torch.full((3, 6), -1, dtype=torch.long)
        for b in range(3):
            text[b, :tl[b]] = torch.randint(3, model.vocab_size - 1, (int(tl[b]),), generator=g)
        with torch.no_grad():
            torch.manual_seed(11)
            w = model({"feats": xb, "feats_lengths": xlb, "target": text, "target_lengths": tl,
                       "langs": None, "tasks": None}, torch.device("cpu"))
            torch.manual_seed(11)
            o = ours.forward_train(xb, xlb, text, tl)
        for k in ("loss", "loss_ctc", "loss_att", "th_accuracy"):
            acc.add("train_" + k, o[k].reshape(1), w[k].reshape(1))
        excused = set()
        if type(model.encoder).__name__ == "SqueezeformerEncoder":
            import crosscheck_squeezeformer
            crosscheck_squeezeformer.extras(name, y, ckpt, sd, ref, rj, ours, model, init_model,
                                            wenet_config, acc, quirks, excused)
        if type(model.encoder.embed).__name__ == "Conv2dSubsampling2":
            # WeNet's Conv2dSubsampling2 subsamples the padding mask with [:-2:2], which marks one
            # encoder frame too many as valid for every utterance shorter than the batch (a frame
            # computed from padding). u2ref and the C++ engine use the convolution's true output
            # length, (L - 1) // 2. Show that this is the whole difference: the same loss with
            # WeNet's mask taken as [2::2] (the conv2d front's rule) must match exactly.
            embed, plain_forward = model.encoder.embed, model.encoder.embed.forward

            def true_length_forward(x, x_mask, offset=0):
                y, pos, _ = plain_forward(x, x_mask, offset)
                return y, pos, x_mask[:, :, 2::2]
            embed.forward = true_length_forward
            with torch.no_grad():
                torch.manual_seed(11)
                wt = model({"feats": xb, "feats_lengths": xlb, "target": text, "target_lengths": tl,
                            "langs": None, "tasks": None}, torch.device("cpu"))
            embed.forward = plain_forward
            for k in ("loss", "loss_ctc", "loss_att", "th_accuracy"):
                acc.add("train_" + k + "_true_len", o[k].reshape(1), wt[k].reshape(1))
                excused.add("train_" + k)
            quirks.append("%s: WeNet's padded-batch training loss counts one padding frame per shorter "
                         "utterance (Conv2dSubsampling2 mask [:-2:2]); with true lengths it matches "
                         "(train_*_true_len, max rel diff %.1e)" %
                         (name, max(acc.v["train_%s_true_len" % k][1]
                                    for k in ("loss", "loss_ctc", "loss_att", "th_accuracy"))))
        if fusion.convs and causal and rj.get("chunks"):
            excused.add("wenet_streaming_vs_chunk_ref")
            quirks.append(
                "%s: WeNet's forward_chunk restarts the causal depthwise_conv_fusion from zeros at "
                "every chunk, so its streaming differs from the chunk-masked reference "
                "(wenet_streaming_vs_chunk_ref, max rel %.1e); u2ref's forward_chunk does the same "
                "(wenet_streaming_vs_u2ref_streaming, max rel %.1e), and with the fusion conv's "
                "last K-1 input columns cached in-process WeNet's streaming equals the reference "
                "(streaming_vs_chunk_ref, max rel %.1e)" %
                (name, acc.v["wenet_streaming_vs_chunk_ref"][1],
                 acc.v["wenet_streaming_vs_u2ref_streaming"][1],
                 acc.v["streaming_vs_chunk_ref"][1]))
        if efficient.mods:
            efficient.__exit__()
            from u2ref.efficient_conformer import streaming_chunk_multiple
            quirks.append("%s: WeNet HEAD's efficientConformer runs only with its attention caches "
                          "adapted in-process (EfficientCaches: tuple vs [K|V] tensor caches; no "
                          "number changed)" % name)
            if causal and rj.get("chunks"):
                m = streaming_chunk_multiple(ours.encoder.conf)
                parts = []
                for C in EFFICIENT_OFF_GRID_CHUNKS:
                    if "off_grid_c%d" % C in acc.v:
                        excused.add("off_grid_c%d" % C)
                        parts.append("C=%d: max abs %.2g (rel %.1e)" %
                                     ((C,) + acc.v["off_grid_c%d" % C]))
                    if C in off_grid_frames:
                        parts.append("C=%d: %s frames instead of %s" % (
                            C, "/".join(str(a) for a, _ in off_grid_frames[C]),
                            "/".join(str(b) for _, b in off_grid_frames[C])))
                quirks.append(
                    "%s: chunk sizes that are not multiples of %d (the product of the strides and "
                    "group_size x rate of each grouped block): WeNet's streaming vs its own "
                    "chunk-masked forward: %s; u2ref's forward_chunk equals WeNet's at every chunk "
                    "size (wenet_streaming_vs_u2ref_streaming, max rel %.1e)" %
                    (name, m, "; ".join(parts), acc.v["wenet_streaming_vs_u2ref_streaming"][1]))
        if tmp:
            tmp.cleanup()
        ok = all(same.values()) and all(r <= 1e-5 for k, (_, r) in acc.v.items()
                                        if k != "streaming_vs_chunk_ref" and k not in excused) and \
            acc.v.get("streaming_vs_chunk_ref", (0, 0))[1] <= 1e-4
        all_ok &= ok
        rows.append((name, acc.v, same, max_score_diff, ok))

    keys = ["embed", "layers", "encoder_out", "ctc_logp", "l2r_score", "r2l_score", "chunk_masked",
            "streaming_vs_chunk_ref", "train_loss_ctc", "train_loss_att", "train_th_accuracy"]
    lines = ["| variant | " + " | ".join(keys) + " | prefix-beam score | greedy | n-best | "
             "rescoring | decode() | text | ok |",
             "|---" * (len(keys) + 8) + "|"]
    for name, v, same, sdiff, ok in rows:
        cells = []
        for k in keys:
            cells.append("%.1e / %.1e" % v[k] if k in v else "n/a")
        lines.append("| %s | %s | %.1e | %s | %s | %s | %s | %s | %s |" % (
            name, " | ".join(cells), sdiff, *["same" if same[k] else "DIFF"
                                                for k in ("greedy", "nbest", "rescoring",
                                                          "decode")],
            ("same" if same["text"] else "DIFF") if "text" in same else "n/a",
            "yes" if ok else "NO"))
    table = "\n".join(lines + [""] + ["* " + n for n in quirks])
    print("cells: max abs diff / max rel diff (|a-b|max / |ref|max) of WeNet vs the fixture")
    print(table)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(table + "\n")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
