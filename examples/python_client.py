#!/usr/bin/python3
"""The whole loop from Python against a running logpd: upload binary records, train a MADE
while printing its epochs, score, evaluate, sample, and (once the server has ExportModel)
export it to TorchScript.

    build/server/logpd --data_dir=/tmp/logp-data &          # listens on localhost:50051
    PYTHONPATH=python /usr/bin/python3 examples/python_client.py [--server=HOST:PORT]

Over TLS with a token: --tls_ca_file=ca.pem (and LOGP_TOKEN=... in the environment).
The records are synthetic (dim 16, each column likelier 1 after a 1), so nothing is downloaded.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from logp_client import Client, LogpError  # noqa: E402


def records(rng, n, d=16):
    x = np.zeros((n, d), np.uint8)
    p = np.full(n, 0.3)
    for c in range(d):
        x[:, c] = rng.random(n) < p
        p = np.where(x[:, c] == 1, 0.7, 0.2)
    return x


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="localhost:50051")
    parser.add_argument("--tls_ca_file")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--export", default="", help="write the model as TorchScript here")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    train, test = records(rng, 2000), records(rng, 500)
    with Client(args.server, token=os.environ.get("LOGP_TOKEN"),
                tls_ca_file=args.tls_ca_file) as logp:
        train_ds = logp.upload(train, name="example-train")
        test_ds = logp.upload(test, name="example-test")
        print(f"uploaded {train_ds.id} ({train_ds.num_records} x {train_ds.dim}) and {test_ds.id}")

        job = logp.create_job(train_ds.id, "made", hidden_units=64, epochs=args.epochs,
                              learning_rate=3e-3, validation_dataset_id=test_ds.id, seed=1)

        def show(event):
            if event.WhichOneof("event") == "epoch_summary":
                s = event.epoch_summary
                print(f"epoch {s.epoch}  train NLL {s.train_nll:.4f}  val NLL "
                      f"{s.validation_nll:.4f} ± {s.validation_standard_error:.4f}"
                      + ("  *best" if s.is_best else ""))

        model_id = logp.wait(job.id, on_event=show).model_id
        print(f"job {job.id} succeeded: model {model_id}")

        log_p = logp.score(model_id, test[:3])
        print("log p of three test records:", np.round(log_p, 4))
        ev = logp.evaluate(model_id, test_ds.id)
        print(f"test mean NLL {ev.mean_nll:.4f} ± {ev.standard_error:.4f} nats "
              f"({ev.bits_per_dim:.4f} bits/dim); mean of the scores "
              f"{-logp.score(model_id, test).mean():.4f}")
        samples = logp.sample(model_id, 5, seed=1)
        print("five samples:\n" + "\n".join("".join(map(str, row)) for row in samples))
        if args.export:
            try:
                print(f"exported {logp.export(model_id, args.export)} bytes to {args.export}")
            except LogpError as e:
                print(f"export: {e}")


if __name__ == "__main__":
    main()
