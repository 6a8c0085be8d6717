#!/usr/bin/env bash
# Creates the local `busybox:latest` image that example and test apps build `FROM`, with no registry:
# Debian's busybox-static binary plus its applet links, imported with `docker import`.
# Idempotent: does nothing when the image already exists (pass --force to rebuild).
set -euo pipefail
image=${BASE_IMAGE:-busybox:latest}
if [ "${1:-}" != "--force" ] && docker image inspect "$image" >/dev/null 2>&1; then
  exit 0
fi
bb=/bin/busybox
if ! "$bb" --list >/dev/null 2>&1; then
  echo "base-image: $bb is missing; install Debian's busybox-static" >&2
  exit 1
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,www,var/www}
chmod 1777 "$root/tmp"
cp "$bb" "$root/bin/busybox"
for applet in $("$bb" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
tar -C "$root" -c . | docker import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'CMD ["/bin/sh"]' - "$image" >/dev/null
echo "base-image: created $image"
