#!/usr/bin/env python3
"""Synthesises the demo speech corpus with espeak-ng (16 kHz mono 16-bit wavs).

For each split in train/work/corpus/<split>.txt this writes train/work/data/<split>/:
  wavs/<utt>.wav   the audio
  wav.scp          "<utt> <absolute wav path>"
  text             "<utt> <transcript>"
  data.jsonl       one JSON object per utterance: key, wav, txt, voice, speed, pitch, amp, noise, gain, dur

Voices: every training utterance gets a random accent x variant, speed (-s 120..200),
pitch (-p 20..80) and amplitude (-a 50..100; more than 100 clips after resampling).
Training audio is lightly augmented: faint white noise (sigma 1..30 int16 units) on about
half of the utterances, so the model does not learn that silence is exactly zero, and a
random gain of 0.5..1.0. Test sets are clean.

Held-out voices: variant m3 and accent en-gb-scotland never occur in train/dev/test.
test_heldout_voice uses them: half of its utterances are a seen accent with variant m3,
the other half en-gb-scotland with a seen variant.

Accent augmentation (--vowel-shift-prob P, training only): a share P of the utterances are
spoken from their own phonemes (espeak-ng -x) with some vowels moved to a neighbouring vowel
(I -> E, a -> V, ...), as other accents of English do. The seven training accents differ from each
other less than real accents do (en-gb-scotland, held out, mostly shifts vowels: "this" sounds
like "thes"), so without this the model learns to spell what a vowel sounds like in those seven.

All randomness comes from random.Random(seed + index), so the output is reproducible; the vowel
shifts draw from their own generator, so utterances without them are the same as before.

Usage: nice -n 10 .venv/bin/python train/synth.py --split train --num 8000 [--jobs 2]
"""
import argparse
import json
import multiprocessing
import os
import random
import subprocess
import wave

import numpy as np

ROOT = os.path.dirname(os.path.abspath(__file__))
SAMPLE_RATE = 16000

