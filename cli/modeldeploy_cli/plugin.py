"""`kubectl modeldeploy`: watch and steer rollouts from the command line.

    kubectl modeldeploy status NAME [--watch]   owner, steps, weights, each check's value and limit, history
    kubectl modeldeploy history NAME            every finished rollout, its evidence, origin and image
    kubectl modeldeploy promote NAME [--full]   the next step now, or skip the rest and promote
    kubectl modeldeploy abort NAME              all traffic back to stable, the canary removed
    kubectl modeldeploy retry NAME              try a rolled back or aborted spec again
    kubectl modeldeploy pause NAME / resume NAME
    kubectl modeldeploy adopt NAME              spec.model set to the verified retraining candidate
    kubectl modeldeploy undo NAME               spec.model set to the version stable served before

kubectl runs any `kubectl-NAME` on PATH as `kubectl NAME`; this is the console script
`kubectl-modeldeploy` (installed with the [operator] extra). It reads ModelDeployments and
sets annotations on them (modeldeploy.dev/promote and so on, each a timestamp the operator
acts on once); only `adopt` and `undo` change the spec, and only spec.model's uri, sha256
and version (spec_model.py; with --dry-run they print the change for a GitOps manifest
instead). It never writes status. Exit codes: 0 done, 1 the resource or the cluster refused
(no such resource, no rollout to promote or abort, nothing to retry, adopt or undo; undo
--skip-analysis saw no rollout in time), 2 bad usage.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

from modeldeploy_operator.api.base import parse_duration

from modeldeploy_cli import resources, spec_model
from modeldeploy_cli.lineage import Refused, adoption, entry_lines, stable_lines, undo, version_record
from modeldeploy_cli.resources import ANNOTATIONS

Obj = dict[str, Any]
COUNTDOWN = re.compile(r"judged in \d+s")


def _checks(checks: list[Obj], indent: str = "  ") -> list[str]:
    lines = []
    for check in checks:
        value = check.get("value")
        limit = check.get("limit")
        shown = "-" if value is None else f"{value:g}"
        bound = "" if limit is None else f" (limit {limit:g})"
        lines.append(
            f"{indent}{check.get('check', '?'):<16}{check.get('result', '?'):<13}{shown}{bound}, "
            f"{check.get('samples', 0)} samples: {check.get('message', '')}"
        )
    return lines


def _owner(owner: Obj) -> list[str]:
    """Whom to call (spec.owner), as one line; nothing when the spec names no owner."""
    parts = [f"{key} {owner[key]}" for key in ("team", "contact", "runbook") if owner.get(key)]
    return [f"  owner   {', '.join(parts)}"] if parts else []


def _counted_down(canary: Obj, rollout: Obj, now: float) -> str:
    """The canary's message, its "judged in Ns" counted from the step's start at the moment it
    is printed: status holds the count from when it was last written, which can be a minute old."""
    message: str = canary.get("message", "")
    started = canary.get("stepStartedAt")
    if not started or not COUNTDOWN.search(message):
        return message
    window = (rollout.get("shadow") or {}).get("duration") if canary.get("shadow") else None
    try:
        due = datetime.datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp()
        due += parse_duration(window or rollout.get("interval") or "60s")
    except ValueError:
        return message
    return COUNTDOWN.sub(f"judged in {max(due - now, 0):.0f}s", message)


def render_status(body: Obj, now: float | None = None) -> str:
    """What `kubectl modeldeploy status` prints for one ModelDeployment (`now`: the clock, for the countdown)."""
    now = time.time() if now is None else now
    meta, spec, status = body["metadata"], body.get("spec") or {}, body.get("status") or {}
    stable, canary = status.get("stable") or {}, status.get("canary")
    ready: Obj = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    lines = [
        f"{meta.get('namespace')}/{meta['name']}: {status.get('phase', 'Unknown')}",
        f"  Ready {ready.get('status', 'Unknown')} {ready.get('reason', '')}: {ready.get('message', '')}",
        *_owner(spec.get("owner") or {}),
        f"  stable  version {stable.get('version', '-')}, {stable.get('readyReplicas', 0)}/"
        f"{stable.get('replicas', 0)} ready, {stable.get('uri', '')}",
    ]
    if (meta.get("annotations") or {}).get(ANNOTATIONS["paused"], "").lower() == "true":
        lines.append("  paused: steps wait until `kubectl modeldeploy resume`")
    if canary and canary.get("shadow"):
        steps = (spec.get("rollout") or {}).get("steps") or []
        fraction = ((spec.get("rollout") or {}).get("shadow") or {}).get("fraction", 1.0)
        lines.append(
            f"  canary  version {canary.get('version')} (rollout {canary.get('revision')}), shadow step before "
            f"step 1 of {len(steps)} {steps}: no live traffic (weight 0%), stable mirrors {fraction:.0%} "
            "of its requests to it"
        )
        lines.append(f"  {_counted_down(canary, spec.get('rollout') or {}, now)}")
        lines += _shadow_summary(canary.get("analysis") or [])
        if canary.get("analysis"):
            lines.append("  checks:")
            lines += _checks(canary["analysis"], "    ")
    elif canary:
        steps = (spec.get("rollout") or {}).get("steps") or []
        lines.append(
            f"  canary  version {canary.get('version')} (rollout {canary.get('revision')}), step "
            f"{canary.get('step', 0) + 1} of {len(steps)} {steps}: weight {canary.get('requestedWeight', 0)}% "
            f"requested, {canary.get('actualWeight', 0)}% achieved"
        )
        lines.append(f"  {_counted_down(canary, spec.get('rollout') or {}, now)}")
        if canary.get("analysis"):
            lines.append("  checks:")
            lines += _checks(canary["analysis"], "    ")
    else:
        lines.append("  canary  none")
    drift = status.get("drift")
    if drift:
        score = (
            "" if drift.get("score") is None else f", score {drift['score']:g} (threshold {drift.get('threshold'):g})"
        )
        lines.append(
            f"  drift   {drift.get('verdict')} by {drift.get('method')} over {drift.get('window')}{score}, "
            f"{drift.get('samples', 0)} rows, at {drift.get('evaluatedAt')}: {drift.get('message', '')}"
        )
        lines += [
            f"    {f['name']:<28}{f['score']:<10g}{'drifted' if f['drifted'] else ''}"
            for f in drift.get("features") or []
        ]
        lines += _response(drift, meta["name"])
    lines += _quality(status.get("quality"), meta["name"])
    history = status.get("history") or []
    if history:
        lines.append("  history (newest first):")
        lines += [_history_line(entry) for entry in history[:3]]
    return "\n".join(lines)


def _shadow_summary(checks: list[Obj]) -> list[str]:
    """The shadow step's paired comparison in one line: agreement and output difference."""
    found = {check.get("check"): check for check in checks}
    agreement, delta = found.get("agreement") or {}, found.get("outputDelta") or {}
    parts = []
    if agreement.get("value") is not None:
        parts.append(f"agreement with stable {agreement['value']:.2%} on {agreement.get('samples', 0)} rows")
    if delta.get("value") is not None:
        parts.append(f"p95 |stable - canary| {delta['value']:g} on {delta.get('samples', 0)} rows")
    if not parts:
        return []
    return [f"  shadow  {', '.join(parts)} (the same requests answered by both versions)"]


