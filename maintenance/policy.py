"""The retention policy: which sessions a rule selects, and the limits it sets on them.

A policy is a TOML file (`--policy FILE`) and/or flags for the common case (`--max-age 30d`):

    [defaults]                      # every session no rule selects; a rule's unset limits come from here
    max_age = "90d"                 # the whole session, counted from its end
    failed_max_age = "180d"         # a failed job (or unknown jobs) keeps everything this long ("0d": off)
    kinds = { events = "30d", logs = "14d", metrics = "60d", snapshots = "365d" }

    [[rules]]                       # first match wins, in file order
    name = "scratch"
    namespaces = ["scratch-*"]      # globs; also clusters, queues, owners ("RayJob/nightly-*"), labels, statuses
    max_age = "7d"
    max_sessions = 20               # per cluster (max_sessions_per = "namespace" for per namespace), newest kept
    max_bytes = "200GiB"            # per namespace, oldest sessions go first

    [lifecycle]                     # the bucket backstop (maintenance.lifecycle)
    margin = "7d"
    abort_multipart_after = "1d"

Precedence (shown in every planned session as its rule and reason):
  1. a running session is never touched;
  2. a session already marked deleted stays deleted (marks are never undone);
  3. the first rule whose selectors all match decides; [defaults] decides the rest;
  4. within the rule: max_age (raised to failed_max_age for a failed job) deletes, then max_sessions deletes
     the oldest beyond the count, then per-kind ages expire kinds (a session whose every kind expired is
     deleted), then max_bytes deletes the oldest until the namespace fits.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from archive.documents import Manifest

Kind = Literal["events", "logs", "metrics", "snapshots"]
KINDS: tuple[Kind, ...] = ("events", "logs", "metrics", "snapshots")
# A running session is never touched, so only ended statuses can be selected.
STATUSES = ("closed", "incomplete")
GROUPINGS = ("cluster", "namespace")
MS_PER: dict[str, int] = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000,
                          "y": 365 * 86_400_000}  # fmt: skip
BYTES_PER: dict[str, int] = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "pb": 10**15,
                             "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "pib": 2**50}  # fmt: skip
NEVER = "never"
DAY_MS = MS_PER["d"]
# failed_max_age = "never" keeps failed sessions forever (where None would be "no extension"): an age
# no session reaches, turned back into None (no limit) by Limits.
FOREVER = 2**62

_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?[smhdwy])+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdwy])")
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([a-z]*)$")
LIMIT_KEYS = ("max_age", "failed_max_age", "max_sessions", "max_sessions_per", "max_bytes", "kinds")
SELECTOR_KEYS = ("namespaces", "clusters", "statuses", "labels", "owners", "queues")
RULE_KEYS = ("name", *SELECTOR_KEYS, *LIMIT_KEYS)
LIFECYCLE_KEYS = ("margin", "abort_multipart_after")
TOP_KEYS = ("defaults", "rules", "lifecycle")


class PolicyError(ValueError):
    """A policy that cannot be used: the message says where (file, line, key) and what is allowed."""


def parse_duration(text: str, what: str = "duration") -> int | None:
    """Milliseconds of "30d", "12h", "1w", "1d12h" (s, m, h, d, w, y = 365 d); None for "never"."""
    value = text.strip().lower() if isinstance(text, str) else text
    if value == NEVER:
        return None
    if not isinstance(value, str) or not _DURATION.match(value):
        raise PolicyError(f"{what} {text!r} is not a duration: use a number and a unit (s, m, h, d, w, y), "
                          f"e.g. 30d, 12h, 1d12h, or {NEVER!r}")  # fmt: skip
    return int(sum(float(number) * MS_PER[unit] for number, unit in _DURATION_PART.findall(value)))


def parse_size(text: str | int, what: str = "size") -> int | None:
    """Bytes of "500GiB", "2TB", "1048576"; None for "never"."""
    if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
        return text
    value = text.strip().lower() if isinstance(text, str) else None
    if value == NEVER:
        return None
    match = _SIZE.match(value) if value is not None else None
    if match is None or match[2] not in BYTES_PER:
        raise PolicyError(f"{what} {text!r} is not a size: use bytes, or a number and a unit (KB, MB, GB, TB, "
                          f"KiB, MiB, GiB, TiB), e.g. 500GiB, or {NEVER!r}")  # fmt: skip
    return int(float(match[1]) * BYTES_PER[match[2]])


def format_duration(ms: int | None) -> str:
    if ms is None:
        return NEVER
    for unit in ("d", "h", "m"):  # days, as operators count ages (14d, not 2w)
        if ms >= MS_PER[unit] and ms % MS_PER[unit] == 0:
            return f"{ms // MS_PER[unit]}{unit}"
    return f"{ms / 1000:g}s"


def format_size(size: int | None) -> str:
    if size is None:
        return NEVER
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        if size >= BYTES_PER[unit.lower()]:
            return f"{size / BYTES_PER[unit.lower()]:.1f} {unit}"
    return f"{size} B"


@dataclass(frozen=True)
class Limits:
    """What a rule allows; None is no limit. Ages count from the session's end."""

    max_age_ms: int | None = None
    failed_max_age_ms: int | None = None
    max_sessions: int | None = None
    max_sessions_per: str = "cluster"
    max_bytes: int | None = None
    kind_ages_ms: Mapping[str, int | None] = field(default_factory=dict)

    def session_age_ms(self, failed: bool) -> int | None:
        """When the whole session goes; a failed job raises the limit to failed_max_age (never lowers it)."""
        return _raised(self.max_age_ms, self.failed_max_age_ms if failed else None)

    def kind_age_ms(self, kind: str, failed: bool) -> int | None:
        return _raised(self.kind_ages_ms.get(kind), self.failed_max_age_ms if failed else None)

    def lifetime_ms(self, kind: str) -> int | None:
        """The longest a kind's objects can live under these limits (a failed job's included): None is forever."""
        session = self.session_age_ms(failed=True)
        own = self.kind_age_ms(kind, failed=True)
        lives = [age for age in (session, own) if age is not None]
        return min(lives) if lives else None

    def ages_fire_before_failed(self) -> bool:
        """Whether some age is shorter than failed_max_age: only then does a job's outcome change anything."""
        if self.failed_max_age_ms is None:
            return False
        ages = [self.max_age_ms, *self.kind_ages_ms.values()]
        return any(age is not None and age < self.failed_max_age_ms for age in ages)


