#!/usr/bin/env python3
"""Builds the real-speech evaluation set from Debian's Asterisk prompts (run by scripts/setup.sh).

Source: the Asterisk core sound prompts in English, recorded by one professional voice actor
(Allison Smith) and shipped by Debian as `asterisk-core-sounds-en-g722` (16 kHz G.722 audio) and
`asterisk-core-sounds-en` (the transcripts, core-sounds-en.txt.gz). Licence CC-BY-SA-3.0
(docs/accuracy.md has the attribution). The audio is decoded from G.722 to 16 kHz 16-bit PCM
with PyPI `g722`; the transcripts are put into the model's alphabet by tools/text_norm.py
(numbers to words, "*" -> "star", "#" -> "pound", ...). Prompts that are not speech ("[beep
tone]") or whose spoken form is ambiguous (long numbers, decimals) are left out and listed in
dropped.tsv with the reason.

This audio is for measuring only: nothing of it may go into training (it is one voice; training
on it would measure memory of that voice). It is split once, deterministically, into two halves
by a hash of the normalized transcript (so prompts with the same words fall on the same side):
  dev   every choice (checkpoints, decoding weights, augmentation) is made on it
  test  reported only, never used to choose

Output (default data/real_speech/asterisk_en/):
  wavs/<key>.wav                      the decoded prompts (key = prompt name, "/" -> "-")
  {all,dev,test}/wav.scp, text        lists (wav paths relative to the list's folder)
  {all,dev,test}/utt2dur              seconds of audio per utterance
  dropped.tsv                         prompt, reason, original transcript

If the Debian packages are not installed, their .debs are fetched with `apt-get download`
(no root needed) and unpacked under the output folder. Safe to run again: an existing set with
the same recipe version is kept.

Usage: .venv/bin/python tools/fetch_real_speech.py [--out data/real_speech] [--force]
"""
import argparse
import glob
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import wave

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from text_norm import normalize  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE_VERSION = 2  # 2: remarks in parentheses are not speech ("(4 seconds of silence)")
SOUNDS_PACKAGE = "asterisk-core-sounds-en-g722"
TEXT_PACKAGE = "asterisk-core-sounds-en"
SOUNDS_DIR = "usr/share/asterisk/sounds/en-g722"
INSTALLED_SOUNDS_DIR = "/usr/share/asterisk/sounds/en"
TRANSCRIPTS = "usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
SAMPLE_RATE = 16000


def locate_sources(cache_dir):
    """(folder of .g722 prompts, transcript file): the installed packages, else unpacked .debs."""
    installed_text = "/" + TRANSCRIPTS
    installed_g722 = glob.glob(os.path.join(INSTALLED_SOUNDS_DIR, "**", "*.g722"), recursive=True)
    if os.path.exists(installed_text) and installed_g722:
        return INSTALLED_SOUNDS_DIR, installed_text
    root = os.path.join(cache_dir, "debs")
    if not os.path.exists(os.path.join(root, TRANSCRIPTS)) or not glob.glob(os.path.join(root, SOUNDS_DIR, "*.g722")):
        os.makedirs(root, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            print(f"[real-speech] apt-get download {SOUNDS_PACKAGE} {TEXT_PACKAGE}", flush=True)
            subprocess.run(["apt-get", "download", SOUNDS_PACKAGE, TEXT_PACKAGE], cwd=tmp, check=True)
            for deb in glob.glob(os.path.join(tmp, "*.deb")):
                subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
    sounds = os.path.join(root, SOUNDS_DIR)
    if not glob.glob(os.path.join(sounds, "*.g722")):  # the package's own folder name may differ
        found = glob.glob(os.path.join(root, "usr/share/asterisk/sounds", "**", "*.g722"), recursive=True)
        if not found:
            raise SystemExit(f"no .g722 prompts in {SOUNDS_PACKAGE}")
        sounds = os.path.dirname(found[0])
    return sounds, os.path.join(root, TRANSCRIPTS)


def read_transcripts(path):
    """{prompt name: transcript} from core-sounds-en.txt.gz ("name: text" lines, ";" comments)."""
    out = {}
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith(";") or ":" not in line:
                continue
            name, text = line.split(":", 1)
            out[name.strip()] = text.strip()
    return out


def decode_g722(path):
    import G722  # PyPI g722
    codec = G722.G722(SAMPLE_RATE, 64000)
    with open(path, "rb") as f:
        return np.asarray(codec.decode(f.read()), dtype=np.int16)


def split_of(text):
    """'dev' or 'test', fixed by the normalized transcript's SHA-1."""
    return "dev" if hashlib.sha1(text.encode()).digest()[0] % 2 == 0 else "test"


def write_list(folder, rows):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "wav.scp"), "w") as fs, open(os.path.join(folder, "text"), "w") as ft, \
            open(os.path.join(folder, "utt2dur"), "w") as fd:
        for key, text, dur in rows:
            fs.write(f"{key} ../wavs/{key}.wav\n")
            ft.write(f"{key} {text}\n")
            fd.write(f"{key} {dur:.3f}\n")


