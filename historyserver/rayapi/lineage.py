"""Ray's task summary by lineage (`ray summary tasks --summary-by lineage`, the UI's task tree): tasks under
the task or actor that created them, siblings of one name merged, busiest first.

A port of Ray 2.60's `TaskSummaries.to_summary_by_lineage` (ray/util/state/common.py) over the rows this
prefix answers, so the tree, its keys, its order and its counts are Ray's. The server never imports Ray.
"""

from __future__ import annotations

import sys
from typing import Any

DRIVER_TASK_ID_PREFIX = "f" * 40
RUNNING = ("RUNNING", "RUNNING_IN_RAY_GET", "RUNNING_IN_RAY_WAIT")
PENDING = ("PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT", "PENDING_OBJ_STORE_MEM_AVAIL", "PENDING_ARGS_FETCH")
TOTALS = {
    "NORMAL_TASK": "total_tasks",
    "ACTOR_CREATION_TASK": "total_actor_scheduled",
    "ACTOR_TASK": "total_actor_tasks",
}


def _group(name: str, key: str, kind: str, timestamp: int | None = None, link: dict | None = None) -> dict[str, Any]:
    """A NestedTaskSummary, as Ray's dataclass serialises."""
    return {"name": name, "key": key, "type": kind, "timestamp": timestamp, "state_counts": {}, "children": [],
            "link": link}  # fmt: skip


class _Tree:
    def __init__(self, tasks: list[dict[str, Any]], actors: list[dict[str, Any]]) -> None:
        self.tasks = {task["task_id"]: task for task in tasks}
        self.creation_task_of = {task["actor_id"]: task["task_id"] for task in tasks
                                 if task["type"] == "ACTOR_CREATION_TASK"}  # fmt: skip
        self.actors = {actor["actor_id"]: actor for actor in actors}
        self.groups: dict[str, dict[str, Any]] = {}
        self.roots: list[dict[str, Any]] = []

    def _place(self, group: dict[str, Any], parent_task_id: str | None, current: dict[str, Any]) -> None:
        if not parent_task_id or parent_task_id.startswith(DRIVER_TASK_ID_PREFIX):
            self.roots.append(group)
            return
        parent = self.task_group(parent_task_id, current)
        if parent is not None:
            parent["children"].append(group)

    def task_group(self, task_id: str, current: dict[str, Any]) -> dict[str, Any] | None:
        """The task's group, made and placed under its parent (an actor for actor tasks); None when a task
        of its ancestry is missing: Ray drops that whole branch."""
        if task_id in self.groups:
            return self.groups[task_id]
        task = self.tasks.get(task_id)
        if task is None:
            return None
        group = self.groups[task_id] = _group(
            task.get("name") or task.get("func_or_class_name"), task_id, task["type"], task["creation_time_ms"],
            {"type": "task", "id": task_id},
        )  # fmt: skip
        if task["type"] in ("ACTOR_TASK", "ACTOR_CREATION_TASK"):
            actor_group = self.actor_group(task["actor_id"], current)
            if actor_group is not None:
                actor_group["children"].append(group)
        else:
            self._place(group, task["parent_task_id"], current)
        return group

    def actor_group(self, actor_id: str, current: dict[str, Any]) -> dict[str, Any] | None:
        key = f"actor:{actor_id}"
        if key not in self.groups:
            creation = self.tasks.get(self.creation_task_of.get(actor_id, ""))
            if creation is None:
                return None
            actor = self.actors.get(actor_id)
            name = (
                (actor["repr_name"] or actor["class_name"]) if actor else creation["func_or_class_name"].split(".")[0]
            )
            # Ray stamps an actor's group with the creation time of the task being placed when the group is
            # made (a name its code reuses from an enclosing loop); kept, so the order is Ray's.
            self.groups[key] = _group(
                name, key, "ACTOR", current["creation_time_ms"], {"type": "actor", "id": actor_id}
            )
            self._place(self.groups[key], creation["parent_task_id"], current)
        return self.groups[key]


def _merge_siblings(siblings: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int | None]:
    """Siblings of one name under a GROUP (one child stays itself); the smallest timestamp among them."""
    if not siblings:
        return siblings, None
    groups: dict[str, dict[str, Any]] = {}
    smallest = None
    for child in siblings:
        child["children"], child_smallest = _merge_siblings(child["children"])
        if child_smallest and child_smallest < (child["timestamp"] or sys.maxsize):
            child["timestamp"] = child_smallest
        group = groups.setdefault(child["name"], _group(child["name"], child["name"], "GROUP"))
        group["children"].append(child)
        if child["timestamp"] and child["timestamp"] < (group["timestamp"] or sys.maxsize):
            group["timestamp"] = child["timestamp"]
            if child["timestamp"] < (smallest or sys.maxsize):
                smallest = child["timestamp"]
    return [group if len(group["children"]) > 1 else group["children"][0] for group in groups.values()], smallest


def _count(group: dict[str, Any], states: tuple[str, ...]) -> int:
    return sum(group["state_counts"].get(state, 0) for state in states)


def _sort(groups: list[dict[str, Any]]) -> None:
    # Ray sorts five times, each stable: running first, then pending, failed, oldest, actor creation.
    groups.sort(key=lambda group: 0 if group["type"] == "ACTOR_CREATION_TASK" else 1)
    groups.sort(key=lambda group: group["timestamp"] or sys.maxsize)
    groups.sort(key=lambda group: group["state_counts"].get("FAILED", 0), reverse=True)
    groups.sort(key=lambda group: _count(group, PENDING), reverse=True)
    groups.sort(key=lambda group: _count(group, RUNNING), reverse=True)


def _total(group: dict[str, Any]) -> dict[str, Any]:
    for child in group["children"]:
        for state, count in _total(child)["state_counts"].items():
            group["state_counts"][state] = group["state_counts"].get(state, 0) + count
    if group["children"]:
        _sort(group["children"])
    return group


def by_lineage(tasks: list[dict[str, Any]], actors: list[dict[str, Any]]) -> dict[str, Any]:
    """TaskSummaries.to_summary_by_lineage over task and actor rows (Ray's fields, with detail)."""
    tree = _Tree(tasks, actors)
    totals = dict.fromkeys(TOTALS.values(), 0)
    for task in tasks:
        group = tree.task_group(task["task_id"], task)
        if group is None:
            continue  # a task whose ancestry is missing, as Ray leaves it out
        group["state_counts"][task["state"]] = group["state_counts"].get(task["state"], 0) + 1
        if task["type"] in TOTALS:
            totals[TOTALS[task["type"]]] += 1
    roots, _ = _merge_siblings(tree.roots)
    summary = [_total(group) for group in roots]
    _sort(summary)
    return {"summary": summary, **totals, "summary_by": "lineage"}
