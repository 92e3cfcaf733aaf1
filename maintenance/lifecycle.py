"""The bucket-level backstop (`ray-history lifecycle`): S3 lifecycle rules made from the retention policy.

Retention (planner and cleaner) decides first; these rules only catch what it missed (retention not run
for weeks, a session the app cannot see). So every expiry is the longest the policy could keep a kind,
failed jobs included, plus a margin (`[lifecycle] margin`, 7 days by default):

- a rule per kind by prefix (`{root}events/`, ...), with the longest lifetime any rule gives the kind;
- for a namespace whose rules all give a kind a shorter life, a rule with a tag filter (`kind`,
  `namespace`, which every object carries: `layout.object_tags`) and its prefix. S3 honours the
  shortest of overlapping expirations, so a general rule must be the longest and namespace rules may
  only be shorter; a kind no rule limits gets no rule at all;
- `sessions/` lives as long as the longest data kind: the documents (and the retention mark) must
  outlive the data they describe;
- always a rule expiring the change journal (`{root}changes/`, archive.changes) after its retention: the
  cleaner prunes it too, but only where retention runs;
- always a housekeeping rule for the whole archive: AbortIncompleteMultipartUpload, the removal of
  noncurrent versions after the margin (on a versioned bucket a delete only hides the data) and of
  expired delete markers.

A bucket rule counts from an object's creation, the app from the session's end; a part written at a
session's start is that much older. The margin must therefore exceed the longest sessions (a
RayService running for weeks needs a longer margin, or no bucket rule for its namespace).
"""

from __future__ import annotations

import fnmatch
import hashlib
import math
import shlex
from dataclasses import dataclass
from typing import Any

from archive import changes
from archive.storage import Storage, StorageError

from .inventory import SESSIONS
from .policy import DAY_MS, KINDS, Policy, Rule

ID_PREFIX = "ray-history"
MAX_ID = 255  # S3's limit on a rule's ID
MAX_RULES = 1000  # S3's limit on rules per bucket
# A bucket's expiry counts whole days from creation (rounded up to the next midnight UTC): never before the
# journal's retention, which readers rely on.
JOURNAL_DAYS = math.ceil(changes.RETENTION_MS / DAY_MS)


@dataclass(frozen=True)
class Expiry:
    kind: str  # sessions, events, logs, metrics, snapshots
    namespace: str | None  # None: every namespace
    days: int  # the bucket's expiry
    app_ms: int  # the longest the policy keeps it (from the session's end)


def _lifetime(rules: list[Rule], kind: str) -> int | None:
    """The longest any of `rules` keeps a kind's objects; None for forever."""
    lives = []
    for rule in rules:
        life = (max_or_none([rule.limits.lifetime_ms(k) for k in KINDS]) if kind == SESSIONS
                else rule.limits.lifetime_ms(kind))  # fmt: skip
        if life is None:
            return None
        lives.append(life)
    return max(lives) if lives else None


def max_or_none(values: list[int | None]) -> int | None:
    return None if any(value is None for value in values) else max(values)  # type: ignore[type-var]


def rules_for(policy: Policy, namespace: str) -> list[Rule]:
    """The rules that may decide a session of `namespace`: up to the first that takes the whole namespace."""
    found = []
    for rule in policy.rules:
        patterns = rule.selector.namespaces
        if patterns and not any(fnmatch.fnmatchcase(namespace, pattern) for pattern in patterns):
            continue
        found.append(rule)
        if rule.selector.whole_namespace(namespace):
            break
    return found


def expiries(policy: Policy) -> list[Expiry]:
    margin_days = math.ceil(policy.margin_ms / DAY_MS)
    found: list[Expiry] = []
    general: dict[str, int | None] = {}
    for kind in (SESSIONS, *KINDS):
        life = general[kind] = _lifetime(list(policy.rules), kind)
        if life is not None:
            found.append(Expiry(kind, None, math.ceil(life / DAY_MS) + margin_days, life))
    named = {namespace for rule in policy.rules for namespace in rule.selector.namespaces}
    literal = sorted(namespace for namespace in named if not any(c in namespace for c in "*?["))
    for namespace in literal:
        rules = rules_for(policy, namespace)
        for kind in (SESSIONS, *KINDS):
            life = _lifetime(rules, kind)
            broad = general[kind]
            if life is not None and (broad is None or math.ceil(life / DAY_MS) < math.ceil(broad / DAY_MS)):
                found.append(Expiry(kind, namespace, math.ceil(life / DAY_MS) + margin_days, life))
    return found


def _rule_id(root: str, what: str) -> str:
    """IDs say which archive a rule belongs to, so --apply replaces its own rules and keeps the bucket's others."""
    text = f"{ID_PREFIX}[{root}] {what}"
    if len(text) <= MAX_ID:
        return text
    return text[: MAX_ID - 17] + "~" + hashlib.sha256(text.encode()).hexdigest()[:16]


def owns(rule_id: str, root: str) -> bool:
    return rule_id.startswith(f"{ID_PREFIX}[{root}] ")


