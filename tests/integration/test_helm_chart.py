"""The Helm chart rendered with the pinned helm: values, RBAC least privilege, the Deployment.

No cluster: `helm lint` and `helm template` only (tests/cluster/test_helm.py installs it for real).
Integration, not unit: the pinned helm is built from source on a machine that lacks it.
"""

from __future__ import annotations

import json
import re
import tarfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.helm_support import (
    CHART,
    CI_VALUES,
    NAMESPACE,
    REPO,
    Manifest,
    helm,
    kube_version,
    of_kind,
    one,
    render,
    template_text,
)

pytestmark = pytest.mark.integration

CI = {p.name.removesuffix("-values.yaml"): p for p in CI_VALUES}

# Every combination the chart can be configured in, as (values files, --set) pairs.
COMBOS: dict[str, tuple[list[Path], list[str]]] = {
    **{name: ([path], []) for name, path in CI.items()},
    "all-namespaces+metrics": ([CI["all-namespaces"], CI["metrics"]], []),
    "multi-namespace+metrics": ([CI["multi-namespace"], CI["metrics"]], []),
    "no-rbac": ([], ["rbac.create=false"]),
    "existing-sa": ([], ["serviceAccount.create=false", "serviceAccount.name=ops"]),
    "all-namespaces-existing-sa": (
        [CI["all-namespaces"]],
        ["serviceAccount.create=false", "serviceAccount.name=ops"],
    ),
}

RBAC_KINDS = {"Role", "ClusterRole"}


def test_ci_values_files_cover_the_matrix() -> None:
    assert set(CI) == {
        "default",
        "single-namespace",
        "multi-namespace",
        "all-namespaces",
        "metrics",
    }


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "lambda-sink"
    assert chart["type"] == "application"
    assert chart["version"] == "0.1.0"
    assert chart["appVersion"] == project["version"] == "0.1.0"
    assert chart["kubeVersion"].startswith(">=")
    assert len(chart["description"]) > 40


def _value_keys(node: Any, prefix: str = "") -> list[str]:
    keys: list[str] = []
    if isinstance(node, dict):
        for k, v in node.items():
            keys.append(f"{prefix}{k}")
            keys += _value_keys(v, f"{prefix}{k}.")
    return keys


def test_every_values_key_has_a_comment() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    key_line = re.compile(r"^(\s*)([A-Za-z0-9_.\-/]+):(\s|$)")
    found, uncommented = 0, []
    for i, line in enumerate(lines):
        if not key_line.match(line):
            continue
        found += 1
        above = lines[i - 1].strip() if i else ""
        if not above.startswith("#"):
            uncommented.append(line.strip())
    assert uncommented == []
    # The line scan saw every key the YAML parser sees (so none hid from the check).
    assert found == len(_value_keys(yaml.safe_load("\n".join(lines))))


def _schema_paths(schema: dict[str, Any], root: dict[str, Any], prefix: str = "") -> set[str]:
    if "$ref" in schema:
        schema = root["definitions"][schema["$ref"].rsplit("/", 1)[1]]
    for sub in schema.get("allOf", []):
        return _schema_paths(sub, root, prefix) | _schema_paths(
            {k: v for k, v in schema.items() if k != "allOf"}, root, prefix
        )
    out: set[str] = set()
    for k, v in schema.get("properties", {}).items():
        out.add(f"{prefix}{k}")
        out |= _schema_paths(v, root, f"{prefix}{k}.")
    return out


def test_schema_describes_every_top_level_and_nested_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    described = _schema_paths(schema, schema)
    # Free-form objects (security contexts, affinity, label maps) are typed as a whole.
    free_form = ("podSecurityContext.", "securityContext.", "metrics.workers.selector.")
    missing = [k for k in _value_keys(values) if k not in described and not k.startswith(free_form)]
    assert missing == []
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize(
    ("sets", "complaint"),
    [
        (["logLevel=LOUD"], "logLevel"),
        (["watchNamespaces[0]=Not_A_Namespace"], "watchNamespaces"),
        (["watchAllNamespaces=yes"], "watchAllNamespaces"),
        (["watchAllNamespaces=true", "watchNamespaces[0]=team-a"], "watchNamespaces"),
        (["image.pullPolicy=Sometimes"], "pullPolicy"),
        (["health.port=80"], "port"),
        (["replicaCount=2"], "replicaCount"),
        (["metrics.serviceMonitor.interval=often"], "interval"),
    ],
)
def test_wrong_values_fail_before_rendering(sets: list[str], complaint: str) -> None:
    proc = template_text(sets=sets, check=False)
    assert proc.returncode != 0
    assert "schema" in proc.stderr.lower()
    assert complaint in proc.stderr


