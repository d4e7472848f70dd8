# backupctl in a container, for a compose sidecar or a Kamal accessory (docs/containers.md).
#
#   docker build -t backupctl .                                           # Litestream 0.5.17
#   docker build -t backupctl --build-arg LITESTREAM_VERSION=0.3.13 .     # replicas written by 0.3
#
# The pinned Litestream is fetched and its sha256 verified here, at build time; at container start
# BACKUPCTL_NO_DOWNLOAD makes a missing binary an error (exit 4) instead of a download. It runs as
# a non-root user, uid/gid 1000 like the `rails` user of Rails 8 images, so the databases it
# restores belong to the app (files it restores follow the owner and mode of their folder).
FROM python:3.12-slim

ARG LITESTREAM_VERSION=0.5.17
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
    && groupadd --gid 1000 backupctl \
    && useradd --uid 1000 --gid 1000 --create-home backupctl \
    && mkdir -p /data \
    && chown backupctl:backupctl /data

ENV BACKUPCTL_NO_DOWNLOAD=1
USER backupctl
WORKDIR /data
# The .env (or the same variables in the container's environment) says what to replicate where.
# On a new machine the databases are restored from the replica first, then replicated.
CMD ["backupctl", "start", "--restore-if-missing"]
HEALTHCHECK --interval=60s --timeout=30s --start-period=120s --retries=3 CMD ["backupctl", "status"]
