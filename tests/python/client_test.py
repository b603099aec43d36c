#!/usr/bin/python3
"""The Python client (python/logp_client) against real logpd processes: upload in every
encoding, jobs created from keywords, watch and wait, score against numpy-computed closed forms,
evaluate against the scores, sample decoding, export to TorchScript, errors with their gRPC
codes, and mutual TLS with tokens.

Usage: client_test.py LOGPD STUBS_DIR MAKE_TEST_CERTS_SH [unittest arguments, e.g. a test name]
"""
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import numpy as np

LOGPD, STUBS, MAKE_CERTS = sys.argv[1:4]
sys.path[:0] = [STUBS, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                    "python")]
import grpc  # noqa: E402
import logp_client  # noqa: E402
from logp_client import Client, JobError, LogpError  # noqa: E402

job_pb = logp_client.pb["job_service_pb2"]
rec_pb = logp_client.pb["records_pb2"]
model_pb = logp_client.pb["model_service_pb2"]
WORK = tempfile.mkdtemp(prefix="logp-pyclient.")
# The caller's environment must not lend a token.
os.environ.pop("LOGP_TOKEN", None)


def start_logpd(name, *flags):
    """A logpd on a free loopback port with its own data directory: (process, port)."""
    port_file = os.path.join(WORK, name + ".port")
    with open(os.path.join(WORK, name + ".log"), "wb") as log:
        proc = subprocess.Popen([LOGPD, f"--data_dir={WORK}/{name}", "--listen=127.0.0.1:0",
                                 f"--port_file={port_file}", "--progress_interval_seconds=0.05",
                                 *flags], stdout=log, stderr=subprocess.STDOUT)
    for _ in range(200):
        if os.path.exists(port_file) and os.path.getsize(port_file) > 0:
            break
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    else:
        proc.kill()
    if proc.poll() is not None:
        raise RuntimeError(f"logpd {name} did not start: "
                           + open(os.path.join(WORK, name + ".log")).read()[-2000:])
    with open(port_file) as f:
        return proc, int(f.read().strip())


def stop_logpd(proc):
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, "logpd did not exit 0 on SIGTERM"


def binary_records(rng, n, d=16):
    """Binary records with neighbour structure (a 1 makes the next column likelier 1)."""
    x = np.zeros((n, d), np.uint8)
    p = np.full(n, 0.3)
    for c in range(d):
        x[:, c] = rng.random(n) < p
        p = np.where(x[:, c] == 1, 0.7, 0.2)
    return x


def bernoulli_truth(train, queries, pseudo_count=0.0):
    """The closed-form Bernoulli log-likelihood (README "Model families") in numpy."""
    p = (train.sum(axis=0) + pseudo_count) / (train.shape[0] + 2 * pseudo_count)
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return (queries * np.log(p) + (1 - queries) * np.log1p(-p)).sum(axis=1)


server = port = logp = None


def setUpModule():
    global server, port, logp
    server, port = start_logpd("plain")
    logp = Client(f"127.0.0.1:{port}", timeout=60)


def tearDownModule():
    logp.close()
    stop_logpd(server)
    shutil.rmtree(WORK, ignore_errors=True)


class PlainServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rng = np.random.default_rng(14)
        cls.train = binary_records(rng, 200)
        cls.test = binary_records(rng, 60)
        cls.train_ds = logp.upload(cls.train, name="train")
        cls.test_ds = logp.upload(cls.test, name="test")
        job = logp.create_job(cls.train_ds.id, "bernoulli", pseudo_count=0.5,
                              validation_dataset_id=cls.test_ds.id)
        cls.bernoulli = logp.wait(job.id).model_id

    def test_health(self):
        self.assertTrue(logp.health())

    def test_upload_encodings_store_the_same_content(self):
        self.assertEqual((self.train_ds.num_records, self.train_ds.dim), (200, 16))
        self.assertEqual(self.train_ds.kind, rec_pb.DATA_KIND_BINARY)
        self.assertEqual(self.train_ds.name, "train")
        # bool, int64 and float arrays of 0/1, and many small chunks: the same stored content.
        for array, chunk_bytes in [(self.train.astype(bool), 1 << 20),
                                   (self.train.astype(np.int64), 16),
                                   (self.train.astype(np.float64), 2)]:
            ds = logp.upload(array, kind="binary", chunk_bytes=chunk_bytes)
            self.assertEqual(ds.content_hash, self.train_ds.content_hash)
        # The wire format itself: MSB first, rows padded to whole bytes (D = 13 pads 3 bits,
        # which the server checks are zero), against bytes built by hand.
        from logp_client import _records
        x13 = self.train[:, :13]
        encoding, rows = _records.prepare(x13, rec_pb.DATA_KIND_BINARY)
        self.assertEqual(encoding, rec_pb.ENCODING_BITPACKED)
        want = bytes(sum(int(v) << (7 - i) for i, v in enumerate(row[b:b + 8]))
                     for row in x13 for b in (0, 8))
        self.assertEqual(_records.encode(encoding, rows).data, want)
        ds13 = logp.upload(x13)
        self.assertEqual((ds13.num_records, ds13.dim), (200, 13))
        got = logp.get_dataset(self.train_ds.id)
        self.assertEqual(got.content_hash, self.train_ds.content_hash)
        self.assertIn(self.train_ds.id, [d.id for d in logp.list_datasets()])

    def test_upload_images_delete_and_request_id(self):
        images = np.zeros((5, 4, 2, 2), np.uint8)
        images[:, 0, 0, 1] = 1
        ds = logp.upload(images, request_id="images-1")
        self.assertEqual((ds.dim, ds.image_shape.height, ds.image_shape.width,
                          ds.image_shape.channels), (16, 4, 2, 2))
        self.assertEqual(logp.upload(images, request_id="images-1").id, ds.id)
        logp.delete_dataset(ds.id)
        with self.assertRaises(LogpError) as err:
            logp.get_dataset(ds.id)
        self.assertEqual(err.exception.code, grpc.StatusCode.NOT_FOUND)

    def test_bernoulli_scores_match_numpy(self):
        rng = np.random.default_rng(3)
        queries = (rng.random((40, 16)) < 0.5).astype(np.uint8)
        got = logp.score(self.bernoulli, queries, batch=7)  # several requests
        self.assertEqual((got.dtype, got.shape), (np.float64, (40,)))
        np.testing.assert_allclose(got, bernoulli_truth(self.train, queries, 0.5), rtol=1e-5,
                                   atol=1e-5)
        # One record as a 1-D array; the job's id scores with its model.
        self.assertAlmostEqual(logp.score(self.bernoulli, queries[3])[0], got[3], places=5)
        job_id = logp.get_model(self.bernoulli).job_id
        np.testing.assert_allclose(logp.score(job_id, queries), got, rtol=1e-6)
        details = logp.score(self.bernoulli, queries, details=True)
        self.assertEqual(details.score_kind, model_pb.SCORE_KIND_EXACT)
        self.assertEqual(len(details.log_prob), 40)
        self.assertEqual(logp.score(self.bernoulli, np.zeros((0, 16))).shape, (0,))

    def test_evaluate_is_the_mean_of_the_scores(self):
        scores = logp.score(self.bernoulli, self.test)
        ev = logp.evaluate(self.bernoulli, self.test_ds.id)
        self.assertEqual(ev.num_records, 60)
        self.assertAlmostEqual(ev.mean_nll, -scores.mean(), places=4)
        self.assertAlmostEqual(ev.standard_error, scores.std(ddof=1) / math.sqrt(60), places=4)
        self.assertAlmostEqual(ev.bits_per_dim, ev.mean_nll / (16 * math.log(2)), places=6)
        self.assertLess(ev.ci95_low, ev.mean_nll)
        self.assertGreater(ev.ci95_high, ev.mean_nll)

    def test_bernoulli_samples(self):
        x = logp.sample(self.bernoulli, 3000, seed=9)
        self.assertEqual((x.shape, x.dtype), ((3000, 16), np.uint8))
        self.assertTrue(np.all(x <= 1))
        np.testing.assert_array_equal(logp.sample(self.bernoulli, 3000, seed=9), x)
        self.assertFalse(np.array_equal(logp.sample(self.bernoulli, 3000, seed=10), x))
        p = (self.train.sum(axis=0) + 0.5) / (200 + 1)
        se = np.sqrt(p * (1 - p) / 3000)
        self.assertTrue(np.all(np.abs(x.mean(axis=0) - p) < 5 * se), x.mean(axis=0) - p)

    def test_made_job_watch_and_wait(self):
        job = logp.create_job(self.train_ds.id, "made", hidden_units=32, order="random",
                              order_seed=2, epochs=3, learning_rate=1e-2, batch_size=20, seed=3)
        self.assertEqual(job.spec.model.made.order, job_pb.VARIABLE_ORDER_RANDOM)
        self.assertEqual((job.spec.model.made.hidden_units, job.spec.epochs), (32, 3))
        events = list(logp.watch(job.id))
        self.assertEqual([e.seq for e in events], list(range(1, len(events) + 1)))
        self.assertEqual(events[-1].state_change.state, job_pb.JOB_STATE_SUCCEEDED)
        epochs = [e.epoch_summary for e in events if e.WhichOneof("event") == "epoch_summary"]
        self.assertEqual([s.epoch for s in epochs], [1, 2, 3])
        self.assertTrue(any(e.WhichOneof("event") == "progress" for e in events))
        # from_seq resumes: the tail only.
        tail = list(logp.watch(job.id, from_seq=len(events) - 1))
        self.assertEqual([e.seq for e in tail], [len(events) - 1, len(events)])
        seen = []
        final = logp.wait(job.id, on_event=seen.append)
        self.assertEqual(len(seen), len(events))
        self.assertEqual(final.state, job_pb.JOB_STATE_SUCCEEDED)
        model = logp.get_model(final.model_id)
        self.assertAlmostEqual(model.validation_nll, min(s.validation_nll for s in epochs),
                               places=6)
        # A MADE's mean validation score is what its model says; its samples decode as binary.
        scores = logp.score(final.model_id, self.train)
        self.assertTrue(np.all(scores < 0) and np.all(np.isfinite(scores)))
        x = logp.sample(final.model_id, 50, seed=1)
        self.assertEqual((x.shape, x.dtype), ((50, 16), np.uint8))
        self.assertIn(final.model_id, [m.id for m in logp.list_models()])
        self.assertIn(job.id, [j.id for j in logp.list_jobs()])

    def test_categorical_uint8_and_uint16(self):
        rng = np.random.default_rng(7)
        for k in (5, 300):
            x = rng.integers(0, k, size=(400, 6))
            ds = logp.upload(x, num_categories=k)
            self.assertEqual((ds.kind, ds.num_categories), (rec_pb.DATA_KIND_CATEGORICAL, k))
            val = logp.upload(x[:10], num_categories=k)
            model_id = logp.wait(logp.create_job(ds.id, "categorical", pseudo_count=1.0,
                                                 validation_dataset_id=val.id).id).model_id
            # p_dk = (count_dk + 1) / (N + K): no probability is near the 1e-6 floor.
            counts = np.stack([np.bincount(x[:, d], minlength=k) for d in range(6)], axis=1)
            log_p = np.log((counts + 1.0) / (400 + k))
            queries = rng.integers(0, k, size=(30, 6))
            want = log_p[queries, np.arange(6)].sum(axis=1)
            np.testing.assert_allclose(logp.score(model_id, queries), want, rtol=1e-5, atol=1e-5)
            s = logp.sample(model_id, 500, seed=2)
            self.assertEqual(s.dtype, np.uint8 if k <= 256 else np.uint16)
            self.assertEqual(s.shape, (500, 6))
            self.assertTrue(np.all(s < k))

    def test_gaussian_scores_match_numpy(self):
        rng = np.random.default_rng(8)
        x = rng.normal([1.0, -2.0, 0.5], [0.5, 2.0, 1.0], size=(300, 3))
        ds = logp.upload(x)  # float64 in, float32 on the wire
        self.assertEqual(ds.kind, rec_pb.DATA_KIND_CONTINUOUS)
        val = logp.upload(x[:10])
        model_id = logp.wait(logp.create_job(ds.id, "gaussian",
                                             validation_dataset_id=val.id).id).model_id
        x32 = x.astype(np.float32).astype(np.float64)
        mean, var = x32.mean(axis=0), x32.var(axis=0)
        queries = rng.normal(size=(20, 3))
        q32 = queries.astype(np.float32).astype(np.float64)
        want = (-0.5 * ((q32 - mean) ** 2 / var + np.log(2 * np.pi * var))).sum(axis=1)
        np.testing.assert_allclose(logp.score(model_id, queries), want, rtol=1e-4, atol=1e-4)
        s = logp.sample(model_id, 4000, seed=5)
        self.assertEqual((s.shape, s.dtype), ((4000, 3), np.float32))
        self.assertTrue(np.all(np.abs(s.mean(axis=0) - mean) < 5 * np.sqrt(var / 4000)))

    def test_errors_carry_the_grpc_code(self):
        def code_of(call, *args, **kwargs):
            with self.assertRaises(LogpError) as err:
                call(*args, **kwargs)
            self.assertIn(err.exception.code.name, str(err.exception))
            return err.exception.code, err.exception.details

        bad = np.zeros((4, 5), np.uint8)
        bad[2, 3] = 2
        code, details = code_of(logp.upload, bad)
        self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("record 2, column 3", details)
        code, details = code_of(logp.upload, np.zeros((3, 4)), kind="categorical",
                                num_categories=70000)
        self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(code_of(logp.upload, np.full((2, 2), np.nan))[0],
                         grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(code_of(logp.score, "model-0123456789abcdef", self.test)[0],
                         grpc.StatusCode.NOT_FOUND)
        code, details = code_of(logp.score, self.bernoulli, np.zeros((3, 15), np.uint8))
        self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)
        code, details = code_of(logp.score, self.bernoulli,
                                np.vstack([self.test, bad.repeat(4, axis=1)[:, :16]]), batch=50)
        self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("record 12, column 12", details)
        self.assertIn("in the request of records 50 to 63", details)
        self.assertEqual(code_of(logp.create_job, self.train_ds.id, "gaussian")[0],
                         grpc.StatusCode.FAILED_PRECONDITION)
        code, details = code_of(logp.create_job, self.train_ds.id, "made", hidden_units=-1)
        self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("hidden_units", details)
        self.assertEqual(code_of(logp.sample, self.bernoulli, 0)[0],
                         grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(code_of(list, logp.watch("job-0123456789abcdef"))[0],
                         grpc.StatusCode.NOT_FOUND)
        self.assertEqual(code_of(logp.cancel_job, logp.get_model(self.bernoulli).job_id)[0],
                         grpc.StatusCode.FAILED_PRECONDITION)
        # What no encoding can carry is refused before any call.
        with self.assertRaisesRegex(ValueError, "record 1, column 0"):
            logp.upload(np.array([[0, 1], [0.5, 1]]), kind="binary")
        with self.assertRaisesRegex(ValueError, "record 0, column 1"):
            logp.upload(np.array([[0, -1]]), kind="binary")
        with self.assertRaisesRegex(ValueError, "num_categories"):
            logp.upload(np.zeros((2, 2), np.int32), kind="categorical")
        with self.assertRaisesRegex(TypeError, "hidden_unit"):
            logp.create_job(self.train_ds.id, "made", hidden_unit=3)
        with self.assertRaisesRegex(ValueError, "VARIABLE_ORDER_RANDOM"):
            logp.create_job(self.train_ds.id, "made", order="sideways")
        with self.assertRaisesRegex(ValueError, "unknown family"):
            logp.create_job(self.train_ds.id, "madee")

    def test_wait_raises_for_a_cancelled_job(self):
        job = logp.create_job(self.train_ds.id, "made", hidden_units=64, epochs=10000,
                              batch_size=1)
        for event in logp.watch(job.id):
            if event.WhichOneof("event") == "progress":
                break  # closing the iterator cancels the stream
        logp.cancel_job(job.id)
        with self.assertRaises(JobError) as err:
            logp.wait(job.id)
        self.assertEqual(err.exception.job.state, job_pb.JOB_STATE_CANCELLED)
        self.assertEqual(logp.wait(job.id, check=False).state, job_pb.JOB_STATE_CANCELLED)

    def test_job_spec_from_a_spec_and_a_dict(self):
        spec = logp_client.job_spec(self.train_ds.id, "vae", latent_dim=4, epochs=1, l1=1e-5)
        self.assertEqual((spec.model.vae.latent_dim, spec.model.regularization.l1), (4, 1e-5))
        job = logp.create_job(spec={"datasetId": self.train_ds.id,
                                    "model": {"family": "MODEL_FAMILY_FVSBN"}, "epochs": 1},
                              learning_rate=0.01)
        self.assertEqual(job.spec.model.family, job_pb.MODEL_FAMILY_FVSBN)
        self.assertAlmostEqual(job.spec.optimizer.learning_rate, 0.01)
        self.assertEqual(logp.wait(job.id).state, job_pb.JOB_STATE_SUCCEEDED)


class ExportTest(unittest.TestCase):
    def test_export_loads_in_torch_and_matches_score(self):
        try:
            import torch
        except ImportError:
            self.skipTest("python3-torch is not installed")
        rng = np.random.default_rng(21)
        x = binary_records(rng, 200)
        ds = logp.upload(x)
        model_id = logp.wait(logp.create_job(ds.id, "made", hidden_units=16, epochs=2,
                                             seed=1).id).model_id
        path = os.path.join(WORK, "model.pt")
        size = logp.export(model_id, path)
        self.assertEqual(os.path.getsize(path), size)
        module = torch.jit.load(path)
        got = module.log_prob(torch.tensor(x[:50], dtype=torch.float32)).double().numpy()
        np.testing.assert_allclose(got, logp.score(model_id, x[:50]), rtol=1e-4, atol=1e-4)


class RetryTest(unittest.TestCase):
    def test_safe_calls_retry_while_unavailable(self):
        with socket.socket() as sock:  # a port nobody listens on (yet)
            sock.bind(("127.0.0.1", 0))
            free = sock.getsockname()[1]
        target = f"127.0.0.1:{free}"
        with Client(target, max_attempts=1) as c:
            self.assertEqual(self.code_of(c.list_datasets), grpc.StatusCode.UNAVAILABLE)
        with Client(target) as c:  # not safe to repeat: one attempt
            start = time.monotonic()
            self.assertEqual(self.code_of(c.create_job, "ds-x", "bernoulli"),
                             grpc.StatusCode.UNAVAILABLE)
            self.assertLess(time.monotonic() - start, 0.5)
        # logpd comes up on that port 0.3 s after the first attempt; list_datasets gets through
        # once gRPC reconnects (its own backoff: 1 s, then 1.6 times longer each time: 5 to 10 s
        # here).
        late = []
        timer = threading.Timer(0.3, lambda: late.append(subprocess.Popen(
            [LOGPD, f"--data_dir={WORK}/late", f"--listen={target}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
        timer.start()
        try:
            with Client(target, max_attempts=14) as c:  # up to 21 s of backoff
                self.assertEqual(c.list_datasets(), [])
        finally:
            timer.join()
            stop_logpd(late[0])

    def code_of(self, call, *args, **kwargs):
        with self.assertRaises(LogpError) as err:
            call(*args, **kwargs)
        return err.exception.code


class SecureServerTest(unittest.TestCase):
    """logpd with mutual TLS and a tokens file."""

    @classmethod
    def setUpClass(cls):
        certs = os.path.join(WORK, "certs")
        subprocess.run(["bash", MAKE_CERTS, certs], check=True, stdout=subprocess.DEVNULL)
        cls.writer, cls.reader, cls.wrong = (os.urandom(16).hex() for _ in range(3))
        with open(os.path.join(WORK, "tokens"), "w") as f:
            f.write(f"{cls.writer} team-a writer\n{cls.reader} team-a reader\n"
                    "cert:team-a-client team-a writer\n")
        cls.server, port = start_logpd(
            "secure", f"--tls_cert_file={certs}/server.pem",
            f"--tls_key_file={certs}/server.key", f"--tls_client_ca_file={certs}/ca.pem",
            f"--auth_tokens_file={WORK}/tokens")
        cls.target = f"127.0.0.1:{port}"
        cls.ca = os.path.join(certs, "ca.pem")
        # client-cn's identity (team-b-client) is in no tokens line; client-san's is.
        cls.unmapped = dict(tls_ca_file=cls.ca, client_cert_file=f"{certs}/client-cn.pem",
                            client_key_file=f"{certs}/client-cn.key")
        cls.mapped = dict(tls_ca_file=cls.ca, client_cert_file=f"{certs}/client-san.pem",
                          client_key_file=f"{certs}/client-san.key")

    @classmethod
    def tearDownClass(cls):
        stop_logpd(cls.server)

    def code_of(self, client, call, *args, **kwargs):
        with client, self.assertRaises(LogpError) as err:
            call(client, *args, **kwargs)
        return err.exception.code

    def test_writer_token_runs_the_loop(self):
        x = binary_records(np.random.default_rng(1), 100)
        with Client(self.target, token=self.writer, **self.unmapped) as c:
            ds = c.upload(x)
            self.assertEqual(ds.tenant, "team-a")
            model_id = c.wait(c.create_job(ds.id, "bernoulli").id).model_id
            ev = c.evaluate(model_id, ds.id)
        # A reader may score, evaluate and sample, not create.
        with Client(self.target, token=self.reader, **self.unmapped) as r:
            scores = r.score(model_id, x)
            self.assertAlmostEqual(r.evaluate(model_id, ds.id).mean_nll, ev.mean_nll, places=9)
            self.assertAlmostEqual(ev.mean_nll, -scores.mean(), places=4)
            self.assertEqual(r.sample(model_id, 10, seed=1).shape, (10, 16))
            with self.assertRaises(LogpError) as err:
                r.create_job(ds.id, "bernoulli")
            self.assertEqual(err.exception.code, grpc.StatusCode.PERMISSION_DENIED)
        # A mapped client certificate needs no token; the server name may be given.
        with Client(f"localhost:{self.target.split(':')[1]}", server_name="localhost",
                    **self.mapped) as c:
            self.assertIn(ds.id, [d.id for d in c.list_datasets()])

    def test_refused_credentials(self):
        self.assertEqual(self.code_of(Client(self.target, **self.unmapped), Client.list_datasets),
                         grpc.StatusCode.UNAUTHENTICATED)
        self.assertEqual(self.code_of(Client(self.target, token=self.wrong, **self.mapped),
                                      Client.list_datasets), grpc.StatusCode.UNAUTHENTICATED)
        # No client certificate, no TLS, or a CA that did not sign the server's: no connection.
        once = dict(token=self.writer, max_attempts=1)
        self.assertEqual(self.code_of(Client(self.target, tls_ca_file=self.ca, **once),
                                      Client.list_datasets), grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(self.code_of(Client(self.target, **once),
                                      Client.list_datasets), grpc.StatusCode.UNAVAILABLE)
        other = os.path.join(WORK, "certs", "other-ca.pem")
        self.assertEqual(self.code_of(Client(self.target, **dict(self.mapped, tls_ca_file=other),
                                             **once),
                                      Client.list_datasets), grpc.StatusCode.UNAVAILABLE)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1] + sys.argv[4:], verbosity=2)
