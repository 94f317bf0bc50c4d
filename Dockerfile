# MLC Graph server image. Build: docker build -t mlc-graph .   Run: see compose.yaml.
#
# Stage 1 installs the package into a virtualenv and fetches GraphiQL's browser assets from the npm
# registry (python -m mlc_graph.http.assets); node and npm stay in this stage. Stage 2 copies the finished
# virtualenv into a clean slim image and runs it as an unprivileged user.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, so editing the code does not reinstall them. The `otel` extra (OpenTelemetry SDK
# and OTLP/HTTP exporter) is installed so MLC_TRACING=1 works in the image; nothing else tracing needs.
COPY pyproject.toml ./
RUN mkdir -p mlc_graph/platform/migrations resolvers loaders \
    && touch mlc_graph/__init__.py mlc_graph/platform/migrations/__init__.py resolvers/__init__.py loaders/__init__.py \
    && pip install '.[otel]' \
    && pip uninstall -y mlc-graph \
    && rm -rf mlc_graph resolvers loaders build *.egg-info
COPY mlc_graph ./mlc_graph
COPY resolvers ./resolvers
COPY loaders ./loaders
# Run from the source tree so the assets land in mlc_graph/http/static/graphiql, then install the package
# with them as package data (nothing is fetched at run time).
RUN python -m mlc_graph.http.assets \
    && pip install --no-deps . \
    && rm -rf build *.egg-info

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    MLC_ENV=production
# production refuses to start without MLC_JWT_SECRET (32+ characters): pass it at run time.
RUN useradd --system --uid 10001 --create-home --home-dir /home/mlc mlc
COPY --from=build /opt/venv /opt/venv
USER mlc
WORKDIR /home/mlc
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=15s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=2)" || exit 1
CMD ["mlc-graph", "serve"]
