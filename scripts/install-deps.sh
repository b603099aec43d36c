#!/usr/bin/env bash
# Installs every build, test and demo dependency of logp from Debian 12 packages (nothing else).
# Used by README, CI (.ci/run via scripts/test.sh), scripts/demo.sh and the Dockerfile.
# Idempotent: does nothing when everything is already installed.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config ccache git
  libssl-dev openssl  # TLS: logpd checks certificate files; the tests make certificates
  libtorch-dev libopenblas0-pthread
  libgrpc++-dev libgrpc-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libgoogle-glog-dev libgflags-dev
  libgtest-dev libgmock-dev
  clang libclang-rt-14-dev  # scripts/fuzz.sh: clang 14 with libFuzzer, ASan and UBSan runtimes
  libsqlite3-dev libpng-dev zlib1g-dev
  dataset-fashion-mnist
  python3 python3-grpcio python3-protobuf python3-numpy  # the cross-language test
)
# PyTorch for the reference scripts in bench/ (large; only when asked for).
if [[ "${LOGP_WITH_TORCH_PYTHON:-0}" == "1" ]]; then
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
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
if [[ "$(id -u)" != "0" ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
