#!/usr/bin/env python3
"""The peer on real speech: CMU pocketsphinx's US English recognizer (PyPI `pocketsphinx` 5.x,
which ships its en-us HMM acoustic model, cmudict and 3-gram LM), decoding the same list as
u2recognize, scored with the same CER/WER code (train/common.py).

pocketsphinx is an HMM system trained on real speech with a word LM; our model is a character
CTC/attention model trained on synthetic speech only. Its output is lower-cased and put through
tools/text_norm.py like the references, so both systems are scored on the same alphabet.

Usage: .venv/bin/python train/peer_pocketsphinx.py --list data/real_speech/asterisk_en/test [--out hyp.txt]
"""
import argparse
import multiprocessing
import os
import sys
import time
import wave

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from text_norm import normalize  # noqa: E402

_DECODER = None


def decode(job):
    global _DECODER
    key, path = job
    if _DECODER is None:
        from pocketsphinx import Decoder
        _DECODER = Decoder(samprate=16000, logfn=os.devnull)
    with wave.open(path, "rb") as w:
        if w.getframerate() != 16000 or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16 kHz mono 16-bit")
        pcm = w.readframes(w.getnframes())
    _DECODER.start_utt()
    _DECODER.process_raw(pcm, full_utt=True)
    _DECODER.end_utt()
    hyp = _DECODER.hyp()
    text = normalize(hyp.hypstr) if hyp is not None and hyp.hypstr.strip() else ""
    return key, text or ""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", required=True, help="folder with wav.scp and text")
    ap.add_argument("--out", default="", help="write 'utt hypothesis' lines here")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    wavs = common.read_table(os.path.join(args.list, "wav.scp"))
    refs = common.read_table(os.path.join(args.list, "text"))
    jobs = [(k, p if os.path.isabs(p) else os.path.join(args.list, p)) for k, p in wavs.items()]
    t0 = time.time()
    hyps = {}
    with multiprocessing.Pool(args.jobs) as pool:
        for n, (key, text) in enumerate(pool.imap(decode, jobs), 1):
            hyps[key] = text
            if n % 50 == 0:
                print(f"pocketsphinx: {n}/{len(jobs)}", file=sys.stderr, flush=True)
    err = common.ErrorRate()
    for key in sorted(hyps):
        err.add(refs[key], hyps[key])
    if args.out:
        with open(args.out, "w") as f:
            f.write("".join(f"{k} {hyps[k]}\n" for k in sorted(hyps)))
    print(f"pocketsphinx en-us: CER {err.cer():.2f} % WER {err.wer():.2f} % over {len(hyps)} utterances "
          f"({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
