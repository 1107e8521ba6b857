#!/usr/bin/env bash
# Builds regbuild's executor image with regbuild itself and pushes it to REF:
#
#   scripts/executor-image.sh REF [--binary PATH] [-- EXTRA-PUSH-ARGS…]
#
# The image is `FROM scratch`: the regbuild binary and what the dynamic linker loads for it
# (the product's own `COPY --closure`, over a sysroot gathered here from the libraries this
# machine resolves for it), the machine's CA bundle when it has one (regbuild falls back to
# its bundled Mozilla roots otherwise), `/cache` as the working directory and TMPDIR and
# `/cache/regbuild` as the cache directory (mount a volume on /cache: a container's root
# filesystem is an overlay, which cannot hold a RUN step's whiteouts; the cache is a
# directory regbuild makes private inside it, so a volume every user may write, as a
# Kubernetes emptyDir is, works), and `ENTRYPOINT ["regbuild"]`. No shell, no git (ADD
# of a Git repository needs git: use the binary where git is).
#
# Reproducible: SOURCE_DATE_EPOCH is the commit's time (or the caller's), so the same binary
# gives the same digest. --binary takes a built binary (default: `cargo build --release`).
# EXTRA-PUSH-ARGS go to `regbuild push` (e.g. --insecure-registry, --json).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: $0 REF [--binary PATH] [-- EXTRA-PUSH-ARGS...]" >&2; exit 2; }
[ $# -ge 1 ] || usage
ref=$1
shift
bin=""
while [ $# -gt 0 ]; do
  case $1 in
    --binary) [ $# -ge 2 ] || usage; bin=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "unknown argument: $1" >&2; usage ;;
  esac
done
if [ -z "$bin" ]; then
  cargo build --release --quiet --bin regbuild
  bin=target/release/regbuild
fi
[ -x "$bin" ] || { echo "error: $bin is not an executable" >&2; exit 2; }

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root="$ctx/sysroot"
install -D -m 0755 "$bin" "$root/usr/local/bin/regbuild"
# The candidates for the sysroot: the libraries and loader ldd resolves on this machine,
# each at the path it was found by. The image takes what regbuild's closure finds needed.
ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' |
  while read -r lib; do
    real=$(readlink -f "$lib")
    install -D -m "$(stat -c %a "$real")" "$real" "$root$lib"
  done

certs=""
if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/ca-certificates.crt"
  certs='COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt'
fi
cat > "$ctx/Dockerfile" <<EOF
FROM scratch
COPY --closure --sysroot=sysroot /usr/local/bin/regbuild /
$certs
ENV PATH=/usr/local/bin HOME=/root REGBUILD_CACHE=/cache/regbuild TMPDIR=/cache
WORKDIR /cache
ENTRYPOINT ["regbuild"]
EOF

export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
"$bin" push --allow-root -t "$ref" "$@" "$ctx"
