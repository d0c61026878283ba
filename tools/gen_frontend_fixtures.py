#!/usr/bin/env python3
"""Writes the frontend reference fixtures used by tests/cpp/test_fbank.cc and test_audio.cc.

  .venv/bin/python tools/gen_frontend_fixtures.py            # writes both outputs below

tests/fixtures/frontend/fbank.safetensors holds, for each deterministic test signal NAME:
  NAME.wav      (n,)     float32 waveform in [-1, 1), 16 kHz
  NAME.fbank    (T, 80)  torchaudio.compliance.kaldi.fbank(wav * 32768, num_mel_bins=80,
                         frame_length=25, frame_shift=10, dither=0, energy_floor=0), float32
  NAME.fbank64  (T, 80)  the same algorithm computed independently in float64 NumPy (docs/wenet-numerics.md §2.2),
                         rounded to float32 for storage
and once:
  povey_window_torch (400,) torch.hann_window(400, periodic=False).pow(0.85), float32: torch's
                         own window table, whose SLEEF-evaluated cos/pow differ from correctly
                         rounded values in the last bit at a few positions
The metadata lists the signal names in order ("signals", comma separated) and the versions used.

tests/data/audio/ holds a few small WAV files (16-bit PCM, written with the stdlib `wave`
module) for tests and demos of other components.

Everything is generated from fixed seeds, so re-running reproduces the files bit for bit
(given the same torch/torchaudio build).
"""
import argparse
import json
import struct
import math
import os
import wave

import numpy as np
import torch
import torchaudio
import torchaudio.compliance.kaldi as kaldi

SR = 16000
NUM_MEL_BINS = 80
FRAME_LEN = 400
FRAME_SHIFT = 160
NFFT = 512


def _t(n):
    return np.arange(n, dtype=np.float64) / SR


def _quantize16(x):
    """Round to the int16 grid, as audio read from a 16-bit file would be."""
    return np.clip(np.round(x * 32768.0), -32768, 32767) / 32768.0


def make_signals():
    rng = np.random.default_rng(20240611)
    sig = {}
    n = int(0.4 * SR)
    sig["sine440_loud"] = 0.5 * np.sin(2 * np.pi * 440 * _t(n))
    sig["sine3k_quiet"] = 0.003 * np.sin(2 * np.pi * 3000 * _t(n) + 0.3)
    n = int(0.6 * SR)
    t = _t(n)
    f0, f1, dur = 50.0, 7950.0, n / SR
    sig["chirp"] = 0.3 * np.sin(2 * np.pi * (f0 * t + 0.5 * (f1 - f0) / dur * t * t))
    sig["white_noise"] = np.clip(rng.normal(0.0, 0.1, int(0.4 * SR)), -1.0, 0.99)
    # Speech-like: voiced bursts (harmonic series with a moving f0 and formant-ish spectral tilt)
    # separated by low-level noise, quantised to 16 bits.
    n = SR
    t = _t(n)
    x = 1e-4 * rng.normal(size=n)
    for start, length, f0 in [(0.05, 0.22, 120.0), (0.35, 0.18, 210.0), (0.62, 0.3, 160.0)]:
        i0, i1 = int(start * SR), int((start + length) * SR)
        tt = t[i0:i1] - start
        env = np.sin(np.pi * tt / length) ** 2
        f = f0 * (1 + 0.1 * np.sin(2 * np.pi * 3 * tt))
        phase = 2 * np.pi * np.cumsum(f) / SR
        burst = sum((0.8 / h) * np.sin(h * phase) * math.exp(-((h * f0 - 700) / 1500) ** 2)
                    for h in range(1, 30) if h * f0 < 7800)
        x[i0:i1] += 0.4 * env * burst
    x[int(0.9 * SR):int(0.95 * SR)] += 0.05 * rng.normal(size=int(0.05 * SR))  # fricative
    sig["speech_like"] = _quantize16(x)
    sig["silence"] = np.zeros(int(0.3 * SR))
    n = int(0.4 * SR)
    sig["dc_offset"] = 0.2 + 0.05 * np.sin(2 * np.pi * 700 * _t(n)) + 0.002 * rng.normal(size=n)
    sig["dc_pure"] = np.full(int(0.3 * SR), 0.123456)
    n = int(0.4 * SR)
    sig["square_clip"] = np.where(np.sin(2 * np.pi * 250 * _t(n) + 0.1) >= 0, 32767 / 32768, -1.0)
    for n in (399, 400, 401):
        sig[f"short_{n}"] = 0.2 * np.sin(2 * np.pi * 1000 * _t(n)) + 0.01 * rng.normal(size=n)
    n = int(1.3 * SR)
    t = _t(n)
    env = np.exp(np.linspace(math.log(1e-4), math.log(0.9), n))
    x = env * (0.5 * np.sin(2 * np.pi * 300 * t) + 0.3 * np.sin(2 * np.pi * 2300 * t)
               + 0.2 * rng.normal(size=n))
    sig["varied_amp"] = _quantize16(np.clip(x, -1.0, 0.99))
    return {k: v.astype(np.float32) for k, v in sig.items()}


