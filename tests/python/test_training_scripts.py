"""The demo model's training bookkeeping (train/): the run history a checkpoint carries through
--init chains, checkpoint loading, the accuracy report's statement of the targets, and the
silence-padding augmentation.

These are the pieces a GPU run relies on without anyone watching (train/gpu/run_train_gpu.sh), so
they are checked here on hand-built checkpoints."""
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "train"))
import accuracy_report  # noqa: E402
import common  # noqa: E402
import make_corpus  # noqa: E402


def train_ckpt(step, audio_s, train_s, device="cpu", prior=None):
    """What train.py's save_ckpt writes (the fields the history uses, plus Python RNG state)."""
    ck = dict(model={"w": torch.zeros(2)}, step=step, audio_s=audio_s, train_s=train_s, device=device,
              py_rng=random.Random(1).getstate())
    if prior is not None:
        ck["prior_runs"] = prior
    return ck


def test_checkpoint_with_python_objects_round_trips(tmp_path):
    path = tmp_path / "ck.pt"
    ck = train_ckpt(10, 36.0, 60.0)
    torch.save(ck, path)
    back = common.load_checkpoint(str(path))
    assert back["step"] == 10 and back["py_rng"] == ck["py_rng"]


def test_run_history_of_each_checkpoint_kind(tmp_path):
    # A bare state_dict has no history.
    assert common.run_history({"w": torch.zeros(1)}, str(tmp_path / "final.pt")) == []

    # A train.py checkpoint of a first run: itself.
    first = train_ckpt(100, 3600.0, 600.0)
    h1 = common.run_history(first, str(tmp_path / "a" / "last.pt"))
    assert len(h1) == 1
    assert h1[0]["steps"] == 100 and h1[0]["audio_h"] == pytest.approx(1.0)
    assert h1[0]["train_min"] == pytest.approx(10.0) and h1[0]["device"] == "cpu"
    assert h1[0]["checkpoint"] == str(tmp_path / "a" / "last.pt")  # outside the repo: absolute

    # A run that continued it (--init) records it as prior and is itself the last entry.
    second = train_ckpt(50, 7200.0, 120.0, device="cuda", prior=h1)
    h2 = common.run_history(second, str(ROOT / "train" / "work" / "exp_gpu" / "last.pt"))
    assert [r["steps"] for r in h2] == [100, 50]
    assert h2[1]["device"] == "cuda" and h2[1]["checkpoint"] == "train/work/exp_gpu/last.pt"

    # A weights file with "runs" (the demo model's old training/last.pt) is taken as it is.
    shipped = dict(model={}, step=50, audio_s=7200.0, train_s=120.0, runs=h2)
    assert common.run_history(shipped, "models/demo/training/last.pt") == h2


def test_shipped_model_lists_the_runs_that_made_it():
    weights, runs = common.load_weights(str(ROOT / "models" / "demo"))
    assert len(runs) >= 1 and all(r["steps"] > 0 and r["audio_h"] > 0 for r in runs)
    # No training checkpoint ships: the converted weights are what --init continues from.
    assert not (ROOT / "models" / "demo" / "training" / "last.pt").exists()
    assert "encoder.global_cmvn.mean" in weights and weights["ctc.ctc_lo.weight"].dtype == torch.float32


def test_shipped_model_describes_its_last_run_for_the_accuracy_report():
    # docs/accuracy.md's "Training" section is written from this record, so it must be the last
    # run of the listed chain, with what training_summary reads.
    history = common.load_history(str(ROOT / "models" / "demo"))
    last = history["last_run"]
    assert os.path.dirname(history["runs"][-1]["checkpoint"]) == last["args"]["exp"]
    lines = common.training_summary(last)
    assert lines[0].startswith(f"* Data: {last['train_hours']:.2f} h") and f"seed {last['args']['seed']}" in lines[2]
    assert history["weights"]


def test_accuracy_doc_describes_the_shipped_models_training():
    # The section is generated from the model's own runs.json; a model changed without re-running
    # train/accuracy_report.py leaves docs/accuracy.md describing the previous one.
    section = "\n".join(accuracy_report.training_section(common.load_history(str(ROOT / "models" / "demo"))))
    assert section.startswith("## Training") and (ROOT / "docs" / "accuracy.md").read_text().endswith(section)


def test_training_section_needs_a_last_run_record():
    assert accuracy_report.training_section(None) == []
    assert accuracy_report.training_section(dict(weights="w", runs=[])) == []
    args = dict(lr=5e-4, warmup=40, schedule_minutes=48, max_frames=2000, grad_clip=5.0, seed=7)
    last = dict(args=args, train_hours=7.0, params=4.63e6, snapshots=["exp/model_step000010.pt"])
    section = accuracy_report.training_section(dict(weights="0.5 x A + 0.5 x B", runs=[], last_run=last))
    assert section[0] == "## Training\n" and section[1].startswith("* Data: 7.00 h")
    assert "Weights: 0.5 x A + 0.5 x B (the last run's snapshots: exp/model_step000010.pt)" in section[-1]


def test_init_from_a_converted_model_gives_back_its_weights(tmp_path):
    """train.py --init models/demo: convert.py's float16 tensors under the reference's names load
    back into the reference model, every learnt tensor equal to the checkpoint's float16 value."""
    torch.manual_seed(3)
    model = small_u2("conv2d")
    model.eval()
    export = tmp_path / "export"
    export.mkdir()
    cfg = common.make_train_config("conv2d")
    cfg["encoder_conf"].update(output_size=16, linear_units=32, num_blocks=1, attention_heads=2)
    cfg["decoder_conf"].update(linear_units=32, num_blocks=1, attention_heads=2)
    import yaml
    cfg["cmvn"] = "global_cmvn"
    (export / "train.yaml").write_text(yaml.safe_dump(cfg))
    torch.save(model.state_dict(), export / "final.pt")
    common.write_cmvn_stats(str(export / "global_cmvn"), [0.0] * 80, [1.0] * 80)
    common.write_units(str(export / "units.txt"))
    out = tmp_path / "model"
    subprocess.run([sys.executable, str(ROOT / "tools" / "convert.py"), "--config", str(export / "train.yaml"),
                    "--checkpoint", str(export / "final.pt"), "--cmvn", str(export / "global_cmvn"),
                    "--units", str(export / "units.txt"), "--out", str(out), "--dtype", "float16"],
                   check=True, capture_output=True)
    weights, runs = common.load_weights(str(out))
    assert runs == []  # no training/runs.json beside it
    fresh = small_u2("conv2d")
    assert common.load_weights_except_front(fresh, weights) == []
    for k, v in model.state_dict().items():
        want = v if "global_cmvn" in k or k.endswith(".pe") else v.half().float()
        assert torch.equal(fresh.state_dict()[k], want), k
    (out / "training").mkdir()
    (out / "training" / "runs.json").write_text(json.dumps(dict(weights="x", runs=[dict(steps=5)])))
    assert common.load_weights(str(out))[1] == [dict(steps=5)]
    with pytest.raises(SystemExit, match="no model.safetensors"):
        common.load_weights(str(tmp_path))


