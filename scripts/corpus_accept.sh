#!/usr/bin/env bash
# Issue 9: every well-formed ADT, ORU and MDM message of the public corpus
# gets AA/CA from the real binary, sent by python-hl7's `mllp_send`
# (scripts/corpus_accept.py says what "well-formed" means and reads the ACK
# bytes, since mllp_send exits 0 on a NAK).
#
#   bash scripts/corpus_accept.sh [CORPUS_DIR]    (default ../shared/corpus/public)
#
# Environment: PEERS (default .peers) holds the venv with python-hl7 0.4.5;
# RECORDHUB_BIN uses an already built binary.
set -euo pipefail
cd "$(dirname "$0")/.."

CORPUS="${1:-../shared/corpus/public}"
[ -d "$CORPUS" ] || { echo "corpus_accept.sh: no corpus at $CORPUS"; exit 2; }
PEERS="${PEERS:-.peers}"
if [ ! -x "$PEERS/venv/bin/mllp_send" ]; then
  timeout 300 python3 -m venv "$PEERS/venv"
  timeout 600 "$PEERS/venv/bin/pip" install --quiet --disable-pip-version-check hl7==0.4.5
fi

# shellcheck source=scripts/engine.sh
. scripts/engine.sh
engine_setup corpus-accept
start_engine "$TMP/data" || { echo "corpus_accept: the engine did not start"; exit 1; }
status=0
timeout 1200 "$PEERS/venv/bin/python" scripts/corpus_accept.py --port "$MLLP_PORT" \
  --mllp-send "$PEERS/venv/bin/mllp_send" "$CORPUS" || status=$?
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  echo "FAIL the engine died; last log lines:"
  tail -n 40 "$TMP/server.log" || true
  status=1
fi
if grep -q panicked "$TMP/server.log"; then
  echo "FAIL the engine logged a panic"
  status=1
fi
exit "$status"
