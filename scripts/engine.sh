# Sourced by interop.sh, corpus.sh and load.sh (not run on its own): the one
# place that builds the binary and starts and stops an engine on free
# loopback ports.
#
#   engine_setup NAME   builds the release binary unless RECORDHUB_BIN names
#                       one; sets BIN and TMP (removed on exit, with any
#                       engine still running)
#   start_engine DATA   starts `recordhub serve` on DATA; sets SERVER_PID,
#                       MLLP_PORT, HTTP_PORT; log in $TMP/server.log;
#                       returns 1 (and prints the log) if it does not start
#   stop_engine         SIGTERM and wait (at most a minute, then SIGKILL)
#
# ENGINE_CONFIG, when set, is passed as `serve --config` (compare_release.sh
# runs each build with its own tree's engine.toml).

engine_setup() {
  if [ -z "${RECORDHUB_BIN:-}" ]; then
    timeout 1800 cargo build --release --locked --quiet
    RECORDHUB_BIN=target/release/recordhub
  fi
  BIN="$RECORDHUB_BIN"
  TMP="$(mktemp -d "${TMPDIR:-/tmp}/recordhub-$1.XXXXXX")"
  SERVER_PID=""
  trap 'stop_engine; rm -rf "$TMP"' EXIT
  trap 'exit 130' INT TERM
}

stop_engine() {
  if [ -n "${SERVER_PID:-}" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    # Bounded: an engine that ignores SIGTERM for a minute is killed.
    for _ in $(seq 600); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "the engine did not stop within 60 s of SIGTERM; killing it" >&2
      kill -9 "$SERVER_PID" 2>/dev/null || true
    fi
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}

# Free loopback ports can be taken between choosing and binding them (other
# processes' outgoing connections use the same range): try a few times.
start_engine() {
  local data="$1"
  for _ in 1 2 3 4 5; do
    read -r MLLP_PORT HTTP_PORT < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
    RUST_LOG="${RUST_LOG:-warn}" "$BIN" serve ${ENGINE_CONFIG:+--config "$ENGINE_CONFIG"} --listen "127.0.0.1:$MLLP_PORT" \
      --http "127.0.0.1:$HTTP_PORT" --data "$data" 2>"$TMP/server.log" &
    SERVER_PID=$!
    for _ in $(seq 100); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$MLLP_PORT") 2>/dev/null; then return 0; fi
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    stop_engine
  done
  echo "the engine did not start; its log:"
  cat "$TMP/server.log"
  return 1
}