class FakeRate:
    def __init__(self, cer):
        self._cer = cer

    def cer(self):
        return self._cer


def status(cers, runs, peer=None):
    cpp = {(s, "attention_rescoring"): (FakeRate(c), 100.0) for s, c in cers.items()}
    info = dict(step=runs[-1]["steps"], audio_h=runs[-1]["audio_h"], train_min=runs[-1]["train_min"],
                train_hours=10.0, runs=runs)
    return accuracy_report.status_paragraph(info, cpp, peer or {})


def test_status_paragraph_states_each_target():
    cpu = dict(checkpoint="train/work/exp/last.pt", steps=100, audio_h=5.0, train_min=30.0, device="cpu")
    gpu = dict(checkpoint="train/work/exp_gpu/last.pt", steps=900, audio_h=500.0, train_min=9.0, device="cuda")
    at = {"test": 3.5, "test_heldout_voice": 8.0, "test_unseen_synth": 20.0, "real_test": 30.0}
    text = status(at, [cpu, gpu], {"real_test": FakeRate(16.3)})
    # Exactly at a target counts as met; the peer is named; totals add up over the runs.
    assert text.count(": met)") == 4 and "not met" not in text
    assert "pocketsphinx" in text and "16.30 %" in text
    assert "1000 steps" in text and "505.0 h" in text and "H100" in text
    over = dict(at, real_test=30.01)
    text = status(over, [cpu])
    assert "real_test 30.01 % (<= 30 %: not met)" in text and "test 3.50 % (<= 3.5 %: met)" in text


def test_cmvn_stats_written_from_buffers_load_back_exactly(tmp_path):
    from u2ref.cmvn import load_json_cmvn
    mean, istd = load_json_cmvn(str(ROOT / "models" / "demo" / "global_cmvn"))
    path = tmp_path / "global_cmvn"
    common.write_cmvn_stats(str(path), mean.tolist(), istd.tolist())
    mean2, istd2 = load_json_cmvn(str(path))
    assert (mean2 == mean).all()
    # 1/std goes through var = 1/istd^2 and back in double precision: equal, or one float32 ulp.
    assert abs(istd2 - istd).max() <= 1.2e-7 * abs(istd).max()


def test_digital_silence_constant_is_fbank_of_zeros():
    import feats
    import numpy as np
    import train
    silence = feats.fbank(np.zeros(8000, np.int16))
    assert np.allclose(silence, train.DIGITAL_SILENCE_FBANK, atol=1e-6)


def test_silence_padding_keeps_each_utterance_and_pads_with_silence():
    import train
    x = torch.randn(4, 50, 80)
    lens = torch.tensor([50, 31, 20, 7])
    noise = train.faint_noise_fbank(seconds=5)
    out, out_lens = train.pad_with_silence(x.clone(), lens, random.Random(3), 1.0, 25, noise)
    assert out.shape == (4, int(out_lens.max()), 80)
    assert bool((out_lens >= lens).all()) and bool((out_lens > lens).any())
    silence_rows = set(map(tuple, noise.numpy().round(4)))
    for b in range(4):
        n, total = int(lens[b]), int(out_lens[b])
        # The utterance sits unchanged at some offset; every other valid frame is silence.
        starts = [s for s in range(total - n + 1) if torch.equal(out[b, s: s + n], x[b, :n])]
        assert len(starts) == 1
        s = starts[0]
        for t in list(range(s)) + list(range(s + n, total)):
            row = out[b, t]
            is_zero_fbank = bool(torch.all(row == train.DIGITAL_SILENCE_FBANK))
            is_noise = tuple(row.numpy().round(4)) in silence_rows
            assert is_zero_fbank or is_noise
        assert bool((out[b, total:] == 0).all())  # batch padding beyond the length stays zero


def test_silence_padding_with_zero_probability_changes_nothing():
    import train
    x = torch.randn(2, 10, 80)
    lens = torch.tensor([10, 6])
    out, out_lens = train.pad_with_silence(x, lens, random.Random(0), 0.0, 25, None)
    assert out is x and out_lens is lens


def test_mel_warp_with_alpha_one_is_the_identity():
    import train
    src = train.mel_warp_sources(80, 1.0)
    assert torch.allclose(src, torch.arange(80, dtype=torch.float32), atol=1e-4)


def test_frequency_warp_moves_a_tone_like_a_shifted_tone():
    # Warping the fbank of a 1,000 Hz tone by alpha must look like the fbank of a 1,000 * alpha Hz
    # tone: same peak bin, and close log energies at it.
    import feats
    import numpy as np
    import train

    def tone_fbank(hz):
        t = np.arange(16000) / 16000.0
        return torch.from_numpy(feats.fbank(np.round(8000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)))

    for alpha in (0.9, 1.1):
        x = tone_fbank(1000.0).unsqueeze(0).clone()
        lens = torch.tensor([x.size(1)])

        class FixedRng:  # draws alpha exactly
            def random(self):
                return 0.0

            def uniform(self, lo, hi):
                return alpha - 1.0
        train.warp_frequency(x, lens, FixedRng(), 1.0, 0.1)
        want = tone_fbank(1000.0 * alpha)
        peak = int(want[50].argmax())
        assert int(x[0, 50].argmax()) == peak
        # Within a bin of the peak the log energies agree to 0.6 (measured: <= 0.45); further out
        # the tone's skirt falls by ~5 per bin and the bins' shapes differ, so they are not compared.
        assert float((x[0, 50, peak - 1: peak + 2] - want[50, peak - 1: peak + 2]).abs().max()) < 0.6


def test_frequency_warp_keeps_constant_rows_lengths_and_padding():
    import train
    x = torch.randn(3, 40, 80)
    x[1, :, :] = train.DIGITAL_SILENCE_FBANK
    lens = torch.tensor([40, 40, 25])
    x[2, 25:] = 0
    before = x.clone()
    train.warp_frequency(x, lens, random.Random(5), 1.0, 0.1)
    assert not torch.equal(x[0], before[0])
    assert torch.allclose(x[1], before[1])  # a flat spectrum stays flat
    assert bool((x[2, 25:] == 0).all())  # batch padding beyond the length is untouched
    # Each output value lies between the two input bins it came from (linear interpolation).
    assert float(x[0].max()) <= float(before[0].max()) + 1e-6
    assert float(x[0].min()) >= float(before[0].min()) - 1e-6
    y = torch.randn(2, 10, 80)
    z = y.clone()
    train.warp_frequency(z, torch.tensor([10, 10]), random.Random(0), 0.0, 0.1)
    assert torch.equal(y, z)