def test_service_monitor_without_metrics_service_fails() -> None:
    proc = template_text(sets=["metrics.serviceMonitor.enabled=true"], check=False)
    assert proc.returncode != 0
    assert "metrics.enabled or metrics.workers.enabled" in proc.stderr


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=["chart-defaults", *CI])
def test_helm_lint_strict(values: Path | None) -> None:
    args = ["-f", str(values)] if values else []
    proc = helm(
        "lint",
        "--strict",
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        kube_version(),
        *args,
    )
    assert "0 chart(s) failed" in proc.stdout


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Manifest]]:
    return {name: render(files, sets) for name, (files, sets) in COMBOS.items()}


def _rules(objs: list[Manifest]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{o['kind']}/{o['metadata'].get('namespace', '')}/{o['metadata']['name']}", rule)
        for o in objs
        if o["kind"] in RBAC_KINDS
        for rule in o.get("rules", [])
    ]


def test_no_wildcards_in_any_rbac_rule(rendered: dict[str, list[Manifest]]) -> None:
    for combo, objs in rendered.items():
        for where, rule in _rules(objs):
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                assert not any("*" in item for item in rule.get(field, [])), (combo, where, rule)
        text = json.dumps([o for o in objs if o["kind"] in RBAC_KINDS])
        assert "*" not in text, combo


def test_no_rbac_object_grants_escalation_verbs(rendered: dict[str, list[Manifest]]) -> None:
    forbidden = {"delete", "deletecollection", "escalate", "bind", "impersonate", "update"}
    for combo, objs in rendered.items():
        for where, rule in _rules(objs):
            verbs = set(rule["verbs"])
            if rule["resources"] == ["lambdasinks/finalizers"]:
                verbs -= {"update"}  # blockOwnerDeletion needs it (RBAC.md)
            assert not forbidden & verbs, (combo, where, rule)
            assert "rbac.authorization.k8s.io" not in rule["apiGroups"], (combo, where)


def _grants(objs: list[Manifest], kind: str, namespace: str | None) -> set[tuple[str, str, str]]:
    return _flatten(
        [
            rule
            for o in of_kind(objs, kind)
            if namespace is None or o["metadata"]["namespace"] == namespace
            for rule in o["rules"]
        ]
    )


def _flatten(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (g, r, v)
        for rule in rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }


def _rbac_md_rules() -> list[dict[str, Any]]:
    """The rules block under "As rules" in the operator's RBAC.md (the operator's own list)."""
    text = (REPO / "operator" / "lambdasink_operator" / "RBAC.md").read_text()
    section = text.split("## As rules", 1)[1]
    block = section.split("```yaml", 1)[1].split("```", 1)[0]
    rules: list[dict[str, Any]] = yaml.safe_load(block)["rules"]
    return rules


OPERATOR_GRANTS = _flatten(_rbac_md_rules())


def test_rbac_md_lists_what_the_chart_expects() -> None:
    # A sanity anchor, so an empty or unparsable RBAC.md cannot make the comparisons vacuous.
    assert ("apps", "deployments", "create") in OPERATOR_GRANTS
    assert ("lambdasink.dev", "lambdasinks/status", "patch") in OPERATOR_GRANTS
    assert len(OPERATOR_GRANTS) >= 15


