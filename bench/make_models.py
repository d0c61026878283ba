#!/usr/bin/env python3
"""Writes the benchmark's inputs under bench/work/ (git-ignored):

    bench/work/<model>/wenet/{train.yaml, final.pt, global_cmvn, units.txt}   a WeNet checkpoint
    bench/work/<model>/u2serve/                                               tools/convert.py output
    bench/work/clips/clip_<S>s.wav                                            16 kHz PCM16 test clips

Models (bench_common.MODELS): an AISHELL-2-U2++-sized and a WenetSpeech-sized Conformer with
random weights (tools/u2ref U2Model, seeded). Two things are set so that decoding behaves like a
trained model's instead of a random one's, which matters for the decoding cost:
  * global CMVN statistics are computed from the synthetic speech's fbank, so the encoder sees
    normalised input;
  * the CTC head is scaled so that the log-probs are peaky, and the blank bias is calibrated on a
    separate clip so that blank wins on ~80% of encoder frames (~5 tokens per second, a
    Mandarin speaking rate). Without this a random CTC head is almost uniform over 5,000 tokens and
    every frame emits a token.

Usage: .venv/bin/python bench/make_models.py [--models aishell2_u2pp wenetspeech] [--force]
"""

import argparse
import json
import os
import subprocess
import sys
import wave

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common as bc  # noqa: E402

sys.path.insert(0, os.path.join(bc.ROOT, "tools"))

BLANK_FRACTION = 0.8
CTC_LOGIT_STD = 3.0


def write_wav(path, samples, sample_rate=bc.SAMPLE_RATE):
    import numpy as np

    pcm = np.clip(np.round(samples * 32768.0), -32768, 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())


def read_wav(path):
    """-> float32 numpy in [-1, 1) (PCM16 / 32768), sample rate."""
    import numpy as np

    with wave.open(path, "rb") as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1, path
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return data.astype(np.float32) / 32768.0, w.getframerate()


def clip_path(seconds):
    return os.path.join(bc.WORK_DIR, "clips", "clip_%ds.wav" % seconds)


def fbank(samples):
    """WeNet's fbank: torchaudio kaldi compliance on the int16 scale, dither 0."""
    import torch
    import torchaudio

    wav = torch.from_numpy(samples).unsqueeze(0) * (1 << 15)
    return torchaudio.compliance.kaldi.fbank(wav, num_mel_bins=80, frame_length=25,
                                             frame_shift=10, dither=0.0, energy_floor=0.0,
                                             sample_frequency=bc.SAMPLE_RATE)


def make_clips():
    os.makedirs(os.path.join(bc.WORK_DIR, "clips"), exist_ok=True)
    for s in bc.CLIP_SECONDS:
        write_wav(clip_path(s), bc.clip(s))
    # Calibration clip (CMVN statistics, CTC blank bias): different seed from the test clips.
    path = os.path.join(bc.WORK_DIR, "clips", "calib_20s.wav")
    write_wav(path, bc.synth_speech_like(20, seed=7))
    return path


def make_units(name, V):
    """The unit list: <blank>, <unk>, then CJK characters with <sos/eos> last (the 2021 recipes'
    layout), or, for a model with special_tokens, <sos/eos> at 2 (the 2023+ layout); a BPE model
    gets sentencepiece-style pieces: "▁" + a letter string for word starts, bare strings inside
    words (deterministic, not a trained model: the benchmark times the network, not the text)."""
    special = "tokenizer_conf" in bc.MODELS[name]
    units = ["<blank>", "<unk>"] + (["<sos/eos>"] if special else [])
    n = V - len(units) - (0 if special else 1)
    if name in bc.BPE_MODELS:
        letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ'"
        pieces, length = [], 1
        while len(pieces) < n:
            for i in range(len(letters) ** length):
                s, k = "", i
                for _ in range(length):
                    s, k = letters[k % len(letters)] + s, k // len(letters)
                pieces += ["\u2581" + s, s]
            length += 1
        units += ["\u2581"] + pieces[:n - 1]
    else:
        units += [chr(0x4E00 + i) for i in range(2, 2 + n)]
    if not special:
        units.append("<sos/eos>")
    assert len(units) == V and len(set(units)) == V
    return units


