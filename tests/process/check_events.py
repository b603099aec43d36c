#!/usr/bin/env python3
"""Checks the events of a finished job, as `logpctl --json jobs watch JOB --from_seq=1` printed
them (one JSON object per line): seq runs 1..N without gap or repeat, no progress step and no
epoch is reported twice, and at most one event ends the job.

With --none_by=REPLICA --after=TEXT: also, no state change made by REPLICA comes after the first
state change whose message contains TEXT (a fenced-out replica wrote nothing after a takeover),
and such a state change exists.

Usage: check_events.py EVENTS_FILE [--none_by=REPLICA --after=TEXT]; exit 1 saying what is wrong.
"""
import json
import sys

FINAL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"}


def main(argv):
    opts = dict(a[2:].split("=", 1) for a in argv[2:])
    events = [json.loads(line) for line in open(argv[1]) if line.strip()]
    last_step, last_epoch, ends, after = 0, 0, 0, None
    for n, e in enumerate(events, 1):
        if int(e["seq"]) != n:
            return f"seq gap or repeat at event {n}: seq {e['seq']}"
        if "progress" in e:
            s = int(e["progress"]["step"])
            if s <= last_step:
                return f"progress step {s} after {last_step} (seq {n})"
            last_step = s
        if "epochSummary" in e:
            ep = e["epochSummary"]["epoch"]
            if ep != last_epoch + 1:
                return f"epoch {ep} after {last_epoch} (seq {n})"
            last_epoch = ep
            last_step = max(last_step, int(e["epochSummary"]["step"]))
        change = e.get("stateChange", {})
        ends += change.get("state") in FINAL
        if "after" in opts:
            if after is None and opts["after"] in change.get("message", ""):
                after = n
            elif after is not None and change.get("replicaId") == opts["none_by"]:
                return f"event {n} by {opts['none_by']} after the takeover at event {after}"
    if ends > 1:
        return f"{ends} events end the job"
    if "after" in opts and after is None:
        return f"no state change says '{opts['after']}'"
    return None


if __name__ == "__main__":
    problem = main(sys.argv)
    if problem:
        print(f"{sys.argv[1]}: {problem}")
        sys.exit(1)
