#!/usr/bin/env bash
# Benchmarks against reference tools on the same files, in the same run, reported as ratios
# (this machine is shared and noisy: ratios travel, absolute times do not).
#
#   scripts/bench.sh [audit|score|deploy|monitor|fleet]      (default: all but fleet)
#
# audit: `shipshape audit` over 1 x 1 GiB + 8 x 128 MiB files vs `openssl dgst -sha256` and
#        `sha256sum` over the same files: the single large file, the whole set, and the shape of a
#        real workspace (one 1 GiB model beside four small configs and a notebook).
# score: `shipshape score` over 10 million JSON-lines events (parsing included) vs `wc -l` (reading
#        only, the floor) and Python's json module (parsing only, on the first million lines).
# deploy: first deploy of 1 x 1 GiB + 200 small files (copy mode) vs `cp -r` + `sync`; a redeploy
#        where only one config changed under the 1 GiB model; rollback in symlink and copy mode.
# monitor: `shipshape ingest` of 1 million events (fresh database each run) vs a plain Python
#        ingester (json.loads + one executemany into SQLite with the same pragmas) and pandas
#        (read_json + to_sql, when pandas is installed); one
#        `shipshape evaluate` pass (the whole command) over a database of 10 million events spread
#        over 90 days vs a Python rescan of the raw events of the same windows and a pandas pass
#        (read_sql + the three metrics); peak RSS of both.
# Each command runs RUNS times (default 5) after one warm-up; the median is reported. Files are
# generated once under BENCH_DIR (default /tmp/shipshape-bench) and reused.
set -euo pipefail
export LC_ALL=C # EPOCHREALTIME with a decimal point
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
BENCH_DIR=${BENCH_DIR:-/tmp/shipshape-bench}
which=${1:-all}

command -v openssl >/dev/null || { echo "bench needs openssl (apt-get install openssl)"; exit 2; }
cargo build --release --locked --quiet
BIN=$PWD/target/release/shipshape

