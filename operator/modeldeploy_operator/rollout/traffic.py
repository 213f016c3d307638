"""Canary weights without a mesh: how many canary pods a weight needs, and what it achieves.

Without an HTTPRoute, the Service spreads requests over every ready pod of both tracks, so
the weight a canary gets is its share of the serving pods. The stable Deployment keeps all
its replicas (capacity never drops during a rollout) and the canary gets the fewest pods
whose share comes closest to the requested weight, at least one. With one stable replica,
10% cannot be had: one canary pod beside one stable pod is 50%, and status says so.

With an HTTPRoute the weights are exact (the user's Gateway enforces them), so the canary's
pods need not approximate the weight: it gets the capacity its share of the traffic needs,
the stable replica count times the weight, rounded up, at least one.
"""

from __future__ import annotations

import math


def canary_replicas(stable_replicas: int, weight: int) -> int:
    """Canary pods beside `stable_replicas` stable ones for a share nearest `weight` percent."""
    if weight <= 0:
        return 0
    if weight >= 100 or stable_replicas == 0:
        return max(stable_replicas, 1)
    wanted = stable_replicas * weight / (100 - weight)
    return max(1, math.floor(wanted + 0.5))


def canary_replicas_for_route(stable_replicas: int, weight: int) -> int:
    """Canary pods for `weight` percent of the traffic when an HTTPRoute sets the weight exactly."""
    if weight <= 0:
        return 0
    return max(1, math.ceil(stable_replicas * weight / 100))


def achieved_weight(stable_serving: int, canary_serving: int) -> int:
    """The canary's share of the pods taking traffic, in whole percent."""
    total = stable_serving + canary_serving
    return 0 if total == 0 else math.floor(100 * canary_serving / total + 0.5)


def weight_note(requested: int, achieved: int, stable_serving: int, canary_serving: int) -> str:
    """Say plainly when the achieved weight is not the requested one, and why."""
    if requested == achieved:
        return f"{achieved}% of traffic"
    return (
        f"{requested}% requested, {achieved}% achieved: {canary_serving} canary pod(s) beside {stable_serving} "
        "stable; weights come from pod counts (more replicas, or spec.rollout.traffic.httpRoute, get closer)"
    )


def route_note(requested: int, on_route: int | None, route: str) -> str:
    """What the HTTPRoute's weights say, read back, against the step's weight."""
    if on_route == requested:
        return f"{requested}% of traffic (exact, set on HTTPRoute {route})"
    shown = "no weight" if on_route is None else f"{on_route}%"
    return f"{requested}% requested, HTTPRoute {route} shows {shown} for the canary"
