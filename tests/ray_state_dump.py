"""Run while Ray is alive: print what Ray's state API lists, as JSON (the ground truth for the tests)."""

from __future__ import annotations

import dataclasses
import json
import sys

from ray.util.state import list_actors, list_jobs, list_nodes, list_tasks


def _plain(items: list) -> list[dict]:
    return [dataclasses.asdict(item) if dataclasses.is_dataclass(item) else dict(item) for item in items]


def main(address: str) -> None:
    options = {"address": address, "limit": 10_000, "detail": True, "raise_on_missing_output": False}
    state = {
        "tasks": _plain(list_tasks(**options)),
        "actors": _plain(list_actors(**options)),
        "jobs": _plain(list_jobs(**options)),
        "nodes": _plain(list_nodes(**options)),
    }
    json.dump(state, sys.stdout, default=str)


if __name__ == "__main__":
    main(sys.argv[1])
