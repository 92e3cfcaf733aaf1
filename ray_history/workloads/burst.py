"""Many tiny tasks, some of which raise: the load under which Ray's own state API shows only part of a job.

    RAY_ADDRESS=127.0.0.1:6379 python burst.py --tasks 100000 --fail-every 100

Submits the tasks in windows (so the driver never holds more than a window of pending refs), waits for
each window, and counts the failures it sees itself: that count is what a history must show. Prints a
JSON summary on its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import ray

WINDOW = 2_000


@ray.remote(max_retries=0)
def tiny(index: int, fail_every: int) -> int:
    # Deterministic failures: index 0, fail_every, 2 * fail_every... raise, so the count is known in advance.
    if index % fail_every == 0:
        raise ValueError(f"tiny task {index} fails on purpose")
    return index


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--fail-every", type=int, default=100)
    parser.add_argument("--window", type=int, default=WINDOW, help="tasks submitted before waiting for them")
    args = parser.parse_args()
    ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), log_to_driver=False)
    started = time.monotonic()
    failed = 0
    for first in range(0, args.tasks, args.window):
        indexes = range(first, min(first + args.window, args.tasks))
        refs = [tiny.remote(index, args.fail_every) for index in indexes]
        ray.wait(refs, num_returns=len(refs), fetch_local=False)
        # ray.get of a list raises at its first failure: the failing refs are fetched one by one (and so
        # handled, which keeps Ray from printing each as an unhandled error).
        for index, ref in zip(indexes, refs, strict=True):
            if index % args.fail_every == 0:
                try:
                    ray.get(ref)
                except ray.exceptions.RayTaskError:
                    failed += 1
        if first and first % 20_000 < args.window:
            print(f"{first:,} tasks done in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    seconds = time.monotonic() - started
    # The core workers send their task events every second: let the last ones leave before the driver does.
    time.sleep(3)
    summary = {
        "job_id": ray.get_runtime_context().get_job_id(),
        "tasks": args.tasks,
        "failed": failed,
        "seconds": round(seconds, 1),
        "tasks_per_second": round(args.tasks / seconds, 1),
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
