# syntax=docker/dockerfile:1
# The modeldeploy image: one command, `modeldeploy`, with its subcommands
# (`serve`, `fetch`, `profile`, and `operator` once the operator lands), and
# `redis-server` for the feedback store the chart can run.
#
#   docker build -t modeldeploy:dev .
#   docker run --rm modeldeploy:dev --help
#
# Machines without a Docker engine build an image with the same contents (Debian's
# Python 3.11, a venv at /opt/modeldeploy, user 65532) with
# `python -m e2e.cluster.images build`; see docs/image.md.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: a venv with the pinned dependencies, then the project ----------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/modeldeploy
WORKDIR /src

# The dependencies first (their own cached step): the [serving,operator,retrain] extras listed
# in pyproject.toml, pinned by the constraints file. A source change does not reinstall them.
COPY pyproject.toml ./
COPY requirements/constraints.txt requirements/
RUN python3 -c 'import tomllib; extras = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]; print("\n".join(extras["serving"] + extras["operator"] + extras["retrain"]))' > /tmp/dependencies.txt \
 && /opt/modeldeploy/bin/pip install --constraint requirements/constraints.txt --requirement /tmp/dependencies.txt

# Then the project itself (.dockerignore keeps everything else out of the context).
COPY . .
RUN /opt/modeldeploy/bin/pip install --constraint requirements/constraints.txt '.[serving,operator,retrain]' \
 && /opt/modeldeploy/bin/pip check

# ---- examples: the example models, trained from scikit-learn's data sets ---------------
# They ship in the image at /opt/modeldeploy/models so a cluster can serve them with
# file:// URIs without any model store (examples/*.yaml use them). The [retrain] extra that
# examples/retrain.py needs is in the venv already, and trains them.
FROM build AS examples
RUN /opt/modeldeploy/bin/python examples/train.py --out /models

# ---- runtime: the same base, the venv, a non-root user; no compilers, no sources -------
FROM ${PYTHON_IMAGE}
# redis-server (Debian's, 7.0, with redis-cli): the feedback store the chart runs with
# feedback.store.install=true (docs/feedback.md). Installed only; nothing starts it here.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/*
RUN getent passwd 65532 >/dev/null \
 || { groupadd --gid 65532 nonroot \
      && useradd --uid 65532 --gid 65532 --home-dir /home/nonroot --create-home --shell /usr/sbin/nologin nonroot; }
COPY --from=build /opt/modeldeploy /opt/modeldeploy
COPY --from=examples /models /opt/modeldeploy/models
# The reference retraining script, for a retraining Job's container (docs/retraining.md).
COPY examples/retrain.py /opt/modeldeploy/examples/retrain.py
ENV PATH=/opt/modeldeploy/bin:$PATH \
    HOME=/home/nonroot \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1
USER 65532:65532
WORKDIR /home/nonroot
EXPOSE 8080
ENTRYPOINT ["modeldeploy"]
CMD ["--help"]