def make_model(name, calib_wav, force=False):
    import numpy as np
    import torch
    import yaml

    from u2ref.cmvn import load_json_cmvn
    from u2ref.model import U2Model

    wdir = os.path.join(bc.model_dir(name), "wenet")
    udir = os.path.join(bc.model_dir(name), "u2serve")
    if os.path.exists(os.path.join(udir, "model.json")) and not force:
        bc.log("[make_models] %s: exists (use --force to rebuild)" % name)
        return
    os.makedirs(wdir, exist_ok=True)
    cfg = bc.MODELS[name]
    V = cfg["output_dim"]
    torch.manual_seed(1234)
    model = U2Model(cfg)
    model.eval()

    # CMVN from the calibration audio, WeNet JSON format.
    samples, _ = read_wav(calib_wav)
    feats = fbank(samples).double()
    stats = {"mean_stat": feats.sum(0).tolist(), "var_stat": (feats ** 2).sum(0).tolist(),
             "frame_num": int(feats.size(0))}
    cmvn_path = os.path.join(wdir, "global_cmvn")
    with open(cmvn_path, "w") as f:
        json.dump(stats, f)
    mean, istd = load_json_cmvn(cmvn_path)
    with torch.no_grad():
        model.encoder.global_cmvn.mean.copy_(torch.from_numpy(mean))
        model.encoder.global_cmvn.istd.copy_(torch.from_numpy(istd))

        # Calibrate the CTC head on the calibration clip's encoder output.
        x = fbank(samples).unsqueeze(0)
        enc, _ = model.encode(x, torch.tensor([x.size(1)]))
        enc = enc[0]
        lo = model.ctc.ctc_lo
        lo.bias.zero_()
        z = enc @ lo.weight.t()
        lo.weight.mul_(CTC_LOGIT_STD / float(z.std()))
        z = enc @ lo.weight.t()
        margin = z[:, 1:].max(1).values - z[:, 0]  # blank wins where bias > margin
        lo.bias[0] = float(torch.quantile(margin, BLANK_FRACTION))
        logp = model.ctc_logprobs(enc.unsqueeze(0))[0]
        blank_frac = float((logp.argmax(-1) == 0).float().mean())
    bc.log("[make_models] %s: %.1fM parameters, CTC blank argmax on %.0f%% of calibration frames"
           % (name, sum(p.numel() for p in model.parameters()) / 1e6, 100 * blank_frac))

    yaml_cfg = dict(cfg)
    with open(os.path.join(wdir, "train.yaml"), "w") as f:
        yaml.safe_dump(yaml_cfg, f, sort_keys=False)
    torch.save(model.state_dict(), os.path.join(wdir, "final.pt"))
    with open(os.path.join(wdir, "units.txt"), "w", encoding="utf-8") as f:
        for i, unit in enumerate(make_units(name, V)):
            f.write("%s %d\n" % (unit, i))
    cmd = [sys.executable, os.path.join(bc.ROOT, "tools", "convert.py"),
           "--config", os.path.join(wdir, "train.yaml"),
           "--checkpoint", os.path.join(wdir, "final.pt"),
           "--cmvn", cmvn_path, "--units", os.path.join(wdir, "units.txt"), "--out", udir]
    bc.log("[make_models] " + " ".join(cmd))
    subprocess.run(cmd, check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(bc.MODELS))
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    bc.pin_threads(2)
    import torch

    torch.set_num_threads(2)
    calib = make_clips()
    for name in args.models:
        make_model(name, calib, args.force)


if __name__ == "__main__":
    main()
