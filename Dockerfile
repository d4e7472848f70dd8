# backupctl in a container, for a compose sidecar or a Kamal accessory (docs/containers.md).
#
#   docker build -t backupctl .                                           # Litestream 0.5.17
#   docker build -t backupctl --build-arg LITESTREAM_VERSION=0.3.13 .     # replicas written by 0.3
#
# The pinned Litestream is fetched and its sha256 verified here, at build time; at container start
# BACKUPCTL_NO_DOWNLOAD makes a missing binary an error (exit 4) instead of a download. It runs as
# a non-root user, uid/gid 1000 like the `rails` user of Rails 8 images, so the databases it
# restores belong to the app (files it restores follow the owner and mode of their folder);
# `--build-arg BACKUPCTL_UID=… --build-arg BACKUPCTL_GID=…` for another app user (`service compose --container-user`).
#
# Layout (docs/containers.md): /data is the working folder (the .env, litestream.yml), /data/storage
# the databases (a volume the app mounts at /rails/storage), /state backupctl's state. Each is made
# here, owned by the user: an empty named volume mounted on one takes that owner (on a folder Docker
# creates itself it would belong to root, and the container could not write to it).
FROM python:3.12-slim

ARG LITESTREAM_VERSION=0.5.17
ARG BACKUPCTL_UID=1000
ARG BACKUPCTL_GID=1000
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BACKUPCTL_CACHE_DIR=/opt/backupctl/cache

COPY . /tmp/backupctl-src
RUN pip install /tmp/backupctl-src \
    && rm -rf /tmp/backupctl-src \
    && backupctl install "$LITESTREAM_VERSION" \
    && chmod -R a+rX /opt/backupctl \
    && groupadd --gid "$BACKUPCTL_GID" backupctl \
    && useradd --uid "$BACKUPCTL_UID" --gid "$BACKUPCTL_GID" --create-home backupctl \
    && mkdir -p /data/storage /state \
    && chown backupctl:backupctl /data /data/storage /state

ENV BACKUPCTL_NO_DOWNLOAD=1
USER backupctl
WORKDIR /data
# The .env (or the same variables in the container's environment) says what to replicate where.
# On a new machine the databases are restored from the replica first, then replicated.
CMD ["backupctl", "start", "--restore-if-missing"]
# The same timing as `backupctl service compose` (backupctl/commands/service.py HEALTHCHECK; a test compares them).
HEALTHCHECK --interval=60s --timeout=30s --start-period=120s --retries=3 CMD ["backupctl", "status", "--json"]
