"""Synthetic Ray event streams shaped like Ray 2.60's (see tests/fixtures/ray-2.60).

Each task yields the five events a real task produces: its definition, the owner's pending and
submitted transitions, the worker's RUNNING, the owner's FINISHED (or FAILED with a traceback),
and a profile event. Ids are random bytes, as Ray's are, so compression is measured honestly.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Iterator
from typing import Any

import msgspec

from archive.events import format_timestamp

SESSION = "session_2026-11-28_19-03-57_108652_5250"
FUNCTIONS = ("square", "preprocess", "train_step", "evaluate", "load_shard", "write_result")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _ts(ns: int) -> str:
    return format_timestamp(ns)


class Synth:
    def __init__(self, seed: int = 0, session: str = SESSION, failure_rate: float = 0.01) -> None:
        self.rng = random.Random(seed)
        self.session = session
        self.failure_rate = failure_rate
        self.node = _b64(self.rng.randbytes(28))
        self.job = _b64(bytes([2, 0, 0, 0]))
        self.workers = [(_b64(self.rng.randbytes(28)), 5000 + i) for i in range(8)]
        self.clock = 1_795_892_664_000_000_000

    def _event(self, event_type: str, body_key: str, body: dict[str, Any], source: str = "CORE_WORKER") -> dict:
        self.clock += self.rng.randrange(20_000, 400_000)
        return {
            "eventId": _b64(self.rng.randbytes(28)),
            "sourceType": source,
            "eventType": event_type,
            "timestamp": _ts(self.clock),
            "severity": "INFO",
            "sessionName": self.session,
            body_key: body,
            "nodeId": self.node,
            "message": "",
        }

    def task(self) -> list[dict]:
        task_id = _b64(self.rng.randbytes(8) + b"\xff" * 12 + b"\x02\x00\x00\x00")
        function = self.rng.choice(FUNCTIONS)
        worker_id, pid = self.rng.choice(self.workers)
        failed = self.rng.random() < self.failure_rate
        ids = {"taskId": task_id, "taskAttempt": 0, "jobId": self.job}
        definition = self._event("TASK_DEFINITION_EVENT", "taskDefinitionEvent", {
            "taskId": task_id,
            "taskFunc": {"pythonFunctionDescriptor": {
                "moduleName": "workload_job", "functionName": function,
                "functionHash": "9618d5bec924425e86d13c0fbf612c40", "className": ""}},
            "taskName": function, "requiredResources": {"CPU": 1.0}, "jobId": self.job,
            "parentTaskId": "//////////////////////////8CAAAA", "placementGroupId": "////////////////////////",
            "serializedRuntimeEnv": "{}", "taskAttempt": 0, "taskType": "NORMAL_TASK", "language": "PYTHON",
            "refIds": {}, "labelSelector": {}, "isDetachedActor": False,
        })  # fmt: skip
        t = self.clock
        pending = self._event("TASK_LIFECYCLE_EVENT", "taskLifecycleEvent", {
            "taskId": task_id,
            "stateTransitions": [
                {"state": "PENDING_ARGS_AVAIL", "timestamp": _ts(t + 1000)},
                {"state": "PENDING_NODE_ASSIGNMENT", "timestamp": _ts(t + 31000)},
                {"state": "SUBMITTED_TO_WORKER", "timestamp": _ts(t + 810000)},
            ],
            "nodeId": self.node, "workerId": worker_id, "jobId": self.job, "taskAttempt": 0, "workerPid": 0,
        })  # fmt: skip
        running = self._event("TASK_LIFECYCLE_EVENT", "taskLifecycleEvent", {
            **ids, "stateTransitions": [{"state": "RUNNING", "timestamp": _ts(self.clock)}],
            "workerPid": pid, "nodeId": "", "workerId": "",
        })  # fmt: skip
        end: dict[str, Any] = {
            "taskId": task_id, "stateTransitions": [{"state": "FAILED" if failed else "FINISHED",
                                                      "timestamp": _ts(self.clock + 5_000_000)}],
            "nodeId": self.node, "workerId": worker_id, "jobId": self.job, "taskAttempt": 0, "workerPid": 0,
        }  # fmt: skip
        if failed:
            end["rayErrorInfo"] = {
                "errorMessage": f"User exception:\nray::{function}() (pid={pid}, ip=192.0.2.2)\n"
                f'  File "/app/workload_job.py", line 30, in {function}\n    raise ValueError("bad input")\n'
                "ValueError: bad input",
                "errorType": "TASK_EXECUTION_EXCEPTION",
            }
        finished = self._event("TASK_LIFECYCLE_EVENT", "taskLifecycleEvent", end)
        profile = self._event("TASK_PROFILE_EVENT", "taskProfileEvents", {
            "taskId": task_id, "jobId": self.job, "attemptNumber": 0,
            "profileEvents": {"componentType": "worker", "componentId": worker_id, "nodeIpAddress": "192.0.2.2",
                              "events": [{"startTime": str(t), "endTime": str(t + 5_000_000), "extraData": "{}",
                                          "eventName": f"task::{function}"}]},
        })  # fmt: skip
        return [definition, pending, running, finished, profile]

    def events(self, count: int) -> Iterator[dict]:
        produced = 0
        while produced < count:
            for event in self.task():
                if produced == count:
                    return
                produced += 1
                yield event


def post_bodies(events: Iterator[dict], batch: int = 1000) -> Iterator[tuple[bytes, list[str]]]:
    """JSON bodies of `batch` events, as the aggregator agent POSTs them, with their event ids."""
    chunk: list[dict] = []
    for event in events:
        chunk.append(event)
        if len(chunk) == batch:
            yield msgspec.json.encode(chunk), [e["eventId"] for e in chunk]
            chunk = []
    if chunk:
        yield msgspec.json.encode(chunk), [e["eventId"] for e in chunk]
