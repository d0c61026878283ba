#!/usr/bin/env python3
"""Synthesises the demo speech corpus (16 kHz mono 16-bit wavs).

For each split this writes train/work/data/<split>/:
  wavs/<utt>.wav   the audio
  wav.scp          "<utt> <absolute wav path>"
  text             "<utt> <transcript>"
  data.jsonl       one JSON object per utterance: key, wav, txt, engine, voice, prosody, augmentation, dur

Two recipes:

espeak (dev, test, test_heldout_voice, and the training sets of exp-exp16): espeak-ng only. Every
utterance gets a random accent x variant, speed (-s 120..200), pitch (-p 20..80) and amplitude
(-a 50..100; more than 100 clips after resampling). Training audio is lightly augmented: faint
white noise (sigma 1..30 int16 units) on about half of the utterances and a random gain of
0.5..1.0. Test sets are clean. Held-out voices: variant m3 and accent en-gb-scotland never occur
in train/dev/test; test_heldout_voice uses them (half a seen accent with variant m3, half
en-gb-scotland with a seen variant).

mixed (training, from exp17 on; --recipe mixed): several synthesizers (train/voices.py: espeak-ng,
flite's kal/kal16/awb/rms/slt, Festival's kal_diphone and HTS slt; --engines sets their shares),
sentences alternating between the technical and the everyday text pools (3 of every 5 everyday
with the default --everyday-share 0.6), and a random augmentation chain per utterance
(train/augment.py: speed, pitch, EQ, reverb, telephone and G.722 codecs, coloured noise, gain;
--no-augment leaves the synthesizers' audio as it is, with the same voices and sentences, so a
pair of runs can tell what the augmentation itself adds).
The same held-out voices stay out, and so does Festival's ked_diphone:

test_unseen_synth: the test sentences spoken by Festival's ked_diphone, a voice and speaker that
no training recipe uses (the "unseen synthesizer" set), clean.

Accent augmentation (--vowel-shift-prob P, espeak training utterances only): a share P of the
utterances are spoken from their own phonemes (espeak-ng -x) with some vowels moved to a
neighbouring vowel (I -> E, a -> V, ...), as other accents of English do.

All randomness comes from random.Random(seed + index), so the output is reproducible; the vowel
shifts draw from their own generator, so utterances without them are the same as before.

Usage: nice -n 10 .venv/bin/python train/synth.py --split train --num 8000 [--jobs 2]
       nice -n 10 .venv/bin/python train/synth.py --split train --recipe mixed --num 20000
"""
import argparse
import json
import multiprocessing
import os
import random
import subprocess
import wave

import numpy as np

import augment
import voices

ROOT = os.path.dirname(os.path.abspath(__file__))
SAMPLE_RATE = 16000

TRAIN_ACCENTS = voices.ESPEAK_ACCENTS
TRAIN_VARIANTS = voices.ESPEAK_VARIANTS
HELDOUT_VARIANT = "m3"
HELDOUT_ACCENT = "en-gb-scotland"
UNSEEN_SYNTH_VOICE = voices.FESTIVAL_HELDOUT_VOICE
DEFAULT_ENGINES = "espeak:0.3,flite:0.45,festival:0.25"

SPLIT_SEEDS = {"train": 1000003, "dev": 2000003, "test": 3000003, "test_heldout_voice": 4000003,
               "test_unseen_synth": 5000003}
# The text each split reads (train/work/corpus/<name>.txt).
SPLIT_TEXT = {"test_unseen_synth": "test"}

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


def write_wav(path, pcm):
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())


def synth_espeak(job):
    """The espeak recipe (see the module docstring); unchanged since exp, so old splits rebuild."""
    split, index, text, out_dir, vowel_shift_prob = job[:5]
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
    write_wav(path, pcm)
    return dict(key=key, wav=path, txt=text, engine="espeak", voice=voice, speed=speed, pitch=pitch, amp=amp,
                noise=round(noise, 2), gain=round(gain, 3), vowel_shift=vowel_shift,
                dur=round(len(pcm) / SAMPLE_RATE, 3))


_AUGMENTER = None


def synth_mixed(job):
    """The mixed recipe: a random synthesizer and voice, then a random augmentation chain."""
    global _AUGMENTER
    split, index, text, out_dir, vowel_shift_prob, engines, augmented = job
    rng = random.Random(SPLIT_SEEDS[split] * 7919 + index)
    np_rng = np.random.default_rng(SPLIT_SEEDS[split] * 31 + index)
    names = sorted(engines)
    engine = rng.choices(names, weights=[engines[n] for n in names])[0]
    info = {}
    if engine == "espeak":
        shift_rng = random.Random(SPLIT_SEEDS[split] * 104729 + index)
        spoken = text
        accent, variant = rng.choice(TRAIN_ACCENTS), rng.choice(TRAIN_VARIANTS)
        if vowel_shift_prob > 0 and shift_rng.random() < vowel_shift_prob:
            info["vowel_shift"] = round(shift_rng.uniform(0.1, 0.4), 3)
            voice = accent + ("+" + variant if variant else "")
            spoken = "[[" + shift_vowels(phonemize(voice, text), shift_rng, info["vowel_shift"]) + "]]"
        pcm, settings = voices.espeak(spoken, rng, accent=accent, variant=variant)
    else:
        try:
            pcm, settings = voices.ENGINES[engine](text, rng)
        except (RuntimeError, subprocess.CalledProcessError) as e:
            # A synthesizer that chokes on one sentence must not end a run of thousands.
            pcm, settings = voices.espeak(text, rng)
            info["fallback_from"] = f"{engine}: {e}"[:200]
    chain = {}
    if augmented:  # after every voice choice, so --no-augment speaks the same voices
        if _AUGMENTER is None:
            _AUGMENTER = augment.Augmenter()
        pcm, chain = _AUGMENTER(pcm, rng, np_rng)
    key = f"{split}_{index:06d}"
    path = os.path.join(out_dir, "wavs", key + ".wav")
    write_wav(path, pcm)
    return dict(key=key, wav=path, txt=text, **settings, **info, augment=chain, dur=round(len(pcm) / SAMPLE_RATE, 3))


