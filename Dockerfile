# The collector and the history server in one image: `ray-history collect` beside every Ray node,
# `ray-history serve` for the history, `ray-history retention` / `compact` in the maintenance CronJob.
#   docker build -t ray-history:0.1.0 .
#   docker build --build-arg EXTRAS=ray -t ray-history:0.1.0-ray .   # adds Ray: its own dashboard on dead sessions
# The install is scripts/image-install.sh, which tests/test_image.py also runs (no Docker daemon needed).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG EXTRAS=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the wheel is built from (pyproject.toml's packages), so editing tests or docs reuses the cache.
COPY pyproject.toml README.md ./
COPY archive/ archive/
COPY collector/ collector/
COPY historyserver/ historyserver/
COPY maintenance/ maintenance/
COPY ray_history/ ray_history/
COPY ui/ ui/
COPY scripts/image-install.sh scripts/
RUN scripts/image-install.sh /src /opt/ray-history "${EXTRAS}"

FROM ${PYTHON_IMAGE}
# A fixed uid that the manifests name (runAsUser 10001), in group 0 so a platform assigning a random uid in group 0
# (OpenShift) can still write what the group owns.
RUN useradd --uid 10001 --gid 0 --no-log-init --create-home --home-dir /home/ray-history --shell /usr/sbin/nologin ray-history
COPY --from=build /opt/ray-history /opt/ray-history
ENV PATH=/opt/ray-history/bin:$PATH PYTHONUNBUFFERED=1
USER 10001:0
WORKDIR /home/ray-history
# 8080: the history server (--listen of serve); 8084: the collector (where Ray's aggregator agent POSTs).
EXPOSE 8080 8084
ENTRYPOINT ["ray-history"]
CMD ["--help"]