def _raised(age: int | None, floor: int | None) -> int | None:
    if age is None:
        return None
    raised = age if floor is None else max(age, floor)
    return None if raised >= FOREVER else raised


@dataclass(frozen=True)
class Selector:
    """Which sessions a rule is for: every selector given must match (globs; an empty one matches all)."""

    namespaces: tuple[str, ...] = ()
    clusters: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()  # (key, value glob); "*" is "has the label"
    owners: tuple[str, ...] = ()  # "Kind/name" globs (kind without case), or a name glob
    queues: tuple[str, ...] = ()

    @property
    def needs_manifest(self) -> bool:
        """Labels, owner and queue are in the session's manifest; the rest a listing tells."""
        return bool(self.labels or self.owners or self.queues)

    def matches_listing(self, namespace: str, cluster: str, status: str) -> bool:
        return (
            _any_glob(self.namespaces, namespace)
            and _any_glob(self.clusters, cluster)
            and (not self.statuses or status in self.statuses)
        )

    def matches_manifest(self, manifest: Manifest | None) -> bool:
        if not self.needs_manifest:
            return True
        if manifest is None:  # no manifest: nothing to match labels, owner or queue against
            return False
        labels = manifest.labels
        if any(key not in labels or not fnmatch.fnmatchcase(labels[key], value) for key, value in self.labels):
            return False
        if self.queues and not _any_glob(self.queues, manifest.kubernetes.queue or ""):
            return False
        return not self.owners or any(_owner_matches(pattern, manifest) for pattern in self.owners)

    def whole_namespace(self, namespace: str) -> bool:
        """Whether this selector takes every session of the namespace (what a bucket rule can express)."""
        return not (self.clusters or self.statuses or self.needs_manifest) and _any_glob(self.namespaces, namespace)


def _any_glob(patterns: tuple[str, ...], value: str) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(value, pattern) for pattern in patterns)


def _owner_matches(pattern: str, manifest: Manifest) -> bool:
    kind, name = manifest.owner_of()
    want_kind, sep, want_name = pattern.partition("/")
    if not sep:
        return name is not None and fnmatch.fnmatchcase(name, pattern)
    return (
        kind is not None
        and name is not None
        and fnmatch.fnmatchcase(kind.lower(), want_kind.lower())
        and fnmatch.fnmatchcase(name, want_name)
    )


@dataclass(frozen=True)
class Rule:
    name: str
    selector: Selector
    limits: Limits
    source: str  # where it was written: "policy.toml line 12", "flags"


