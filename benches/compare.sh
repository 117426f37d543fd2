#!/usr/bin/env bash
# recordhub against real third-party HL7 peers, on the same inputs, back to
# back (run by hand; not run by CI).
#
#   bash benches/compare.sh
#
# 1. Parse throughput, messages/s, median of $PARSE_RUNS runs (default 5), on
#    fixtures/adt-a01.hl7 (~600 B) and fixtures/oru-r01.hl7 (~4 KB, 30 OBX):
#      recordhub and the Rust hl7-parser 0.3.0   `cargo bench --bench parse`
#                                                (criterion; the middle value
#                                                of `time:`), run PARSE_RUNS times
#      python-hl7 0.4.5  hl7.parse               timeit loop    } benches/compare/
#      hl7apy 1.3.5      parse_message(find_groups=False)       } parse_bench.py
# 2. MLLP ACK throughput, ADT fixture, median of $MLLP_RUNS runs (default 3):
#      recordhub serve (durable: fdatasync before each ACK, group commit) and
#      a simple-hl7 3.3.0 server (benches/compare/simple_server.js, forced
#      onto 127.0.0.1), both driven by `recordhub load --connections 4
#      --pipeline 1 --messages 2000`: lockstep, because neither peer server
#      handles pipelining (simple-hl7 merges two frames that arrive in one read).
#      hl7apy 1.3.5 MLLPServer (benches/compare/hl7apy_server.py) answers ONE
#      message per TCP connection and closes, which `recordhub load` (persistent
#      connections, no reconnect) cannot drive; it is driven by
#      benches/compare/conn_per_msg_client.py (4 threads, a new connection per
#      message, stops starting messages after $HL7APY_SECONDS s, default 4),
#      and recordhub is run through that same client for its ratio.
#    Neither peer server writes anything to disk: their figures are not durable.
# Every server listens on a free 127.0.0.1 port, has a lifetime, and is killed
# on exit; every client call runs under `timeout`. Nothing but 127.0.0.1 is
# contacted (apart from PyPI and npm when installing the peers).
# Engine, peers and clients share this machine's cores: say so with any figure.
#
# Environment: PEERS (default .peers) holds the venv and the node folder;
# RECORDHUB_BIN uses an already built binary instead of `cargo build --release`;
# PARSE_RUNS, MLLP_RUNS, MESSAGES (default 2000), HL7APY_SECONDS.
set -euo pipefail
cd "$(dirname "$0")/.."

PEERS="${PEERS:-.peers}"
PY="$PEERS/venv/bin/python"
HERE=benches/compare
PARSE_RUNS="${PARSE_RUNS:-5}"
MLLP_RUNS="${MLLP_RUNS:-3}"
MESSAGES="${MESSAGES:-2000}"
HL7APY_SECONDS="${HL7APY_SECONDS:-4}"
ADT=fixtures/adt-a01.hl7
ORU=fixtures/oru-r01.hl7

echo "-- peers: python-hl7 0.4.5 and hl7apy 1.3.5 in $PEERS/venv, simple-hl7 3.3.0 in $PEERS/node"
if [ ! -x "$PY" ]; then
  timeout 300 python3 -m venv "$PEERS/venv"
fi
timeout 600 "$PEERS/venv/bin/pip" install --quiet --disable-pip-version-check hl7==0.4.5 hl7apy==1.3.5
mkdir -p "$PEERS/node"
if [ ! -f "$PEERS/node/package.json" ]; then
  (cd "$PEERS/node" && timeout 120 npm init -y >/dev/null 2>&1)
fi
if ! grep -q '"version": "3.3.0"' "$PEERS/node/node_modules/simple-hl7/package.json" 2>/dev/null; then
  (cd "$PEERS/node" && timeout 600 npm install --no-audit --no-fund --loglevel=error simple-hl7@3.3.0)
fi
NODE_MODULES="$(cd "$PEERS/node/node_modules" && pwd)"

if [ -z "${RECORDHUB_BIN:-}" ]; then
  echo "-- cargo build --release"
  timeout 1800 cargo build --release --locked --quiet
  RECORDHUB_BIN=target/release/recordhub
