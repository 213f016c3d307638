"""Where each version came from, and which version `kubectl modeldeploy adopt` and `undo`
set next (docs/rollouts.md, "Adopt, undo, and where a version came from").

`adopt` takes the verified candidate a retraining Job reported (status.drift.retraining or
status.quality.retraining); `undo` takes an earlier version from status.history; `history`
shows each version's origin and serving image. Both commands change one thing, spec.model's
uri, sha256 and version, so a version set this way is rolled out and judged like any other.

Pure: a ModelDeployment as a plain dict in, a ModelChange, a refusal (Refused) or text out;
spec_model.py sends the patch, plugin.py prints.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from typing import Any, Literal

import yaml

Obj = dict[str, Any]
Kind = Literal["drift", "quality"]
KINDS: tuple[Kind, ...] = ("drift", "quality")


class Refused(Exception):
    """Why a command would do nothing (or the wrong thing) to this ModelDeployment, and what to do."""


@dataclass(frozen=True)
class ModelChange:
    """What adopt or undo sets spec.model to: the JSON merge patch, and the version in words."""

    version: str
    uri: str
    sha256: str | None
    patch: Obj  # {"spec": {"model": {"uri": ..., "sha256": ..., "version": ...}}}, adopt: and an annotation
    described: str  # "candidate version 8 from fraud-retrain-2 (drift episode 2)"
    note: str = ""  # what else the user should know (another candidate that waits)


def origin_text(origin: Obj | None) -> str:
    """Applied, or Retrained by JOB, drift episode N, from version BASE, data SINCE..UNTIL, ROWS rows."""
    if not origin:
        return "not recorded (an operator before lineage)"
    if origin.get("kind") != "Retrained":
        return "Applied (spec.model set by a user or Git)"
    parts = [f"Retrained by {origin.get('job', '?')}"]
    if origin.get("episode") is not None:
        parts.append(f"{origin.get('episodeKind') or 'drift'} episode {origin['episode']}")
    if origin.get("baseVersion"):
        parts.append(f"from version {origin['baseVersion']}")
    window = origin.get("dataWindow") or {}
    if window:
        parts.append(f"data {window.get('since')}..{window.get('until')}")
    if origin.get("trainedRows") is not None:
        parts.append(f"{origin['trainedRows']} rows")
    return ", ".join(parts)


def image_text(image: str | None) -> str:
    return image or "not recorded"


def stable_lines(status: Obj) -> list[str]:
    """What stable serves now, with its origin and serving image."""
    stable = status.get("stable") or {}
    if not stable.get("version"):
        return []
    uri = (stable.get("model") or {}).get("uri") or stable.get("uri") or ""
    return [
        f"stable serves version {stable['version']}{f', {uri}' if uri else ''}",
        f"  origin  {origin_text(stable.get('origin'))}",
        f"  image   {image_text(stable.get('image'))}",
    ]


def entry_lines(entry: Obj) -> list[str]:
    """A history entry's lineage: where its version came from and the image its canary ran."""
    return [f"  origin  {origin_text(entry.get('origin'))}", f"  image   {image_text(entry.get('image'))}"]


def versions(status: Obj) -> list[str]:
    """The versions status knows, stable's first, then history's newest first, once each."""
    found = [(status.get("stable") or {}).get("version")]
    found += [entry.get("version") for entry in status.get("history") or []]
    return list(dict.fromkeys(str(v) for v in found if v))


def _known(status: Obj) -> str:
    """The versions status knows, for a refusal: "8 (stable), 9, 7"."""
    stable = str((status.get("stable") or {}).get("version"))
    known = [f"{v} (stable)" if v == stable else v for v in versions(status)]
    return ", ".join(known) if known else "none"


def version_record(body: Obj, version: str) -> Obj:
    """`history NAME --version V -o json`: V's newest history entry, or status.stable when
    stable serves V and no rollout of it is recorded (the first version goes straight to stable)."""
    status = body.get("status") or {}
    entry = next((e for e in status.get("history") or [] if str(e.get("version")) == version), None)
    if entry is not None:
        return dict(entry)
    stable = status.get("stable") or {}
    if str(stable.get("version")) == version:
        return dict(stable)
    raise Refused(f"has no version {version} in status.history or status.stable; it has: {_known(status)}")


