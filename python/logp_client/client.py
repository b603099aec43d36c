"""Client: the logp services (proto/logp/v1) with numpy arrays in and out."""
import os
import random
import tempfile
import time

import grpc
import numpy as np

from . import _records
from ._spec import job_spec
from ._stubs import load

_m = load()
_rec = _m["records_pb2"]
_ds = _m["dataset_service_pb2"]
_job = _m["job_service_pb2"]
_model = _m["model_service_pb2"]

_FINAL = (_job.JOB_STATE_SUCCEEDED, _job.JOB_STATE_FAILED, _job.JOB_STATE_CANCELLED)


class LogpError(Exception):
    """A call the server (or gRPC) refused: `code` is the grpc.StatusCode, `details` its
    message. str() is "CODE: message", like logpctl's "error: CODE: message"."""

    def __init__(self, code, details):
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details

    @classmethod
    def of(cls, error):
        return cls(error.code(), error.details() or "")


class JobError(Exception):
    """wait() on a job that ended FAILED or CANCELLED; `job` is its final Job."""

    def __init__(self, job):
        state = _job.JobState.Name(job.state).removeprefix("JOB_STATE_")
        super().__init__(f"job {job.id} {state}" + (f": {job.error}" if job.error else ""))
        self.job = job


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _image_shape(shape):
    if shape is None or isinstance(shape, _rec.ImageShape):
        return shape
    h, w, c = (tuple(shape) + (1,))[:3]
    return _rec.ImageShape(height=h, width=w, channels=c)