# median wall time in seconds of a command, over RUNS runs after one warm-up (timed with bash's
# EPOCHREALTIME: no clock process is started, so a command's time is its own, not a `date`'s too)
median() {
  "$@" >/dev/null 2>&1
  local times=()
  for _ in $(seq "$RUNS"); do
    local start end
    start=$EPOCHREALTIME
    "$@" >/dev/null 2>&1
    end=$EPOCHREALTIME
    times+=("$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.4f", b - a }')")
  done
  printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

make_workspace() { # dir, files...
  local dir=$1
  shift
  mkdir -p "$dir/data"
  cat >"$dir/shipshape.toml" <<TOML
[artifacts.models]
include = ["data/*.bin"]
TOML
  for f in "$@"; do ln -f "$BENCH_DIR/files/$f" "$dir/data/$f"; done
}

bench_audit() {
  mkdir -p "$BENCH_DIR/files"
  if [ ! -f "$BENCH_DIR/files/big.bin" ]; then
    echo "generating 1 x 1 GiB + 8 x 128 MiB in $BENCH_DIR/files ..."
    head -c $((1024 * 1024 * 1024)) /dev/urandom >"$BENCH_DIR/files/big.bin"
    for i in 1 2 3 4 5 6 7 8; do head -c $((128 * 1024 * 1024)) /dev/urandom >"$BENCH_DIR/files/part$i.bin"; done
  fi
  rm -rf "$BENCH_DIR/one" "$BENCH_DIR/set" "$BENCH_DIR/real"
  make_workspace "$BENCH_DIR/one" big.bin
  make_workspace "$BENCH_DIR/set" big.bin part1.bin part2.bin part3.bin part4.bin part5.bin part6.bin part7.bin part8.bin
  # The realistic shape: the example's small files (four configs, a notebook) beside one 1 GiB model.
  make_workspace "$BENCH_DIR/real" big.bin
  mkdir -p "$BENCH_DIR/real/config" "$BENCH_DIR/real/notebooks"
  for name in strategy risk universe search_space; do
    head -c 3000 /dev/urandom | base64 >"$BENCH_DIR/real/config/$name.yaml"
  done
  head -c 40000 /dev/urandom | base64 >"$BENCH_DIR/real/notebooks/report.ipynb"
  cat >>"$BENCH_DIR/real/shipshape.toml" <<TOML

[artifacts.configs]
include = ["config/*.yaml"]

[artifacts.notebooks]
include = ["notebooks/*.ipynb"]
TOML
  local files=("$BENCH_DIR/files/big.bin")
  local set=("$BENCH_DIR"/files/big.bin "$BENCH_DIR"/files/part*.bin)
  local real=("$BENCH_DIR"/real/data/big.bin "$BENCH_DIR"/real/config/*.yaml "$BENCH_DIR"/real/notebooks/report.ipynb)

  local s_one o_one c_one s_set o_set c_set s_real o_real c_real
  s_one=$(median "$BIN" -q -C "$BENCH_DIR/one" audit)
  o_one=$(median openssl dgst -sha256 "${files[@]}")
  c_one=$(median sha256sum "${files[@]}")
  s_set=$(median "$BIN" -q -C "$BENCH_DIR/set" audit)
  o_set=$(median openssl dgst -sha256 "${set[@]}")
  c_set=$(median sha256sum "${set[@]}")
  s_real=$(median "$BIN" -q -C "$BENCH_DIR/real" audit)
  o_real=$(median openssl dgst -sha256 "${real[@]}")
  c_real=$(median sha256sum "${real[@]}")
  rm -rf "$BENCH_DIR/one/release" "$BENCH_DIR/set/release" "$BENCH_DIR/real/release"

  echo
  echo "audit, median of $RUNS runs (seconds; ratio = reference time / shipshape time, >1 means shipshape is faster)"
  printf '%-28s %10s %10s %10s %16s %16s\n' "files" "shipshape" "openssl" "sha256sum" "vs openssl" "vs sha256sum"
  printf '%-28s %10.3f %10.3f %10.3f %15sx %15sx\n' "1 x 1 GiB" "$s_one" "$o_one" "$c_one" "$(ratio "$o_one" "$s_one")" "$(ratio "$c_one" "$s_one")"
  printf '%-28s %10.3f %10.3f %10.3f %15sx %15sx\n' "1 x 1 GiB + 8 x 128 MiB" "$s_set" "$o_set" "$c_set" "$(ratio "$o_set" "$s_set")" "$(ratio "$c_set" "$s_set")"
  printf '%-28s %10.3f %10.3f %10.3f %15sx %15sx\n' "1 GiB model + 5 small files" "$s_real" "$o_real" "$c_real" "$(ratio "$o_real" "$s_real")" "$(ratio "$c_real" "$s_real")"
  echo "cores: $(nproc); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); sha_ni: $(grep -q sha_ni /proc/cpuinfo && echo yes || echo no)"
}

bench_score() {
  local events="$BENCH_DIR/events-10m.jsonl"
  if [ ! -f "$events" ]; then
    echo "generating 10 million events in $events ..."
    python3 - "$events" <<'PY'
import sys
lines = open("examples/sensequant/data/backtest/events.jsonl", "rb").read().splitlines(keepends=True)
with open(sys.argv[1], "wb") as out:
    written = 0
    while written < 10_000_000:
        chunk = lines[: 10_000_000 - written]
        out.writelines(chunk)
        written += len(chunk)
PY
  fi
  head -n 1000000 "$events" >"$BENCH_DIR/events-1m.jsonl"
  local s w p
  s=$(median "$BIN" -q score "$events")
  w=$(median wc -l "$events")
  p=$(median python3 -c 'import json,sys
n=0
for line in open(sys.argv[1], "rb"):
    json.loads(line); n+=1' "$BENCH_DIR/events-1m.jsonl")
  local size
  size=$(stat -c %s "$events")
  echo
  echo "score, median of $RUNS runs: 10,000,000 events ($((size / 1024 / 1024)) MiB of JSON lines)"
  printf '%-40s %10s %16s\n' "command" "seconds" "events/s"
  printf '%-40s %10.3f %16.0f\n' "shipshape score (parse + score)" "$s" "$(awk -v s="$s" 'BEGIN { print 10000000 / s }')"
  printf '%-40s %10.3f %16.0f\n' "wc -l (read only)" "$w" "$(awk -v s="$w" 'BEGIN { print 10000000 / s }')"
  printf '%-40s %10.3f %16.0f\n' "python3 json.loads (1M lines, parse only)" "$p" "$(awk -v s="$p" 'BEGIN { print 1000000 / s }')"
  echo "shipshape vs python json: $(awk -v a="$p" -v b="$s" 'BEGIN { printf "%.1f", (a * 10) / b }')x faster per event"
}

seconds() { # run a command once (after flushing earlier writes), print its wall time in seconds
  local start end
  sync
  start=$EPOCHREALTIME
  "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }
  end=$EPOCHREALTIME
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.4f", b - a }'
}

# A workspace of 1 x 1 GiB model + 200 small configs, one approver, deploying into $1/prod ($2 mode).
one_approver() { # dir: a policy of one release-manager and a key for it, made now
  local dir=$1
  cat >"$dir/ws/release/policy.yaml" <<YAML
schema_version: 1
roles: {release-manager: {display_name: Release Manager}}
release_types:
  major: [{roles: [release-manager], count: 1}]
  minor: [{roles: [release-manager], count: 1}]
  hotfix: [{roles: [release-manager], count: 1}]
YAML
  ssh-keygen -q -t ed25519 -N '' -C bench -f "$dir/key"
  echo "bench@example.com $(cat "$dir/key.pub")" >"$dir/ws/release/allowed_signers"
}

deploy_workspace() {
  local dir=$1 mode=$2
  rm -rf "$dir" && mkdir -p "$dir/ws/data/models" "$dir/ws/configs" "$dir/ws/release"
  cp "$BENCH_DIR/files/big.bin" "$dir/ws/data/models/model.bin"
  for i in $(seq 1 200); do printf 'threshold_%d = %d\n' "$i" "$i" >"$dir/ws/configs/c$i.toml"; done
  cat >"$dir/ws/shipshape.toml" <<TOML
[artifacts.configs]
include = ["configs/*.toml"]
[artifacts.models]
include = ["data/models/*.bin"]
[deploy]
target = "../prod"
mode = "$mode"
TOML
  one_approver "$dir"
}

release_in() { # dir time: audit, manifest, approve
  (cd "$1/ws" && export SHIPSHAPE_NOW=$2 && "$BIN" -q audit >/dev/null && m=$("$BIN" -q manifest --allow-unvalidated --type hotfix 2>/dev/null) \
    && "$BIN" -q approve "$m" --role release-manager --key ../key >/dev/null 2>&1)
}

median_of() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

bench_deploy() {
  [ -f "$BENCH_DIR/files/big.bin" ] || bench_audit >/dev/null
  local runs=${RUNS:-3}
  local d="$BENCH_DIR/deploy"
  deploy_workspace "$d" copy
  release_in "$d" 2025-10-12T19:00:00Z
  # First deploy vs cp -r + sync, alternating, RUNS times (the target and registry reset in between).
  local firsts=() cps=()
  for _ in $(seq "$runs"); do
    rm -rf "$d/prod" "$d/ws/data/monitoring" "$d/ws/release/journal" "$d/ws/release/state" "$d/cpcopy"
    firsts+=("$(cd "$d/ws" && SHIPSHAPE_NOW=2025-10-12T19:00:00Z seconds "$BIN" -q deploy --yes)")
    mkdir -p "$d/cpcopy"
    cps+=("$(seconds cp -r "$d/ws/data" "$d/ws/configs" "$d/cpcopy/")")
    cps[-1]=$(awk -v a="${cps[-1]}" -v b="$(seconds sync)" 'BEGIN { printf "%.4f", a + b }')
    rm -rf "$d/cpcopy"
  done
  local first cpsync
  first=$(median_of "${firsts[@]}")
  cpsync=$(median_of "${cps[@]}")
  echo "threshold_1 = 2" >"$d/ws/configs/c1.toml"
  release_in "$d" 2025-10-12T20:00:00Z
  local redeploy rollback_copy
  redeploy=$(cd "$d/ws" && SHIPSHAPE_NOW=2025-10-12T20:00:00Z seconds "$BIN" -q deploy --yes)
  rollback_copy=$(cd "$d/ws" && SHIPSHAPE_NOW=2025-10-12T21:00:00Z seconds "$BIN" -q rollback --yes)
  # A release with a different 1 GiB model; roll back from it (alternating with cp + sync).
  head -c 16 /dev/urandom | dd of="$d/ws/data/models/model.bin" bs=16 count=1 conv=notrunc status=none
  release_in "$d" 2025-10-12T22:00:00Z
  local rollbacks=() cp_models=()
  for i in $(seq "$runs"); do
    (cd "$d/ws" && SHIPSHAPE_NOW="2025-10-13T0${i}:00:00Z" "$BIN" -q deploy --yes >/dev/null 2>&1)
    rollbacks+=("$(cd "$d/ws" && SHIPSHAPE_NOW="2025-10-13T0${i}:30:00Z" seconds "$BIN" -q rollback --yes)")
    cp_models+=("$(seconds cp "$BENCH_DIR/files/big.bin" "$d/cp-model.bin")")
    cp_models[-1]=$(awk -v a="${cp_models[-1]}" -v b="$(seconds sync)" 'BEGIN { printf "%.4f", a + b }')
    rm -f "$d/cp-model.bin"
  done
  local model_rollback cp_model hash_model
  model_rollback=$(median_of "${rollbacks[@]}")
  cp_model=$(median_of "${cp_models[@]}")
  # The floor of any copy that re-hashes every byte: SHA-256 of the 1 GiB model alone (openssl:
  # SHA-NI where the CPU has it; coreutils' sha256sum does not use it and is 5x slower here).
  hash_model=$(median openssl dgst -sha256 "$BENCH_DIR/files/big.bin")

  local s="$BENCH_DIR/deploy-symlink"
  deploy_workspace "$s" symlink
  release_in "$s" 2025-10-12T19:00:00Z
  (cd "$s/ws" && SHIPSHAPE_NOW=2025-10-12T19:00:00Z "$BIN" -q deploy --yes >/dev/null)
  echo "threshold_1 = 2" >"$s/ws/configs/c1.toml"
  release_in "$s" 2025-10-12T20:00:00Z
  local symlink_redeploy symlink_rollback
  symlink_redeploy=$(cd "$s/ws" && SHIPSHAPE_NOW=2025-10-12T20:00:00Z seconds "$BIN" -q deploy --yes)
  # Rollback (switch to the previous release) and deploy again, RUNS times; alternating with the
  # bare switch by hand: a new symlink renamed over `current` (two processes), then sync.
  local symlink_rollbacks=() switches=()
  for _ in $(seq "$runs"); do
    symlink_rollbacks+=("$(cd "$s/ws" && SHIPSHAPE_NOW=2025-10-12T21:00:00Z seconds "$BIN" -q rollback --yes)")
    (cd "$s/ws" && SHIPSHAPE_NOW=2025-10-12T21:00:00Z "$BIN" -q deploy --yes >/dev/null 2>&1)
    switches+=("$(seconds sh -c "ln -sfn .shipshape/releases/x '$s/prod/.bench-link' && mv -T '$s/prod/.bench-link' '$s/prod/.bench-current' && sync '$s/prod'")")
  done
  rm -f "$s/prod/.bench-current"
  symlink_rollback=$(median_of "${symlink_rollbacks[@]}")
  local switch
  switch=$(median_of "${switches[@]}")

  echo
  echo "deploy (seconds; whole commands including verification, journal and registry; medians of $runs where paired with a reference)"
  printf '%-62s %10s\n' "first deploy, 1 GiB + 200 files, copy mode" "$first"
  printf '%-62s %10s  ratio %s\n' "  cp -r of the same files + sync" "$cpsync" "$(ratio "$first" "$cpsync")"
  printf '%-62s %10s\n' "redeploy, one config changed under the 1 GiB model, copy mode" "$redeploy"
  printf '%-62s %10s\n' "redeploy, one config changed, symlink mode" "$symlink_redeploy"
  printf '%-62s %10s\n' "rollback of that config change, copy mode" "$rollback_copy"
  printf '%-62s %10s\n' "rollback, symlink mode (one rename)" "$symlink_rollback"
  printf '%-62s %10s  ratio %s\n' "  the bare switch: sh -c 'ln -sfn && mv -T && sync'" "$switch" "$(ratio "$symlink_rollback" "$switch")"
  printf '%-62s %10s\n' "rollback of a changed 1 GiB model, copy mode" "$model_rollback"
  printf '%-62s %10s  ratio %s\n' "  cp of the 1 GiB model + sync" "$cp_model" "$(ratio "$model_rollback" "$cp_model")"
  printf '%-62s %10s  ratio %s\n' "  openssl dgst -sha256 of the model (the re-hash alone)" "$hash_model" "$(ratio "$model_rollback" "$hash_model")"
  printf '%-62s %10s\n' "  floor for a copy that re-hashes: openssl / (cp + sync)" "$(ratio "$hash_model" "$cp_model")"
}

gen_events() { # file count seconds-span: unique ids, 80 % intraday, 20 % swing, from 2025-01-01
  [ -f "$1" ] && return
  echo "generating $2 events in $1 ..."
  python3 - "$1" "$2" "$3" <<'PY'
import sys, datetime as dt
path, count, span = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
start = int(dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc).timestamp())
with open(path, "w") as out:
    lines = []
    for n in range(count):
        t = start + 60 + n * span // count
        ts = dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        strategy = "swing" if n % 5 == 0 else "intraday"
        signal = (1, -1, 1, 0)[n % 4]
        outcome = signal if (n * 0.6180339887) % 1 < 0.56 else -signal or 1
        ret = 0.004 if outcome == signal else -0.004
        lines.append('{"id":"e%d","ts":"%s","strategy":"%s","symbol":"S%d","signal":%d,"outcome":%d,"return":%s}\n'
                     % (n, ts, strategy, n % 50, signal, outcome, ret))
        if len(lines) == 100000:
            out.writelines(lines)
            lines = []
    out.writelines(lines)
PY
}

bench_monitor() {
  local dir="$BENCH_DIR/monitor" t0="2025-01-01T00:00:00Z"
  mkdir -p "$dir"
  gen_events "$BENCH_DIR/ingest-1m.jsonl" 1000000 86400
  gen_events "$BENCH_DIR/monitor-10m.jsonl" 10000000 $((90 * 86400))
  # Ingest: a workspace with nothing deployed (events are stored unattributed), a fresh database each run.
  mkdir -p "$dir/ingest"
  printf '[artifacts.a]\ninclude = ["shipshape.toml"]\n' >"$dir/ingest/shipshape.toml"
  ingest_once() { rm -f "$dir"/ingest/data/monitoring/monitor.db*; SHIPSHAPE_NOW=2025-01-03T00:00:00Z "$BIN" -q -C "$dir/ingest" ingest "$BENCH_DIR/ingest-1m.jsonl"; }
  python_ingest() {
    rm -f "$dir"/py.db*
    python3 - "$BENCH_DIR/ingest-1m.jsonl" "$dir/py.db" <<'PY'
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[2])
db.execute("PRAGMA journal_mode=WAL"); db.execute("PRAGMA synchronous=FULL")
db.execute("CREATE TABLE events (id TEXT PRIMARY KEY, ts TEXT, strategy TEXT, symbol TEXT, signal INT, outcome INT, ret REAL)")
rows = []
for line in open(sys.argv[1], "rb"):
    e = json.loads(line)
    rows.append((e["id"], e["ts"], e["strategy"], e["symbol"], e["signal"], e["outcome"], e["return"]))
with db:
    db.executemany("INSERT OR IGNORE INTO events VALUES (?,?,?,?,?,?,?)", rows)
PY
  }
  # The pandas reference: read_json(lines=True) + to_sql into the same table, same pragmas.
  pandas_ingest() {
    rm -f "$dir"/pd.db*
    python3 - "$BENCH_DIR/ingest-1m.jsonl" "$dir/pd.db" <<'PY'
import sqlite3, sys
import pandas as pd
db = sqlite3.connect(sys.argv[2])
db.execute("PRAGMA journal_mode=WAL"); db.execute("PRAGMA synchronous=FULL")
db.execute("CREATE TABLE events (id TEXT PRIMARY KEY, ts TEXT, strategy TEXT, symbol TEXT, signal INT, outcome INT, ret REAL)")
df = pd.read_json(sys.argv[1], lines=True, dtype={"ts": str}).rename(columns={"return": "ret"})
with db:
    df[["id", "ts", "strategy", "symbol", "signal", "outcome", "ret"]].to_sql("events", db, if_exists="append", index=False)
PY
  }
  local s p pd_ingest=""
  s=$(median ingest_once)
  p=$(median python_ingest)
  if python3 -c 'import pandas' 2>/dev/null; then pd_ingest=$(median pandas_ingest); fi
  local s_rss p_rss
  rm -f "$dir"/ingest/data/monitoring/monitor.db*
  s_rss=$( { /usr/bin/time -f '%M' env SHIPSHAPE_NOW=2025-01-03T00:00:00Z "$BIN" -q -C "$dir/ingest" ingest "$BENCH_DIR/ingest-1m.jsonl" >/dev/null; } 2>&1 | tail -1)
  # Evaluation: 10 M events over 90 days after a deploy, evaluated at day 89 (normal mode: the swing
  # window is the whole 90 days).
  if [ ! -f "$dir/eval.ready" ]; then
    deploy_workspace_small "$dir/eval"
    release_in "$dir/eval" "$t0"
    (cd "$dir/eval/ws" && SHIPSHAPE_NOW=$t0 "$BIN" -q deploy --yes >/dev/null)
    local load
    load=$(seconds env SHIPSHAPE_NOW=2025-04-02T00:00:00Z "$BIN" -q -C "$dir/eval/ws" ingest "$BENCH_DIR/monitor-10m.jsonl")
    echo "$load" >"$dir/eval.load"
    touch "$dir/eval.ready"
  fi
  local e r e_rss
  e=$(median env SHIPSHAPE_NOW=2025-03-31T12:00:00Z "$BIN" -q -C "$dir/eval/ws" evaluate --no-deliver)
  e_rss=$( { /usr/bin/time -f '%M' env SHIPSHAPE_NOW=2025-03-31T12:00:00Z "$BIN" -q -C "$dir/eval/ws" evaluate --no-deliver >/dev/null; } 2>&1 | tail -1)
  rescan() { # a function, so that each run reads its script again
    python3 - "$dir/eval/ws/data/monitoring/monitor.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
now = 1743422400  # 2025-03-31T12:00:00Z
for strategy, window in (("intraday", 24 * 3600), ("swing", 90 * 86400), ("intraday", 24 * 3600)):
    db.execute("SELECT count(*), sum(outcome = signal), sum(ret), sum(ret * ret) FROM events WHERE strategy = ? AND ts >= ? AND ts < ?",
               (strategy, now - window, now)).fetchone()
PY
  }
  r=$(median rescan)
  # The pandas reference for one pass: the same three windows read into DataFrames, the story's
  # metrics computed from them (hit ratio, precision of longs, Sharpe per trade).
  pandas_pass() {
    python3 - "$dir/eval/ws/data/monitoring/monitor.db" <<'PY'
import sqlite3, sys
import pandas as pd
db = sqlite3.connect(sys.argv[1])
now = 1743422400  # 2025-03-31T12:00:00Z
for strategy, window in (("intraday", 24 * 3600), ("swing", 90 * 86400), ("intraday", 24 * 3600)):
    df = pd.read_sql("SELECT signal, outcome, ret FROM events WHERE strategy = ? AND ts >= ? AND ts < ?", db,
                     params=(strategy, now - window, now))
    hit = (df.signal == df.outcome).mean()
    longs = df[df.signal == 1]
    precision = (longs.outcome == 1).mean()
    sharpe = df.ret.mean() / df.ret.std()
PY
  }
  local pd_pass=""
  if python3 -c 'import pandas' 2>/dev/null; then pd_pass=$(median pandas_pass); fi
  # HTTP ingest: the same 1 M events in batches of 1 000 from 4 keep-alive clients, fresh database.
  rm -f "$dir"/ingest/data/monitoring/monitor.db*
  openssl rand -hex 32 >"$dir/token"
  SHIPSHAPE_NOW=2025-01-03T00:00:00Z "$BIN" -q -C "$dir/ingest" serve --bind 127.0.0.1:0 --token-file "$dir/token" >"$dir/serve.out" 2>"$dir/serve.err" &
  local serve_pid=$!
  sleep 1
  local address h
  address=$(sed -n 's|listening on http://||p' "$dir/serve.out")
  h=$(python3 - "$address" "$(cat "$dir/token")" "$BENCH_DIR/ingest-1m.jsonl" <<'PY'
import http.client, sys, threading, time
address, token, path = sys.argv[1], sys.argv[2], sys.argv[3]
lines = open(path, "rb").read().splitlines(keepends=True)
batches = [b"".join(lines[i:i + 1000]) for i in range(0, len(lines), 1000)]
def client(part):
    conn = http.client.HTTPConnection(address)
    for body in part:
        conn.request("POST", "/api/v1/events", body, {"Authorization": "Bearer " + token})
        response = conn.getresponse(); response.read()
        assert response.status == 200, response.status
threads = [threading.Thread(target=client, args=(batches[k::4],)) for k in range(4)]
start = time.time()
for t in threads: t.start()
for t in threads: t.join()
print("%.4f" % (time.time() - start))
PY
)
  kill -TERM "$serve_pid"; wait "$serve_pid" || true
  # serve's memory with the 10 M-event database: a status, an evaluation pass and /metrics.
  # 10 000 alerts in the history, for the dashboard's figures.
  python3 - "$dir/eval/ws/data/monitoring/monitor.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
if db.execute("SELECT count(*) FROM alerts").fetchone()[0] < 10000:
    rows = [("release_20250101_000000", "intraday", "intraday_hit_ratio", ("firing", "resolved", "cleared")[i % 3], "warning", "normal",
             0.5, 0.56, 0.1, 0.107, 5000, 1735689600 + i * 600, 1735689600 + i * 600 + 21600, 1735689600 + i * 600, 1735689600 + i * 600)
            for i in range(10000)]
    with db:
        db.executemany("INSERT INTO alerts (release_id, strategy, metric, state, severity, mode, value, baseline, threshold, drop_, samples, window_from, window_to, started_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
PY
  SHIPSHAPE_NOW=2025-03-31T12:00:00Z "$BIN" -q -C "$dir/eval/ws" serve --bind 127.0.0.1:0 --token-file "$dir/token" >"$dir/serve.out" 2>"$dir/serve.err" &
  serve_pid=$!
  sleep 1
  address=$(sed -n 's|listening on http://||p' "$dir/serve.out")
  local token
  token=$(cat "$dir/token")
  python3 - "$address" "$token" <<'PY'
import http.client, sys
for method, path in (("GET", "/api/v1/status"), ("POST", "/api/v1/evaluate"), ("GET", "/metrics"), ("GET", "/api/v1/alerts")):
    conn = http.client.HTTPConnection(sys.argv[1])
    conn.request(method, path, b"", {"Authorization": "Bearer " + sys.argv[2]})
    response = conn.getresponse(); response.read()
    assert response.status == 200, (path, response.status)
PY
  local serve_rss
  serve_rss=$(awk '/VmHWM/ { print $2 }' "/proc/$serve_pid/status")
  # Dashboard latency: time to first byte, median of 21 requests each (curl), against /healthz.
  ttfb() { for _ in $(seq 21); do curl -s -o /dev/null -w '%{time_starttransfer}\n' "http://$address$1"; done | sort -g | awk '{a[NR]=$1} END {print a[11]}'; }
  local t_health t_page t_status t_alerts
  t_health=$(ttfb /healthz); t_page=$(ttfb /); t_status=$(ttfb /api/v1/status); t_alerts=$(ttfb "/api/v1/alerts?limit=500")
  kill -TERM "$serve_pid"; wait "$serve_pid" || true
  echo
  echo "monitor, median of $RUNS runs (seconds)"
  printf '%-66s %10s %14s\n' "command" "seconds" "events/s"
  printf '%-66s %10.3f %14.0f\n' "shipshape ingest, 1,000,000 events (fresh db, WAL, synchronous=FULL)" "$s" "$(awk -v s="$s" 'BEGIN { print 1000000 / s }')"
  printf '%-66s %10.3f %14.0f\n' "  python3 json.loads + sqlite3 executemany, same events and pragmas" "$p" "$(awk -v s="$p" 'BEGIN { print 1000000 / s }')"
  echo "  ingest vs python: $(ratio "$p" "$s")x faster; shipshape peak RSS ${s_rss} KiB"
  if [ -n "$pd_ingest" ]; then
    printf '%-66s %10.3f %14.0f\n' "  pandas read_json(lines=True) + to_sql, same events and pragmas" "$pd_ingest" "$(awk -v s="$pd_ingest" 'BEGIN { print 1000000 / s }')"
    echo "  ingest vs pandas: $(ratio "$pd_ingest" "$s")x faster"
  else
    echo "  (pandas not installed: no pandas reference)"
  fi
  printf '%-66s %10.3f %14.0f\n' "shipshape serve, the same events over HTTP, 1 000 per batch, 4 clients" "$h" "$(awk -v s="$h" 'BEGIN { print 1000000 / s }')"
  echo "  HTTP vs file ingest: $(ratio "$s" "$h")x the speed"
  printf '%-66s %10.3f\n' "shipshape ingest, 10,000,000 events over 90 days (one run, setup)" "$(cat "$dir/eval.load")"
  printf '%-66s %10.3f\n' "shipshape evaluate, one pass over 10 M stored events (whole command)" "$e"
  printf '%-66s %10.3f\n' "  python3 sqlite3 rescan of the raw events of the same windows" "$r"
  echo "  evaluate vs rescan: $(ratio "$r" "$e")x faster; shipshape peak RSS ${e_rss} KiB; database $(du -sh "$dir/eval/ws/data/monitoring" | cut -f1)"
  if [ -n "$pd_pass" ]; then
    printf '%-66s %10.3f\n' "  pandas read_sql of the same windows + the three metrics" "$pd_pass"
    echo "  evaluate vs pandas: $(ratio "$pd_pass" "$e")x faster"
  fi
  echo "shipshape serve over the 10 M-event database (status, evaluate, /metrics, alerts): peak RSS ${serve_rss} KiB"
  echo "dashboard, 10 M events and 10 000 alerts stored, time to first byte (median of 21):"
  printf '  %-40s %8.4f s\n' "GET /healthz (the server's floor)" "$t_health" "GET / (the page)" "$t_page" "GET /api/v1/status" "$t_status" "GET /api/v1/alerts?limit=500" "$t_alerts"
}

# fleet: `shipshape publish` of 1 GiB + 200 small files to S3 (SeaweedFS on loopback, started by
# scripts/services.sh) vs boto3 uploading the same files (its default transfer manager: multipart
# above 8 MiB, 10 threads; the small files 8 at a time), and `shipshape fetch` into an empty host vs
# boto3 downloading them. A fresh prefix each run, so nothing is skipped as already there.
bench_fleet() {
  [ -f "$BENCH_DIR/files/big.bin" ] || bench_audit >/dev/null
  python3 -c 'import boto3' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check boto3 >/dev/null
  # shellcheck source=scripts/services.sh
  source scripts/services.sh >/dev/null
  local d="$BENCH_DIR/fleet" runs=${RUNS:-3}
  deploy_workspace "$d" copy
  release_in "$d" 2025-10-12T19:00:00Z
  local id
  id=$(basename "$(ls "$d"/ws/release/manifests/release_*.yaml | grep -v approvals | tail -n 1)" .yaml)
  local pubs=() fetches=() ups=() downs=()
  for run in $(seq "$runs"); do
    local fleet="[fleet]
store = \"s3://shipshape-test/bench-$run\"
[fleet.s3]
endpoint = \"$SHIPSHAPE_TEST_S3\"
allow_http = true"
    sed -i '/^\[fleet/,$d' "$d/ws/shipshape.toml"
    printf '%s\n' "$fleet" >>"$d/ws/shipshape.toml"
    pubs+=("$(cd "$d/ws" && SHIPSHAPE_NOW=2025-10-12T19:00:00Z seconds "$BIN" -q publish "$id")")
    rm -rf "$d/host" && mkdir -p "$d/host/release"
    cp "$d/ws/release/allowed_signers" "$d/ws/release/policy.yaml" "$d/host/release/"
    sed 's|^target = .*|target = "../host-prod"|' "$d/ws/shipshape.toml" >"$d/host/shipshape.toml"
    fetches+=("$(cd "$d/host" && SHIPSHAPE_NOW=2025-10-12T19:00:00Z seconds "$BIN" -q fetch "$id")")
    local times
    times=$(python3 - "$SHIPSHAPE_TEST_S3" "$d/ws" "boto-$run" "$d/boto-down" <<'PY'
import concurrent.futures, os, sys, time
import boto3
endpoint, root, prefix, down = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
files = [os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(root, "configs")) for f in fs]
files += [os.path.join(root, "data/models/model.bin")]
start = time.time()
with concurrent.futures.ThreadPoolExecutor(8) as pool:
    list(pool.map(lambda f: s3.upload_file(f, "shipshape-test", prefix + "/" + os.path.relpath(f, root)), files))
up = time.time() - start
os.makedirs(down, exist_ok=True)
start = time.time()
def get(f):
    target = os.path.join(down, os.path.relpath(f, root)); os.makedirs(os.path.dirname(target), exist_ok=True)
    s3.download_file("shipshape-test", prefix + "/" + os.path.relpath(f, root), target)
with concurrent.futures.ThreadPoolExecutor(8) as pool:
    list(pool.map(get, files))
print("%.4f %.4f" % (up, time.time() - start))
PY
)
    ups+=("${times% *}")
    downs+=("${times#* }")
    rm -rf "$d/boto-down"
  done
  local pub fetch up down
  pub=$(median_of "${pubs[@]}"); fetch=$(median_of "${fetches[@]}"); up=$(median_of "${ups[@]}"); down=$(median_of "${downs[@]}")
  echo
  echo "fleet, 1 GiB + 200 files to and from S3 (SeaweedFS on loopback), median of $runs runs (seconds)"
  printf '%-66s %10.3f\n' "shipshape publish (hashing as it uploads)" "$pub"
  printf '%-66s %10.3f\n' "  boto3 upload_file of the same files" "$up"
  echo "  publish vs boto3: $(ratio "$pub" "$up")x the time"
  printf '%-66s %10.3f\n' "shipshape fetch into an empty host (checked against the manifest, verified)" "$fetch"
  printf '%-66s %10.3f\n' "  boto3 download_file of the same files" "$down"
  echo "  fetch vs boto3: $(ratio "$fetch" "$down")x the time"
}

deploy_workspace_small() { # dir: one config, one approver, [deploy] into ../prod, trailing baselines
  local dir=$1
  rm -rf "$dir" && mkdir -p "$dir/ws/configs" "$dir/ws/release"
  echo 'threshold = 1' >"$dir/ws/configs/app.toml"
  cat >"$dir/ws/shipshape.toml" <<TOML
[artifacts.configs]
include = ["configs/*.toml"]
[monitoring]
baseline = "trailing"
[deploy]
target = "../prod"
TOML
  one_approver "$dir"
}

case "$which" in
  audit) bench_audit ;;
  score) bench_score ;;
  deploy) bench_deploy ;;
  monitor) bench_monitor ;;
  fleet) bench_fleet ;;
  all) bench_audit; bench_score; bench_deploy; bench_monitor ;;
  *) echo "unknown benchmark: $which (audit, score, deploy, monitor, fleet)"; exit 2 ;;
esac