fi
BIN="$RECORDHUB_BIN"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/recordhub-compare.XXXXXX")"
SERVER_PID=""
stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}
trap 'stop_server; rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c '
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_listening PORT: up to 10 s for 127.0.0.1:PORT to accept, while the
# server lives. A probe connection is opened and closed (the hl7apy server
# sees it as an empty connection and drops it).
wait_listening() {
  local port="$1"
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    kill -0 "$SERVER_PID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# start_server NAME: starts it on a free loopback port (PORT), retried because
# a free port can be taken between choosing and binding it. Each has a lifetime.
start_server() {
  local name="$1"
  for _ in 1 2 3 4 5; do
    PORT="$(free_port)"
    case "$name" in
      recordhub)
        local http
        http="$(free_port)"
        RUST_LOG=warn timeout 600 "$BIN" serve --listen "127.0.0.1:$PORT" --http "127.0.0.1:$http" \
          --data "$TMP/data" 2>"$TMP/$name.log" &
        ;;
      simple)
        NODE_PATH="$NODE_MODULES" timeout 600 node "$HERE/simple_server.js" "$PORT" 590000 2>"$TMP/$name.log" &
        ;;
      hl7apy)
        timeout 600 "$PY" "$HERE/hl7apy_server.py" --port "$PORT" --lifetime 590 2>"$TMP/$name.log" &
        ;;
    esac
    SERVER_PID=$!
    if wait_listening "$PORT"; then
      # Never anything but loopback: check what the process actually bound.
      if command -v ss >/dev/null && ss -ltnH "sport = :$PORT" | awk '{print $4}' | grep -vq '^127\.0\.0\.1:'; then
        echo "$name listens on more than 127.0.0.1:$PORT; stopping"
        ss -ltnH "sport = :$PORT"
        exit 1
      fi
      return 0
    fi
    stop_server
  done
  echo "$name did not start; its log:"
  cat "$TMP/$name.log"
  return 1
}

echo "-- $(nproc) cores, shared by every server, client and the parse loops; other work on the machine shows in the figures"
echo
echo "== 1. parse throughput (messages/s, median of $PARSE_RUNS runs)"
for i in $(seq "$PARSE_RUNS"); do
  echo "   cargo bench --bench parse, run $i/$PARSE_RUNS"
  timeout 600 cargo bench --locked --quiet --bench parse -- --warm-up-time 1 --measurement-time 3 \
    >"$TMP/criterion-$i.txt" 2>"$TMP/criterion-$i.err" || {
    echo "cargo bench failed:"
    tail -n 20 "$TMP/criterion-$i.err"
    exit 1
  }
done
echo "   python-hl7 and hl7apy, timeit"
timeout 600 "$PY" "$HERE/parse_bench.py" --runs "$PARSE_RUNS" --seconds 0.4 "$ADT" "$ORU" >"$TMP/parse-py.jsonl"
python3 "$HERE/report.py" parse "$TMP"

echo
echo "== 2. MLLP ACK throughput, $ADT, median of $MLLP_RUNS runs"
echo "   recordhub load: 4 connections x pipeline 1 (lockstep: the peers' servers do not handle pipelining), $MESSAGES messages"
df -T "$TMP" | awk 'NR == 2 { print "   recordhub data dir on " $2 " (" $7 ")" }'
if df -T "$TMP" | awk 'NR == 2 { exit !($2 == "tmpfs") }'; then
  echo "   WARNING: tmpfs: fdatasync is a no-op there, recordhub's figure is not durable; set TMPDIR to a disk"
fi
load_runs() {
  local key="$1"
  for i in $(seq "$MLLP_RUNS"); do
    timeout 120 "$BIN" load --to "127.0.0.1:$PORT" --connections 4 --pipeline 1 --messages "$MESSAGES" "$ADT" \
      >"$TMP/mllp-$key-$i.json" || echo "   $key run $i: load failed or timed out"
  done
}
cpm_runs() {
  local key="$1"
  for i in $(seq "$MLLP_RUNS"); do
    timeout 120 "$PY" "$HERE/conn_per_msg_client.py" --to "127.0.0.1:$PORT" --connections 4 \
      --messages "$MESSAGES" --max-seconds "$HL7APY_SECONDS" "$ADT" \
      >"$TMP/mllp-$key-$i.json" || echo "   $key run $i: client failed or timed out"
  done
}

start_server recordhub
echo "   recordhub serve on 127.0.0.1:$PORT"
load_runs recordhub
echo "   hl7apy answers one message per connection: the python client (4 threads, a new connection"
echo "   per message, at most $HL7APY_SECONDS s per run) drives recordhub too, for a like-for-like ratio"
cpm_runs recordhub-cpm
stop_server

start_server simple
echo "   simple-hl7 server on 127.0.0.1:$PORT ($(grep -o 'listening.*' "$TMP/simple.log" || true))"
load_runs simple
stop_server

start_server hl7apy
echo "   hl7apy MLLPServer on 127.0.0.1:$PORT (its handler parses each message with hl7apy, as hl7apy's docs show, then answers AA)"
cpm_runs hl7apy
stop_server

python3 "$HERE/report.py" mllp "$TMP"

echo
echo "== summary ($(nproc) shared cores; peers' servers are not durable, recordhub fdatasyncs before each ACK)"
echo
python3 "$HERE/report.py" table "$TMP"
