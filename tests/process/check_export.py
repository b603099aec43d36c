"""Checks one exported logp model (logpctl models export) with Debian's python3-torch.

Usage: check_export.py MODEL.pt RECORDS.csv SCORES.txt KIND DIM K FAMILY
RECORDS.csv holds the records logpctl scored and SCORES.txt logpctl's log p for each (one per
line), or SCORES.json logpctl --json's ScoreResponse. Checks that log_prob equals the server's
scores within 1e-5 relative (-inf where the server said -inf) or, for Monte Carlo scores (the
VAE's, with standard errors se), within 5 sqrt(2) se per record (both estimates have standard
error se), that sample(n, seed) is reproducible by seed, differs across seeds and has
the shape and values of the data kind, for bernoulli that the sample means match the model's
probabilities, and for maf and realnvp that every batch norm carries the running statistics
that training left (not its initial variances of one). Exits 1 with a message on the first
failed check.
"""
import json
import math
import sys

import torch


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def main():
    path, records_csv, scores_txt, kind, dim, k, family = sys.argv[1:8]
    dim, k = int(dim), int(k)
    m = torch.jit.load(path)
    info = m.info()
    if info["family"] != family or info["kind"] != kind or int(info["dim"]) != dim:
        fail(f"{path}: info() says {info}")
    se = None
    if scores_txt.endswith(".json"):
        scored = json.load(open(scores_txt))
        want = torch.tensor([float(v) for v in scored["logProb"]], dtype=torch.float64)
        if "standardError" in scored:
            se = torch.tensor([float(v) for v in scored["standardError"]], dtype=torch.float64)
        kind_word = scored.get("scoreKind", "SCORE_KIND_EXACT")
    else:
        want = torch.tensor([float(v) for v in open(scores_txt).read().split()],
                            dtype=torch.float64)
        kind_word = "SCORE_KIND_EXACT"
    if info["score_kind"] != kind_word:
        fail(f"{path}: score kind {info['score_kind']}, the server's {kind_word}")
    rows = [[float(v) for v in line.split(",")] for line in open(records_csv) if line.strip()]
    got = m.log_prob(torch.tensor(rows, dtype=torch.float32))
    if got.dtype != torch.float64 or got.shape != want.shape:
        fail(f"{path}: log_prob gave {got.dtype} {tuple(got.shape)}, want {tuple(want.shape)}")
    for i, (g, w) in enumerate(zip(got.tolist(), want.tolist())):
        if math.isinf(w):
            ok = g == w
        elif se is not None:
            ok = abs(g - w) <= 5 * math.sqrt(2) * float(se[i]) + 1e-9
        else:
            ok = abs(g - w) <= 1e-5 * abs(w) + 1e-9
        if not ok:
            fail(f"{path}: record {i}: log_prob {g!r}, server's score {w!r}")
    s1, s2, s3 = m.sample(400, 7), m.sample(400, 7), m.sample(400, 8)
    if s1.shape != (400, dim) or s1.dtype != torch.float32:
        fail(f"{path}: sample gave {s1.dtype} {tuple(s1.shape)}")
    if not torch.equal(s1, s2):
        fail(f"{path}: sample(400, 7) twice gave different samples")
    if torch.equal(s1, s3):
        fail(f"{path}: seeds 7 and 8 gave the same samples")
    if kind != "continuous":
        if not bool(((s1 == s1.floor()) & (s1 >= 0) & (s1 <= k - 1)).all()):
            fail(f"{path}: samples are not categories 0..{k - 1}")
    if not bool(torch.isfinite(m.log_prob(s1)).all()):
        fail(f"{path}: a sample scores -inf or NaN")
    if family == "bernoulli":
        n = 20000
        p = torch.sigmoid(m.logits.double())
        mean = m.sample(n, 1).double().mean(0)
        bound = 5 * torch.sqrt(p * (1 - p) / n) + 1e-3
        if not bool(((mean - p).abs() <= bound).all()):
            fail(f"{path}: sample means {mean.tolist()} vs probabilities {p.tolist()}")
    if family in ("maf", "realnvp"):
        for name, b in m.named_buffers():
            if name.endswith("running_var") and torch.equal(b, torch.ones_like(b)):
                fail(f"{path}: {name} is still all ones: not the trained running statistics")
    how = "within 5 sqrt(2) standard errors" if se is not None else "to 1e-5"
    print(f"ok {family} {kind}: {len(rows)} scores match {how}, samples seeded")


main()
