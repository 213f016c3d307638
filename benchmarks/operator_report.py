"""The operator-scale results as markdown: one row per N, the targets, the leak rounds."""

from __future__ import annotations

from typing import Any

TARGET_RATIO = 2.0
TARGET_RSS_MIB = 250
TARGET_IDLE_CPU = 5.0
_CPU_PARTS = ("operator", "bench client", "kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler")


def _mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


def markdown(results: dict[str, Any]) -> str:
    v = results.get("versions", {})
    lines = [
        f"`{results['command']}`",
        "",
        f"kopf {v.get('kopf_in_use', v.get('kopf'))}, kubernetes client {v.get('kubernetes_client')}, "
        f"API server {v.get('kubernetes')}, Python {v.get('python')}, {v.get('cores')} cores ({v.get('cpu')}), "
        f"commit {v.get('commit')}; load average at start {results['loadavg_at_start']}, "
        f"at end {results['loadavg_at_end']}.",
        "",
    ]
    codes = {size["operator"].get("operator_code") for size in results.get("sizes", [])}
    if results.get("leak"):
        codes.add(results["leak"].get("operator_code"))
    codes.discard(None)
    if codes:
        lines += [f"Operator code (commit when each operator started): {', '.join(sorted(codes))}.", ""]
    if results.get("sizes"):
        lines += [
            "| N | floor: 3N writes | operator: apply to done | ratio | ratio vs floor + creating the MDs "
            "| writes / resource (operator metric) | API server: APPLY deploy, APPLY svc, PATCH status, events "
            "| RSS peak | RSS idle | idle CPU | idle writes | load (1, 5, 15 min) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for size in results["sizes"]:
            f, o = size["floor"], size["operator"]
            n = o["n"]
            check = o["server_check"]
            by_kind = ", ".join(f"{k} {v:g}" for k, v in sorted(o["writes_per_resource_by_kind"].items()))
            lines.append(
                f"| {n} | {f['floor_s']} s | {o['done_s']} s (all objects at {o['objects_s']} s) "
                f"| {o['done_s'] / f['floor_s']:.2f} "
                f"| {o['done_s'] / (f['floor_s'] + f['model_deployments_create_s']):.2f} "
                f"| {o['writes_per_resource']} ({by_kind}) "
                f"| {', '.join(f'{v:g}' for v in check.values())} "
                f"| {o['rss_peak_mib']} MiB | {o['rss_idle_mib']} MiB | {o['idle_cpu_percent']}% "
                f"| {o['idle_writes']:g} | {o['loadavg']} |"
            )
        if all("cpu_seconds" in size["floor"] for size in results["sizes"]):
            lines += [
                "",
                "CPU seconds spent while the writes ran (floor) and from the first create to done (operator): "
                "a busy machine stretches wall time far more than CPU time.",
                "",
                "| N | phase | total | " + " | ".join(_CPU_PARTS) + " |",
                "|---|---|---|" + "---|" * len(_CPU_PARTS),
            ]
            for size in results["sizes"]:
                for phase, cpu in (
                    ("floor", size["floor"]["cpu_seconds"]),
                    ("operator", size["operator"]["cpu_seconds_to_done"]),
                ):
                    parts = " | ".join(f"{cpu[p]:g}" if p in cpu else "" for p in _CPU_PARTS)
                    lines.append(f"| {size['floor']['n']} | {phase} | {cpu['total']:g} | {parts} |")
        lines += ["", "Targets:", ""]
        for size in results["sizes"]:
            f, o = size["floor"], size["operator"]
            ratio = o["done_s"] / f["floor_s"]
            lines.append(
                f"- N={o['n']}: time <= {TARGET_RATIO:g}x floor {_mark(ratio <= TARGET_RATIO)} ({ratio:.2f}x); "
                f"zero idle writes {_mark(o['idle_writes'] == 0)}; idle CPU < {TARGET_IDLE_CPU:g}% "
                f"{_mark(o['idle_cpu_percent'] < TARGET_IDLE_CPU)}"
                + (
                    f"; RSS < {TARGET_RSS_MIB} MiB {_mark(o['rss_peak_mib'] < TARGET_RSS_MIB)}"
                    if o["n"] >= 1000
                    else ""
                )
            )
    leak = results.get("leak")
    if leak:
        lines += [
            "",
            f"Leak check: {len(leak['rounds'])} rounds of create {leak['size']} / converge / delete all / gone; "
            f"RSS after start {leak['rss_baseline_mib']} MiB.",
            "",
            "| round | RSS with all present | RSS after all deleted | VmHWM | round time |",
            "|---|---|---|---|---|",
        ]
        for r in leak["rounds"]:
            lines.append(
                f"| {r['round']} | {r['rss_with_all_mib']} MiB | {r['rss_after_delete_mib']} MiB "
                f"| {r['hwm_mib']} MiB | {r['seconds']} s |"
            )
        lines += [
            "",
            f"Growth after delete, first to last round: {leak['growth_first_to_last_round_mib']} MiB "
            f"({leak['growth_per_round_mib']} MiB per round).",
        ]
    return "\n".join(lines) + "\n"
