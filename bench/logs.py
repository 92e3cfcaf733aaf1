"""Benchmark: ship a Ray node's log files to the archive and measure what it costs.

    python -m bench.logs --mib 500 --seconds 60

Throughput: writes synthetic session logs shaped like Ray 2.60's (the captures in
tests/fixtures/ray-2.60/logs/run1: worker .out/.err with their `:job_id:`/`:task_name:`/`:actor_name:`
markers, core worker and driver logs, raylet, GCS, job drivers, dashboard...) into a Ray temp dir laid
out as Ray does, then ships all of it with a LogShipper in this process, three times over (a fresh
archive and checkpoint each time). Ids, pids, timestamps and numbers vary as they do in a real node, so
compression is measured honestly. Prints the median MB/s and lines/s, and the archive's size against the
raw bytes and against gzip -6 of the same bytes.

Steady state: starts a real `ray-history collect` on a fake session while this process appends log
lines to 20 files at 5 MB/s (worker stdout in 8 KiB blocks, as block-buffered Python prints, so lines
are often cut in two), samples the collector's CPU and RSS every second, sends it SIGTERM and checks
that the archive rebuilds every byte written.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.compute as pc

from archive.layout import SessionRef
from archive.logs import file_ids_by_name, rebuild_file
from archive.parquet import parquet_to_table
from archive.storage import open_storage
from collector.config import LogSettings
from collector.logs import LogShipper
from collector.metrics import CollectorMetrics
from ray_history.localray import collector_command, free_port, wait_healthy

from .table import print_table

SESSION = "session_2026-11-28_19-03-57_108652_5250"
SESSION_START_MS = 1_795_892_637_151
IP = "192.0.2.2"
NODE = "bench-node"
AIM_MB_S = 50.0
AIM_ARCHIVE_SHARE = 0.15
GZIP_BUDGET_SECONDS = 30.0
STEADY_FILES = 20
STEADY_RATE = 5e6  # bytes/s
TICK = 0.1
BLOCK_BUFFER = 8192  # a block-buffered Python stdout writes in these

FUNCTIONS = ("square", "preprocess", "train_step", "evaluate", "load_shard", "write_result", "tokenize", "embed")
ACTORS = ("Counter", "ParameterServer", "DataLoader", "Trainer", "MetricsSink", "Doomed")
METHODS = ("incr", "update", "next_batch", "step", "report", "get_weights")
MODULES = ("workload_job", "pipeline", "train", "etl_job")
ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
ROUTES = (
    "/api/jobs/",
    "/api/version",
    "/api/v0/nodes?detail=1",
    "/api/cluster_status",
    "/api/v0/tasks",
    "/api/v0/actors",
    "/nodes?view=summary",
    "/api/v0/logs/file",
    "/report_events",
    "/api/serve/applications/",
)
AGENTS = ("python-requests/2.34.2", "curl/7.88.1", "Python/3.11 aiohttp/3.14.5", "Mozilla/5.0 (X11; Linux x86_64)")
PY_LEVELS = ("INFO",) * 12 + ("DEBUG",) * 4 + ("WARNING",) * 2 + ("ERROR",)


def hexid(rng: random.Random, nbytes: int) -> str:
    return f"{rng.getrandbits(nbytes * 8):0{nbytes * 2}x}"


class Clock:
    """A file's clock: moves on a little with every line, formatted as Ray's loggers do."""

    def __init__(self, rng: random.Random, ms: int) -> None:
        self.rng = rng
        self.ms = ms
        self._second = -1
        self._prefix = ""

    def stamp(self, most_ms: int = 60) -> str:
        self.ms += self.rng.randrange(most_ms)
        second, milli = divmod(self.ms, 1000)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second))
        return f"{self._prefix},{milli:03d}"


@dataclass
class Worker:
    worker_id: str
    pid: int
    job: str  # as in the file name: ffffffff for a worker started before a job claimed it
    real_job: str
    actor: str | None


class Node:
    """One Ray node's ids: jobs, submissions, workers (some running an actor)."""

    def __init__(self, seed: int, workers: int, jobs: int = 4) -> None:
        self.rng = random.Random(seed)
        rng = self.rng
        self.node_id = hexid(rng, 28)
        self.jobs = [f"{index:02x}000000" for index in range(1, jobs + 1)]
        self.submissions = {job: "raysubmit_" + "".join(rng.choices(ALNUM, k=16)) for job in self.jobs}
        self.driver_pids = {job: rng.randrange(3000, 60000) for job in self.jobs}
        self.workers = []
        for _ in range(workers):
            job = rng.choice(self.jobs)
            actor = rng.choice(ACTORS) if rng.random() < 0.25 else None
            named = "ffffffff" if rng.random() < 0.3 else job
            self.workers.append(Worker(hexid(rng, 28), rng.randrange(3000, 60000), named, job, actor))

    def task_id(self, rng: random.Random, job: str) -> str:
        return f"{hexid(rng, 8)}ffffffffffffffffffffffff{job}"

    def actor_id(self, rng: random.Random, job: str) -> str:
        return f"{hexid(rng, 12)}{job}"


