#!/usr/bin/env bash
# Every test, as CI runs it (.ci/run calls this script): installs what the tests need from Debian's
# packages when it is missing, then checks formatting, lints with warnings as errors, builds the docs
# with warnings as errors, and runs every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tools the tests call: git (audit metadata), make (the Makefile targets), sha256sum (an independent
# SHA-256), setpriv (running the binary as an unprivileged user to test unreadable files),
# python3 (the example's checklist script and independent metric checks), ssh-keygen (SSH signature
# interoperability), gpg and gpgv (OpenPGP interoperability), chromium and chromedriver (the
# dashboard's end-to-end tests in a real headless browser), curl (the API examples in docs/api.md),
# python3-pandas (the "From pandas" example in docs/events.md). scripts/services.sh installs and starts
# PostgreSQL and SeaweedFS for the fleet tests.
declare -A package_for=([git]=git [make]=make [sha256sum]=coreutils [setpriv]=util-linux [python3]=python3
  [ssh-keygen]=openssh-client [gpg]=gnupg [gpgv]=gpgv [gpgconf]=gnupg [chromium]=chromium
  [chromedriver]=chromium-driver [curl]=curl)
missing=()
for tool in "${!package_for[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${package_for[$tool]}")
done
# pandas (docs/events.md's "From pandas" runs with it) for the python3 on PATH: from PyPI, else
# Debian's package (which serves the system python3).
if ! python3 -c "import pandas" >/dev/null 2>&1; then
  echo "==> installing pandas"
  python3 -m pip install --quiet --disable-pip-version-check pandas >/dev/null 2>&1 || missing+=(python3-pandas)
fi
if ((${#missing[@]})); then
  echo "==> installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> module cycles (no two modules of a crate import each other)"
python3 scripts/check-module-cycles.py --self-test
python3 scripts/check-module-cycles.py crates/*/src

echo "==> cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

# The structured fuzzers (crates/shipshape-core/tests/fuzz.rs, crates/shipshape/tests/it/fuzz_ingest.rs)
# run with the tests on a short budget, SHIPSHAPE_FUZZ_CASES per target (default 64); the long run
# is scripts/fuzz.sh.
# Real servers for the fleet tests (PostgreSQL, SeaweedFS's S3), on loopback in temporary
# directories, stopped when this script exits.
# shellcheck source=scripts/services.sh
source scripts/services.sh

echo "==> tests"
if cargo nextest --version >/dev/null 2>&1; then
  # nextest does not run doc tests; run them first so nextest's summary is the closing line.
  cargo test --workspace --doc --locked --quiet
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

# The Python client (clients/python, docs/python.md): installed with pip into a fresh virtual
# environment (which sees the system's pandas), type-checked with mypy --strict, and tested with
# pytest against a real `shipshape serve` on loopback, started by the tests.
echo "==> Python client: pip install, mypy --strict, pytest"
python_env="$(mktemp -d)"
trap 'rm -rf "$python_env"; stop_services' EXIT
python3 -m venv --system-site-packages "$python_env/venv"
"$python_env/venv/bin/python" -m pip install --quiet --disable-pip-version-check ./clients/python pytest mypy
target_dir="$(cargo metadata --format-version 1 --no-deps --locked | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
# The tests above built the binary (the integration tests run it); build it only if they did not.
[ -x "$target_dir/debug/shipshape" ] || cargo build --locked --quiet --bin shipshape
(
  cd clients/python
  "$python_env/venv/bin/python" -m mypy --strict --cache-dir "$python_env/mypy" src tests bench examples
  SHIPSHAPE_BIN="$target_dir/debug/shipshape" "$python_env/venv/bin/python" -m pytest -q -p no:cacheprovider tests
)
# The oldest Python the client supports, when this machine has it (pyenv's 3.9): it must import.
for old in /root/.pyenv/versions/3.9.*/bin/python3.9; do
  if [ -x "$old" ]; then
    PYTHONPATH=clients/python/src "$old" -c 'import shipshape_client; print("==> the client imports on Python", __import__("sys").version.split()[0])'
  fi
done
