"""The synthesizers the demo model's training speech comes from, each turning a sentence into
16 kHz mono int16 samples.

  espeak   espeak-ng (formant synthesis): 7 accents x ~46 variants, random speed, pitch, amplitude
  flite    CMU flite 2.2: kal (8 kHz diphone), kal16 (16 kHz diphone), and the clustergen voices
           awb (Scottish male), rms (US male), slt (US female), built from real recordings;
           random duration stretch and pitch target
  festival Festival 2.5 with Debian's voices: kal_diphone, ked_diphone (US male diphone
           voices) and cmu_us_slt_arctic_hts (HTS, US female)

A voice is (engine, name) plus prosody settings drawn by the caller's random generator, so every
utterance is reproducible from its seed. Festival runs as one long-lived process per worker
(`festival --pipe`), because starting it costs more than synthesizing a sentence.

Held out of training entirely (train/synth.py): festival's ked_diphone, the "unseen
synthesizer" test voice, and espeak's variant m3 and accent en-gb-scotland (test_heldout_voice).
"""
import os
import subprocess
import tempfile
import time

import numpy as np

SAMPLE_RATE = 16000

ESPEAK_ACCENTS = ["en-us", "en", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us-nyc"]
ESPEAK_VARIANTS = [
    "", "m1", "m2", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
    "Alex", "Andy", "Annie", "antonio", "aunty", "belinda", "boris", "ed", "Gene", "grandma",
    "grandpa", "Jacky", "john", "linda", "max", "Michael", "Mike", "norbert", "pablo", "paul",
    "pedro", "quincy", "rob", "robert", "shelby", "steph", "travis", "victor", "adam", "caleb",
    "david", "benjamin", "edward",
]
FLITE_VOICES = ["kal", "kal16", "awb", "rms", "slt"]
FESTIVAL_TRAIN_VOICES = ["kal_diphone", "cmu_us_slt_arctic_hts"]
FESTIVAL_HELDOUT_VOICE = "ked_diphone"
# Natural pitch centre of each flite voice (Hz), so that a random target stays plausible.
FLITE_F0 = {"kal": 105, "kal16": 105, "awb": 110, "rms": 105, "slt": 180}


def to_pcm16k(wav_bytes):
    """Any WAV (e.g. 8 or 32 kHz) as 16 kHz mono int16 samples, resampled by sox."""
    raw = subprocess.run(
        ["sox", "-R", "-V1", "-t", "wav", "-", "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-e", "signed-integer",
         "-t", "raw", "-"], input=wav_bytes, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True).stdout
    return np.frombuffer(raw, dtype=np.int16).copy()


def espeak(text, rng, accent=None, variant=None):
    """(samples, settings) spoken by espeak-ng; accent/variant drawn from the training pool if None."""
    accent = accent or rng.choice(ESPEAK_ACCENTS)
    variant = rng.choice(ESPEAK_VARIANTS) if variant is None else variant
    voice = accent + ("+" + variant if variant else "")
    speed, pitch, amp = rng.randint(120, 200), rng.randint(20, 80), rng.randint(50, 100)
    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-a", str(amp), "--stdout",
                          text], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True).stdout
    return to_pcm16k(wav), dict(engine="espeak", voice=voice, speed=speed, pitch=pitch, amp=amp)


def flite(text, rng, voice=None):
    """(samples, settings) spoken by flite: duration stretch 0.85..1.25, pitch centre +-25 %."""
    voice = voice or rng.choice(FLITE_VOICES)
    stretch = round(rng.uniform(0.85, 1.25), 3)
    f0 = int(FLITE_F0[voice] * rng.uniform(0.75, 1.25))
    with tempfile.NamedTemporaryFile(suffix=".wav") as out:
        subprocess.run(["flite", "-voice", voice, "-s", f"duration_stretch={stretch}", "-s",
                        f"int_f0_target_mean={f0}", "-t", text, "-o", out.name],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        with open(out.name, "rb") as f:
            wav = f.read()
    return to_pcm16k(wav), dict(engine="flite", voice=voice, stretch=stretch, f0=f0)


class Festival:
    """One `festival --pipe` process per voice, each synthesizing sentence after sentence
    (selecting a voice in Festival reloads it, which costs far more than a sentence)."""

    def __init__(self):
        self.procs = {}

    def _process(self, voice):
        proc = self.procs.get(voice)
        if proc is None or proc.poll() is not None:
            # Festival buffers its own output, so completion is signalled by a marker file it
            # creates after saving the wave (its commands run in order).
            proc = subprocess.Popen(["festival", "--pipe"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, text=True)
            proc.stdin.write(f"(voice_{voice})\n")
            self.procs[voice] = proc
        return proc

    def say(self, text, voice, stretch, timeout_s=60.0):
        proc = self._process(voice)
        with tempfile.TemporaryDirectory() as tmp:
            wav_path, done_path = os.path.join(tmp, "u.wav"), os.path.join(tmp, "done")
            safe = text.replace("\\", " ").replace('"', " ")
            proc.stdin.write(
                f"(Parameter.set 'Duration_Stretch {stretch})\n"
                f"(set! u (Utterance Text \"{safe}\"))\n(utt.synth u)\n"
                f"(utt.save.wave u \"{wav_path}\" 'riff)\n(fclose (fopen \"{done_path}\" \"w\"))\n")
            proc.stdin.flush()
            deadline = time.monotonic() + timeout_s
            while not os.path.exists(done_path):
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    self.procs.pop(voice, None)
                    raise RuntimeError(f"festival ({voice}) failed on {text!r}")
                time.sleep(0.002)
            with open(wav_path, "rb") as f:
                wav = f.read()
        return to_pcm16k(wav)


_FESTIVAL = Festival()


def festival(text, rng, voice=None):
    """(samples, settings) spoken by Festival: duration stretch 0.85..1.2 (diphone voices)."""
    voice = voice or rng.choice(FESTIVAL_TRAIN_VOICES)
    stretch = round(rng.uniform(0.85, 1.2), 3)
    return _FESTIVAL.say(text, voice, stretch), dict(engine="festival", voice=voice, stretch=stretch)


ENGINES = {"espeak": espeak, "flite": flite, "festival": festival}


def speak(text, rng, engine_weights):
    """A random engine (by weight) and voice for one training utterance."""
    names = sorted(engine_weights)
    engine = rng.choices(names, weights=[engine_weights[n] for n in names])[0]
    return ENGINES[engine](text, rng)


def available():
    """Engines whose programs are installed."""
    from shutil import which
    out = {"espeak": which("espeak-ng") is not None, "flite": which("flite") is not None}
    # train/gpu/run_train_gpu.sh points this at the carried festival's library folder.
    libdir = os.environ.get("U2_FESTIVAL_LIBDIR", "/usr/share/festival")
    out["festival"] = which("festival") is not None and os.path.isdir(os.path.join(libdir, "voices"))
    return out
