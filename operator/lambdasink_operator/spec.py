"""A LambdaSink spec → what its workers need: the config document and the Secret keys they read.

Pure functions over plain dicts (the custom resource as the API returns it). The worker's
configuration is validated with the runtime's own model (`lambdasink_runtime.config`), so the
operator and the worker can never disagree about what is valid. Secret *values* are only used
for that validation and for hashing; they never enter the config document or a message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lambdasink_runtime import config as runtime_config
from lambdasink_runtime.errors import ConfigError

from . import drain

GROUP = "lambdasink.dev"
VERSION = "v1alpha1"
KIND = "LambdaSink"
PLURAL = "lambdasinks"
API_VERSION = f"{GROUP}/{VERSION}"

HTTP_PORT = 8081
SECRETS_ROOT = "/etc/lambdasink/secrets"
#: sinkConfig keys the reference marks sensitive; the CRD refuses them and so does `check_spec`.
SENSITIVE_SINK_KEYS: dict[str, str] = {
    "awsAccessKey": "spec.aws.credentialsSecret",
    "awsSecretKey": "spec.aws.credentialsSecret",
    "awsCredentialPluginParam": "spec.aws.credentialPluginParamSecretRef",
}
_INPUT_KEYS = (
    "subscriptionType",
    "subscriptionInitialPosition",
    "deadLetterTopic",
    "maxRedeliverCount",
    "negativeAckRedeliveryDelayMs",
    "receiverQueueSize",
)


@dataclass(frozen=True, order=True)
class SecretKey:
    """One key of one Secret in the sink's namespace."""

    secret: str
    key: str

    def describe(self) -> str:
        return f'Secret "{self.secret}" key "{self.key}"'


@dataclass(frozen=True)
class EnvFromSecret:
    """An environment variable of the worker fed by `valueFrom.secretKeyRef`."""

    env: str
    source: SecretKey


@dataclass(frozen=True)
class SecretMount:
    """A Secret mounted read-only as files `<mount_path>/<file>` (`files`: one name per key,
    default the key itself)."""

    volume: str
    secret: str
    keys: tuple[str, ...]
    mount_path: str
    files: tuple[str, ...] = ()

    def items(self) -> list[dict[str, str]]:
        return [
            {"key": k, "path": f} for k, f in zip(self.keys, self.files or self.keys, strict=True)
        ]


@dataclass(frozen=True)
class WorkerPlan:
    """What the workers of one LambdaSink get: config (no secrets), env from Secrets, files."""

    config: dict[str, Any]
    env: tuple[EnvFromSecret, ...] = ()
    mounts: tuple[SecretMount, ...] = ()

    @property
    def secret_keys(self) -> tuple[SecretKey, ...]:
        keys = {e.source for e in self.env}
        keys.update(SecretKey(m.secret, k) for m in self.mounts for k in m.keys)
        return tuple(sorted(keys))

    @property
    def secret_names(self) -> tuple[str, ...]:
        return tuple(sorted({k.secret for k in self.secret_keys}))

    def config_json(self) -> str:
        """The LAMBDASINK_CONFIG text: compact and key-sorted, so equal configs hash equally."""
        return json.dumps(self.config, sort_keys=True, separators=(",", ":"))


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: object, default: str = "") -> str:
    return value if isinstance(value, str) and value else default


def _mount(
    purpose: str, secret: str, keys: tuple[str, ...], files: tuple[str, ...] = ()
) -> SecretMount:
    return SecretMount(f"secret-{purpose}", secret, keys, f"{SECRETS_ROOT}/{purpose}", files)


