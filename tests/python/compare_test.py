#!/usr/bin/python3
"""CompareModels against numpy on Score outputs: a real logpd, three different small models
(independent Bernoulli, MADE, a VAE's estimate and bound) trained on one binary dataset, both scored record by record with
Score; numpy computes the paired mean difference, its standard error (ddof=1), the 95% interval,
z and the two-sided p-value (math.erfc), and CompareModels must give the same numbers.

Tolerances: Score and CompareModels evaluate the same float32 networks on the same records but
in different batches (one Score request; the dataset in batches of 512), so per-record scores may
differ in the last float32 bits: means and interval ends agree within 1e-4 nats, the standard
error and z within a relative 1e-4, the p-value within 1e-6 absolute (it is tiny here, or
compared on its own scale when not).

Usage: compare_test.py LOGPD STUBS_DIR
"""
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import numpy as np

LOGPD, STUBS = sys.argv[1:3]
sys.path[:0] = [STUBS, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                    "python")]
import logp_client  # noqa: E402
from logp_client import Client, LogpError  # noqa: E402

rec_pb = logp_client.pb["records_pb2"]
WORK = tempfile.mkdtemp(prefix="logp-compare.")
os.environ.pop("LOGP_TOKEN", None)


def paired_truth(a, b):
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    n = len(d)
    mean = d.mean()
    se = d.std(ddof=1) / math.sqrt(n)
    z = mean / se
    return dict(num_records=n, mean_log_prob_a=np.mean(a), mean_log_prob_b=np.mean(b),
                mean_difference=mean, standard_error=se, ci95_low=mean - 1.96 * se,
                ci95_high=mean + 1.96 * se, z=z, p_value=math.erfc(abs(z) / math.sqrt(2)))


def correlated_binary(rng, n, d=12):
    """Records with strong neighbour correlations: a chain model beats independent bits."""
    x = np.zeros((n, d), np.uint8)
    x[:, 0] = rng.random(n) < 0.5
    for j in range(1, d):
        flip = rng.random(n) < 0.15
        x[:, j] = np.where(flip, 1 - x[:, j - 1], x[:, j - 1])
    return x


class CompareModelsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        port_file = os.path.join(WORK, "port")
        cls.log = open(os.path.join(WORK, "logpd.log"), "wb")
        cls.server = subprocess.Popen(
            [LOGPD, f"--data_dir={WORK}/data", "--listen=127.0.0.1:0",
             f"--port_file={port_file}"], stdout=cls.log, stderr=subprocess.STDOUT)
        for _ in range(200):
            if os.path.exists(port_file) and os.path.getsize(port_file) > 0:
                break
            time.sleep(0.05)
        with open(port_file) as f:
            port = int(f.read().strip())
        cls.logp = Client(f"127.0.0.1:{port}", timeout=120)
        rng = np.random.default_rng(11)
        cls.train = correlated_binary(rng, 800)
        cls.held_out = correlated_binary(rng, 400)
        cls.train_ds = cls.logp.upload(cls.train, kind="binary", name="train")
        cls.held_ds = cls.logp.upload(cls.held_out, kind="binary", name="held-out")
        cls.bernoulli = cls.logp.wait(cls.logp.create_job(
            cls.train_ds.id, "bernoulli", pseudo_count=0.5).id).model_id
        cls.made = cls.logp.wait(cls.logp.create_job(
            cls.train_ds.id, "made", hidden_units=32, epochs=20, batch_size=50, seed=3).id).model_id
        cls.vae = cls.logp.wait(cls.logp.create_job(
            cls.train_ds.id, "vae", latent_dim=2, hidden_units=16, epochs=5, batch_size=50,
            seed=4).id).model_id

    @classmethod
    def tearDownClass(cls):
        cls.logp.close()
        cls.server.send_signal(signal.SIGTERM)
        assert cls.server.wait(timeout=30) == 0
        cls.log.close()
        shutil.rmtree(WORK, ignore_errors=True)

    def check_against_numpy(self, model_a, model_b, records, dataset_id, kind_a=None, **scoring):
        a = self.logp.score(model_a, records, **scoring)
        b = self.logp.score(model_b, records, **scoring)
        want = paired_truth(a, b)
        got = self.logp.compare(model_a, model_b, dataset_id, **scoring)
        self.assertEqual(got.num_records, want["num_records"])
        for field in ("mean_log_prob_a", "mean_log_prob_b", "mean_difference", "ci95_low",
                      "ci95_high"):
            self.assertAlmostEqual(getattr(got, field), want[field], delta=1e-4, msg=field)
        for field in ("standard_error", "z"):
            self.assertAlmostEqual(getattr(got, field), want[field],
                                   delta=1e-4 * abs(want[field]), msg=field)
        self.assertAlmostEqual(got.p_value, want["p_value"],
                               delta=max(1e-6, 1e-3 * want["p_value"]))
        self.assertEqual(got.score_kind_a, kind_a or rec_pb.SCORE_KIND_EXACT)
        self.assertEqual(got.score_kind_b, rec_pb.SCORE_KIND_EXACT)
        return got, want

    def test_a_vae_bound_or_estimate_against_numpy_with_the_same_seed(self):
        # Score and CompareModels draw the VAE's samples from the same seed in the same batches
        # of 512 records, so the Monte Carlo scores agree too.
        got, _ = self.check_against_numpy(self.vae, self.bernoulli, self.held_out, self.held_ds.id,
                                          kind_a=rec_pb.SCORE_KIND_ESTIMATE, importance_samples=5,
                                          seed=7)
        self.assertEqual((got.importance_samples_a, got.importance_samples_b), (5, 0))
        self.check_against_numpy(self.vae, self.bernoulli, self.held_out, self.held_ds.id,
                                 kind_a=rec_pb.SCORE_KIND_LOWER_BOUND, importance_samples=0,
                                 seed=7)

    def test_made_beats_independent_bits_on_held_out_records(self):
        got, want = self.check_against_numpy(self.made, self.bernoulli, self.held_out,
                                             self.held_ds.id)
        # The chain's dependence is worth at most 11 * (ln 2 - H(0.15)) = 2.97 nats per record
        # over independent bits; a small MADE captures a good part of it, and the comparison
        # must see that far beyond its error.
        self.assertGreater(got.mean_difference, 0.5)
        self.assertLess(got.mean_difference, 3.2)
        self.assertLess(got.p_value, 1e-10)
        self.assertGreater(got.ci95_low, 0)

    def test_swapping_the_models_negates_the_difference(self):
        ab = self.logp.compare(self.made, self.bernoulli, self.train_ds.id)
        ba = self.logp.compare(self.bernoulli, self.made, self.train_ds.id)
        self.assertAlmostEqual(ab.mean_difference, -ba.mean_difference, places=9)
        self.assertAlmostEqual(ab.standard_error, ba.standard_error, places=9)
        self.assertAlmostEqual(ab.p_value, ba.p_value, places=12)
        self.check_against_numpy(self.bernoulli, self.made, self.train, self.train_ds.id)

    def test_a_model_against_itself_is_no_difference(self):
        got = self.logp.compare(self.made, self.made, self.held_ds.id)
        self.assertEqual((got.mean_difference, got.standard_error, got.z, got.p_value),
                         (0.0, 0.0, 0.0, 1.0))

    def test_errors(self):
        with self.assertRaises(LogpError) as e:
            self.logp.compare(self.made, "model-nope", self.held_ds.id)
        self.assertEqual(e.exception.code.name, "NOT_FOUND")
        wide = self.logp.upload(np.zeros((5, 3), np.uint8), kind="binary", name="wide")
        with self.assertRaises(LogpError) as e:
            self.logp.compare(self.made, self.bernoulli, wide.id)
        self.assertEqual(e.exception.code.name, "INVALID_ARGUMENT")


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0]] + sys.argv[3:], verbosity=2)