TRAIN_ACCENTS = ["en-us", "en", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us-nyc"]
TRAIN_VARIANTS = [
    "", "m1", "m2", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
    "Alex", "Andy", "Annie", "antonio", "aunty", "belinda", "boris", "ed", "Gene", "grandma",
    "grandpa", "Jacky", "john", "linda", "max", "Michael", "Mike", "norbert", "pablo", "paul",
    "pedro", "quincy", "rob", "robert", "shelby", "steph", "travis", "victor", "adam", "caleb",
    "david", "benjamin", "edward",
]
HELDOUT_VARIANT = "m3"
HELDOUT_ACCENT = "en-gb-scotland"

SPLIT_SEEDS = {"train": 1000003, "dev": 2000003, "test": 3000003, "test_heldout_voice": 4000003}

# espeak-ng's English vowel mnemonics (-x output), each with the vowels an accent may say instead.
VOWEL_NEIGHBOURS = {
    "I": ["E", "i:", "@", "I2"], "I#": ["I", "E", "@"], "I2": ["I", "E"], "i": ["I", "i:", "eI"],
    "i:": ["I", "eI", "i@"], "i@": ["i:", "e@"], "E": ["I", "a", "eI"], "e@": ["E", "eI", "3:"], "eI": ["E", "i:", "aI"],
    "a": ["E", "A:", "V", "a#"], "a#": ["a", "V", "@"], "A:": ["a", "0", "O:"], "A@": ["A:", "O@"],
    "V": ["a", "0", "@", "U"], "0": ["O:", "V", "A:"], "O:": ["0", "oU", "A:"], "O@": ["O:", "oU"],
    "oU": ["O:", "u:", "0"], "U": ["u:", "V", "@"], "u:": ["U", "oU", "U@"], "U@": ["O:", "u:"],
    "@": ["V", "I", "E", "3"], "@2": ["@", "I"], "@5": ["@", "U"], "3": ["@", "E"],
    "3:": ["@", "e@", "O:"], "aI": ["eI", "A:", "OI"], "aU": ["oU", "a"], "OI": ["O:", "aI"],
}
VOWEL_TOKENS = sorted(VOWEL_NEIGHBOURS, key=len, reverse=True)


def phonemize(voice, text):
    """espeak-ng's phoneme mnemonics for text (one line; clause breaks become spaces)."""
    out = subprocess.run(["espeak-ng", "-q", "-x", "-v", voice, text], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, check=True).stdout.decode()
    return " ".join(out.split())


def split_phonemes(phonemes):
    """An espeak-ng mnemonic string as (is_vowel, text) pieces: vowels found by longest match ("aI"
    before "a"), every other character (consonant, stress mark, pause, space) a piece of its own.
    No English consonant mnemonic contains a vowel's letters."""
    pieces, i = [], 0
    while i < len(phonemes):
        vowel = next((v for v in VOWEL_TOKENS if phonemes.startswith(v, i)), None)
        pieces.append((vowel is not None, vowel or phonemes[i]))
        i += len(vowel) if vowel else 1
    return pieces


def shift_vowels(phonemes, rng, rate):
    """Replaces each vowel of an espeak-ng mnemonic string, with probability rate, by one of its
    neighbours; consonants, stress marks, pauses and word breaks stay."""
    return "".join(rng.choice(VOWEL_NEIGHBOURS[text]) if is_vowel and rng.random() < rate else text
                   for is_vowel, text in split_phonemes(phonemes))


def choose_voice(split, index, rng):
    if split == "test_heldout_voice":
        if index % 2 == 0:
            return rng.choice(TRAIN_ACCENTS), HELDOUT_VARIANT
        return HELDOUT_ACCENT, rng.choice(TRAIN_VARIANTS)
    return rng.choice(TRAIN_ACCENTS), rng.choice(TRAIN_VARIANTS)


def synth_one(job):
    split, index, text, out_dir, vowel_shift_prob = job
    rng = random.Random(SPLIT_SEEDS[split] * 7919 + index)
    accent, variant = choose_voice(split, index, rng)
    voice = accent + ("+" + variant if variant else "")
    speed = rng.randint(120, 200)
    pitch = rng.randint(20, 80)
    amp = rng.randint(50, 100)
    spoken, vowel_shift = text, 0.0
    shift_rng = random.Random(SPLIT_SEEDS[split] * 104729 + index)
    if split == "train" and vowel_shift_prob > 0 and shift_rng.random() < vowel_shift_prob:
        vowel_shift = round(shift_rng.uniform(0.1, 0.4), 3)
        spoken = "[[" + shift_vowels(phonemize(voice, text), shift_rng, vowel_shift) + "]]"
    espeak = subprocess.Popen(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-a", str(amp), "--stdout", spoken],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    raw = subprocess.run(
        ["sox", "-V1", "-t", "wav", "-", "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-e", "signed-integer",
         "-t", "raw", "-"], stdin=espeak.stdout, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True).stdout
    espeak.stdout.close()
    espeak.wait()
    samples = np.frombuffer(raw, dtype=np.int16).astype(np.float32)
    noise = 0.0
    gain = 1.0
    if split == "train":
        gain = rng.uniform(0.5, 1.0)
        samples *= gain
        if rng.random() < 0.5:
            noise = rng.uniform(1.0, 30.0)
            samples += np.random.default_rng(SPLIT_SEEDS[split] + index).normal(0.0, noise, samples.shape)
    pcm = np.clip(np.round(samples), -32768, 32767).astype(np.int16)
    key = f"{split}_{index:06d}"
    path = os.path.join(out_dir, "wavs", key + ".wav")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())
    return dict(key=key, wav=path, txt=text, voice=voice, speed=speed, pitch=pitch, amp=amp,
                noise=round(noise, 2), gain=round(gain, 3), vowel_shift=vowel_shift,
                dur=round(len(pcm) / SAMPLE_RATE, 3))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", required=True, choices=sorted(SPLIT_SEEDS))
    ap.add_argument("--num", type=int, default=0, help="number of sentences (0 = all in the split file)")
    ap.add_argument("--start", type=int, default=0, help="first sentence index (to extend a split)")
    ap.add_argument("--corpus", default=os.path.join(ROOT, "work", "corpus"))
    ap.add_argument("--out", default=os.path.join(ROOT, "work", "data"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--vowel-shift-prob", type=float, default=0.0,
                    help="train: share of utterances spoken with some vowels shifted (accent augmentation)")
    args = ap.parse_args()

    with open(os.path.join(args.corpus, args.split + ".txt")) as f:
        sentences = [line.strip() for line in f if line.strip()]
    end = len(sentences) if args.num <= 0 else min(len(sentences), args.start + args.num)
    out_dir = os.path.join(args.out, args.split)
    os.makedirs(os.path.join(out_dir, "wavs"), exist_ok=True)
    jobs = [(args.split, i, sentences[i], out_dir, args.vowel_shift_prob) for i in range(args.start, end)]
    mode = "a" if args.start > 0 else "w"
    total = 0.0
    with multiprocessing.Pool(args.jobs) as pool, \
            open(os.path.join(out_dir, "data.jsonl"), mode) as fj, \
            open(os.path.join(out_dir, "wav.scp"), mode) as fs, \
            open(os.path.join(out_dir, "text"), mode) as ft:
        for n, rec in enumerate(pool.imap(synth_one, jobs, chunksize=16), 1):
            fj.write(json.dumps(rec) + "\n")
            fs.write(f"{rec['key']} {rec['wav']}\n")
            ft.write(f"{rec['key']} {rec['txt']}\n")
            total += rec["dur"]
            if n % 1000 == 0:
                print(f"{args.split}: {n}/{len(jobs)} utts, {total / 3600:.2f} h", flush=True)
    print(f"{args.split}: {len(jobs)} utts, {total / 3600:.2f} h -> {out_dir}", flush=True)


if __name__ == "__main__":
    main()