def plan_worker(name: str, spec: Mapping[str, Any]) -> WorkerPlan:
    """Translate the spec; tolerant of malformed input (validation reports it, not this)."""
    pulsar_spec = _map(spec.get("pulsar"))
    input_spec = _map(spec.get("input"))
    env: list[EnvFromSecret] = []
    mounts: list[SecretMount] = []

    pulsar: dict[str, Any] = {}
    for key in ("serviceUrl", "adminUrl"):
        if key in pulsar_spec:
            pulsar[key] = pulsar_spec[key]
    for key in ("topics", "topicsPattern"):
        if key in input_spec:
            pulsar[key] = input_spec[key]
    pulsar["subscriptionName"] = _text(input_spec.get("subscriptionName"), name)
    for key in _INPUT_KEYS:
        if input_spec.get(key) is not None:
            pulsar[key] = input_spec[key]

    auth_spec = _map(pulsar_spec.get("authentication"))
    auth: dict[str, Any] = {}
    if "token" in auth_spec:
        ref = _map(_map(auth_spec["token"]).get("secretRef"))
        source = SecretKey(_text(ref.get("name")), _text(ref.get("key"), "token"))
        env.append(EnvFromSecret(runtime_config.ENV_PULSAR_TOKEN, source))
        auth["token"] = {"env": runtime_config.ENV_PULSAR_TOKEN}
    if "oauth2" in auth_spec:
        oauth = _map(auth_spec["oauth2"])
        ref = _map(oauth.get("privateKeySecretRef"))
        key = _text(ref.get("key"), "credentials.json")
        mount = _mount("pulsar-oauth2", _text(ref.get("name")), (key,))
        mounts.append(mount)
        doc = {k: oauth[k] for k in ("issuerUrl", "audience", "scope") if oauth.get(k)}
        auth["oauth2"] = {**doc, "privateKey": f"{mount.mount_path}/{key}"}
    if "tls" in auth_spec:
        tls_auth = _map(auth_spec["tls"])
        cert = _text(tls_auth.get("certKey"), "tls.crt")
        key = _text(tls_auth.get("keyKey"), "tls.key")
        mount = _mount("pulsar-tls", _text(tls_auth.get("secretName")), (cert, key))
        mounts.append(mount)
        auth["tls"] = {
            "certFile": f"{mount.mount_path}/{cert}",
            "keyFile": f"{mount.mount_path}/{key}",
        }
    if auth:
        pulsar["authentication"] = auth

    tls = _map(pulsar_spec.get("tls"))
    if "trustCertsSecretRef" in tls:
        ref = _map(tls["trustCertsSecretRef"])
        key = _text(ref.get("key"), "ca.crt")
        mount = _mount("pulsar-ca", _text(ref.get("name")), (key,))
        mounts.append(mount)
        pulsar["tlsTrustCertsFile"] = f"{mount.mount_path}/{key}"
    if "allowInsecureConnection" in tls:
        pulsar["tlsAllowInsecureConnection"] = tls["allowInsecureConnection"]
    if "hostnameVerification" in tls:
        pulsar["tlsHostnameVerification"] = tls["hostnameVerification"]

    sink = {
        k: v
        for k, v in _map(spec.get("sinkConfig")).items()
        if k not in SENSITIVE_SINK_KEYS and v is not None
    }
    aws = _map(spec.get("aws"))
    if "credentialsSecret" in aws:
        ref = _map(aws["credentialsSecret"])
        secret = _text(ref.get("name"))
        access = _text(ref.get("accessKeyIdKey"), "accessKeyId")
        secret_key = _text(ref.get("secretAccessKeyKey"), "secretAccessKey")
        # Files, not env: the kubelet updates a mounted Secret in place, so the worker uses a
        # rotated key at once (the hash still rolls the workers onto it).
        mount = _mount(
            "aws",
            secret,
            (access, secret_key),
            (runtime_config.AWS_ACCESS_KEY_FILE, runtime_config.AWS_SECRET_KEY_FILE),
        )
        mounts.append(mount)
        sink["awsCredentialsDirectory"] = mount.mount_path
    if "credentialPluginParamSecretRef" in aws:
        ref = _map(aws["credentialPluginParamSecretRef"])
        source = SecretKey(
            _text(ref.get("name")), _text(ref.get("key"), "awsCredentialPluginParam")
        )
        env.append(EnvFromSecret(runtime_config.ENV_AWS_CREDENTIAL_PLUGIN_PARAM, source))

    grace = drain.grace_seconds(spec)
    document: dict[str, Any] = {
        "pulsar": pulsar,
        "sink": sink,
        "runtime": {
            "httpPort": HTTP_PORT,
            "logLevel": _text(spec.get("logLevel"), "INFO"),
            # finish draining before the kubelet's SIGKILL at the end of the grace period
            "drainTimeoutSeconds": drain.drain_timeout_s(grace),
        },
    }
    failure = {k: v for k, v in _map(spec.get("failurePolicy")).items() if v is not None}
    if failure:
        document["failurePolicy"] = failure
    adaptive = {k: v for k, v in _map(spec.get("adaptiveInFlight")).items() if v is not None}
    if adaptive:
        document["adaptiveInFlight"] = adaptive
    return WorkerPlan(config=document, env=tuple(env), mounts=tuple(mounts))


