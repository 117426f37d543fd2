#!/usr/bin/env bash
# Network load figures for the README's Performance section (not run by CI).
#
#   bash scripts/load.sh [FILE...]        (default fixtures/*.hl7)
#
# For each scenario: a fresh engine (release binary, temporary data dir,
# RUST_LOG=warn) on free loopback ports, then `recordhub load`; prints each
# JSON summary and a table at the end. Scenarios:
#   lockstep      1 connection, pipeline 1, 20,000 messages
#   c8-p8         8 connections, pipeline 8, $MESSAGES messages
#   c16-p8        16 connections, pipeline 8, $MESSAGES messages
#   rate-2000     2,000 msg/s offered over 8 connections for 10 s (20,000
#                 messages, pipeline 8): latency at a steady offered load
# The load tool runs on the same machine as the engine and shares its cores:
# say so next to any figure quoted from here.
#
# Environment: MESSAGES (default 50000); LOCKSTEP_MESSAGES (default 20000);
# SCENARIOS, the names to run (default all four, in the order above);
# LOAD_OUT, a directory to copy each scenario's JSON summary to (NAME.json);
# RECORDHUB_BIN uses an already built binary; RECORDHUB_LOAD replaces
# "$RECORDHUB_BIN load" (same arguments); ENGINE_CONFIG is passed to
# `serve --config` (see engine.sh). scripts/compare_release.sh runs this
# against two builds side by side.
set -euo pipefail
cd "$(dirname "$0")/.."

MESSAGES="${MESSAGES:-50000}"
LOCKSTEP_MESSAGES="${LOCKSTEP_MESSAGES:-20000}"
SCENARIOS="${SCENARIOS:-lockstep c8-p8 c16-p8 rate-2000}"
# shellcheck source=scripts/engine.sh
. scripts/engine.sh
engine_setup load
read -r -a LOAD <<<"${RECORDHUB_LOAD:-$BIN load}"
if [ "$#" -gt 0 ]; then FILES=("$@"); else FILES=(fixtures/*.hl7); fi

# scenario NAME LOAD-ARGS...   (skipped unless NAME is in SCENARIOS)
scenario() {
  local name="$1"
  shift
  case " $SCENARIOS " in *" $name "*) ;; *) return 0 ;; esac
  start_engine "$TMP/data-$name"
  echo "== $name: load $*"
  timeout 600 "${LOAD[@]}" --to "127.0.0.1:$MLLP_PORT" "$@" "${FILES[@]}" | tee "$TMP/$name.json"
  stop_engine
  echo "$name" >>"$TMP/names"
  if [ -n "${LOAD_OUT:-}" ]; then cp "$TMP/$name.json" "$LOAD_OUT/$name.json"; fi
}

: >"$TMP/names"
scenario lockstep --connections 1 --pipeline 1 --messages "$LOCKSTEP_MESSAGES"
scenario c8-p8 --connections 8 --pipeline 8 --messages "$MESSAGES"
scenario c16-p8 --connections 16 --pipeline 8 --messages "$MESSAGES"
scenario rate-2000 --connections 8 --pipeline 8 --messages 20000 --rate 2000

echo
echo "messages: ${FILES[*]} (replayed round-robin, MSH-10 made unique); $(nproc) cores shared by engine and load tool"
python3 - "$TMP" <<'PY'
import json, sys
tmp = sys.argv[1]
names = open(f"{tmp}/names").read().split()
print(f"{'scenario':<12} {'sent':>7} {'msg/s':>9} {'p50 us':>8} {'p90 us':>8} {'p99 us':>8} {'max us':>8}  codes, timeouts, errors")
for n in names:
    s = json.load(open(f"{tmp}/{n}.json"))
    l = s["latency_us"]
    codes = " ".join(f"{k}={v}" for k, v in sorted(s["acked_by_code"].items()))
    print(f"{n:<12} {s['sent']:>7} {s['messages_per_sec']:>9.0f} {l['p50']:>8} {l['p90']:>8} {l['p99']:>8} {l['max']:>8}  {codes}, {s['timeouts']}, {s['errors']}")
PY
