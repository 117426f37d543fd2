#!/usr/bin/env bash
# Conformance over the public corpus: every message of every file gets an
# ACK from the real binary, and the engine survives it all.
#
#   bash scripts/corpus.sh [CORPUS_DIR]     (default ../shared/corpus/public)
#
# Each *.hl7 file goes through `recordhub send` (one connection per file,
# lockstep) to an engine started here on free loopback ports with a
# temporary data dir. AA, AE and AR (and CA/CE/CR) are all fine: the corpus
# holds real-world oddities the engine is right to reject.
# Except: a file with an enhanced-mode message whose MSH-15 is NE, ER or SU
# (table 0155) goes through `scripts/peer_check.py send-enhanced` instead,
# because the engine rightly sends no ACK for it (NE always; ER on success;
# SU on failure; shared/research/hl7-ack.md) and `recordhub send` would wait
# for one; there an ACK that MSH-15 forbids fails the file, and a suppressed
# one is counted under `none`.
# A file fails on a
# timeout, a missing or unreadable ACK (`recordhub send` prints `--` or `??`),
# fewer ACK lines than the file holds messages (counted by scripts/frame.py,
# which splits as src/mllp/split.rs does), or the engine dying or panicking.
# Assumes control ids without spaces (the code is the word after the first space).
#
# Environment: RECORDHUB_BIN uses an already built binary.
set -euo pipefail
cd "$(dirname "$0")/.."

CORPUS="${1:-../shared/corpus/public}"
[ -d "$CORPUS" ] || { echo "corpus.sh: no corpus at $CORPUS"; exit 2; }

# shellcheck source=scripts/engine.sh
. scripts/engine.sh
engine_setup corpus
start_engine "$TMP/data" || { echo "corpus: 0 passed, 1 failed"; exit 1; }
ADDR="127.0.0.1:$MLLP_PORT"

CODES=(AA CA AE AR CE CR none)
PASSED=0
FAILED=0
declare -A TOTAL=()
for c in "${CODES[@]}"; do TOTAL[$c]=0; done
ALL_MSGS=0

# One row per file: file, messages, then a count per code, then the verdict.
printf '%-66s %5s' file msgs
printf ' %4s' "${CODES[@]}"
printf '  %s\n' result
while IFS= read -r -d '' file; do
  rel="${file#"$CORPUS"/}"
  expected=$(python3 scripts/frame.py --split "$file" | tr -cd '\013' | wc -c)
  status=0
  policies=$(python3 scripts/peer_check.py send-enhanced --port 0 --policy-only "$file")
  if [ "$policies" = AL ]; then
    timeout 180 "$BIN" send --to "$ADDR" --timeout 30 "$file" >"$TMP/out" 2>"$TMP/err" || status=$?
  else
    timeout 180 python3 scripts/peer_check.py send-enhanced --port "$MLLP_PORT" "$file" \
      >"$TMP/out" 2>"$TMP/err" || status=$?
  fi
  declare -A n=()
  for c in "${CODES[@]}"; do n[$c]=0; done
  lines=0
  bad=""
  while IFS= read -r line; do
    lines=$((lines + 1))
    rest="${line#* }"
    code="${rest%% *}"
    if [ -n "${n[$code]+x}" ]; then
      n[$code]=$((n[$code] + 1))
    else
      bad="$line"
    fi
  done <"$TMP/out"
  problem=""
  case "$status" in
    0 | 1) ;;
    124) problem="timeout (no end within 180 s)" ;;
    *) problem="recordhub send exited $status: $(head -c 200 "$TMP/err")" ;;
  esac
  [ -z "$problem" ] && [ -n "$bad" ] && problem="no ACK: $bad"
  [ -z "$problem" ] && [ "$lines" -ne "$expected" ] && problem="$lines ACKs for $expected messages"
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then problem="${problem:+$problem; }the engine died"; fi
  if grep -q panicked "$TMP/server.log"; then problem="${problem:+$problem; }the engine logged a panic"; fi
  printf '%-66s %5s' "$rel" "$expected"
  for c in "${CODES[@]}"; do
    printf ' %4s' "${n[$c]}"
    TOTAL[$c]=$((TOTAL[$c] + n[$c]))
  done
  ALL_MSGS=$((ALL_MSGS + expected))
  if [ -z "$problem" ]; then
    PASSED=$((PASSED + 1))
    printf '  ok\n'
  else
    FAILED=$((FAILED + 1))
    printf '  FAIL %s\n' "$problem"
  fi
  unset n
  kill -0 "$SERVER_PID" 2>/dev/null || break
done < <(find "$CORPUS" -type f -name '*.hl7' -print0 | sort -z)

printf '%-66s %5s' TOTAL "$ALL_MSGS"
for c in "${CODES[@]}"; do printf ' %4s' "${TOTAL[$c]}"; done
printf '\n'

if kill -0 "$SERVER_PID" 2>/dev/null; then
  echo "the engine is still running after the corpus"
else
  echo "FAIL the engine is not running at the end; last log lines:"
  FAILED=$((FAILED + 1))
fi
if [ "$FAILED" -gt 0 ]; then
  tail -n 40 "$TMP/server.log" || true
fi
echo "corpus: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ] && [ "$PASSED" -gt 0 ]