def build(out_dir, cache_dir):
    sounds, transcripts_path = locate_sources(cache_dir)
    transcripts = read_transcripts(transcripts_path)
    wav_dir = os.path.join(out_dir, "wavs")
    os.makedirs(wav_dir, exist_ok=True)
    rows, dropped = {"dev": [], "test": []}, []
    for name in sorted(transcripts):
        source = os.path.join(sounds, name + ".g722")
        if not os.path.exists(source):
            dropped.append((name, "no audio in the package", transcripts[name]))
            continue
        text = normalize(transcripts[name])
        if text is None:
            dropped.append((name, "not speech or ambiguous spoken form", transcripts[name]))
            continue
        pcm = decode_g722(source)
        key = "asterisk-" + name.replace("/", "-")
        with wave.open(os.path.join(wav_dir, key + ".wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(SAMPLE_RATE)
            w.writeframes(pcm.tobytes())
        rows[split_of(text)].append((key, text, len(pcm) / SAMPLE_RATE))
    for split, items in rows.items():
        write_list(os.path.join(out_dir, split), items)
    write_list(os.path.join(out_dir, "all"), sorted(rows["dev"] + rows["test"]))
    with open(os.path.join(out_dir, "dropped.tsv"), "w") as f:
        for name, reason, text in dropped:
            f.write(f"{name}\t{reason}\t{text}\n")
    summary = {split: dict(utterances=len(items), minutes=round(sum(r[2] for r in items) / 60, 2))
               for split, items in rows.items()}
    summary.update(recipe=RECIPE_VERSION, dropped=len(dropped), source=SOUNDS_PACKAGE)
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO, "data", "real_speech"))
    ap.add_argument("--force", action="store_true", help="rebuild even if the set exists")
    args = ap.parse_args()
    out_dir = os.path.join(args.out, "asterisk_en")
    summary_path = os.path.join(out_dir, "summary.json")
    if not args.force and os.path.exists(summary_path):
        with open(summary_path) as f:
            summary = json.load(f)
        if summary.get("recipe") == RECIPE_VERSION:
            print(f"[real-speech] {out_dir}: present ({summary['dev']['utterances']} dev, "
                  f"{summary['test']['utterances']} test utterances)")
            return
    if os.path.exists(out_dir):
        shutil.rmtree(os.path.join(out_dir, "wavs"), ignore_errors=True)
    summary = build(out_dir, args.out)
    print(f"[real-speech] {out_dir}: dev {summary['dev']['utterances']} utterances "
          f"({summary['dev']['minutes']} min), test {summary['test']['utterances']} "
          f"({summary['test']['minutes']} min), {summary['dropped']} prompts left out (dropped.tsv)")


if __name__ == "__main__":
    main()
