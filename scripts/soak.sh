#!/usr/bin/env bash
# Soak test: the release engine under a steady load for SOAK_SECS with a
# kill -9 and restart every KILL_EVERY seconds; then every acknowledged
# control id must be in the journal exactly once, and RSS and open files
# must have stayed flat (from /proc, sampled every second).
#
# "Flat" is judged where a leak would show. Every kill -9 starts a fresh
# process, so nothing leaked survives a life: a leak shows as growth WITHIN
# a life. What a fresh process holds at start-up follows the data instead:
# sled keeps per-page state for the whole index outside its page cache
# (index_cache_bytes bounds only the cache), so start-of-life RSS rises with
# the index on disk; the script reports that slope (kB of RSS per MB of
# index) rather than calling it a leak.
#
#   bash scripts/soak.sh        (SOAK_SECS=600 by default; an hour for a release)
#
# Environment: SOAK_SECS (600), KILL_EVERY (60), RATE total messages/s (200),
# CONNS connections (4), RSS_GROWTH the largest allowed ratio of the last
# full engine life's RSS growth (peak - start) to the first's, plus 32 MB
# (1.5), FD_GROWTH the most extra open
# files allowed likewise (32), RECORDHUB_BIN an already built binary,
# SOAK_KEEP=1 keeps the data directory. Senders: scripts/soak_sender.py
# (standard-library Python), which resends an unanswered message with the
# same bytes after a kill, so retransmissions are exercised too.
set -euo pipefail
cd "$(dirname "$0")/.."

SOAK_SECS="${SOAK_SECS:-600}"
KILL_EVERY="${KILL_EVERY:-60}"
RATE="${RATE:-200}"
CONNS="${CONNS:-4}"
RSS_GROWTH="${RSS_GROWTH:-1.5}"
FD_GROWTH="${FD_GROWTH:-32}"

if [ -z "${RECORDHUB_BIN:-}" ]; then
  cargo build --release --locked --quiet --bin recordhub
  RECORDHUB_BIN=target/release/recordhub
