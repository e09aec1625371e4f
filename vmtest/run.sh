#!/usr/bin/env bash
# Boots test binaries on stock Debian kernels under qemu; see vmtest/README.md.
#   vmtest/run.sh KERNEL=6.1 -- ./tracer -test.v -test.run X
# Glue only: builds the runner (vmtest/runner) and runs it with the repository root and
# cache directory filled in. A later CACHE= on the command line wins.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${VMTEST_CACHE:-$root/.vmtest-cache}"
mkdir -p "$cache/build"
if ! command -v go >/dev/null; then
	echo "vmtest: go is not on the PATH" >&2
	exit 2
fi
(cd "$root" && CGO_ENABLED=0 go build -o "$cache/build/runner" ./vmtest/runner)
VMTEST_ROOT="$root" exec "$cache/build/runner" CACHE="$cache" "$@"
