"""The `lambdasink-operator` command line and its kopf settings."""

from __future__ import annotations

import urllib.request

import kopf
import pytest

from lambdasink_operator import __main__ as cli
from lambdasink_operator import handlers, metrics

RESOURCES = {
    "deployments": kopf.Resource("apps", "v1", "deployments", kind="Deployment"),
    "pods": kopf.Resource("", "v1", "pods", kind="Pod"),
    "secrets": kopf.Resource("", "v1", "secrets", kind="Secret"),
    "lambdasinks": kopf.Resource("lambdasink.dev", "v1alpha1", "lambdasinks", kind="LambdaSink"),
}


def test_namespaces_are_repeatable_and_exclusive_with_all_namespaces() -> None:
    args = cli.parse_args(["--namespace", "a", "-n", "b", "--log-level", "debug"])
    assert args.namespaces == ["a", "b"] and not args.all_namespaces
    assert args.log_level == "DEBUG" and args.peering is None  # standalone by default
    args = cli.parse_args(["--all-namespaces", "--peering", "lambdasink", "--metrics-port", "9090"])
    assert args.all_namespaces and args.peering == "lambdasink" and args.metrics_port == 9090
    with pytest.raises(SystemExit):
        cli.parse_args(["--namespace", "a", "--all-namespaces"])
    with pytest.raises(SystemExit):
        cli.parse_args([])  # a scope is required: no accidental cluster-wide operator
    with pytest.raises(SystemExit):
        cli.parse_args(["-n", "a", "--standalone", "--peering", "x"])


def test_runtime_image_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAMBDASINK_RUNTIME_IMAGE", "registry/lambdasink-runtime:9")
    assert cli.parse_args(["-n", "a"]).runtime_image == "registry/lambdasink-runtime:9"
    assert cli.parse_args(["-n", "a", "--runtime-image", "x:1"]).runtime_image == "x:1"


def test_kopf_settings_keep_the_api_footprint_small() -> None:
    settings = kopf.OperatorSettings()
    handlers.configure(settings)
    assert settings.scanning.disabled  # no CRD / namespace list+watch (see RBAC.md)
    assert isinstance(settings.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert isinstance(settings.persistence.diffbase_storage, kopf.AnnotationsDiffBaseStorage)
    # only our Deployments and pods are sent by the API server; every Secret unless narrowed
    selectors = settings.watching.label_selectors
    managed = ["app.kubernetes.io/managed-by=lambdasink-operator"]
    assert selectors.collect(RESOURCES["deployments"]) == managed
    assert selectors.collect(RESOURCES["pods"]) == managed
    assert selectors.collect(RESOURCES["secrets"]) == []
    assert selectors.collect(RESOURCES["lambdasinks"]) == []
    narrowed = kopf.OperatorSettings()
    handlers.configure(narrowed, secret_selector="lambdasink.dev/secret=true")
    assert narrowed.watching.label_selectors.collect(RESOURCES["secrets"]) == [
        "lambdasink.dev/secret=true"
    ]


def test_secret_selector_from_flag_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli.parse_args(["-n", "a"]).secret_selector == ""
    monkeypatch.setenv("LAMBDASINK_OPERATOR_SECRET_SELECTOR", "team=a")
    assert cli.parse_args(["-n", "a"]).secret_selector == "team=a"
    assert cli.parse_args(["-n", "a", "--secret-selector", "x=y"]).secret_selector == "x=y"


def test_no_handler_needs_a_finalizer() -> None:
    """No delete handler, timer or daemon: kopf adds no finalizer; GC removes the Deployment."""
    registry = kopf.get_default_registry()
    assert not registry._spawning.get_all_handlers()
    changing = registry._changing.get_all_handlers()
    assert changing and all(not h.requires_finalizer for h in changing)


def test_metrics_endpoint_serves_prometheus_text() -> None:
    metrics.RECONCILES.labels("ok").inc()
    metrics.DEPLOYMENT_APPLIES.inc()
    server = metrics.serve(0, host="127.0.0.1")
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
        assert "# TYPE lambdasink_operator_reconciles_total counter" in text
        assert 'lambdasink_operator_reconciles_total{result="ok"}' in text
        assert "# TYPE lambdasink_operator_deployment_applies_total counter" in text
        assert "_created" not in text
    finally:
        server.shutdown()
        server.server_close()
