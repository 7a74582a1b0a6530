"""The node's pod network on this machine: a Linux bridge with a private /24, one per stack.

Several stacks (one per clone) may run on one machine at once, so the bridge name, the subnet,
the CNI network name and the iptables chain are derived from the state directory and kept in
<state>/node/net.json; `up` after a killed `up` finds and reuses them. The bridge's address is
the gateway of the pods AND where the stack binds the services pods must reach (Pulsar, the
Lambda gateway, the kube-apiserver, the kubelet): it is a local address of this machine, so
host-side clients reach it too, and nothing listens on an outside interface.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

from .common import StackError, log, state_dir, write_json

# 10.244.<n>.0/24: <n> from the state dir's hash, the next free one if another stack (or
# anything else on this machine) already routes it.
POOL = ipaddress.IPv4Network("10.244.0.0/16")
# The apiserver's --service-cluster-ip-range and the ClusterIP of the `kubernetes` Service.
SERVICE_CIDR = "10.0.0.0/24"
KUBERNETES_SERVICE_IP = "10.0.0.1"


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
    if check and out.returncode != 0:
        raise StackError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()}")
    return out


def net_file() -> Path:
    return state_dir() / "node" / "net.json"


def routed_subnets() -> set[ipaddress.IPv4Network]:
    nets: set[ipaddress.IPv4Network] = set()
    for line in sh("ip", "-4", "route", "show", "table", "all").stdout.splitlines():
        dest = line.split()[0] if line.split() else ""
        if dest in ("local", "broadcast"):
            dest = line.split()[1]
        try:
            nets.add(ipaddress.IPv4Network(dest, strict=False))
        except ValueError:
            continue
    return nets


def plan() -> dict[str, Any]:
    """This stack's bridge, subnet and names (stable across `up`s of the same state dir)."""
    path = net_file()
    if path.exists():
        saved: dict[str, Any] = json.loads(path.read_text())
        return saved
    ident = hashlib.sha1(str(state_dir()).encode()).hexdigest()[:6]
    taken = routed_subnets()
    subnets = list(POOL.subnets(new_prefix=24))
    start = int(ident, 16) % 250 + 1
    for i in range(250):
        subnet = subnets[(start + i - 1) % 250 + 1]
        if not any(subnet.overlaps(t) for t in taken if t.prefixlen > 0):
            break
    else:
        raise StackError(f"no free /24 in {POOL} for the pod network")
    hosts = list(subnet.hosts())
    result = {
        "id": ident,
        "bridge": f"lsk{ident}",
        "network": f"lambdasink-{ident}",
        "subnet": str(subnet),
        "gateway": str(hosts[0]),
        "rangeStart": str(hosts[9]),
        "rangeEnd": str(hosts[-2]),
        "natChain": f"LSK-{ident.upper()}",
        "serviceCidr": SERVICE_CIDR,
        "kubernetesServiceIp": KUBERNETES_SERVICE_IP,
    }
    write_json(path, result)
    return result


def ensure_bridge(net: dict[str, Any]) -> None:
    """Create the bridge with the gateway address (before any service binds it)."""
    br = net["bridge"]
    if sh("ip", "link", "show", br, check=False).returncode != 0:
        sh("ip", "link", "add", "name", br, "type", "bridge")
        log(f"node: bridge {br} {net['gateway']}/24 created")
    cidr = f"{net['gateway']}/{net['subnet'].split('/')[1]}"
    if cidr not in sh("ip", "-4", "-o", "addr", "show", "dev", br).stdout:
        sh("ip", "addr", "add", cidr, "dev", br)
    sh("ip", "link", "set", br, "up")


def remove_bridge(net: dict[str, Any]) -> bool:
    if sh("ip", "link", "show", net["bridge"], check=False).returncode != 0:
        return False
    sh("ip", "link", "del", net["bridge"])
    return True


def _nat_rules() -> list[str]:
    return sh("iptables", "-w", "-t", "nat", "-S").stdout.splitlines()


def ensure_service_nat(net: dict[str, Any], api_port: int) -> None:
    """The `kubernetes` Service for pods: DNAT its ClusterIP:443 to the apiserver.

    No kube-proxy: its chains (KUBE-SERVICES, ...) are global on a machine, and two stacks'
    kube-proxies would rewrite each other's. The stack's own chain, entered only for packets
    from its own pod subnet, gives in-cluster clients (KUBERNETES_SERVICE_HOST, set by the
    kubelet from the Service) the real apiserver; other Services have no proxy here.
    """
    chain = net["natChain"]
    rules = _nat_rules()
    if f"-N {chain}" not in rules:
        sh("iptables", "-w", "-t", "nat", "-N", chain)
    sh("iptables", "-w", "-t", "nat", "-F", chain)
    sh(
        "iptables", "-w", "-t", "nat", "-A", chain,
        "-d", f"{net['kubernetesServiceIp']}/32", "-p", "tcp", "--dport", "443",
        "-j", "DNAT", "--to-destination", f"{net['gateway']}:{api_port}",
    )  # fmt: skip
    jump = ["PREROUTING", "-s", net["subnet"], "-j", chain]
    if sh("iptables", "-w", "-t", "nat", "-C", *jump, check=False).returncode != 0:
        sh("iptables", "-w", "-t", "nat", "-A", *jump)


def remove_nat(net: dict[str, Any]) -> int:
    """Remove this stack's NAT chain and the portmap plugin's rules for its CNI network."""
    removed = 0
    chains = {net["natChain"]}
    rules = _nat_rules()
    for rule in rules:
        if not rule.startswith("-A "):
            continue
        args = shlex.split(rule)
        target = args[args.index("-j") + 1] if "-j" in args else ""
        if target == net["natChain"] or f'"{net["network"]}"' in rule:
            sh("iptables", "-w", "-t", "nat", "-D", *args[1:], check=False)
            removed += 1
            if target.startswith("CNI-"):
                chains.add(target)
    for chain in sorted(chains):
        if f"-N {chain}" in rules:
            sh("iptables", "-w", "-t", "nat", "-F", chain, check=False)
            sh("iptables", "-w", "-t", "nat", "-X", chain, check=False)
            removed += 1
    return removed


# What every kubelet adds to this machine's tables (shared by all kubelets on it).
KUBELET_CHAINS = {
    "filter": ["KUBE-FIREWALL", "KUBE-KUBELET-CANARY"],
    "mangle": ["KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY"],
    "nat": ["KUBE-KUBELET-CANARY"],
}


def remove_kubelet_chains() -> int:
    """Remove the kubelet's chains (iptables and ip6tables): only when no kubelet runs on this
    machine any more, since another stack's kubelet shares them."""
    removed = 0
    for tool in ("iptables", "ip6tables"):
        for table, chains in KUBELET_CHAINS.items():
            out = sh(tool, "-w", "-t", table, "-S", check=False)
            if out.returncode != 0:
                continue
            rules = out.stdout.splitlines()
            for rule in rules:
                args = shlex.split(rule)
                if rule.startswith("-A ") and "-j" in args and args[args.index("-j") + 1] in chains:
                    sh(tool, "-w", "-t", table, "-D", *args[1:], check=False)
            for chain in chains:
                if f"-N {chain}" in rules:
                    sh(tool, "-w", "-t", table, "-F", chain, check=False)
                    sh(tool, "-w", "-t", table, "-X", chain, check=False)
                    removed += 1
    return removed
