"""Where AWS credentials come from: static keys, default chain, reference plugins, assume-role.

STS is the fake in lambda_api.py (no real STS runs locally); boto3's real STS client, XML
parsing and refreshable-credentials machinery run against it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from botocore.credentials import Credentials, RefreshableCredentials
from tests.lambda_api import LambdaApi

from lambdasink_runtime import credentials
from lambdasink_runtime.config import (
    PLUGIN_DEFAULT_CHAIN,
    PLUGIN_STS_ASSUME_ROLE,
    SinkConfig,
)
from lambdasink_runtime.errors import ConfigError
from lambdasink_runtime.invoker import Invoker


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    for var in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", f"{tmp_path}/none")
    monkeypatch.setenv("AWS_CONFIG_FILE", f"{tmp_path}/none")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def sts() -> Iterator[LambdaApi]:
    with LambdaApi() as api:
        yield api


def sink(**kw: object) -> SinkConfig:
    return SinkConfig(aws_region="us-east-1", lambda_function_name="fn", **kw)  # type: ignore[arg-type]


def keys_of(cfg: SinkConfig, **kw: object) -> tuple[str | None, str | None, str | None]:
    creds = credentials.session_for(cfg, **kw).get_credentials()  # type: ignore[arg-type]
    assert creds is not None
    frozen = creds.get_frozen_credentials()
    return frozen.access_key, frozen.secret_key, frozen.token


def test_static_keys() -> None:
    assert keys_of(sink(aws_access_key="AKIA1", aws_secret_key="s1")) == ("AKIA1", "s1", None)


def test_keys_from_a_mounted_directory_follow_a_rotation(tmp_path: Path) -> None:
    """The kubelet swaps a mounted Secret's files atomically (a new `..data` symlink); each
    signature then uses the new keys, without a new session."""

    def mount(version: str, access: str, secret: str) -> None:
        data = tmp_path / version
        data.mkdir()
        (data / "accessKeyId").write_text(access + "\n")
        (data / "secretAccessKey").write_text(secret)
        tmp_link = tmp_path / "..data_tmp"
        tmp_link.symlink_to(data.name)
        tmp_link.replace(tmp_path / "..data")
        for name in ("accessKeyId", "secretAccessKey"):
            if not (tmp_path / name).is_symlink():
                (tmp_path / name).symlink_to(f"..data/{name}")

    mount("v1", "AKIA1", "s1")
    cfg = sink(aws_credentials_directory=str(tmp_path))
    creds = credentials.session_for(cfg).get_credentials()
    assert creds is not None
    assert creds.get_frozen_credentials()[:2] == ("AKIA1", "s1")
    mount("v2", "AKIA2", "s2")
    assert creds.get_frozen_credentials()[:2] == ("AKIA2", "s2")
    assert "files in" in credentials.describe(cfg)


def test_a_credentials_directory_without_the_files_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        credentials.session_for(sink(aws_credentials_directory=str(tmp_path)))
    assert err.value.field == "awsCredentialsDirectory"
    assert "accessKeyId" in str(err.value)


def test_default_chain_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "envsecret")
    assert keys_of(sink())[:2] == ("AKIAENV", "envsecret")
    assert credentials.describe(sink()) == "default AWS chain"


def test_default_chain_web_identity_is_configured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    # IRSA: botocore's own web-identity provider is part of the chain we hand over.
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/irsa")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", f"{tmp_path}/token")
    session = credentials.session_for(sink())
    resolver = session.botocore_session.get_component("credential_provider")
    assert resolver.get_provider("assume-role-with-web-identity") is not None


def test_reference_default_plugin_with_json_keys() -> None:
    cfg = sink(
        aws_credential_plugin_name=PLUGIN_DEFAULT_CHAIN,
        aws_credential_plugin_param=json.dumps({"accessKey": "AKIAP", "secretKey": "ps"}),
    )
    assert keys_of(cfg)[:2] == ("AKIAP", "ps")


def test_default_plugin_param_without_plugin_name() -> None:
    cfg = sink(aws_credential_plugin_param=json.dumps({"accessKey": "AKIAQ", "secretKey": "qs"}))
    assert keys_of(cfg)[:2] == ("AKIAQ", "qs")
    assert "secret" not in credentials.describe(cfg).lower().replace("static keys", "")


def test_kinesis_package_alias_is_accepted() -> None:
    cfg = sink(
        aws_access_key="AKIA1",
        aws_secret_key="s1",
        aws_credential_plugin_name="org.apache.pulsar.io.kinesis.AwsDefaultProviderChainPlugin",
    )
    # Default-chain plugin without JSON keys: the static keys are not used by this plugin.
    session = credentials.session_for(cfg)
    assert session.region_name == "us-east-1"


def test_sts_plugin_assumes_role_with_external_id(
    sts: LambdaApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = sink(
        aws_credential_plugin_name=PLUGIN_STS_ASSUME_ROLE,
        aws_credential_plugin_param=json.dumps(
            {"roleArn": "arn:aws:iam::1:role/r", "roleSessionName": "sess", "externalId": "ext"}
        ),
    )
    # The base identity (default chain) signs the STS call.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIABASE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "base")
    access, secret, token = keys_of(cfg, sts_endpoint=sts.url)
    assert (access, secret, token) == ("ASIAFAKE0001", "assumed-secret-1", "assumed-token-1")
    assert "AKIABASE" in sts.requests[0].headers["authorization"]
    (call,) = sts.assume_role_calls
    assert call["Action"] == "AssumeRole"
    assert (call["RoleArn"], call["RoleSessionName"], call["ExternalId"]) == (
        "arn:aws:iam::1:role/r",
        "sess",
        "ext",
    )


def test_assume_role_extension_on_static_keys_is_refreshed(sts: LambdaApi) -> None:
    cfg = sink(
        aws_access_key="AKIABASE",
        aws_secret_key="base",
        aws_assume_role_arn="arn:aws:iam::1:role/target",
        aws_assume_role_session_name="worker",
        aws_assume_role_external_id="xid",
    )
    sts.sts_ttl_s = 60  # within botocore's refresh window: every use refreshes
    creds = credentials.session_for(cfg, sts_endpoint=sts.url).get_credentials()
    assert isinstance(creds, RefreshableCredentials)
    assert creds.get_frozen_credentials().access_key == "ASIAFAKE0001"
    assert creds.get_frozen_credentials().access_key == "ASIAFAKE0002"
    assert len(sts.assume_role_calls) == 2
    assert "AKIABASE" in sts.requests[0].headers["authorization"]
    assert sts.assume_role_calls[0]["ExternalId"] == "xid"
    assert "assume role arn:aws:iam::1:role/target" in credentials.describe(cfg)


def test_assumed_credentials_sign_the_lambda_calls(sts: LambdaApi) -> None:
    cfg = sink(
        aws_access_key="AKIABASE",
        aws_secret_key="base",
        aws_assume_role_arn="arn:aws:iam::1:role/target",
        aws_endpoint=sts.url,
    )
    session = credentials.session_for(cfg, sts_endpoint=sts.url)
    inv = Invoker(cfg, session=session)
    try:
        inv.check_function()
    finally:
        inv.close()
    get = next(r for r in sts.requests if r.method == "GET")
    assert "Credential=ASIAFAKE0001/" in get.headers["authorization"]
    assert get.headers["x-amz-security-token"] == "assumed-token-1"


class StaticPlugin:
    """A custom provider following the documented protocol."""

    def __init__(self, param: str) -> None:
        self.param = json.loads(param)

    def credentials(self) -> Credentials:
        return Credentials(self.param["id"], self.param["secret"], "tok")


class RotatingPlugin:
    def __init__(self, param: str) -> None:
        self.n = 0

    def credentials(self) -> Credentials:
        self.n += 1
        expiry = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        return RefreshableCredentials.create_from_metadata(
            {"access_key": f"AKROT{self.n}", "secret_key": "r", "token": "", "expiry_time": expiry},
            refresh_using=lambda: {},
            method="custom",
        )


def test_python_plugin_module_class() -> None:
    cfg = sink(
        aws_credential_plugin_name=f"{__name__}:StaticPlugin",
        aws_credential_plugin_param=json.dumps({"id": "AKIAPY", "secret": "pys"}),
    )
    assert keys_of(cfg) == ("AKIAPY", "pys", "tok")


def test_python_plugin_may_return_refreshable_credentials() -> None:
    cfg = sink(aws_credential_plugin_name=f"{__name__}:RotatingPlugin")
    assert keys_of(cfg)[0] == "AKROT1"


def test_python_plugin_import_failure_is_a_config_error() -> None:
    cfg = sink(aws_credential_plugin_name="no_such_module_xyz:Provider")
    with pytest.raises(ConfigError, match="awsCredentialPluginName"):
        credentials.session_for(cfg)


class NoMethodPlugin:
    def __init__(self, param: str) -> None:
        self.param = param


def test_python_plugin_without_credentials_method() -> None:
    cfg = sink(aws_credential_plugin_name=f"{__name__}:NoMethodPlugin")
    with pytest.raises(ConfigError, match="credentials"):
        credentials.session_for(cfg)


def test_python_plugin_failing_init_hides_the_param() -> None:
    cfg = sink(aws_credential_plugin_name="json:JSONDecoder", aws_credential_plugin_param="s3cr3t")
    with pytest.raises(ConfigError, match="awsCredentialPluginName") as info:
        credentials.session_for(cfg)
    assert "s3cr3t" not in str(info.value)


def test_sts_plugin_without_role_is_a_config_error_without_secrets() -> None:
    cfg = sink(
        aws_credential_plugin_name=PLUGIN_STS_ASSUME_ROLE,
        aws_credential_plugin_param=json.dumps({"roleSessionName": "s", "secretKey": "hidden"}),
    )
    with pytest.raises(ConfigError) as info:
        credentials.session_for(cfg)
    assert "hidden" not in str(info.value)
