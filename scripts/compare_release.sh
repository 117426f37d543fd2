#!/usr/bin/env bash
# Network load of two builds side by side, in one run: is the new one slower?
#
#   bash scripts/compare_release.sh [-n ROUNDS] OLD NEW [FILE...]
#
# FILEs are the messages offered (default fixtures/adt-a01.hl7, the load of
# the README's Performance table), the same for both builds.
# OLD and NEW are each one of
#   REV           a git revision of this repository: exported (git archive)
#                 into a temporary tree and built with `cargo build --release
#                 --locked` (target dir target/compare-release, shared by
#                 both, so dependencies are built once)
#   .             this working tree, built with `cargo build --release --locked`
#   BINARY=TREE   an already built binary and the source tree it was built
#                 from (its engine.toml and mappings/ are used)
# e.g. bash scripts/compare_release.sh /work/baseline/recordhub-492da4d=/work/baseline/tree .
#
# Each round runs scripts/load.sh once per build, alternating A B A B (the
# order flips every round so neither build always goes first): the shapes
# c16-p8 (16 connections, 8 outstanding each, $MESSAGES messages) and
# lockstep (1 connection, 1 outstanding, $LOCKSTEP_MESSAGES messages). Every
# run is a fresh engine on a fresh data directory, with its own tree's
# engine.toml and mappings. The load tool is the same for both (NEW's
# `recordhub load`, or LOAD_BIN), so only the engine differs.
# Prints, per shape and build, the median messages/s and ACK latency p50
# and p99 over the rounds, and the ratio NEW/OLD (msg/s above 1 is faster;
# latency above 1 is slower). The load tool shares the machine's cores with
# the engine: quote the figures with the core count printed.
#
# Environment: ROUNDS (default 5, or -n), MESSAGES (default 50000),
# LOCKSTEP_MESSAGES (default 10000), LOAD_BIN, KEEP (keep the JSON summaries
# in this directory).
set -euo pipefail
CALLER="$PWD"
cd "$(dirname "$0")/.."
ROOT="$PWD"

