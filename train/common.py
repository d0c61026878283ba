"""Shared pieces of the demo-model pipeline: units, config, cached features, batching, CER."""
import json
import os
import random
import re
import subprocess
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(ROOT)
WORK = os.path.join(ROOT, "work")
# The real-speech halves tools/fetch_real_speech.py builds at set-up time (dev/, test/: wav.scp, text).
REAL_SPEECH = os.path.join(REPO, "data", "real_speech", "asterisk_en")
sys.path.insert(0, os.path.join(REPO, "tools"))

# HEAD-recipe token table: <blank> 0, <unk> 1, <sos/eos> 2 (declared in tokenizer_conf.special_tokens).
UNITS = ["<blank>", "<unk>", "<sos/eos>", "'", "\u2581"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
UNIT_ID = {u: i for i, u in enumerate(UNITS)}


def text_to_ids(text):
    return [UNIT_ID.get("\u2581" if ch == " " else ch, 1) for ch in text]


def ids_to_text(ids):
    return "".join(" " if UNITS[i] == "\u2581" else UNITS[i] for i in ids if i > 2).strip()


def make_train_config(input_layer="conv2d", encoder_linear_units=576):
    """The WeNet train.yaml dict of the demo model (< 10 M params). `input_layer` is WeNet's
    subsampling front: conv2d (40 ms encoder frames, the shipped model) or conv2d2 (20 ms, twice
    the frames for CTC to place characters in when the speech is fast). `encoder_linear_units` is
    the hidden width of the encoder's feed-forward modules (576 in the shipped model; a wider one
    can start from narrower weights, widen_feed_forward)."""
    enc = dict(
        output_size=144, attention_heads=4, linear_units=encoder_linear_units, num_blocks=6,
        dropout_rate=0.1, positional_dropout_rate=0.1, attention_dropout_rate=0.0,
        input_layer=input_layer, pos_enc_layer_type="rel_pos", selfattention_layer_type="rel_selfattn",
        normalize_before=True, macaron_style=True, activation_type="swish",
        use_cnn_module=True, cnn_module_kernel=8, causal=True, cnn_module_norm="layer_norm",
        static_chunk_size=0, use_dynamic_chunk=True, use_dynamic_left_chunk=False)
    dec = dict(
        attention_heads=4, linear_units=576, num_blocks=2, r_num_blocks=1,
        dropout_rate=0.1, positional_dropout_rate=0.1, self_attention_dropout_rate=0.0,
        src_attention_dropout_rate=0.0)
    return {
        "input_dim": 80,
        "output_dim": len(UNITS),
        "encoder": "conformer",
        "encoder_conf": enc,
        "decoder": "bitransformer",
        "decoder_conf": dec,
        "ctc": "ctc",
        "ctc_conf": {"ctc_blank_id": 0},
        "model": "asr_model",
        "model_conf": {"ctc_weight": 0.3, "lsm_weight": 0.1, "reverse_weight": 0.3,
                       "length_normalized_loss": False},
        "cmvn": "global_cmvn",
        "cmvn_conf": {"cmvn_file": "global_cmvn", "is_json_cmvn": True},
        "tokenizer": "char",
        "tokenizer_conf": {"symbol_table_path": "units.txt", "split_with_space": False,
                           "non_lang_syms_path": None, "is_multilingual": False, "num_languages": 1,
                           "special_tokens": {"<blank>": 0, "<unk>": 1, "<sos>": 2, "<eos>": 2}},
        "dataset": "asr",
        "dataset_conf": {
            "resample_conf": {"resample_rate": 16000},
            "fbank_conf": {"num_mel_bins": 80, "frame_shift": 10, "frame_length": 25, "dither": 0.0},
            "spec_aug": True,
            "spec_aug_conf": {"num_t_mask": 2, "num_f_mask": 2, "max_t": 40, "max_f": 10},
        },
    }


def load_weights_except_front(model, state):
    """Load a state_dict into `model`. Only the subsampling front (encoder.embed.*, which changes
    with input_layer) may differ: its tensors that are missing from `state` or shaped differently
    keep their fresh initialisation, and their names are returned. Positional tables (*.pe) the
    model computes itself may be missing too (a converted model leaves the decoders' out). Any other
    difference raises, so a wrong checkpoint still fails loudly."""
    own = model.state_dict()
    keep = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    fresh = sorted(k for k in own if k not in keep and not (k.endswith(".pe") and k not in state))
    unused = sorted(k for k in state if k not in keep)
    bad = [k for k in fresh + unused if not k.startswith("encoder.embed.")]
    if bad:
        raise ValueError("checkpoint does not fit the model outside the subsampling front: " + ", ".join(bad[:8]))
    model.load_state_dict(keep, strict=False)
    return fresh


_FEED_FORWARD = re.compile(r"^encoder\.encoders\.\d+\.feed_forward(?:_macaron)?\.w_([12])\.(weight|bias)$")


def widen_feed_forward(state, reference):
    """`state` with its encoder feed-forward modules widened to the shapes in `reference` (a
    state_dict of the wider model), and the names it widened. Each module computes
    w_2(swish(w_1 x)): the old hidden units keep their weights, the new ones take `reference`'s
    rows of w_1 (for training: the model's fresh initialisation) and zero columns of w_2, so the
    widened model computes exactly what the narrow one did until training moves the new columns
    (the Net2Net way of growing a trained network). Any other difference is left for the caller to
    refuse; a narrower reference raises."""
    out, widened = dict(state), []
    for k, v in state.items():
        match = _FEED_FORWARD.match(k)
        if not match or k not in reference or reference[k].shape == v.shape:
            continue
        want = reference[k]
        units_dim = 0 if match.group(1) == "1" else 1  # w_1: [units, D] and [units]; w_2: [D, units]
        if (want.dim() != v.dim() or want.shape[units_dim] < v.shape[units_dim]
                or any(want.shape[d] != v.shape[d] for d in range(v.dim()) if d != units_dim)):
            raise ValueError(f"{k}: cannot widen {tuple(v.shape)} to {tuple(want.shape)}")
        new = want.detach().clone().to(v.dtype) if units_dim == 0 else torch.zeros_like(want, dtype=v.dtype)
        new.narrow(units_dim, 0, v.shape[units_dim]).copy_(v)
        out[k] = new
        widened.append(k)
    return out, sorted(widened)


def load_checkpoint(path):
    """torch.load for this project's own checkpoints. They hold RNG states and plain Python objects,
    which torch >= 2.6 (the GPU machine's) refuses to unpickle unless weights_only=False; torch 1.13
    (Debian's, used here) takes the same argument."""
    return torch.load(path, map_location="cpu", weights_only=False)


def run_summary(ck, path):
    """One training run as finalize.py reports it, from its checkpoint (train.py's ckpt/last.pt)."""
    path = os.path.abspath(path)
    if path.startswith(REPO + os.sep):
        path = os.path.relpath(path, REPO)
    return dict(checkpoint=path, steps=ck["step"],
                audio_h=ck["audio_s"] / 3600, train_min=ck["train_s"] / 60, device=ck.get("device", "cpu"))


# The demo model ships no training checkpoint: its converted weights are the weights to continue
# from (`train.py --init models/demo`), and the runs that made them are listed in this file.
RUNS_FILE = os.path.join("training", "runs.json")


# What a report needs of the last run to describe the training (training_summary): its train.py
# arguments, its data and the model's size. runs.json keeps it beside the weights so that the
# description follows the model wherever it was built (a blend made in several finalize.py runs,
# a GPU result installed from elsewhere) instead of whatever train/work last exported.
LAST_RUN_KEYS = ("args", "train_hours", "train_vowel_shifted", "train_engines", "params", "snapshots")


def last_run_record(info):
    """finalize.py's info dict -> the "last_run" entry of runs.json."""
    return {k: info[k] for k in LAST_RUN_KEYS if k in info}


def load_history(model_dir):
    """A converted model's training/runs.json ({"weights", "runs", "last_run"}), or None when the
    folder has none (a model converted from elsewhere)."""
    path = os.path.join(model_dir, RUNS_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def load_model_dir_weights(model_dir):
    """A converted model's weights (model.safetensors, tools/convert.py) as the reference model's
    state_dict. For the models train.py makes, convert.py keeps every tensor under the reference's
    name and unchanged but for the dtype (float16 here, CMVN statistics float32); it adds the
    frontend's window (the engine's, not a weight) and leaves out the decoders' positional tables,
    which the model computes. Weights come back as float32."""
    from safetensors.torch import load_file
    path = os.path.join(model_dir, "model.safetensors")
    if not os.path.isfile(path):
        raise SystemExit(f"{model_dir}: no model.safetensors (a converted model folder, e.g. models/demo)")
    return {k: v.float() if v.is_floating_point() else v for k, v in load_file(path).items()
            if not k.startswith("frontend.")}


def load_weights(path):
    """-> (model state_dict, run history) of what --init / --interpolate-from name: a converted
    model folder (models/demo: its weights and training/runs.json), a train.py checkpoint (its
    "model" and its --init chain) or a plain state_dict (final.pt, model_step*.pt: no history)."""
    if os.path.isdir(path):
        return load_model_dir_weights(path), (load_history(path) or {}).get("runs", [])
    ck = load_checkpoint(path)
    if isinstance(ck.get("model"), dict):
        return ck["model"], run_history(ck, path)
    return ck, []


def run_history(ck, path):
    """The runs that produced checkpoint `ck` (loaded from `path`), oldest first: a weights file
    with "runs" (models/demo/training/last.pt until the demo model stopped shipping one) lists them
    all; a train.py checkpoint lists the runs it continued ("prior_runs") and is itself the last; a
    bare state_dict has no history."""
    if "runs" in ck:
        return list(ck["runs"])
    if "step" in ck:
        return list(ck.get("prior_runs", [])) + [run_summary(ck, path)]
    return []


def write_units(path):
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(f"{u} {i}\n" for i, u in enumerate(UNITS)))


def load_cmvn_stats(path):
    from u2ref.cmvn import load_json_cmvn
    mean, istd = load_json_cmvn(path)
    return torch.from_numpy(mean), torch.from_numpy(istd)


def write_cmvn_stats(path, mean, istd):
    """WeNet's JSON global_cmvn that loads back as exactly (to float32 rounding) this mean and
    1/std: one pseudo-frame whose sum is the mean and whose sum of squares is var + mean^2."""
    mean = [float(m) for m in mean]
    sq = [1.0 / float(i) ** 2 + m * m for m, i in zip(mean, istd)]
    with open(path, "w") as f:
        json.dump({"mean_stat": mean, "var_stat": sq, "frame_num": 1}, f)


class FeatSet:
    """A split's cached fbank features (float16, memory-mapped) and transcripts."""

    def __init__(self, split, data_dir=None, limit=0):
        d = os.path.join(data_dir or os.path.join(WORK, "data"), split)
        self.feats = np.load(os.path.join(d, "feats.npy"), mmap_mode="r")
        with open(os.path.join(d, "feats.jsonl")) as f:
            self.index = [json.loads(line) for line in f]
        if limit > 0:
            self.index = self.index[:limit]
        self.tokens = [text_to_ids(r["txt"]) for r in self.index]

    def __len__(self):
        return len(self.index)

    def feat(self, i):
        r = self.index[i]
        return self.feats[r["offset"]: r["offset"] + r["frames"]]

    def hours(self):
        return sum(r["frames"] for r in self.index) / 360000.0

    def load_to_memory(self):
        self.feats = np.ascontiguousarray(self.feats)

    def collate(self, ids):
        lens = [self.index[i]["frames"] for i in ids]
        T = max(lens)
        x = np.zeros((len(ids), T, self.feats.shape[1]), np.float32)
        for b, i in enumerate(ids):
            x[b, : lens[b]] = self.feat(i)
        tl = [len(self.tokens[i]) for i in ids]
        y = torch.full((len(ids), max(tl)), -1, dtype=torch.long)
        for b, i in enumerate(ids):
            y[b, : tl[b]] = torch.tensor(self.tokens[i])
        return torch.from_numpy(x), torch.tensor(lens), y, torch.tensor(tl)


def make_batches(featset, max_frames, seed, epoch):
    """Length-bucketed dynamic batches: sort by length (with a little seeded jitter), cut so that
    padded frames (batch x longest) stay <= max_frames, then shuffle the batch order."""
    rng = random.Random(seed * 1000 + epoch)
    order = sorted(range(len(featset)),
                   key=lambda i: featset.index[i]["frames"] * rng.uniform(0.95, 1.05))
    batches, cur, longest = [], [], 0
    for i in order:
        n = featset.index[i]["frames"]
        if cur and max(longest, n) * (len(cur) + 1) > max_frames:
            batches.append(cur)
            cur, longest = [], 0
        cur.append(i)
        longest = max(longest, n)
    if cur:
        batches.append(cur)
    rng.shuffle(batches)
    return batches


def edit_distance(a, b):
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
        prev = cur
    return prev[-1]


def char_errors(ref, hyp):
    """-> (character edits, reference characters) after collapsing runs of whitespace; the one
    definition of a character error that ErrorRate and the paired model comparison share."""
    ref, hyp = " ".join(ref.split()), " ".join(hyp.split())
    return edit_distance(ref, hyp), len(ref)


class ErrorRate:
    """CER over characters (spaces between words count as characters) and WER over words."""

    def __init__(self):
        self.ce = self.cn = self.we = self.wn = 0

    def add(self, ref, hyp):
        """Counts one utterance; -> its (character errors, reference characters)."""
        errors, length = char_errors(ref, hyp)
        self.ce += errors
        self.cn += length
        self.we += edit_distance(ref.split(), hyp.split())
        self.wn += len(ref.split())
        return errors, length

    def cer(self):
        return 100.0 * self.ce / max(1, self.cn)

    def wer(self):
        return 100.0 * self.we / max(1, self.wn)


def split_records(split="train", data_dir=None):
    """synth.py's data.jsonl of a split: one dict per utterance (text, voice, augmentation)."""
    path = os.path.join(data_dir or os.path.join(WORK, "data"), split, "data.jsonl")
    with open(path) as f:
        return [json.loads(line) for line in f]


def vowel_shifted_share(split="train", data_dir=None):
    """The share of a split's utterances that synth.py spoke with shifted vowels (data.jsonl)."""
    shifts = [r.get("vowel_shift", 0.0) for r in split_records(split, data_dir)]
    return sum(1 for s in shifts if s > 0) / max(1, len(shifts))


def engine_shares(split="train", data_dir=None):
    """{synthesizer: share of the split's utterances} from data.jsonl ("engine"; the espeak-only
    recipe, which wrote none, counts as espeak)."""
    engines = [r.get("engine", "espeak") for r in split_records(split, data_dir)]
    return {e: engines.count(e) / len(engines) for e in sorted(set(engines))} if engines else {}


def subsampling_description(input_layer):
    """e.g. "conv2d subsampling x4 (40 ms frames)", from the reference model's own rate."""
    from u2ref.modules import SUBSAMPLING
    rate = SUBSAMPLING[input_layer].subsampling_rate
    return f"{input_layer} subsampling x{rate} ({rate * 10} ms frames)"


def training_summary(info):
    """The data, model, optimisation and augmentation lines of a report's "Training" section, from
    the last run's record (runs.json "last_run", or finalize.py's own info dict, which holds the
    same keys: one wording for docs/accuracy.md and finalize's own report)."""
    tr = info["args"]
    engines = info.get("train_engines") or {"espeak": 1.0}
    if set(engines) == {"espeak"}:
        data = (f"* Data: {info['train_hours']:.2f} h of espeak-ng speech (`train/synth.py`), 7 accents x 46 "
                "variants, speed 120-200, pitch 20-80, amplitude 50-100, faint noise on half, gain 0.5-1")
    else:  # the mixed recipe (synth.py --recipe mixed), alone or mixed with the espeak one (mix_data.py)
        data = (f"* Data: {info['train_hours']:.2f} h of synthetic speech (`train/synth.py`, `train/mix_data.py`): "
                + ", ".join(f"{name} {100 * share:.0f} %" for name, share in engines.items())
                + " of the utterances; the mixed recipe's with speed, pitch, reverberation, noise and codec "
                "augmentation (`train/augment.py`)")
    if info.get("train_vowel_shifted"):
        data += f"; {100 * info['train_vowel_shifted']:.1f} % of the utterances with shifted vowels"
    lines = [data + ".",
             f"* Model: {info['params'] / 1e6:.2f} M parameters; Conformer encoder d=144, 4 heads, 6 blocks, "
             f"ffn 576, {subsampling_description(tr.get('input_layer', 'conv2d'))}, causal conv kernel 8 with layer_norm, rel_pos; dynamic chunk "
             "training; bitransformer decoder 2 left + 1 right blocks; CTC + attention loss (ctc_weight 0.3, "
             "reverse_weight 0.3, lsm_weight 0.1). 31 character units.",
             f"* Optimisation: AdamW lr {tr['lr']}, warmup {tr['warmup']} steps, cosine decay "
             + (f"over {tr['schedule_minutes']} training minutes" if tr.get("schedule_minutes") else
                f"over {tr['total_steps']} steps")
             + f", batches of <= {tr['max_frames']} padded frames, grad clip {tr['grad_clip']}, seed {tr['seed']}."]
    aug = []
    if tr.get("specaug_from_epoch", 1) >= 0:
        aug.append(f"SpecAugment from epoch {tr.get('specaug_from_epoch', 1)} (2 frequency masks <= 10 bins, "
                   "2 time masks <= 40 frames)")
    if tr.get("silence_pad_prob"):
        aug.append(f"silence of 0-{tr.get('silence_pad_max', 200)} frames around {tr['silence_pad_prob']:g} "
                   "of the utterances")
    if tr.get("freq_warp_prob"):
        aug.append(f"frequency warp 1 +- {tr.get('freq_warp_max', 0.1):g} on {tr['freq_warp_prob']:g} of the "
                   "utterances")
    if aug:
        lines.append("* Augmentation in the last run: " + "; ".join(aug) + ".")
    return lines


def read_table(path, limit=0):
    """Kaldi-style "<key> <value>" lines (wav.scp, text, hypotheses) -> {key: value}, in file order."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                k, _, v = line.rstrip("\n").partition(" ")
                out[k] = v.strip()
                if limit and len(out) == limit:
                    break
    return out


def write_subset_scp(wav_scp, keys, out_path):
    """Writes the wav.scp lines of `keys` (in their order) to out_path, with relative paths made
    absolute (they are relative to the list's own folder)."""
    wavs = read_table(wav_scp)
    base = os.path.dirname(os.path.abspath(wav_scp))
    with open(out_path, "w") as f:
        f.writelines(f"{k} {os.path.normpath(os.path.join(base, wavs[k]))}\n" for k in keys)


def run_u2recognize(binary, model_dir, wav_scp, result, threads, extra):
    """Decodes wav_scp with the C++ engine; -> ({utt: hypothesis}, x real time). Exits on failure."""
    cmd = [binary, "--model-dir", model_dir, "--wav-scp", wav_scp, "--threads", str(threads),
           "--batch-size", "8", "--result", result, "--quiet"] + list(extra)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    rtf_line = [line for line in proc.stderr.splitlines() if "real time" in line]
    speed = float(rtf_line[-1].split("s,")[-1].split("x real time")[0]) if rtf_line else 0.0
    return read_table(result), speed
