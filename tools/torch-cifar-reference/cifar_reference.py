"""PyTorch reference of resnet-tui's CIFAR-10 recipe (assets/experiments/cifar-short.toml).

Trains the same network on the same data with the same optimiser and schedule as
`resnet-tui --experiment cifar-short`, and writes a run directory whose metrics.jsonl
`resnet-tui report` (and `watch`) reads next to our own runs. Only the recipe is mirrored, not our
random streams: the weights, the epoch order and the crops come from torch generators seeded by
--seed, so compare seeds' spread, not single numbers.

Where every choice comes from (paths in the repository; line numbers as of 2026-11-30, the code
moves: the function names are the stable part):

Data
- CIFAR-10 binary files data_batch_1..5.bin (train, concatenated in that order) and
  test_batch.bin; each record is 1 label byte + 3072 pixel bytes, three 32x32 planes R, G, B
  (CHW). src/data/cifar.rs:1-16, src/data.rs:152 (Source::Cifar10). val_split = 0 in
  cifar-short.toml, so all 50,000 images train, in file order (src/data.rs:203, split_off_val).
- Pixels are scaled by the f32 constant 1/255 and the training set's mean image (per pixel,
  per channel, 3072 values, summed in integers then divided in f64, kept as f32) is
  subtracted; there is NO division by a standard deviation: src/data/normalize.rs:32 (SCALE),
  :67 (`p * SCALE - m`), :86-95 (mean_image); config `normalize = "per_pixel_mean"`.
- Augmentation is applied AFTER normalisation: the loader normalises into a scratch image and
  then crops/flips that (src/data/loader.rs:100-116, fill_one), so the 4-pixel padding is 0
  in the mean-subtracted space, i.e. the padded border equals the mean image, not black.
  Crop offsets are uniform in -4..=4 for x and y independently (src/data/augment.rs:8, :30),
  the flip is a fair coin, applied after the crop (augment.rs:83-93, row.reverse()).
- Shuffled every epoch (a fresh permutation per epoch, loader.rs:71), drop_last
  (src/engine/trainer.rs:320, trainer/prepare.rs:57): 50000 // 128 = 390 steps per epoch;
  the last 80 images of each epoch's permutation are not seen that epoch.
- Evaluation (src/engine/trainer/evaluation.rs): BN in eval mode, no augmentation, the images
  in file order, batch 500 (cifar-short [eval] batch_size); the loss is the mean
  cross-entropy over all images (:84-95), the error the fraction of wrong argmaxes. Split
  "test" = all 10,000 test images (max_images = 0), then split "train" = the FIRST 10,000
  training images in file order (= data_batch_1.bin), eval.train_images = 10000 (:41-60).
  Every 390 steps (eval.every_steps) and once more at the end when the last step is not a
  multiple of it (trainer.rs:288, :299).

Model (src/model.rs, src/model/plan.rs, src/model/block.rs), akamaster's names
- 3x3 conv 16 (stride 1, pad 1, no bias) + BN + ReLU; three stages of n basic blocks with
  16/32/64 channels, stride 2 in the first block of stages 2 and 3 (plan.rs:153-159); global
  average pool; linear 64 -> 10 with bias. depth = 6n + 2.
- Basic block: relu(bn1(conv1(x))) -> bn2(conv2(.)) -> relu(. + shortcut(x)); a plain block
  is relu(bn2(conv2(.))) with no shortcut at all (block.rs:280).
- Option A shortcut where the shape changes (plan.rs:162-166): x[:, :, ::2, ::2]
  (block.rs:218 subsample, kernels/eltwise.rs ShortcutA::forward), then zero channels:
  front = (cout-cin)//2,
  back = the rest (block.rs:261, :286), i.e. 8 + 8 for 16 -> 32 and 16 + 16 for 32 -> 64,
  exactly akamaster's F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes//4, planes//4)).
- BatchNorm eps 1e-5, momentum 0.1, running var updated with the unbiased batch variance
  (block.rs:13-14, :91 update_running) = torch.nn.BatchNorm2d defaults. gamma 1, beta 0
  (block.rs:82-83).
- Init: every conv N(0, 2/fan_in) with fan_in = cin*k*k (model.rs:87-88, CIFAR family);
  linear weight N(0, 2/64) (model.rs:89-93, akamaster's kaiming_normal_ on the Linear);
  linear bias U(-1/8, 1/8) = torch's default (block.rs:430-451, Linear::new).

Optimisation (cifar-short.toml [train] and [schedule]; src/optim.rs, src/schedule.rs)
- SGD momentum 0.9, dampening 0, no Nesterov, weight decay 1e-4 added to the gradient of
  EVERY parameter, BN gamma/beta and the fc bias included (decay_bn_and_bias = true,
  prepare.rs:45, optim.rs:86): torch.optim.SGD over model.parameters() does the same;
  the first momentum buffer is the gradient itself (optim.rs:92), as in torch.
- LR 0.1, x0.1 at steps 1950 and 2925 counted per iteration (schedule.rs:92-93: step k,
  0-based, uses 0.1 * 0.1**#{m <= k}) = MultiStepLR stepped after every optimiser step. 3900 steps.
- Loss: mean cross-entropy of the batch (trainer/step.rs:43); the batch error is the fraction
  of wrong argmaxes.

Metrics (src/engine/metrics.rs, src/protocol.rs, src/engine/trainer.rs, trainer/timing.rs)
- metrics.jsonl: one MetricsRecord per line, {run, kind, step, epoch, time_s, [loss, err, lr,
  img_per_s, split, source, reason], event}, `event` being the serde form of protocol::Event
  (externally tagged: {"Started": {...}}, {"Step": {...}}, ...).
- "step" every --log-every steps and at the last step: mean loss and error over the steps since
  the previous step record, the LR of the last step, images/s over the interval with evaluation
  time left out (timing.rs:103, Window::take). time_s = seconds since the start, evaluation
  included.
  EXTRA here: a record at step 1 holding step 1 alone (our runs have none); the interval record
  at step --log-every still covers steps 1..log_every, as ours does.
- "lr" records as ours (LrChanged at step 0 and at each milestone); no "grads" and no
  "checkpoint" records (no checkpoints are written).
- heartbeat.json every 2 s while the process lives, as ours (src/engine/heartbeat.rs: pid, host,
  time, beat), so that `resnet-tui watch` tells a live reference run from a dead one.
"""

