#!/usr/bin/env bash
# Brings up a local Berth cluster (`berth up`: Redis, Caddy, coordinator, one node) and deploys
# examples/hello from a local git repository, printing its URL. Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bash scripts/setup.sh
cargo build --quiet --bin berth
berth="$root/target/debug/berth"

export BERTH_DATA_DIR=${BERTH_DATA_DIR:-$root/.berth}
mkdir -p "$BERTH_DATA_DIR"
ingress=${BERTH_NODE__INGRESS_HTTP:-8080}

"$berth" up >"$BERTH_DATA_DIR/berth-up.log" 2>&1 &
up=$!
trap 'kill -TERM $up 2>/dev/null; wait $up 2>/dev/null' EXIT INT TERM
for _ in $(seq 1 600); do
  grep -q "Berth is up" "$BERTH_DATA_DIR/berth-up.log" 2>/dev/null && break
  kill -0 $up 2>/dev/null || { cat "$BERTH_DATA_DIR/berth-up.log"; exit 1; }
  sleep 0.1
done
grep -A5 "Berth is up" "$BERTH_DATA_DIR/berth-up.log" | head -4

# The example app's source, as its own git repository (what a user would push).
src="$BERTH_DATA_DIR/examples/hello"
if [ ! -d "$src/.git" ]; then
  mkdir -p "$src"
  cp -r examples/hello/. "$src/"
  git -C "$src" init -q -b main
  git -C "$src" add -A
  git -C "$src" -c user.name=berth -c user.email=berth@localhost commit -q -m "hello, v1"
fi
"$berth" apps show hello >/dev/null 2>&1 || "$berth" apps create hello --repo "$src" --port 8080
"$berth" deploy hello --wait

url="http://hello.localhost:$ingress/"
echo
echo "examples/hello is live at $url"
curl -s -H "Host: hello.localhost" "http://127.0.0.1:$ingress/" | grep -o 'version: <span id="version">[^<]*' | sed 's/<span id="version">//'
echo "(berth up keeps running; logs in $BERTH_DATA_DIR/berth-up.log; Ctrl-C stops it)"
wait $up
