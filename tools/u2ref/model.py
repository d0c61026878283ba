"""U2Model: a PyTorch re-implementation of WeNet's ASRModel (U2 / U2++), state-dict compatible.

Public API (other tools depend on these names; keep them stable):

    from u2ref.config import normalize_config   # train.yaml dict (old or new layout) -> canonical
    from u2ref.model import U2Model

    model = U2Model(cfg)
        cfg: a train.yaml dict or a canonical dict; keys input_dim, output_dim, encoder,
        encoder_conf, decoder, decoder_conf, model_conf{ctc_weight, lsm_weight, reverse_weight,
        length_normalized_loss}, optional tokenizer_conf.special_tokens (sos/eos; else V-1).
        Dropouts from the confs are active in train(). A GlobalCMVN module is created unless
        the config explicitly has no CMVN (a normalized yaml without cmvn/cmvn_file).
    model.encoder.global_cmvn.mean / .istd       # float32 buffers (input_dim,)

    out = model.forward_train(speech, speech_lengths, text, text_lengths)
        speech (B,T,I) float fbank, text (B,L) int padded with -1 ->
        dict(loss, loss_ctc, loss_att, th_accuracy) with WeNet semantics:
        loss = ctc_weight*ctc + (1-ctc_weight)*att, att = (1-rw)*l2r + rw*r2l, label smoothing
        lsm_weight, CTC loss summed / batch size, random dynamic chunk masks when
        encoder_conf.use_dynamic_chunk (torch global RNG, as WeNet).

    hyps = model.decode(speech, speech_lengths, mode, beam_size=10, ctc_weight=0.0,
                        reverse_weight=0.0, decoding_chunk_size=-1, num_decoding_left_chunks=-1)
        mode in {"ctc_greedy_search", "ctc_prefix_beam_search", "attention_rescoring"}
        -> list (batch) of token-id lists.

    torch.save(model.state_dict(), "final.pt")  # WeNet HEAD state-dict names; loads in WeNet

Lower-level helpers used by the fixture generator / cross-check:
    model.encode(speech, lens, decoding_chunk_size=-1, num_decoding_left_chunks=-1,
                 return_layers=False) -> (encoder_out, mask[, layers])
    model.ctc_logprobs(encoder_out) -> (B,T',V) log-softmax
    model.forward_attention_decoder(hyps, encoder_out_1) -> (l2r_logp, r2l_logp or None)
    model.rescore(nbest, encoder_out_1, ctc_weight, reverse_weight) -> (index, finals, scores)
    U2Model.from_checkpoint(cfg, state_dict) -> model in eval(), tolerant of old checkpoints
"""

from typing import Dict, List

import torch
from torch import nn

from .branchformer import BranchformerEncoder, EBranchformerEncoder
from .efficient_conformer import EfficientConformerEncoder
from .config import normalize_config, sos_eos_ids
from .modules import (CTC, BiTransformerDecoder, ConformerEncoder, TransformerDecoder,
                      TransformerEncoder, make_pe_table)
from .squeezeformer import SqueezeformerEncoder
from .search import (ctc_greedy_search, ctc_prefix_beam_search, decoder_scores,
                     pad_hyps_for_decoder, rescoring_select)

IGNORE_ID = -1


class LabelSmoothingLoss(nn.Module):
    """WeNet's KL label-smoothing loss; normalised by batch size unless normalize_length."""

    def __init__(self, size: int, padding_idx: int, smoothing: float,
                 normalize_length: bool = False):
        super().__init__()
        self.criterion = nn.KLDivLoss(reduction="none")
        self.padding_idx = padding_idx
        self.confidence = 1.0 - smoothing
        self.smoothing = smoothing
        self.size = size
        self.normalize_length = normalize_length

    def forward(self, x, target):
        batch_size = x.size(0)
        x = x.view(-1, self.size)
        target = target.view(-1)
        true_dist = torch.zeros_like(x)
        true_dist.fill_(self.smoothing / (self.size - 1))
        ignore = target == self.padding_idx
        total = len(target) - ignore.sum().item()
        target = target.masked_fill(ignore, 0)
        true_dist.scatter_(1, target.unsqueeze(1), self.confidence)
        kl = self.criterion(torch.log_softmax(x, dim=1), true_dist)
        denom = total if self.normalize_length else batch_size
        return kl.masked_fill(ignore.unsqueeze(1), 0).sum() / denom