def test_vowel_shift_rate_zero_keeps_the_phonemes():
    import synth
    phonemes = "DIs l'Ist Iz InD@ w'IndoU_:_: If ju: kan s'i:; It"
    assert synth.shift_vowels(phonemes, random.Random(0), 0.0) == phonemes


def test_vowel_shift_moves_only_vowels_to_their_neighbours():
    import synth

    tokens = synth.split_phonemes
    # Hand-checked tokenization: longest match keeps diphthongs and long vowels whole.
    assert tokens("w'IndoU aI i: s'Ent@nsI#z") == [
        (False, "w"), (False, "'"), (True, "I"), (False, "n"), (False, "d"), (True, "oU"), (False, " "),
        (True, "aI"), (False, " "), (True, "i:"), (False, " "), (False, "s"), (False, "'"), (True, "E"),
        (False, "n"), (False, "t"), (True, "@"), (False, "n"), (False, "s"), (True, "I#"), (False, "z")]
    phonemes = "DIs l'Ist Iz InD@ w'IndoU If ju: kan s'i: It"
    shifted = synth.shift_vowels(phonemes, random.Random(1), 1.0)
    assert shifted != phonemes
    # The consonants, stress marks and word breaks stay where they were: drop the vowels of both
    # strings and the rest is equal. Every vowel of the result is a neighbour of some vowel.
    def skeleton(p):
        return "".join(t for v, t in tokens(p) if not v)
    assert skeleton(shifted) == skeleton(phonemes)
    neighbours = {n for ns in synth.VOWEL_NEIGHBOURS.values() for n in ns}
    assert all(t in neighbours or t in synth.VOWEL_NEIGHBOURS for v, t in tokens(shifted) if v)
    # Every neighbour is itself a vowel mnemonic (so shifted strings tokenize the same way).
    assert neighbours <= set(synth.VOWEL_NEIGHBOURS)


@pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None,
                    reason="espeak-ng and sox are installed by scripts/setup.sh")
def test_synth_speaks_shifted_vowels_and_leaves_other_utterances_alone(tmp_path):
    import json
    import wave
    import synth
    (tmp_path / "wavs").mkdir()
    text = "this list is in the window"
    plain = synth.synth_espeak(("train", 7, text, str(tmp_path), 0.0))
    with wave.open(plain["wav"], "rb") as w:
        plain_pcm = w.readframes(w.getnframes())
    assert plain["vowel_shift"] == 0.0
    shifted = synth.synth_espeak(("train", 7, text, str(tmp_path), 1.0))
    with wave.open(shifted["wav"], "rb") as w:
        shifted_pcm = w.readframes(w.getnframes())
    assert 0.1 <= shifted["vowel_shift"] <= 0.4
    # Same voice, speed and transcript; different sounds, of about the same length.
    for k in ("voice", "speed", "pitch", "amp", "txt"):
        assert shifted[k] == plain[k]
    assert shifted_pcm != plain_pcm
    assert 0.7 < len(shifted_pcm) / len(plain_pcm) < 1.3
    json.dumps(shifted)
    # Held-out and test splits never get shifted vowels.
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "wavs").mkdir()
    assert synth.synth_espeak(("test", 7, text, str(tmp_path / "t"), 1.0))["vowel_shift"] == 0.0


def test_training_summary_lists_the_data_and_the_augmentations_of_the_last_run():
    args = dict(lr=5e-4, warmup=40, schedule_minutes=48, max_frames=2000, grad_clip=5.0, seed=7,
                specaug_from_epoch=0, silence_pad_prob=0.15, freq_warp_prob=0.5, freq_warp_max=0.1)
    info = dict(args=args, train_hours=39.23, params=4.63e6, train_vowel_shifted=0.1659)
    lines = common.training_summary(info)
    assert lines[0].startswith("* Data: 39.23 h") and "16.6 % of the utterances with shifted vowels" in lines[0]
    assert "cosine decay over 48 training minutes" in lines[2] and "seed 7" in lines[2]
    assert "SpecAugment from epoch 0" in lines[3] and "frequency warp 1 +- 0.1 on 0.5" in lines[3]
    # Data without shifted vowels and a run without augmentation say neither.
    plain = dict(info, train_vowel_shifted=0.0, args=dict(args, specaug_from_epoch=-1, silence_pad_prob=0,
                                                          freq_warp_prob=0))
    lines = common.training_summary(plain)
    assert "shifted" not in lines[0] and len(lines) == 3
    assert "conv2d subsampling x4" in lines[1]
    assert "conv2d2 subsampling x2" in common.training_summary(dict(info, args=dict(args, input_layer="conv2d2")))[1]
    # A split with several synthesizers names their shares instead of the espeak-only recipe.
    mixed = common.training_summary(dict(info, train_engines={"espeak": 0.55, "festival": 0.15, "flite": 0.3}))
    assert "espeak 55 %, festival 15 %, flite 30 %" in mixed[0] and "7 accents" not in mixed[0]


def test_engine_shares_count_the_espeak_recipe_as_espeak(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "data.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in [{"key": "a"}, {"key": "b", "engine": "flite"},
                                               {"key": "c", "engine": "flite"}, {"key": "d", "engine": "espeak"}]))
    assert common.engine_shares("train", str(tmp_path)) == {"espeak": 0.5, "flite": 0.5}


def small_u2(input_layer, encoder_linear_units=32):
    from u2ref.model import U2Model
    cfg = common.make_train_config(input_layer)
    cfg["encoder_conf"].update(output_size=16, linear_units=encoder_linear_units, num_blocks=1, attention_heads=2)
    cfg["decoder_conf"].update(linear_units=32, num_blocks=1, attention_heads=2)
    return U2Model(cfg)


