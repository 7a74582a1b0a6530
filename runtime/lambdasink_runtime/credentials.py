"""Where the AWS credentials come from: static keys, the default chain, assume-role, plugins.

Resolution order (first match wins):

1. `awsCredentialPluginName` set:
   - `...AwsDefaultProviderChainPlugin` (the reference's Java class, any package): the default
     chain, or static keys if `awsCredentialPluginParam` is JSON `{"accessKey","secretKey"}`.
   - `...STSAssumeRoleProviderPlugin`: assume `{"roleArn","roleSessionName"}` (+ our optional
     `"externalId"`) with the default chain as the base identity.
   - `module.path:ClassName`: a Python provider (see `CredentialPlugin`).
2. `awsAccessKey` + `awsSecretKey`: static keys.
2b. `awsCredentialsDirectory`: static keys from the files `accessKeyId` and `secretAccessKey`
   there (a mounted Secret), read again whenever either file changes.
3. `awsCredentialPluginParam` JSON `{"accessKey","secretKey"}` (the reference's default plugin).
4. Otherwise the default AWS chain: environment, web identity (IRSA), shared files, container
   and instance metadata.

`awsAssumeRoleArn` (optional `awsAssumeRoleSessionName`, `awsAssumeRoleExternalId`) then wraps
the result: STS AssumeRole with refreshable credentials, renewed before they expire.
"""

from __future__ import annotations

import importlib
import json
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import boto3
import botocore.session
from botocore.credentials import (
    CredentialProvider,
    CredentialResolver,
    Credentials,
    DeferredRefreshableCredentials,
)

from .config_sink import AWS_ACCESS_KEY_FILE, AWS_SECRET_KEY_FILE
from .errors import ConfigError

if TYPE_CHECKING:
    from .config import SinkConfig

JAVA_DEFAULT_PLUGIN = "AwsDefaultProviderChainPlugin"
JAVA_STS_PLUGIN = "STSAssumeRoleProviderPlugin"
DEFAULT_SESSION_NAME = "lambdasink"
PLUGIN_FIELD = "awsCredentialPluginName"
PARAM_FIELD = "awsCredentialPluginParam"


@runtime_checkable
class CredentialPlugin(Protocol):
    """A custom provider named `module.path:ClassName` in `awsCredentialPluginName`.

    The class is constructed once with `awsCredentialPluginParam` (a string, often JSON) and
    `credentials()` is called whenever botocore needs credentials; return a
    `botocore.credentials.Credentials` (or `RefreshableCredentials`, which botocore renews).
    """

    def __init__(self, param: str) -> None: ...

    def credentials(self) -> Credentials: ...


class _FixedProvider(CredentialProvider):
    METHOD = "lambdasink-plugin"
    CANONICAL_NAME = "lambdasink-plugin"

    def __init__(self, load: Callable[[], Credentials | None]) -> None:
        super().__init__()
        self._load = load

    def load(self) -> Credentials | None:
        return self._load()


class AwsSession(boto3.Session):
    """A boto3 Session that names the botocore session it wraps (boto3 keeps it private): the
    invoker's own HTTP transport reads that session's settings (`ca_bundle`)."""

    def __init__(
        self, *, botocore_session: botocore.session.Session | None = None, **kwargs: Any
    ) -> None:
        self.botocore_session = botocore_session or botocore.session.Session()
        super().__init__(botocore_session=self.botocore_session, **kwargs)


DIRECTORY_FIELD = "awsCredentialsDirectory"


class FileCredentials(Credentials):
    """Static keys kept in two files, read again when either file changes.

    The kubelet updates a mounted Secret in place (an atomic swap of its `..data` symlink), so
    a rotation reaches a running worker; every signature asks `get_frozen_credentials`, which
    costs two `stat` calls when nothing changed. A file that cannot be read mid-rotation keeps
    the previous keys.
    """

    def __init__(self, directory: str) -> None:
        self._paths = (Path(directory) / AWS_ACCESS_KEY_FILE, Path(directory) / AWS_SECRET_KEY_FILE)
        self._stamp: tuple[tuple[int, int], ...] | None = None
        self._reload_lock = threading.Lock()
        super().__init__("", "", method="lambdasink-files")
        if not self._reload():
            raise ConfigError(
                DIRECTORY_FIELD,
                directory,
                f"a directory with non-empty files {AWS_ACCESS_KEY_FILE} and {AWS_SECRET_KEY_FILE}",
            )

    def _reload(self) -> bool:
        with self._reload_lock:
            try:
                stats = [os.stat(p) for p in self._paths]
                stamp = tuple((st.st_ino, st.st_mtime_ns) for st in stats)
                if stamp == self._stamp:
                    return True
                access, secret = (p.read_text().strip() for p in self._paths)
            except OSError:
                return self._stamp is not None
            if not (access and secret):
                return self._stamp is not None
            self.access_key, self.secret_key, self._stamp = access, secret, stamp
            return True

    def get_frozen_credentials(self) -> Any:
        self._reload()
        return super().get_frozen_credentials()


def _session_with(provider: Callable[[], Credentials | None], region: str) -> AwsSession:
    core = botocore.session.Session()
    core.register_component("credential_provider", CredentialResolver([_FixedProvider(provider)]))
    return AwsSession(botocore_session=core, region_name=region or None)


def _parse_param(raw: str, *, plugin: str) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise ConfigError(
            PARAM_FIELD, raw, f"must be a JSON object for plugin {plugin}", sensitive=True
        ) from None
    if not isinstance(value, dict):
        raise ConfigError(PARAM_FIELD, raw, "must be a JSON object", sensitive=True)
    return value


