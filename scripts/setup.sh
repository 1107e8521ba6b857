#!/usr/bin/env bash
# Installs what the tests, the demo and the benchmarks drive but cargo cannot fetch: the CNCF
# distribution registry, skopeo and umoci (to make and check images), htpasswd (the
# authenticated registry instance), curl, a C compiler that links statically (the test
# fixture program), git (ADD of Git repositories), and debootstrap (the Debian base of the
# RUN end-to-end test: scripts/debian-base.sh), and the SBOM validators from PyPI (spdx-tools,
# cyclonedx-python-lib, in target/sbom-venv). Debian packages, installed only when missing;
# needs root (or sudo) when something is missing.
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

# The SBOM tests validate what regbuild writes with the reference tools from PyPI, in a
# virtual environment of the repository's target directory.
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
venv="$(cd "$(dirname "$0")/.." && pwd)/target/sbom-venv"

# sbom_tools: spdx-tools (pyspdxtools) and cyclonedx-python-lib (its strict JSON validator).
sbom_tools() {
  if "$venv/bin/python" -c 'import spdx_tools, cyclonedx.validation.json' 2>/dev/null; then
    return 0
  fi
  [ "${1:-}" = "--check" ] && { echo "missing: the SBOM validators in $venv (scripts/setup.sh installs them)" >&2; return 1; }
  echo "installing spdx-tools and cyclonedx-python-lib into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'spdx-tools>=0.8' 'cyclonedx-python-lib[json-validation]>=8'
}

if [ "${#need[@]}" -eq 0 ]; then
  sbom_tools "${1:-}"
  exit $?
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
sbom_tools