def test_init_across_subsampling_fronts_carries_every_other_weight():
    torch.manual_seed(0)
    x4, x2 = small_u2("conv2d"), small_u2("conv2d2")
    before = {k: v.clone() for k, v in x2.state_dict().items()}
    fresh = common.load_weights_except_front(x2, x4.state_dict())
    # The linear after the convolutions takes a wider input at x2, so its weight starts fresh (its
    # bias has the same shape and is kept, as is the first convolution; conv2d's second one has no
    # counterpart and is dropped).
    assert fresh == ["encoder.embed.out.0.weight"]
    after, src = x2.state_dict(), x4.state_dict()
    for k, v in after.items():
        if k in fresh:
            assert torch.equal(v, before[k]), k
        else:
            assert torch.equal(v, src[k]), k
    assert torch.equal(after["encoder.embed.conv.0.weight"], src["encoder.embed.conv.0.weight"])


def test_init_from_a_different_model_body_is_refused():
    a, b = small_u2("conv2d"), small_u2("conv2d")
    state = a.state_dict()
    state["decoder.left_decoder.embed.0.weight"] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match="outside the subsampling front"):
        common.load_weights_except_front(b, state)
    # Same front, same body: everything loads and nothing is fresh.
    assert common.load_weights_except_front(b, a.state_dict()) == []


def test_widened_feed_forward_computes_what_the_narrow_model_did():
    torch.manual_seed(0)
    narrow, wide = small_u2("conv2d").eval(), small_u2("conv2d", encoder_linear_units=48).eval()
    state, widened = common.widen_feed_forward(narrow.state_dict(), wide.state_dict())
    # w_1 (weight and bias) and w_2's weight of both feed-forward modules; w_2's bias keeps its shape.
    assert widened == sorted(f"encoder.encoders.0.{m}.{t}" for m in ("feed_forward", "feed_forward_macaron")
                             for t in ("w_1.bias", "w_1.weight", "w_2.weight"))
    assert common.load_weights_except_front(wide, state) == []
    w2 = wide.state_dict()["encoder.encoders.0.feed_forward.w_2.weight"]
    assert w2.shape == (16, 48) and torch.count_nonzero(w2[:, 32:]) == 0
    x, lens = torch.randn(2, 40, 80), torch.tensor([40, 31])
    with torch.no_grad():
        # Float32 sums of other lengths: equal to rounding, far below any trained difference.
        torch.testing.assert_close(wide.encoder(x, lens)[0], narrow.encoder(x, lens)[0], atol=1e-5, rtol=1e-5)
    # Nothing to widen between equal models; a narrower target is refused.
    assert common.widen_feed_forward(narrow.state_dict(), narrow.state_dict())[1] == []
    with pytest.raises(ValueError, match="cannot widen"):
        common.widen_feed_forward(wide.state_dict(), narrow.state_dict())


def test_decoding_grid_reranks_one_nbest_per_weight_pair():
    import tune_decoding
    # (text, ctc_score, l2r, r2l). Utterance 1: CTC prefers "cat", both decoders prefer "cut"
    # by 1.0, so ctc_weight 0.7 (margin 2.0 x 0.7 = 1.4 > 1.0) flips it back to "cat".
    # Utterance 2: the left-to-right decoder prefers the wrong "dog", the right-to-left one the
    # right "dot" by more, so any reverse_weight above 0.25 picks "dot".
    scored = [("cut", [("cat", -1.0, -5.0, -5.0), ("cut", -3.0, -4.0, -4.0)]),
              ("dot", [("dog", -1.0, -3.0, -6.0), ("dot", -1.0, -4.0, -3.0)])]
    table, oracle = tune_decoding.grid(scored)
    assert oracle == 0.0
    assert table[(0.0, 0.7)] == 0.0 and table[(0.0, 0.3)] == 0.0   # both right
    assert table[(0.0, 0.0)] == pytest.approx(100 * 1 / 6)   # "dog" for "dot": 1 of 6 characters
    assert table[(0.7, 0.7)] == pytest.approx(100 * 1 / 6)   # "cat" for "cut"
    assert table[(1.0, 0.0)] == pytest.approx(100 * 2 / 6)   # both wrong


def test_ctc_load_counts_a_blank_between_equal_neighbours():
    assert accuracy_report.ctc_load("abc", 6) == pytest.approx(0.5)
    assert accuracy_report.ctc_load("all ok", 7) == pytest.approx(1.0)   # 6 characters + 1 for "ll"
    # Encoder frames follow the front's unpadded convolutions: (T-1)//2 for conv2d2,
    # ((T-1)//2-1)//2 for conv2d.
    assert [accuracy_report.encoder_frames(t, "conv2d2") for t in (2, 3, 101)] == [0, 1, 50]
    assert [accuracy_report.encoder_frames(t, "conv2d") for t in (6, 7, 101)] == [0, 1, 24]
    assert accuracy_report.encoder_frame_ms("conv2d") == 40 and accuracy_report.encoder_frame_ms("conv2d2") == 20


EVAL_SPLITS = {"dev": 300, "test": 600, "test_heldout_voice": 600}


def read_eval_text(name):
    return (ROOT / "train" / "eval_text" / f"{name}.txt").read_text().splitlines()


def test_committed_evaluation_text_is_disjoint_and_in_the_unit_set():
    seen = set()
    for name, size in EVAL_SPLITS.items():
        lines = read_eval_text(name)
        assert len(lines) == len(set(lines)) == size, name
        assert not seen & set(lines), f"{name} shares sentences with another split"
        seen.update(lines)
        for line in lines:
            assert set(line) <= set("abcdefghijklmnopqrstuvwxyz' "), line
            assert 4 <= len(line.split()) <= 22 and line == " ".join(line.split()), line


def test_sentence_filter_keeps_only_dictionary_sentences_of_4_to_22_words():
    vocab = {"the", "cat", "sat", "on", "mat", "dog", "it's"}
    text = ("The cat sat on the mat. The cat sat on the mat! Dog sat. "
            "The dog sat on 2 mats; the cat (sat) on the dog; the zebra sat on the mat: it's the cat, the dog")
    assert list(make_corpus.sentences_of([text], vocab)) == [
        "the cat sat on the mat", "the cat sat on the dog", "it's the cat the dog"]