# absolute PATH: PATH as the caller meant it (relative to where they ran this).
absolute() {
  case "$1" in /*) echo "$1" ;; *) echo "$CALLER/$1" ;; esac
}

ROUNDS="${ROUNDS:-5}"
if [ "${1:-}" = "-n" ]; then
  ROUNDS="$2"
  shift 2
fi
if [ "$#" -lt 2 ]; then
  sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
OLD_SIDE="$1"
NEW_SIDE="$2"
shift 2
FILES=()
for f in "$@"; do FILES+=("$(absolute "$f")"); done
[ "${#FILES[@]}" -gt 0 ] || FILES=("$ROOT/fixtures/adt-a01.hl7")
for f in "${FILES[@]}"; do [ -f "$f" ] || { echo "compare_release.sh: no file $f" >&2; exit 2; }; done
export MESSAGES="${MESSAGES:-50000}"
export LOCKSTEP_MESSAGES="${LOCKSTEP_MESSAGES:-10000}"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/recordhub-compare.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

# prepare SIDE NAME: sets BIN_<NAME> and TREE_<NAME> (absolute paths).
prepare() {
  local side="$1" name="$2" bin tree
  case "$side" in
    *=*)
      bin="$(absolute "${side%%=*}")"
      tree="$(absolute "${side#*=}")"
      ;;
    .)
      echo "== $name: building this working tree"
      timeout 3600 cargo build --release --locked --quiet
      bin="$ROOT/target/release/recordhub"
      tree="$ROOT"
      ;;
    *)
      local rev
      rev="$(git rev-parse --verify --quiet "$side^{commit}")" || {
        echo "compare_release.sh: '$side' is not a revision, '.', or BINARY=TREE" >&2
        exit 2
      }
      tree="$WORK/tree-$name"
      mkdir -p "$tree"
      git archive "$rev" | tar -x -C "$tree"
      echo "== $name: building $side ($rev) in $tree"
      (cd "$tree" && CARGO_TARGET_DIR="$ROOT/target/compare-release" timeout 3600 cargo build --release --locked --quiet)
      bin="$WORK/recordhub-$name"
      cp "$ROOT/target/compare-release/release/recordhub" "$bin"
      ;;
  esac
  bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
  tree="$(cd "$tree" && pwd)"
  [ -x "$bin" ] || { echo "compare_release.sh: no executable at $bin" >&2; exit 2; }
  [ -d "$tree/mappings" ] || { echo "compare_release.sh: no mappings/ in $tree" >&2; exit 2; }
  printf -v "BIN_$name" '%s' "$bin"
  printf -v "TREE_$name" '%s' "$tree"
  echo "== $name: $bin (mappings and engine.toml from $tree)"
}

prepare "$OLD_SIDE" OLD
prepare "$NEW_SIDE" NEW
LOAD_BIN="${LOAD_BIN:-$BIN_NEW}"

# run NAME ROUND: one load.sh run (both shapes) of build NAME.
run() {
  local name="$1" round="$2" bin tree out
  bin="BIN_$name"
  tree="TREE_$name"
  out="$WORK/results/$name-$round"
  mkdir -p "$out"
  echo "== round $round: $name"
  RECORDHUB_BIN="${!bin}" RECORDHUB_LOAD="$LOAD_BIN load" ENGINE_CONFIG="${!tree}/engine.toml" \
    RECORDHUB__MAPPING__DIR="${!tree}/mappings" SCENARIOS="c16-p8 lockstep" LOAD_OUT="$out" \
    bash "$ROOT/scripts/load.sh" "${FILES[@]}" >"$out/load.log" 2>&1 || {
    echo "load.sh failed for $name in round $round:"
    tail -n 30 "$out/load.log"
    exit 1
  }
}

for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then order="OLD NEW"; else order="NEW OLD"; fi
  for name in $order; do run "$name" "$round"; done
done

if [ -n "${KEEP:-}" ]; then
  mkdir -p "$KEEP"
  cp -r "$WORK/results/." "$KEEP/"
fi

echo
echo "OLD: $OLD_SIDE"
echo "NEW: $NEW_SIDE"
echo "$ROUNDS rounds, alternating; $(nproc) cores shared by engine and load tool"
echo "messages: c16-p8 $MESSAGES, lockstep $LOCKSTEP_MESSAGES, from ${FILES[*]#"$ROOT/"}"
python3 - "$WORK/results" "$ROUNDS" <<'PY'
import json, statistics, sys
res, rounds = sys.argv[1], int(sys.argv[2])
def load(name, shape):
    out = []
    for r in range(1, rounds + 1):
        s = json.load(open(f"{res}/{name}-{r}/{shape}.json"))
        bad = s["timeouts"] + s["errors"]
        if bad:
            print(f"warning: {name} round {r} {shape}: {s['timeouts']} timeouts, {s['errors']} errors")
        out.append(s)
    return out
print(f"{'shape':<9} {'build':<5} {'msg/s':>9} {'p50 us':>8} {'p99 us':>8}  msg/s per round; ACK codes")
for shape in ("c16-p8", "lockstep"):
    med, runs = {}, {}
    for name in ("OLD", "NEW"):
        runs[name] = load(name, shape)
        rate = statistics.median(s["messages_per_sec"] for s in runs[name])
        p50 = statistics.median(s["latency_us"]["p50"] for s in runs[name])
        p99 = statistics.median(s["latency_us"]["p99"] for s in runs[name])
        med[name] = (rate, p50, p99)
        each = " ".join(f"{s['messages_per_sec']:.0f}" for s in runs[name])
        codes = " ".join(f"{k}={v}" for k, v in sorted(runs[name][-1]["acked_by_code"].items()))
        print(f"{shape:<9} {name:<5} {rate:>9.0f} {p50:>8.0f} {p99:>8.0f}  {each}; {codes}")
    (r0, a0, b0), (r1, a1, b1) = med["OLD"], med["NEW"]
    print(f"{shape:<9} {'ratio':<5} {r1 / r0:>9.3f} {a1 / a0:>8.3f} {b1 / b0:>8.3f}  NEW/OLD of the medians")
    # Each round's two runs were back to back: their ratio cancels slow
    # drifts of the machine (other load), so its median is the steadier figure.
    paired = sorted(n["messages_per_sec"] / o["messages_per_sec"] for o, n in zip(runs["OLD"], runs["NEW"]))
    spread = max(s["messages_per_sec"] for s in runs["OLD"]) / min(s["messages_per_sec"] for s in runs["OLD"])
    print(f"{shape:<9} {'paired':<5} {statistics.median(paired):>9.3f}  msg/s NEW/OLD per round: "
          + " ".join(f"{x:.3f}" for x in paired) + f"; OLD's own max/min {spread:.2f}")
PY
