#!/usr/bin/env python3
"""Trains the demo U2++ model (Conformer + bitransformer decoder, CTC + attention loss) with the
PyTorch reference model tools/u2ref on the cached features from feats.py.

CPU (the default when no GPU is present): torch.set_num_threads(--threads), small dynamic
batches, fp32. CUDA: large batches (pass --max-frames 60000 or so), fp32 with TF32 matrix
products; --bf16 adds bf16 autocast (the model is small enough that the GPU time goes mostly to
kernel launches, so fp32 costs little and avoids any autocast surprise in the model code).

Checkpoints go to --exp (default train/work/exp):
  ckpt_step<N>.pt   model + optimizer + step/epoch/batch position + RNG states (resumable)
  model_step<N>.pt  model state_dict only (snapshots; finalize.py averages the last few)
  last.pt           copy of the newest ckpt_*.pt; `--resume` continues from it
SIGTERM/SIGINT save a checkpoint and exit cleanly, so `kill <pid>` is a safe way to stop.

Usage:
  CPU:  nohup nice -n 15 .venv/bin/python train/train.py > train/work/exp/train.log 2>&1 &
  GPU:  python train/train.py --max-frames 60000 --lr 1.5e-3 --warmup 200 --schedule-minutes 9
  resume: add --resume (same --exp); --init PATH starts a fresh optimizer/schedule from weights.
"""
import argparse
import math
import os
import random
import shutil
import signal
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from u2ref.model import U2Model  # noqa: E402


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(common.WORK, "data"))
    ap.add_argument("--exp", default=os.path.join(common.WORK, "exp"))
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bf16", action="store_true", help="CUDA: bf16 autocast")
    ap.add_argument("--seed", type=int, default=777)
    ap.add_argument("--max-frames", type=int, default=2000, help="padded input frames per batch")
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument("--total-steps", type=int, default=2500, help="cosine decay ends here")
    ap.add_argument("--schedule-minutes", type=float, default=0,
                    help="if > 0: cosine decay over this much training time instead of steps")
    ap.add_argument("--curriculum-frac", type=float, default=0.05,
                    help="fraction of epoch 0's batches that run short -> long before shuffled ones")
    ap.add_argument("--final-lr-frac", type=float, default=0.05)
    ap.add_argument("--weight-decay", type=float, default=1e-3)
    ap.add_argument("--grad-clip", type=float, default=5.0)
    ap.add_argument("--epochs", type=int, default=1000)
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this step (0 = no limit)")
    ap.add_argument("--max-minutes", type=float, default=0, help="stop after this much wall time")
    ap.add_argument("--specaug-from-epoch", type=int, default=1, help="-1 = never")
    ap.add_argument("--silence-pad-prob", type=float, default=0.0,
                    help="per utterance: chance of silence (digital zeros or faint noise) added around it")
    ap.add_argument("--freq-warp-prob", type=float, default=0.0,
                    help="share of utterances whose spectrum is warped (vocal tract length perturbation)")
    ap.add_argument("--freq-warp-max", type=float, default=0.1, help="largest warp, as |alpha - 1|")
    ap.add_argument("--silence-pad-max", type=int, default=200, help="longest silence added at each end, frames")
    ap.add_argument("--ckpt-minutes", type=float, default=10.0)
    ap.add_argument("--snapshot-minutes", type=float, default=5.0)
    ap.add_argument("--keep-ckpts", type=int, default=2)
    ap.add_argument("--eval-minutes", type=float, default=10.0)
    ap.add_argument("--eval-utts", type=int, default=100)
    ap.add_argument("--eval-splits", default="dev",
                    help="comma-separated splits for the in-training greedy CER, each optionally "
                         "SPLIT:N for its first N utterances (default N: --eval-utts; 0 = all), e.g. "
                         "dev,real_dev:0 (real_dev: feats.py --from-list of the real-speech dev half)")
    ap.add_argument("--log-steps", type=int, default=20)
    ap.add_argument("--resume", action="store_true", help="continue from <exp>/last.pt")
    ap.add_argument("--init", default="", help="start from these model weights, fresh optimizer: a converted model folder "
                         "(models/demo), a train.py checkpoint or a state_dict")
    ap.add_argument("--input-layer", default="conv2d", choices=("conv2d", "conv2d2"),
                    help="subsampling front (x4 or x2); with --init from the other one, every weight "
                         "but the front's is carried over and the front starts fresh")
    ap.add_argument("--encoder-linear-units", type=int, default=576,
                    help="hidden width of the encoder's feed-forward modules; --init from a narrower model "
                         "widens them (the new units start at zero output)")
    ap.add_argument("--front-only-steps", type=int, default=0,
                    help="train only the subsampling front (encoder.embed.*) for the first N steps, so a "
                         "fresh front learns to feed the carried-over encoder before the rest moves")
    return ap.parse_args()


