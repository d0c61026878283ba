#!/usr/bin/env python3
"""Writes docs/accuracy.md: the demo model's error rates on the test sets, computed by the C++
engine (u2recognize, offline modes and streaming chunk sizes), through the server, and by the
PyTorch reference (tools/u2ref via eval_ref.py), with one metric for all (common.ErrorRate: CER
over characters with the spaces between words counted, WER over words) and their agreement.

The test sets: three synthetic ones (train/synth.py: test, test_heldout_voice, test_unseen_synth)
and real human speech (tools/fetch_real_speech.py: the Asterisk prompts' test half, with CMU
pocketsphinx beside it as the peer; the dev half is shown too, marked as the set choices were
made on).

Needs: train/work/data/<split>/{wav.scp,text} (train/synth.py; feats.py runs where features are missing),
data/real_speech/asterisk_en (scripts/setup.sh) and a built u2recognize. The "Training" section
comes from the model's own training/runs.json (finalize.py writes it; absent: no section). The
section on how u2recognize itself scores quotes its line on the shipped samples (tests/data/samples).

Usage: .venv/bin/python train/accuracy_report.py [--limit N] [--build build] [--threads 2]
"""
import argparse
import collections
import datetime
import functools
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import eval_ref  # noqa: E402
import synth  # noqa: E402

SYNTHETIC = ("test", "test_heldout_voice", "test_unseen_synth")
REAL = ("real_test", "real_dev")
SPLITS = SYNTHETIC + REAL
REAL_LISTS = {"real_test": os.path.join(common.REAL_SPEECH, "test"),
              "real_dev": os.path.join(common.REAL_SPEECH, "dev")}
OFFLINE_MODES = (("ctc_greedy", "ctc_greedy_search"), ("ctc_prefix_beam_search", "ctc_prefix_beam_search"),
                 ("attention_rescoring", "attention_rescoring"))
STREAMING = [(16, -1), (16, 4), (16, 0), (8, -1), (8, 4), (8, 0), (4, -1), (4, 4), (4, 0)]
SAMPLES = os.path.join(common.REPO, "tests", "data", "samples")


def list_dir(a, split):
    """The folder holding the split's wav.scp and text."""
    return REAL_LISTS.get(split, os.path.join(a.data, split))


def u2recognize(a, split, refs, extra, tag):
    """Runs u2recognize on the split's first utterances; returns (ErrorRate, hyps, x real time)."""
    scp = os.path.join(a.work, f"{split}.{len(refs)}.scp")
    common.write_subset_scp(os.path.join(list_dir(a, split), "wav.scp"), refs, scp)
    t0 = time.time()
    # The acoustic model's own accuracy: without the model folder's LM (docs/language-models.md
    # measures it), so these numbers compare with the PyTorch reference and earlier models.
    hyps, speed = common.run_u2recognize(a.u2recognize, a.model, scp, os.path.join(a.work, f"{split}.{tag}.hyp"),
                                         a.threads, ["--lm", "none"] + list(extra))
    er = common.ErrorRate()
    for k, ref in refs.items():
        er.add(ref, hyps.get(k, ""))
    print(f"  {split:20s} {tag:28s} CER {er.cer():6.2f} %  WER {er.wer():6.2f} %  ({time.time() - t0:.0f} s)",
          flush=True)
    return er, hyps, speed