def test_training_text_never_holds_an_evaluation_or_sample_sentence(tmp_path, monkeypatch):
    evaluation = [s for name in EVAL_SPLITS for s in read_eval_text(name)]
    samples = [line.split(maxsplit=1)[1] for line in
               (ROOT / "tests" / "data" / "samples" / "text").read_text().splitlines()]
    fresh = ["this is a sentence only the training text has"]
    # The doc sources hold every evaluation and sample sentence (as a changed machine may) plus one more.
    real = ["please enter your account number followed by the pound key"]  # an Asterisk transcript
    real_text = tmp_path / "real_text"
    real_text.write_text(f"asterisk-x {real[0]}\n")
    monkeypatch.setattr(make_corpus, "REAL_SPEECH_TEXT", str(real_text))
    monkeypatch.setattr(make_corpus, "sources", lambda: [". ".join(evaluation + samples + fresh + real)])
    everyday = ["she sat on 2 chairs", "an everyday sentence about the weather"]
    monkeypatch.setattr(make_corpus, "everyday_sources", lambda: [". ".join(everyday + real + evaluation + fresh)])
    monkeypatch.setattr(sys, "argv", ["make_corpus.py", "--out", str(tmp_path)])
    make_corpus.main()
    assert (tmp_path / "train.txt").read_text().splitlines() == fresh
    # The everyday pool: small numbers spoken, nothing held out, nothing the technical pool has.
    assert sorted((tmp_path / "train_everyday.txt").read_text().splitlines()) == [
        "an everyday sentence about the weather", "she sat on two chairs"]
    for name in EVAL_SPLITS:
        assert (tmp_path / f"{name}.txt").read_text().splitlines() == read_eval_text(name)


@pytest.mark.skipif(any(shutil.which(p) is None for p in ("espeak-ng", "sox", "flite", "festival")),
                    reason="needs espeak-ng, sox, flite and festival (scripts/setup.sh installs them)")