def s3_configuration(policy: Policy, root: str = "") -> dict[str, Any]:
    """The lifecycle configuration (boto3's LifecycleConfiguration, the JSON `aws s3api` takes).

    `root` is the archive's prefix in the bucket, "" or ending with "/"."""
    margin_days = math.ceil(policy.margin_ms / DAY_MS)
    rules: list[dict[str, Any]] = [{
        "ID": _rule_id(root, "housekeeping"),
        "Status": "Enabled",
        "Filter": {"Prefix": root},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": policy.abort_multipart_days},
        "NoncurrentVersionExpiration": {"NoncurrentDays": margin_days},
        "Expiration": {"ExpiredObjectDeleteMarker": True},
    }, {
        "ID": _rule_id(root, "change journal"),
        "Status": "Enabled",
        "Filter": {"Prefix": f"{root}{changes.PREFIX}"},
        "Expiration": {"Days": JOURNAL_DAYS},
    }]  # fmt: skip
    for expiry in expiries(policy):
        prefix = f"{root}{expiry.kind}/"
        if expiry.namespace is None:
            what, rule_filter = expiry.kind, {"Prefix": prefix}
        else:
            tags = [{"Key": "kind", "Value": expiry.kind}, {"Key": "namespace", "Value": expiry.namespace}]
            what = f"{expiry.kind} {expiry.namespace}"
            rule_filter = {"And": {"Prefix": f"{prefix}{expiry.namespace}/", "Tags": tags}}
        rules.append({"ID": _rule_id(root, what), "Status": "Enabled", "Filter": rule_filter,
                      "Expiration": {"Days": expiry.days}})  # fmt: skip
    if len(rules) > MAX_RULES:
        raise ValueError(f"{len(rules)} lifecycle rules: S3 takes at most {MAX_RULES}; name fewer namespaces")
    return {"Rules": rules}


def minio_commands(policy: Policy, target: str, root: str = "") -> list[str]:
    """`mc ilm rule add` commands for the same rules (`target` is ALIAS/BUCKET)."""
    margin_days = math.ceil(policy.margin_ms / DAY_MS)
    lines = [
        "# MinIO aborts incomplete multipart uploads by itself (api stale_uploads_expiry, 24h by default);",
        "# --apply puts the AbortIncompleteMultipartUpload rule through the S3 API instead.",
        f"mc ilm rule add --prefix {shlex.quote(root)} --noncurrent-expire-days {margin_days} --expire-delete-marker "
        f"{shlex.quote(target)}",
        f"mc ilm rule add --prefix {shlex.quote(root + changes.PREFIX)} --expire-days {JOURNAL_DAYS} "
        f"{shlex.quote(target)}",
    ]
    for expiry in expiries(policy):
        prefix = f"{root}{expiry.kind}/"
        if expiry.namespace is None:
            lines.append(f"mc ilm rule add --prefix {shlex.quote(prefix)} --expire-days {expiry.days} "
                         f"{shlex.quote(target)}")  # fmt: skip
        else:
            tags = f"kind={expiry.kind}&namespace={expiry.namespace}"
            lines.append(f"mc ilm rule add --prefix {shlex.quote(prefix + expiry.namespace + '/')} --tags "
                         f"{shlex.quote(tags)} --expire-days {expiry.days} {shlex.quote(target)}")  # fmt: skip
    return lines


def describe(policy: Policy) -> list[str]:
    """One line per expiry: the bucket's days against the app's age."""
    return [
        f"{expiry.kind}{' in ' + expiry.namespace if expiry.namespace else ''}: {expiry.days} days after creation "
        f"(the policy keeps it at most {expiry.app_ms / DAY_MS:g} days after the session's end)"
        for expiry in expiries(policy)
    ]


@dataclass(frozen=True)
class Applied:
    rules: int  # rules of this archive now on the bucket
    kept: list[str]  # IDs of the bucket's other rules, kept as they were
    warnings: list[str]


def apply_configuration(storage: Storage, configuration: dict[str, Any]) -> Applied:
    """Put the rules on the archive's bucket, replacing this archive's earlier ones and keeping any other
    rule of the bucket (a bucket holds one lifecycle configuration, shared by everything in it)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from archive.storage.s3 import S3Storage

    if not isinstance(storage, S3Storage):
        raise StorageError(f"{storage.uri} is a local folder: it has no lifecycle rules (use retention alone)")
    root = f"{storage.prefix}/" if storage.prefix else ""
    client = storage._client  # the archive's own client: same endpoint, credentials and timeouts
    try:
        existing = client.get_bucket_lifecycle_configuration(Bucket=storage.bucket).get("Rules", [])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchLifecycleConfiguration":
            raise _lifecycle_error(storage, "reading", exc) from exc
        existing = []
    except BotoCoreError as exc:
        raise _lifecycle_error(storage, "reading", exc) from exc
    others = [rule for rule in existing if not owns(rule.get("ID", ""), root)]
    warnings = [
        f"the bucket's rule {rule.get('ID')!r} also expires objects of this archive and may act first"
        for rule in others
        if "Expiration" in rule and "Days" in rule["Expiration"] and _overlaps(_prefix_of(rule), root)
    ]
    try:
        client.put_bucket_lifecycle_configuration(
            Bucket=storage.bucket, LifecycleConfiguration={"Rules": others + configuration["Rules"]}
        )
    except (ClientError, BotoCoreError) as exc:
        raise _lifecycle_error(storage, "writing", exc) from exc
    return Applied(len(configuration["Rules"]), [str(rule.get("ID")) for rule in others], warnings)


def _prefix_of(rule: dict[str, Any]) -> str:
    found = rule.get("Filter", {})
    return str(found.get("Prefix", found.get("And", {}).get("Prefix", rule.get("Prefix", ""))))


def _overlaps(prefix: str, root: str) -> bool:
    return prefix.startswith(root) or root.startswith(prefix)


def _lifecycle_error(storage: Storage, action: str, exc: Exception) -> StorageError:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    if code in ("NotImplemented", "MethodNotAllowed", "XNotImplemented"):
        return StorageError(
            f"{storage.uri}: this store does not support bucket lifecycle rules ({code}); print them with "
            "--format and set them by the store's own means, or rely on retention"
        )
    return StorageError(f"{action} the lifecycle configuration of {storage.uri} failed: {exc}")