import argparse
import json
import math
import os
import signal
import socket
import sys
import threading
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

IMAGE_BYTES = 3072
TRAIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)]
TEST_FILE = "test_batch.bin"


# ---------------------------------------------------------------- data


def read_cifar10(path):
    raw = np.fromfile(path, dtype=np.uint8)
    record = 1 + IMAGE_BYTES
    if raw.size == 0 or raw.size % record:
        raise SystemExit(f"{path}: {raw.size} bytes is not a whole number of {record}-byte records")
    raw = raw.reshape(-1, record)
    labels = raw[:, 0].astype(np.int64)
    if labels.max() >= 10:
        raise SystemExit(f"{path}: label {labels.max()} out of range (CIFAR-10 has 10 classes)")
    return raw[:, 1:].reshape(-1, 3, 32, 32), labels


def load_cifar10(root):
    missing = [f for f in TRAIN_FILES + [TEST_FILE] if not os.path.isfile(os.path.join(root, f))]
    if missing:
        raise SystemExit(f"{root}: missing {', '.join(missing)} (the CIFAR-10 binary version)")
    parts = [read_cifar10(os.path.join(root, f)) for f in TRAIN_FILES]
    train_x = np.concatenate([p[0] for p in parts])
    train_y = np.concatenate([p[1] for p in parts])
    test_x, test_y = read_cifar10(os.path.join(root, TEST_FILE))
    return train_x, train_y, test_x, test_y


def normalise(images_u8, mean):
    """u8 [N,3,32,32] -> f32 p * float32(1/255) - mean, as NormStats::apply."""
    return images_u8.astype(np.float32) * np.float32(1.0 / 255.0) - mean


def mean_image(train_u8):
    """The training set's mean image on the [0, 1] scale, as normalize.rs mean_image."""
    total = train_u8.reshape(len(train_u8), -1).sum(axis=0, dtype=np.uint64)
    return (total.astype(np.float64) / len(train_u8) / 255.0).astype(np.float32).reshape(3, 32, 32)