def torchaudio_fbank(wav):
    x = torch.from_numpy(wav).unsqueeze(0) * 32768
    if wav.shape[0] < FRAME_LEN:
        return torch.zeros(0, NUM_MEL_BINS)
    return kaldi.fbank(x, num_mel_bins=NUM_MEL_BINS, frame_length=25, frame_shift=10, dither=0.0,
                       energy_floor=0.0, sample_frequency=SR)


def float64_fbank(wav):
    """Spec §2.2 step by step in float64: an independent reference."""
    s = wav.astype(np.float64) * 32768.0
    num_frames = 0 if len(s) < FRAME_LEN else 1 + (len(s) - FRAME_LEN) // FRAME_SHIFT
    j = np.arange(FRAME_LEN)
    window = (0.5 - 0.5 * np.cos(2 * np.pi * j / (FRAME_LEN - 1))) ** 0.85

    def mel(f):
        return 1127.0 * np.log(1.0 + f / 700.0)

    mlo, mhi = mel(20.0), mel(SR / 2)
    delta = (mhi - mlo) / (NUM_MEL_BINS + 1)
    mk = mel(np.arange(NFFT // 2) * SR / NFFT)
    weights = np.zeros((NUM_MEL_BINS, NFFT // 2 + 1))
    for b in range(NUM_MEL_BINS):
        left, center, right = mlo + b * delta, mlo + (b + 1) * delta, mlo + (b + 2) * delta
        up = (mk - left) / (center - left)
        down = (right - mk) / (right - center)
        weights[b, :NFFT // 2] = np.maximum(0.0, np.minimum(up, down))
    out = np.zeros((num_frames, NUM_MEL_BINS))
    for t in range(num_frames):
        frame = s[t * FRAME_SHIFT:t * FRAME_SHIFT + FRAME_LEN].copy()
        frame -= frame.mean()
        frame = frame - 0.97 * np.concatenate(([frame[0]], frame[:-1]))
        frame *= window
        power = np.abs(np.fft.rfft(frame, NFFT)) ** 2
        out[t] = np.log(np.maximum(weights @ power, np.finfo(np.float32).eps))
    return out


def save_safetensors(tensors, path, metadata):
    """A safetensors file with sorted keys, so that regenerating it is byte-for-byte identical
    (the safetensors package orders the metadata by hash)."""
    header = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        assert t.dtype == torch.float32, name
        blob = t.numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def write_wav16(path, samples, rate, channels=1):
    pcm = np.clip(np.round(samples * 32768.0), -32768, 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def write_test_audio(out_dir):
    """Small WAV files for other components' tests (all well under 300 KB together)."""
    os.makedirs(out_dir, exist_ok=True)
    sig = make_signals()
    # 1 s of the speech-like signal at 16 kHz mono, as most tests want it.
    write_wav16(os.path.join(out_dir, "speech_like_16k.wav"), sig["speech_like"], SR)
    # The same content at 8 kHz (decimated by 2 after a crude low-pass), to exercise resampling.
    x = sig["speech_like"].astype(np.float64)
    lp = np.convolve(x, np.hanning(31) / np.hanning(31).sum(), mode="same")
    write_wav16(os.path.join(out_dir, "speech_like_8k.wav"), lp[::2], SR // 2)
    # 0.5 s of a 440 Hz / 660 Hz stereo pair at 44.1 kHz (interleaved L/R).
    n = int(0.5 * 44100)
    t = np.arange(n) / 44100
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 660 * t)], axis=1)
    write_wav16(os.path.join(out_dir, "tones_44k_stereo.wav"), stereo.reshape(-1), 44100, channels=2)
    # Shorter than one 25 ms frame (399 samples): valid audio that yields zero feature frames.
    write_wav16(os.path.join(out_dir, "too_short_16k.wav"), sig["short_399"], SR)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(root, "tests/fixtures/frontend/fbank.safetensors"))
    ap.add_argument("--audio-dir", default=os.path.join(root, "tests/data/audio"))
    args = ap.parse_args()
    torch.set_num_threads(1)

    tensors = {}
    names = []
    for name, wav in make_signals().items():
        ref = torchaudio_fbank(wav).to(torch.float32).contiguous()
        ref64 = float64_fbank(wav)
        assert ref.shape == ref64.shape, (name, ref.shape, ref64.shape)
        err = float(np.abs(ref.numpy().astype(np.float64) - ref64).max()) if ref64.size else 0.0
        print(f"{name:14s} n={wav.shape[0]:6d} T={ref.shape[0]:4d} |torchaudio - float64| max {err:.3g}")
        tensors[f"{name}.wav"] = torch.from_numpy(wav.copy())
        tensors[f"{name}.fbank"] = ref
        tensors[f"{name}.fbank64"] = torch.from_numpy(ref64.astype(np.float32))
        names.append(name)
    tensors["povey_window_torch"] = torch.hann_window(FRAME_LEN, periodic=False, dtype=torch.float32).pow(0.85)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    meta = {"signals": ",".join(names), "torch": torch.__version__, "torchaudio": torchaudio.__version__,
            "sample_rate": str(SR)}
    save_safetensors(tensors, args.out, meta)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")
    write_test_audio(args.audio_dir)
    print(f"wrote {args.audio_dir}")


if __name__ == "__main__":
    main()