def lr_at(step, a, train_s):
    """Linear warmup, then cosine decay to final_lr_frac * lr, over --total-steps or, when
    --schedule-minutes is given (CPU runs with a wall-clock budget), over training time."""
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    if a.schedule_minutes > 0:
        t = min(1.0, train_s / (60.0 * a.schedule_minutes))
    else:
        t = min(1.0, (step - a.warmup) / max(1, a.total_steps - a.warmup))
    return a.lr * (a.final_lr_frac + (1 - a.final_lr_frac) * 0.5 * (1 + math.cos(math.pi * t)))


def spec_augment(x, lens, rng, num_f=2, max_f=10, num_t=2, max_t=40):
    """WeNet's spec_aug on raw fbank (masked values = 0), in place on a (B, T, F) batch."""
    for b in range(x.size(0)):
        T, F = int(lens[b]), x.size(2)
        for _ in range(num_f):
            s = rng.randint(0, F - 1)
            x[b, :, s: min(F, s + rng.randint(1, max_f))] = 0
        for _ in range(num_t):
            if T > 1:
                s = rng.randint(0, T - 1)
                x[b, s: min(T, s + rng.randint(1, max_t)), :] = 0


# torchaudio's kaldi.fbank (energy_floor 0, dither 0) floors each mel energy at float32 epsilon
# before the log, so digital silence - exact zeros, as a muted microphone or a padded buffer
# gives - is this value in every bin.
DIGITAL_SILENCE_FBANK = math.log(torch.finfo(torch.float32).eps)