def test_mixed_recipe_speaks_with_every_engine_and_never_the_held_out_voices(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "train.txt").write_text("".join(f"the file number {i} is open\n" for i in range(40)))
    (corpus / "train_everyday.txt").write_text("".join(f"the cat sat on mat {i}\n" for i in range(40)))
    subprocess.run([sys.executable, str(ROOT / "train" / "synth.py"), "--split", "train", "--recipe", "mixed",
                    "--num", "24", "--corpus", str(corpus), "--out", str(tmp_path / "data"),
                    "--vowel-shift-prob", "0.3"], check=True, capture_output=True, timeout=300)
    recs = [json.loads(line) for line in (tmp_path / "data" / "train" / "data.jsonl").read_text().splitlines()]
    assert len(recs) == 24 and {r["engine"] for r in recs} == {"espeak", "flite", "festival"}
    for r in recs:
        assert r["dur"] > 0.3 and "augment" in r and r["voice"] != "ked_diphone"
        assert "+m3" not in r["voice"] and not r["voice"].startswith("en-gb-scotland")
    # Sentences alternate between the pools (3 everyday of every 5 by default), whatever --start is.
    texts = [r["txt"] for r in recs]
    assert texts[:12] == [f"the cat sat on mat {i}" for i in range(12)]
    assert texts[12:20] == [f"the file number {i} is open" for i in range(8)]
    again = tmp_path / "again"
    subprocess.run([sys.executable, str(ROOT / "train" / "synth.py"), "--split", "train", "--recipe", "mixed",
                    "--num", "24", "--corpus", str(corpus), "--out", str(again), "--vowel-shift-prob", "0.3"],
                   check=True, capture_output=True, timeout=300)
    assert (again / "train" / "data.jsonl").read_text().replace(str(again), "X") == \
        (tmp_path / "data" / "train" / "data.jsonl").read_text().replace(str(tmp_path / "data"), "X")
    # --no-augment: the same voices and sentences, the synthesizers' audio untouched.
    plain = tmp_path / "plain"
    subprocess.run([sys.executable, str(ROOT / "train" / "synth.py"), "--split", "train", "--recipe", "mixed",
                    "--num", "24", "--corpus", str(corpus), "--out", str(plain), "--vowel-shift-prob", "0.3",
                    "--no-augment"], check=True, capture_output=True, timeout=300)
    plain_recs = [json.loads(line) for line in (plain / "train" / "data.jsonl").read_text().splitlines()]
    assert [(r["txt"], r["engine"], r["voice"]) for r in plain_recs] == \
        [(r["txt"], r["engine"], r["voice"]) for r in recs]
    assert all(r["augment"] == {} for r in plain_recs) and any(r["augment"] for r in recs)
    proc = subprocess.run([sys.executable, str(ROOT / "train" / "synth.py"), "--split", "train", "--no-augment",
                           "--num", "2", "--corpus", str(corpus), "--out", str(tmp_path / "refused")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "--no-augment is for the mixed recipe" in proc.stderr


def test_augmentation_chain_is_seeded_and_keeps_the_level_in_range():
    import numpy as np
    sys.path.insert(0, str(ROOT / "train"))
    import augment
    aug = augment.Augmenter(channels=["g722", "band8k"])
    tone = (np.sin(np.arange(16000) * 2 * np.pi * 300 / 16000) * 8000).astype(np.int16)
    outs = [aug(tone, random.Random(7), np.random.default_rng(7)) for _ in range(2)]
    assert np.array_equal(outs[0][0], outs[1][0]) and outs[0][1] == outs[1][1]
    for seed in range(12):
        y, chain = aug(tone, random.Random(seed), np.random.default_rng(seed))
        peak_dbfs = 20 * np.log10(np.abs(y).max() / 32767)
        assert abs(peak_dbfs - chain["peak_dbfs"]) < 0.1
        assert 0.85 * len(tone) < len(y) < 1.15 * len(tone)  # speed 0.9..1.1
    assert augment.coloured_noise(4096, "pink", np.random.default_rng(1)).std() == pytest.approx(1.0, rel=1e-6)


def test_heldout_voice_halves_are_told_apart_by_accent():
    assert accuracy_report.heldout_half("en-gb-scotland+Jacky") == "accent en-gb-scotland"
    assert accuracy_report.heldout_half("en-us-nyc+m3") == "variant m3"
    assert accuracy_report.heldout_half("en-gb-scotland+m3") == "accent en-gb-scotland"


def test_character_errors_ignore_runs_of_whitespace():
    assert common.char_errors("a  b", " a b ") == (0, 3)
    assert common.char_errors("the cat", "the bat") == (1, 7)
    assert common.char_errors("dog", "") == (3, 3)


def test_model_comparison_counts_errors_per_utterance():
    import compare_models
    errors, lengths = compare_models.per_utterance_errors({"a": "the cat", "b": "dog"}, {"a": "the bat"})
    assert (errors, lengths) == ([1, 3], [7, 3])   # the missing hypothesis counts as empty
    assert compare_models.better_worse([1, 3, 2], [0, 3, 4]) == (1, 1)


def test_paired_bootstrap_is_zero_for_equal_models_and_one_sided_for_a_better_one():
    import compare_models
    lengths = [20, 30, 25, 40, 10] * 8
    base = [2, 3, 0, 4, 1] * 8
    assert compare_models.paired_bootstrap(base, base, lengths, rounds=200) == (0.0, 0.0)
    better = [max(0, e - 1) for e in base]   # one error fewer wherever there was one
    lo, hi = compare_models.paired_bootstrap(base, better, lengths, rounds=200)
    assert lo <= hi < 0
    # Each kept utterance gains at most 1 error back in 10..40 characters: the interval is bounded.
    assert lo > -100.0 / 10


def test_compare_models_runs_the_engine_on_each_model(tmp_path):
    """The whole tool on the shipped samples: the demo model against itself differs by nothing."""
    build = os.environ.get("U2_BUILD_DIR", "build")
    if not (ROOT / build / "apps" / "u2recognize").exists():
        pytest.fail(f"{build}/apps/u2recognize is not built")
    samples = ROOT / "tests" / "data" / "samples"
    split = tmp_path / "samples"
    split.mkdir()
    shutil.copy(samples / "text", split / "text")
    (split / "wav.scp").write_text("".join(
        f"{k} {samples / v}\n" for k, v in common.read_table(samples / "wav.scp").items()))
    model = str(ROOT / "models" / "demo")
    out = subprocess.run([sys.executable, str(ROOT / "train" / "compare_models.py"), model, model,
                          "--split", "samples", "--data", str(tmp_path), "--build", build,
                          "--modes", "ctc_greedy", "--bootstrap", "50"],
                         capture_output=True, text=True, check=True).stdout
    rows = [line for line in out.splitlines() if "CER" in line]
    assert len(rows) == 2
    assert rows[0].split("WER")[0].split("CER")[1] == rows[1].split("WER")[0].split("CER")[1]
    assert "+0.00 points, 95 % CI [+0.00, +0.00], 0 utts better, 0 worse" in rows[1]
    # --beams: one row per model and width in the beam modes; the model's own width equals it.
    beam = json.loads((ROOT / "models" / "demo" / "model.json").read_text())["decoding"]["beam_size"]
    out = subprocess.run([sys.executable, str(ROOT / "train" / "compare_models.py"), model,
                          "--split", "samples", "--data", str(tmp_path), "--build", build,
                          "--modes", "ctc_prefix_beam_search", "--beams", "0", str(beam), "1", "--bootstrap", "50"],
                         capture_output=True, text=True, check=True).stdout
    rows = [line for line in out.splitlines() if "CER" in line]
    assert len(rows) == 3 and rows[1].split()[1:3] == ["beam", str(beam)] and rows[2].split()[1:3] == ["beam", "1"]
    assert "+0.00 points, 95 % CI [+0.00, +0.00], 0 utts better, 0 worse" in rows[1]


def test_averaging_across_chained_runs_takes_the_tail_of_each(tmp_path):
    import finalize  # noqa: E402 (imports the PyTorch reference model)

    runs = {"exp13": (100, 200, 300, 400), "exp14": (50, 150, 250)}
    for run, steps in runs.items():
        (tmp_path / run).mkdir()
        for step in steps:
            torch.save({"w": torch.full((2,), float(step)), "n": torch.tensor(step)},
                       tmp_path / run / f"model_step{step:06d}.pt")
    chosen = finalize.pick_snapshots(str(tmp_path / "exp14"), 2, [str(tmp_path / "exp13")])
    assert [finalize.snapshot_name(p) for p in chosen] == [
        "exp13/model_step000300.pt", "exp13/model_step000400.pt",
        "exp14/model_step000150.pt", "exp14/model_step000250.pt"]
    avg = finalize.average(chosen)
    assert torch.equal(avg["w"], torch.full((2,), (300 + 400 + 150 + 250) / 4))
    assert int(avg["n"]) == 250  # integer buffers are not averaged: the newest run's value stays
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no model_step"):
        finalize.pick_snapshots(str(tmp_path / "exp14"), 2, [str(tmp_path / "empty")])


def test_interpolation_blends_weights_and_refuses_what_is_not_one_chain(tmp_path):
    import finalize  # noqa: E402 (imports the PyTorch reference model)

    base = {"w": torch.tensor([0.0, 10.0], dtype=torch.float16), "n": torch.tensor(3),
            "encoder.global_cmvn.mean": torch.tensor([1.0, 2.0])}
    tuned = {"w": torch.tensor([4.0, 2.0]), "n": torch.tensor(3), "encoder.global_cmvn.mean": torch.tensor([1.0, 2.0])}
    mixed = finalize.interpolate(base, tuned, 0.25)
    # 0.75 * base + 0.25 * tuned, in float32 whatever the base's dtype (the shipped one is fp16).
    assert mixed["w"].dtype == torch.float32 and torch.equal(mixed["w"], torch.tensor([1.0, 8.0]))
    assert torch.equal(finalize.interpolate(base, tuned, 1.0)["w"], tuned["w"])
    assert int(mixed["n"]) == 3 and torch.equal(mixed["encoder.global_cmvn.mean"], tuned["encoder.global_cmvn.mean"])
    # A training checkpoint holds its weights under "model"; a plain state_dict is the weights.
    torch.save(dict(model=base, step=7, audio_s=0.0, train_s=0.0), tmp_path / "last.pt")
    torch.save(tuned, tmp_path / "final.pt")
    assert set(common.load_weights(str(tmp_path / "last.pt"))[0]) == set(base)
    assert torch.equal(common.load_weights(str(tmp_path / "final.pt"))[0]["w"], tuned["w"])
    # A converted model has no decoder positional tables: the run's own are taken.
    pe = torch.arange(4.0)
    assert torch.equal(finalize.interpolate(base, dict(tuned, **{"d.pe": pe}), 0.5)["d.pe"], pe)
    # Other normalisation statistics, other names or shapes: not weights of one --init chain.
    with pytest.raises(SystemExit, match="global_cmvn.mean differs"):
        finalize.interpolate(dict(base, **{"encoder.global_cmvn.mean": torch.tensor([0.0, 2.0])}), tuned, 0.5)
    with pytest.raises(SystemExit, match="other names"):
        finalize.interpolate({"v": base["w"]}, {"w": tuned["w"]}, 0.5)
    with pytest.raises(SystemExit, match="shape"):
        finalize.interpolate({"w": torch.zeros(3)}, {"w": torch.zeros(2)}, 0.5)
    # A run that widened the feed-forward modules blends with the base widened alike: the old units
    # blend, the new units keep the run's input weights and W times its output weights.
    ff = "encoder.encoders.0.feed_forward."
    narrow = {ff + "w_1.weight": torch.ones(2, 3), ff + "w_2.weight": torch.ones(3, 2)}
    wide = {ff + "w_1.weight": torch.full((4, 3), 3.0), ff + "w_2.weight": torch.full((3, 4), 5.0)}
    grown = finalize.interpolate(narrow, wide, 0.5)
    assert torch.equal(grown[ff + "w_1.weight"], torch.tensor([[2.0] * 3] * 2 + [[3.0] * 3] * 2))
    assert torch.equal(grown[ff + "w_2.weight"], torch.tensor([[3.0, 3.0, 2.5, 2.5]] * 3))


def write_feat_split(folder, keys, frames, dim=3, offset_value=0.0):
    """A split as feats.py writes it: feats.npy (float16 rows), feats.jsonl, data.jsonl."""
    import numpy as np

    folder.mkdir(parents=True)
    rows, index, off = [], [], 0
    for i, (key, n) in enumerate(zip(keys, frames)):
        rows.append(np.full((n, dim), offset_value + i, np.float16) + np.arange(dim, dtype=np.float16))
        index.append(dict(key=key, offset=off, frames=n, txt=f"text {key}"))
        off += n
    np.save(folder / "feats.npy", np.concatenate(rows))
    (folder / "feats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in index))
    (folder / "data.jsonl").write_text("".join(json.dumps(dict(key=r["key"], txt=r["txt"], engine="espeak")) + "\n"
                                                for r in index))
    return np.concatenate(rows)


def test_mixed_split_copies_each_chosen_utterance_and_keeps_keys_apart(tmp_path):
    import numpy as np

    a = write_feat_split(tmp_path / "dataA" / "train", ["train_000000", "train_000001"], [2, 3])
    write_feat_split(tmp_path / "dataB" / "train", [f"train_{i:06d}" for i in range(6)], [1, 2, 3, 4, 5, 6],
                     offset_value=100.0)
    (tmp_path / "dev").mkdir()
    out = tmp_path / "mix"
    subprocess.run([sys.executable, str(ROOT / "train" / "mix_data.py"), "--out", str(out),
                    "--part", str(tmp_path / "dataA" / "train"), "--part", str(tmp_path / "dataB" / "train") + ":3",
                    "--link", f"dev={tmp_path / 'dev'}"], check=True, capture_output=True)
    mix = common.FeatSet("train", str(out))
    keys = [r["key"] for r in mix.index]
    # Both parts number from train_000000: the data folder's name keeps the keys unique.
    assert keys[:2] == ["dataA-train_000000", "dataA-train_000001"] and len(keys) == 5 == len(set(keys))
    assert all(k.startswith("dataB-") for k in keys[2:])
    assert np.array_equal(mix.feat(1), a[2:5])
    for i in range(2, 5):  # each row of part B holds 100 + its index there, plus the bin number
        n = int(keys[i].rsplit("_", 1)[1])
        assert mix.index[i]["frames"] == n + 1 and float(mix.feat(i)[0, 0]) == 100.0 + n
    assert [json.loads(line)["source"] for line in (out / "train" / "data.jsonl").read_text().splitlines()][0] \
        == str(tmp_path / "dataA" / "train")
    # global_cmvn holds feats.py's sums over every frame of the mix.
    cmvn = json.loads((out / "train" / "global_cmvn").read_text())
    frames = np.concatenate([mix.feat(i) for i in range(len(mix))]).astype(np.float64)
    assert cmvn["frame_num"] == len(frames) and np.allclose(cmvn["mean_stat"], frames.sum(0))
    assert os.path.realpath(out / "dev") == str(tmp_path / "dev")
    bad = subprocess.run([sys.executable, str(ROOT / "train" / "mix_data.py"), "--out", str(tmp_path / "m2"),
                          "--part", str(tmp_path / "dataA" / "train") + ":9"], capture_output=True, text=True)
    assert bad.returncode != 0 and "has only 2 utterances" in bad.stderr


def test_gpu_tool_package_is_joined_only_from_every_piece_with_its_checksum(tmp_path):
    """run_train_gpu.sh receive/start: the carried package travels in pieces, one per device call;
    start unpacks only when every piece is there and the join has the recorded SHA-256."""
    import hashlib
    import tarfile

    pkg = tmp_path / "pkg"
    (pkg / "u2train" / "bin").mkdir(parents=True)
    stub = pkg / "u2train" / "bin" / "espeak-ng"
    stub.write_text("#!/bin/sh\necho stub espeak-ng\n")
    stub.chmod(0o755)
    (pkg / "u2train" / "filler").write_bytes(os.urandom(3000))  # incompressible: two pieces
    blob = tmp_path / "u2train.tar.xz"
    with tarfile.open(blob, "w:xz") as t:
        t.add(pkg / "u2train", arcname="u2train")
    data = blob.read_bytes()
    manifest = f"2 {hashlib.sha256(data).hexdigest()}\n"
    carry = tmp_path / "carry"
    for i, part in enumerate((data[:2000], data[2000:])):
        (carry / str(i + 1)).mkdir(parents=True)
        (carry / str(i + 1) / f"u2train.tar.xz.{i:02d}").write_bytes(part)
        (carry / str(i + 1) / "manifest").write_text(manifest)
    work = tmp_path / "work"
    # PYTHON=false: the background pipeline stops at its first Python step, after the unpacking.
    env = dict(os.environ, U2_CARRY_DIR=str(carry), U2_TRAIN_WORK=str(work), U2_WAIT_S="20", PYTHON="false",
               U2_MODEL_OUT=str(tmp_path / "model"))
    script = str(ROOT / "train" / "gpu" / "run_train_gpu.sh")

    def run(cmd):
        return subprocess.run(["bash", script, cmd], env=env, capture_output=True, text=True)

    second = carry / "2"
    shutil.move(second, tmp_path / "held")  # the first call carries piece 1 only
    r = run("receive")
    assert r.returncode == 0 and "received 1 of 2 pieces" in r.stdout
    r = run("start")
    assert r.returncode == 1 and "1 of 2 pieces received" in r.stdout and not (work / "u2train").exists()
    shutil.move(tmp_path / "held", second)
    good = (second / "u2train.tar.xz.01").read_bytes()
    (second / "u2train.tar.xz.01").write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    r = run("start")
    assert r.returncode == 1 and "fails its checksum" in r.stdout and not (work / "u2train").exists()
    (second / "u2train.tar.xz.01").write_bytes(good)
    r = run("start")
    assert (work / "u2train" / "bin" / "espeak-ng").exists(), r.stdout + r.stderr
    assert "stub espeak-ng" in (work / "pipeline.log").read_text()
    assert (work / "pipeline.status").read_text().strip() != "0"  # PYTHON=false stopped it


TRAIN_LOG = """device cpu, 4.63 M params, train 7500 utts 7.53 h, load 0 s
step 20 epoch 0 batch 20/1590 lr 1.40e-04 loss 55.69 ctc 60.81 att 53.49 acc 0.810 | 0.10 h seen, 22.7x RT, train 0.3 min
eval step 20: dev greedy CER 4.56 % WER 20.04 % (100 utts, 5 s)
eval step 20: real_dev greedy CER 47.63 % WER 94.93 % (287 utts, 17 s)
step 40 epoch 0 batch 40/1590 lr 2.73e-04 loss 46.24 ctc 53.11 att 43.29 acc 0.798 | 0.20 h seen, 22.9x RT, train 0.5 min
eval step 40: dev greedy CER 4.17 % WER 19.03 % (100 utts, 6 s)
eval step 40: real_dev greedy CER 46.58 % WER 95.49 % (287 utts, 18 s)
final step 40: dev greedy CER 4.04 % WER 18.11 %
final step 40: real_dev greedy CER 46.66 % WER 95.55 %
"""


def test_dev_curves_are_read_from_train_logs_and_drawn(tmp_path, capsys):
    import plot_curves

    curves = plot_curves.parse_log(TRAIN_LOG.splitlines())
    # The final evaluation on the step of the last periodic one replaces it, and each point carries
    # the hours heard by then.
    assert curves == {"dev": [(20, 0.10, 4.56), (40, 0.20, 4.04)],
                      "real_dev": [(20, 0.10, 47.63), (40, 0.20, 46.66)]}
    log = tmp_path / "exp9" / "train.log"
    log.parent.mkdir()
    log.write_text(TRAIN_LOG)
    out = tmp_path / "curves.png"
    plot_curves.main([str(log), f"other={log}", "--start", "3.75,49.48", "--start", "other=4,50", "--out", str(out),
                      "--json"])
    printed = capsys.readouterr().out
    drawn = json.loads(printed[:printed.rindex("}") + 1])
    assert [p["cer"] for p in drawn["exp9"]["real_dev"]] == [49.48, 47.63, 46.66]
    assert [p["cer"] for p in drawn["other"]["dev"]] == [4.0, 4.56, 4.04]  # its own --start wins
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # One --start value per dev set, for a run that exists, or a clear refusal.
    with pytest.raises(SystemExit, match="names run 'nope'"):
        plot_curves.main([str(log), "--start", "nope=1,2"])
    with pytest.raises(SystemExit, match="1 values for 2 dev sets"):
        plot_curves.main([str(log), "--start", "3.75", "--out", str(out)])
    with pytest.raises(SystemExit, match="no evaluation lines"):
        empty = tmp_path / "empty.log"
        empty.write_text("device cpu\n")
        plot_curves.main([str(empty)])


def tiny_feature_split(d, count, rng):
    """A split as feats.py writes it: random float16 fbank frames, their index and a global_cmvn."""
    import numpy as np

    d.mkdir(parents=True)
    lens = [rng.randint(60, 120) for _ in range(count)]
    np.save(d / "feats.npy", np.random.default_rng(7).standard_normal((sum(lens), 80)).astype(np.float16))
    offset = 0
    with open(d / "feats.jsonl", "w") as f:
        for i, n in enumerate(lens):
            f.write(json.dumps({"key": f"u{i}", "offset": offset, "frames": n, "txt": "a test"}) + "\n")
            offset += n
    common.write_cmvn_stats(str(d / "global_cmvn"), [0.0] * 80, [1.0] * 80)


def test_training_run_logs_the_starting_weights_and_the_end_on_each_dev_set(tmp_path):
    """train.py end to end for two steps: the dev curve it logs begins with the weights the run
    starts from (step 0) and ends with the final weights, and plot_curves.py reads both."""
    import plot_curves

    rng = random.Random(3)
    tiny_feature_split(tmp_path / "data" / "train", 6, rng)
    tiny_feature_split(tmp_path / "data" / "dev", 3, rng)
    exp = tmp_path / "exp"
    run = subprocess.run([sys.executable, str(ROOT / "train" / "train.py"), "--data", str(tmp_path / "data"),
                          "--exp", str(exp), "--device", "cpu", "--threads", "1", "--max-steps", "2",
                          "--eval-splits", "dev", "--silence-pad-prob", "0", "--freq-warp-prob", "0"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    log = run.stdout.splitlines()
    curves = plot_curves.parse_log(log)
    assert [p[0] for p in curves["dev"]] == [0, 2], "\n".join(log[-20:])
    assert (exp / "last.pt").exists()


def test_int8_section_says_whether_the_worst_difference_is_beyond_noise(tmp_path, monkeypatch):
    results = tmp_path / "bench" / "results"
    results.mkdir(parents=True)
    (results / "int8_accuracy.md").write_text("# int8 vs fp32\n\n| table |\n")

    def write(rows):
        (results / "int8_accuracy.json").write_text(json.dumps({"meta": {"date": "today"}, "rows": rows}))

    row = dict(set="real_test", mode="streaming chunk 16", utterances=262, fp32_cer=40.0)
    monkeypatch.setattr(accuracy_report.common, "REPO", str(tmp_path))
    write([dict(row, int8_cer=40.39, delta_cer_ci95=[-0.1, 0.9]), dict(row, set="dev", int8_cer=39.9,
                                                                       delta_cer_ci95=[-0.3, 0.1])])
    text = "".join(accuracy_report.int8_section())
    assert "worst for int8: +0.39" in text and "[-0.10, +0.90] (real_test" in text
    assert "within the set's noise" in text
    for interval, verdict in (([0.4, 1.6], "worse there by more than the bound"),
                              ([0.06, 0.75], "measurably worse there, and the interval holds the bound"),
                              ([0.05, 0.2], "measurably worse there, by less than the bound")):
        write([dict(row, int8_cer=41.0, delta_cer_ci95=interval)])
        assert verdict in "".join(accuracy_report.int8_section())


def test_int8_table_has_a_row_per_result_with_its_interval():
    import int8_report

    row = dict(set="real_test", kind="real speech", mode="offline", utterances=262, fp32_cer=40.94,
               int8_cer=40.69, fp32_wer=81.37, int8_wer=81.04, same_best=202, same_nbest=43,
               delta_cer_ci95=[-0.61, 0.12])
    lines = int8_report.markdown_table([row])
    assert len(lines) == 3 and lines[0].count("|") == lines[1].count("|") == lines[2].count("|") == 13
    assert "Δ 95 % interval" in lines[0] and "same 10-best list" in lines[0]
    assert "| -0.25 | [-0.61, +0.12] |" in lines[2] and "| 77.1 % | 16.4 % |" in lines[2]
