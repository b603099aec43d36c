#!/usr/bin/python3
"""The plain-PyTorch PixelCNN reference of bench/pixelcnn.sh (issue 16, item 6).

142,513 parameters on 28 x 28 binary images: a 7 x 7 mask-A convolution 1 -> 48 (no bias), 10
residual bottleneck blocks [ReLU, 1 x 1 48 -> 24, BN, ReLU, 3 x 3 mask-B 24 -> 24, BN, ReLU,
1 x 1 24 -> 48, BN] added to their input, then ReLU, 1 x 1 48 -> 1248, ReLU, 1 x 1 1248 -> 1 (the
logit of each pixel). Masks are applied as weight * mask on every forward pass, the full 7 x 7
and 3 x 3 kernels computed (as a PyTorch user writes it). Adam 1e-3, batch 64, the summed BCE
over the batch divided by its size; evaluation in eval mode (running BN statistics) under
no_grad, which is what makes log p(x) an exact, normalised likelihood.

Binarized Fashion-MNIST (pixel > 127): the training set is split 90/10 into train/validation
with a fixed permutation (seed 1), the test set is the 10k t10k images.

  pixelcnn_pytorch.py speed --threads T [--batch 64] [--steps 40] [--warmup 5]
      training samples/s over the timed steps, and eval records/s.
  pixelcnn_pytorch.py train --minutes M --threads T [--batch 64] [--every 5]
      trains for M minutes of wall time, printing the validation NLL every --every minutes,
      then the test NLL (mean +- standard error) as one JSON line.
"""

import argparse
import gzip
import json
import math
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

FMNIST = "/usr/share/datasets/fashion-mnist"


def load_binarized(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[4:8], "big")
    data = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, 1, 28, 28)
    return torch.from_numpy((data > 127).astype(np.float32))


class MaskedConv2d(torch.nn.Conv2d):
    def __init__(self, kind, cin, cout, k, bias=True):
        super().__init__(cin, cout, k, padding=k // 2, bias=bias)
        mask = torch.ones_like(self.weight)
        c = k // 2
        mask[:, :, c, c + (kind == "B"):] = 0
        mask[:, :, c + 1:, :] = 0
        self.register_buffer("mask", mask)

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class Block(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        h = c // 2
        self.net = torch.nn.Sequential(
            torch.nn.ReLU(), torch.nn.Conv2d(c, h, 1), torch.nn.BatchNorm2d(h),
            torch.nn.ReLU(), MaskedConv2d("B", h, h, 3), torch.nn.BatchNorm2d(h),
            torch.nn.ReLU(), torch.nn.Conv2d(h, c, 1), torch.nn.BatchNorm2d(c))

    def forward(self, x):
        return x + self.net(x)


class PixelCnn(torch.nn.Module):
    def __init__(self, channels=48, blocks=10, head=1248):
        super().__init__()
        self.net = torch.nn.Sequential(
            MaskedConv2d("A", 1, channels, 7, bias=False),
            *[Block(channels) for _ in range(blocks)],
            torch.nn.ReLU(), torch.nn.Conv2d(channels, head, 1),
            torch.nn.ReLU(), torch.nn.Conv2d(head, 1, 1))

    def log_prob(self, x):
        logits = self.net(x)
        return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def evaluate(model, x, batch=500):
    model.eval()
    with torch.no_grad():
        lp = torch.cat([model.log_prob(x[i:i + batch]) for i in range(0, len(x), batch)])
    model.train()
    nll = -lp.double()
    return nll.mean().item(), (nll.std() / math.sqrt(len(nll))).item()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["speed", "train"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--minutes", type=float, default=40)
    p.add_argument("--every", type=float, default=5)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = PixelCnn()
    params = sum(t.numel() for t in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    full = load_binarized(f"{FMNIST}/train-images-idx3-ubyte.gz")
    perm = torch.randperm(len(full), generator=torch.Generator().manual_seed(1))
    n_val = len(full) // 10
    val, train = full[perm[:n_val]], full[perm[n_val:]]

    def step(xb):
        loss = -model.log_prob(xb).sum() / len(xb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    if a.mode == "speed":
        idx = torch.randint(len(train), (a.warmup + a.steps, a.batch))
        for i in range(a.warmup):
            step(train[idx[i]])
        t0 = time.perf_counter()
        for i in range(a.warmup, a.warmup + a.steps):
            step(train[idx[i]])
        train_rate = a.steps * a.batch / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        evaluate(model, val[:2000])
        eval_rate = 2000 / (time.perf_counter() - t0)
        print(json.dumps({"parameters": params, "threads": a.threads, "batch": a.batch,
                          "train_samples_per_s": round(train_rate, 1),
                          "eval_records_per_s": round(eval_rate, 1)}))
        return

    test = load_binarized(f"{FMNIST}/t10k-images-idx3-ubyte.gz")
    start = time.perf_counter()
    next_report, epoch, steps = a.every * 60, 0, 0
    curve = []
    done = False
    while not done:
        order = torch.randperm(len(train))
        for i in range(0, len(train) - a.batch + 1, a.batch):
            step(train[order[i:i + a.batch]])
            steps += 1
            elapsed = time.perf_counter() - start
            if elapsed >= next_report:
                # Evaluation time is not training time: the clock is paused around it.
                t = time.perf_counter()
                v, _ = evaluate(model, val)
                curve.append(round(v, 2))
                print(f"{elapsed / 60:.0f} min, epoch {epoch + i / len(train):.2f}: validation "
                      f"NLL {v:.2f}", file=sys.stderr, flush=True)
                start += time.perf_counter() - t
                next_report += a.every * 60
            if elapsed >= a.minutes * 60:
                done = True
                break
        epoch += 1
    nll, se = evaluate(model, test)
    print(json.dumps({"parameters": params, "minutes": a.minutes, "steps": steps,
                      "samples_per_s": round(steps * a.batch / (a.minutes * 60), 1),
                      "validation_curve": curve, "test_nll": round(nll, 3),
                      "test_se": round(se, 3)}))


if __name__ == "__main__":
    main()