def _model_patch(uri: str, sha256: str | None, version: str) -> Obj:
    """spec.model's uri, digest and version (a digest of None removes spec.model.sha256); its
    credentialsSecret stays."""
    return {"spec": {"model": {"uri": uri, "sha256": sha256, "version": version}}}


def patch_yaml(change: ModelChange, namespace: str, name: str, command: str) -> str:
    """What --dry-run prints: the spec.model block to commit to the manifest, and the patch."""
    lines = [
        f"# {namespace}/{name}: {command} sets spec.model to {change.described}; nothing was changed (--dry-run).",
        "# Commit this block into the ModelDeployment's manifest (a GitOps tool would revert a patch), or apply it:",
        f"#   kubectl patch mdep {name} -n {namespace} --type=merge -p '{json.dumps(change.patch)}'",
    ]
    if change.sha256 is None:
        lines.append("# sha256: null: this version was rolled out without a digest; drop the field from the manifest.")
    return "\n".join(lines) + "\n" + yaml.safe_dump(change.patch, sort_keys=False).rstrip("\n")


def _same_model(model: Obj, uri: str | None, sha256: str | None, version: str | None = None) -> bool:
    same = model.get("uri") == uri and model.get("sha256") == sha256
    return same and (version is None or str(model.get("version")) == version)


def _retrainings(status: Obj, source: Kind | None) -> list[tuple[Kind, Obj]]:
    kinds = KINDS if source is None else (source,)
    found = [(kind, ((status.get(kind) or {}).get("retraining") or {})) for kind in kinds]
    return [(kind, retraining) for kind, retraining in found if retraining]


def _waiting(retraining: Obj, model: Obj) -> bool:
    candidate = retraining.get("candidate") or {}
    return (
        retraining.get("outcome") == "Succeeded"
        and bool(candidate)
        and retraining.get("adoption") in ("Waiting", None)
        and not _same_model(model, candidate.get("uri"), candidate.get("sha256"))
    )


def _not_adoptable(kind: Kind, retraining: Obj, model: Obj, name: str) -> str:
    """Why this retraining has no candidate to adopt now, and what to do."""
    job, outcome = f"{kind} retraining Job {retraining.get('job')}", retraining.get("outcome")
    candidate = retraining.get("candidate") or {}
    version = candidate.get("version")
    if outcome in ("Pending", "Running"):
        return f"the {job} (episode {retraining.get('episode')}) is {outcome}: adopt once its candidate is verified"
    if outcome == "Verifying":
        return (
            f"the candidate version {version} of the {job} is being verified (its file fetched, its sha256 "
            f"compared): adopt once `kubectl modeldeploy status {name}` shows it Succeeded"
        )
    if outcome in ("Failed", "NotCreated"):
        said = f": {retraining['message']}" if retraining.get("message") else ""
        return (
            f"the {job} {'failed' if outcome == 'Failed' else 'was not created'} ({retraining.get('reason')}){said}; "
            "nothing to adopt until a later episode's Job succeeds"
        )
    adoption = retraining.get("adoption")
    if adoption == "Adopted" or _same_model(model, candidate.get("uri"), candidate.get("sha256")):
        return (
            f"the candidate version {version} of the {job} is adopted already: spec.model names it "
            f"(`kubectl modeldeploy status {name}` shows its rollout)"
        )
    if adoption == "Promoted":
        return f"the candidate version {version} of the {job} was promoted already"
    if adoption == "RolledBack":
        return (
            f"the candidate version {version} of the {job} was rolled back (`kubectl modeldeploy history {name}` "
            "says why) and is not adopted again; a later episode's Job brings a new candidate"
        )
    return f"the {job} is {outcome} with no candidate"


