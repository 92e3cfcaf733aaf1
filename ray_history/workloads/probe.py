"""A small realistic Ray workload: what a history server must get right.

Tasks that succeed, raise, are retried, and crash their worker; a named actor with a failing
method that is then killed; an actor whose process dies; a placement group. Run it as a submitted
job or as a direct driver (`python probe.py`, with RAY_ADDRESS set). It prints a JSON summary of
the ids it created on its last line.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy


@ray.remote
def square(x: int) -> int:
    print(f"square({x}) = {x * x}")
    return x * x


@ray.remote(max_retries=0)
def boom() -> None:
    raise ValueError("this task fails on purpose")


@ray.remote(max_retries=2, retry_exceptions=True)
def flaky(marker: str) -> str:
    # Fails on its first attempt only, so the history shows attempt 0 FAILED and attempt 1 FINISHED.
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("transient failure, should be retried")
    return "recovered"


@ray.remote(max_retries=1)
def crash() -> None:
    os._exit(3)


@ray.remote(num_cpus=0.5)
def in_placement_group() -> str:
    return "placed"


@ray.remote
class Counter:
    def __init__(self) -> None:
        self.value = 0

    def incr(self) -> int:
        self.value += 1
        print(f"Counter is at {self.value}")
        return self.value

    def fail(self) -> None:
        raise KeyError("counter method fails on purpose")


@ray.remote
class Doomed:
    def die(self) -> None:
        os._exit(1)


def _quietly(ref: ray.ObjectRef) -> str:
    try:
        ray.get(ref)
        return "ok"
    except Exception as exc:  # the failures are the point
        return type(exc).__name__


def main() -> None:
    ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), log_to_driver=True)
    outcome: dict[str, object] = {"job_id": ray.get_runtime_context().get_job_id()}
    outcome["squares"] = ray.get([square.remote(i) for i in range(5)])
    outcome["boom"] = _quietly(boom.remote())
    marker = os.path.join(tempfile.gettempdir(), f"ray-history-flaky-{uuid.uuid4().hex}")
    outcome["flaky"] = ray.get(flaky.remote(marker))
    outcome["crash"] = _quietly(crash.remote())

    counter = Counter.options(name=f"Counter-{uuid.uuid4().hex[:6]}").remote()
    outcome["counter"] = ray.get([counter.incr.remote() for _ in range(3)])
    outcome["counter_fail"] = _quietly(counter.fail.remote())
    ray.kill(counter)

    doomed = Doomed.remote()
    outcome["doomed"] = _quietly(doomed.die.remote())

    group = placement_group([{"CPU": 0.5}, {"CPU": 0.5}], strategy="PACK")
    ray.get(group.ready(), timeout=60)
    strategy = PlacementGroupSchedulingStrategy(placement_group=group)
    outcome["placed"] = ray.get(in_placement_group.options(scheduling_strategy=strategy).remote())
    outcome["placement_group_id"] = group.id.hex()
    remove_placement_group(group)
    # Give the core workers a moment to flush their last task events before the driver exits.
    time.sleep(2)
    print(json.dumps(outcome))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
