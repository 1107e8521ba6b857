#!/usr/bin/env bash
# Installs what the tests, the demo and the benchmarks drive but cargo cannot fetch: the CNCF
# distribution registry, skopeo and umoci (to make and check images), htpasswd (the
# authenticated registry instance), curl, a C compiler that links statically (the test
# fixture program), git (ADD of Git repositories), and debootstrap (the Debian base of the
# RUN end-to-end test: scripts/debian-base.sh). Debian packages, installed only when missing; needs root (or sudo)
# when something is missing.
#
#   scripts/setup.sh            check and install
#   scripts/setup.sh --check    only say what is missing (exit 1 when something is)
set -euo pipefail

need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v skopeo >/dev/null || need+=(skopeo)
command -v umoci >/dev/null || need+=(umoci)
command -v htpasswd >/dev/null || need+=(apache2-utils)
command -v curl >/dev/null || need+=(curl)
command -v git >/dev/null || need+=(git)
command -v cc >/dev/null || need+=(gcc)
# /usr/sbin is not on every user's PATH.
[ -x /usr/sbin/debootstrap ] || command -v debootstrap >/dev/null || need+=(debootstrap)
# The sandbox tests: a busybox root filesystem, and newuidmap/newgidmap for rootless runs.
[ -x /bin/busybox ] || need+=(busybox-static)
command -v newuidmap >/dev/null || need+=(uidmap)
# Containers for the executor tests (regbuild inside podman, as kaniko ran inside a pod).
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
# A static link needs libc.a (libc6-dev); a compiler alone is not enough.
if command -v cc >/dev/null; then
  probe=$(mktemp -d)
  printf 'int main(void){return 0;}\n' > "$probe/p.c"
  cc -static -o "$probe/p" "$probe/p.c" 2>/dev/null || need+=(libc6-dev)
  rm -rf "$probe"
else
  need+=(libc6-dev)
fi

if [ "${#need[@]}" -eq 0 ]; then
  exit 0
fi
if [ "${1:-}" = "--check" ]; then
  echo "missing Debian packages: ${need[*]} (scripts/setup.sh installs them)" >&2
  exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || {
    echo "error: missing Debian packages ${need[*]}; run scripts/setup.sh as root" >&2
    exit 1
  }
  sudo=(sudo)
fi
echo "installing Debian packages: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