def _trained_until(status: Obj, kind: Kind, retraining: Obj) -> float | None:
    """How recent a candidate is: the end of its data window, else the start of its episode."""
    episode = (status.get(kind) or {}).get("episode") or {}
    texts = [((retraining.get("candidate") or {}).get("dataWindow") or {}).get("until")]
    if episode.get("number") == retraining.get("episode"):
        texts.append(episode.get("startedAt"))
    for text in texts:
        try:
            return datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
        except ValueError:
            continue
    return None


def _newest(status: Obj, waiting: list[tuple[Kind, Obj]]) -> tuple[Kind, Obj]:
    if len(waiting) == 1:
        return waiting[0]
    (first, one), (second, other) = waiting
    when, then = _trained_until(status, first, one), _trained_until(status, second, other)
    if when is None or then is None or when == then:
        shown = " and ".join(f"{kind}'s version {r['candidate'].get('version')}" for kind, r in waiting)
        raise Refused(
            f"has two verified candidates ({shown}) and which is newer cannot be told from status: "
            "choose with --from drift or --from quality"
        )
    return waiting[0] if when > then else waiting[1]


def adoption(body: Obj, source: Kind | None = None) -> ModelChange:
    """The candidate `adopt` sets as spec.model: a verified one (outcome Succeeded) that waits,
    from status.drift or status.quality (`source`); with both waiting, the one trained on the
    newer data (its data window ends later). Refused, with the reason, otherwise."""
    name, status = body["metadata"]["name"], body.get("status") or {}
    model = (body.get("spec") or {}).get("model") or {}
    found = _retrainings(status, source)
    where = f"status.{source}.retraining" if source else "status.drift.retraining or status.quality.retraining"
    if not found:
        raise Refused(
            f"has no retraining candidate: nothing in {where} (spec.drift.retraining creates a Job per drift or "
            "quality episode, and its verified model is the candidate)"
        )
    waiting = [(kind, retraining) for kind, retraining in found if _waiting(retraining, model)]
    if not waiting:
        raise Refused("has no candidate to adopt: " + "; ".join(_not_adoptable(k, r, model, name) for k, r in found))
    kind, retraining = _newest(status, waiting)
    candidate = retraining["candidate"]
    described = (
        f"candidate version {candidate['version']} from {retraining.get('job')} ({kind} episode "
        f"{retraining.get('episode')})"
    )
    canary = status.get("canary")
    if canary:
        raise Refused(
            f"has a rollout under way (version {canary.get('version')}, rollout {canary.get('revision')}): the "
            f"{described} waits until it has ended (`kubectl modeldeploy status {name} --watch`), or abort it first "
            f"(`kubectl modeldeploy abort {name}`)"
        )
    from modeldeploy_operator.api.lineage import Candidate
    from modeldeploy_operator.drift.candidates import adoption_patch  # the patch adopt: Auto sends

    chosen = Candidate(uri=candidate["uri"], sha256=candidate["sha256"], version=str(candidate["version"]))
    other = next(((k, r) for k, r in waiting if k != kind), None)
    note = ""
    if other is not None:
        note = (
            f"{other[0]}'s candidate version {other[1]['candidate'].get('version')} also waits, trained on older "
            f"data (`--from {other[0]}` adopts it instead)"
        )
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    secret = (((body.get("spec") or {}).get("drift") or {}).get("retraining") or {}).get("credentialsSecret")
    had = model.get("credentialsSecret")
    patch = adoption_patch(chosen, str(retraining.get("job")), now, secret, had)  # as adopt: Auto sends it
    return ModelChange(chosen.version, chosen.uri, chosen.sha256, patch, described, note)


def _outcomes(history: list[Obj]) -> str:
    return ", ".join(f"{e.get('version')} {e.get('outcome')}" for e in history) or "nothing"


