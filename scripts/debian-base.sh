#!/usr/bin/env bash
# A small Debian base image for the RUN end-to-end test and the `run` benchmark:
# `debootstrap --variant=minbase` of the suite this machine runs, from the apt mirror this
# machine is configured with (read from its apt sources: no host is written here), made once
# and cached.
#
#   scripts/debian-base.sh [OUT_DIR]
#   scripts/debian-base.sh --print-source    only print the suite, mirror and keyring it
#                                            would use (read from the apt sources), and exit
#
# OUT_DIR (default: $REGBUILD_DEBIAN_CACHE, else ${CARGO_TARGET_DIR:-target}/debian-base)
# gets:
#   rootfs.tar.gz  the root filesystem as one gzip tar: names sorted, numeric uid/gid, every
#                  mtime 2000-01-01T00:00:00Z, no /dev, /proc, /sys, /run, /tmp contents, no
#                  apt lists, .debs or logs, docs/man/locales left out (as Docker's debian
#                  images do). It is the image's only layer: a link to its blob in oci/.
#   oci/           an OCI image layout (umoci) with the tag `base`: that layer, a config with
#                  `created` 2000-01-01T00:00:00Z, Env PATH, Cmd ["bash"]; push it with
#                  `skopeo copy oci:OUT_DIR/oci:base docker://REGISTRY/REPO:TAG`.
#   base.env       KEY=VALUE lines: SUITE, MIRROR, ARCH, MANIFEST_DIGEST, LAYER_DIGEST,
#                  LAYER_BYTES (the tarball's size), ROOTFS_BYTES (unpacked), PACKAGES,
#                  DEBOOTSTRAP_SECONDS (the time the first run took), CREATED_AT.
#   debootstrap.log
# An OUT_DIR that is complete for the same suite, mirror, architecture and script version is
# reused as it is (nothing is downloaded; repeated runs, CI steps and tests debootstrap once);
# anything else is made again. Remove OUT_DIR to refresh it. The last line of stdout is
# OUT_DIR (absolute). Concurrent runs on one OUT_DIR wait for each other (flock).
#
# The mirror is the first `deb` source (/etc/apt/sources.list, then sources.list.d/*.list and
# *.sources in apt's order; one-line and deb822 formats; `Enabled: no` skipped) that has the
# suite and the `main` component, over http, https or file; the suite is VERSION_CODENAME of
# /etc/os-release, else the first plain suite (no `-updates`, `-security`) of a `deb` source.
# REGBUILD_DEBIAN_MIRROR=URL and REGBUILD_DEBIAN_SUITE=NAME override them. The image's own
# /etc/apt/sources.list names the same mirror and suite (main), so `RUN apt-get update` in an
# image built on it uses this machine's mirror.
#
# Needs root (debootstrap, chroot), debootstrap (scripts/setup.sh installs it), umoci, and
# the network (the mirror).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
version=1 # bump when the output changes: cached bases of another version are made again