fi
BIN="$RECORDHUB_BIN"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/recordhub-soak.XXXXXX")"
DATA="$TMP/data"
PID=""
SENDER=""
cleanup() {
  [ -n "$SENDER" ] && kill "$SENDER" 2>/dev/null || true
  [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null || true
  if [ -n "${SOAK_KEEP:-}" ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r MLLP_PORT HTTP_PORT < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')

LIFE=0
# start: a new engine life on the same ports and data; prints how long
# start-up (journal recovery and replay) took until the port answered.
start() {
  LIFE=$((LIFE + 1))
  local t0
  t0=$(date +%s.%N)
  RUST_LOG=warn "$BIN" serve --listen "127.0.0.1:$MLLP_PORT" --http "127.0.0.1:$HTTP_PORT" --data "$DATA" \
    2>>"$TMP/server.log" &
  PID=$!
  for _ in $(seq 600); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$MLLP_PORT") 2>/dev/null; then
      echo "life $LIFE: pid $PID listening after $(python3 -c "import time;print(round(time.time()-$t0,2))") s"
      return 0
    fi
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "the engine did not start; its log:" >&2
  tail -20 "$TMP/server.log" >&2
  exit 1
}

# sample: one line "life seconds rss_kb fds index_kb" from /proc and du.
sample() {
  local rss fds
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$PID/status" 2>/dev/null || echo "")
  fds=$( (ls "/proc/$PID/fd" 2>/dev/null || true) | wc -l)
  idx=$(du -sk "$DATA/index" 2>/dev/null | cut -f1)
  [ -n "$rss" ] && echo "$LIFE $(($(date +%s) - T0)) $rss $fds ${idx:-0}" >>"$TMP/samples"
  return 0
}

echo "== soak: ${SOAK_SECS}s at ${RATE} msg/s over ${CONNS} connections, kill -9 every ${KILL_EVERY}s ($BIN)"
T0=$(date +%s)
END=$((T0 + SOAK_SECS))
start
python3 scripts/soak_sender.py 127.0.0.1 "$MLLP_PORT" "$CONNS" "$RATE" "$END" "$TMP" >"$TMP/sender.json" &
SENDER=$!
NEXT_KILL=$((T0 + KILL_EVERY))
while [ "$(date +%s)" -lt "$END" ]; do
  sleep 1
  sample
  if [ "$(date +%s)" -ge "$NEXT_KILL" ] && [ "$(date +%s)" -lt "$((END - 5))" ]; then
    kill -9 "$PID"
    wait "$PID" 2>/dev/null || true
    echo "life $LIFE: killed -9 at $(($(date +%s) - T0)) s"
    start
    NEXT_KILL=$(($(date +%s) + KILL_EVERY))
  fi
done
wait "$SENDER"
SENDER=""
kill "$PID"
wait "$PID" 2>/dev/null || true
PID=""
echo "senders: $(cat "$TMP/sender.json")"

"$BIN" journal --data "$DATA" >"$TMP/journal.jsonl"
cat "$TMP"/acked-*.txt >"$TMP/acked.txt"
python3 - "$TMP" "$RSS_GROWTH" "$FD_GROWTH" <<'PY'
import collections, json, sys
tmp, rss_growth, fd_growth = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
acked = [l.strip() for l in open(f"{tmp}/acked.txt") if l.strip()]
counts = collections.Counter()
for line in open(f"{tmp}/journal.jsonl"):
    e = json.loads(line)
    counts[e.get("control_id", "")] += 1
missing = [c for c in acked if counts[c] == 0]
twice = [c for c in set(acked) if counts[c] > 1]
print(f"acknowledged: {len(acked)} ({len(set(acked))} distinct); journal entries: {sum(counts.values())}; "
      f"missing: {len(missing)}; journaled more than once: {len(twice)}")
lives = collections.defaultdict(list)
for line in open(f"{tmp}/samples"):
    life, t, rss, fds, idx = map(int, line.split())
    lives[life].append((t, rss, fds, idx))
print("life  samples  rss_kb start/peak  in-life  index_kb   fds first/last/max")
for life, s in sorted(lives.items()):
    r = [x[1] for x in s]; f = [x[2] for x in s]
    print(f"{life:>4}  {len(s):>7}  {r[0]:>7} {max(r):>7} {max(r) - r[0]:>8}  {s[0][3]:>8}   {f[0]:>4} {f[-1]:>4} {max(f):>4}")
# Compare full lives only (a life cut short by the end says little), and
# measure growth within a life from 10 s in: the first seconds are start-up
# (the retention check reads the whole dedup table), sampled at varying points.
longest = max(len(s) for s in lives.values())
full = [s for _, s in sorted(lives.items()) if len(s) >= 0.8 * longest] or list(lives.values())
def within(s):
    settled = s[min(10, len(s) - 1):]
    return max(x[1] for x in settled) - settled[0][1]
third = max(1, len(full) // 3)
first_in = sorted(within(s) for s in full[:third])[third // 2]
last_in = sorted(within(s) for s in full[-third:])[third // 2]
first_fd, last_fd = max(x[2] for x in full[0]), max(x[2] for x in full[-1])
# Growth within a life may rise a little with the data (more of the page
# cache fills per life): allow RSS_GROWTH times the first lives', plus 32 MB.
flat = last_in <= first_in * rss_growth + 32 * 1024 and last_fd <= first_fd + fd_growth
print(f"growth within a life (median, from 10 s in): first third of lives {first_in} kB, last third {last_in} kB; "
      f"peak fds {first_fd} -> {last_fd}: {'flat' if flat else 'GREW'}")
starts = [(s[0][3], s[0][1]) for s in full]
if len(starts) >= 2 and starts[-1][0] > starts[0][0]:
    slope = (starts[-1][1] - starts[0][1]) / ((starts[-1][0] - starts[0][0]) / 1024)
    print(f"start-of-life RSS follows the index: {starts[0][1]} kB at {starts[0][0] // 1024} MB of index, "
          f"{starts[-1][1]} kB at {starts[-1][0] // 1024} MB: {slope:.0f} kB of RSS per MB of index")
ok = not missing and not twice and len(acked) > 0 and flat
if missing: print("missing (first 10):", missing[:10])
if twice: print("journaled twice (first 10):", twice[:10])
print("soak:", "PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
