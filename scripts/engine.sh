# Sourced by interop.sh and corpus.sh (not run on its own): builds the
# release binary unless RECORDHUB_BIN names one, makes a temporary data dir,
# starts the engine on free loopback ports (retrying if a port was taken) and
# stops it on exit. Sets BIN, TMP, SERVER_PID, MLLP_PORT, HTTP_PORT. The
# caller sets SUITE (the name in its closing "N passed, M failed" line).
if [ -z "${RECORDHUB_BIN:-}" ]; then
  timeout 1800 cargo build --release --locked --quiet
  RECORDHUB_BIN=target/release/recordhub
fi
BIN="$RECORDHUB_BIN"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/recordhub-$SUITE.XXXXXX")"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Free loopback ports can be taken between choosing and binding them (other
# processes' outgoing connections use the same range): try a few times.
start_engine() {
  read -r MLLP_PORT HTTP_PORT < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
  RUST_LOG="${RUST_LOG:-warn}" "$BIN" serve --listen "127.0.0.1:$MLLP_PORT" \
    --http "127.0.0.1:$HTTP_PORT" --data "$TMP/data" 2>"$TMP/server.log" &
  SERVER_PID=$!
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$MLLP_PORT") 2>/dev/null; then return 0; fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
  return 1
}
STARTED=""
for _ in 1 2 3 4 5; do
  if start_engine; then STARTED=1; break; fi
done
if [ -z "$STARTED" ]; then
  echo "the engine did not start; its log:"
  cat "$TMP/server.log"
  echo "$SUITE: 0 passed, 1 failed"
  exit 1
fi
