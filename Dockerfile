# One image for the gateway, the controller, the worker and the invoker. The Helm chart picks the part
# with `command:` (kambda-gateway, kambda-controller, kambda-worker, kambda-invoker), so there is no
# ENTRYPOINT.
#   docker build -t ghcr.io/kambda/kambda:0.1.0 .

FROM python:3.12-slim AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/kambda
WORKDIR /src
COPY pyproject.toml README.md ./
COPY kambda ./kambda
COPY functions ./functions
COPY apis ./apis
COPY events ./events
COPY gateway ./gateway
COPY controller ./controller
COPY worker ./worker
COPY invoker ./invoker
COPY iam ./iam
COPY tables ./tables
COPY workflows ./workflows
COPY objects ./objects
COPY tasks ./tasks
RUN /opt/kambda/bin/pip install . \
 && /opt/kambda/bin/python -m compileall -q /opt/kambda

FROM python:3.12-slim
RUN groupadd --system --gid 10001 kambda \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/kambda --create-home \
      --shell /usr/sbin/nologin kambda \
 && install -d -o 10001 -g 10001 /var/lib/kambda
COPY --from=builder /opt/kambda /opt/kambda
ENV PATH=/opt/kambda/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    KAMBDA_STATE_DIR=/var/lib/kambda
USER 10001:10001
WORKDIR /home/kambda
EXPOSE 8080 9102 50051
CMD ["kambda-gateway"]
