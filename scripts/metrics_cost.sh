#!/usr/bin/env bash
# What scraping GET /metrics every second costs in throughput, in one run:
#
#   bash scripts/metrics_cost.sh [-n ROUNDS] [FILE...]
#
# Each round runs the c16-p8 shape of scripts/load.sh (16 connections, 8
# outstanding each, $MESSAGES messages; FILEs default to fixtures/adt-a01.hl7)
# twice on fresh engines and data directories, alternating the order every
# round:
#   on    metrics recorded ([http] metrics = true, the default) and a curl
#         loop fetching /metrics once a second for the whole run
#   off   RECORDHUB__HTTP__METRICS=false: nothing recorded, /metrics is 404
# Prints the messages/s and ACK latency p99 of every run, the medians per
# variant, the ratio on/off and how many scrapes succeeded. The brief's bound:
# the ratio of medians is at least 0.98. The load tool shares the machine's
# cores with the engine; quote the figures with the core count printed.
#
# Environment: ROUNDS (default 5, or -n), MESSAGES (default 50000),
# RECORDHUB_BIN (an already built release binary; else one is built).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-5}"
if [ "${1:-}" = "-n" ]; then ROUNDS="$2"; shift 2; fi
MESSAGES="${MESSAGES:-50000}"
if [ "$#" -gt 0 ]; then FILES=("$@"); else FILES=(fixtures/adt-a01.hl7); fi
# shellcheck source=scripts/engine.sh
. scripts/engine.sh
engine_setup metrics-cost
SCRAPER_PID=""
trap 'stop_scraper; stop_engine; rm -rf "$TMP"' EXIT

stop_scraper() {
  if [ -n "$SCRAPER_PID" ]; then
    kill "$SCRAPER_PID" 2>/dev/null || true
    wait "$SCRAPER_PID" 2>/dev/null || true
  fi
  SCRAPER_PID=""
}

# run VARIANT ROUND
run() {
  local variant="$1" round="$2" out="$TMP/$1-$2"
  if [ "$variant" = on ]; then
    unset RECORDHUB__HTTP__METRICS
  else
    export RECORDHUB__HTTP__METRICS=false
  fi
  start_engine "$TMP/data-$variant-$round"
  : >"$out.scrapes"
  if [ "$variant" = on ]; then
    (
      while true; do
        curl -s -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:$HTTP_PORT/metrics" >>"$out.scrapes" || true
        sleep 1
      done
    ) &
    SCRAPER_PID=$!
  fi
  timeout 600 "$BIN" load --to "127.0.0.1:$MLLP_PORT" --connections 16 --pipeline 8 --messages "$MESSAGES" \
    "${FILES[@]}" >"$out.json"
  stop_scraper
  stop_engine
  echo "$variant $round $out" >>"$TMP/runs"
}

: >"$TMP/runs"
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then order="on off"; else order="off on"; fi
  for v in $order; do
    echo "== round $round: metrics $v" >&2
    run "$v" "$round"
  done
done

echo "c16-p8, $MESSAGES messages per run, ${FILES[*]}; $(nproc) cores shared by engine, load tool and scraper"
python3 - "$TMP/runs" <<'PY'
import json, statistics, sys
runs = {"on": [], "off": []}
for line in open(sys.argv[1]):
    variant, rnd, out = line.split()
    s = json.load(open(out + ".json"))
    codes = open(out + ".scrapes").read().split()
    ok = sum(c == "200" for c in codes)
    # A scrape before the read API is bound (it opens after journal replay,
    # the MLLP port before it) answers 000.
    other = ",".join(sorted(set(c for c in codes if c != "200")))
    runs[variant].append(s["messages_per_sec"])
    print(f"round {rnd:>2} metrics {variant:<3} {s['messages_per_sec']:>9.0f} msg/s  p99 {s['latency_us']['p99']:>7} us  "
          f"scrapes {ok}/{len(codes)} ok{' (others: ' + other + ')' if other else ''}  timeouts {s['timeouts']} errors {s['errors']}")
on, off = statistics.median(runs["on"]), statistics.median(runs["off"])
print(f"median msg/s: metrics on + 1 s scrape {on:.0f}, metrics off {off:.0f}; ratio on/off {on / off:.3f}")
PY
