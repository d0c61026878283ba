#!/usr/bin/env python3
"""Computes WeNet fbank features for a synthesised split and caches them.

Features are exactly WeNet's: torchaudio.compliance.kaldi.fbank on int16-scale samples
(wav * 32768), 80 mel bins, 25 ms / 10 ms, dither 0, energy_floor 0, 16 kHz. Dither is not
needed in training because the training wavs already carry faint noise (see synth.py).

Writes train/work/data/<split>/feats.npy (float16, all utterances concatenated, (frames, 80))
and feats.jsonl (key, offset, frames, txt). For the train split it also writes global_cmvn
(WeNet JSON: mean_stat, var_stat, frame_num), accumulated in float64 from the float32 features.

--from-list DIR takes the utterances of a Kaldi-style list instead (DIR/wav.scp and DIR/text,
relative wav paths relative to DIR), e.g. the real-speech dev half for the in-training dev CER:
  .venv/bin/python train/feats.py --split real_dev --from-list data/real_speech/asterisk_en/dev

Usage: nice -n 10 .venv/bin/python train/feats.py --split train [--jobs 2]
"""
import argparse
import json
import multiprocessing
import os
import wave

import numpy as np

ROOT = os.path.dirname(os.path.abspath(__file__))
NUM_MEL_BINS = 80


def read_wav_int16(path):
    with wave.open(path, "rb") as w:
        if w.getframerate() != 16000 or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16 kHz mono 16-bit")
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


def fbank(samples_int16, dither=0.0):
    import torch
    import torchaudio
    wav = torch.from_numpy(samples_int16.astype(np.float32)).unsqueeze(0)
    return torchaudio.compliance.kaldi.fbank(
        wav, num_mel_bins=NUM_MEL_BINS, frame_length=25, frame_shift=10, dither=dither,
        energy_floor=0.0, sample_frequency=16000).numpy()


def write_records_from_list(list_dir, split_dir):
    """data.jsonl for the utterances of list_dir/wav.scp + list_dir/text."""
    def table(name):
        with open(os.path.join(list_dir, name)) as f:
            return dict(line.rstrip("\n").split(" ", 1) for line in f if " " in line.strip())
    wavs, texts = table("wav.scp"), table("text")
    os.makedirs(split_dir, exist_ok=True)
    with open(os.path.join(split_dir, "data.jsonl"), "w") as f:
        for key in sorted(wavs):
            path = wavs[key] if os.path.isabs(wavs[key]) else os.path.normpath(os.path.join(list_dir, wavs[key]))
            f.write(json.dumps(dict(key=key, wav=path, txt=texts[key])) + "\n")


def _init_worker():
    import torch
    torch.set_num_threads(1)


def _job(rec):
    return rec, fbank(read_wav_int16(rec["wav"]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", required=True)
    ap.add_argument("--data", default=os.path.join(ROOT, "work", "data"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--from-list", default="", help="a folder with wav.scp and text to take the utterances from")
    args = ap.parse_args()

    split_dir = os.path.join(args.data, args.split)
    if args.from_list:
        write_records_from_list(args.from_list, split_dir)
    with open(os.path.join(split_dir, "data.jsonl")) as f:
        recs = [json.loads(line) for line in f]
    chunks, index = [], []
    offset = 0
    sums = np.zeros(NUM_MEL_BINS, np.float64)
    sqs = np.zeros(NUM_MEL_BINS, np.float64)
    with multiprocessing.Pool(args.jobs, initializer=_init_worker) as pool:
        for rec, feat in pool.imap(_job, recs, chunksize=32):
            if args.split == "train":
                f64 = feat.astype(np.float64)
                sums += f64.sum(0)
                sqs += (f64 * f64).sum(0)
            chunks.append(feat.astype(np.float16))
            index.append(dict(key=rec["key"], offset=offset, frames=int(feat.shape[0]), txt=rec["txt"]))
            offset += feat.shape[0]
    np.save(os.path.join(split_dir, "feats.npy"), np.concatenate(chunks, 0))
    with open(os.path.join(split_dir, "feats.jsonl"), "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in index))
    if args.split == "train":
        with open(os.path.join(split_dir, "global_cmvn"), "w") as f:
            json.dump(dict(mean_stat=sums.tolist(), var_stat=sqs.tolist(), frame_num=int(offset)), f)
    print(f"{args.split}: {len(index)} utts, {offset} frames ({offset / 360000:.2f} h)")


if __name__ == "__main__":
    main()
