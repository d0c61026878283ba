"""Waveform augmentation that moves synthetic speech toward what microphones and phone lines
deliver. Each training utterance gets a random chain, drawn from the caller's generator (so it
is reproducible) and recorded in data.jsonl:

  speed     sox `speed` 0.9 / 1.0 / 1.1 (Kaldi's speed perturbation: tempo and pitch together)
  pitch     sox `pitch` +-100..500 cents (p 0.4): new speakers from the few natural voices
  eq        sox `bass`/`treble` +-6 dB (p 0.3): microphone and room colour
  reverb    sox `reverb` (p 0.3): reverberance 15..80 %, room scale 20..100 %, pre-delay 0..20 ms
  channel   (p 0.35) one of: G.722 round trip at 16 kHz (PyPI g722), G.711 mu-law or A-law at
            8 kHz, GSM 06.10 at 8 kHz, AMR-NB at 8 kHz (if this sox has it), or a plain 8 kHz
            band limit; 8 kHz channels are resampled back to 16 kHz
  noise     (p 0.4) white, pink or brown noise at 10..40 dB SNR; otherwise (p 0.5 of the rest)
            faint white noise (sigma 1..30 on the int16 scale) as before, so silence is never
            only digital zeros
  gain      peak level -30..-1 dBFS

Vocal tract length perturbation and SpecAugment are applied later, on the features (train.py).
"""
import subprocess
import tempfile

import numpy as np

SAMPLE_RATE = 16000
CHANNELS = ["g722", "ulaw", "alaw", "gsm", "amr-nb", "band8k"]


def sox_effects(samples, effects, rate=SAMPLE_RATE):
    """Samples through a sox effects chain; the result is resampled to 16 kHz."""
    raw = subprocess.run(
        ["sox", "-R", "-V1", "-t", "raw", "-r", str(rate), "-e", "signed-integer", "-b", "16", "-c", "1", "-",
         "-t", "raw", "-r", str(SAMPLE_RATE), "-e", "signed-integer", "-b", "16", "-c", "1", "-"] + effects,
        input=samples.astype(np.int16).tobytes(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        check=True).stdout
    return np.frombuffer(raw, dtype=np.int16).copy()


def sox_codec_round_trip(samples, file_type, extra=()):
    """Through an 8 kHz telephone codec file (sox encodes and decodes), back at 16 kHz."""
    with tempfile.NamedTemporaryFile(suffix="." + file_type) as coded:
        subprocess.run(["sox", "-R", "-V1", "-t", "raw", "-r", str(SAMPLE_RATE), "-e", "signed-integer", "-b", "16",
                        "-c", "1", "-", *extra, "-r", "8000", "-c", "1", "-t", file_type, coded.name],
                       input=samples.astype(np.int16).tobytes(), stderr=subprocess.DEVNULL, check=True)
        raw = subprocess.run(["sox", "-R", "-V1", "-t", file_type, coded.name, "-t", "raw", "-r", str(SAMPLE_RATE),
                              "-e", "signed-integer", "-b", "16", "-c", "1", "-"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True).stdout
    return np.frombuffer(raw, dtype=np.int16).copy()


def g722_round_trip(samples):
    import G722  # PyPI g722
    codec = G722.G722(SAMPLE_RATE, 64000)
    coded = codec.encode(samples.astype(np.int16))
    return np.asarray(G722.G722(SAMPLE_RATE, 64000).decode(coded), dtype=np.int16)


def apply_channel(samples, channel):
    if channel == "g722":
        return g722_round_trip(samples)
    if channel == "ulaw":
        return sox_codec_round_trip(samples, "wav", ["-e", "u-law", "-b", "8"])
    if channel == "alaw":
        return sox_codec_round_trip(samples, "wav", ["-e", "a-law", "-b", "8"])
    if channel == "gsm":
        return sox_codec_round_trip(samples, "gsm")
    if channel == "amr-nb":
        return sox_codec_round_trip(samples, "amr-nb")
    return sox_effects(samples, ["rate", "8000", "rate", str(SAMPLE_RATE)])


def coloured_noise(n, colour, rng):
    """Unit-variance white, pink (1/f) or brown (1/f^2) noise, shaped in the frequency domain."""
    white = rng.standard_normal(n)
    if colour == "white":
        return white
    spectrum = np.fft.rfft(white)
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = 1.0
    spectrum /= np.sqrt(f) if colour == "pink" else f
    shaped = np.fft.irfft(spectrum, n)
    return shaped / (shaped.std() + 1e-12)


class Augmenter:
    def __init__(self, channels=None):
        self.channels = channels or self.working_channels()

    @staticmethod
    def working_channels():
        """The channels this machine can run (AMR-NB needs a sox built with it)."""
        probe = (np.sin(np.arange(1600) * 0.05) * 1000).astype(np.int16)
        out = []
        for ch in CHANNELS:
            try:
                apply_channel(probe, ch)
                out.append(ch)
            except Exception:  # noqa: BLE001 - a missing codec only narrows the choice
                pass
        return out

    def __call__(self, samples, rng, np_rng):
        """(augmented samples, the chain as a dict)."""
        chain = {}
        x = samples.astype(np.int16)
        effects = []
        speed = rng.choice([0.9, 1.0, 1.1])
        if speed != 1.0:
            effects += ["speed", str(speed)]
            chain["speed"] = speed
        if rng.random() < 0.4:
            cents = rng.choice([-1, 1]) * rng.randint(100, 500)
            effects += ["pitch", str(cents)]
            chain["pitch"] = cents
        if rng.random() < 0.3:
            bass, treble = rng.randint(-6, 6), rng.randint(-6, 6)
            effects += ["bass", str(bass), "treble", str(treble)]
            chain["eq"] = [bass, treble]
        if rng.random() < 0.3:
            reverb = [rng.randint(15, 80), 50, rng.randint(20, 100), 100, rng.randint(0, 20)]
            effects += ["reverb"] + [str(v) for v in reverb]
            chain["reverb"] = reverb
        if effects:
            # Headroom first: EQ and reverb can push a loud utterance into clipping.
            try:
                x = sox_effects((x.astype(np.float32) * 0.5).astype(np.int16), effects)
            except subprocess.CalledProcessError:
                # sox 14.4 can crash in `pitch` on some inputs; keep the utterance unaugmented.
                chain = {"effects_failed": effects}
        if rng.random() < 0.35 and self.channels:
            channel = rng.choice(self.channels)
            try:
                x = apply_channel(x, channel)
                chain["channel"] = channel
            except subprocess.CalledProcessError:
                chain["channel_failed"] = channel
        y = x.astype(np.float64)
        if rng.random() < 0.4:
            colour = rng.choice(["white", "pink", "brown"])
            snr = rng.uniform(10.0, 40.0)
            power = max(np.mean(y * y), 1.0)
            y += coloured_noise(len(y), colour, np_rng) * np.sqrt(power / 10 ** (snr / 10))
            chain["noise"] = [colour, round(snr, 1)]
        elif rng.random() < 0.5:
            sigma = rng.uniform(1.0, 30.0)
            y += np_rng.normal(0.0, sigma, len(y))
            chain["faint_noise"] = round(sigma, 1)
        peak_dbfs = rng.uniform(-30.0, -1.0)
        peak = np.abs(y).max()
        if peak > 0:
            y *= 32767.0 * 10 ** (peak_dbfs / 20) / peak
        chain["peak_dbfs"] = round(peak_dbfs, 1)
        return np.clip(np.round(y), -32768, 32767).astype(np.int16), chain