def add_sos_eos(ys_pad, sos: int, eos: int, ignore_id: int):
    ys = [y[y != ignore_id] for y in ys_pad]
    _sos = torch.tensor([sos], dtype=torch.long, device=ys_pad.device)
    _eos = torch.tensor([eos], dtype=torch.long, device=ys_pad.device)
    ys_in = [torch.cat([_sos, y.long()]) for y in ys]
    ys_out = [torch.cat([y.long(), _eos]) for y in ys]
    return (nn.utils.rnn.pad_sequence(ys_in, True, eos),
            nn.utils.rnn.pad_sequence(ys_out, True, ignore_id))


def reverse_pad_list(ys_pad, ys_lens, pad_value: float = -1.0):
    return nn.utils.rnn.pad_sequence([torch.flip(y.int()[:i], [0]) for y, i in zip(ys_pad, ys_lens)],
                                     True, pad_value)


def th_accuracy(pad_outputs, pad_targets, ignore_label: int):
    pad_pred = pad_outputs.view(pad_targets.size(0), pad_targets.size(1),
                                pad_outputs.size(1)).argmax(2)
    mask = pad_targets != ignore_label
    num = torch.sum(pad_pred.masked_select(mask) == pad_targets.masked_select(mask))
    return (num / torch.sum(mask)).detach()


def _uses_concat_linear(cfg):
    c = normalize_config(cfg)
    return c["encoder"] == "squeezeformer" and bool(c["encoder_conf"]["concat_after"])