def samples_summary(a):
    """u2recognize's scoring line on the shipped samples (models/demo without its LM), e.g.
    "CER 1.79 % (N=223 C=219 S=2 D=2 I=0) | WER 12.77 % (...) over 5 utterances"."""
    cmd = [a.u2recognize, "--model-dir", a.model, "--wav-scp", os.path.join(SAMPLES, "wav.scp"), "--text",
           os.path.join(SAMPLES, "text"), "--lm", "none", "--threads", str(a.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return next(line.split(": ", 1)[1] for line in proc.stderr.splitlines() if ": CER " in line)


def scoring_section(summary):
    """Markdown: how u2recognize/u2client score (src/u2/util/error_rate.h), with `summary`, their
    line on the shipped samples."""
    return [
        "### How CER and WER are computed\n",
        "The tables on this page are scored by `train/common.py` (above). The summary line of `u2recognize "
        "--text` and `u2client --text`, `CER x % (N= C= S= D= I=) | WER y % (N= C= S= D= I=) over K utterances` "
        "(the WER when most references look space-separated), follows the rules of WeNet's own scoring script, "
        "`tools/compute-wer.py` of wenet-e2e/wenet as WeNet's recipes run it (examples/aishell/s0 and "
        "examples/librispeech/s0: `compute-wer.py --char=1 --v=1 text hyp`): units are upper-cased, `<...>` tags "
        "are removed whole, spaces and the script's punctuation list (`! , ?` and 、。！，；？：「」︰『』《》) are "
        "skipped, S/D/I are split the way the script breaks ties, and each rate with its counts reads like the "
        "script's `Overall ->` line. `src/u2/util/error_rate.h` lists the rules, the deliberate differences from "
        "the script (only ASCII letters are upper-cased; Unicode 14 categories) and three unit modes:\n",
        "* **letter** (`ScoringUnit::kLetter`, `CharacterErrors`), the CER printed: letter-level CER, i.e. "
        "WeNet's character scoring for CJK, and per letter for alphabetic text, which is how this project "
        "reports CER for character-unit English models (every CER in its docs, README and `train/` reports is "
        "letter-level). It is `--char=1` with one change: every kept character is a unit, ASCII letters "
        "included. On Chinese text it gives `--char=1`'s counts. Unlike `train/common.py` it does not count the "
        "spaces between words, so the two differ slightly on the same transcripts.",
        "* **character** (`ScoringUnit::kCharacter`, `WenetCharErrors`): `--char=1` exactly. CJK characters "
        "(Unicode category Lo) are one unit each and ASCII words stay whole, so on English text it counts words "
        "(what WeNet's LibriSpeech recipe reports as its WER). Not printed; there to compare with WeNet's "
        "numbers.",
        "* **word** (`ScoringUnit::kWord`, `WordErrors`), the WER printed: `--char=0`, words split at "
        "whitespace.\n",
        "Checked against the script (wenet-e2e/wenet at 0154699, 2025-12-19) by `.venv/bin/python "
        "tools/check_scoring_cases.py --compute-wer <wenet>/tools/compute-wer.py`: it re-scores every case of "
        "`tests/cpp/test_error_rate.cc` (English case, punctuation, apostrophes, tags, mixed Chinese + English, "
        "empty sides, S/D/I splits) with the script, `--char=1` for the character mode and `--char=0` for the "
        "word mode, and the letter-level cases with a copy of the script changed as above. On the shipped "
        "samples (models/demo without its LM):\n",
        "```",
        "build/apps/u2recognize --model-dir models/demo --wav-scp tests/data/samples/wav.scp "
        "--text tests/data/samples/text --lm none > /tmp/hyp",
        "python <wenet>/tools/compute-wer.py --char=0 --v=1 tests/data/samples/text /tmp/hyp | grep Overall"
        "   # the WER's counts",
        "```\n",
        f"u2recognize prints `{summary}`; its WER is the script's `--char=0` `Overall ->` line. On such English "
        "text `--char=1` keeps the words whole and prints the WER's figure too, not a letter-level CER.\n",
    ]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def through_server(a, refs):
    """The same test sets sent through u2serve with u2client (gRPC): the offline
    attention_rescoring model and the streaming_wenet model (640 ms chunks = chunk 16).
    Returns {(split, kind): (ErrorRate, hyps)}."""
    grpc, http = free_port(), free_port()
    log = open(os.path.join(a.work, "u2serve.log"), "w")
    server = subprocess.Popen([os.path.join(common.REPO, a.build, "apps", "u2serve"), "--model-dir", a.model,
                               "--grpc-port", str(grpc), "--http-port", str(http), "--metrics-port", "-1",
                               "--threads", str(a.threads), "--lm", "none"], stdout=log, stderr=subprocess.STDOUT)
    out = {}
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        else:
            sys.exit(f"u2serve did not become ready; see {log.name}")
        for split in SPLITS:
            scp = os.path.join(a.work, f"{split}.{len(refs[split])}.scp")
            for kind, extra in (("offline", ["--model", "attention_rescoring"]),
                                ("streaming", ["--streaming", "--partials", "none"])):
                t0 = time.time()
                cmd = [os.path.join(common.REPO, a.build, "apps", "u2client"), "--url", f"127.0.0.1:{grpc}",
                       "--wav-scp", scp, "--concurrency", "4"] + extra
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
                hyps = {}
                for line in proc.stdout.splitlines():
                    k, _, v = line.partition(" ")
                    hyps[k] = v.strip()
                er = common.ErrorRate()
                for k, ref in refs[split].items():
                    er.add(ref, hyps.get(k, ""))
                out[(split, kind)] = (er, hyps)
                print(f"  {split:20s} server {kind:20s} CER {er.cer():6.2f} %  WER {er.wer():6.2f} %  "
                      f"({time.time() - t0:.0f} s)", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(common.REPO, "models", "demo"))
    ap.add_argument("--data", default=os.path.join(common.WORK, "data"))
    ap.add_argument("--build", default=os.environ.get("U2_BUILD_DIR", "build"))
    ap.add_argument("--limit", type=int, default=0, help="first N utterances per split (0 = all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--torch-limit", type=int, default=100,
                    help="first N utterances per split for the (slow, Python-search) PyTorch cross-check")
    ap.add_argument("--skip-torch", action="store_true", help="C++ tables only")
    ap.add_argument("--skip-server", action="store_true", help="no u2serve/u2client table")
    ap.add_argument("--skip-peer", action="store_true", help="no pocketsphinx column on real speech")
    ap.add_argument("--doc", default=os.path.join(common.REPO, "docs", "accuracy.md"))
    a = ap.parse_args()
    a.u2recognize = os.path.join(common.REPO, a.build, "apps", "u2recognize")
    a.work = os.path.join(common.WORK, "accuracy")
    os.makedirs(a.work, exist_ok=True)
    torch.set_num_threads(a.threads)

    for split in REAL:
        if not os.path.exists(os.path.join(REAL_LISTS[split], "text")):
            sys.exit(f"{REAL_LISTS[split]} is missing: run tools/fetch_real_speech.py (scripts/setup.sh does)")
    refs = {s: common.read_table(os.path.join(list_dir(a, s), "text"), a.limit) for s in SPLITS}
    with open(os.path.join(a.model, "model.json")) as f:
        model_json = json.load(f)
    decoding = model_json["decoding"]
    a.input_layer = model_json["encoder"]["input_layer"]
    import yaml
    with open(os.path.join(a.model, "train.yaml")) as f:
        mc = yaml.safe_load(f)["model_conf"]
    a.train_weights = (mc.get("ctc_weight"), mc.get("reverse_weight", 0.0))

    # C++ engine: offline modes (full context) and streaming attention rescoring.
    cpp_offline, cpp_stream, cpp_hyps = {}, {}, {}
    print("C++ engine (u2recognize)", flush=True)
    for split in SPLITS:
        for mode, _ in OFFLINE_MODES:
            er, hyps, speed = u2recognize(a, split, refs[split], ["--mode", mode], mode)
            cpp_offline[(split, mode)] = (er, speed)
            cpp_hyps[(split, mode)] = hyps
        for chunk, left in STREAMING:
            er, hyps, speed = u2recognize(a, split, refs[split],
                                          ["--streaming", "--chunk-size", str(chunk), "--left-chunks", str(left)],
                                          f"streaming_c{chunk}_l{left}")
            cpp_stream[(split, chunk, left)] = (er, speed)
            cpp_hyps[(split, chunk, left)] = hyps

    peer = {}
    if not a.skip_peer:
        print("Peer on real speech (pocketsphinx)", flush=True)
        for split in REAL:
            peer[split] = run_pocketsphinx(a, split, refs[split])

    server_res = {}
    if not a.skip_server:
        print("Server (u2serve + u2client over gRPC)", flush=True)
        server_res = through_server(a, refs)

    # PyTorch reference: full context, and chunk 16 (the chunk-masked forward that streaming equals).
    torch_res = {}
    if not a.skip_torch:
        for split in SPLITS:  # the reference reads a feature index; make a missing one once
            if not os.path.exists(os.path.join(a.data, split, "feats.jsonl")):
                from_list = ["--from-list", REAL_LISTS[split]] if split in REAL else []
                subprocess.run([sys.executable, os.path.join(common.ROOT, "feats.py"), "--split", split, "--data",
                                a.data] + from_list, check=True)
        print("PyTorch reference (eval_ref.py)", flush=True)
        model = load_shipped_model(a.model)
        for chunk in (-1, 16):
            for split in SPLITS:
                limit = min(x for x in (a.limit, a.torch_limit) if x > 0) if (a.limit or a.torch_limit) else 0
                fs = WavFeatSet(split, a.data, limit=limit)
                t0 = time.time()
                errs, hyps = eval_ref.evaluate(model, fs, decoding["beam_size"], decoding["ctc_weight"],
                                               decoding["reverse_weight"], chunk)
                torch_res[(split, chunk)] = (errs, hyps)
                print(f"  {split:20s} chunk {chunk:3d}: " + ", ".join(
                    f"{m} {e.cer():.2f} %" for m, e in errs.items()) + f" ({time.time() - t0:.0f} s)", flush=True)

    a.samples_summary = samples_summary(a)
    write_doc(a, refs, decoding, cpp_offline, cpp_stream, cpp_hyps, torch_res, server_res, peer)


def run_pocketsphinx(a, split, refs):
    """CMU pocketsphinx en-us (train/peer_pocketsphinx.py) on the same utterances: ErrorRate."""
    out = os.path.join(a.work, f"{split}.pocketsphinx.hyp")
    scp_dir = os.path.join(a.work, f"{split}_list")
    os.makedirs(scp_dir, exist_ok=True)
    common.write_subset_scp(os.path.join(list_dir(a, split), "wav.scp"), refs, os.path.join(scp_dir, "wav.scp"))
    with open(os.path.join(scp_dir, "text"), "w") as f:
        f.writelines(f"{k} {v}\n" for k, v in refs.items())
    t0 = time.time()
    proc = subprocess.run([sys.executable, os.path.join(common.ROOT, "peer_pocketsphinx.py"), "--list", scp_dir,
                           "--out", out, "--jobs", str(a.threads)], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"pocketsphinx failed:\n{proc.stderr}")
    hyps = common.read_table(out)
    er = common.ErrorRate()
    for k, ref in refs.items():
        er.add(ref, hyps.get(k, ""))
    print(f"  {split:20s} pocketsphinx                 CER {er.cer():6.2f} %  WER {er.wer():6.2f} %  "
          f"({time.time() - t0:.0f} s)", flush=True)
    return er


class WavFeatSet(common.FeatSet):
    """The split's utterances with fbank computed from the wavs (torchaudio, float32), as the C++
    engine does, instead of the float16 feature cache the trainer reads."""

    def __init__(self, split, data_dir, limit=0):
        super().__init__(split, data_dir, limit)
        with open(os.path.join(data_dir, split, "data.jsonl")) as f:
            self.wavs = {r["key"]: r["wav"] for r in map(json.loads, f)}

    def feat(self, i):
        import torchaudio
        wav, rate = torchaudio.load(self.wavs[self.index[i]["key"]])
        f = torchaudio.compliance.kaldi.fbank(wav * 32768, num_mel_bins=80, frame_length=25, frame_shift=10,
                                              dither=0.0, energy_floor=0.0, sample_frequency=rate)
        assert f.size(0) == self.index[i]["frames"], "feature cache and wav disagree in length"
        return f.numpy()


def load_shipped_model(model_dir):
    """The PyTorch reference with exactly the weights u2serve loads (models/demo's float16
    safetensors, widened to float32), so differences are the engines', not the weights'."""
    import yaml
    from safetensors.torch import load_file
    from u2ref.config import normalize_config
    from u2ref.model import U2Model
    with open(os.path.join(model_dir, "train.yaml")) as f:
        cfg = normalize_config(yaml.safe_load(f))
    weights = {k: v.float() if v.is_floating_point() else v
               for k, v in load_file(os.path.join(model_dir, "model.safetensors")).items()}
    return U2Model.from_checkpoint(cfg, weights).eval()


def agreement(cpp_hyps, torch_hyps, refs):
    """(identical transcripts, utterances) over the utterances both engines decoded."""
    keys = [k for k in refs if k in torch_hyps]
    same = sum(1 for k in keys if " ".join(cpp_hyps.get(k, "").split()) == " ".join(torch_hyps[k].split()))
    return same, len(keys)


def subset_cer(cpp_hyps, torch_hyps, refs):
    er = common.ErrorRate()
    for k in refs:
        if k in torch_hyps:
            er.add(refs[k], cpp_hyps.get(k, ""))
    return er.cer()


def encoder_frame_ms(input_layer, frame_shift_ms=10):
    from u2ref.modules import SUBSAMPLING
    return SUBSAMPLING[input_layer].subsampling_rate * frame_shift_ms


@functools.lru_cache(maxsize=None)
def subsampling_convs(input_layer):
    """(kernel, stride) of each convolution of the reference model's front, read once per layer."""
    from u2ref.modules import SUBSAMPLING
    sub = SUBSAMPLING[input_layer](80, 1, torch.nn.Identity())
    return tuple((m.kernel_size[0], m.stride[0]) for m in sub.conv if isinstance(m, torch.nn.Conv2d))


def encoder_frames(num_frames, input_layer):
    """Encoder frames of an utterance of `num_frames` feature frames (unpadded convolutions)."""
    for k, st in subsampling_convs(input_layer):
        num_frames = 0 if num_frames < k else (num_frames - k) // st + 1
    return num_frames


def ctc_load(text, enc_frames):
    """The frames a CTC alignment of `text` needs (one per character, plus a blank between each
    pair of equal neighbours) per encoder frame. Near 1, CTC has no room left and drops letters."""
    need = len(text) + sum(1 for x, y in zip(text, text[1:]) if x == y)
    return need / max(1, enc_frames)


CTC_LOAD_BINS = ((0.0, 0.6), (0.6, 0.75), (0.75, 10.0))


def error_by_ctc_load(a, refs, cpp_hyps):
    """Markdown: attention-rescoring CER of each test set split by CTC load (ctc_load)."""
    L = ["## Where the errors are\n",
         f"Attention-rescoring CER split by *CTC load*: the frames a CTC alignment of the reference needs "
         f"(one per character, plus a blank between equal neighbours) over the utterance's encoder frames "
         f"({a.input_layer}: {encoder_frame_ms(a.input_layer)} ms each). Fast speech with character units "
         f"leaves CTC little room, and attention rescoring only re-ranks CTC's n-best list.\n",
         "| CTC load | " + " | ".join(f"{s} utterances | {s} CER" for s in SYNTHETIC) + " |",
         "|---|" + "---|---|" * len(SYNTHETIC)]
    cells = {}
    for s in SYNTHETIC:
        with open(os.path.join(a.data, s, "feats.jsonl")) as f:
            frames = {r["key"]: r["frames"] for r in map(json.loads, f)}
        hyps = cpp_hyps[(s, "attention_rescoring")]
        for lo, hi in CTC_LOAD_BINS:
            er, n = common.ErrorRate(), 0
            for k, ref in refs[s].items():
                if lo <= ctc_load(ref, encoder_frames(frames[k], a.input_layer)) < hi:
                    er.add(ref, hyps.get(k, ""))
                    n += 1
            cells[(s, lo)] = f"{n} | {er.cer():.2f} %" if n else "0 | -"
    for lo, hi in CTC_LOAD_BINS:
        label = f"< {hi:g}" if lo == 0 else (f">= {lo:g}" if hi >= 10 else f"{lo:g} - {hi:g}")
        L.append(f"| {label} | " + " | ".join(cells[(s, lo)] for s in SYNTHETIC) + " |")
    L.append("")
    L.extend(error_by_heldout_voice(a, refs, cpp_hyps))
    return L


def heldout_half(voice):
    """Which half of test_heldout_voice an espeak-ng voice ("accent+variant") belongs to."""
    accent = voice.split("+")[0]
    return f"accent {synth.HELDOUT_ACCENT}" if accent == synth.HELDOUT_ACCENT else f"variant {synth.HELDOUT_VARIANT}"


def error_by_heldout_voice(a, refs, cpp_hyps):
    """Markdown: attention-rescoring CER of each half of test_heldout_voice (synth.py's voice)."""
    with open(os.path.join(a.data, "test_heldout_voice", "data.jsonl")) as f:
        voices = {r["key"]: r["voice"] for r in map(json.loads, f)}
    hyps = cpp_hyps[("test_heldout_voice", "attention_rescoring")]
    rates = collections.defaultdict(common.ErrorRate)
    for k, ref in refs["test_heldout_voice"].items():
        rates[heldout_half(voices[k])].add(ref, hyps.get(k, ""))
    L = ["test_heldout_voice by held-out voice (attention rescoring): " +
         ", ".join(f"{half} {rates[half].cer():.2f} %" for half in sorted(rates)) + ".\n"]
    return L


# Attention rescoring CER targets, percent: issue 3 (synthetic) and issue 27 (real speech, unseen
# synthesizer; the synthetic sets may give a little for real speech).
TARGETS = {"test": 3.5, "test_heldout_voice": 8.0, "test_unseen_synth": 20.0, "real_test": 30.0}
SET_DESCRIPTIONS = {
    "test": "synthetic: espeak-ng, seen accents x seen variants (random speed/pitch/amplitude), no noise; "
            "sentences `train/eval_text/test.txt`",
    "test_heldout_voice": "synthetic: espeak-ng voices held out of training (half variant `m3`, half accent "
                          "`en-gb-scotland`); sentences `train/eval_text/test_heldout_voice.txt`",
    "test_unseen_synth": "synthetic: the test sentences spoken by Festival's `ked_diphone`, a voice and speaker "
                         "no training recipe uses (the unseen synthesizer)",
    "real_test": "**real human speech**: the test half of Debian's Asterisk prompts (one professional US "
                 "English voice, G.722 at 16 kHz; `tools/fetch_real_speech.py`), never trained on",
    "real_dev": "real human speech: the dev half of the Asterisk prompts; every choice (checkpoint, decoding) "
                "was made on it, so it is shown for reference only",
}


def status_paragraph(history, cpp_offline, peer):
    """Whether the targets are met, and how the model was trained: every run of the --init chain
    (runs.json "runs"), with the device each ran on."""
    cer = {s: cpp_offline[(s, "attention_rescoring")][0].cer() for s in TARGETS}
    split_met = {s: cer[s] <= TARGETS[s] for s in TARGETS}
    verdict = {True: "met", False: "not met"}
    text = ("**Targets** (attention rescoring CER): "
            + ", ".join(f"{s} {cer[s]:.2f} % (<= {TARGETS[s]:g} %: {verdict[split_met[s]]})" for s in TARGETS)
            + ".")
    if "real_test" in peer:
        text += (f" On the real-speech test half CMU pocketsphinx (an HMM system trained on real speech, with a "
                 f"word 3-gram LM) scores {peer['real_test'].cer():.2f} %.")
    runs = (history or {}).get("runs")
    if runs:
        devices = sorted({r.get("device", "cpu") for r in runs})
        steps, audio_h = sum(r["steps"] for r in runs), sum(r["audio_h"] for r in runs)
        where = {"cpu": "2 CPU cores shared with the team's builds", "cuda": "one H100 GPU"}
        text += (f" Trained for {steps} steps on {audio_h:.1f} h of audio processed, over {len(runs)} runs on "
                 + " and ".join(where.get(d, d) for d in devices) + " (train/README.md).")
    return text + "\n"


def table(header, rows):
    return [header, "|" + "---|" * (header.count("|") - 1)] + rows


def int8_section():
    """Markdown: the int8-vs-fp32 table of train/int8_report.py (bench/results/int8_accuracy.md),
    when it has been run; [] otherwise."""
    path = os.path.join(common.REPO, "bench", "results", "int8_accuracy.md")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        body = f.read().split("\n", 2)[2].strip()  # drop its title line
    with open(path[:-3] + ".json") as f:
        res = json.load(f)
    deltas = [r["int8_cer"] - r["fp32_cer"] for r in res["rows"]]
    worst = max(res["rows"], key=lambda r: r["int8_cer"] - r["fp32_cer"]) if res["rows"] else None
    body += ("\n\nRun %s. int8 minus fp32 CER: from %+.2f to %+.2f points (worst for int8: %+.2f; the "
             "issue's bound is 0.3 points).") % (res["meta"]["date"], min(deltas), max(deltas), max(deltas))
    if worst is not None and "delta_cer_ci95" in worst:
        low, high = worst["delta_cer_ci95"]
        if low > 0.3:
            verdict = "int8 is worse there by more than the bound"
        elif low > 0 and high >= 0.3:
            verdict = "int8 is measurably worse there, and the interval holds the bound"
        elif low > 0:
            verdict = "int8 is measurably worse there, by less than the bound"
        else:
            verdict = "its difference is within the set's noise"
        body += (" The worst row's paired-bootstrap 95 %% interval is [%+.2f, %+.2f] (%s, %s, %d utterances): "
                 "%s.") % (low, high, worst["set"], worst["mode"], worst["utterances"], verdict)
    return ["## int8 on the CPU (`--precision int8`)\n",
            "The same model with the linear layers and the later subsampling convolutions in int8 "
            "(docs/model-format.md), next to fp32, generated by `train/int8_report.py`. \"same best\": "
            "utterances whose best hypothesis is the same text; \"same 10-best list\": the whole n-best "
            "list, texts in order (its tail holds near-ties that int8 reorders).\n", body + "\n"]


def training_section(history):
    """Markdown: how the shipped weights were made, from the model's training/runs.json (its last
    run's data and arguments, and the "weights" recipe); [] for a model without that record."""
    if not history or not history.get("last_run"):
        return []
    snapshots = history["last_run"].get("snapshots")
    return (["## Training\n"] + common.training_summary(history["last_run"])
            + [f"* Weights: {history['weights']}"
               + (f" (the last run's snapshots: {', '.join(snapshots)})" if snapshots else "")
               + f". Shipped as float16 (`convert.py --dtype float16`); every run is listed in "
               f"`models/demo/{common.RUNS_FILE}`.\n"])


def write_doc(a, refs, decoding, cpp_offline, cpp_stream, cpp_hyps, torch_res, server_res, peer):
    history = common.load_history(a.model)
    L = ["# Demo model accuracy\n"]
    L.append(f"Model: `models/demo`, trained by `train/train.py` on synthetic speech only (espeak-ng, flite and "
             f"Festival voices with augmentation; `train/README.md`). Generated by `train/accuracy_report.py` "
             f"on {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC "
             f"(`.venv/bin/python train/accuracy_report.py --build build`).\n")
    L.append(status_paragraph(history, cpp_offline, peer))
    L.append("## Test sets\n")
    L.extend(table("| set | utterances | what |", [f"| {s} | {len(refs[s])} | {SET_DESCRIPTIONS[s]} |" for s in SPLITS]))
    L.append("\nThe synthetic sentences come from the GNU info manuals, which the training text does not read. "
             "The real recordings are the Asterisk project's IVR prompts by Allison Smith, distributed by Debian "
             "in `asterisk-core-sounds-en` and `asterisk-core-sounds-en-g722` under CC-BY-SA-3.0 (Digium, Inc.); "
             "they are decoded and normalized at set-up time, never committed, and never trained on (their "
             "transcripts are removed from the training text).")
    L.append("\nCER = character edit distance / reference characters (the spaces between words count, runs "
             "of spaces are collapsed first); WER = word edit distance / reference words. One scoring "
             f"(`train/common.py` ErrorRate) for every system. Decoding: beam {decoding['beam_size']}, "
             f"ctc_weight {decoding['ctc_weight']}, reverse_weight {decoding['reverse_weight']} (model.json).\n")
    L.extend(scoring_section(a.samples_summary))

    L.append("## Offline (full context)\n")
    rows = []
    for s in SPLITS:
        cells = [f"{cpp_offline[(s, m)][0].cer():.2f} % / {cpp_offline[(s, m)][0].wer():.1f} %" for m, _ in OFFLINE_MODES]
        extra = f" | {peer[s].cer():.2f} % / {peer[s].wer():.1f} %" if s in peer else " | -"
        rows.append(f"| {s} | " + " | ".join(cells) + extra + " |")
    L.extend(table("| set | " + " | ".join(f"{m} CER / WER" for m, _ in OFFLINE_MODES) + " | pocketsphinx CER / WER |",
                   rows))
    speed = sum(cpp_offline[(s, "attention_rescoring")][1] for s in SPLITS) / len(SPLITS)
    L.append(f"\nC++ speed (attention rescoring): {speed:.0f}x real time on the shared 2-core machine (an "
             "indication, not a benchmark; docs/benchmarks.md).\n")
    L.append("Command: `build/apps/u2recognize --model-dir models/demo --wav-scp <set>/wav.scp --mode <mode> "
             "--threads 2 --lm none`; pocketsphinx: `.venv/bin/python train/peer_pocketsphinx.py --list <set>`.\n")

    if torch_res:
        L.append("### The engine equals PyTorch\n")
        L.append("The PyTorch reference (`tools/u2ref`, models/demo's own float16 weights, fbank from the wavs) "
                 "on the first utterances of each set: identical transcripts / utterances.\n")
        rows = []
        for s in SPLITS:
            if (s, -1) not in torch_res:
                continue
            same = [agreement(cpp_hyps[(s, m)], {k: v[rm] for k, v in torch_res[(s, -1)][1].items()}, refs[s])
                    for m, rm in OFFLINE_MODES]
            stream_same = agreement(cpp_hyps[(s, 16, -1)],
                                    {k: v["attention_rescoring"] for k, v in torch_res[(s, 16)][1].items()}, refs[s])
            rows.append(f"| {s} | " + " | ".join(f"{x}/{n}" for x, n in same) +
                        f" | {stream_same[0]}/{stream_same[1]} |")
        L.extend(table("| set | " + " | ".join(m for m, _ in OFFLINE_MODES) +
                       " | streaming chunk 16 (vs the chunk-masked forward, docs/wenet-numerics.md §4.3) |", rows))
        L.append("")

    L.append("## Streaming (attention rescoring at the end of each utterance)\n")
    L.append("Decoded as live streams (`u2recognize --streaming`: audio in 640 ms pieces, chunk by chunk with "
             "attention and conv caches, prefix beam search carried across chunks, rescoring at the end). "
             "CER per set:\n")
    rows = []
    for chunk, left in STREAMING:
        rows.append(f"| {chunk} / {chunk * encoder_frame_ms(a.input_layer)} ms | {'full' if left < 0 else left} | "
                    + " | ".join(f"{cpp_stream[(s, chunk, left)][0].cer():.2f} %" for s in SPLITS) + " |")
    L.extend(table("| chunk (frames / ms) | left chunks | " + " | ".join(SPLITS) + " |", rows))
    L.append("\nCommand: `build/apps/u2recognize --model-dir models/demo --wav-scp <set>/wav.scp --streaming "
             "--chunk-size C --left-chunks L --threads 2 --lm none`\n")

    if server_res:
        L.append("## Through the server\n")
        L.append("The same sets sent to `u2serve` (models/demo, CPU) by `u2client` over gRPC, 4 requests in "
                 "flight: the offline model `attention_rescoring` (dynamically batched) and `streaming_wenet` "
                 "(each file a sequence of 640 ms chunks = chunk 16, left chunks full); identical = the same "
                 "transcript as u2recognize in that mode.\n")
        rows = []
        for s in SPLITS:
            cells = []
            for kind, local in (("offline", (s, "attention_rescoring")), ("streaming", (s, 16, -1))):
                er, theirs = server_res[(s, kind)]
                mine = cpp_hyps[local]
                same = sum(1 for k in refs[s] if " ".join(mine.get(k, "").split()) == " ".join(theirs.get(k, "").split()))
                cells.append(f"{er.cer():.2f} % | {same}/{len(refs[s])}")
            rows.append(f"| {s} | " + " | ".join(cells) + " |")
        L.extend(table("| set | attention_rescoring CER | identical | streaming_wenet CER | identical |", rows))
        L.append("\nCommands: `build/apps/u2serve --model-dir models/demo` and `build/apps/u2client --wav-scp "
                 "<set>.scp --concurrency 4 [--streaming]`.\n")

    L.append("Examples (attention_rescoring, C++):\n\n```")
    for s in ("test", "real_test"):
        ex = cpp_hyps[(s, "attention_rescoring")]
        for k in list(refs[s])[:: max(1, len(refs[s]) // 3)][:3]:
            L.append(f"{s} REF: {refs[s][k]}\n{s} HYP: {ex.get(k, '')}")
    L.append("```\n")
    L.extend(error_by_ctc_load(a, refs, cpp_hyps))
    L.extend(int8_section())
    L.extend(training_section(history))
    with open(a.doc, "w") as f:
        f.write("\n".join(L))
    print(f"wrote {a.doc}", flush=True)


if __name__ == "__main__":
    main()