class Progress:
    """What a process counts as it works (steps, shards, batches): it goes up, as in a real job's output."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.step = rng.randrange(100_000)
        self.shard = rng.randrange(4096)
        self.run = rng.randrange(1000)

    def advance(self) -> int:
        self.step += self.rng.randrange(1, 50)
        return self.step


class Source:
    """One log file's content, produced a few whole lines at a time."""

    def __init__(self, node: Node, name: str, weight: float) -> None:
        self.node = node
        self.name = name  # relative to logs/
        self.weight = weight  # its share of the node's log bytes, before normalising
        self.rng = random.Random(node.rng.getrandbits(64))
        self.clock = Clock(self.rng, SESSION_START_MS + self.rng.randrange(60_000))
        self.progress = Progress(self.rng)
        self.sites = [f"{self.rng.choice(MODULES)}.py:{self.rng.randrange(10, 600)}" for _ in range(6)]

    def block(self) -> str:
        raise NotImplementedError

    def pylog(self, level: str, where: str, message: str) -> str:
        """Ray's Python logging format: `2026-11-28 19:04:27,958\tINFO job_supervisor.py:375 -- ...`."""
        return f"{self.clock.stamp()}\t{level} {where} -- {message}\n"


def _printed(rng: random.Random, function: str, pid: int, progress: Progress) -> str:
    """A line a task prints."""
    kind = rng.randrange(20)
    step = progress.advance()
    if kind < 3:
        return f"{function}({step % 1000}) running on pid {pid}"
    if kind < 7:
        return (
            f"epoch {step // 5000} step {step}: loss={rng.random() * 3:.4f} "
            f"acc={rng.random():.4f} lr=3.00e-04 ({rng.uniform(50, 5000):.1f} samples/s)"
        )
    if kind < 9:
        progress.shard += 1
        return (
            f"processed shard {progress.shard % 4096:05d}/04096: {rng.randrange(100_000)} rows, "
            f"{rng.uniform(1, 512):.2f} MB in {rng.uniform(0.01, 30):.3f}s"
        )
    if kind < 11:
        return (
            f"{function}: wrote s3://ml-data/run-{progress.run:03d}/part-{step:06d}"
            f".parquet ({rng.randrange(1_000_000)} rows)"
        )
    if kind < 13:
        return (
            f"{{'step': {step}, 'loss': {rng.random() * 3:.4f}, "
            f"'grad_norm': {rng.random() * 10:.4f}, 'tokens_per_sec': {rng.randrange(1000, 90_000)}}}"
        )
    if kind == 13:
        return "[" + " ".join(f"{rng.gauss(0, 1):.4f}" for _ in range(rng.randrange(4, 12))) + "]"
    if kind < 16:
        return f"{function} result: {rng.randrange(10**6)} (attempt {rng.randrange(3)})"
    if kind == 16:
        return f"caught expected task failure: RayTaskError({rng.choice(('ValueError', 'KeyError', 'RuntimeError'))})"
    return f"{function}: batch {step} done in {rng.randrange(1, 5000)} ms"


def _traceback(rng: random.Random, function: str) -> list[str]:
    error = rng.choice(
        (
            "ValueError: bad input",
            "RuntimeError: transient failure, should be retried",
            f"KeyError: 'row-{rng.randrange(10**6)}'",
            "ZeroDivisionError: division by zero",
        )
    )
    return [
        "Traceback (most recent call last):",
        f'  File "/app/{rng.choice(MODULES)}.py", line {rng.randrange(20, 400)}, in {function}',
        f"    result = step(batch[{rng.randrange(1000)}])",
        f'  File "/app/lib/steps.py", line {rng.randrange(10, 200)}, in step',
        f"    raise {error.split(':')[0]}({error.split(': ', 1)[1]!r})",
        error,
    ]


class WorkerOutput(Source):
    """worker-<id>-<job>-<pid>.out/.err: Ray's markers before each task's or actor's output, then what it prints."""

    def __init__(self, node: Node, worker: Worker, stream: str, weight: float) -> None:
        super().__init__(node, f"worker-{worker.worker_id}-{worker.job}-{worker.pid}.{stream}", weight)
        self.worker = worker
        self.err = stream == "err"
        self.started = False

    def block(self) -> str:
        rng, worker = self.rng, self.worker
        if not self.started:
            self.started = True
            head = f":job_id:{worker.real_job}\n"
            return head + (f":actor_name:{worker.actor}\n" if worker.actor else "")
        if worker.actor:
            lines = [self._actor_line() for _ in range(rng.randrange(1, 12))]
        else:
            function = rng.choice(FUNCTIONS)
            lines = [f":task_name:{function}"]
            if self.err:
                if rng.random() < 0.3:
                    lines.append(self._err_line(function))
            else:
                lines.extend(_printed(rng, function, worker.pid, self.progress) for _ in range(rng.randrange(0, 8)))
        return "\n".join(lines) + "\n"

    def _actor_line(self) -> str:
        rng, actor = self.rng, self.worker.actor
        if self.err:
            return self._err_line(f"{actor}.{rng.choice(METHODS)}")
        if rng.random() < 0.5:
            return f"{actor}.{rng.choice(METHODS)} -> {self.progress.advance()}"
        return _printed(rng, f"{actor}.{rng.choice(METHODS)}", self.worker.pid, self.progress)

    def _err_line(self, function: str) -> str:
        rng = self.rng
        kind = rng.randrange(6)
        if kind == 0:
            return "\n".join(_traceback(rng, function))
        if kind == 1:
            total, done = rng.randrange(10, 5000), 0
            states = []
            for _ in range(rng.randrange(1, 6)):
                done = min(total, done + rng.randrange(1, total))
                filled = 10 * done // total
                states.append(
                    f"{function}: {100 * done // total:3d}%|{'█' * filled}{' ' * (10 - filled)}| "
                    f"{done}/{total} [00:{rng.randrange(60):02d}<00:{rng.randrange(60):02d}, "
                    f"{rng.uniform(1, 500):.2f}it/s]"
                )
            return "\r".join(states)
        if kind == 2:
            return (
                f"/opt/venv/lib/python3.11/site-packages/torch/utils/data/dataloader.py:617: "
                f"UserWarning: This DataLoader will create {rng.randrange(2, 64)} worker processes in total. "
                "Our suggested max number of worker in current system is 4."
            )
        where = rng.choice(self.sites)
        return self.pylog(
            rng.choice(PY_LEVELS),
            where,
            f"{function} batch {self.progress.advance()} took {rng.randrange(1, 9000)} ms (queue={rng.randrange(64)})",
        ).rstrip("\n")