@pytest.mark.parametrize(
    ("combo", "namespaces"),
    [
        ("default", [NAMESPACE]),
        ("single-namespace", ["lambdasink-ci-a"]),
        ("multi-namespace", ["lambdasink-ci-a", "lambdasink-ci-b"]),
    ],
)
def test_namespaced_mode_grants_roles_only_in_watched_namespaces(
    rendered: dict[str, list[Manifest]], combo: str, namespaces: list[str]
) -> None:
    objs = rendered[combo]
    roles = of_kind(objs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == sorted(namespaces)
    for ns in namespaces:
        assert _grants(objs, "Role", ns) == OPERATOR_GRANTS
    bindings = of_kind(objs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == sorted(namespaces)
    for b in bindings:
        assert b["subjects"] == [
            {"kind": "ServiceAccount", "name": "ls-lambda-sink", "namespace": NAMESPACE}
        ]
        assert b["roleRef"]["kind"] == "Role"
    # Nothing cluster-scoped: kopf's scanning is off and the operator runs --standalone.
    assert of_kind(objs, "ClusterRole") == []
    assert of_kind(objs, "ClusterRoleBinding") == []
    args = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in args if a.startswith("--namespace")] == [
        f"--namespace={ns}" for ns in namespaces
    ]
    assert "--all-namespaces" not in args


def test_cluster_wide_mode_grants_a_cluster_role_and_no_roles(
    rendered: dict[str, list[Manifest]],
) -> None:
    objs = rendered["all-namespaces"]
    assert of_kind(objs, "Role") == []
    assert of_kind(objs, "RoleBinding") == []
    role = one(objs, "ClusterRole")
    assert role["metadata"]["name"] == "ls-lambda-sink-operator"
    assert _grants(objs, "ClusterRole", None) == OPERATOR_GRANTS
    binding = one(objs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == "ls-lambda-sink-operator"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "ls-lambda-sink", "namespace": NAMESPACE}
    ]
    args = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--all-namespaces" in args
    assert not [a for a in args if a.startswith("--namespace")]


