"""logp_client: a small Python client of logpd (proto/logp/v1) with numpy arrays in and out.

    from logp_client import Client
    with Client("localhost:50051") as logp:
        ds = logp.upload(x)                              # N x D array of 0/1: bit-packed
        job = logp.create_job(ds.id, "made", hidden_units=100, epochs=5)
        for event in logp.watch(job.id): ...
        model_id = logp.wait(job.id).model_id
        log_p = logp.score(model_id, x)                  # float64 array of N
        samples = logp.sample(model_id, 16, seed=1)      # 16 x D uint8 array

The protobuf messages are the generated ones (logp.v1.*_pb2), also reachable as
logp_client.pb["job_service_pb2"] and so on.
"""
from ._spec import job_spec
from ._stubs import load as _load
from .client import Client, JobError, LogpError

pb = _load()

__all__ = ["Client", "JobError", "LogpError", "job_spec", "pb"]