def _event_stats(rng: random.Random) -> list[str]:
    """The multi-line `Event stats:` block Ray's C++ components print every minute."""
    names = (
        "PeriodicalRunner.RunFnPeriodically",
        "CoreWorker.ExitIfParentRayletDies",
        "Publisher.CheckDeadSubscribers",
        "CoreWorkerService.grpc_server.PushTask",
        "ray::rpc::WorkerInfoGcsService.grpc_client.AddWorkerInfo",
        "CoreWorkerService.grpc_server.GetCoreWorkerStats",
        "TaskEventBuffer.FlushEvents",
        "ray::rpc::NodeManagerService.grpc_client.RequestWorkerLease",
    )
    total = rng.randrange(10, 100_000)
    lines = [
        "",
        "",
        f"Global stats: {total} total ({rng.randrange(12)} active)",
        f"Queueing time: mean = {rng.uniform(0, 30):.2f}ms, max = {rng.uniform(0, 900):.2f}ms, "
        f"min = {rng.uniform(0, 1):.2f}ms, total = {rng.uniform(0, 1e5):.2f}ms",
        f"Execution time:  mean = {rng.uniform(0, 5):.2f}ms, total = {rng.uniform(0, 1e5):.2f}ms",
        "Event stats:",
    ]
    for name in rng.sample(names, rng.randrange(3, len(names))):
        count = rng.randrange(1, total + 1)
        lines.append(
            f"\t{name} - {count} total ({rng.randrange(4)} active), Execution time: mean = "
            f"{rng.uniform(0, 3):.2f}ms, total = {rng.uniform(0, 1e4):.2f}ms, Queueing time: mean = "
            f"{rng.uniform(0, 30):.2f}ms, max = {rng.uniform(0, 900):.2f}ms, min = {rng.uniform(0, 1):.2f}ms, "
            f"total = {rng.uniform(0, 1e5):.2f}ms"
        )
    lines.extend(["", "-----------------", "Task execution event stats:", ""])
    return lines


class CoreWorkerLog(Source):
    """python-core-worker-<id>_<pid>.log and python-core-driver-<job>ff.._<pid>.log: glog lines."""

    def __init__(self, node: Node, name: str, pid: int, job: str, weight: float, driver: bool = False) -> None:
        super().__init__(node, name, weight)
        self.pid, self.job, self.driver = pid, job, driver
        self.threads = [pid, *(pid + self.rng.randrange(1, 80) for _ in range(4))]

    def block(self) -> str:
        rng, node, job = self.rng, self.node, self.job
        head = f"[{self.clock.stamp(400)} {rng.choice('IIIIIIIW')} {self.pid} {rng.choice(self.threads)}] "
        kind = rng.randrange(12 if self.driver else 9)
        task = node.task_id(rng, job)
        actor = node.actor_id(rng, job)
        if kind == 0:
            return head + "core_worker.cc:591: Event stats:\n" + "\n".join(_event_stats(rng)) + "\n"
        if kind == 1:
            state = rng.choice(("ALIVE", "PENDING_CREATION", "DEPENDENCIES_UNREADY", "DEAD"))
            return (
                head + f"actor_manager.cc:236: received notification on actor, state: {state}, ip address: {IP}, "
                f"port: {rng.randrange(10002, 20000)}, num_restarts: 0, death context type=CONTEXT_NOT_SET "
                f"actor_id={actor} worker_id={hexid(rng, 28)} node_id={node.node_id}\n"
            )
        if kind == 2:
            return (
                head
                + f"reference_counter.cc:480: Tried to decrease ref count for nonexistent object ID: {task}01000000\n"
            )
        if kind == 3:
            return head + f"actor_task_submitter.cc:75: Set actor max pending calls to -1 actor_id={actor}\n"
        if kind == 4:
            return head + f"normal_task_submitter.cc:846: Number of alive nodes:{rng.randrange(1, 64)}\n"
        if kind == 5:
            return (
                head
                + f"task_manager.cc:1565: Attempting to resubmit task {task} for attempt number: {rng.randrange(4)}\n"
            )
        if kind == 6:
            return (
                head + f"task_manager.cc:1678: Task attempt {task} failed with error WORKER_DIED Fail immediately? "
                "0, status RpcError: RPC error: Socket closed rpc_code: 14, error info null\n"
            )
        if kind == 7:
            return head + f"core_worker.cc:1208: Plasma GC: got {rng.randrange(10**8)} bytes\n"
        if kind == 8:
            return (
                head + f"task_manager.cc:1557: task {task} retries left: {rng.randrange(4)}, oom retries left: -1, "
                "task failed due to oom: 0\n"
            )
        function = rng.choice(FUNCTIONS)
        return (
            head + f"core_worker.cc:5147: Will resubmit task after a {rng.randrange(2000)}ms delay: Type=NORMAL_TASK, "
            "Language=PYTHON, Resources: {CPU: 1, }, function_descriptor={type=PythonFunctionDescriptor, "
            f"module_name={rng.choice(MODULES)}, class_name=, function_name={function}, function_hash="
            f"{hexid(rng, 16)}}}, task_id={task}, task_name={function}, job_id={job}, num_args={rng.randrange(4)}, "
            f"num_returns=1, max_retries=3, depth=1, attempt_number={rng.randrange(4)}, dependencies={{}}\n"
        )


