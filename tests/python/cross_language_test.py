#!/usr/bin/python3
"""Cross-language check: drives a real logpd from Python (Debian's python3-grpcio) with stubs
generated from proto/logp/v1, and checks the wire contract against numpy:

- numpy.packbits(x, axis=1) is exactly the BITPACKED encoding (same stored content as UINT8);
- a Bernoulli model's Score equals the closed-form log-likelihood computed in numpy;
- WatchJob streams contiguous seq numbers; Sample streams bit-packed records;
- the standard health service answers SERVING; bad input gets INVALID_ARGUMENT.

Usage: cross_language_test.py LOGPD PROTO_DIR
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import grpc
import numpy as np

LOGPD, PROTO_DIR = sys.argv[1], sys.argv[2]
WORK = tempfile.mkdtemp(prefix="logp-py.")
subprocess.run(
    ["protoc", f"--proto_path={PROTO_DIR}", f"--python_out={WORK}", f"--grpc_out={WORK}",
     "--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin"]
    + [os.path.join(PROTO_DIR, "logp/v1", f) for f in
       ("records.proto", "dataset_service.proto", "job_service.proto", "conditional.proto",
        "model_service.proto", "compare.proto")],
    check=True)
sys.path.insert(0, WORK)
from logp.v1 import dataset_service_pb2 as ds_pb  # noqa: E402
from logp.v1 import dataset_service_pb2_grpc as ds_grpc  # noqa: E402
from logp.v1 import job_service_pb2 as job_pb  # noqa: E402
from logp.v1 import job_service_pb2_grpc as job_grpc  # noqa: E402
from logp.v1 import model_service_pb2 as model_pb  # noqa: E402
from logp.v1 import model_service_pb2_grpc as model_grpc  # noqa: E402
from logp.v1 import records_pb2 as rec_pb  # noqa: E402


def upload(stub, x, encoding, name, chunk=97):
    n, d = x.shape
    def requests():
        yield ds_pb.CreateDatasetRequest(header=ds_pb.DatasetHeader(
            name=name, kind=rec_pb.DATA_KIND_BINARY, dim=d, num_records=n))
        for b in range(0, n, chunk):
            rows = x[b:b + chunk]
            data = (np.packbits(rows, axis=1) if encoding == rec_pb.ENCODING_BITPACKED
                    else rows.astype(np.uint8)).tobytes()
            yield ds_pb.CreateDatasetRequest(chunk=rec_pb.RecordBlock(
                encoding=encoding, num_records=len(rows), dim=d, data=data))
    return stub.CreateDataset(requests())


class CrossLanguageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        port_file = os.path.join(WORK, "port")
        cls.server = subprocess.Popen(
            [LOGPD, f"--data_dir={WORK}/data", "--listen=127.0.0.1:0", f"--port_file={port_file}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if os.path.exists(port_file):
                break
            time.sleep(0.1)
        with open(port_file) as f:
            port = f.read().strip()
        cls.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        cls.datasets = ds_grpc.DatasetServiceStub(cls.channel)
        cls.jobs = job_grpc.JobServiceStub(cls.channel)
        cls.models = model_grpc.ModelServiceStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.server.send_signal(signal.SIGTERM)
        assert cls.server.wait(timeout=30) == 0
        shutil.rmtree(WORK, ignore_errors=True)

    def test_health_service_is_serving(self):
        check = self.channel.unary_unary("/grpc.health.v1.Health/Check",
                                         request_serializer=lambda b: b,
                                         response_deserializer=lambda b: b)
        self.assertEqual(check(b"", timeout=10), b"\x08\x01")  # status: SERVING

    def test_packbits_bernoulli_score_and_sample(self):
        rng = np.random.default_rng(5)
        d = 13  # not a multiple of 8: padding bits matter
        probs = rng.uniform(0.1, 0.9, size=d)
        x = (rng.random((500, d)) < probs).astype(np.uint8)
        packed = upload(self.datasets, x, rec_pb.ENCODING_BITPACKED, "packed")
        plain = upload(self.datasets, x, rec_pb.ENCODING_UINT8, "plain")
        self.assertEqual(packed.content_hash, plain.content_hash)
        self.assertEqual((packed.num_records, packed.dim), (500, d))

        job = self.jobs.CreateJob(job_pb.CreateJobRequest(spec=job_pb.JobSpec(
            dataset_id=packed.id, validation_dataset_id=plain.id,
            model=job_pb.ModelSpec(family=job_pb.MODEL_FAMILY_BERNOULLI))))
        events = list(self.jobs.WatchJob(job_pb.WatchJobRequest(id=job.id), timeout=60))
        self.assertEqual([e.seq for e in events], list(range(1, len(events) + 1)))
        self.assertEqual(events[-1].state_change.state, job_pb.JOB_STATE_SUCCEEDED)
        model_id = self.jobs.GetJob(job_pb.GetJobRequest(id=job.id)).model_id

        queries = (rng.random((40, d)) < 0.5).astype(np.uint8)
        got = self.models.Score(model_pb.ScoreRequest(model_id=model_id, records=rec_pb.RecordBlock(
            encoding=rec_pb.ENCODING_BITPACKED, num_records=40, dim=d,
            data=np.packbits(queries, axis=1).tobytes()))).log_prob
        p = x.mean(axis=0)
        want = (queries * np.log(p) + (1 - queries) * np.log1p(-p)).sum(axis=1)
        np.testing.assert_allclose(np.array(got), want, rtol=1e-5, atol=1e-5)

        chunks = list(self.models.Sample(model_pb.SampleRequest(model_id=model_id,
                                                                num_samples=3000, seed=9)))
        rows = np.concatenate([
            np.unpackbits(np.frombuffer(c.records.data, np.uint8).reshape(
                c.records.num_records, -1), axis=1)[:, :d] for c in chunks])
        self.assertEqual(rows.shape, (3000, d))
        # Column means within 5 standard errors of the fitted probabilities.
        se = np.sqrt(p * (1 - p) / 3000)
        self.assertTrue(np.all(np.abs(rows.mean(axis=0) - p) < 5 * se))

    def test_bad_value_is_invalid_argument(self):
        x = np.zeros((4, 5), np.uint8)
        x[2, 3] = 2
        with self.assertRaises(grpc.RpcError) as err:
            upload(self.datasets, x, rec_pb.ENCODING_UINT8, "bad")
        self.assertEqual(err.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("record 2, column 3", err.exception.details())

    def test_bytes_that_do_not_parse_are_invalid_argument(self):
        garbage = b"\xff" * 16  # field 0 with wire type 7: never valid protobuf
        raw = dict(request_serializer=lambda b: b, response_deserializer=lambda b: b)
        calls = [
            (self.channel.unary_unary("/logp.v1.DatasetService/GetDataset", **raw),
             lambda call: call(garbage, timeout=10)),
            (self.channel.stream_unary("/logp.v1.DatasetService/CreateDataset", **raw),
             lambda call: call(iter([garbage]), timeout=10)),
            (self.channel.unary_stream("/logp.v1.JobService/WatchJob", **raw),
             lambda call: list(call(garbage, timeout=10))),
            (self.channel.unary_stream("/logp.v1.ModelService/Sample", **raw),
             lambda call: list(call(garbage, timeout=10))),
        ]
        for call, invoke in calls:
            with self.assertRaises(grpc.RpcError) as err:
                invoke(call)
            self.assertEqual(err.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
            self.assertIn("does not parse", err.exception.details())
        # The server still serves the same channel.
        self.datasets.ListDatasets(ds_pb.ListDatasetsRequest(), timeout=10)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
