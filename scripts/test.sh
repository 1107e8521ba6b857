#!/usr/bin/env bash
# The test command on a fresh machine: installs what the tests drive (scripts/setup.sh), then
# runs every test of the workspace. Arguments go to `cargo test`, e.g. `--test it hosted_registries`
# (the integration tests are one binary, `it`, with a module per capability; the filter picks one).
# Tests that run built programs under chroot need root (CI runs as root).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo test --workspace "$@"
