#!/usr/bin/env bash
# The whole test suite, as the README and CI run it: installs the Debian packages the build and
# the end-to-end tests need (the real Prometheus, Alertmanager and amtool; OpenSSL and zlib
# headers for librdkafka; Chromium, Node.js and npm for the NOC board's browser test;
# systemd-analyze for the unit checks) when they are missing, and the browser test's npm packages
# (playwright-core, from tests/browser/package-lock.json), then runs every test. Needs root or
# sudo only for the Debian install.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v prometheus >/dev/null || missing+=(prometheus)
command -v promtool >/dev/null || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
command -v amtool >/dev/null || missing+=(prometheus-alertmanager)
# The NOC board's browser test (tests/board.rs): headless Chromium driven from Node.
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
dpkg -s fonts-dejavu-core >/dev/null 2>&1 || missing+=(fonts-dejavu-core)
# tests/systemd.rs checks the unit with systemd-analyze (verify, security); installing the package
# in a container only adds the files: nothing starts.
command -v systemd-analyze >/dev/null || missing+=(systemd)
# tests/store_full.rs mounts a tmpfs and sets the immutable attribute.
command -v mount >/dev/null || missing+=(mount)
command -v chattr >/dev/null || missing+=(e2fsprogs)
# Building librdkafka (the rdkafka crate, with TLS) needs a C toolchain, make, OpenSSL and zlib.
for pkg in build-essential pkg-config libssl-dev zlib1g-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing Debian packages: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
fi

if [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "installing the browser test's npm packages (npm ci in tests/browser)" >&2
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi

# The release build without whole-program optimisation (Cargo.toml, [profile.test-release]):
# linking each of the suite's binaries with fat LTO would take minutes apiece.
cargo test --profile test-release "$@"

# The load generator (benches/loadgen) is a package of its own: its tests (the raw engine's HTTP
# reading) run with the whole suite, not when arguments pick part of it. Its target directory is
# the one benches/compare.sh builds it in.
if [ $# -eq 0 ]; then
  CARGO_TARGET_DIR=target/loadgen cargo test --manifest-path benches/loadgen/Cargo.toml
fi
