#!/usr/bin/python3
"""The plain-PyTorch reference for scripts/bench.sh: the demo's MADE without logp.

The same model as logp's MADE (models/families/made.cc) for binary data: one hidden layer of H
ReLU units, natural order, masked weights applied as weight * mask on every forward pass, hidden
degrees drawn exactly as logp draws them (std::mt19937_64 seeded with seed ^ 0x9E3779B97F4A7C15,
degree = 1 + rng() % (D - 1)), Bernoulli conditionals scored with BCE-with-logits, trained with
Adam on the mean NLL. Same parameter count, same masks, same matmuls per step.

Binarized Fashion-MNIST (pixel > 127) is read from the IDX .gz with gzip + numpy. Two training
loops over the same model (--loop; the JSON says which ran):
  tuned (default): what a competent PyTorch user writes -- the whole training set as one float32
      tensor made once, batches by index_select of a torch.randperm, the summed BCE over the batch
      divided by B, zero_grad(set_to_none=True), the loss read once per window instead of once
      per step; evaluation under torch.no_grad. Adam's single-tensor (in-place) update: measured
      here, torch 1.13's Adam(foreach=True) is slower on CPU (its list ops allocate a fresh
      tensor per parameter and op), and fused=True is CUDA-only in 1.13 (--foreach 1 to try).
  plain: the first version of this script -- records kept as uint8, each batch gathered and
      converted to float32 when it is used, per-record log p then .mean(), loss.item() each step.

Run with Debian's python3-torch (/usr/bin/python3). Each invocation prints one JSON object:
  made_pytorch.py train --batch B --threads T --steps N [--warmup W] [--validate] [--loop L]
      samples/s over the N timed steps after W warm-up steps (median of ~1 s windows and overall),
      peak RSS (getrusage ru_maxrss).
  made_pytorch.py score --batch B --threads T [--seconds S]
      in-process records/s of log p(x) over the 10k test set in batches of B (an untrained
      model: the cost does not depend on the weights; median of >= 0.5 s windows).
  made_pytorch.py matmul-peak --threads T [--n 2048] [--repeats 7]
      fp32 GFLOP/s of torch.mm on n x n matrices (2 n^3 FLOPs each; median of repeats).

--threads sets torch.set_num_threads. OpenBLAS, which Debian's torch calls for fp32 matmuls,
keeps its own thread pool that this does not limit: set OPENBLAS_NUM_THREADS=T as well for a
true T-thread run (scripts/bench.sh does so for both sides).
"""

import argparse
import gzip
import json
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

FMNIST = "/usr/share/datasets/fashion-mnist"
EVAL_BATCH = 2048  # logp's validation batch (models/model.cc kEvalBatch)
MASK64 = (1 << 64) - 1


class MT19937_64:
    """std::mt19937_64, so that the hidden degrees equal logp's bit for bit."""

    def __init__(self, seed):
        self.mt = [0] * 312
        self.mt[0] = seed & MASK64
        for i in range(1, 312):
            prev = self.mt[i - 1]
            self.mt[i] = (6364136223846793005 * (prev ^ (prev >> 62)) + i) & MASK64
        self.index = 312

    def _twist(self):
        mt = self.mt
        for i in range(312):
            x = (mt[i] & 0xFFFFFFFF80000000) | (mt[(i + 1) % 312] & 0x7FFFFFFF)
            y = x >> 1
            if x & 1:
                y ^= 0xB5026F5AA96619E9
            mt[i] = mt[(i + 156) % 312] ^ y
        self.index = 0

    def __call__(self):
        if self.index >= 312:
            self._twist()
        x = self.mt[self.index]
        self.index += 1
        x ^= (x >> 29) & 0x5555555555555555
        x ^= (x << 17) & 0x71D67FFFEDA60000
        x ^= (x << 37) & 0xFFF7EEE000000000
        x ^= x >> 43
        return x & MASK64


def made_masks(dim, hidden, seed=0):
    """logp's DrawMadeDegrees + MadeMasks for one hidden layer, natural order."""
    rng = MT19937_64(seed ^ 0x9E3779B97F4A7C15)
    max_degree = max(dim - 1, 1)
    lo = min(1, max_degree)
    hidden_deg = torch.tensor([lo + rng() % (max_degree - lo + 1) for _ in range(hidden)])
    in_deg = torch.arange(1, dim + 1)
    out_deg = torch.arange(1, dim + 1)
    m1 = (hidden_deg[:, None] >= in_deg[None, :]).float()  # [H, D]
    m2 = (out_deg[:, None] > hidden_deg[None, :]).float()  # [D, H]
    return m1, m2


class MaskedLinear(torch.nn.Linear):
    def __init__(self, in_features, out_features, mask):
        super().__init__(in_features, out_features)
        self.register_buffer("mask", mask)

    def forward(self, x):
        return F.linear(x, self.weight * self.mask, self.bias)