class Raylet(Source):
    """raylet.out: glog lines tagged (raylet), worker starts and deaths, and periodic [state-dump] blocks."""

    def block(self) -> str:
        rng, node = self.rng, self.node
        head = f"[{self.clock.stamp(300)} I {self.pid} {self.pid + rng.choice((0, 0, 0, 9, 33))}] (raylet) "
        kind = rng.randrange(8)
        worker = rng.choice(node.workers)
        if kind == 0:
            dump = [
                "node_manager.cc:492: [state-dump] NodeManager:",
                f"Node ID: {node.node_id}",
                f"Node name: {IP}",
                f"Infeasible queue length: {rng.randrange(3)}",
                f"Schedule queue length: {rng.randrange(200)}",
                f"Grant queue length: {rng.randrange(50)}",
                f"num_waiting_for_resource: {rng.randrange(200)}",
                f"num_tasks_waiting_for_workers: {rng.randrange(20)}",
                f"num_cancelled_leases: {rng.randrange(5)}",
                f"Number of granted lease arguments: {rng.randrange(1000)}",
                f"- num pinned objects: {rng.randrange(10**4)}",
                f"- pinned objects size: {rng.randrange(10**10)}",
                f"- num bytes currently spilled: {rng.randrange(10**9)}",
                f"- num local plasma objects: {rng.randrange(10**4)}",
                f"- num bytes available for pulled objects: {rng.randrange(10**10)}",
                f"- num chunks received total: {rng.randrange(10**6)}",
                "- max chunks allowed: 409",
            ]
            return head + "\n[state-dump] ".join(dump) + "\n"
        if kind in (1, 2):
            return (
                head + f"worker_pool.cc:548: Started worker process with pid "
                f"{rng.randrange(3000, 60000)}, the token is {rng.randrange(10**4)}\n"
            )
        if kind == 3:
            return (
                head + f'node_manager.cc:1555: [ Event {hexid(rng, 18)} {{"job_id":"{worker.real_job}","node_id":'
                f'"{node.node_id}","worker_id":"{worker.worker_id}"}} ] A worker died or was killed while '
                "executing a task by an unexpected system error. To troubleshoot the problem, check the logs for "
                f"the dead worker. Lease ID: {hexid(rng, 4)}{worker.real_job}{'f' * 48} Worker ID: {worker.worker_id} "
                f"Node ID: {node.node_id} Worker IP address: {IP} Worker port: {rng.randrange(10002, 20000)} "
                f"Worker PID: {worker.pid} Worker exit type: SYSTEM_ERROR Worker exit detail: The leased worker has "
                "unrecoverable failure. Worker is requested to be destroyed when it is returned. "
                "RPC error: Socket closed\n"
            )
        if kind == 4:
            return head + f"node_manager.cc:2034: Lease {hexid(rng, 28)} granted to worker {worker.worker_id}\n"
        if kind == 5:
            return (
                head + f"local_object_manager.cc:{rng.choice((214, 219))}: Spilled {rng.randrange(1, 500)} objects, "
                f"total {rng.randrange(10**10)} bytes\n"
            )
        if kind == 6:
            return (
                head + f"worker_pool.cc:1191: Job {worker.real_job} registered with "
                f"{rng.randrange(1, 64)} workers, idle {rng.randrange(8)}\n"
            )
        return head + f"metrics_agent_client.cc:72: Exporting {rng.randrange(10**4)} metrics\n"

    @property
    def pid(self) -> int:
        return 5599


class Gcs(Source):
    """gcs_server.out: actor and job lifecycle lines tagged (gcs_server), and periodic debug state."""

    def block(self) -> str:
        rng, node = self.rng, self.node
        head = f"[{self.clock.stamp(300)} I 5258 {rng.choice((5258, 5258, 5271))}] (gcs_server) "
        worker = rng.choice(node.workers)
        job = worker.real_job
        actor = node.actor_id(rng, job)
        lines = [
            f"gcs_actor_manager.cc:341: Registering actor job_id={job} actor_id={actor}",
            f"gcs_actor_scheduler.cc:274: Leasing worker for actor. actor_id={actor} job_id={job} "
            f"node_id={node.node_id}",
            f"gcs_actor_scheduler.cc:424: Submitting actor creation task to worker. actor_id={actor} "
            f"worker_id={worker.worker_id} node_id={node.node_id} job_id={job}",
            f"gcs_actor_scheduler.cc:463: Actor creation task succeeded. actor_id={actor} worker_id={worker.worker_id} "
            f"job_id={job} node_id={node.node_id}",
            f"gcs_actor_manager.cc:475: Finished creating actor. Status: OK job_id={job} actor_id={actor}",
        ]
        kind = rng.randrange(10)
        if kind < 6:
            return "".join(f"[{self.clock.stamp(40)} I 5258 5258] (gcs_server) {line}\n" for line in lines)
        if kind == 6:
            counts = "\n".join(
                f"- {name} request count: {rng.randrange(10**5)}"
                for name in (
                    "RegisterNode",
                    "DrainNode",
                    "GetAllNodeInfo",
                    "RegisterActor",
                    "CreateActor",
                    "GetActorInfo",
                    "GetNamedActorInfo",
                    "GetAllActorInfo",
                    "KillActor",
                    "ListNamedActors",
                )
            )
            return (
                head
                + "gcs_server.cc:1307: Gcs Debug state:\n\nGcsNodeManager: \n"
                + counts
                + "\n"
                + "\n".join(_event_stats(rng))
                + "\n"
            )
        if kind == 7:
            return (
                head
                + f"gcs_job_manager.cc:115: Registering job. job_id={job} driver_pid={rng.randrange(3000, 60000)}\n"
            )
        if kind == 8:
            return (
                head + f"gcs_actor_manager.cc:978: Worker {worker.worker_id} failed, destroying actor child, "
                f"job id = {job}\n"
            )
        return head + f"gcs_placement_group_manager.cc:372: Placement group {hexid(rng, 14)}{job} is created\n"


