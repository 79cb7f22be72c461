#!/usr/bin/env bash
# Installs every Debian package sparsed needs to build, test and serve.
# Usage: scripts/install-deps.sh [build|all]   (as root, or with sudo available)
#   build: what building and serving need; all (default): also the tests' and the training
#   recipe's packages.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
PKGS=(
  build-essential cmake ninja-build pkg-config git
  libabsl-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libsentencepiece-dev sentencepiece
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler grpc-proto
  prometheus-cpp-dev libssl-dev libarchive-dev
)
# Only for the tests: independent clients, a Prometheus server, manifest parsing, clang for
# the thread-safety analysis of the locking code (tests/thread_safety_test.py), and openssl for
# the TLS test's certificates (tests/integration/tls_test.py).
TEST_PKGS=(
  python3-grpcio python3-grpc-tools python3-yaml python3-venv prometheus curl clang openssl
)
# The container test (tests/container/): podman builds and runs the image, mmdebstrap makes its
# Debian 12 base image from Debian's archive, podman-compose brings up the compose stack, the
# dnsname plugin lets its containers find each other by service name.
CONTAINER_PKGS=(
  podman runc uidmap fuse-overlayfs slirp4netns mmdebstrap podman-compose containernetworking-plugins
  golang-github-containernetworking-plugin-dnsname
)
# The bundled models' training recipe (tools/train/) and its reproducibility test: PyTorch,
# SentencePiece's Python module, and the corpus sources (KJV text and its reader, WordNet).
TRAIN_PKGS=(
  python3-torch python3-numpy python3-sentencepiece python3-matplotlib bible-kjv wordnet-base
  gnuplot-nox
)
wanted=("${PKGS[@]}")
if [ "${1:-all}" != build ]; then wanted+=("${TEST_PKGS[@]}" "${CONTAINER_PKGS[@]}" "${TRAIN_PKGS[@]}"); fi
missing=()
for p in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "all build dependencies present"
fi
