#!/usr/bin/env python3
"""A local node agent: a kubelet stand-in that runs pods as processes on this machine.

The local stack has an apiserver and controller-manager but no kubelet, so pods would stay
Pending. This agent registers a Node, binds pending pods to it, runs each container's command
as a local process with the pod's environment, reports real pod status (probes, restarts,
termination messages) and stops the processes when pods are deleted.  Development tool only.

    python dev/node_agent.py run   --kubeconfig .stack/kubeconfig      # foreground
    python dev/node_agent.py start --kubeconfig .stack/kubeconfig      # background, waits Ready
    python dev/node_agent.py stop                                      # SIGTERM; pods stop
    python dev/node_agent.py status

Pod logs: .stack/pods/<namespace>_<pod>.log; agent log: .stack/node-agent/<node>.log.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from node_agent_lib import control, podspec
from node_agent_lib.agent import NodeAgent
from node_agent_lib.kube import Kube
from node_agent_lib.runner import AgentSettings

REPO_ROOT = Path(__file__).resolve().parents[1]


def pod_path() -> str:
    """PATH for pods: the project's venv first, so `lambdasink-runtime` / `python` resolve there."""
    venv_bin = REPO_ROOT / ".venv" / "bin"
    here = Path(sys.executable).parent
    parts = [str(venv_bin), str(here), os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")]
    return os.pathsep.join(dict.fromkeys(p for p in parts if p))


def image_table(overrides: list[str]) -> dict[str, tuple[list[str], list[str]]]:
    table: dict[str, tuple[list[str], list[str]]] = {
        k: (v, []) for k, v in podspec.DEFAULT_IMAGE_ENTRYPOINTS.items()
    }
    table.update(podspec.dockerfile_entrypoints(REPO_ROOT / "deploy" / "docker"))
    for item in overrides:
        key, _, cmd = item.partition("=")
        table[key] = (shlex.split(cmd), [])
    return table


def cmd_run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(threadName)s: %(message)s",
    )
    labels = dict(item.split("=", 1) for item in args.node_label)
    settings = AgentSettings(
        node_name=args.node_name,
        state_dir=Path(args.state_dir).resolve(),
        repo_root=REPO_ROOT,
        path=pod_path(),
        image_table=image_table(args.image_map),
        backoff_base=args.backoff_base,
        backoff_max=args.backoff_max,
    )
    logging.getLogger("node-agent").info(
        "images: %s", {k: v[0] for k, v in settings.image_table.items()}
    )
    agent = NodeAgent(
        Kube(args.kubeconfig),
        settings,
        namespace=args.namespace,
        pod_selector=args.pod_selector,
        namespace_selector=args.namespace_selector,
        node_labels=labels,
    )
    agent.delete_node_on_exit = args.delete_node_on_exit

    def on_signal(signum: int, _frame: object) -> None:
        logging.getLogger("node-agent").info("signal %d: stopping", signum)
        agent.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agent.run(Path(args.ready_file) if args.ready_file else None)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    default_kc = str(control.DEFAULT_STATE_DIR / "kubeconfig")
    for name in ("run", "start"):
        p = sub.add_parser(
            name, help=f"{name} the agent ({'foreground' if name == 'run' else 'background'})"
        )
        p.add_argument("--kubeconfig", default=default_kc, help="admin kubeconfig of the stack")
        p.add_argument("--node-name", default=control.DEFAULT_NODE)
        p.add_argument("--state-dir", default=str(control.DEFAULT_STATE_DIR))
        p.add_argument("--namespace", help="only pods of this namespace (default: all)")
        p.add_argument("--pod-selector", help="only pods matching this label selector")
        p.add_argument(
            "--namespace-selector",
            help="only pods of namespaces whose labels match this selector (e.g. k=v)",
        )
        p.add_argument(
            "--node-label",
            action="append",
            default=[],
            metavar="K=V",
            help="extra Node label (pods with a nodeSelector go only to matching nodes)",
        )
        p.add_argument(
            "--image-map",
            action="append",
            default=[],
            metavar="IMAGE=CMD",
            help="entrypoint for images whose name ends with IMAGE (besides deploy/docker/)",
        )
        p.add_argument("--backoff-base", type=float, default=2.0, help="crash back-off start (s)")
        p.add_argument("--backoff-max", type=float, default=60.0, help="crash back-off cap (s)")
        p.add_argument("--delete-node-on-exit", action="store_true")
        p.add_argument("--ready-file", help=argparse.SUPPRESS)
        p.add_argument("-v", "--verbose", action="store_true")
    for name in ("stop", "status"):
        p = sub.add_parser(name)
        p.add_argument("--node-name", default=control.DEFAULT_NODE)
        p.add_argument("--state-dir", default=str(control.DEFAULT_STATE_DIR))
        if name == "stop":
            p.add_argument("--all", action="store_true", help="every agent of this state dir")
    args = parser.parse_args(argv)
    state_dir = Path(args.state_dir).resolve()
    if args.command == "run":
        return cmd_run(args)
    if args.command == "start":
        passthrough = [a for a in (argv if argv is not None else sys.argv[1:])[1:]]
        for flag in ("--kubeconfig", "--node-name", "--state-dir"):
            if flag in passthrough:
                i = passthrough.index(flag)
                del passthrough[i : i + 2]
        handle = control.start(
            Path(args.kubeconfig),
            node=args.node_name,
            state_dir=state_dir,
            extra_args=passthrough,
        )
        print(f"node agent {handle.node_name} running (pid {handle.pid}); log {handle.log_file}")
        return 0
    if args.command == "stop" and args.all:
        nodes = control.stop_all(state_dir=state_dir)
        print(f"stopped node agent(s): {', '.join(nodes) or 'none was running'}")
        return 0
    if args.command == "stop":
        was = control.stop(node=args.node_name, state_dir=state_dir)
        print(f"node agent {args.node_name} {'stopped' if was else 'was not running'}")
        return 0
    pid = control.running(state_dir, args.node_name)
    print(f"node agent {args.node_name}: {'running, pid ' + str(pid) if pid else 'not running'}")
    return 0 if pid else 1


if __name__ == "__main__":
    sys.exit(main())