@dataclass(frozen=True)
class Policy:
    """The rules in order, the last one the defaults (it matches every session)."""

    rules: tuple[Rule, ...]
    margin_ms: int = 7 * DAY_MS  # the bucket backstop's expiries exceed the app's by this
    abort_multipart_days: int = 1
    source: str = "flags"

    @property
    def defaults(self) -> Rule:
        return self.rules[-1]

    @property
    def needs_manifest(self) -> bool:
        return any(rule.selector.needs_manifest for rule in self.rules)

    def is_empty(self) -> bool:
        """True when no rule limits anything: the plan is empty whatever the archive holds."""
        return all(rule.limits == Limits(max_sessions_per=rule.limits.max_sessions_per) for rule in self.rules)

    def describe(self) -> list[str]:
        return [f"{rule.name} ({rule.source}): {describe_rule(rule)}" for rule in self.rules]


def describe_rule(rule: Rule) -> str:
    s, limits = rule.selector, rule.limits
    bits = [f"{name}={','.join(values)}" for name, values in (("namespaces", s.namespaces), ("clusters", s.clusters),
            ("statuses", s.statuses), ("owners", s.owners), ("queues", s.queues)) if values]  # fmt: skip
    bits += [f"label {key}={value}" for key, value in s.labels]
    bits.append(f"max_age {format_duration(limits.max_age_ms)}")
    if limits.failed_max_age_ms is not None:
        failed = limits.failed_max_age_ms
        bits.append(f"failed_max_age {NEVER if failed >= FOREVER else format_duration(failed)}")
    if limits.max_sessions is not None:
        bits.append(f"max_sessions {limits.max_sessions} per {limits.max_sessions_per}")
    if limits.max_bytes is not None:
        bits.append(f"max_bytes {format_size(limits.max_bytes)} per namespace")
    bits += [f"{kind} {format_duration(age)}" for kind, age in limits.kind_ages_ms.items() if age is not None]
    return ", ".join(bits)


# -- reading a policy -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flags:
    """The command line's limits for the common case; they override the file's [defaults]."""

    max_age: str | None = None
    failed_max_age: str | None = None
    kind_ages: Mapping[str, str] = field(default_factory=dict)


def load_policy(path: Path | None = None, flags: Flags | None = None) -> Policy:
    """The policy of a TOML file and/or flags; PolicyError says what is wrong and where."""
    flags = flags or Flags()
    if path is None:
        table: dict[str, Any] = {}
        text, name = "", "flags"
    else:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise PolicyError(f"cannot read the policy file {path}: {exc.strerror or exc}") from exc
        name = str(path)
        try:
            table = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"{path}: not valid TOML: {exc}") from exc
    return _Reader(name, text).policy(table, flags)


