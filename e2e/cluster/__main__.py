"""`python -m e2e.cluster up [--control-plane-only] | down | status | env`."""

from __future__ import annotations

import argparse
import sys

from e2e.cluster import launcher


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m e2e.cluster",
        description="A local Kubernetes built from Go modules, for tests and the demo.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the cluster (reuses a running one)")
    up.add_argument(
        "--control-plane-only", action="store_true", help="etcd, API server, controller-manager and scheduler; no node"
    )
    commands.add_parser("down", help="stop the cluster and remove what it made")
    commands.add_parser("status", help="show the components; exit 1 when not healthy")
    commands.add_parser("env", help="print export lines for KUBECONFIG and PATH")
    args = parser.parse_args(argv)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if args.command == "up":
        launcher.up(control_plane_only=args.control_plane_only, log=log)
        print("\n".join(launcher.env_lines()))
    elif args.command == "down":
        launcher.down(log=log)
    elif args.command == "status":
        ok, report = launcher.status()
        print(report)
        return 0 if ok else 1
    elif args.command == "env":
        print("\n".join(launcher.env_lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