class Client:
    """A connection to logpd.

    target: "host:port". token: sent as `authorization: Bearer TOKEN` with every call.
    TLS is on when any of tls, root_certificates (PEM bytes), tls_ca_file, client_cert_file or
    certificate_chain is given; tls=True alone trusts the system's CAs. For mutual TLS give the
    client certificate and key as files (client_cert_file, client_key_file) or PEM bytes
    (certificate_chain, private_key). server_name: the name the server's certificate must carry
    instead of target's host. timeout: seconds for each unary call (None: no deadline).
    Calls that are safe to repeat (get_*, list_*, score, evaluate, and upload / create_job with a
    request_id) are tried up to max_attempts times while the server answers UNAVAILABLE
    (restarting, not yet listening), waiting initial_backoff seconds before the second attempt
    and twice as long before each further one (at most max_backoff, +-20% jitter), as the C++
    client does; max_attempts=1 turns retries off.
    """

    def __init__(self, target="localhost:50051", token=None, *, tls=False, root_certificates=None,
                 tls_ca_file=None, client_cert_file=None, client_key_file=None,
                 certificate_chain=None, private_key=None, server_name=None, timeout=None,
                 max_message_bytes=64 << 20, options=(), max_attempts=5, initial_backoff=0.1,
                 max_backoff=2.0):
        if tls_ca_file is not None:
            root_certificates = _read(tls_ca_file)
        if client_cert_file is not None:
            certificate_chain = _read(client_cert_file)
        if client_key_file is not None:
            private_key = _read(client_key_file)
        if (certificate_chain is None) != (private_key is None):
            raise ValueError("a client certificate needs its key and the reverse")
        opts = [("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes)]
        if server_name:
            opts.append(("grpc.ssl_target_name_override", server_name))
        opts.extend(options)
        if tls or root_certificates is not None or certificate_chain is not None:
            credentials = grpc.ssl_channel_credentials(root_certificates, private_key,
                                                       certificate_chain)
            self._channel = grpc.secure_channel(target, credentials, opts)
        else:
            self._channel = grpc.insecure_channel(target, opts)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._timeout = timeout
        self._retry = (max_attempts, initial_backoff, max_backoff)
        self._datasets = _m["dataset_service_pb2_grpc"].DatasetServiceStub(self._channel)
        self._jobs = _m["job_service_pb2_grpc"].JobServiceStub(self._channel)
        self._models = _m["model_service_pb2_grpc"].ModelServiceStub(self._channel)
        self._data_info = {}  # target id -> (kind, dim, num_categories)

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _unary(self, method, request, retry=False):
        """One call, or with retry several while it answers UNAVAILABLE; `request` may be a
        function making the request (a fresh request iterator per attempt)."""
        attempts, backoff, max_backoff = self._retry
        for attempt in range(1, attempts + 1):
            try:
                return method(request() if callable(request) else request,
                              timeout=self._timeout, metadata=self._metadata)
            except grpc.RpcError as e:
                if not retry or e.code() != grpc.StatusCode.UNAVAILABLE or attempt >= attempts:
                    raise LogpError.of(e) from None
            time.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(max_backoff, backoff * 2)

    def _stream(self, method, request):
        call = method(request, metadata=self._metadata)
        try:
            yield from call
        except grpc.RpcError as e:
            raise LogpError.of(e) from None
        finally:
            call.cancel()

    # --- datasets ---

    def upload(self, array, kind=None, num_categories=None, name="", image_shape=None,
               request_id="", chunk_bytes=1 << 20):
        """Uploads N records (an N x D array; N x H x W or N x H x W x C arrays are images,
        flattened, with their shape as image_shape) and returns the Dataset.

        kind: "binary", "categorical" or "continuous"; by default bool arrays are binary, float
        arrays continuous, integer arrays categorical if num_categories is given, else binary.
        Binary records are bit-packed (numpy.packbits(axis=1)), categorical ones sent as uint8
        (K <= 256) or little-endian uint16, continuous ones as little-endian float32, in chunks
        of about chunk_bytes. A request_id makes the upload idempotent (see DatasetHeader).
        """
        matrix, shape = _records.as_matrix(array)
        if kind is None:
            if matrix.dtype == np.bool_:
                kind = "binary"
            elif np.issubdtype(matrix.dtype, np.floating):
                kind = "continuous"
            else:
                kind = "categorical" if num_categories else "binary"
        kind = _records.kind_of(kind)
        if kind == _rec.DATA_KIND_CATEGORICAL and not num_categories:
            raise ValueError("categorical data needs num_categories")
        k = num_categories or 0
        encoding, rows = _records.prepare(matrix, kind, k)
        n, d = rows.shape
        header = _ds.DatasetHeader(name=name, kind=kind, dim=d, num_categories=k, num_records=n,
                                   request_id=request_id)
        shape = _image_shape(image_shape if image_shape is not None else shape)
        if shape is not None:
            header.image_shape.CopyFrom(shape)
        per_chunk = max(1, chunk_bytes // max(1, _records.row_bytes(encoding, d)))

        def requests():
            yield _ds.CreateDatasetRequest(header=header)
            for begin in range(0, n, per_chunk):
                yield _ds.CreateDatasetRequest(
                    chunk=_records.encode(encoding, rows[begin:begin + per_chunk]))

        return self._unary(self._datasets.CreateDataset, requests, retry=bool(request_id))

    def get_dataset(self, dataset_id):
        return self._unary(self._datasets.GetDataset, _ds.GetDatasetRequest(id=dataset_id),
                           retry=True)

    def list_datasets(self):
        """Every dataset the caller may see, newest first."""
        return self._list(self._datasets.ListDatasets, _ds.ListDatasetsRequest, "datasets")

    def delete_dataset(self, dataset_id):
        self._unary(self._datasets.DeleteDataset, _ds.DeleteDatasetRequest(id=dataset_id))

    def _list(self, method, request_type, field):
        items, token = [], ""
        while True:
            page = self._unary(method, request_type(page_size=1000, page_token=token), retry=True)
            items.extend(getattr(page, field))
            token = page.next_page_token
            if not token:
                return items

    # --- jobs ---

    def create_job(self, dataset_id=None, family=None, spec=None, request_id="",
                   **hyperparameters):
        """Queues a training job and returns the Job (QUEUED). Either a JobSpec / dict `spec`, or
        a family ("made", "bernoulli", ...) and keywords: the family's parameters
        (hidden_units=32, order="random", ...) and epochs, batch_size, seed, learning_rate,
        weight_decay, l1, dropout, validation_fraction, validation_dataset_id, ... (see
        logp_client.job_spec)."""
        request = _job.CreateJobRequest(
            spec=job_spec(dataset_id, family, spec, **hyperparameters), request_id=request_id)
        return self._unary(self._jobs.CreateJob, request, retry=bool(request_id))

    def get_job(self, job_id):
        return self._unary(self._jobs.GetJob, _job.GetJobRequest(id=job_id), retry=True)

    def list_jobs(self):
        return self._list(self._jobs.ListJobs, _job.ListJobsRequest, "jobs")

    def cancel_job(self, job_id):
        return self._unary(self._jobs.CancelJob, _job.CancelJobRequest(id=job_id))

    def watch(self, job_id, from_seq=0):
        """An iterator of the job's JobEvents from seq from_seq (0: all), history first, that
        ends after the job's final state change. Closing it early cancels the stream."""
        return self._stream(self._jobs.WatchJob,
                            _job.WatchJobRequest(id=job_id, from_seq=from_seq))

    def wait(self, job_id, on_event=None, check=True):
        """Watches the job until it ends (calling on_event(event) for each event) and returns
        the final Job; with check, a job that did not succeed raises JobError."""
        for event in self.watch(job_id):
            if on_event is not None:
                on_event(event)
        job = self.get_job(job_id)
        # The stream ends after the final state change, which GetJob shows; a few tries for a
        # catalogue replica that has not caught up.
        for _ in range(50):
            if job.state in _FINAL:
                break
            time.sleep(0.1)
            job = self.get_job(job_id)
        if check and job.state != _job.JOB_STATE_SUCCEEDED:
            raise JobError(job)
        return job

    # --- models ---

    def get_model(self, model_id):
        return self._unary(self._models.GetModel, _model.GetModelRequest(id=model_id),
                           retry=True)

    def list_models(self):
        return self._list(self._models.ListModels, _model.ListModelsRequest, "models")

    @staticmethod
    def _target(request, target):
        # Server-issued ids say what they name: "job-..." is a job's newest checkpoint or model.
        if target.startswith("job-"):
            request.job_id = target
        else:
            request.model_id = target
        return request

    def _kind_of_target(self, target):
        if target not in self._data_info:
            if target.startswith("job-"):
                data = self.get_dataset(self.get_job(target).spec.dataset_id)
            else:
                data = self.get_model(target)
            self._data_info[target] = (data.kind, data.dim, data.num_categories)
        return self._data_info[target]

    def score(self, target, array, importance_samples=None, seed=0, batch=10000,
              details=False):
        """log p(x) in nats of every record of `array` (N x D, or one record of D values) under
        a model, or a job's newest checkpoint ("job-..."): a float64 array of N. Records go in
        requests of at most `batch`. importance_samples and seed are the VAE's (see
        ScoreRequest). With details, returns the ScoreResponse of all records instead."""
        kind, _, k = self._kind_of_target(target)
        matrix, _ = _records.as_matrix(array)
        encoding, rows = _records.prepare(matrix, kind, k)
        total = _model.ScoreResponse()
        for begin in range(0, rows.shape[0], batch):
            request = self._target(_model.ScoreRequest(
                records=_records.encode(encoding, rows[begin:begin + batch]), seed=seed), target)
            if importance_samples is not None:
                request.importance_samples = importance_samples
            try:
                response = self._unary(self._models.Score, request, retry=True)
            except LogpError as e:
                if begin == 0 or e.code != grpc.StatusCode.INVALID_ARGUMENT:
                    raise
                # The server counts records from the start of this request.
                raise LogpError(e.code, f"{e.details} (in the request of records {begin} to "
                                        f"{begin + request.records.num_records - 1})") from None
            total.log_prob.extend(response.log_prob)
            total.standard_error.extend(response.standard_error)
            total.score_kind = response.score_kind
            total.importance_samples = response.importance_samples
            total.checkpoint_step = response.checkpoint_step
        return total if details else np.array(total.log_prob, dtype=np.float64)

    def evaluate(self, target, dataset_id, importance_samples=None, seed=0):
        """Mean NLL of a stored dataset: the EvaluateResponse (mean_nll, standard_error,
        ci95_low, ci95_high, bits_per_dim, score_kind, ...)."""
        request = self._target(_model.EvaluateRequest(dataset_id=dataset_id, seed=seed), target)
        if importance_samples is not None:
            request.importance_samples = importance_samples
        return self._unary(self._models.Evaluate, request, retry=True)

    def compare(self, model_a_id, model_b_id, dataset_id, importance_samples=None, seed=0):
        """The paired comparison of two published models' log-likelihoods on a stored dataset:
        the CompareModelsResponse (mean_difference = mean of log p_A - log p_B, standard_error,
        ci95_low, ci95_high, z, p_value, ...; see compare.proto)."""
        request = _m["compare_pb2"].CompareModelsRequest(
            model_a_id=model_a_id, model_b_id=model_b_id, dataset_id=dataset_id, seed=seed)
        if importance_samples is not None:
            request.importance_samples = importance_samples
        return self._unary(self._models.CompareModels, request, retry=True)

    def sample(self, target, n, seed=0):
        """n records drawn from the model (equal seeds, equal samples): an n x D array, uint8
        for binary and categorical (K <= 256) data, uint16 for larger K, float32 for
        continuous."""
        request = self._target(_model.SampleRequest(num_samples=n, seed=seed), target)
        blocks = [_records.decode(r.records) for r in self._stream(self._models.Sample, request)]
        if not blocks:
            raise LogpError(grpc.StatusCode.INTERNAL, "Sample returned no records")
        return np.concatenate(blocks)

    def export(self, model_id, path):
        """Writes the model as a TorchScript file (torch.jit.load(path) gives a module with
        log_prob(x) and, for most families, sample(n, seed)) and returns its size in bytes.
        The file appears whole or not at all."""
        directory = os.path.dirname(os.path.abspath(path))
        fd, temp = tempfile.mkstemp(prefix=".export-", dir=directory)
        try:
            size = 0
            with os.fdopen(fd, "wb") as f:
                for chunk in self._stream(self._models.ExportModel,
                                          _model.ExportModelRequest(id=model_id)):
                    f.write(chunk.data)
                    size += len(chunk.data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, path)
            return size
        except BaseException:
            os.unlink(temp)
            raise

    # --- health ---

    def health(self, timeout=10):
        """True if the standard health service says SERVING (no token needed)."""
        check = self._channel.unary_unary("/grpc.health.v1.Health/Check",
                                          request_serializer=lambda b: b,
                                          response_deserializer=lambda b: b)
        try:
            return check(b"", timeout=timeout) == b"\x08\x01"
        except grpc.RpcError as e:
            raise LogpError.of(e) from None
