# logpd in a container, built with the same scripts as CI and the README.
#   docker build -t logp .
#   docker run -p 50051:50051 -v logp-data:/data logp
FROM debian:12

WORKDIR /src
COPY scripts/install-deps.sh scripts/
RUN scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN LOGP_BUILD_TESTS=OFF LOGP_BUILD_DIR=/tmp/build scripts/build.sh --target logpd logpctl \
    && install -m 0755 /tmp/build/server/logpd /tmp/build/client/logpctl /usr/local/bin/ \
    && rm -rf /tmp/build /root/.cache/ccache

RUN useradd --system --uid 10001 --create-home logp && mkdir -p /data && chown logp /data
USER logp
VOLUME /data
EXPOSE 50051
# SIGTERM (docker stop) shuts down gracefully; give it more than --shutdown_grace_seconds.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/logpd", "--data_dir=/data", "--listen=0.0.0.0:50051"]
