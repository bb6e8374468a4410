#!/usr/bin/env bash
# Builds valet's image for valet.yaml from a valet binary already built on this machine:
# FROM scratch, the binary (debug sections stripped) and the shared libraries it loads, as
# `ldd` lists them. No base image is pulled, so it builds where no registry is reachable.
#
#   deploy/kubernetes/image.sh [BINARY] [TAG]
#
# BINARY defaults to `valet` on PATH (`cargo install --locked --path crates/valet`), TAG to
# valet:latest. The image goes to the Docker Engine of DOCKER_HOST (else the local one); push
# it to a registry your nodes pull from, or load it into each node's engine.
set -euo pipefail

binary=${1:-$(command -v valet || true)}
tag=${2:-valet:latest}
[ -n "$binary" ] && [ -x "$binary" ] || {
  echo "image.sh: no valet binary (give its path, or install it: cargo install --locked --path crates/valet)" >&2
  exit 1
}
for tool in docker ldd; do
  command -v "$tool" >/dev/null || { echo "image.sh: needs \`$tool\`" >&2; exit 1; }
done

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/root/usr/local/bin" "$context/root/tmp"
chmod 1777 "$context/root/tmp"
if ! strip --strip-debug -o "$context/root/usr/local/bin/valet" "$binary" 2>/dev/null; then
  cp "$binary" "$context/root/usr/local/bin/valet"
fi
# Lines are "libc.so.6 => /lib/.../libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)";
# the vDSO has no file. A static binary has none to copy.
{ ldd "$binary" 2>/dev/null || true; } | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) { print $i; break } }' |
  while read -r lib; do
    mkdir -p "$context/root$(dirname "$lib")"
    cp -L "$lib" "$context/root$lib"
  done
cat >"$context/Dockerfile" <<'EOF'
FROM scratch
COPY root/ /
ENTRYPOINT ["/usr/local/bin/valet"]
EOF
docker build -q -t "$tag" "$context" >/dev/null
echo "$tag"