def _static_from_param(param: Mapping[str, Any]) -> tuple[str, str] | None:
    access, secret = param.get("accessKey"), param.get("secretKey")
    if access and secret:
        return str(access), str(secret)
    return None


def _load_python_plugin(name: str, param: str) -> CredentialPlugin:
    module_name, _, class_name = name.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            PLUGIN_FIELD,
            name,
            "must name an importable `module:Class` or a known Java plugin "
            f"({JAVA_DEFAULT_PLUGIN}, {JAVA_STS_PLUGIN}); import failed: {type(exc).__name__}",
        ) from None
    try:
        plugin = cls(param)
    except Exception as exc:  # noqa: BLE001 - any plugin failure is a configuration error
        # The exception text is not shown: it may echo the (secret) parameter.
        raise ConfigError(
            PLUGIN_FIELD,
            name,
            f"a class whose __init__(param: str) succeeds; got {type(exc).__name__}",
        ) from None
    if not callable(getattr(plugin, "credentials", None)):
        raise ConfigError(PLUGIN_FIELD, name, "the class must have a `credentials()` method")
    return plugin  # type: ignore[no-any-return]


def assume_role(
    base: boto3.Session,
    *,
    role_arn: str,
    session_name: str,
    external_id: str = "",
    region: str = "",
    sts_endpoint: str | None = None,
) -> AwsSession:
    """A session whose credentials come from STS AssumeRole on `base`, refreshed before expiry.

    The first STS call is deferred until credentials are first needed (the function check),
    so an STS failure surfaces there with a clear message.
    """

    def fetch() -> dict[str, str]:
        sts = base.client("sts", region_name=region or None, endpoint_url=sts_endpoint)
        kwargs: dict[str, Any] = {
            "RoleArn": role_arn,
            "RoleSessionName": session_name or DEFAULT_SESSION_NAME,
        }
        if external_id:
            kwargs["ExternalId"] = external_id
        creds = sts.assume_role(**kwargs)["Credentials"]
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": creds["Expiration"].isoformat(),
        }

    refreshable = DeferredRefreshableCredentials(refresh_using=fetch, method="sts-assume-role")
    return _session_with(lambda: refreshable, region)


def session_for(sink: SinkConfig, *, sts_endpoint: str | None = None) -> AwsSession:
    """The boto3 session the invoker uses, per the resolution order in the module docstring."""
    region = sink.aws_region
    plugin = (sink.aws_credential_plugin_name or "").strip()
    raw_param = sink.aws_credential_plugin_param or ""
    session: AwsSession
    if plugin:
        short = plugin.rsplit(".", 1)[-1]
        if short == JAVA_DEFAULT_PLUGIN:
            static = _static_from_param(_parse_param(raw_param, plugin=plugin))
            session = _static(static, region) if static else AwsSession(region_name=region)
        elif short == JAVA_STS_PLUGIN:
            param = _parse_param(raw_param, plugin=plugin)
            if not param.get("roleArn"):
                raise ConfigError(
                    PARAM_FIELD,
                    raw_param,
                    f'{plugin} needs {{"roleArn": ..., "roleSessionName": ...}}',
                    sensitive=True,
                )
            session = assume_role(
                AwsSession(region_name=region),
                role_arn=str(param["roleArn"]),
                session_name=str(param.get("roleSessionName") or DEFAULT_SESSION_NAME),
                external_id=str(param.get("externalId") or ""),
                region=region,
                sts_endpoint=sts_endpoint,
            )
        elif ":" in plugin:
            custom = _load_python_plugin(plugin, raw_param)
            session = _session_with(custom.credentials, region)
        else:
            raise ConfigError(
                PLUGIN_FIELD,
                plugin,
                f"allowed: a class ending in .{JAVA_DEFAULT_PLUGIN} or .{JAVA_STS_PLUGIN}, "
                "or a Python provider `module.path:ClassName`",
            )
    elif sink.aws_access_key and sink.aws_secret_key:
        session = _static((sink.aws_access_key, sink.aws_secret_key), region)
    elif sink.aws_credentials_directory:
        files = FileCredentials(sink.aws_credentials_directory)
        session = _session_with(lambda: files, region)
    else:
        static = _static_from_param(_parse_param(raw_param, plugin="(default)"))
        session = _static(static, region) if static else AwsSession(region_name=region)

    if sink.aws_assume_role_arn:
        session = assume_role(
            session,
            role_arn=sink.aws_assume_role_arn,
            session_name=sink.aws_assume_role_session_name or DEFAULT_SESSION_NAME,
            external_id=sink.aws_assume_role_external_id or "",
            region=region,
            sts_endpoint=sts_endpoint,
        )
    return session


def _static(keys: tuple[str, str], region: str) -> AwsSession:
    return AwsSession(
        aws_access_key_id=keys[0], aws_secret_access_key=keys[1], region_name=region or None
    )


def describe(sink: SinkConfig) -> str:
    """Which source the credentials come from, for the start-up log (never the secrets)."""
    plugin = (sink.aws_credential_plugin_name or "").strip()
    if plugin:
        source = f"plugin {plugin}"
    elif sink.aws_access_key and sink.aws_secret_key:
        source = "static keys"
    elif sink.aws_credentials_directory:
        source = f"static keys from files in {sink.aws_credentials_directory}"
    elif _static_from_param(_parse_param(sink.aws_credential_plugin_param or "", plugin="")):
        source = "static keys from awsCredentialPluginParam"
    else:
        source = "default AWS chain"
    if sink.aws_assume_role_arn:
        source += f" + assume role {sink.aws_assume_role_arn}"
    return source