def undo(body: Obj, to_version: str | None = None) -> ModelChange:
    """The earlier version `undo` sets as spec.model: `to_version`'s newest Promoted history
    entry, or by default the version stable served before the current one (the newest
    Promoted entry of another version than stable's). Only versions that were promoted
    (served all traffic) count. Refused, with the reason, otherwise."""
    name, status = body["metadata"]["name"], body.get("status") or {}
    model = (body.get("spec") or {}).get("model") or {}
    history: list[Obj] = status.get("history") or []
    canary = status.get("canary")
    if canary:
        raise Refused(
            f"has a rollout under way (version {canary.get('version')}, rollout {canary.get('revision')}): "
            f"`kubectl modeldeploy abort {name}` sends all traffic back to stable; undo once it has ended"
        )
    serving = (status.get("stable") or {}).get("version")
    if not serving:
        raise Refused("shows no stable version yet (status.stable.version): nothing to go back from")
    serving = str(serving)
    promoted = [e for e in history if e.get("outcome") == "Promoted"]
    if to_version == serving:
        named = str(model.get("version"))
        held = (
            f"; spec.model names version {named}: set it back to {serving} in the manifest" if named != serving else ""
        )
        raise Refused(f"serves version {serving} on stable now: nothing to undo (it has: {_known(status)}){held}")
    if to_version is None:
        entry = next((e for e in promoted if str(e.get("version")) != serving), None)
        if entry is None:
            raise Refused(
                f"has no earlier promoted version than stable's {serving} in status.history (newest first: "
                f"{_outcomes(history)}; the first version goes straight to stable and is not recorded): "
                f"set spec.model to the version you want"
            )
    else:
        tried = [e for e in history if str(e.get("version")) == to_version]
        if not tried:
            raise Refused(f"has no version {to_version} in status.history; it has: {_known(status)}")
        entry = next((e for e in tried if e.get("outcome") == "Promoted"), None)
        if entry is None:
            back = sorted({str(e.get("version")) for e in promoted} - {serving})
            raise Refused(
                f"never promoted version {to_version} ({_outcomes(tried)}): undo goes back to a version that "
                f"served all traffic ({', '.join(back) or 'none in history'}); set spec.model to try it again"
            )
    version, uri, sha256 = str(entry.get("version")), str(entry.get("uri")), entry.get("sha256")
    if _same_model(model, uri, sha256, version):
        raise Refused(
            f"has spec.model set to version {version} already, and no rollout under way: "
            f"`kubectl modeldeploy retry {name}` tries a rolled back or aborted spec again"
        )
    last = history[0] if history else {}
    if last.get("outcome") != "Promoted" and _same_model(last, uri, sha256, version):
        raise Refused(
            f"rolled version {version} back in its last rollout ({last.get('revision')}: {last.get('reason')}: "
            f"{last.get('message', '')}): the operator holds that spec and would not start it again; set spec.model "
            f"to it and run `kubectl modeldeploy retry {name}` to try it anyway"
        )
    described = f"version {version}, promoted at {entry.get('finishedAt')} (rollout {entry.get('revision')})"
    return ModelChange(version, uri, sha256, _model_patch(uri, sha256, version), described)


def rollout_seen(body: Obj, change: ModelChange, after: int) -> tuple[Literal["waiting", "started", "ended"], str]:
    """`undo --skip-analysis` waiting for the operator: "started" once status.canary is a rollout
    of the version set (numbered after `after`, the last revision before the patch), "ended"
    when that rollout is over already or spec.model was changed again, else "waiting"."""
    status, model = body.get("status") or {}, (body.get("spec") or {}).get("model") or {}
    canary = status.get("canary") or {}
    if (canary.get("revision") or 0) > after and _same_model(canary, change.uri, change.sha256, change.version):
        return "started", f"rollout {canary['revision']} of version {change.version}: {canary.get('message', '')}"
    ended = next((e for e in status.get("history") or [] if (e.get("revision") or 0) > after), None)
    if ended is not None and _same_model(ended, change.uri, change.sha256, change.version):
        why = f"{ended.get('outcome')} ({ended.get('reason')}): {ended.get('message', '')}"
        return "ended", f"rollout {ended.get('revision')} of version {change.version} ended before a promotion: {why}"
    if not _same_model(model, change.uri, change.sha256, change.version):
        return "ended", f"spec.model was changed again meanwhile: it names version {model.get('version')} now"
    return "waiting", str(canary.get("message") or "no rollout yet")


def last_revision(status: Obj) -> int:
    found = [e.get("revision") or 0 for e in status.get("history") or []]
    return max([(status.get("canary") or {}).get("revision") or 0, *found])
