#!/usr/bin/env bash
# Installs Berth as systemd services on this server: the `berth` binary to /usr/local/bin, the
# units berth-coordinator.service and berth-node.service to /etc/systemd/system, the settings
# file /etc/berth/berth.env (only if there is none: an existing one is never overwritten), the
# berth system user and its data dir /var/lib/berth; then `systemctl daemon-reload`. It enables
# nothing unless asked (--enable); it prints the commands that do. Safe to run again (upgrades
# the binary and the units).
#
#   ops/install.sh [--bin PATH] [--enable coordinator|node]... [--root DIR] [--no-systemctl]
#
#   --bin PATH        the binary to install (default: target/release/berth of this checkout,
#                     or of $CARGO_TARGET_DIR; build it with `cargo build --release -p berth`)
#   --enable ROLE     also `systemctl enable --now berth-ROLE` (coordinator or node; repeatable)
#   --root DIR        install under DIR instead of / (packaging, tests): no root needed, no user
#                     created, no chown, no systemctl
#   --no-systemctl    do not run systemctl (it is also skipped when systemd is not running)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
units=(berth-coordinator berth-node)

die() { echo "install.sh: $*" >&2; exit 1; }
# The comment at the top; exit status $1 (2: a bad command line, 0: asked for).
usage() {
  if [ "${1:-2}" -eq 0 ]; then exec >&1; else exec >&2; fi
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
  exit "${1:-2}"
}

bin=""
root="/"
systemctl_ok=1
enable=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) [ $# -ge 2 ] || usage; bin="$2"; shift 2 ;;
    --root) [ $# -ge 2 ] || usage; root="$2"; shift 2 ;;
    --enable)
      [ $# -ge 2 ] || usage
      case "$2" in
        coordinator|node) enable+=("berth-$2") ;;
        *) die "--enable takes coordinator or node, not '$2'" ;;
      esac
      shift 2 ;;
    --no-systemctl) systemctl_ok=0; shift ;;
    -h|--help) usage 0 ;;
    *) echo "install.sh: unknown argument '$1'" >&2; usage ;;
  esac
done

real=0
if [ "$root" = "/" ]; then
  real=1
  root=""
  [ "$(id -u)" -eq 0 ] || die "installing to / needs root: run it with sudo (or give --root DIR to install under DIR)"
else
  [ -d "$root" ] || die "--root $root is not a directory"
  root="$(cd "$root" && pwd)"
  systemctl_ok=0
fi
if [ $systemctl_ok -eq 1 ] && { ! command -v systemctl >/dev/null || [ ! -d /run/systemd/system ]; }; then
  echo "systemd is not running here: skipping systemctl"
  systemctl_ok=0
fi
[ ${#enable[@]} -eq 0 ] || [ $systemctl_ok -eq 1 ] || die "--enable needs a running systemd (and no --root, no --no-systemctl)"

if [ -z "$bin" ]; then
  for candidate in "${CARGO_TARGET_DIR:-$repo/target}/release/berth" "$repo/target/release/berth"; do
    if [ -x "$candidate" ]; then bin="$candidate"; break; fi
  done
  [ -n "$bin" ] || die "no built binary: run \`cargo build --release -p berth\` first, or give --bin PATH"
fi
[ -f "$bin" ] && [ -x "$bin" ] || die "--bin $bin is not an executable file"
"$bin" --version >/dev/null 2>&1 || die "$bin does not run (\`$bin --version\` failed)"

# Copies $1 to $2 with mode $3 unless $2 already holds the same bytes; says which.
put() {
  local src="$1" dst="$2" mode="$3"
  if [ -f "$dst" ] && cmp -s "$src" "$dst"; then
    echo "unchanged  $dst"
    return
  fi
  install -d -m 0755 "$(dirname "$dst")"
  # A new file renamed into place: a running binary is replaced, not written over.
  install -m "$mode" "$src" "$dst.tmp.$$"
  mv -f "$dst.tmp.$$" "$dst"
  echo "installed  $dst"
}

put "$bin" "$root/usr/local/bin/berth" 0755
for u in "${units[@]}"; do
  put "$here/systemd/$u.service" "$root/etc/systemd/system/$u.service" 0644
done

install -d -m 0755 "$root/etc/berth"
# The example always (to compare with after an upgrade); the settings file only once.
put "$here/systemd/berth.env.example" "$root/etc/berth/berth.env.example" 0644
env="$root/etc/berth/berth.env"
if [ -e "$env" ]; then
  echo "kept       $env (yours; compare with berth.env.example next to it)"
else
  install -m 0600 "$here/systemd/berth.env.example" "$env"
  echo "installed  $env (edit it)"
fi

if [ $real -eq 1 ]; then
  if ! getent passwd berth >/dev/null; then
    useradd --system --user-group --home-dir /var/lib/berth --no-create-home \
      --shell /usr/sbin/nologin --comment "Berth" berth
    echo "created    user berth"
  fi
  getent group docker >/dev/null \
    || echo "warning: there is no docker group: install Docker before starting berth-node (the unit runs it in that group)" >&2
fi
install -d -m 0750 "$root/var/lib/berth"
[ $real -eq 0 ] || chown berth:berth /var/lib/berth

if [ $systemctl_ok -eq 1 ]; then
  systemctl daemon-reload
  echo "ran        systemctl daemon-reload"
  for u in "${enable[@]}"; do
    systemctl enable --now "$u.service"
    echo "ran        systemctl enable --now $u"
  done
fi

cat <<MSG

Next:
  1. edit /etc/berth/berth.env (BERTH_REDIS__URL, BERTH_BASE_DOMAIN, BERTH_NODE__ADVERTISE, ...)
  2. on the coordinator's host:  systemctl enable --now berth-coordinator
     on every server:            systemctl enable --now berth-node
  3. logs:                       journalctl -u berth-coordinator -u berth-node -f
After an upgrade (this script run again), restart what runs:
  systemctl try-restart berth-coordinator berth-node
MSG
