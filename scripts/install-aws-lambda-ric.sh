#!/usr/bin/env bash
# Installs AWS's Node.js runtime interface client (npm aws-lambda-ric) into .cache/ric, for the
# conformance tests that run Node.js functions through it. It compiles native code, so it needs
# autoconf, automake, libtool, cmake, make and g++ (installed with apt-get when run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f .cache/ric/node_modules/aws-lambda-ric/dist/rapid-client.node ]; then exit 0; fi
need=""
for tool in autoreconf automake libtoolize cmake make g++; do command -v "$tool" >/dev/null || need=yes; done
if [ -n "$need" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq autoconf automake libtool cmake make g++ >/dev/null
  else
    echo "install autoconf automake libtool cmake make g++ first" >&2; exit 1
  fi
fi
mkdir -p .cache/ric
npm install --prefix .cache/ric --no-audit --no-fund --loglevel=error aws-lambda-ric@3 >/dev/null
test -f .cache/ric/node_modules/aws-lambda-ric/dist/rapid-client.node
