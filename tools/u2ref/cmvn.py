"""Global CMVN statistics: WeNet's JSON format and Kaldi text format (binary Kaldi is refused).

Both compute, in double precision, mean = sum/n, var = sumsq/n - mean^2 floored at 1e-20,
istd = 1/sqrt(var), and return float32 numpy arrays, as WeNet's `load_cmvn` does.
"""

import json
import math

import numpy as np


class CmvnError(ValueError):
    pass


def _finish(sums, sqs, n):
    if not n or n <= 0:
        raise CmvnError("global_cmvn: frame count %r is not positive" % (n,))
    mean = np.zeros(len(sums), dtype=np.float64)
    istd = np.zeros(len(sums), dtype=np.float64)
    for i in range(len(sums)):
        m = float(sums[i]) / n
        v = float(sqs[i]) / n - m * m
        if v < 1.0e-20:
            v = 1.0e-20
        mean[i] = m
        istd[i] = 1.0 / math.sqrt(v)
    return mean.astype(np.float32), istd.astype(np.float32)


def load_json_cmvn(path):
    with open(path, "r", encoding="utf-8") as f:
        d = json.load(f)
    try:
        sums, sqs, n = d["mean_stat"], d["var_stat"], d["frame_num"]
    except (KeyError, TypeError) as e:
        raise CmvnError("global_cmvn %s: JSON lacks %s" % (path, e))
    if len(sums) != len(sqs):
        raise CmvnError("global_cmvn %s: mean_stat and var_stat lengths differ" % path)
    return _finish(sums, sqs, float(n))


def load_kaldi_cmvn(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw.startswith(b"\0B"):
        raise CmvnError("global_cmvn %s: binary Kaldi CMVN is not supported; "
                        "write it with compute-cmvn-stats --binary=false" % path)
    toks = raw.decode("utf-8").split()
    if len(toks) < 5 or toks[0] != "[" or toks[-1] != "]" or toks[-2] != "0":
        raise CmvnError("global_cmvn %s: not a Kaldi text CMVN matrix" % path)
    body = [float(t) for t in toks[1:-1]]
    if len(body) % 2 != 0:
        raise CmvnError("global_cmvn %s: odd number of values" % path)
    dim = len(body) // 2 - 1
    sums, n = body[:dim], body[dim]
    sqs = body[dim + 1:2 * dim + 1]
    return _finish(sums, sqs, n)


def load_cmvn(path, is_json):
    """-> (mean, istd) float32 arrays."""
    return load_json_cmvn(path) if is_json else load_kaldi_cmvn(path)


def write_json_cmvn(path, sums, sqs, n):
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"mean_stat": [float(x) for x in sums], "var_stat": [float(x) for x in sqs],
                   "frame_num": int(n)}, f)


def write_kaldi_cmvn(path, sums, sqs, n):
    row0 = " ".join(repr(float(x)) for x in sums) + " " + repr(float(n))
    row1 = " ".join(repr(float(x)) for x in sqs) + " 0"
    with open(path, "w", encoding="utf-8") as f:
        f.write(" [\n  " + row0 + "\n  " + row1 + " ]\n")