class JobDriver(Source):
    """job-driver-<submission>.log: what the driver prints, and worker output Ray forwards to it."""

    def __init__(self, node: Node, job: str, weight: float) -> None:
        super().__init__(node, f"job-driver-{node.submissions[job]}.log", weight)
        self.job = job
        self.workers = [worker for worker in node.workers if worker.real_job == job] or node.workers

    def block(self) -> str:
        rng = self.rng
        worker = rng.choice(self.workers)
        name = worker.actor or rng.choice(FUNCTIONS)
        kind = rng.randrange(10)
        if kind < 6:
            return "".join(
                f"\x1b[36m({name} pid={worker.pid})\x1b[0m {_printed(rng, name, worker.pid, self.progress)}\n"
                for _ in range(rng.randrange(1, 6))
            )
        if kind == 6:
            return (
                f"\x1b[33m(raylet)\x1b[0m Task {name} failed. There are {rng.randrange(4)} retries remaining, so the "
                "task will be retried. Error: User exception:\n"
                f"\x1b[36mray::{name}()\x1b[39m (pid={worker.pid}, ip={IP})\n"
                + "\n".join(_traceback(rng, name)[1:])
                + "\n"
            )
        if kind == 7:
            return (
                f"\x1b[36m({name} pid={worker.pid})\x1b[0m {_printed(rng, name, worker.pid, self.progress)}"
                "\x1b[32m [repeated "
                f"{rng.randrange(2, 50)}x across cluster] (Ray deduplicates logs by default. Set RAY_DEDUP_LOGS=0 "
                "to disable log deduplication, or see https://docs.ray.io/en/master/ray-observability/user-guides/"
                "configure-logging.html#log-deduplication for more options.)\x1b[0m\n"
            )
        if kind == 8:
            dataset = "".join(rng.choices(ALNUM, k=22))
            return self.pylog(
                "INFO",
                "streaming_executor.py:215",
                f"Starting execution of Dataset dataset_{dataset}_0. Full logs are in /tmp/ray/{SESSION}/logs/ray-data",
            )
        return f"{name} results: {[rng.randrange(1000) for _ in range(rng.randrange(1, 10))]}\n"