log() { printf '[debian-base] %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

print_source=no
if [[ ${1:-} == --print-source ]]; then
  print_source=yes
  shift
fi
out=${1:-${REGBUILD_DEBIAN_CACHE:-${CARGO_TARGET_DIR:-$repo/target}/debian-base}}
[[ $out == /* ]] || out=$(pwd)/$out

# --- suite, mirror, architecture -----------------------------------------------------------
# source_entries: one line per `deb` source: URI SUITE SIGNED-BY(or -) COMPONENT...
source_entries() {
  local f files=()
  [[ -f /etc/apt/sources.list ]] && files+=(/etc/apt/sources.list)
  for f in /etc/apt/sources.list.d/*; do
    case $f in *.list | *.sources) [[ -f $f ]] && files+=("$f") ;; esac
  done
  for f in "${files[@]}"; do
    case $f in
      *.sources)
        # deb822: paragraphs of `Key: value` (continuation lines start with a blank).
        awk '
          function flush(   n, m, i, j, U, S, sb) {
            if (f["types"] ~ /(^|[ \t])deb([ \t]|$)/ && tolower(f["enabled"]) !~ /^[ \t]*no/) {
              n = split(f["uris"], U, /[ \t]+/)
              m = split(f["suites"], S, /[ \t]+/)
              sb = f["signed-by"]
              gsub(/^[ \t]+|[ \t]+$/, "", sb)
              if (sb !~ /^\//) sb = "-"
              for (i = 1; i <= n; i++)
                for (j = 1; j <= m; j++)
                  if (U[i] != "" && S[j] != "") print U[i], S[j], sb, f["components"]
            }
            split("", f)
            key = ""
          }
          /^#/ { next }
          /^[ \t]*$/ { flush(); next }
          /^[ \t]/ { if (key != "") f[key] = f[key] " " $0; next }
          {
            i = index($0, ":")
            if (i == 0) next
            key = tolower(substr($0, 1, i - 1))
            f[key] = substr($0, i + 1)
          }
          END { flush() }
        ' "$f"
        ;;
      *)
        # One-line: deb [ options ] URI SUITE COMPONENT...
        awk '
          /^[ \t]*deb[ \t]/ {
            line = $0
            sub(/#.*/, "", line)
            sb = "-"
            if (match(line, /\[[^]]*\]/)) {
              opts = substr(line, RSTART + 1, RLENGTH - 2)
              line = substr(line, 1, RSTART - 1) " " substr(line, RSTART + RLENGTH)
              n = split(opts, O, /[ \t]+/)
              for (i = 1; i <= n; i++) if (O[i] ~ /^signed-by=\//) sb = substr(O[i], 11)
            }
            n = split(line, W, /[ \t]+/)
            k = 0
            for (i = 1; i <= n; i++) if (W[i] != "") V[++k] = W[i]
            if (k < 3) next
            comps = ""
            for (i = 4; i <= k; i++) comps = comps " " V[i]
            print V[2], V[3], sb, comps
          }
        ' "$f"
        ;;
    esac
  done
}

entries=$(source_entries)
suite=${REGBUILD_DEBIAN_SUITE:-}
if [[ -z $suite && -r /etc/os-release ]]; then
  suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
fi
if [[ -z $suite ]]; then
  suite=$(awk '$2 !~ /[-\/]/ { print $2; exit }' <<<"$entries")
fi
[[ -n $suite ]] || die "no suite: /etc/os-release has no VERSION_CODENAME and no apt source names one (set REGBUILD_DEBIAN_SUITE)"

mirror=${REGBUILD_DEBIAN_MIRROR:-}
keyring=-
# find_source SUITE: "URI SIGNED-BY" of the first usable source with SUITE (any plain suite
# when SUITE is empty: `stable` where the sources name no codename), or nothing.
find_source() {
  awk -v s="$1" '
    (s == "" ? $2 !~ /[-\/]/ : $2 == s) && $1 ~ /^(https?|file):/ {
      for (i = 4; i <= NF; i++) if ($i == "main") { print $1, $3, $2; exit }
    }' <<<"$entries"
}
if [[ -z $mirror ]]; then
  read -r mirror keyring _ < <(find_source "$suite") || true
  if [[ -z $mirror && -z ${REGBUILD_DEBIAN_SUITE:-} ]]; then
    # The sources may name the suite by its alias (stable, testing) rather than its codename.
    read -r mirror keyring other < <(find_source "") || true
    [[ -n $mirror ]] && suite=$other
  fi
fi
[[ -n $mirror ]] || die "no apt source of this machine has suite '$suite' with component main" \
  "over http(s) or file (apt sources read: /etc/apt/sources.list, /etc/apt/sources.list.d/);" \
  "set REGBUILD_DEBIAN_MIRROR"
mirror=${mirror%/}
arch=$(dpkg --print-architecture)
key="version=$version suite=$suite mirror=$mirror arch=$arch variant=minbase"
if [[ $print_source == yes ]]; then
  printf 'suite=%s mirror=%s keyring=%s arch=%s\n' "$suite" "$mirror" "$keyring" "$arch"
  exit 0
fi

[[ $(id -u) -eq 0 ]] || die "debootstrap needs root (run as root, or with sudo)"
debootstrap=$(command -v debootstrap || echo /usr/sbin/debootstrap)
[[ -x $debootstrap ]] || die "debootstrap is not installed (scripts/setup.sh installs it)"
command -v umoci >/dev/null || die "umoci is not installed (scripts/setup.sh installs it)"