def _quality(quality: Obj | None, name: str) -> list[str]:
    """Live quality from labels (spec.feedback): the figure, against the reference, and why."""
    if not quality:
        return []
    if quality.get("accuracy") is not None:
        figure = f"accuracy {quality['accuracy']:.3f}"
    elif quality.get("meanAbsoluteError") is not None:
        figure = f"mean absolute error {quality['meanAbsoluteError']:g}"
    else:
        figure = "no figure"
    reference = ""
    if quality.get("reference") is not None:
        shown = f"{quality['reference']:.3f}" if quality.get("metric") == "accuracy" else f"{quality['reference']:g}"
        reference = f" (reference {shown})"
    line = (
        f"  quality {quality.get('verdict')}: {figure}{reference} on {quality.get('labels', 0)} labels of version "
        f"{quality.get('version', '-')} over {quality.get('window')}, at {quality.get('evaluatedAt')}: "
        f"{quality.get('message', '')}"
    )
    return [line, *_response(quality, name)]


def _response(drift: Obj, name: str) -> list[str]:
    """The drift (or quality) episode and its retraining Job, when there is one."""
    lines = []
    episode = drift.get("episode")
    if episode:
        until = f", ended {episode['endedAt']}" if episode.get("endedAt") else ", still open"
        lines.append(f"  episode {episode.get('number')} since {episode.get('startedAt')}{until}")
    job = drift.get("retraining")
    if job:
        said = f": {job['message']}" if job.get("message") else ""
        reason = f" ({job['reason']})" if job.get("reason") and job.get("outcome") in ("Failed", "NotCreated") else ""
        lines.append(
            f"  retraining Job {job.get('job')} (episode {job.get('episode')}): {job.get('outcome')}{reason}{said}"
        )
        lines += _candidate(job, name)
    return lines