def test_rbac_can_be_left_to_the_user(rendered: dict[str, list[Manifest]]) -> None:
    kinds = {o["kind"] for o in rendered["no-rbac"]}
    assert not kinds & {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
    assert "ServiceAccount" in kinds


@pytest.mark.parametrize("combo", ["existing-sa", "all-namespaces-existing-sa"])
def test_existing_service_account_is_bound_and_used(
    rendered: dict[str, list[Manifest]], combo: str
) -> None:
    objs = rendered[combo]
    assert of_kind(objs, "ServiceAccount") == []
    assert one(objs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops"
    for b in of_kind(objs, "RoleBinding") + of_kind(objs, "ClusterRoleBinding"):
        assert b["subjects"][0]["name"] == "ops"


def test_operator_deployment_defaults(rendered: dict[str, list[Manifest]]) -> None:
    objs = rendered["default"]
    dep = one(objs, "Deployment")
    spec = dep["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == one(objs, "ServiceAccount")["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["image"] == "lambda-sink/operator:0.1.0"
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 10001
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["ports"] == [{"name": "health", "containerPort": 8080, "protocol": "TCP"}]
    assert "--liveness=http://0.0.0.0:8080/healthz" in container["args"]
    assert "--standalone" in container["args"]
    assert "--log-level=INFO" in container["args"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["LAMBDASINK_RUNTIME_IMAGE"] == "lambda-sink/runtime:0.1.0"
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}


def test_values_reach_the_pod() -> None:
    digest = "sha256:" + "a" * 64
    objs = render(
        sets=[
            "logLevel=DEBUG",
            "image.tag=9.9.9",
            f"runtimeImage.digest={digest}",
            "imagePullSecrets[0].name=regcred",
            "nodeSelector.disk=ssd",
            "tolerations[0].key=dedicated",
            "tolerations[0].operator=Exists",
            "priorityClassName=high",
            "health.port=9090",
            "extraEnv[0].name=HTTPS_PROXY",
            "extraEnv[0].value=http://proxy:3128",
        ]
    )
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "lambda-sink/operator:9.9.9"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["LAMBDASINK_RUNTIME_IMAGE"] == f"lambda-sink/runtime@{digest}"
    assert env["HTTPS_PROXY"] == "http://proxy:3128"
    assert "--log-level=DEBUG" in container["args"]
    assert "--liveness=http://0.0.0.0:9090/healthz" in container["args"]
    assert container["ports"][0]["containerPort"] == 9090
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["nodeSelector"] == {"disk": "ssd"}
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert pod["priorityClassName"] == "high"


def test_every_object_carries_the_standard_labels(rendered: dict[str, list[Manifest]]) -> None:
    for combo, objs in rendered.items():
        for o in objs:
            if o["kind"] == "CustomResourceDefinition":
                continue
            labels = o["metadata"]["labels"]
            assert labels["app.kubernetes.io/name"] == "lambda-sink", (combo, o["kind"])
            assert labels["app.kubernetes.io/instance"] == "ls"
            assert labels["app.kubernetes.io/managed-by"] == "Helm"
            assert labels["helm.sh/chart"] == "lambda-sink-0.1.0"
            assert "namespace" in o["metadata"] or o["kind"].startswith("Cluster"), o


def test_metrics_objects_only_when_enabled(rendered: dict[str, list[Manifest]]) -> None:
    default = rendered["default"]
    assert of_kind(default, "Service") == []
    assert of_kind(default, "ServiceMonitor") == []
    args = one(default, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [a for a in args if a.startswith("--metrics-port")]

    objs = rendered["metrics"]
    container = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "--metrics-port=9090" in container["args"]
    assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} in container["ports"]
    services = {
        s["metadata"]["labels"]["lambdasink.dev/metrics"]: s for s in of_kind(objs, "Service")
    }
    assert set(services) == {"operator", "worker"}
    operator_svc, worker_svc = services["operator"], services["worker"]
    assert operator_svc["metadata"]["namespace"] == NAMESPACE
    assert (
        operator_svc["spec"]["selector"]
        == one(objs, "Deployment")["spec"]["selector"]["matchLabels"]
    )
    assert operator_svc["spec"]["ports"][0]["targetPort"] == 9090
    assert worker_svc["spec"]["clusterIP"] == "None"
    assert worker_svc["spec"]["ports"][0]["targetPort"] == 8081
    monitors = of_kind(objs, "ServiceMonitor")
    assert len(monitors) == 2
    for monitor in monitors:
        assert monitor["metadata"]["labels"]["release"] == "prometheus"
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] == "metrics"
        assert endpoint["interval"] == "15s"
        selected = [
            s
            for s in of_kind(objs, "Service")
            if s["metadata"]["namespace"] == monitor["metadata"]["namespace"]
            and set(monitor["spec"]["selector"]["matchLabels"].items())
            <= set(s["metadata"]["labels"].items())
        ]
        assert len(selected) == 1

    multi = rendered["multi-namespace+metrics"]
    workers = [s for s in of_kind(multi, "Service") if s["spec"].get("clusterIP") == "None"]
    assert sorted(s["metadata"]["namespace"] for s in workers) == [
        "lambdasink-ci-a",
        "lambdasink-ci-b",
    ]
    cluster_wide = rendered["all-namespaces+metrics"]
    assert {s["metadata"]["namespace"] for s in of_kind(cluster_wide, "Service")} == {NAMESPACE}


def test_worker_metrics_selector_matches_the_operators_worker_pods() -> None:
    from lambdasink_operator import manifests  # noqa: PLC0415

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    selector = values["metrics"]["workers"]["selector"]
    assert set(selector.items()) <= set(manifests.labels("any-sink").items())
    assert values["metrics"]["workers"]["port"] == 8081


def test_chart_crd_is_the_project_crd() -> None:
    """crds/ holds a symlink to deploy/crds/, so the two cannot drift."""
    project = sorted((REPO / "deploy" / "crds").glob("*.yaml"))
    chart = sorted((CHART / "crds").glob("*.yaml"))
    assert project, "deploy/crds/ holds the LambdaSink CRD"
    assert [p.name for p in project] == [p.name for p in chart]
    for a, b in zip(project, chart, strict=True):
        assert b.is_symlink()
        assert b.resolve() == a.resolve()


def test_packaged_chart_carries_the_crd_content(tmp_path: Path) -> None:
    """helm package follows the symlink: the .tgz holds the CRD itself, not a dangling link."""
    helm("package", str(CHART), "--destination", str(tmp_path))
    (archive,) = tmp_path.glob("lambda-sink-0.1.0.tgz")
    with tarfile.open(archive) as tar:
        member = tar.getmember("lambda-sink/crds/lambdasink.dev_lambdasinks.yaml")
        assert member.isfile()
        extracted = tar.extractfile(member)
        assert extracted is not None
        packaged = extracted.read()
    assert packaged == (REPO / "deploy" / "crds" / "lambdasink.dev_lambdasinks.yaml").read_bytes()


def test_crd_is_rendered_with_include_crds() -> None:
    crds = of_kind(render(), "CustomResourceDefinition")
    assert [c["metadata"]["name"] for c in crds] == ["lambdasinks.lambdasink.dev"]
