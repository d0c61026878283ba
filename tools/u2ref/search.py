"""CTC greedy search, CTC prefix beam search and attention rescoring, as WeNet's Python does them.

* prefix beam search: double precision (Python floats), first_beam = beam = beam_size, candidates
  in torch.topk order, prefixes kept in dict insertion order, stable sort by score (ties keep
  insertion order), log_add as WeNet's utils.common.log_add.
* rescoring: scores accumulated as float32 torch scalars, exactly like WeNet's loop (the
  decoder's log-prob entries are float32 0-d tensors), first maximum wins; att = L2R only when
  reverse_weight == 0 (no (1 - rw) factor).
"""

import math
from typing import Dict, List, Sequence, Tuple

import torch

NEG_INF = -float("inf")


def log_add(*args: float) -> float:
    if all(a == NEG_INF for a in args):
        return NEG_INF
    a_max = max(args)
    return a_max + math.log(sum(math.exp(a - a_max) for a in args))


def remove_duplicates_and_blank(hyp: Sequence[int], blank_id: int = 0) -> List[int]:
    out = []
    cur = 0
    while cur < len(hyp):
        if hyp[cur] != blank_id:
            out.append(hyp[cur])
        prev = cur
        while cur < len(hyp) and hyp[cur] == hyp[prev]:
            cur += 1
    return out


def ctc_greedy_search(ctc_logp: torch.Tensor, ctc_lens: torch.Tensor,
                      blank_id: int = 0) -> List[List[int]]:
    """ctc_logp (B,T,V) -> list of token lists (padded frames count as blank)."""
    B, T = ctc_logp.size(0), ctc_logp.size(1)
    _, idx = ctc_logp.topk(1, dim=2)
    idx = idx.view(B, T)
    pad = torch.arange(T, device=ctc_lens.device).unsqueeze(0) >= ctc_lens.view(-1, 1)
    idx = idx.masked_fill(pad, blank_id)
    return [remove_duplicates_and_blank(row.tolist(), blank_id) for row in idx]


class _Prefix:
    __slots__ = ("s", "ns")

    def __init__(self):
        self.s = NEG_INF
        self.ns = NEG_INF

    def score(self):
        return log_add(self.s, self.ns)


def ctc_prefix_beam_search_one(ctc_logp: torch.Tensor, num_t: int, beam_size: int,
                               blank_id: int = 0) -> List[Tuple[Tuple[int, ...], float]]:
    """ctc_logp (T,V) of one utterance -> n-best [(prefix, score)], best first."""
    root = _Prefix()
    root.s, root.ns = 0.0, NEG_INF
    cur_hyps = [((), root)]
    for t in range(num_t):
        logp = ctc_logp[t]
        next_hyps: Dict[Tuple[int, ...], _Prefix] = {}

        def get(p):
            e = next_hyps.get(p)
            if e is None:
                e = _Prefix()
                next_hyps[p] = e
            return e

        _, top_idx = logp.topk(min(beam_size, logp.size(-1)))  # WeNet: beam <= V required
        for u in top_idx:
            u = u.item()
            prob = logp[u].item()
            for prefix, ps in cur_hyps:
                last = prefix[-1] if len(prefix) > 0 else None
                if u == blank_id:
                    e = get(prefix)
                    e.s = log_add(e.s, ps.score() + prob)
                elif u == last:
                    e1 = get(prefix)
                    e1.ns = log_add(e1.ns, ps.ns + prob)
                    e2 = get(prefix + (u,))
                    e2.ns = log_add(e2.ns, ps.s + prob)
                else:
                    e = get(prefix + (u,))
                    e.ns = log_add(e.ns, ps.score() + prob)
        ordered = sorted(next_hyps.items(), key=lambda x: x[1].score(), reverse=True)
        cur_hyps = ordered[:beam_size]
    return [(p, ps.score()) for p, ps in cur_hyps]


def ctc_prefix_beam_search(ctc_logp: torch.Tensor, ctc_lens: torch.Tensor, beam_size: int,
                           blank_id: int = 0):
    """(B,T,V) -> per utterance n-best [(tokens tuple, score)]."""
    return [
        ctc_prefix_beam_search_one(ctc_logp[b], int(ctc_lens[b]), beam_size, blank_id)
        for b in range(ctc_logp.size(0))
    ]


def pad_hyps_for_decoder(hyps: Sequence[Sequence[int]], sos: int, eos: int):
    """-> (ys_in (N,L+1) = [sos, hyp, eos-padding], ys_in_lens (N,) = len+1,
    r_ys_in (N,L+1) = [sos, reversed hyp, eos-padding]) as WeNet's rescoring builds them."""
    n = len(hyps)
    maxlen = max([len(h) for h in hyps] + [0])
    ys = torch.full((n, maxlen + 1), eos, dtype=torch.long)
    rys = torch.full((n, maxlen + 1), eos, dtype=torch.long)
    ys[:, 0] = sos
    rys[:, 0] = sos
    for i, h in enumerate(hyps):
        if len(h):
            ys[i, 1:len(h) + 1] = torch.tensor(list(h), dtype=torch.long)
            rys[i, 1:len(h) + 1] = torch.tensor(list(h)[::-1], dtype=torch.long)
    lens = torch.tensor([len(h) + 1 for h in hyps], dtype=torch.long)
    return ys, lens, rys


def decoder_scores(l2r_logp: torch.Tensor, r2l_logp, hyps, eos: int):
    """Per-hyp (L2R, R2L) sums as float32 0-d tensors (R2L None when r2l_logp is None).

    L2R = sum_j logp_L[j, y_j] + logp_L[n, eos]; R2L = sum_j logp_R[n-1-j, y_j] + logp_R[n, eos]
    (accumulated in WeNet's order)."""
    out = []
    for i, hyp in enumerate(hyps):
        score = 0.0
        for j, w in enumerate(hyp):
            score += l2r_logp[i][j][w]
        score += l2r_logp[i][len(hyp)][eos]
        r_score = None
        if r2l_logp is not None:
            r_score = 0.0
            for j, w in enumerate(hyp):
                r_score += r2l_logp[i][len(hyp) - j - 1][w]
            r_score += r2l_logp[i][len(hyp)][eos]
        out.append((score, r_score))
    return out


def rescoring_select(scores, ctc_scores, ctc_weight: float, reverse_weight: float):
    """WeNet's final scores and the first argmax. `scores` from decoder_scores."""
    finals = []
    best_score, best_index = NEG_INF, 0
    for i, (l2r, r2l) in enumerate(scores):
        score = l2r
        if reverse_weight > 0 and r2l is not None:
            score = score * (1 - reverse_weight) + r2l * reverse_weight
        score = score + ctc_scores[i] * ctc_weight
        s = float(score)
        finals.append(s)
        if s > best_score:
            best_score = s
            best_index = i
    return best_index, finals