def referenced_secrets(spec: Mapping[str, Any]) -> tuple[str, ...]:
    """Names of the Secrets a spec reads (for the Secret → LambdaSink index)."""
    return tuple(n for n in plan_worker("-", spec).secret_names if n)


def check_spec(spec: Mapping[str, Any]) -> str | None:
    """What the runtime model cannot see: secrets pasted into sinkConfig. The CRD refuses them
    too; this guards a cluster where the CRD's validation is missing or older."""
    sink = _map(spec.get("sinkConfig"))
    for key, where in SENSITIVE_SINK_KEYS.items():
        if sink.get(key) not in (None, ""):
            return (
                f"spec.sinkConfig.{key} is not accepted: keep credentials out of the resource; "
                f"put them in a Secret and reference it with {where}"
            )
    return None


def validation_env(plan: WorkerPlan, values: Mapping[SecretKey, str]) -> dict[str, str]:
    """The environment a worker would see; unreadable Secret keys get a placeholder (their
    absence is reported separately) except the plugin parameter, whose content is checked."""
    env: dict[str, str] = {}
    for item in plan.env:
        value = values.get(item.source)
        if value is None and item.env == runtime_config.ENV_AWS_CREDENTIAL_PLUGIN_PARAM:
            continue
        env[item.env] = value if value is not None else "unresolved"
    return env


def validate(plan: WorkerPlan, values: Mapping[SecretKey, str]) -> str | None:
    """Validate the effective configuration with the runtime's model; None when valid, else a
    message naming the spec field, the bad value and what is allowed (secrets redacted)."""
    try:
        runtime_config.RuntimeConfig.from_mapping(plan.config, env=validation_env(plan, values))
    except ConfigError as err:
        return spec_message(err)
    return None


def spec_path(field: str) -> str:
    """Map a runtime config field (`sink.batchMaxSize`) to the spec path a user edits."""
    section, _, rest = field.partition(".")
    head = rest.split(".", 1)[0]
    if section == "sink":
        return f"spec.sinkConfig.{rest}" if rest else "spec.sinkConfig"
    if section == "runtime":
        return "spec.logLevel" if head == "logLevel" else f"spec (runtime.{rest})"
    if section == "pulsar":
        tls_fields = {
            "tlsTrustCertsFile": "spec.pulsar.tls.trustCertsSecretRef",
            "tlsAllowInsecureConnection": "spec.pulsar.tls.allowInsecureConnection",
            "tlsHostnameVerification": "spec.pulsar.tls.hostnameVerification",
        }
        if head in tls_fields:
            return tls_fields[head]
        if head in ("serviceUrl", "adminUrl", "authentication"):
            return f"spec.pulsar.{rest}"
        return f"spec.input.{rest}" if rest else "spec.input"
    return f"spec.{field}"


def spec_message(err: ConfigError) -> str:
    """The ConfigError's message with its field renamed to the spec path."""
    text = str(err)
    if text.startswith(err.field):
        return spec_path(err.field) + text[len(err.field) :]
    return text