def faint_noise_fbank(seconds=20, seed=0):
    """Fbank frames of faint white noise (std 0.5..8 on the int16 scale, rounded like a real capture)."""
    import feats
    rng = np.random.default_rng(seed)
    parts = []
    for std in (0.5, 1.0, 2.0, 4.0, 8.0):
        pcm = np.clip(np.round(rng.normal(0.0, std, 16000 * seconds // 5)), -32768, 32767).astype(np.int16)
        parts.append(feats.fbank(pcm))
    return torch.from_numpy(np.concatenate(parts, 0))


def pad_with_silence(x, lens, rng, prob, max_pad, noise_bank):
    """Surrounds some utterances of a (B, T, F) batch with silence, so that the model learns to
    stay quiet over long pauses: half of it digital zeros, half faint noise. Returns the new batch
    and lengths (the transcripts are unchanged)."""
    pads = []
    for b in range(x.size(0)):
        if rng.random() < prob:
            pads.append((rng.randint(0, max_pad), rng.randint(0, max_pad)))
        else:
            pads.append((0, 0))
    if not any(a + z for a, z in pads):
        return x, lens
    new_lens = torch.tensor([int(lens[b]) + a + z for b, (a, z) in enumerate(pads)])
    out = torch.zeros(x.size(0), int(new_lens.max()), x.size(2))
    for b, (a, z) in enumerate(pads):
        n = int(lens[b])
        out[b, a: a + n] = x[b, :n]
        for start, count in ((0, a), (a + n, z)):
            if count == 0:
                continue
            if rng.random() < 0.5:
                out[b, start: start + count] = DIGITAL_SILENCE_FBANK
            else:
                s = rng.randint(0, noise_bank.size(0) - count)
                out[b, start: start + count] = noise_bank[s: s + count]
    return out, new_lens


def mel_warp_sources(num_bins, alpha, low_hz=20.0, high_hz=8000.0):
    """Fractional source bin of each mel bin when the spectrum is warped as S'(f) = S(f / alpha)
    (alpha > 1 moves formants up, as a shorter vocal tract does). The bins are those of Kaldi's
    fbank (feats.py): centres evenly spaced on torchaudio's Kaldi mel scale between low_hz and
    high_hz (the Nyquist frequency)."""
    from torchaudio.compliance.kaldi import inverse_mel_scale, mel_scale, mel_scale_scalar
    lo, hi = mel_scale_scalar(low_hz), mel_scale_scalar(high_hz)
    delta = (hi - lo) / (num_bins + 1)
    centres_hz = inverse_mel_scale(lo + delta * torch.arange(1, num_bins + 1, dtype=torch.float64))
    sources = (mel_scale(centres_hz / alpha) - lo) / delta - 1.0
    return sources.clamp(0.0, num_bins - 1.0).float()


def warp_frequency(x, lens, rng, prob, max_warp):
    """Vocal tract length perturbation on log-mel features: each utterance of a (B, T, F) batch,
    with probability prob, gets its spectrum warped by a factor drawn from [1 - max_warp,
    1 + max_warp], interpolating linearly between neighbouring bins. The synthesized voices share
    a few formant sets; this makes new speakers' formants less of a surprise. In place."""
    num_bins = x.size(2)
    for b in range(x.size(0)):
        if rng.random() >= prob:
            continue
        src = mel_warp_sources(num_bins, 1.0 + rng.uniform(-max_warp, max_warp))
        i0 = src.floor().long()
        i1 = torch.clamp(i0 + 1, max=num_bins - 1)
        w = src - i0
        n = int(lens[b])
        row = x[b, :n]
        x[b, :n] = row[:, i0] * (1.0 - w) + row[:, i1] * w


def greedy_cer(model, featset, n, device, batch=16):
    model.eval()
    err = common.ErrorRate()
    with torch.no_grad():
        ids = sorted(range(min(n, len(featset))), key=lambda i: featset.index[i]["frames"])
        for s in range(0, len(ids), batch):
            chunk = ids[s: s + batch]
            x, xl, _, _ = featset.collate(chunk)
            hyps = model.decode(x.to(device), xl.to(device), "ctc_greedy_search")
            for i, h in zip(chunk, hyps):
                err.add(featset.index[i]["txt"], common.ids_to_text(h))
    model.train()
    return err


def main():
    a = parse_args()
    os.makedirs(a.exp, exist_ok=True)
    device = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if a.device == "auto" else a.device))
    if device.type == "cpu":
        torch.set_num_threads(a.threads)
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    random.seed(a.seed)
    np.random.seed(a.seed)
    torch.manual_seed(a.seed)

    cfg = common.make_train_config(a.input_layer, a.encoder_linear_units)
    common.write_units(os.path.join(a.exp, "units.txt"))
    shutil.copy(os.path.join(a.data, "train", "global_cmvn"), os.path.join(a.exp, "global_cmvn"))
    import yaml
    with open(os.path.join(a.exp, "train.yaml"), "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)

    model = U2Model(cfg)
    mean, istd = common.load_cmvn_stats(os.path.join(a.data, "train", "global_cmvn"))
    model.encoder.global_cmvn.mean.copy_(mean)
    model.encoder.global_cmvn.istd.copy_(istd)
    model.to(device)
    nparams = sum(p.numel() for p in model.parameters())

    t0 = time.time()
    train = common.FeatSet("train", a.data)
    train.load_to_memory()
    eval_sets = []
    for item in a.eval_splits.split(","):
        name, _, count = item.partition(":")
        eval_sets.append((name, common.FeatSet(name, a.data, limit=int(count) if count else a.eval_utts)))
    print(f"device {device}, {nparams / 1e6:.2f} M params, train {len(train)} utts {train.hours():.2f} h, "
          f"load {time.time() - t0:.0f} s", flush=True)

    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.98), eps=1e-8,
                            weight_decay=a.weight_decay)
    step, epoch, batch_pos, audio_s, train_s = 0, 0, 0, 0.0, 0.0
    prior_runs = []  # the runs whose weights this one continues (--init chain), for finalize.py's totals
    aug_rng = random.Random(a.seed + 1)
    noise_bank = faint_noise_fbank(seed=a.seed) if a.silence_pad_prob > 0 else None
    if a.resume and os.path.exists(os.path.join(a.exp, "last.pt")):
        ck = common.load_checkpoint(os.path.join(a.exp, "last.pt"))
        # The model's shape comes from the flags, so they must be the ones the checkpoint was made with.
        ck_enc = ck.get("config", {}).get("encoder_conf", {})
        for key, flag, default in (("input_layer", "--input-layer", "conv2d"),
                                   ("linear_units", "--encoder-linear-units", 576)):
            if ck_enc.get(key, default) != cfg["encoder_conf"][key]:
                sys.exit(f"--resume: {a.exp}/last.pt was trained with {flag} {ck_enc.get(key, default)}, "
                         f"not {cfg['encoder_conf'][key]}")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        step, epoch, batch_pos = ck["step"], ck["epoch"], ck["batch_pos"]
        audio_s, train_s = ck["audio_s"], ck["train_s"]
        prior_runs = ck.get("prior_runs", [])
        torch.set_rng_state(ck["torch_rng"])
        random.setstate(ck["py_rng"])
        aug_rng.setstate(ck["aug_rng"])
        if device.type == "cuda" and ck.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(ck["cuda_rng"])
        print(f"resumed from step {step} (epoch {epoch}, batch {batch_pos})", flush=True)
    elif a.init:
        sd, prior_runs = common.load_weights(a.init)
        try:
            sd, widened = common.widen_feed_forward(sd, model.state_dict())
        except ValueError as e:
            sys.exit(f"--init {a.init}: {e}")
        fresh = common.load_weights_except_front(model, sd)
        print(f"initialised weights from {a.init}" +
              (f" except the subsampling front ({', '.join(fresh)}: fresh)" if fresh else "") +
              (f"; {len(widened)} feed-forward tensors widened to {a.encoder_linear_units} units" if widened else ""),
              flush=True)

    # The exported global_cmvn must hold the statistics the weights were trained with. A checkpoint
    # brings them along as buffers; when the training set has changed since (more utterances
    # synthesized, feats.py recomputed the file), the data's file no longer matches, so write the
    # checkpoint's. (The C++ converter reads the buffers either way; WeNet reads the file.)
    ck_mean, ck_istd = model.encoder.global_cmvn.mean.cpu(), model.encoder.global_cmvn.istd.cpu()
    if not (torch.equal(ck_mean, mean) and torch.equal(ck_istd, istd)):
        common.write_cmvn_stats(os.path.join(a.exp, "global_cmvn"), ck_mean.tolist(), ck_istd.tolist())
        print("global_cmvn: the checkpoint's statistics (this training set's differ by up to "
              f"{float((ck_mean - mean).abs().max()):.3g} in mean)", flush=True)

    stop = {"flag": False}

    def on_signal(signum, frame):
        print(f"signal {signum}: will checkpoint and stop after this step", flush=True)
        stop["flag"] = True
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def save_ckpt():
        ck = dict(model=model.state_dict(), optimizer=opt.state_dict(), step=step, epoch=epoch,
                  batch_pos=batch_pos, audio_s=audio_s, train_s=train_s, args=vars(a), config=cfg,
                  device=device.type, prior_runs=prior_runs,
                  torch_rng=torch.get_rng_state(), py_rng=random.getstate(), aug_rng=aug_rng.getstate(),
                  cuda_rng=torch.cuda.get_rng_state() if device.type == "cuda" else None)
        path = os.path.join(a.exp, f"ckpt_step{step:06d}.pt")
        torch.save(ck, path + ".tmp")
        os.replace(path + ".tmp", path)
        shutil.copy(path, os.path.join(a.exp, "last.pt.tmp"))
        os.replace(os.path.join(a.exp, "last.pt.tmp"), os.path.join(a.exp, "last.pt"))
        old = sorted(f for f in os.listdir(a.exp) if f.startswith("ckpt_step") and f.endswith(".pt"))
        for f in old[: -a.keep_ckpts]:
            os.remove(os.path.join(a.exp, f))
        print(f"saved {path}", flush=True)

    def save_snapshot():
        sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        torch.save(sd, os.path.join(a.exp, f"model_step{step:06d}.pt"))

    def evaluate(label):
        """Greedy CER on each --eval-splits set (greedy_cer puts the model back in training mode)."""
        for name, featset in eval_sets:
            te = time.time()
            err = greedy_cer(model, featset, len(featset), device)
            print(f"{label} step {step}: {name} greedy CER {err.cer():.2f} % WER {err.wer():.2f} % "
                  f"({len(featset)} utts, {time.time() - te:.0f} s)", flush=True)

    # The starting weights' CER, measured the same way, so every dev curve begins where its run
    # began (train/plot_curves.py draws it at 0 h). A resumed run has measured it already.
    if step == 0:
        evaluate("eval")
    model.train()
    use_bf16 = device.type == "cuda" and a.bf16
    last_ckpt = last_snap = last_eval = time.time()
    win = dict(n=0, loss=0.0, ctc=0.0, att=0.0, acc=0.0, audio=0.0, t=time.time())
    done = False
    while epoch < a.epochs and not done:
        batches = common.make_batches(train, a.max_frames, a.seed, epoch)
        if epoch == 0:  # curriculum: the first batches of epoch 0 go short -> long
            head = int(len(batches) * a.curriculum_frac)
            batches[:head] = sorted(batches[:head], key=lambda b: max(train.index[i]["frames"] for i in b))
        while batch_pos < len(batches):
            ids = batches[batch_pos]
            ts = time.time()
            x, xl, y, yl = train.collate(ids)
            if a.silence_pad_prob > 0:
                x, xl = pad_with_silence(x, xl, aug_rng, a.silence_pad_prob, a.silence_pad_max, noise_bank)
            if a.freq_warp_prob > 0:
                warp_frequency(x, xl, aug_rng, a.freq_warp_prob, a.freq_warp_max)
            if a.specaug_from_epoch >= 0 and epoch >= a.specaug_from_epoch:
                spec_augment(x, xl, aug_rng)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, a, train_s)
            batch = [t.to(device, non_blocking=True) for t in (x, xl, y, yl)]
            if use_bf16:
                with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                    out = model.forward_train(*batch)
            else:
                out = model.forward_train(*batch)
            loss = out["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if step < a.front_only_steps:  # AdamW leaves parameters without a gradient untouched
                for name, p in model.named_parameters():
                    if not name.startswith("encoder.embed."):
                        p.grad = None
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), a.grad_clip)
            if torch.isfinite(gnorm):
                opt.step()
            else:
                print(f"step {step}: non-finite grad norm, skipped", flush=True)
            step += 1
            batch_pos += 1
            secs = float(xl.sum()) / 100.0
            audio_s += secs
            train_s += time.time() - ts
            win["n"] += 1
            win["loss"] += float(loss)
            win["ctc"] += float(out["loss_ctc"]) if out.get("loss_ctc") is not None else 0.0
            win["att"] += float(out["loss_att"]) if out.get("loss_att") is not None else 0.0
            win["acc"] += float(out["th_accuracy"]) if out.get("th_accuracy") is not None else 0.0
            win["audio"] += secs
            if step % a.log_steps == 0:
                n, dt = win["n"], time.time() - win["t"]
                print(f"step {step} epoch {epoch} batch {batch_pos}/{len(batches)} lr {lr_at(step, a, train_s):.2e} "
                      f"loss {win['loss'] / n:.2f} ctc {win['ctc'] / n:.2f} att {win['att'] / n:.2f} "
                      f"acc {win['acc'] / n:.3f} | {audio_s / 3600:.2f} h seen, {win['audio'] / dt:.1f}x RT, "
                      f"train {train_s / 60:.1f} min", flush=True)
                win = dict(n=0, loss=0.0, ctc=0.0, att=0.0, acc=0.0, audio=0.0, t=time.time())
            now = time.time()
            if a.max_steps and step >= a.max_steps:
                done = True
            if a.max_minutes and train_s / 60 >= a.max_minutes:
                done = True
            if now - last_snap >= a.snapshot_minutes * 60 or done or stop["flag"]:
                save_snapshot()
                last_snap = now
            if now - last_ckpt >= a.ckpt_minutes * 60 or done or stop["flag"]:
                save_ckpt()
                last_ckpt = now
            if now - last_eval >= a.eval_minutes * 60:
                te = time.time()
                evaluate("eval")
                last_eval = time.time()
                win["t"] += last_eval - te
            if done or stop["flag"]:
                break
        if done or stop["flag"]:
            break
        epoch += 1
        batch_pos = 0
    evaluate("final")
    print(f"{audio_s / 3600:.2f} h audio processed in {train_s / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
