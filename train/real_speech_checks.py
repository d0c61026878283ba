#!/usr/bin/env python3
"""Where the real-speech errors are not: decodes the real-speech dev half once as it is and once
per change to the audio or to the decoding, and prints each CER against the untouched run with a
95 % paired bootstrap interval. A change that fixes a mismatch between the training audio and the
Asterisk recordings (level, speaking rate, pitch, bandwidth, spectral tilt), or a decoder that
leans harder on words (a TLG graph), should lower the CER; if none does, the errors are in what
the acoustic model has learned, and only training can move them (docs/real-speech.md).

    .venv/bin/python train/real_speech_checks.py [--model-dir models/demo] [--json checks.json]

Audio changes are sox effects applied to each recording (`sox -D in out EFFECTS`: no dither, so
only the effect differs), decoded without an LM, so they measure the acoustic model alone. The
decoding changes decode the untouched audio with the model folder's LM by shallow fusion and with
a TLG graph built from the same LM (tools/build_tlg.py) at a few LM weights. Attention
rescoring, the model's model.json settings otherwise; scored by train/common.py like every other
table. Needs sox, a built u2recognize and data/real_speech/asterisk_en (scripts/setup.sh).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import compare_models  # noqa: E402


# (name, what it tests, sox effects). Each is a mismatch the training recipes might have left:
# the Asterisk recordings are near full scale, slower than the synthesizers, one female voice,
# wideband G.722.
AUDIO_CHECKS = [
    ("sox copy", "control: the same audio through sox with no effect", []),
    ("gain -6 dB", "level: the recordings peak near full scale", ["vol", "0.5"]),
    ("gain -12 dB", "level", ["vol", "0.25"]),
    ("tempo 0.9", "speaking rate, pitch kept", ["tempo", "0.9"]),
    ("tempo 1.1", "speaking rate, pitch kept", ["tempo", "1.1"]),
    ("speed 0.9", "rate and pitch together (vocal tract length)", ["speed", "0.9"]),
    ("speed 1.1", "rate and pitch together (vocal tract length)", ["speed", "1.1"]),
    ("pitch -300 cents", "voice pitch only", ["pitch", "-300"]),
    ("highpass 200 Hz", "low-frequency energy", ["highpass", "200"]),
    ("lowpass 3.8 kHz", "bandwidth (telephone band)", ["lowpass", "3800"]),
    ("bass -6 dB", "spectral tilt", ["bass", "-6"]),
]


def decode(a, scp, work, tag, extra):
    """-> per-utterance errors, lengths and the ErrorRate of one decoding pass."""
    hyps, _ = common.run_u2recognize(a.u2recognize, a.model_dir, scp, os.path.join(work, f"{tag}.hyp"),
                                     a.threads, list(extra))
    er = common.ErrorRate()
    errors, lengths = compare_models.per_utterance_errors(a.refs, hyps, er)
    return errors, lengths, er


def transformed_scp(a, work, name, effects):
    """Writes every recording of the set through `sox -D in out EFFECTS`; -> the new wav.scp."""
    folder = os.path.join(work, name.replace(" ", "_"))
    os.makedirs(folder, exist_ok=True)
    scp = folder + ".scp"
    with open(scp, "w") as f:
        for utt, path in a.wavs.items():
            out = os.path.join(folder, utt + ".wav")
            subprocess.run(["sox", "-q", "-V1", "-D", path, "-r", "16000", "-b", "16", "-c", "1", out] + effects,
                           check=True)
            f.write(f"{utt} {out}\n")
    return scp


def row(name, what, er, errors, base, lengths, rounds):
    lo, hi = compare_models.paired_bootstrap(base, errors, lengths, rounds)
    delta = 100.0 * (sum(errors) - sum(base)) / max(1, sum(lengths))
    better, worse = compare_models.better_worse(base, errors)
    out = {"check": name, "what": what, "cer": round(er.cer(), 2), "wer": round(er.wer(), 2),
           "delta": round(delta, 2), "ci": [round(lo, 2), round(hi, 2)], "better": better, "worse": worse}
    print(f"  {name:28s} CER {er.cer():6.2f} %  WER {er.wer():6.2f} %  {delta:+.2f} points "
          f"[{lo:+.2f}, {hi:+.2f}], {better} better, {worse} worse", flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", default=os.path.join(common.REPO, "models", "demo"))
    ap.add_argument("--set", default=os.path.join(common.REAL_SPEECH, "dev"), help="folder with wav.scp and text")
    ap.add_argument("--build", default=os.environ.get("U2_BUILD_DIR", "build"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="first N utterances (0 = all)")
    ap.add_argument("--lm-weights", default="0.3:1,0.5:0,0.5:1",
                    help="TLG decoding: lm_weight:word_bonus pairs to try")
    ap.add_argument("--skip-audio", action="store_true")
    ap.add_argument("--skip-decoding", action="store_true")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args(argv)

    a.u2recognize = os.path.join(common.REPO, a.build, "apps", "u2recognize")
    if not os.path.exists(a.u2recognize):
        sys.exit(f"real_speech_checks: {a.u2recognize} is missing: build first (scripts/build.sh)")
    text, wav_scp = os.path.join(a.set, "text"), os.path.join(a.set, "wav.scp")
    for path in (text, wav_scp):
        if not os.path.exists(path):
            sys.exit(f"real_speech_checks: {path} is missing: run tools/fetch_real_speech.py (scripts/setup.sh does)")
    a.refs = common.read_table(text, a.limit)
    t0 = time.time()
    results = {"model_dir": os.path.relpath(os.path.abspath(a.model_dir), common.REPO),
               "set": os.path.relpath(os.path.abspath(a.set), common.REPO), "utterances": len(a.refs),
               "command": "train/real_speech_checks.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "audio": [], "decoding": []}
    with tempfile.TemporaryDirectory() as work:
        scp = os.path.join(work, "wav.scp")
        common.write_subset_scp(wav_scp, a.refs, scp)
        a.wavs = common.read_table(scp)
        print(f"{results['set']} ({len(a.refs)} utterances), {results['model_dir']}, attention rescoring:", flush=True)
        base, lengths, er = decode(a, scp, work, "base", ["--lm", "none"])
        results["baseline"] = {"cer": round(er.cer(), 2), "wer": round(er.wer(), 2)}
        print(f"  {'as recorded, no LM':28s} CER {er.cer():6.2f} %  WER {er.wer():6.2f} %", flush=True)
        if not a.skip_audio:
            for name, what, effects in AUDIO_CHECKS:
                errors, _, er = decode(a, transformed_scp(a, work, name, effects), work, name, ["--lm", "none"])
                results["audio"].append(row(name, what, er, errors, base, lengths, a.bootstrap)
                                        | {"sox": " ".join(effects)})
        lm = os.path.join(a.model_dir, "lm.arpa")
        if not a.skip_decoding and os.path.exists(lm):
            errors, _, er = decode(a, scp, work, "fusion", [])
            results["decoding"].append(row("LM shallow fusion (model.json)", "the model folder's LM and weights",
                                           er, errors, base, lengths, a.bootstrap))
            tlg = os.path.join(work, "tlg")
            subprocess.run([sys.executable, os.path.join(common.REPO, "tools", "build_tlg.py"), "--units",
                            os.path.join(a.model_dir, "units.txt"), "--lm", lm, "--out", tlg], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for pair in a.lm_weights.split(","):
                weight, bonus = pair.split(":")
                name = f"TLG, lm_weight {weight}, word_bonus {bonus}"
                errors, _, er = decode(a, scp, work, name.replace(" ", "_").replace(",", ""),
                                       ["--tlg", tlg, "--lm-weight", weight, "--word-bonus", bonus])
                results["decoding"].append(row(name, "the same LM as a TLG graph: only its words can be output",
                                               er, errors, base, lengths, a.bootstrap))
    print(f"done in {time.time() - t0:.0f} s", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
