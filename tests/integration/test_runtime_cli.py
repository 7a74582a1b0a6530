"""`lambdasink-runtime` as a user runs it: a subprocess of the installed console script."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from tests.lambda_api import LambdaApi

BIN = Path(sys.executable).parent / "lambdasink-runtime"
SECRET = "wJalrXUtnFEMI-not-a-real-secret"

# Processes of the installed console script against a fake Lambda API; no stack needed.
pytestmark = pytest.mark.integration


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LAMBDASINK_", "AWS_"))}
    base["LAMBDASINK_TERMINATION_LOG"] = os.devnull  # never the real /dev/termination-log
    base.update(env or {})
    return subprocess.run(
        [str(BIN), *args], check=False, capture_output=True, text=True, env=base, timeout=timeout
    )


def config(tmp_path: Path, **sink: object) -> Path:
    doc = {
        "pulsar": {
            "serviceUrl": "pulsar://127.0.0.1:1",
            "topics": ["persistent://public/default/t"],
        },
        "sink": {
            "awsRegion": "us-east-1",
            "lambdaFunctionName": "fn",
            "awsAccessKey": "AKIDEXAMPLE",
            "awsSecretKey": SECRET,
            "payloadFormat": "V2",
            **sink,
        },
        "runtime": {"httpHost": "127.0.0.1", "httpPort": 0},
    }
    path = tmp_path / "sink.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def term_log(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "termination-log"


def test_help_documents_options_and_sections() -> None:
    res = run("--help")
    assert res.returncode == 0
    out = res.stdout
    for text in (
        "--config",
        "--check-config",
        "--log-level",
        "LAMBDASINK_CONFIG",
        "pulsar:",
        "sink:",
        "runtime:",
        "batchMaxBytesSize",
        "subscriptionType",
        "exit codes",
    ):
        assert text in out, text


def test_check_config_prints_redacted_effective_config(tmp_path: Path) -> None:
    res = run("--config", str(config(tmp_path)), "--check-config")
    assert res.returncode == 0, res.stderr
    assert SECRET not in res.stdout + res.stderr
    doc = json.loads(res.stdout)
    assert doc["sink"]["aws_secret_key"] == "<redacted>"
    assert doc["sink"]["payload_format"] == "V2"
    assert doc["sink"]["batch_max_size"] == 10  # defaults are shown
    assert doc["pulsar"]["topics"] == ["persistent://public/default/t"]


def test_config_from_environment_variable(tmp_path: Path) -> None:
    text = config(tmp_path).read_text()
    res = run("--check-config", env={"LAMBDASINK_CONFIG": text})
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["sink"]["lambda_function_name"] == "fn"


def test_bad_config_exits_2_naming_field_value_and_allowed(tmp_path: Path, term_log: Path) -> None:
    path = config(tmp_path, payloadFormat="V3")
    res = run("--config", str(path), env={"LAMBDASINK_TERMINATION_LOG": str(term_log)})
    assert res.returncode == 2
    assert "sink.payloadFormat" in res.stderr and "'V3'" in res.stderr
    assert "V1, V2" in res.stderr
    assert SECRET not in res.stderr
    message = term_log.read_text()
    assert message.count("\n") == 1 and "sink.payloadFormat" in message


def test_check_config_also_rejects_bad_config(tmp_path: Path) -> None:
    res = run("--config", str(config(tmp_path, batchMaxSize=0)), "--check-config")
    assert res.returncode == 2
    assert "sink.batchMaxSize" in res.stderr


def test_missing_config_exits_2(tmp_path: Path, term_log: Path) -> None:
    res = run("--config", str(tmp_path / "absent.yaml"))
    assert res.returncode == 2 and "absent.yaml" in res.stderr
    res = run(env={"LAMBDASINK_TERMINATION_LOG": str(term_log)})
    assert res.returncode == 2 and "LAMBDASINK_CONFIG" in res.stderr
    assert "LAMBDASINK_CONFIG" in term_log.read_text()


def test_missing_function_exits_3_with_termination_message(tmp_path: Path, term_log: Path) -> None:
    with LambdaApi(functions=("other",)) as api:
        path = config(tmp_path, awsEndpoint=api.url, lambdaFunctionName="absent-fn")
        res = run(
            "--config",
            str(path),
            "--log-level",
            "debug",
            env={"LAMBDASINK_TERMINATION_LOG": str(term_log)},
        )
    assert res.returncode == 3, res.stderr
    assert "function check failed" in res.stderr and "'absent-fn' not found" in res.stderr
    assert SECRET not in res.stderr
    assert "'absent-fn'" in term_log.read_text()
    # Logs are single-line and carry a level.
    log_lines = [line for line in res.stderr.splitlines() if " INFO " in line]
    assert log_lines and all(line[:4].isdigit() for line in log_lines)


def test_denied_function_exits_3(tmp_path: Path) -> None:
    with LambdaApi() as api:
        api.denied.add("fn")
        res = run("--config", str(config(tmp_path, awsEndpoint=api.url)))
    assert res.returncode == 3
    assert "denied" in res.stderr and "'fn'" in res.stderr


@pytest.mark.parametrize("broker", ["refusing", "silent"])
def test_sigterm_during_start_up_exits_0(tmp_path: Path, broker: str) -> None:
    # Pulsar at 127.0.0.1:1 refuses connections; a silent listener accepts and never answers,
    # which keeps the client's subscribe blocked in C++ for its whole operation timeout (30 s).
    # Either way the process is still starting when the pod would be deleted, and must exit
    # promptly (it waits for the subscription on a thread, so the signal handler can run).
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    url = "pulsar://127.0.0.1:1"
    if broker == "silent":
        url = f"pulsar://127.0.0.1:{silent.getsockname()[1]}"
    with LambdaApi() as api, silent:
        path = config(tmp_path, awsEndpoint=api.url)
        doc = yaml.safe_load(path.read_text())
        doc["pulsar"]["serviceUrl"] = url
        path.write_text(yaml.safe_dump(doc))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LAMBDASINK_", "AWS_"))}
        env["LAMBDASINK_TERMINATION_LOG"] = os.devnull
        proc = subprocess.Popen(
            [str(BIN), "--config", str(path)],
            env=env,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if "is reachable" in line:
                break
        time.sleep(0.5)  # inside the subscribe
        proc.send_signal(signal.SIGTERM)
        try:
            _, rest = proc.communicate(timeout=10)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, "".join(seen) + rest
    assert "SIGTERM received during start-up" in rest
