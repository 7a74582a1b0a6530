"""Has the live Deployment lost anything we set? The test that decides a re-apply.

Only the fields we set are compared; server defaults and other writers' additions are ignored.
List items that Kubernetes merges by key (containers, env, volumes, ...) are matched by that
key, not by position or count: an admission webhook that appends a sidecar, a volume or an env
var (sidecar injectors do) is not drift, since a re-apply would not remove them and the webhook
would add them again, so comparing lengths re-applied forever. Resource quantities compare by
value (the server stores `0.5` as `500m`). Lists without merge keys (command, tolerations, ...)
must match exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from kubernetes.utils import parse_quantity

#: List fields of a Deployment whose items merge by these keys (the API's list-map keys).
MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "ports": ("containerPort", "protocol"),
    "imagePullSecrets": ("name",),
    "ownerReferences": ("uid",),
}
_QUANTITY_MAPS = ("limits", "requests")


def quantity(value: object) -> Decimal | None:
    """A Kubernetes resource quantity as an exact number, or None when it is not one."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        parsed: Decimal = parse_quantity(value)  # type: ignore[no-untyped-call]
    except (ValueError, ArithmeticError):
        return None
    return parsed


def drifted(desired: object, actual: object, path: str = "") -> str | None:
    """The path of the first field we set that `actual` lacks or holds differently, else None."""
    return _diff(desired, actual, path, field="", quantities=False)


def _diff(
    desired: object, actual: object, path: str, *, field: str, quantities: bool
) -> str | None:
    if isinstance(desired, Mapping):
        if not isinstance(actual, Mapping):
            return path or "."
        for key, value in desired.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in actual:
                return where
            found = _diff(
                value,
                actual[key],
                where,
                field=str(key),
                quantities=quantities or key in _QUANTITY_MAPS,
            )
            if found:
                return found
        return None
    if isinstance(desired, Sequence) and not isinstance(desired, str):
        if not isinstance(actual, Sequence) or isinstance(actual, str):
            return path
        keys = MERGE_KEYS.get(field)
        items = [item for item in desired if isinstance(item, Mapping)]
        if keys is not None and len(items) == len(desired):
            return _diff_keyed(items, actual, path, keys, quantities)
        if len(desired) != len(actual):
            return path
        for i, (want, have) in enumerate(zip(desired, actual, strict=True)):
            found = _diff(want, have, f"{path}[{i}]", field="", quantities=quantities)
            if found:
                return found
        return None
    if desired == actual:
        return None
    if quantities:
        want = quantity(desired)
        if want is not None and want == quantity(actual):
            return None
    return path


def _diff_keyed(
    desired: Sequence[Mapping[str, object]],
    actual: Sequence[object],
    path: str,
    keys: tuple[str, ...],
    quantities: bool,
) -> str | None:
    """Each desired item against the live item with the same merge key; extra live items are
    someone else's."""
    for want in desired:
        given = {k: want[k] for k in keys if k in want}
        where = f"{path}[{','.join(f'{k}={v}' for k, v in given.items())}]"
        match = next(
            (
                have
                for have in actual
                if isinstance(have, Mapping) and all(have.get(k) == v for k, v in given.items())
            ),
            None,
        )
        if match is None:
            return where
        found = _diff(want, match, where, field="", quantities=quantities)
        if found:
            return found
    return None
