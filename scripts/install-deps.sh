#!/usr/bin/env bash
# Installs logp's dependencies from Debian 12 packages (nothing else). The one install script of
# README, CI (.ci/run via scripts/test.sh), scripts/demo.sh and the Dockerfile.
# Usage: scripts/install-deps.sh [--build | --runtime]
#   (none)     everything: build, test, fuzz, container-test and demo dependencies, and the npm
#              packages of the manifest validator, the dashboard and its test (the one step not
#              from Debian)
#   --build    what building logpd and logpctl needs (the Dockerfile's builder stage), with the
#              dashboard's npm packages
#   --runtime  the shared libraries logpd and logpctl load, nothing to build with (the
#              Dockerfile's runtime stage; it checks with ldd that nothing is missing)
# Idempotent: does nothing when everything is already installed.
set -euo pipefail

BUILD=(
  build-essential cmake pkg-config ccache
  libssl-dev  # TLS: logpd checks certificate files
  libtorch-dev libopenblas0-pthread
  libgrpc++-dev libgrpc-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libgoogle-glog-dev libgflags-dev
  libsqlite3-dev libpng-dev zlib1g-dev
  libpqxx-dev  # the PostgreSQL catalogue (--catalog=postgresql://...); brings libpq-dev
  libcpp-httplib-dev  # the HTTP port (--http_listen): REST, /metrics, the dashboard
  nodejs  # logpd embeds the web dashboard (dashboard/), built with esbuild; npm below
  prometheus-cpp-dev  # server/metrics: Registry, Counter, Gauge, Histogram, TextSerializer
)
# libopenblas0-pthread is not optional: without it LibTorch's matrix products fall back to the
# reference BLAS and run about 30 times slower.
RUNTIME=(
  libtorch1.13 libopenblas0-pthread
  libgrpc++1.51 libgrpc29 libprotobuf32 libabsl20220623
  libgoogle-glog0v6 libgflags2.2 libsqlite3-0 libpng16-16 libssl3 zlib1g
  libpqxx-6.4  # with libpq5
  libcpp-httplib0.11  # with libbrotli1
  libprometheus-cpp-core1.0
)
ALL=(
  "${BUILD[@]}" git openssl  # the tests make certificates with openssl
  libgtest-dev libgmock-dev
  postgresql-15  # the PostgreSQL catalogue's tests start a private server (initdb, pg_ctl)
  prometheus  # metrics_test: promtool check metrics on a real scrape
  clang libclang-rt-14-dev  # scripts/fuzz.sh: clang 14 with libFuzzer, ASan and UBSan runtimes
  dataset-fashion-mnist
  python3 python3-grpcio python3-protobuf python3-numpy  # the cross-language test
  python3-torch  # export_process_test loads exported TorchScript models
  # scripts/container-test.sh: builds the image without a Docker engine and runs it
  buildah podman podman-compose runc mmdebstrap uidmap containernetworking-plugins
  # (compose services find each other by name, e.g. logpd's --catalog host postgres, through
  # this CNI plugin: without it podman 4.3's CNI networks have no DNS)
  golang-github-containernetworking-plugin-dnsname
  # k8s_manifests_test runs the manifest validator (deploy/k8s/validate) in node (in BUILD)
  chromium  # dashboard_test: the dashboard in headless Chromium (tests/dashboard)
)
# Debian's npm, unless an npm is there already (Node.js from elsewhere, e.g. NodeSource's
# package, brings its own, which Debian's would conflict with).
command -v npm >/dev/null || { BUILD+=(npm); ALL+=(npm); }

case "${1:-}" in
  "") PACKAGES=("${ALL[@]}") ;;
  --build) PACKAGES=("${BUILD[@]}") ;;
  --runtime) PACKAGES=("${RUNTIME[@]}") ;;
  *)
    echo "usage: $0 [--build | --runtime]" >&2
    exit 2
    ;;
esac
# PyTorch for the reference scripts in bench/ (now also in ALL, for export_process_test).
if [[ -z "${1:-}" && "${LOGP_WITH_TORCH_PYTHON:-0}" == "1" ]]; then
  PACKAGES+=(python3-torch)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
else
  echo "install-deps: installing ${missing[*]}"
  SUDO=""
  if [[ "$(id -u)" != "0" ]]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
[[ "${1:-}" != "--runtime" ]] || exit 0

# The one step from the npm registry, not Debian: packages pinned by a package-lock.json,
# installed into node_modules/ by npm ci; nothing to do when they are there already.
#   deploy/k8s/validate  the Kubernetes manifest validator of k8s_manifests_test (kubernetes-types,
#                        typescript, yaml)
#   dashboard            the web dashboard's build (esbuild, uPlot), part of building logpd
#   tests/dashboard      dashboard_test's browser driver (playwright-core, with Debian's chromium)
root="$(cd "$(dirname "$0")/.." && pwd)"
dirs=(dashboard)  # --build: the dashboard only (the Dockerfile copies its package files first)
[[ -n "${1:-}" ]] || dirs=(deploy/k8s/validate dashboard tests/dashboard)
for dir in "${dirs[@]}"; do
  if cmp -s "$root/$dir/package-lock.json" "$root/$dir/node_modules/.logp-installed-lock.json"; then
    echo "install-deps: $dir's npm packages present"
  else
    echo "install-deps: npm ci in $dir"
    (cd "$root/$dir" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$root/$dir/package-lock.json" "$root/$dir/node_modules/.logp-installed-lock.json"
  fi
done
