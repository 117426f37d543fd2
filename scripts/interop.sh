#!/usr/bin/env bash
# Interop with real third-party HL7 peers against the real binary (run by
# .ci/run; works on a fresh machine: it installs its own peers).
#
#   python-hl7 0.4.5 `mllp_send`  sends every fixtures/*.hl7, framed one frame
#                                 per message by scripts/frame.py
#   hl7apy 1.3.5                  parses every ACK the engine sent back
#   hl7.client.MLLPClient         garbage frame -> AR, then AA on the same connection
#   recordhub journal             every accepted control id journaled exactly once
#
# See ../shared/research/peers.md for the peers' quirks (why no --loose, why
# every call is wrapped in `timeout`: mllp_send waits forever for an ACK and
# exits 0 even on a NAK, so the ACK bytes are checked here).
#
# Environment: PEERS (default .peers) holds the venv; RECORDHUB_BIN uses an
# already built binary instead of `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/.."

PEERS="${PEERS:-.peers}"
PY="$PEERS/venv/bin/python"
HERE=scripts

echo "-- peers: python-hl7 0.4.5 and hl7apy 1.3.5 in $PEERS/venv"
if [ ! -x "$PY" ]; then
  timeout 300 python3 -m venv "$PEERS/venv"
fi
timeout 600 "$PEERS/venv/bin/pip" install --quiet --disable-pip-version-check \
  hl7==0.4.5 hl7apy==1.3.5

# shellcheck source=scripts/engine.sh
. scripts/engine.sh
engine_setup interop
start_engine "$TMP/data" || { echo "interop: 0 passed, 1 failed"; exit 1; }
echo "-- started $BIN on 127.0.0.1:$MLLP_PORT (http $HTTP_PORT), data $TMP/data"

PASSED=0
FAILED=0
# check DESCRIPTION COMMAND...: runs one check, counts it.
check() {
  local what="$1"
  shift
  if "$@"; then
    PASSED=$((PASSED + 1))
    echo "PASS $what"
  else
    FAILED=$((FAILED + 1))
    echo "FAIL $what"
  fi
}

# mllp_send prints each ACK's raw bytes (VT...FS CR) and one newline.
send_fixture() {
  local file="$1" base
  base="$(basename "$file" .hl7)"
  "$PY" "$HERE/frame.py" --split "$file" >"$TMP/$base.mllp" || return 1
  if ! timeout 60 "$PEERS/venv/bin/mllp_send" -p "$MLLP_PORT" -f "$TMP/$base.mllp" 127.0.0.1 \
    >"$TMP/$base.acks" 2>"$TMP/$base.err"; then
    echo "  mllp_send failed or timed out:"
    sed 's/^/  /' "$TMP/$base.err"
    return 1
  fi
  timeout 60 "$PY" "$HERE/peer_check.py" codes --sent "$TMP/$base.mllp" --acks "$TMP/$base.acks" \
    --file "$(basename "$file")" --ids-out "$TMP/accepted-ids"
}

parse_acks() {
  local base
  base="$(basename "$1" .hl7)"
  [ -f "$TMP/$base.acks" ] || { echo "  no ACKs captured for $1"; return 1; }
  timeout 120 "$PY" "$HERE/peer_check.py" hl7apy --sent "$TMP/$base.mllp" --acks "$TMP/$base.acks"
}

journal_once() {
  timeout 60 "$BIN" journal --data "$TMP/data" >"$TMP/journal.jsonl" || return 1
  timeout 60 "$PY" "$HERE/peer_check.py" journal --ids "$TMP/accepted-ids" --journal "$TMP/journal.jsonl"
}

stops_cleanly() {
  kill -TERM "$SERVER_PID"
  local status=0
  for _ in $(seq 100); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "  still running 10 s after SIGTERM"
    return 1
  fi
  wait "$SERVER_PID" || status=$?
  SERVER_PID=""
  [ "$status" -eq 0 ] || { echo "  exit status $status"; return 1; }
}

: >"$TMP/accepted-ids"
shopt -s nullglob
FIXTURES=(fixtures/*.hl7)
echo "-- python-hl7 mllp_send: ${#FIXTURES[@]} fixture files (ADT/ORU/MDM must get AA/CA; files named *invalid*/*error* and other types: any ACK code)"
for f in "${FIXTURES[@]}"; do
  check "mllp_send $f: one ACK per message, MSA-2 = MSH-10, expected code" send_fixture "$f"
done
echo "-- hl7apy parses the ACKs"
for f in "${FIXTURES[@]}"; do
  check "hl7apy parse_message on the ACKs for $f" parse_acks "$f"
done
echo "-- hl7.client.MLLPClient, one connection"
check "garbage frame -> AR, then AA on the same connection" \
  timeout 60 "$PY" "$HERE/peer_check.py" garbage --port "$MLLP_PORT" --ids-out "$TMP/accepted-ids"
echo "-- recordhub journal"
check "every accepted control id is in the journal exactly once" journal_once
check "the engine is still running" kill -0 "$SERVER_PID"
check "the engine exits 0 within 10 s of SIGTERM" stops_cleanly

if [ "$FAILED" -gt 0 ]; then
  echo "-- engine log (last 40 lines)"
  tail -n 40 "$TMP/server.log" || true
fi
echo "interop: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ] && [ "$PASSED" -gt 0 ]