def synth_unseen(job):
    """test_unseen_synth: Festival's ked_diphone, clean, at its own pace."""
    split, index, text, out_dir = job[:4]
    rng = random.Random(SPLIT_SEEDS[split] * 7919 + index)
    pcm, settings = voices.festival(text, rng, voice=UNSEEN_SYNTH_VOICE)
    key = f"{split}_{index:06d}"
    path = os.path.join(out_dir, "wavs", key + ".wav")
    write_wav(path, pcm)
    return dict(key=key, wav=path, txt=text, **settings, dur=round(len(pcm) / SAMPLE_RATE, 3))


def parse_engines(spec):
    """'espeak:0.3,flite:0.45' -> {'espeak': 0.3, 'flite': 0.45}, checked against voices.ENGINES."""
    out = {}
    for item in spec.split(","):
        name, _, weight = item.partition(":")
        if name not in voices.ENGINES:
            raise SystemExit(f"--engines: unknown synthesizer {name!r} (known: {', '.join(voices.ENGINES)})")
        out[name] = float(weight or 1.0)
    return out


def mixed_sentences(corpus, everyday_share):
    """The training sentences of the mixed recipe: the technical and everyday pools interleaved
    in a fixed pattern (with share 0.6, 3 of every 5 sentences are everyday), so that sentence i
    is the same whatever --start is."""
    def read(name):
        with open(os.path.join(corpus, name + ".txt")) as f:
            return [line.strip() for line in f if line.strip()]
    technical, everyday = read("train"), read("train_everyday")
    period = 20
    n_everyday = round(everyday_share * period)
    out, t, e = [], 0, 0
    while t < len(technical) and e < len(everyday):
        for slot in range(period):
            if slot < n_everyday and e < len(everyday):
                out.append(everyday[e])
                e += 1
            elif t < len(technical):
                out.append(technical[t])
                t += 1
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", required=True, choices=sorted(SPLIT_SEEDS))
    ap.add_argument("--num", type=int, default=0, help="number of sentences (0 = all in the split file)")
    ap.add_argument("--start", type=int, default=0, help="first sentence index (to extend a split)")
    ap.add_argument("--corpus", default=os.path.join(ROOT, "work", "corpus"))
    ap.add_argument("--out", default=os.path.join(ROOT, "work", "data"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--vowel-shift-prob", type=float, default=0.0,
                    help="train: share of espeak utterances spoken with some vowels shifted (accent augmentation)")
    ap.add_argument("--recipe", choices=("espeak", "mixed"), default="espeak",
                    help="train: espeak only (exp-exp16) or several synthesizers + augmentation")
    ap.add_argument("--engines", default=DEFAULT_ENGINES, help="mixed recipe: synthesizer shares")
    ap.add_argument("--everyday-share", type=float, default=0.6,
                    help="mixed recipe: share of sentences from the everyday text pool")
    ap.add_argument("--no-augment", action="store_true",
                    help="mixed recipe: no waveform augmentation (same voices and sentences as with it)")
    args = ap.parse_args()

    if args.no_augment and args.recipe != "mixed":
        raise SystemExit("--no-augment is for the mixed recipe (the espeak recipe keeps its light augmentation)")
    if args.recipe == "mixed" and args.split != "train":
        raise SystemExit("--recipe mixed is for the train split; evaluation splits keep their recipe")
    if args.recipe == "mixed":
        sentences = mixed_sentences(args.corpus, args.everyday_share)
        work = synth_mixed
    else:
        with open(os.path.join(args.corpus, SPLIT_TEXT.get(args.split, args.split) + ".txt")) as f:
            sentences = [line.strip() for line in f if line.strip()]
        work = synth_unseen if args.split == "test_unseen_synth" else synth_espeak
    end = len(sentences) if args.num <= 0 else min(len(sentences), args.start + args.num)
    out_dir = os.path.join(args.out, args.split)
    os.makedirs(os.path.join(out_dir, "wavs"), exist_ok=True)
    engines = parse_engines(args.engines)
    jobs = [(args.split, i, sentences[i], out_dir, args.vowel_shift_prob, engines, not args.no_augment)
            for i in range(args.start, end)]
    mode = "a" if args.start > 0 else "w"
    total = 0.0
    with multiprocessing.Pool(args.jobs) as pool, \
            open(os.path.join(out_dir, "data.jsonl"), mode) as fj, \
            open(os.path.join(out_dir, "wav.scp"), mode) as fs, \
            open(os.path.join(out_dir, "text"), mode) as ft:
        for n, rec in enumerate(pool.imap(work, jobs, chunksize=16), 1):
            fj.write(json.dumps(rec) + "\n")
            fs.write(f"{rec['key']} {rec['wav']}\n")
            ft.write(f"{rec['key']} {rec['txt']}\n")
            total += rec["dur"]
            if n % 500 == 0:
                print(f"{args.split}: {n}/{len(jobs)} utts, {total / 3600:.2f} h", flush=True)
    print(f"{args.split}: {len(jobs)} utts, {total / 3600:.2f} h -> {out_dir}", flush=True)


if __name__ == "__main__":
    main()
