"""A job that is still running when its cluster goes away: tasks that sleep far longer than it lives.

The history must show those tasks ended (FAILED, with the reason), not RUNNING forever.
"""

from __future__ import annotations

import os
import time

import ray


@ray.remote(num_cpus=0.5)
def sleep_for_an_hour(index: int) -> int:
    print(f"sleeper {index} started; it will not finish")
    time.sleep(3600)
    return index


def main() -> None:
    ray.init(address=os.environ.get("RAY_ADDRESS", "auto"))
    refs = [sleep_for_an_hour.remote(i) for i in range(2)]
    print("sleepers submitted", flush=True)
    ray.get(refs)


if __name__ == "__main__":
    main()