class U2Model(nn.Module):

    def __init__(self, cfg: dict):
        super().__init__()
        # An explicit `cmvn: None` (what normalize_config gives for a yaml without CMVN) means
        # no CMVN module, as in WeNet; otherwise an identity GlobalCMVN the caller fills.
        want_cmvn = not ("cmvn" in cfg and cfg["cmvn"] in (None, False))
        c = normalize_config(cfg)
        self.cfg = c
        self.vocab_size = c["output_dim"]
        I = c["input_dim"]
        ec = c["encoder_conf"]
        if c["encoder"] == "conformer":
            self.encoder = ConformerEncoder(I, ec)
        elif c["encoder"] == "transformer":
            self.encoder = TransformerEncoder(I, ec)
        elif c["encoder"] == "branchformer":
            self.encoder = BranchformerEncoder(I, ec)
        elif c["encoder"] == "e_branchformer":
            self.encoder = EBranchformerEncoder(I, ec)
        elif c["encoder"] == "squeezeformer":
            self.encoder = SqueezeformerEncoder(I, ec)
        elif c["encoder"] == "efficientConformer":
            self.encoder = EfficientConformerEncoder(I, ec)
        else:
            raise ValueError("encoder: %r is not supported (conformer, transformer, branchformer, "
                             "e_branchformer, squeezeformer, efficientConformer)" %
                             (c["encoder"],))
        if want_cmvn:
            self.encoder.set_cmvn(torch.zeros(I), torch.ones(I))
        D = ec["output_size"]
        if c["decoder"] == "bitransformer":
            self.decoder = BiTransformerDecoder(self.vocab_size, D, c["decoder_conf"])
        elif c["decoder"] == "transformer":
            self.decoder = TransformerDecoder(self.vocab_size, D, c["decoder_conf"])
        else:
            raise ValueError("decoder: %r is not supported (transformer, bitransformer)" %
                             (c["decoder"],))
        self.blank_id = c["ctc_conf"]["ctc_blank_id"]
        self.ctc = CTC(self.vocab_size, D, self.blank_id)
        mc = c["model_conf"]
        self.ctc_weight = float(mc["ctc_weight"])
        self.reverse_weight = float(mc["reverse_weight"])
        self.lsm_weight = float(mc["lsm_weight"])
        self.sos, self.eos = sos_eos_ids(c)
        self.ignore_id = IGNORE_ID
        self.criterion_att = LabelSmoothingLoss(self.vocab_size, IGNORE_ID, self.lsm_weight,
                                                bool(mc["length_normalized_loss"]))

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_checkpoint(cls, cfg: dict, state_dict: Dict[str, torch.Tensor], strict_shapes=True):
        """Builds the model for `cfg` and loads a WeNet state dict (old or new): drops
        concat_linear*, fills missing pe buffers with the float32 table, takes CMVN buffers
        from the checkpoint when present. Returns the model in eval()."""
        # concat_linear: unused legacy tensors; frontend.*: the converter's fbank tables (no weights).
        # (A squeezeformer with concat_after uses its concat_linear: kept when the model has it.)
        keep_concat = _uses_concat_linear(cfg)
        sd = {k: v for k, v in state_dict.items()
              if not k.startswith("frontend.") and ("concat_linear" not in k or keep_concat)}
        has_cmvn = "encoder.global_cmvn.mean" in sd
        c = dict(normalize_config(cfg))
        if not has_cmvn:
            c["cmvn"] = None
        elif c.get("cmvn") is None:
            c["cmvn"] = {"cmvn_file": None, "is_json_cmvn": True}
        model = cls(c)
        own = model.state_dict()
        enc_pe = sd.get("encoder.embed.pos_enc.pe")
        for k, v in own.items():
            if k.endswith(".pe") and (k not in sd or sd[k].shape != v.shape):
                # Decoders share the encoder's table (same D); a missing or shortened table
                # (convert.py --max-positions) comes from the float32 formula, whose rows are
                # bit-identical to WeNet's buffer.
                sd[k] = enc_pe if enc_pe is not None and enc_pe.shape == v.shape else \
                    make_pe_table(v.size(2), v.size(1))
            if k.endswith("num_batches_tracked") and k not in sd:
                sd[k] = v
        for k in [k for k in sd if k.endswith(".pe") and k not in own]:
            del sd[k]  # e.g. no_pos: the model dir always carries the table, the encoder has none
        missing = [k for k in own if k not in sd]
        unexpected = [k for k in sd if k not in own]
        if missing or unexpected:
            raise KeyError("checkpoint does not match the config: missing %s, unexpected %s" %
                           (missing[:5], unexpected[:5]))
        for k, v in own.items():
            if tuple(sd[k].shape) != tuple(v.shape):
                raise ValueError("checkpoint tensor %s has shape %s, config wants %s" %
                                 (k, tuple(sd[k].shape), tuple(v.shape)))
        model.load_state_dict(sd, strict=True)
        model.eval()
        return model

    # ------------------------------------------------------------------ training
    def forward_train(self, speech, speech_lengths, text, text_lengths):
        encoder_out, encoder_mask = self.encoder(speech, speech_lengths, 0, -1)
        encoder_out_lens = encoder_mask.squeeze(1).sum(1)
        loss_ctc = None
        if self.ctc_weight != 0.0:
            loss_ctc, _ = self.ctc(encoder_out, encoder_out_lens, text, text_lengths)
        loss_att, acc_att = None, None
        if self.ctc_weight != 1.0:
            loss_att, acc_att = self._calc_att_loss(encoder_out, encoder_mask, text, text_lengths)
        if loss_ctc is None:
            loss = loss_att
        elif loss_att is None:
            loss = loss_ctc
        else:
            loss = self.ctc_weight * loss_ctc + (1 - self.ctc_weight) * loss_att
        return {"loss": loss, "loss_att": loss_att, "loss_ctc": loss_ctc, "th_accuracy": acc_att}

    def _calc_att_loss(self, encoder_out, encoder_mask, ys_pad, ys_pad_lens):
        ys_in_pad, ys_out_pad = add_sos_eos(ys_pad, self.sos, self.eos, self.ignore_id)
        ys_in_lens = ys_pad_lens + 1
        r_ys_pad = reverse_pad_list(ys_pad, ys_pad_lens, float(self.ignore_id))
        r_ys_in_pad, r_ys_out_pad = add_sos_eos(r_ys_pad, self.sos, self.eos, self.ignore_id)
        decoder_out, r_decoder_out, _ = self.decoder(encoder_out, encoder_mask, ys_in_pad,
                                                     ys_in_lens, r_ys_in_pad, self.reverse_weight)
        loss_att = self.criterion_att(decoder_out, ys_out_pad)
        r_loss_att = torch.tensor(0.0)
        if self.reverse_weight > 0.0:
            r_loss_att = self.criterion_att(r_decoder_out, r_ys_out_pad)
        loss_att = loss_att * (1 - self.reverse_weight) + r_loss_att * self.reverse_weight
        acc = th_accuracy(decoder_out.view(-1, self.vocab_size), ys_out_pad, self.ignore_id)
        return loss_att, acc

    # ------------------------------------------------------------------ inference pieces
    def encode(self, speech, speech_lengths, decoding_chunk_size: int = -1,
               num_decoding_left_chunks: int = -1, return_layers: bool = False):
        if decoding_chunk_size == 0:
            raise ValueError("decoding_chunk_size must be -1 (full context) or > 0")
        return self.encoder(speech, speech_lengths, decoding_chunk_size, num_decoding_left_chunks,
                            return_layers)

    def ctc_logprobs(self, encoder_out):
        return self.ctc.log_softmax(encoder_out)

    def has_right_decoder(self):
        return isinstance(self.decoder, BiTransformerDecoder) and \
            len(self.decoder.right_decoder.decoders) > 0

    def forward_attention_decoder(self, hyps, encoder_out, with_r2l: bool = True):
        """hyps: list of token lists; encoder_out (1,T',D). -> (l2r logp (N,L+1,V),
        r2l logp (N,L+1,V) or None)."""
        n = len(hyps)
        ys, lens, rys = pad_hyps_for_decoder(hyps, self.sos, self.eos)
        mem = encoder_out.repeat(n, 1, 1)
        mem_mask = torch.ones(n, 1, mem.size(1), dtype=torch.bool, device=mem.device)
        rw = 1.0 if (with_r2l and self.has_right_decoder()) else 0.0
        l_x, r_x, _ = self.decoder(mem, mem_mask, ys, lens, rys, rw)
        l_logp = torch.log_softmax(l_x, dim=-1)
        r_logp = torch.log_softmax(r_x, dim=-1) if rw > 0 else None
        return l_logp, r_logp

    def rescore(self, nbest, encoder_out, ctc_weight: float = 0.0, reverse_weight: float = 0.0):
        """nbest: [(tokens, ctc_score)]; encoder_out (1,T',D) (valid frames only).
        -> (best index, final scores, [(l2r, r2l or None)] as floats)."""
        hyps = [list(h) for h, _ in nbest]
        ctc_scores = [s for _, s in nbest]
        l_logp, r_logp = self.forward_attention_decoder(hyps, encoder_out,
                                                        with_r2l=reverse_weight > 0)
        sc = decoder_scores(l_logp, r_logp, hyps, self.eos)
        idx, finals = rescoring_select(sc, ctc_scores, ctc_weight, reverse_weight)
        plain = [(float(a), None if b is None else float(b)) for a, b in sc]
        return idx, finals, plain

    @torch.no_grad()
    def decode(self, speech, speech_lengths, mode: str, beam_size: int = 10,
               ctc_weight: float = 0.0, reverse_weight: float = 0.0,
               decoding_chunk_size: int = -1, num_decoding_left_chunks: int = -1) -> List[List[int]]:
        if mode not in ("ctc_greedy_search", "ctc_prefix_beam_search", "attention_rescoring"):
            raise ValueError("decode mode %r is not supported" % (mode,))
        if reverse_weight > 0.0 and not self.has_right_decoder():
            raise ValueError("reverse_weight > 0 needs a bitransformer decoder with r_num_blocks > 0")
        enc, mask = self.encode(speech, speech_lengths, decoding_chunk_size,
                                num_decoding_left_chunks)
        lens = mask.squeeze(1).sum(1)
        logp = self.ctc_logprobs(enc)
        if mode == "ctc_greedy_search":
            return ctc_greedy_search(logp, lens, self.blank_id)
        nbests = ctc_prefix_beam_search(logp, lens, beam_size, self.blank_id)
        if mode == "ctc_prefix_beam_search":
            return [list(nb[0][0]) for nb in nbests]
        out = []
        for b, nb in enumerate(nbests):
            idx, _, _ = self.rescore(nb, enc[b:b + 1, :int(lens[b])], ctc_weight, reverse_weight)
            out.append(list(nb[idx][0]))
        return out
