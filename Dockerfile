# syntax=docker/dockerfile:1
#
# feedback-stream images.
#   docker build -t feedback-stream .                  # the processor (default target)
#   docker build --target demo -t feedback-stream-demo .   # + scikit-learn for `feedback-stream demo`
#
# Multi-stage: the build stages install the package into a virtualenv; the
# final stages copy only that virtualenv onto a slim Python and run as an
# unprivileged user. No compiler or pip cache reaches the runtime image.

FROM python:3.11.13-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# gcc compiles the per-record core (mypyc, setup.py); only the build stages have it.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md setup.py ./
COPY src ./src
RUN /opt/venv/bin/pip install .

FROM build AS build-demo
RUN /opt/venv/bin/pip install ".[demo]"

FROM python:3.11.13-slim-bookworm AS base
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin feedback
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FEEDBACK_STREAM_HTTP_HOST=0.0.0.0 \
    FEEDBACK_STREAM_HTTP_PORT=8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
ENTRYPOINT ["feedback-stream"]

FROM base AS demo
COPY --from=build-demo /opt/venv /opt/venv
# The traffic generator publishes to Kafka and serves no HTTP.
HEALTHCHECK NONE
USER 10001:10001
CMD ["demo", "--help"]

FROM base AS runtime
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
CMD ["run"]