ADOPTION = {
    "Waiting": "waiting: `kubectl modeldeploy adopt {name}` sets it as spec.model",
    "Adopted": "adopted: spec.model names it; its rollout decides",
    "Promoted": "promoted",
    "RolledBack": "rolled back (`kubectl modeldeploy history {name}`): not adopted again",
}


def _candidate(job: Obj, name: str) -> list[str]:
    """The model a retraining Job reported: its version, file, metrics, and where its adoption is."""
    candidate = job.get("candidate")
    if not candidate:
        return []
    metrics = ", ".join(f"{key} {value:g}" for key, value in (candidate.get("metrics") or {}).items())
    if job.get("outcome") == "Verifying":
        state = "being verified (its file fetched, its sha256 compared)"
    elif job.get("outcome") == "Failed":
        state = "not adopted: its check failed"
    else:
        state = ADOPTION.get(job.get("adoption") or "", str(job.get("adoption") or "-")).format(name=name)
    if job.get("adoptedAt"):
        state += f" (set by the operator at {job['adoptedAt']})"
    return [
        f"    candidate version {candidate.get('version')}, {candidate.get('uri')}",
        f"    metrics {metrics or 'none reported'}; {state}",
    ]


def _history_line(entry: Obj) -> str:
    return (
        f"    {entry.get('revision')}: version {entry.get('version')} {entry.get('outcome')} "
        f"by {entry.get('decidedBy')}{' in the shadow step' if entry.get('shadow') else ''} at "
        f"{entry.get('finishedAt')}: {entry.get('reason')}: {entry.get('message', '')}"
    )


def render_history(body: Obj, version: str | None = None, as_json: bool = False) -> str:
    """Every finished rollout with the checks it was decided on, where its version came from
    and the image it ran; first, what stable serves now. `version`: only that version's
    (with `as_json`: its newest entry, or status.stable; lineage.Refused when status has no such version)."""
    name, status = body["metadata"]["name"], body.get("status") or {}
    history: list[Obj] = status.get("history") or []
    if version is not None:
        record = version_record(body, version)  # refuses an unknown version
        if as_json:
            return json.dumps(record, indent=2)
        history = [entry for entry in history if str(entry.get("version")) == version]
    elif as_json:
        return json.dumps(history, indent=2)
    lines = stable_lines(status) if version is None or not history else []
    if not history:
        lines.append(f"{name}: no finished rollouts {f'of version {version} ' if version else ''}yet")
        return "\n".join(lines)
    for entry in history:
        lines.append(_history_line(entry).strip())
        lines.append(f"  started {entry.get('startedAt')}, uri {entry.get('uri')}")
        lines += entry_lines(entry)
        lines += _checks(entry.get("analysis") or [], "  ")
    return "\n".join(lines)


