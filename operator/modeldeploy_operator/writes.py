"""What this process last wrote, so a lagging watch cache does not cause the same write twice.

A write is echoed back by the watch a little later; a reconcile that runs in between sees
the old object and would send the same thing again. Per resource we keep a digest of what
we sent and the resourceVersion of the object we sent it over: the same digest over the same
resourceVersion means the write is already on its way. Digests only, never whole objects: at
a thousand resources that is most of the operator's memory saved.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]
Key = tuple[str, str]  # namespace, name
Entry = tuple[str, str | None]  # digest of what was sent, resourceVersion it was sent over


def fingerprint(obj: Any) -> str:
    """A short digest of an object."""
    return hashlib.blake2b(json.dumps(obj, sort_keys=True).encode(), digest_size=16).hexdigest()


def resource_version(obj: Obj | None) -> str | None:
    return None if obj is None else (obj.get("metadata") or {}).get("resourceVersion")


@dataclass
class LastWrites:
    """Per resource: applied children by (kind, name), the status, and Ready's last Event."""

    applied: dict[Key, dict[tuple[str, str], Entry]] = field(default_factory=dict)
    statuses: dict[Key, Entry] = field(default_factory=dict)
    written: dict[Key, Obj] = field(default_factory=dict)  # the last status written, while the cache lags
    ready: dict[Key, tuple[str | None, str | None]] = field(default_factory=dict)
    told: dict[Key, set[str]] = field(default_factory=dict)  # one-time Events posted (a retraining's outcome)

    def first_time(self, key: Key, what: str) -> bool:
        """Whether an Event for `what` (e.g. a Job's outcome) is posted now: once per process.
        Two reconciles can both see a transition when the second reads a status from before
        the first one's write (the watch event of a patch made in between)."""
        seen = self.told.setdefault(key, set())
        if what in seen:
            return False
        seen.add(what)
        return True

    def applied_already(self, key: Key, desired: Obj, actual: Obj | None) -> bool:
        last = self.applied.get(key, {}).get((desired["kind"], desired["metadata"]["name"]))
        return last == (fingerprint(desired), resource_version(actual))

    def remember_apply(self, key: Key, desired: Obj, actual: Obj | None) -> None:
        entry = (fingerprint(desired), resource_version(actual))
        self.applied.setdefault(key, {})[(desired["kind"], desired["metadata"]["name"])] = entry

    def forget_apply(self, key: Key, kind: str, name: str) -> None:
        self.applied.get(key, {}).pop((kind, name), None)

    def written_already(self, key: Key, status: Obj, body: Obj) -> bool:
        return self.statuses.get(key) == (fingerprint(status), resource_version(body))

    def remember_status(self, key: Key, status: Obj, body: Obj) -> None:
        self.statuses[key] = (fingerprint(status), resource_version(body))
        self.written[key] = status

    def latest(self, key: Key, body: Obj) -> Obj:
        """The resource as the operator last left it: its own last status write while the
        watch cache still shows the object that write went over (a decision made on the
        older status would undo or repeat it), else the cache's copy."""
        entry, written = self.statuses.get(key), self.written.get(key)
        if entry is None or written is None or entry[1] != resource_version(body):
            self.written.pop(key, None)
            return body
        return {**body, "status": written}

    def forget(self, key: Key) -> None:
        self.applied.pop(key, None)
        self.statuses.pop(key, None)
        self.written.pop(key, None)
        self.ready.pop(key, None)
        self.told.pop(key, None)
