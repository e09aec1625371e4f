#!/usr/bin/env bash
# Prints the tracing overhead figures for the README's performance section: loopback UDP
# datagrams/s to an unwatched and a watched port, untraced and traced, as ratios.
# Needs root. Extra arguments go to the program (e.g. -rounds 10 -datagrams 200000).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# Built, not `go run`: the compiler must not share the CPUs with the measurement.
go build -o "$dir/loopback" ./bench/loopback
"$dir/loopback" "$@"