class _Reader:
    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.locator = _Locator(text)

    def fail(self, section: str, key: str | None, message: str, sub: str | None = None) -> PolicyError:
        line = self.locator.line(section, key, sub)
        where = f"{self.name}" + (f": line {line}" if line else "")
        place = _section_title(section) + (f" {key}" if key else "")
        return PolicyError(f"{where}: {place}: {message}")

    def policy(self, table: dict[str, Any], flags: Flags) -> Policy:
        self.check_keys(table, "", TOP_KEYS)
        defaults = self.limits(self.table(table, "defaults", "defaults"), "defaults")
        overrides = self.flag_limits(flags)
        defaults = _inherit(defaults, overrides)
        rules_raw = table.get("rules", [])
        if not isinstance(rules_raw, list) or not all(isinstance(rule, dict) for rule in rules_raw):
            raise self.fail("", "rules", "must be tables: write each rule as [[rules]]")
        rules = [self.rule(index, raw, defaults) for index, raw in enumerate(rules_raw)]
        source = f"{self.name} [defaults]" if self.name != "flags" else "defaults"
        if overrides:
            source += " and flags"
        rules.append(Rule("defaults", Selector(), _limits(defaults), source))
        names = [rule.name for rule in rules]
        for rule in rules[:-1]:
            if names.count(rule.name) > 1 or rule.name == "defaults":
                message = f"{rule.name!r} is used twice, or is 'defaults': give each rule a name of its own"
                raise self.fail(f"rules.{names.index(rule.name)}", "name", message + " (the plan names who decided)")
        lifecycle = self.table(table, "lifecycle", "lifecycle")
        self.check_keys(lifecycle, "lifecycle", LIFECYCLE_KEYS)
        margin = self.duration(lifecycle.get("margin", "7d"), "lifecycle", "margin")
        abort = self.duration(lifecycle.get("abort_multipart_after", "1d"), "lifecycle", "abort_multipart_after")
        if margin is None or abort is None or abort < DAY_MS or abort % DAY_MS or margin % DAY_MS:
            raise self.fail("lifecycle", None, "margin and abort_multipart_after are whole days (S3 counts in days)")
        return Policy(tuple(rules), margin_ms=margin, abort_multipart_days=abort // DAY_MS, source=self.name)

    def table(self, table: dict[str, Any], key: str, section: str) -> dict[str, Any]:
        value = table.get(key, {})
        if not isinstance(value, dict):
            raise self.fail("", key, f"must be a table ([{key}])")
        return value

    def check_keys(self, table: dict[str, Any], section: str, allowed: tuple[str, ...]) -> None:
        for key in table:
            if key not in allowed:
                raise self.fail(section, key, f"unknown key {key!r}; allowed here: {', '.join(allowed)}")

    def rule(self, index: int, raw: dict[str, Any], defaults: dict[str, Any]) -> Rule:
        section = f"rules.{index}"
        self.check_keys(raw, section, RULE_KEYS)
        name = raw.get("name", f"rule {index + 1}")
        if not isinstance(name, str) or not name.strip():
            raise self.fail(section, "name", "must be a non-empty string")
        selector = Selector(
            namespaces=self.strings(raw, section, "namespaces"),
            clusters=self.strings(raw, section, "clusters"),
            statuses=self.statuses(raw, section),
            labels=self.labels(raw, section),
            owners=self.strings(raw, section, "owners"),
            queues=self.strings(raw, section, "queues"),
        )
        own = self.limits(raw, section)
        merged = _inherit(defaults, own)
        line = self.locator.line(section, None)
        return Rule(name, selector, _limits(merged), f"{self.name} line {line}" if line else self.name)

    def strings(self, raw: dict[str, Any], section: str, key: str) -> tuple[str, ...]:
        value = raw.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
            raise self.fail(section, key, "must be a string or a list of strings (globs: *, ?, [abc])")
        return tuple(value)

    def statuses(self, raw: dict[str, Any], section: str) -> tuple[str, ...]:
        statuses = self.strings(raw, section, "statuses")
        for status in statuses:
            if status not in STATUSES:
                hint = " (a running session is never touched)" if status == "running" else ""
                raise self.fail(section, "statuses", f"unknown status {status!r}{hint}; use {', '.join(STATUSES)}")
        return statuses

    def labels(self, raw: dict[str, Any], section: str) -> tuple[tuple[str, str], ...]:
        value = raw.get("labels", {})
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise self.fail(section, "labels", 'must be a table of strings, e.g. labels = { team = "ml", env = "*" }')
        return tuple(sorted(value.items()))

    def limits(self, raw: dict[str, Any], section: str) -> dict[str, Any]:
        """The limits a table sets (only those: unset ones are inherited)."""
        if section == "defaults":
            self.check_keys(raw, section, LIMIT_KEYS)
        found: dict[str, Any] = {}
        if "max_age" in raw:
            found["max_age_ms"] = self.duration(raw["max_age"], section, "max_age")
        if "failed_max_age" in raw:
            found["failed_max_age_ms"] = _failed(self.duration(raw["failed_max_age"], section, "failed_max_age"))
        if "max_sessions" in raw:
            count = raw["max_sessions"]
            if count == NEVER:
                found["max_sessions"] = None
            elif not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise self.fail(section, "max_sessions", f"{count!r} is not a count: use a whole number >= 1, or "
                                f"{NEVER!r}")  # fmt: skip
            else:
                found["max_sessions"] = count
        if "max_sessions_per" in raw:
            if raw["max_sessions_per"] not in GROUPINGS:
                raise self.fail(section, "max_sessions_per", f"use one of {', '.join(GROUPINGS)}")
            found["max_sessions_per"] = raw["max_sessions_per"]
        if "max_bytes" in raw:
            try:
                found["max_bytes"] = parse_size(raw["max_bytes"], "max_bytes")
            except PolicyError as exc:
                raise self.fail(section, "max_bytes", str(exc)) from None
        if "kinds" in raw:
            kinds = raw["kinds"]
            if not isinstance(kinds, dict):
                raise self.fail(section, "kinds", 'must be a table, e.g. kinds = { events = "30d", logs = "14d" }')
            for kind in kinds:
                if kind not in KINDS:
                    raise self.fail(section, "kinds", f"unknown kind {kind!r}; use {', '.join(KINDS)}", kind)
            found["kind_ages_ms"] = {kind: self.duration(age, section, "kinds", kind) for kind, age in kinds.items()}
        return found

    def duration(self, value: Any, section: str, key: str, sub: str | None = None) -> int | None:
        what = f"{key}.{sub}" if sub else key
        if not isinstance(value, str):
            raise self.fail(section, key, f"{what} = {value!r}: give a string with a unit, e.g. \"30d\", or "
                            f"{NEVER!r}", sub)  # fmt: skip
        try:
            return parse_duration(value, what)
        except PolicyError as exc:
            raise self.fail(section, key, str(exc), sub) from None

    def flag_limits(self, flags: Flags) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if flags.max_age is not None:
            found["max_age_ms"] = parse_duration(flags.max_age, "--max-age")
        if flags.failed_max_age is not None:
            found["failed_max_age_ms"] = _failed(parse_duration(flags.failed_max_age, "--failed-max-age"))
        ages = {}
        for kind, age in flags.kind_ages.items():
            if kind not in KINDS:
                raise PolicyError(f"--kind-age: unknown kind {kind!r}; use {', '.join(KINDS)}")
            ages[kind] = parse_duration(age, f"--kind-age {kind}")
        if ages:
            found["kind_ages_ms"] = ages
        return found


def _failed(age: int | None) -> int:
    """failed_max_age: "never" keeps failed sessions forever; "0d" turns an inherited extension off."""
    return FOREVER if age is None else age


def _inherit(base: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """`own` limits over `base` ones; per-kind ages merge kind by kind."""
    kinds = {**base.get("kind_ages_ms", {}), **own.get("kind_ages_ms", {})}
    return {**base, **own, "kind_ages_ms": kinds}


def _limits(values: dict[str, Any]) -> Limits:
    kinds = values.get("kind_ages_ms", {})
    return Limits(
        max_age_ms=values.get("max_age_ms"),
        failed_max_age_ms=values.get("failed_max_age_ms"),
        max_sessions=values.get("max_sessions"),
        max_sessions_per=values.get("max_sessions_per", "cluster"),
        max_bytes=values.get("max_bytes"),
        kind_ages_ms={kind: kinds[kind] for kind in KINDS if kind in kinds},
    )


def _section_title(section: str) -> str:
    if not section:
        return "top level"
    if section.startswith("rules."):
        return f"rule {int(section.split('.')[1]) + 1}"
    return f"[{section}]"


class _Locator:
    """The line a key of a section was written on, for error messages (tomllib gives no positions)."""

    _HEADER = re.compile(r"^\s*\[(\[)?\s*([A-Za-z0-9_.\"' -]+?)\s*\]\]?\s*(#.*)?$")
    _KEY = re.compile(r"^\s*\"?([A-Za-z0-9_-]+)\"?\s*=")

    def __init__(self, text: str) -> None:
        # (section, key or None for the header) -> first line number
        self.lines: dict[tuple[str, str | None], int] = {}
        section, rules = "", -1
        for number, line in enumerate(text.splitlines(), start=1):
            header = self._HEADER.match(line)
            if header:
                name = header[2].replace('"', "").replace("'", "")
                if header[1] and name == "rules":
                    rules += 1
                    section = f"rules.{rules}"
                elif name.startswith("rules.") and rules >= 0:
                    section = f"rules.{rules}.{name[6:]}"  # [rules.kinds] belongs to the rule above it
                else:
                    section = name
                self.lines.setdefault((section, None), number)
                continue
            key = self._KEY.match(line)
            if key:
                self.lines.setdefault((section, key[1]), number)

    def line(self, section: str, key: str | None, sub: str | None = None) -> int | None:
        """The line of `key` (of `sub` in the table `key`, when given), else of its table's header."""
        tried = [(f"{section}.{key}", sub)] if sub else []
        tried += [(section, key), (f"{section}.{key}", None), (section, None)]
        return next((self.lines[where] for where in tried if where in self.lines), None)


def with_limits(policy: Policy, **changes: Any) -> Policy:
    """The policy with its defaults' limits changed (tests and what-ifs)."""
    defaults = policy.defaults
    return replace(policy, rules=(*policy.rules[:-1], replace(defaults, limits=replace(defaults.limits, **changes))))
