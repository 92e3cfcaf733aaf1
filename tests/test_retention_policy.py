"""The retention policy file and flags: what they say, and how a mistake is reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from archive import documents
from maintenance.policy import (
    DAY_MS,
    Flags,
    PolicyError,
    load_policy,
    parse_duration,
    parse_size,
)

FULL = """\
# a policy as an operator writes it
[defaults]
max_age = "90d"
failed_max_age = "180d"
kinds = { events = "30d", logs = "14d" }

[[rules]]
name = "scratch"
namespaces = ["scratch-*", "dev"]
max_age = "7d"

[[rules]]
name = "ml prod"
namespaces = "prod"
labels = { team = "ml" }
owners = ["RayJob/train-*"]
max_sessions = 50
max_sessions_per = "namespace"
max_bytes = "2TiB"

[rules.kinds]
logs = "never"
metrics = "60d"

[lifecycle]
margin = "10d"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return path


def test_durations_and_sizes() -> None:
    assert parse_duration("30d") == 30 * DAY_MS
    assert parse_duration("1d12h") == 36 * 3_600_000
    assert parse_duration("2w") == 14 * DAY_MS
    assert parse_duration("never") is None
    assert parse_size("2TiB") == 2 * 2**40
    assert parse_size("500 GB") == 500 * 10**9
    assert parse_size(1024) == 1024
    for bad in ("30", "30 days", "-1d", "d", ""):
        with pytest.raises(PolicyError, match="not a duration"):
            parse_duration(bad)
    with pytest.raises(PolicyError, match="not a size"):
        parse_size("lots")


def test_rules_inherit_the_defaults_kind_by_kind_and_keep_their_order(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, FULL))
    assert [rule.name for rule in policy.rules] == ["scratch", "ml prod", "defaults"]
    scratch, prod, defaults = (rule.limits for rule in policy.rules)
    assert scratch.max_age_ms == 7 * DAY_MS and scratch.failed_max_age_ms == 180 * DAY_MS
    assert scratch.kind_ages_ms == {"events": 30 * DAY_MS, "logs": 14 * DAY_MS}
    # "never" turns off an inherited age; other kinds keep the defaults'.
    assert prod.kind_ages_ms == {"events": 30 * DAY_MS, "logs": None, "metrics": 60 * DAY_MS}
    assert (prod.max_sessions, prod.max_sessions_per, prod.max_bytes) == (50, "namespace", 2 * 2**40)
    assert defaults.max_age_ms == 90 * DAY_MS
    assert policy.margin_ms == 10 * DAY_MS
    assert policy.rules[1].source == f"{tmp_path / 'policy.toml'} line 12"
    assert policy.rules[1].selector.namespaces == ("prod",)


def test_flags_override_the_files_defaults_and_work_alone(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, FULL), Flags(max_age="30d", kind_ages={"logs": "7d"}))
    assert policy.defaults.limits.max_age_ms == 30 * DAY_MS
    assert policy.defaults.limits.kind_ages_ms["logs"] == 7 * DAY_MS
    # The rules inherit the flag too, where they set nothing of their own.
    assert policy.rules[1].limits.max_age_ms == 30 * DAY_MS
    assert policy.rules[0].limits.max_age_ms == 7 * DAY_MS
    alone = load_policy(None, Flags(max_age="30d"))
    assert len(alone.rules) == 1 and alone.defaults.limits.max_age_ms == 30 * DAY_MS
    assert load_policy(None).is_empty()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[defaults]\nmax_age = "30x"\n', r"line 2: \[defaults\] max_age: max_age '30x' is not a duration"),
        ("[defaults]\nmax_age = 30\n", r"line 2: \[defaults\] max_age: max_age = 30: give a string with a unit"),
        ('[[rules]]\nname = "a"\n\n[[rules]]\nname = "b"\nstatuses = ["running"]\n',
         r"line 6: rule 2 statuses: unknown status 'running' \(a running session is never touched\)"),
        ('[[rules]]\nname = "a"\nmax_bytes = "lots"\n', r"line 3: rule 1 max_bytes: max_bytes 'lots' is not a size"),
        ('[[rules]]\nnamespace = "a"\n', r"line 2: rule 1 namespace: unknown key 'namespace'; allowed here: name, "
         r"namespaces"),
        ('[defaults]\nnamespaces = ["a"]\n', r"line 2: \[defaults\] namespaces: unknown key 'namespaces'; allowed "
         r"here: max_age"),
        ('[[rules]]\nname = "a"\n[rules.kinds]\nevent = "3d"\n', r"line 4: rule 1 kinds: unknown kind 'event'; use "
         r"events, logs, metrics, snapshots"),
        ('[[rules]]\nname = "a"\nmax_sessions = 0\n', r"line 3: rule 1 max_sessions: 0 is not a count"),
        ('[[rules]]\nname = "a"\n[[rules]]\nname = "a"\n', r"rule 1 name: 'a' is used twice"),
        ('[rules]\nname = "a"\n', r"top level rules: must be tables: write each rule as \[\[rules\]\]"),
        ("[defaults\n", r"not valid TOML: .*line 1"),
        ('[lifecycle]\nmargin = "12h"\n', r"\[lifecycle\]: margin and abort_multipart_after are whole days"),
        ('retention = "30d"\n', r"line 1: top level retention: unknown key 'retention'; allowed here: defaults"),
    ],
)  # fmt: skip
def test_a_bad_policy_file_says_which_line_and_what_is_allowed(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        load_policy(write(tmp_path, text))


def test_a_missing_file_and_bad_flags_are_clear(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read the policy file"):
        load_policy(tmp_path / "nope.toml")
    with pytest.raises(PolicyError, match="--max-age '30' is not a duration"):
        load_policy(None, Flags(max_age="30"))
    with pytest.raises(PolicyError, match="--kind-age: unknown kind 'traces'"):
        load_policy(None, Flags(kind_ages={"traces": "1d"}))


def test_selectors_match_what_the_catalog_shows(tmp_path: Path) -> None:
    selector = load_policy(write(tmp_path, FULL)).rules[1].selector
    assert selector.needs_manifest
    manifest = documents.Manifest(namespace="prod", cluster="c", session="s", start_time_ms=0,
                                  labels={"team": "ml"}, kubernetes=documents.Kubernetes(rayjob="train-7"))  # fmt: skip
    # No owner written by the collector: KubeRay's RayJob label is the owner, as the catalog shows it.
    assert selector.matches_manifest(manifest)
    assert not selector.matches_manifest(None)
    other = documents.Manifest(namespace="prod", cluster="c", session="s", start_time_ms=0, labels={"team": "ml"},
                               owner=documents.Owner("RayCluster", "train-7"))  # fmt: skip
    assert not selector.matches_manifest(other)
    assert selector.matches_listing("prod", "any", "closed") and not selector.matches_listing("dev", "any", "closed")