def augment(x, gen, pad=4):
    """Pad with zeros (in normalised space), random 32x32 crop, random horizontal flip."""
    b = x.shape[0]
    padded = F.pad(x, (pad, pad, pad, pad))
    off = torch.randint(0, 2 * pad + 1, (2, b), generator=gen)
    flip = torch.randint(0, 2, (b,), generator=gen).bool()
    ar = torch.arange(32)
    rows = (off[1][:, None] + ar)[:, None, :, None]
    cols = (off[0][:, None] + ar)
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, None, :]
    return padded[torch.arange(b)[:, None, None, None], torch.arange(3)[None, :, None, None],
                  rows, cols]


# ---------------------------------------------------------------- model


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride, plain):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)
        self.plain = plain
        self.pad_a = None
        if stride != 1 or cin != cout:
            extra = cout - cin
            self.pad_a = (stride, extra // 2, extra - extra // 2)

    def shortcut(self, x):
        if self.pad_a is None:
            return x
        stride, front, back = self.pad_a
        return F.pad(x[:, :, ::stride, ::stride], (0, 0, 0, 0, front, back))

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.plain:
            return F.relu(out)
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth, plain, classes=10):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16, eps=1e-5, momentum=0.1)
        cin = 16
        for stage, width in enumerate([16, 32, 64]):
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(cin, width, 2 if stage > 0 and i == 0 else 1, plain))
                cin = width
            setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
        self.linear = nn.Linear(64, classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                # N(0, 2 / fan_in); nn.Linear keeps its default U(-1/sqrt(64), 1/sqrt(64)) bias.
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.linear(x.mean((2, 3)))

    def weighted_layers(self):
        return [name for name, m in self.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def parse_model(name):
    for prefix, plain in (("resnet", False), ("plain", True)):
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            depth = int(name[len(prefix):])
            if depth >= 8 and (depth - 2) % 6 == 0:
                return depth, plain
    raise SystemExit(f"unknown model {name!r}: expected resnetN or plainN with N = 6n+2 "
                     "(20, 32, 44, 56, 110, ...)")


# ---------------------------------------------------------------- metrics


class Metrics:
    """Appends MetricsRecords (src/engine/metrics.rs) and prints headless-style lines."""

    def __init__(self, path, name, steps_per_epoch):
        self.file = open(path, "a", encoding="utf-8")
        self.name = name
        self.spe = steps_per_epoch

    def epoch(self, step):
        return step / self.spe

    def write(self, kind, step, time_s, event, epoch=None, **fields):
        rec = {"run": self.name, "kind": kind, "step": int(step),
               "epoch": float(self.epoch(step) if epoch is None else epoch),
               "time_s": float(time_s)}
        for key in ("loss", "err", "lr", "img_per_s", "split", "source", "reason", "message"):
            if key in fields:
                v = fields[key]
                rec[key] = float(v) if key in ("loss", "err", "lr", "img_per_s") else v
        rec["event"] = event
        self.file.write(json.dumps(rec, allow_nan=False, separators=(",", ":")) + "\n")
        self.file.flush()

    def close(self):
        self.file.close()


def safe(v):
    """serde_json cannot write NaN/inf; ours never logs them either (it pauses instead)."""
    return v if math.isfinite(v) else 1e300 if v > 0 else -1e300


# ---------------------------------------------------------------- main


def evaluate(model, x_u8, y, mean, limit, batch):
    model.eval()
    n = len(y) if limit <= 0 else min(limit, len(y))
    loss_sum, wrong = 0.0, 0
    with torch.inference_mode():
        for start in range(0, n, batch):
            end = min(start + batch, n)
            xb = torch.from_numpy(normalise(x_u8[start:end], mean))
            yb = torch.from_numpy(y[start:end])
            logits = model(xb)
            loss_sum += F.cross_entropy(logits, yb, reduction="sum").item()
            wrong += (logits.argmax(1) != yb).sum().item()
    model.train()
    return loss_sum / max(n, 1), wrong / max(n, 1)


def beat_forever(run_dir):
    """heartbeat.json in run_dir every 2 s (a daemon thread: it ends with the process)."""
    path, beat = os.path.join(run_dir, "heartbeat.json"), 0
    while True:
        hb = {"pid": os.getpid(), "host": socket.gethostname(), "time": time.time(), "beat": beat}
        with open(path, "w") as f:
            f.write(json.dumps(hb) + "\n")
        beat += 1
        time.sleep(2.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.environ.get("CIFAR10_DIR", "/tmp/cifar10"),
                    help="CIFAR-10 binary directory (data_batch_1..5.bin, test_batch.bin)")
    ap.add_argument("--model", default="resnet20", help="resnetN or plainN, N = 6n+2")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3900)
    ap.add_argument("--milestones", default="1950,2925", help="comma-separated steps (LR x0.1)")
    ap.add_argument("--eval-every", type=int, default=390, help="0 = only at the end")
    ap.add_argument("--eval-max-images", type=int, default=0,
                    help="test images to evaluate (0 = all)")
    ap.add_argument("--eval-train-images", type=int, default=10000,
                    help="first N training images evaluated without augmentation (0 = off)")
    ap.add_argument("--eval-batch", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True, help="run directory (metrics.jsonl goes there)")
    ap.add_argument("--name", default=None, help="run name (default MODEL-torch)")
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--gamma", type=float, default=0.1)
    a = ap.parse_args()

    torch.set_num_threads(max(1, a.threads))
    depth, plain = parse_model(a.model)
    milestones = [int(m) for m in a.milestones.split(",") if m.strip()]
    name = a.name or f"{a.model}-torch"
    log_every = max(1, a.log_every)

    os.makedirs(a.out, exist_ok=True)
    metrics_path = os.path.join(a.out, "metrics.jsonl")
    if os.path.exists(metrics_path) and os.path.getsize(metrics_path) > 0:
        raise SystemExit(f"{metrics_path} exists: pick a new --out (runs are not resumed)")
    threading.Thread(target=beat_forever, args=(a.out,), daemon=True).start()

    train_x, train_y, test_x, test_y = load_cifar10(a.data)
    mean = mean_image(train_x)
    n = len(train_y)
    if n < a.batch_size:
        raise SystemExit(f"batch size {a.batch_size} is larger than the training set ({n} images)")
    spe = n // a.batch_size  # drop_last

    torch.manual_seed(a.seed)  # initialisation
    data_gen = torch.Generator().manual_seed(a.seed + 0x5F)  # epoch order and augmentation
    model = CifarResNet(depth, plain).train()
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum, dampening=0.0,
                          weight_decay=a.weight_decay, nesterov=False)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=a.gamma)

    schedule = [[0, a.lr]]
    lr_plan = a.lr
    for m in sorted(milestones):
        lr_plan *= a.gamma
        if m < a.steps:
            schedule.append([m, lr_plan])
    device = f"torch {torch.__version__} cpu ({torch.get_num_threads()} threads)"
    with open(os.path.join(a.out, "reference.json"), "w", encoding="utf-8") as f:
        json.dump({"tool": "tools/torch-cifar-reference", "torch": torch.__version__,
                   "numpy": np.__version__, "args": vars(a),
                   "env": {k: os.environ.get(k)
                           for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")},
                   "params": sum(p.numel() for p in model.parameters())}, f, indent=2)

    log = Metrics(metrics_path, name, spe)
    say = lambda line: print(f"[{name}] {line}", flush=True)
    t0 = time.perf_counter()
    now = lambda: time.perf_counter() - t0
    info = {"run": 0, "name": name, "model": a.model, "depth": depth, "plain": plain,
            "device": device, "max_steps": a.steps, "steps_per_epoch": spe,
            "batch_size": a.batch_size, "start_step": 0, "schedule": schedule,
            "layers": model.weighted_layers(), "dir": os.path.abspath(a.out),
            "seed": a.seed, "threads": torch.get_num_threads(),
            "kernels": f"torch {torch.__version__}"}
    log.write("start", 0, 0.0, {"Started": info}, epoch=0.0)
    say(f"{a.model} on {device}: {a.steps} steps of batch {a.batch_size} ({spe} per epoch), "
        f"writing {info['dir']}")

    def eval_all(step):
        t = None
        for split, x, y, limit in (("test", test_x, test_y, a.eval_max_images),
                                   ("train", train_x, train_y, a.eval_train_images)):
            if split == "train" and a.eval_train_images <= 0:
                continue
            loss, err = evaluate(model, x, y, mean, limit, a.eval_batch)
            if t is None:  # as ours: both records carry the time the test evaluation ended
                t = now()
            ev = {"run": 0, "step": step, "epoch": step / spe, "split": split,
                  "loss": safe(loss), "err": err, "time_s": t}
            log.write("eval", step, t, {"Eval": ev}, loss=safe(loss), err=err, split=split)
            say(f"eval  {step:>6} epoch {step / spe:>6.2f}  {split.capitalize()} loss {loss:.4f}  "
                f"err {100 * err:>5.1f}%")

    def step_record(s, loss_mean, err_mean, lr, secs, images):
        t = now()
        m = {"run": 0, "step": s, "epoch": s / spe, "loss": loss_mean, "err": err_mean,
             "lr": lr, "img_per_s": images / max(secs, 1e-9), "time_s": t}
        log.write("step", s, t, {"Step": m}, loss=loss_mean, err=err_mean, lr=lr,
                  img_per_s=m["img_per_s"])
        say(f"step {s:>6} epoch {s / spe:>6.2f}  loss {loss_mean:.4f}  "
            f"err {100 * err_mean:>5.1f}%  "
            f"lr {lr:.4f}  {m['img_per_s']:>6.0f} img/s")

    last_lr = float("nan")
    step, order, epoch_of_order = 0, None, -1
    win_loss = win_err = 0.0
    win_steps, win_start, win_excluded = 0, time.perf_counter(), 0.0
    reason = "completed"
    stop = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    try:
        while step < a.steps:
            if stop["flag"]:
                reason = "stopped"
                break
            epoch, index = divmod(step, spe)
            if epoch != epoch_of_order:
                order = torch.randperm(n, generator=data_gen)
                epoch_of_order = epoch
            picks = order[index * a.batch_size:(index + 1) * a.batch_size].numpy()
            # Normalise first, then pad/crop/flip: the padding is 0 after mean subtraction.
            xb = augment(torch.from_numpy(normalise(train_x[picks], mean)), data_gen)
            yb = torch.from_numpy(train_y[picks])

            lr = opt.param_groups[0]["lr"]
            if lr != last_lr:
                old = lr if math.isnan(last_lr) else last_lr
                t = now()
                ev = {"run": 0, "step": step, "old": old, "new": lr, "source": "schedule"}
                log.write("lr", step, t, {"LrChanged": ev}, lr=lr, source="schedule")
                if not math.isnan(last_lr):
                    say(f"LR {old} -> {lr} at step {step} (Schedule)")
                last_lr = lr
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            loss_v = loss.item()
            err_v = (logits.detach().argmax(1) != yb).float().mean().item()
            if not math.isfinite(loss_v):
                raise FloatingPointError(f"loss is {loss_v} at step {step}")
            win_loss += loss_v
            win_err += err_v
            win_steps += 1

            if step == 1 and log_every != 1:
                secs = time.perf_counter() - win_start - win_excluded
                step_record(1, loss_v, err_v, last_lr, secs, a.batch_size)
            if step % log_every == 0 or step == a.steps:
                secs = time.perf_counter() - win_start - win_excluded
                step_record(step, win_loss / win_steps, win_err / win_steps, last_lr, secs,
                            win_steps * a.batch_size)
                win_loss = win_err = 0.0
                win_steps, win_start, win_excluded = 0, time.perf_counter(), 0.0
            if a.eval_every > 0 and step % a.eval_every == 0:
                e0 = time.perf_counter()
                eval_all(step)
                win_excluded += time.perf_counter() - e0
        if reason == "completed" and (a.eval_every <= 0 or step % a.eval_every != 0):
            eval_all(step)
    except KeyboardInterrupt:
        reason = "stopped"
    except Exception as e:  # noqa: BLE001 - reported in the run's metrics, then re-raised
        reason = "failed"
        msg = f"{name}: {e}"
        log.write("error", step, now(), {"Error": {"run": 0, "message": msg}}, message=msg)
        log.write("finished", step, now(), {"Finished": {"run": 0, "step": step, "reason": reason}},
                  reason=reason)
        log.close()
        raise
    log.write("finished", step, now(), {"Finished": {"run": 0, "step": step, "reason": reason}},
              reason=reason)
    log.close()
    say(f"{'finished' if reason == 'completed' else reason} at step {step}")


if __name__ == "__main__":
    main()
