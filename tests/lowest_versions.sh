#!/usr/bin/env bash
# The unit tests against the lowest versions pyproject.toml declares (its `>=` floors), so a floor
# that the code has outgrown fails here instead of in a user's install.
#
# A scratch venv gets the project (not editable: the installed package is what is tested) with
# each checked dependency pinned to `name==floor`, which pip resolves like a lowest-versions
# resolution for those names; everything else resolves as usual.
#
#   tests/lowest_versions.sh [pytest args...]      # PYTHON=python3.11 and KEEP_VENV=DIR optional
#   TESTS="tests/integration/test_consumer_receive.py" tests/lowest_versions.sh -m integration
#                          # other tests (TESTS, default tests/unit); stack tests need `dev/stack up`
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
CHECKED=${CHECKED:-"pulsar-client boto3 fastavro kopf kubernetes prometheus-client"}
TESTS=${TESTS:-tests/unit}

venv=${KEEP_VENV:-}
if [[ -z $venv ]]; then
    venv=$(mktemp -d "${TMPDIR:-/tmp}/lambdasink-lowest.XXXXXX")
    trap 'rm -rf "$venv"' EXIT
fi

pins=$("$PYTHON" - "$CHECKED" <<'EOF'
"""`name==floor` for each checked name, from pyproject's dependencies and extras."""
import re
import sys
import tomllib

with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)["project"]
reqs = list(project["dependencies"])
for extra in project.get("optional-dependencies", {}).values():
    reqs.extend(extra)
floors = {}
for req in reqs:
    m = re.match(r"^([A-Za-z0-9_.-]+)(\[[^]]*\])?\s*(.*)$", req)
    if not m:
        continue
    name = m.group(1).lower().replace("_", "-")
    floor = re.search(r">=\s*([^,;\s]+)", m.group(3))
    if floor:
        floors[name] = floor.group(1)
missing = [n for n in sys.argv[1].split() if n not in floors]
if missing:
    sys.exit(f"no >= floor in pyproject.toml for: {' '.join(missing)}")
pins = [f"{n}=={floors[n]}" for n in sys.argv[1].split()]
if "boto3" in floors:
    # The runtime imports botocore itself; boto3 and botocore release in lock step (same
    # version), and boto3's own range would otherwise pick the newest botocore of the series.
    pins.append(f"botocore=={floors['boto3']}")
print(" ".join(pins))
EOF
)

t0=$SECONDS
test -x "$venv/bin/python" || "$PYTHON" -m venv "$venv"
echo "lowest versions: $pins"
"$venv/bin/python" -m pip install -q --upgrade pip
# shellcheck disable=SC2086 # one argument per pin
"$venv/bin/python" -m pip install -q $pins '.[dev]'
t_install=$((SECONDS - t0))
"$venv/bin/python" -m pip list --format=freeze 2>/dev/null \
    | grep -i -E '^(pulsar-client|boto3|botocore|fastavro|kopf|kubernetes|pyyaml)=='

# The tests import the installed package: the source tree's runtime/ is not on sys.path.
rc=0
# shellcheck disable=SC2086 # one argument per test path
"$venv/bin/python" -m pytest $TESTS -q -p no:cacheprovider "$@" || rc=$?
echo "lowest versions: install ${t_install}s, tests $((SECONDS - t0 - t_install))s, exit $rc"
exit $rc