# --- the cache -----------------------------------------------------------------------------
complete() {
  [[ -f $out/.complete && $(cat "$out/.complete") == "$key" && -f $out/base.env &&
    -f $out/oci/index.json && -s $out/rootfs.tar.gz ]]
}

mkdir -p "$(dirname "$out")"
exec 9>"$out.lock"
flock 9
if complete; then
  log "reusing $out ($suite from $mirror, $arch)"
  echo "$out"
  exit 0
fi
if [[ -e $out ]] && ! [[ -f $out/.complete || -z $(ls -A "$out") ]]; then
  die "$out exists and was not made by this script; not replacing it"
fi

tmp=$out.tmp
mounted_under() { grep -qF " $1/" /proc/mounts; }
if [[ -e $tmp ]]; then
  mounted_under "$tmp" && die "$tmp has something mounted under it (an interrupted run?); unmount it first"
  rm -rf "$tmp"
fi
cleanup() {
  local rc=$?
  if [[ $rc -ne 0 && -e $tmp ]]; then
    if mounted_under "$tmp"; then
      log "not removing $tmp: something is still mounted under it"
    else
      rm -rf "$tmp"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$tmp"
rootfs=$tmp/rootfs

# --- debootstrap ---------------------------------------------------------------------------
opts=(--variant=minbase "--arch=$arch" --components=main)
[[ $keyring != - && -r $keyring ]] && opts+=("--keyring=$keyring")
# apt over https in the image needs the CA certificates.
[[ $mirror == https:* ]] && opts+=(--include=ca-certificates)
# In a mount namespace of its own: the /proc and /sys debootstrap mounts in the target go away
# with it, even when it is interrupted.
ns=()
unshare --mount --propagation private true 2>/dev/null && ns=(unshare --mount --propagation private)
log "debootstrap ${opts[*]} $suite $mirror (log: $out/debootstrap.log)"
# Two stages, so that dpkg of the second one (which installs every package) runs with
# force-unsafe-io: no fsync per unpacked file (most of the time on a VM disk otherwise). The
# setting is removed afterwards: the image's dpkg is Debian's default.
failed() {
  tail -n 20 "$tmp/debootstrap.log" >&2
  [[ -f $rootfs/debootstrap/debootstrap.log ]] && tail -n 20 "$rootfs/debootstrap/debootstrap.log" >&2
  die "debootstrap failed ($1; log above)"
}
t0=$(date +%s.%N)
"${ns[@]}" "$debootstrap" --foreign "${opts[@]}" "$suite" "$rootfs" "$mirror" \
  >"$tmp/debootstrap.log" 2>&1 || failed "first stage: download, unpack"
t1=$(date +%s.%N)
mkdir -p "$rootfs/etc/dpkg/dpkg.cfg.d"
echo force-unsafe-io >"$rootfs/etc/dpkg/dpkg.cfg.d/regbuild-unsafe-io"
"${ns[@]}" chroot "$rootfs" /debootstrap/debootstrap --second-stage \
  >>"$tmp/debootstrap.log" 2>&1 || failed "second stage: install"
rm -f "$rootfs/etc/dpkg/dpkg.cfg.d/regbuild-unsafe-io"
t2=$(date +%s.%N)
seconds=$(awk -v a="$t0" -v b="$t2" 'BEGIN { printf "%.1f", b - a }')
first=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
log "debootstrap took $seconds s (first stage, download and unpack: $first s)"
mounted_under "$rootfs" && die "debootstrap left mounts under $rootfs"

# --- minimise, as Docker's debian images do (debuerreotype) --------------------------------
# dpkg leaves documentation, manual pages and translations out of packages installed later
# (RUN apt-get install): smaller layers.
mkdir -p "$rootfs/etc/dpkg/dpkg.cfg.d" "$rootfs/etc/apt/apt.conf.d"
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/regbuild-minimal" <<'EOF'
# scripts/debian-base.sh: no documentation, manual pages or translations (as Docker's images).
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
# apt keeps no downloaded .debs nor binary caches in the image, fetches no translations.
cat >"$rootfs/etc/apt/apt.conf.d/regbuild-clean" <<'EOF'
// scripts/debian-base.sh: no .debs, caches or translations left in image layers.
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
EOF
# What is already installed, the same way.
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
for d in man groff info lintian; do
  [[ -d $rootfs/usr/share/$d ]] && find "$rootfs/usr/share/$d" -mindepth 1 -delete
done
if [[ -d $rootfs/usr/share/locale ]]; then
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
fi
# Nothing of this machine, of the download or of the run: the host's resolv.conf and hostname
# (the RUN sandbox mounts its own), apt lists and .debs, logs, caches, device nodes.
rm -f "$rootfs/etc/resolv.conf" "$rootfs/etc/hostname" "$rootfs/etc/machine-id"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$rootfs/etc/hosts"
rm -rf "$rootfs/debootstrap"
find "$rootfs/var/lib/apt/lists" "$rootfs/var/cache/apt" "$rootfs/var/log" -type f -delete
rm -f "$rootfs/var/cache/ldconfig/aux-cache" "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/lib/dpkg/*-old
for d in dev proc sys run tmp var/tmp; do
  [[ -d $rootfs/$d ]] && find "$rootfs/$d" -mindepth 1 -delete
done
packages=$(chroot "$rootfs" dpkg-query -W -f '.\n' | wc -l)
rootfs_bytes=$(du -sb "$rootfs" | cut -f1)

# --- the tarball and the OCI layout --------------------------------------------------------
epoch=2000-01-01T00:00:00Z
# No leading "./": top-level names as Docker's layers have them, sorted (C locale).
(cd "$rootfs" && find . -mindepth 1 -maxdepth 1 -printf '%P\0' | LC_ALL=C sort -z) >"$tmp/top"
tar --create --file="$tmp/rootfs.tar" --directory="$rootfs" --null --files-from="$tmp/top" \
  --sort=name --numeric-owner --mtime="$epoch" --format=pax \
  --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime
rm -rf "$rootfs"
umoci init --layout "$tmp/oci" >/dev/null
umoci new --image "$tmp/oci:base" >/dev/null
umoci raw add-layer --image "$tmp/oci:base" --history.created="$epoch" \
  --history.created_by="debootstrap --variant=minbase $suite $mirror" "$tmp/rootfs.tar" >/dev/null
rm -f "$tmp/rootfs.tar"
umoci config --image "$tmp/oci:base" --no-history --created="$epoch" --os linux \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.cmd bash >/dev/null
umoci gc --layout "$tmp/oci" >/dev/null

manifest=$(grep -o '"digest":"sha256:[0-9a-f]*"' "$tmp/oci/index.json" | head -n1 | cut -d'"' -f4)
[[ -n $manifest ]] || die "no manifest in $tmp/oci/index.json"
layer=$(sed -n 's/.*"layers":\[{[^}]*"digest":"\(sha256:[0-9a-f]*\)".*/\1/p' \
  "$tmp/oci/blobs/sha256/${manifest#sha256:}")
[[ -n $layer ]] || die "no layer in the manifest $manifest"
ln -s "oci/blobs/sha256/${layer#sha256:}" "$tmp/rootfs.tar.gz"
layer_bytes=$(stat -L -c %s "$tmp/rootfs.tar.gz")

cat >"$tmp/base.env" <<EOF
SUITE=$suite
MIRROR=$mirror
ARCH=$arch
MANIFEST_DIGEST=$manifest
LAYER_DIGEST=$layer
LAYER_BYTES=$layer_bytes
ROOTFS_BYTES=$rootfs_bytes
PACKAGES=$packages
DEBOOTSTRAP_SECONDS=$seconds
DEBOOTSTRAP_FIRST_STAGE_SECONDS=$first
CREATED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
EOF
printf '%s\n' "$key" >"$tmp/.complete"
rm -f "$tmp/top"

rm -rf "$out"
mv "$tmp" "$out"
log "$out: $packages packages, rootfs $((rootfs_bytes / 1000000)) MB, tarball $((layer_bytes / 1000000)) MB ($layer), image $manifest"
echo "$out"
