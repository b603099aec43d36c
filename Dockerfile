# logpd and logpctl in a container: a builder stage with the -dev packages, and a runtime stage
# with only the shared libraries they load, a non-root user and /data as a volume.
#   docker build -t logp .
#   docker run -p 50051:50051 -v logp-data:/data logp [logpd flags]
# Without a Docker engine (what scripts/container-test.sh does; README "Docker"):
#   buildah bud --isolation=chroot --format=docker -t logp .
# --format=docker keeps HEALTHCHECK, which the OCI image format has no field for.

FROM debian:12 AS builder
# A CA bundle for npm (the dashboard's packages) behind a TLS-intercepting proxy, mounted into
# the build (scripts/container-test.sh passes the host's); unset: the system's CAs.
ARG NODE_EXTRA_CA_CERTS
WORKDIR /src
COPY scripts/install-deps.sh scripts/
COPY dashboard/package.json dashboard/package-lock.json dashboard/
RUN scripts/install-deps.sh --build && rm -rf /var/lib/apt/lists/*
COPY . .
# ccache's directory is a build cache, not a layer: rebuilding after a change recompiles only
# what changed.
RUN --mount=type=cache,target=/root/.cache/ccache,id=logp-ccache \
    LOGP_BUILD_TESTS=OFF LOGP_BUILD_DIR=/tmp/build scripts/build.sh --target logpd logpctl \
    && mkdir -p /out \
    && objcopy --strip-debug /tmp/build/server/logpd /out/logpd \
    && objcopy --strip-debug /tmp/build/client/logpctl /out/logpctl \
    && rm -rf /tmp/build

FROM debian:12
COPY scripts/install-deps.sh /tmp/
RUN /tmp/install-deps.sh --runtime && rm -rf /var/lib/apt/lists/* /tmp/install-deps.sh
COPY --from=builder /out/logpd /out/logpctl /usr/local/bin/
# The build fails here if the runtime packages lack a library either program loads.
RUN if ldd /usr/local/bin/logpd /usr/local/bin/logpctl | grep 'not found'; then exit 1; fi \
    && useradd --system --uid 10001 --user-group --home-dir /data --no-create-home logp \
    && mkdir -p /data && chown logp:logp /data && chmod 0750 /data
# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 10001:10001
VOLUME /data
EXPOSE 50051
# logpd's private copy of the TLS files goes to /dev/shm if present, else here.
ENV TMPDIR=/tmp
# SIGTERM (docker stop, podman stop, Kubernetes) drains calls, saves every running job and exits
# 0 within --shutdown_grace_seconds (10) plus a few seconds: give it 30 (docker stop -t 30).
STOPSIGNAL SIGTERM
# Plaintext on the main port; with TLS on, point it at --health_listen (deploy/docker-compose.yml).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/logpctl", "--server=127.0.0.1:50051", "health"]
ENTRYPOINT ["/usr/local/bin/logpd", "--data_dir=/data", "--listen=0.0.0.0:50051"]
