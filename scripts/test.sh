#!/usr/bin/env bash
# Runs every test of Berth on this machine, installing what is missing first.
# The integration tests start real Redis, Caddy, git and Docker containers of their own.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo build --workspace --bins --quiet
cargo test --workspace --no-fail-fast
