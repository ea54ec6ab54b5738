#!/usr/bin/env bash
# The long fuzz run: the structured fuzzers (crates/shipshape-core/tests/fuzz.rs — manifest,
# approvals and their signatures, policy, allowed_signers, journal, JSON-lines and CSV events,
# shipshape.toml — and the HTTP ingest and query-string fuzzer in crates/shipshape/tests/it/
# fuzz_ingest.rs) in rounds with a fresh random seed each, until the time budget is spent.
# scripts/test.sh runs the same fuzzers with a short budget (64 cases per target).
#
#   scripts/fuzz.sh                 # one hour
#   FUZZ_SECONDS=600 scripts/fuzz.sh
#   FUZZ_CASES=5000 scripts/fuzz.sh  # cases per target per round (default 2000)
#
# A failure stops the run and prints the minimal failing input (proptest shrinks it) and the seed
# that reproduces it: PROPTEST_RNG_SEED=<seed> SHIPSHAPE_FUZZ_CASES=<cases> cargo nextest run
# -p shipshape-core --test fuzz. The log of every round is in $FUZZ_LOG (default
# target/fuzz.log).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-3600}
cases=${FUZZ_CASES:-2000}
target_dir=${CARGO_TARGET_DIR:-target}
log=${FUZZ_LOG:-$target_dir/fuzz.log}
mkdir -p "$(dirname "$log")"
: > "$log"

cargo nextest run --no-run -p shipshape-core --test fuzz --locked >/dev/null
cargo nextest run --no-run -p shipshape --test it --locked >/dev/null

start=$(date +%s)
round=0
total=0
while (( $(date +%s) - start < seconds )); do
  round=$((round + 1))
  seed=$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')
  echo "==> round $round: seed $seed, $cases cases per target" | tee -a "$log"
  if ! PROPTEST_RNG_SEED=$seed SHIPSHAPE_FUZZ_CASES=$cases \
      cargo nextest run --locked --no-fail-fast -p shipshape-core --test fuzz >>"$log" 2>&1 \
    || ! PROPTEST_RNG_SEED=$seed SHIPSHAPE_FUZZ_CASES=$((cases / 10)) \
      cargo nextest run --locked --no-fail-fast -p shipshape --test it -E 'test(fuzz_ingest)' >>"$log" 2>&1; then
    echo "FAILED in round $round (seed $seed): see $log" >&2
    grep -E "minimal failing input|Test failed|panicked" "$log" | tail -20 >&2 || true
    exit 1
  fi
  total=$((total + cases * 9 + (cases / 10) * 2))
done
elapsed=$(( $(date +%s) - start ))
echo "==> fuzzing passed: $round rounds, about $total cases in ${elapsed}s, no panic, hang or unclear refusal" | tee -a "$log"
