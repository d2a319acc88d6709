# observe collector image. Build: docker build -t observe:0.1.0 .
FROM python:3.11-slim AS build
# a C compiler for the remote-read accelerator (observe/protocol/remote_read_native.c); the image has the headers
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY observe ./observe
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home /var/lib/observe observe \
 && mkdir -p /var/lib/observe && chown observe /var/lib/observe
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001
VOLUME /var/lib/observe
EXPOSE 9464
ENTRYPOINT ["observe", "--log-format", "json"]
CMD ["run", "-c", "/etc/observe/observe.yaml"]
