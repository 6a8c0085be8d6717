#!/usr/bin/env bash
# Makes a fresh Debian machine ready to run Berth and its tests: a Docker engine that answers,
# redis-server, redis-sentinel (the failover tests'; its own service left stopped), caddy, git,
# busybox-static, curl, openssl, openssh-server (for the tests' SSH git remote), docker-registry
# (the test fleet's registry; installed, not started), iproute2, and chromium with
# chromium-driver (the dashboard's browser test) from Debian's packages, the local
# `busybox:latest` base image, and schemathesis (PyPI, in a virtualenv at /opt/berth/schemathesis).
# Idempotent; run as root (or with sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-sentinel >/dev/null || need+=(redis-sentinel)   # bus/tests/sentinel.rs: failover
command -v caddy >/dev/null || need+=(caddy)
command -v git >/dev/null || need+=(git)
command -v curl >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)   # scripts/webhook-push.sh signs with it
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "ok installed" || need+=(busybox-static)
command -v docker >/dev/null || need+=(docker.io)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)   # the tests' private SSH git remote
command -v docker-registry >/dev/null || need+=(docker-registry)   # the test fleet's registry
command -v ip >/dev/null || need+=(iproute2)   # the test fleet's engines get bridges of their own
command -v chromium >/dev/null || need+=(chromium)   # the dashboard's browser test (tests/tests/dashboard.rs)
command -v chromedriver >/dev/null || need+=(chromium-driver)   # ... driven through WebDriver
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The package's own Sentinel (on port 26379, watching a Redis on 6379) is not ours: the tests
# start theirs on free loopback ports. Where the package started it, stop it and keep it off.
if [ -e /lib/systemd/system/redis-sentinel.service ] || [ -e /etc/init.d/redis-sentinel ]; then
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now redis-sentinel >/dev/null 2>&1 || true
  else
    service redis-sentinel stop >/dev/null 2>&1 || true
    update-rc.d redis-sentinel disable >/dev/null 2>&1 || true
  fi
fi

if ! docker info >/dev/null 2>&1; then
  echo "setup: no Docker engine answers; starting dockerd"
  if command -v systemctl >/dev/null && systemctl start docker 2>/dev/null; then :; else
    nohup dockerd >/var/log/berth-dockerd.log 2>&1 &
  fi
  for _ in $(seq 1 120); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || { echo "setup: dockerd did not start; see /var/log/berth-dockerd.log" >&2; exit 1; }
fi

bash scripts/base-image.sh
bash scripts/schemathesis.sh >/dev/null   # the API contract test's outside tool (PyPI)
echo "setup: ready"
