#!/bin/sh
# Installs the lambda-sink wheel found in WHEEL_DIR, with EXTRAS, into a new virtualenv at VENV.
# The image build (deploy/docker/Dockerfile) and tests/unit/test_dockerfiles.py both run this, so
# what the test proves about the install is what the image gets.
#
# usage: build-venv.sh WHEEL_DIR VENV [EXTRAS]     e.g. build-venv.sh /wheels /opt/venv operator
set -eu
wheel_dir=$1
venv=$2
extras=${3:-}
python=${PYTHON:-python3}

wheel_dir=$(cd "$wheel_dir" && pwd)
wheel=$(ls "$wheel_dir"/lambda_sink-*.whl)
if [ -n "$extras" ]; then
    requirement="lambda-sink[$extras] @ file://$wheel"
else
    requirement="lambda-sink @ file://$wheel"
fi

# The venv gets no pip of its own: the final image copies it and must carry no installer.
# Binary wheels only: no compiler in the builder, nothing built from source by surprise. pip
# compiles the bytecode at install time, which a read-only root filesystem needs.
"$python" -m venv --without-pip "$venv"
"$python" -m pip --python "$venv/bin/python" install \
    --disable-pip-version-check --only-binary=:all: \
    "$requirement"
