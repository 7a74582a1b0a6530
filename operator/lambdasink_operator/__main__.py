"""`lambdasink-operator`: the kopf operator's command line.

lambdasink-operator --namespace team-a [--namespace team-b] | --all-namespaces
                    [--standalone | --peering NAME] [--liveness http://0.0.0.0:8080/healthz]
                    [--metrics-port 9090] [--runtime-image IMAGE] [--log-level INFO]
                    [--secret-selector LABEL=VALUE]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import kopf

from . import handlers, metrics


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="lambdasink-operator",
        description="Run LambdaSink resources as lambdasink-runtime worker Deployments.",
    )
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        dest="namespaces",
        metavar="NS",
        help="watch this namespace (repeatable)",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="watch every namespace (cluster-wide)"
    )
    peering = parser.add_mutually_exclusive_group()
    peering.add_argument(
        "--standalone",
        action="store_true",
        default=True,
        help="no peering with other operator instances (the default; run one replica)",
    )
    peering.add_argument(
        "--peering",
        metavar="NAME",
        help="coordinate with other instances through kopf's (Cluster)KopfPeering NAME "
        "(needs kopf's peering CRDs, see RBAC.md)",
    )
    parser.add_argument(
        "--liveness",
        metavar="URL",
        help="serve a liveness probe, e.g. http://0.0.0.0:8080/healthz",
    )
    parser.add_argument(
        "--metrics-port", type=int, default=0, help="serve Prometheus /metrics (0: off)"
    )
    parser.add_argument(
        "--runtime-image",
        default=os.environ.get(handlers.ENV_RUNTIME_IMAGE, ""),
        help=f"default worker image (env {handlers.ENV_RUNTIME_IMAGE})",
    )
    parser.add_argument(
        "--secret-selector",
        metavar="SELECTOR",
        default=os.environ.get("LAMBDASINK_OPERATOR_SECRET_SELECTOR", ""),
        help="watch only the Secrets matching this label selector (server-side); a referenced "
        "Secret outside it is still read by name, but its rotation is not noticed (see RBAC.md)",
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("LAMBDASINK_OPERATOR_LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("kubernetes", "urllib3", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, getattr(logging, args.log_level)))
    if args.metrics_port:
        metrics.serve(args.metrics_port)
    kopf.run(
        standalone=args.peering is None,
        peering_name=args.peering,
        clusterwide=bool(args.all_namespaces),
        namespaces=list(args.namespaces or ()),
        liveness_endpoint=args.liveness,
        memo=kopf.Memo(runtime_image=args.runtime_image, secret_selector=args.secret_selector),
        registry=kopf.get_default_registry(),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