class Made(torch.nn.Module):
    def __init__(self, dim, hidden, seed=0):
        super().__init__()
        m1, m2 = made_masks(dim, hidden, seed)
        self.hidden = MaskedLinear(dim, hidden, m1)
        self.output = MaskedLinear(hidden, dim, m2)

    def forward(self, x):
        return self.output(torch.relu(self.hidden(x)))

    def log_prob(self, x):
        return -F.binary_cross_entropy_with_logits(self(x), x, reduction="none").sum(1)


def flops_per_sample(dim, hidden):
    # Matmul FLOPs executed per record, as scripts/bench.sh counts them: 2 FLOPs per multiply-add;
    # forward (2 D H), both weight gradients (2 D H) and the hidden layer's input gradient (D H;
    # autograd computes none for the input): 5 * 2 * D * H.
    return 10 * dim * hidden


def load_binarized(path, max_records=0):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if raw[2] != 0x08:
        sys.exit(f"{path}: not unsigned-byte IDX data")
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape[0], -1)
    if max_records:
        data = data[:max_records]
    # A bool array viewed as 0/1 bytes: no further copy.
    return torch.from_numpy((data > 127).view(np.uint8))


def rss_mb(field="VmRSS"):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def common_fields(args):
    return {
        "threads": torch.get_num_threads(),
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS", "unset"),
        "torch": torch.__version__,
    }