def refusal(command: str, body: Obj) -> str | None:
    """Why a command would do nothing to this ModelDeployment, or None when it would act."""
    status = body.get("status") or {}
    if command in ("promote", "abort") and not status.get("canary"):
        return "has no rollout under way"
    if command == "retry":
        if status.get("canary"):
            return "has a rollout under way: nothing to retry"
        last = (status.get("history") or [{}])[0]
        if last.get("outcome") not in ("RolledBack", "Aborted"):
            return "has no rolled back or aborted rollout to retry"
    return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubectl modeldeploy", description="Watch and steer model rollouts.")
    where = "the namespace (default: the kubeconfig context's)"
    parser.add_argument("-n", "--namespace", help=where)
    # -n is taken after the command too (`status NAME -n NS`, as kubectl takes it); SUPPRESS
    # keeps a value given before the command when none is given after it.
    namespace = argparse.ArgumentParser(add_help=False)
    namespace.add_argument("-n", "--namespace", default=argparse.SUPPRESS, help=where)
    commands = parser.add_subparsers(dest="command", required=True)
    status = commands.add_parser("status", help="the rollout's steps, weights, checks and history", parents=[namespace])
    status.add_argument("name")
    status.add_argument("--watch", "-w", action="store_true", help="print again whenever it changes")
    status.add_argument("--json", action="store_true", help="print status as JSON")
    history = commands.add_parser(
        "history", help="finished rollouts, their evidence, origin and image", parents=[namespace]
    )
    history.add_argument("name")
    history.add_argument("--version", help="only this version (with -o json: its newest history entry, whole)")
    history.add_argument("-o", "--output", choices=["json"], help="print as JSON")
    promote = commands.add_parser(
        "promote", help="go to the next step now (or --full: promote now)", parents=[namespace]
    )
    promote.add_argument("name")
    promote.add_argument("--full", action="store_true", help="skip the remaining steps and promote")
    for command, text in (
        ("abort", "roll back now: all traffic to stable"),
        ("retry", "try a rolled back or aborted spec again"),
        ("pause", "hold the rollout at its step"),
        ("resume", "let a paused rollout go on"),
    ):
        commands.add_parser(command, help=text, parents=[namespace]).add_argument("name")
    adopt = commands.add_parser(
        "adopt", help="set spec.model to the verified retraining candidate", parents=[namespace]
    )
    adopt.add_argument("name")
    adopt.add_argument("--from", dest="source", choices=["drift", "quality"], help="whose candidate (default: newer)")
    adopt.add_argument("--dry-run", action="store_true", help="print the change as YAML; change nothing")
    undo = commands.add_parser("undo", help="set spec.model to an earlier version from history", parents=[namespace])
    undo.add_argument("name")
    undo.add_argument("--to-version", help="the version (default: the one stable served before the current one)")
    undo.add_argument("--dry-run", action="store_true", help="print the change as YAML; change nothing")
    undo.add_argument(
        "--skip-analysis", action="store_true", help="an emergency: promote the rollout at once (promote --full)"
    )
    undo.add_argument("--timeout", type=_seconds, default="5m", help="--skip-analysis: wait this long (default 5m)")
    return parser


def _seconds(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90s, 5m or 1h ({error})") from error


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    import kubernetes

    namespace = args.namespace or "default"
    try:
        client = resources.api()
        namespace = resources.namespace(args.namespace)
        return _run(client, namespace, args)
    except Refused as refused:
        print(f"kubectl modeldeploy {args.command}: {namespace}/{args.name} {refused}", file=sys.stderr)
        return 1
    except kubernetes.client.ApiException as error:
        reason = json.loads(error.body or "{}").get("message", error.reason) if error.body else error.reason
        print(f"kubectl modeldeploy {args.command}: {reason}", file=sys.stderr)
        return 1
    except kubernetes.config.ConfigException as error:
        print(f"kubectl modeldeploy: no cluster to talk to: {error}", file=sys.stderr)
        return 1


def _run(client: Any, namespace: str, args: argparse.Namespace) -> int:
    name = args.name
    if args.command == "status":
        return _status(client, namespace, name, args.watch, args.json)
    if args.command == "history":
        print(render_history(resources.get(client, namespace, name), args.version, args.output == "json"))
        return 0
    if args.command in ("adopt", "undo"):
        return spec_model.change_model(client, _model_request(namespace, args))
    body = resources.get(client, namespace, name)
    refused = refusal(args.command, body)
    if refused:
        print(f"kubectl modeldeploy {args.command}: {namespace}/{name} {refused}", file=sys.stderr)
        return 1
    key = {"promote": "promote-full" if getattr(args, "full", False) else "promote"}.get(args.command, args.command)
    if args.command in ("pause", "resume"):
        paused = "true" if args.command == "pause" else None
        resources.annotate(client, namespace, name, {ANNOTATIONS["paused"]: paused})
    else:
        resources.annotate(client, namespace, name, {ANNOTATIONS[key]: resources.now()})
    print(f"{namespace}/{name}: {args.command}{' --full' if key == 'promote-full' else ''} requested")
    return 0


def _model_request(namespace: str, args: argparse.Namespace) -> spec_model.Request:
    if args.command == "adopt":
        return spec_model.Request("adopt", namespace, args.name, partial(adoption, source=args.source), args.dry_run)
    decide = partial(undo, to_version=args.to_version)
    return spec_model.Request("undo", namespace, args.name, decide, args.dry_run, args.skip_analysis, args.timeout)


def _status(api: Any, namespace: str, name: str, watch: bool, as_json: bool) -> int:
    shown = ""
    while True:
        body = resources.get(api, namespace, name)
        text = json.dumps(body.get("status") or {}, indent=2) if as_json else render_status(body)
        if text != shown:
            if watch and shown:
                print(f"--- {datetime.datetime.now():%H:%M:%S}")
            print(text, flush=True)
            shown = text
        if not watch:
            return 0
        time.sleep(2)


if __name__ == "__main__":
    sys.exit(main())