class PythonLog(Source):
    """dashboard.log, dashboard_agent.log, monitor.log, log_monitor.log, ray-data/ray-data.log: Python logging."""

    def block(self) -> str:
        rng, node = self.rng, self.node
        if self.name == "dashboard.log" or (self.name == "dashboard_agent.log" and rng.random() < 0.6):
            stamp = self.clock.stamp(800)
            when = time.strftime("%d/%b/%Y:%H:%M:%S", time.gmtime(self.clock.ms // 1000))
            return (
                f"{stamp}\tINFO web_log.py:229 -- 127.0.0.1 [{when} +0000] '{rng.choice(('GET', 'GET', 'POST'))} "
                f"{rng.choice(ROUTES)} HTTP/1.1' {rng.choice((200, 200, 200, 404, 500))} {rng.randrange(100, 90000)} "
                f"bytes {rng.randrange(500, 90000)} us '-' '{rng.choice(AGENTS)}'\n"
            )
        if self.name == "monitor.log":
            if rng.random() < 0.2:
                stamp = self.clock.stamp(5000)
                return (
                    f"{stamp}\tINFO autoscaler.py:408 -- \n======== Autoscaler status: {stamp.replace(',', '.')}"
                    f"{rng.randrange(1000):03d} ========\nNode status\n{'-' * 63}\nActive:\n 1 node_{node.node_id}\n"
                    f"Pending:\n (no pending nodes)\nRecent failures:\n (no failures)\n\nResources\n{'-' * 63}\n"
                    f"Total Usage:\n {rng.randrange(5)}.0/4.0 CPU\n {rng.uniform(0, 16):.2f}GiB/16.02GiB memory\n"
                    f" {rng.uniform(0, 6):.2f}GiB/6.87GiB object_store_memory\n\nFrom request_resources:\n (none)\n"
                    "Pending Demands:\n (no resource demands)\n"
                )
            return self.pylog(
                "INFO",
                "autoscaler.py:469",
                f"The autoscaler took {rng.random() / 100:.3f} seconds to complete the update iteration.",
            )
        if self.name == "log_monitor.log":
            worker = rng.choice(node.workers)
            return self.pylog(
                "INFO",
                "log_monitor.py:304",
                f"Beginning to track file worker-{worker.worker_id}-"
                f"{worker.job}-{worker.pid}.{rng.choice(('out', 'err'))}",
            )
        if self.name.endswith("ray-data.log"):
            return self.pylog(
                rng.choice(("DEBUG", "INFO")),
                f"streaming_executor.py:{rng.choice((215, 216, 381, 487))}",
                f"Operator TaskPoolMapOperator[ReadRange->MapBatches(<lambda>)]: {rng.randrange(10**4)} "
                f"tasks running, {rng.randrange(10**6)} blocks output, {rng.uniform(0, 4096):.1f} MB "
                f"object store usage, {rng.uniform(0, 100):.1f}% budget",
            )
        job = rng.choice(node.jobs)
        return self.pylog(
            "INFO",
            "log_agent.py:401",
            f"Tailing logs from {rng.randrange(10**6)} "
            f"to {rng.randrange(10**6, 10**7)} for lines=20, with keep_alive=-1 job={job}",
        )


class Small(Source):
    """raylet.err, gcs_server.err, runtime_env_setup-<job>.log: a few lines now and then."""

    def block(self) -> str:
        rng = self.rng
        if self.name.startswith("runtime_env_setup"):
            return self.pylog(
                "INFO",
                "runtime_env_agent.py:374",
                f"Creating runtime env for job {self.name[-12:-4]} with hash {hexid(rng, 20)} "
                f"in {rng.uniform(0, 30):.2f}s",
            )
        return (
            f"[{self.clock.stamp(5000)} W 5599 5599] ({self.name.split('.')[0]}) grpc_client.cc:219: "
            f"Retrying RPC to {IP}:{rng.randrange(10002, 60000)} after {rng.randrange(1, 500)} ms\n"
        )


def node_sources(seed: int, workers: int) -> list[Source]:
    """Every log file of one busy node, each with its share of the bytes."""
    node = Node(seed, workers)

    def skew() -> float:
        return node.rng.lognormvariate(0, 0.8)  # some workers print far more than others

    sources: list[Source] = []
    for worker in node.workers:
        sources.append(WorkerOutput(node, worker, "out", 0.40 * skew()))
        sources.append(WorkerOutput(node, worker, "err", 0.08 * skew()))
        name = f"python-core-worker-{worker.worker_id}_{worker.pid}.log"
        sources.append(CoreWorkerLog(node, name, worker.pid, worker.real_job, 0.15 * skew()))
    for job in node.jobs:
        sources.append(JobDriver(node, job, 0.10 * skew() * workers / len(node.jobs)))
        name = f"python-core-driver-{job}{'f' * 48}_{node.driver_pids[job]}.log"
        sources.append(CoreWorkerLog(node, name, node.driver_pids[job], job, 0.05 * workers / len(node.jobs), True))
        sources.append(Small(node, f"runtime_env_setup-{job}.log", 0.0005))
    system = {
        "raylet.out": (Raylet, 0.07),
        "gcs_server.out": (Gcs, 0.06),
        "dashboard.log": (PythonLog, 0.02),
        "dashboard_agent.log": (PythonLog, 0.015),
        "monitor.log": (PythonLog, 0.01),
        "log_monitor.log": (PythonLog, 0.004),
        "ray-data/ray-data.log": (PythonLog, 0.01),
        "raylet.err": (Small, 0.0005),
        "gcs_server.err": (Small, 0.0003),
    }
    for name, (kind, share) in system.items():
        sources.append(kind(node, name, share * workers))
    total = sum(source.weight for source in sources)
    for source in sources:
        source.weight /= total
    return sources


def make_session(root: Path, node_id: str) -> Path:
    """<root>/ray/session_.../logs, `session_latest` and the `raylet_port_<node id>` file, as Ray lays them out."""
    session = root / "ray" / SESSION
    (session / "logs").mkdir(parents=True)
    (root / "ray" / "session_latest").symlink_to(session)
    (session / f"raylet_port_{node_id}").write_text("41987")
    return session


def write_logs(logs: Path, sources: list[Source], total_bytes: int) -> tuple[int, int]:
    """Fill each source's file to its share of `total_bytes`. Returns (bytes, lines)."""
    written = lines = 0
    for source in sources:
        target = max(1, int(total_bytes * source.weight))
        path = logs / source.name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            size = 0
            while size < target:
                blocks: list[str] = []
                chunk = 0
                while chunk < 1 << 20 and size + chunk < target:
                    block = source.block()
                    blocks.append(block)
                    chunk += len(block)
                data = "".join(blocks).encode()
                handle.write(data)
                size += len(data)
                lines += data.count(b"\n")
        written += size
    return written, lines


def gzip_share(paths: list[Path], budget: float) -> tuple[float, int, bool]:
    """gzip -6 size / raw size, file by file in a shuffled order, until the time budget runs out."""
    order = list(paths)
    random.Random(7).shuffle(order)
    raw = packed = 0
    started = time.perf_counter()
    for path in order:
        if time.perf_counter() - started > budget:
            return packed / raw, raw, True
        compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: the gzip container
        with open(path, "rb") as handle:
            while data := handle.read(4 << 20):
                raw += len(data)
                packed += len(compressor.compress(data))
        packed += len(compressor.flush())
    return packed / raw, raw, False


def ship_once(ray_dir: Path, scratch: Path) -> tuple[float, int, int]:
    """Ship every log file with a fresh LogShipper: (seconds, archive bytes, rows)."""
    scratch.mkdir(parents=True)
    archive = scratch / "archive"
    storage = open_storage(str(archive))
    metrics = CollectorMetrics()
    shipper = LogShipper(
        LogSettings(),
        ray_dir,
        NODE,
        storage,
        lambda session: SessionRef("default", "bench", session),
        metrics,
        scratch / "log-offsets.json",
    )
    started = time.perf_counter()
    while not shipper.poll(final=True):
        pass
    seconds = time.perf_counter() - started
    archive_bytes = sum(info.size for info in storage.list("logs/"))
    rows = int(metrics.registry.get_sample_value("ray_history_collector_rows_uploaded_total", {"kind": "logs"}) or 0)
    shutil.rmtree(scratch)
    return seconds, archive_bytes, rows


def profile_once(ray_dir: Path, scratch: Path, top: int = 25) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    ship_once(ray_dir, scratch)
    profiler.disable()
    stats = pstats.Stats(profiler, stream=sys.stderr)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def run_throughput(workdir: Path, mib: int, files: int, runs: int, profile: bool) -> list[tuple[str, str]]:
    sources = node_sources(seed=1, workers=max(1, (files - 21) // 3))
    session = make_session(workdir / "throughput", sources[0].node.node_id)
    ray_dir = session.parent
    print(f"writing {mib} MiB of synthetic logs into {len(sources)} files...", file=sys.stderr)
    started = time.perf_counter()
    raw_bytes, lines = write_logs(session / "logs", sources, mib * 2**20)
    os.sync()  # Ray wrote these a while ago: shipping must not wait on their writeback
    print(f"  {raw_bytes / 1e6:,.0f} MB, {lines:,} lines in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    paths = sorted(path for path in (session / "logs").rglob("*") if path.is_file())
    print("gzip -6 of the same bytes...", file=sys.stderr)
    gzip_ratio, gzip_raw, sampled = gzip_share(paths, GZIP_BUDGET_SECONDS)

    results = []
    for index in range(runs):
        seconds, archive_bytes, rows = ship_once(ray_dir, workdir / f"ship-{index}")
        results.append((seconds, archive_bytes, rows))
        print(
            f"  run {index + 1}: {raw_bytes / 1e6 / seconds:.1f} MB/s ({seconds:.1f} s, {rows:,} rows)", file=sys.stderr
        )
    if profile:
        profile_once(ray_dir, workdir / "ship-profile")
    seconds = statistics.median(result[0] for result in results)
    archive_bytes = int(statistics.median(result[1] for result in results))
    rows = results[0][2]
    mb_s = raw_bytes / 1e6 / seconds
    share = archive_bytes / raw_bytes
    speeds = ", ".join(f"{raw_bytes / 1e6 / result[0]:.1f}" for result in results)
    gzip_note = f" (a sample: {gzip_raw / 1e6:,.0f} MB of whole files)" if sampled else " (all of it)"
    return [
        ("raw logs", f"{raw_bytes / 1e6:,.0f} MB, {len(paths)} files, {lines:,} lines"),
        (
            f"shipping throughput (median of {runs})",
            f"{mb_s:,.1f} MB/s (aim >= {AIM_MB_S:.0f}: {_aim(mb_s >= AIM_MB_S)})",
        ),
        ("  each run", f"{speeds} MB/s"),
        ("shipping lines/s", f"{lines / seconds:,.0f} lines/s ({rows:,} rows)"),
        ("archive / raw", f"{share:.1%} (aim < {AIM_ARCHIVE_SHARE:.0%}: {_aim(share < AIM_ARCHIVE_SHARE)})"),
        ("gzip -6 / raw (same data)", f"{gzip_ratio:.1%}{gzip_note}"),
        ("archive / gzip", f"{share / gzip_ratio:.2f}"),
    ]


def _aim(met: bool) -> str:
    return "met" if met else "MISSED"


class Appender:
    """Appends log lines to files at a steady rate, as Ray's processes would.

    The lines are made before the clock starts, so that making them does not take CPU from the
    collector. Worker stdout goes out in 8 KiB blocks (a block-buffered Python print), so lines are
    often cut in two across writes; every other file gets whole lines."""

    def __init__(self, logs: Path, sources: list[Source], rate: float, seconds: float) -> None:
        self.paths = [logs / source.name for source in sources]
        self.blocky = [source.name.startswith("worker-") and source.name.endswith(".out") for source in sources]
        self.weights = [source.weight for source in sources]
        self.rate = rate
        self.seconds = seconds
        self.content: list[bytes] = []
        for source in sources:
            target = int(rate * seconds * source.weight) + 1
            blocks, size = [], 0
            while size < target:
                block = source.block()
                blocks.append(block)
                size += len(block)
            self.content.append("".join(blocks).encode())
        self.total = sum(len(data) for data in self.content)
        self.offsets = [0] * len(sources)
        self.written = 0

    def _write(self, handles: list, index: int, end: int) -> None:
        data, start = self.content[index], self.offsets[index]
        end = min(end, len(data))
        if end < len(data):
            end = (
                start + (end - start) // BLOCK_BUFFER * BLOCK_BUFFER
                if self.blocky[index]
                else data.rfind(b"\n", start, end) + 1
            )
        if end > start:
            handles[index].write(data[start:end])
            handles[index].flush()
            self.offsets[index] = end
            self.written += end - start

    def run(self) -> float:
        """Write everything at the rate; returns the wall time taken."""
        for path in self.paths:
            path.parent.mkdir(parents=True, exist_ok=True)
        handles = [open(path, "ab") for path in self.paths]  # noqa: SIM115 - closed below
        started = time.monotonic()
        try:
            tick = 0
            while self.written < self.total:
                tick += 1
                time.sleep(max(0.0, started + tick * TICK - time.monotonic()))
                elapsed = time.monotonic() - started
                due = self.rate * elapsed if elapsed < self.seconds else float("inf")  # then the last odd bytes
                for index, weight in enumerate(self.weights):
                    self._write(handles, index, int(min(due * weight, len(self.content[index]))))
        finally:
            for handle in handles:
                handle.close()
        return time.monotonic() - started


class Sampler(threading.Thread):
    """Every second: CPU seconds and RSS of a process and its children (the converter, once events come)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.samples: list[tuple[float, float, int]] = []  # (monotonic, cpu seconds, rss)
        self._stop_event = threading.Event()

    def sample(self) -> tuple[float, float, int] | None:
        try:
            processes = [self.process, *self.process.children(recursive=True)]
        except psutil.Error:
            return None
        cpu, rss = 0.0, 0
        for proc in processes:
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    rss += proc.memory_info().rss
            except psutil.Error:
                continue
            cpu += times.user + times.system + times.children_user + times.children_system
        return (time.monotonic(), cpu, rss)

    def run(self) -> None:
        while not self._stop_event.wait(1.0):
            sample = self.sample()
            if sample is not None:
                self.samples.append(sample)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def archived_bytes(archive: Path, logs: Path) -> tuple[int, int, list[str]]:
    """(bytes rebuilt from the archive, files rebuilt, names whose rebuilt bytes differ from the file)."""
    storage = open_storage(str(archive))
    rows = pa.concat_tables([parquet_to_table(storage.get(info.key)) for info in storage.list("logs/")])
    total, wrong = 0, []
    by_name = file_ids_by_name(rows)
    for name, file_id in by_name.items():
        data = rebuild_file(rows.filter(pc.equal(rows["file_id"], file_id)))
        total += len(data)
        if data != (logs.parent / name).read_bytes():
            wrong.append(name)
    return total, len(by_name), wrong


def run_steady(workdir: Path, seconds: float, rate: float) -> list[tuple[str, str]]:
    sources = node_sources(seed=2, workers=5)
    chosen = [source for source in sources if "-worker" in source.name or source.name.startswith("worker-")]
    chosen += [source for source in sources if source.name in ("raylet.out", "gcs_server.out", "dashboard_agent.log")]
    chosen += [source for source in sources if source.name.startswith(("job-driver-", "python-core-driver-"))][:2]
    chosen = chosen[:STEADY_FILES]
    total = sum(source.weight for source in chosen)
    for source in chosen:
        source.weight /= total
    session = make_session(workdir / "steady", sources[0].node.node_id)
    logs = session / "logs"
    print(f"making {rate * seconds / 1e6:,.0f} MB of log lines for {len(chosen)} files...", file=sys.stderr)
    appender = Appender(logs, chosen, rate, seconds)

    port = free_port()
    archive = workdir / "steady" / "archive"
    command = collector_command(
        str(archive), port, workdir / "steady" / "spool", session.parent, "--log-interval", "2", "--dashboard-url", ""
    )
    quiet = {**os.environ, "RAY_HISTORY_LOG_LEVEL": "WARNING"}
    collector = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True, env=quiet)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process=collector)
        sampler = Sampler(collector.pid)
        print(f"appending to {len(chosen)} files at {rate / 1e6:.1f} MB/s for {seconds:.0f} s...", file=sys.stderr)
        first = sampler.sample()
        sampler.start()
        wall = appender.run()
        last = sampler.sample()
        print("SIGTERM: waiting for the collector to flush...", file=sys.stderr)
        stopping = time.monotonic()
        collector.send_signal(signal.SIGTERM)
        code = collector.wait(timeout=300)
        flush_seconds = time.monotonic() - stopping
        sampler.stop()
    finally:
        if collector.poll() is None:
            os.killpg(collector.pid, signal.SIGKILL)
            collector.wait()
    written = appender.written
    on_disk = sum(path.stat().st_size for path in logs.rglob("*") if path.is_file())
    rebuilt, files, wrong = archived_bytes(archive, logs)
    if first is None or last is None:
        raise RuntimeError("could not sample the collector process")
    cores = (last[1] - first[1]) / (last[0] - first[0])
    rss = [sample[2] for sample in sampler.samples] or [last[2]]
    complete = rebuilt == written == on_disk and not wrong and code == 0
    verdict = "OK" if complete else "FAILED"
    detail = f"{rebuilt:,} of {written:,} bytes, {files - len(wrong)}/{files} files byte-identical"
    if wrong:
        print(f"files that differ: {wrong}", file=sys.stderr)
    return [
        (
            "steady: written",
            f"{written / 1e6:,.0f} MB into {len(chosen)} files in {wall:.0f} s ({written / 1e6 / wall:.1f} MB/s)",
        ),
        ("collector CPU (mean, while writing)", f"{cores:.2f} cores"),
        ("collector RSS peak", f"{max(rss) / 2**20:,.0f} MiB"),
        ("collector RSS median", f"{statistics.median(rss) / 2**20:,.0f} MiB"),
        ("flush after SIGTERM", f"{flush_seconds:.1f} s (exit code {code})"),
        ("correctness: archive holds every byte", f"{verdict}: {detail}"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=500, help="total size of the synthetic logs (MiB)")
    parser.add_argument("--files", type=int, default=200, help="about how many log files")
    parser.add_argument("--runs", type=int, default=3, help="shipping runs; the median is reported")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the steady-state run")
    parser.add_argument("--rate", type=float, default=STEADY_RATE / 1e6, help="steady-state write rate (MB/s)")
    parser.add_argument("--profile", action="store_true", help="profile one more shipping run (to stderr)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rh-bench-logs-") as workdir:
        rows = run_throughput(Path(workdir), args.mib, args.files, args.runs, args.profile)
        if args.seconds > 0:
            rows += run_steady(Path(workdir), args.seconds, args.rate * 1e6)
        print_table("log shipping: log files to archive", rows)


if __name__ == "__main__":
    main()