def plain_step_fn(model, opt, data, batch):
    """The first loop: uint8 records, a float32 batch made per step, loss.item() per step."""
    n = data.shape[0]
    steps_per_epoch = (n + batch - 1) // batch
    perm = torch.randperm(n)
    next_batch = 0
    loss_sum = 0.0

    def step():
        nonlocal perm, next_batch, loss_sum
        if next_batch == steps_per_epoch:
            perm = torch.randperm(n)
            next_batch = 0
        b = next_batch * batch
        x = data[perm[b:b + batch]].float()
        loss = -model.log_prob(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        next_batch += 1
        loss_value = loss.item()
        loss_sum += loss_value
        return x.shape[0]

    def take_loss_sum():
        nonlocal loss_sum
        value, loss_sum = loss_sum, 0.0
        return value

    return step, take_loss_sum


def tuned_step_fn(model, opt, data, batch):
    """A competent user's loop: one float32 tensor, index_select of a permutation per batch."""
    n = data.shape[0]
    steps_per_epoch = (n + batch - 1) // batch
    perm = torch.randperm(n)
    next_batch = 0
    loss_sum = torch.zeros((), dtype=torch.float64)

    def step():
        nonlocal perm, next_batch
        if next_batch == steps_per_epoch:
            perm = torch.randperm(n)
            next_batch = 0
        b = next_batch * batch
        x = data.index_select(0, perm[b:b + batch])
        # The mean over the batch of the summed per-dimension BCE: the mean NLL, as plain's.
        loss = F.binary_cross_entropy_with_logits(model(x), x, reduction="sum") / x.shape[0]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        next_batch += 1
        loss_sum.add_(loss.detach())
        return x.shape[0]

    def take_loss_sum():
        value = loss_sum.item()
        loss_sum.zero_()
        return value

    return step, take_loss_sum


def retain_malloc():
    """glibc: serve allocations up to 64 MiB from the heap and keep freed memory there, instead of
    a fresh mmap (and page faults) for every large tensor. Not what a plain script does."""
    import ctypes
    libc = ctypes.CDLL("libc.so.6")
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    if not (libc.mallopt(M_MMAP_THRESHOLD, 64 << 20) and libc.mallopt(M_TRIM_THRESHOLD, 256 << 20)):
        sys.exit("mallopt failed")


def cmd_train(args):
    if args.malloc_retain:
        retain_malloc()
    torch.manual_seed(args.seed)
    data = load_binarized(args.data, args.max_records)
    if args.loop == "tuned":
        data = data.float()  # once: a competent user's whole training set as float32
    n, dim = data.shape
    model = Made(dim, args.hidden, seed=0)
    model.train()
    if args.loop == "tuned":
        opt = torch.optim.Adam(model.parameters(), lr=args.lr, foreach=args.foreach)
        step, take_loss_sum = tuned_step_fn(model, opt, data, args.batch)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
        step, take_loss_sum = plain_step_fn(model, opt, data, args.batch)
    rss_loaded = rss_mb()

    for _ in range(args.warmup):
        step()
    take_loss_sum()
    loss_sum = 0.0
    windows = []
    records = 0
    w_start = t0 = time.perf_counter()
    w_records = 0
    for _ in range(args.steps):
        r = step()
        records += r
        w_records += r
        now = time.perf_counter()
        if now - w_start >= args.window:
            windows.append(w_records / (now - w_start))
            loss_sum += take_loss_sum()
            w_start, w_records = time.perf_counter(), 0
    seconds = time.perf_counter() - t0
    loss_sum += take_loss_sum()
    overall = records / seconds
    validation_nll = None
    if args.validate:
        # As logp does at the end of an epoch: score the held-out tenth in batches of 2048.
        model.eval()
        valid = data[n - n // 10:]
        with torch.no_grad():
            lp = torch.cat([model.log_prob(valid[b:b + EVAL_BATCH].float())
                            for b in range(0, valid.shape[0], EVAL_BATCH)])
        validation_nll = -lp.double().mean().item()
    fps = flops_per_sample(dim, args.hidden)
    sps = statistics.median(windows) if windows else overall
    out = {
        "mode": "train",
        "loop": args.loop,
        "adam_foreach": args.foreach if args.loop == "tuned" else None,
        "malloc_retain": args.malloc_retain,
        "batch": args.batch,
        "steps": args.steps,
        "warmup_steps": args.warmup,
        "records": n,
        "dim": dim,
        "hidden": args.hidden,
        "parameters": sum(p.numel() for p in model.parameters()),
        "seconds": seconds,
        "samples_per_second": sps,
        "samples_per_second_overall": overall,
        "windows": len(windows),
        "flops_per_sample": fps,
        "flops_formula": "10 * D * H",
        "gflops_per_second": sps * fps / 1e9,
        "mean_train_nll": loss_sum / args.steps,
        "rss_after_load_mb": rss_loaded,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }
    if validation_nll is not None:
        out["validation_nll"] = validation_nll
    out.update(common_fields(args))
    return out


def cmd_score(args):
    torch.manual_seed(args.seed)
    data = load_binarized(args.data, args.max_records)
    n, dim = data.shape
    model = Made(dim, args.hidden, seed=0)
    model.eval()
    # As logp_bench: cycle through the batches in windows of >= --window seconds until
    # --seconds have passed and --min_windows windows are done; median of the window rates.
    starts = list(range(0, n, args.batch))
    rates = []
    lp_sum, scored = 0.0, 0
    with torch.inference_mode():
        start = w_start = time.perf_counter()
        w_records = 0
        i = 0
        while True:
            b = starts[i % len(starts)]
            i += 1
            lp = model.log_prob(data[b:b + args.batch].float())
            lp_sum += lp.double().sum().item()
            scored += lp.shape[0]
            w_records += lp.shape[0]
            now = time.perf_counter()
            if now - w_start >= args.window:
                rates.append(w_records / (now - w_start))
                w_start, w_records = now, 0
                if len(rates) >= args.min_windows and now - start >= args.seconds:
                    break
        seconds = time.perf_counter() - start
    out = {
        "mode": "score",
        "batch": args.batch,
        "records": n,
        "windows": len(rates),
        "records_per_second": statistics.median(rates),
        "records_per_second_overall": scored / seconds,
        "mean_log_prob_untrained": lp_sum / scored,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }
    out.update(common_fields(args))
    return out


def cmd_matmul_peak(args):
    a = torch.randn(args.n, args.n)
    b = torch.randn(args.n, args.n)
    torch.mm(a, b)  # warm-up
    rates = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        rates.append(2 * args.n ** 3 / (time.perf_counter() - t0) / 1e9)
    out = {
        "mode": "matmul-peak",
        "n": args.n,
        "repeats": args.repeats,
        "gflops_per_second": statistics.median(rates),
        "gflops_per_second_max": max(rates),
    }
    out.update(common_fields(args))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)
    for name in ("train", "score", "matmul-peak"):
        s = sub.add_parser(name)
        s.add_argument("--threads", type=int, default=1)
        if name == "matmul-peak":
            s.add_argument("--n", type=int, default=2048)
            s.add_argument("--repeats", type=int, default=7)
            continue
        s.add_argument("--batch", type=int, default=100)
        s.add_argument("--hidden", type=int, default=500)
        s.add_argument("--seed", type=int, default=1)
        s.add_argument("--max_records", type=int, default=0, help="0: all")
        if name == "train":
            s.add_argument("--data", default=f"{FMNIST}/train-images-idx3-ubyte.gz")
            s.add_argument("--steps", type=int, default=500, help="timed steps")
            s.add_argument("--warmup", type=int, default=20, help="untimed steps first")
            s.add_argument("--window", type=float, default=1.0,
                           help="seconds per throughput window (logp's progress interval)")
            s.add_argument("--lr", type=float, default=1e-3)
            s.add_argument("--validate", action="store_true",
                           help="score the last tenth of the records afterwards, as an epoch end")
            s.add_argument("--loop", choices=("tuned", "plain"), default="tuned",
                           help="tuned: a competent user's loop; plain: the first version's")
            s.add_argument("--foreach", type=int, choices=(0, 1), default=0,
                           help="tuned: torch.optim.Adam(foreach=...)")
            s.add_argument("--malloc_retain", type=int, choices=(0, 1), default=0,
                           help="1: glibc mallopt fixed mmap/trim thresholds (64/256 MiB), so that "
                           "freed tensors are reused instead of returned to the kernel")
        else:
            s.add_argument("--data", default=f"{FMNIST}/t10k-images-idx3-ubyte.gz")
            s.add_argument("--seconds", type=float, default=3.0, help="least time spent")
            s.add_argument("--window", type=float, default=0.5, help="least seconds per window")
            s.add_argument("--min_windows", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    run = {"train": cmd_train, "score": cmd_score, "matmul-peak": cmd_matmul_peak}[args.mode]
    print(json.dumps(run(args)), flush=True)


if __name__ == "__main__":
    main()
