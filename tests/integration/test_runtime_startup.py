"""Start-up failures of the runtime process: the exit code and the one clear line on stderr
(and in the termination-message file Kubernetes shows), as a pod's container would end.

Exit codes (runtime/lambdasink_runtime/cli.py): 2 configuration error, 3 function check failed.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from runtime_support import (
    Runtimes,
    free_port,
    runtime_command,
    runtime_config,
    unique,
    unique_topic,
)
from tests.stack import Recorder, Stack

pytestmark = pytest.mark.integration


def fatal_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("lambdasink-runtime: ")]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize("config_in_env", [False, True], ids=["file", "LAMBDASINK_CONFIG"])
def test_payload_format_v3_is_a_configuration_error(
    stack: Stack, runtimes: Runtimes, tmp_path: Path, config_in_env: bool
) -> None:
    cfg = runtime_config(
        stack, "recorder", topics=[unique_topic("rt-bad")], sink={"payloadFormat": "V3"}
    )
    proc = runtimes.process(cfg, config_in_env=config_in_env).start()
    assert proc.wait(30) == 2
    line = fatal_line(proc.stderr())
    assert "configuration error" in line
    assert "sink.payloadFormat" in line and "'V3'" in line and "V1, V2" in line
    assert proc.probe("/readyz")[0] == 0  # it never served
    termination = (tmp_path / f"{proc.name}.termination-log").read_text()
    assert "sink.payloadFormat" in termination


def test_secret_is_not_echoed_in_a_configuration_error(stack: Stack, runtimes: Runtimes) -> None:
    secret = "wJalrXUtnFEMI-K7MDENG-not-for-logs"
    cfg = runtime_config(
        stack,
        "recorder",
        topics=[unique_topic("rt-bad")],
        sink={"awsAccessKey": "AKIAEXAMPLE", "awsSecretKey": secret, "batchMaxSize": 0},
    )
    proc = runtimes.process(cfg).start()
    assert proc.wait(30) == 2
    line = fatal_line(proc.stderr())
    assert "sink.batchMaxSize" in line and "0" in line
    assert secret not in proc.stderr() + proc.stdout()


def test_unparsable_document_is_a_configuration_error(stack: Stack, runtimes: Runtimes) -> None:
    proc = runtimes.process("pulsar: [unclosed\nsink: {", name="garbled").start()
    assert proc.wait(30) == 2
    assert "configuration error" in fatal_line(proc.stderr())


def test_missing_function_fails_the_function_check(stack: Stack, runtimes: Runtimes) -> None:
    missing = unique("no-such-function")
    cfg = runtime_config(stack, missing, topics=[unique_topic("rt-missing")])
    proc = runtimes.process(cfg).start()
    assert proc.wait(60) == 3
    line = fatal_line(proc.stderr())
    assert "function check failed" in line
    assert missing in line and "not found" in line


def test_unreachable_lambda_endpoint_fails_the_function_check(
    stack: Stack, runtimes: Runtimes
) -> None:
    closed = free_port()  # nothing listens there
    cfg = runtime_config(
        stack,
        "recorder",
        topics=[unique_topic("rt-unreachable")],
        sink={"awsEndpoint": f"http://127.0.0.1:{closed}", "invokeTimeoutMs": 2000},
    )
    proc = runtimes.process(cfg).start()
    assert proc.wait(90) == 3
    line = fatal_line(proc.stderr())
    assert "function check failed" in line
    assert "cannot check lambda function 'recorder'" in line
    assert f"127.0.0.1:{closed}" in line


def test_check_config_prints_the_effective_configuration_redacted(
    stack: Stack, runtimes: Runtimes, tmp_path: Path
) -> None:
    """Not a failure, but the same start-up path: --check-config validates and exits 0."""
    cfg = runtime_config(
        stack,
        "recorder",
        topics=[unique_topic("rt-ok")],
        sink={"awsAccessKey": "AKIAEXAMPLE", "awsSecretKey": "s3cr3t-value"},
    )
    path = tmp_path / "check.json"
    path.write_text(json.dumps(cfg))
    out = subprocess.run(
        [*runtime_command(), "--config", str(path), "--check-config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    effective = json.loads(out.stdout)
    assert effective["sink"]["payload_format"] == "V2"
    assert effective["sink"]["aws_secret_key"] == "<redacted>"
    assert "s3cr3t-value" not in out.stdout + out.stderr


def test_second_exclusive_consumer_exits_with_the_brokers_reason(
    stack: Stack, runtimes: Runtimes, recorder: Recorder
) -> None:
    """Two replicas of a sink with an Exclusive subscription: the second cannot subscribe and
    exits 1 (any other error) naming the broker's reason, rather than running unready."""
    cfg = runtime_config(
        stack,
        recorder.function,
        topics=[unique_topic("rt-exclusive")],
        pulsar={"subscriptionType": "Exclusive"},
    )
    first = runtimes.start(cfg)
    second = runtimes.process(cfg).start()
    assert second.wait(60) == 1
    line = fatal_line(second.stderr())
    assert "cannot subscribe" in line and "ConsumerBusy" in line
    assert first.probe("/readyz")[0] == 200
    assert first.terminate() == 0
