#!/usr/bin/env bash
# Starts the Debian docker-registry (CNCF distribution 2.8) in the background,
# for tests that compare regbuild's behaviour with a real registry.
#
# usage: start.sh DATA_DIR ADDR [HTPASSWD_FILE]
#   DATA_DIR       gets config.yml, storage/, registry.log and registry.pid
#   ADDR           host:port to listen on, e.g. 127.0.0.1:5000
#   HTPASSWD_FILE  enables Basic auth (bcrypt entries: `htpasswd -Bbn user pass`)
# Exits 0 once http://ADDR/v2/ answers (200, or 401 with auth), non-zero with
# the log tail otherwise. Stop it with: kill "$(cat DATA_DIR/registry.pid)"
set -euo pipefail

if [[ $# -lt 2 || $# -gt 3 ]]; then
  echo "usage: $0 DATA_DIR ADDR [HTPASSWD_FILE]" >&2
  exit 2
fi
addr=$2
htpasswd_file=${3:-}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=${DOCKER_REGISTRY_BIN:-/usr/bin/docker-registry}
if [[ ! -x $bin ]]; then
  echo "start.sh: $bin not found (apt-get install docker-registry)" >&2
  exit 1
fi

mkdir -p "$1/storage"
data_dir=$(cd "$1" && pwd)
config=$data_dir/config.yml
log=$data_dir/registry.log
sed -e "s|@ROOTDIR@|$data_dir/storage|" -e "s|@ADDR@|$addr|" "$here/config.yml" >"$config"
if [[ -n $htpasswd_file ]]; then
  if [[ ! -r $htpasswd_file ]]; then
    echo "start.sh: cannot read $htpasswd_file" >&2
    exit 1
  fi
  htpasswd_file=$(cd "$(dirname "$htpasswd_file")" && pwd)/$(basename "$htpasswd_file")
  printf 'auth:\n  htpasswd:\n    realm: basic-realm\n    path: "%s"\n' "$htpasswd_file" >>"$config"
fi

"$bin" serve "$config" >"$log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$data_dir/registry.pid"

fail() {
  echo "start.sh: $1; last lines of $log:" >&2
  tail -n 30 "$log" >&2 || true
  exit 1
}

for _ in $(seq 1 100); do
  if ! kill -0 "$pid" 2>/dev/null; then
    fail "docker-registry exited"
  fi
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://$addr/v2/" || true)
  if [[ $code == 200 || $code == 401 ]]; then
    exit 0
  fi
  sleep 0.1
done
kill "$pid" 2>/dev/null || true
fail "no answer on http://$addr/v2/ within 10 s"
