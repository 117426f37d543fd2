#!/usr/bin/env python3
"""Figures and ratios for benches/compare.sh, from the files it leaves in DIR.

    report.py parse DIR    parse throughput: criterion runs (DIR/criterion-*.txt)
                           and the Python peers (DIR/parse-py.jsonl)
    report.py mllp DIR     MLLP ACK throughput (DIR/mllp-<target>-<run>.json)
    report.py table DIR    the markdown table of everything

Criterion: the middle value of each bench's first `time: [lo mid hi]`
line (the `change:` block that follows repeats `time:` and is skipped);
messages/s = 1 / mid. Median over the runs. Standard library only.
"""
import glob
import json
import os
import re
import statistics
import sys

UNITS = {"ps": 1e-12, "ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}
BENCH = re.compile(r"^(parse/\S+)\s+time:\s+\[(\S+) (\S+) (\S+) (\S+) (\S+) (\S+)\]", re.M)
FILES = ["adt-a01", "oru-r01"]

# MLLP targets: (key, label, client, durable, ratio against)
MLLP = [
    ("recordhub", "recordhub (durable)", "recordhub load, 4 conn x pipeline 1", True, None),
    ("simple", "simple-hl7 3.3.0 server", "recordhub load, 4 conn x pipeline 1", False, "recordhub"),
    ("recordhub-cpm", "recordhub (durable)", "python, 4 threads, 1 conn per message", True, None),
    ("hl7apy", "hl7apy 1.3.5 MLLPServer", "python, 4 threads, 1 conn per message", False, "recordhub-cpm"),
]


def criterion(d):
    """{(file, impl): [msgs/s per run]}"""
    out = {}
    for path in sorted(glob.glob(os.path.join(d, "criterion-*.txt"))):
        text = open(path, encoding="utf-8", errors="replace").read()
        for m in BENCH.finditer(text):
            _, file, impl = m.group(1).split("/")[:3]
            secs = float(m.group(4)) * UNITS[m.group(5)]
            out.setdefault((file, impl), []).append(1.0 / secs)
    return out


def parse_figures(d):
    """{(file, impl): (median msgs/s, runs)}"""
    figs = {k: (statistics.median(v), len(v)) for k, v in criterion(d).items()}
    path = os.path.join(d, "parse-py.jsonl")
    if os.path.exists(path):
        for line in open(path):
            r = json.loads(line)
            figs[(r["file"], r["peer"])] = (r["median_msgs_per_sec"], len(r["runs_msgs_per_sec"]))
    return figs


def fmt(x):
    if x is None:
        return "n/a"
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def ratio(a, b):
    return f"{a / b:,.1f}x" if a and b else "n/a"


PARSE_IMPLS = [
    ("recordhub", "recordhub (Rust, criterion)"),
    ("hl7-parser", "hl7-parser 0.3.0 (Rust, criterion)"),
    ("python-hl7", "python-hl7 0.4.5 hl7.parse"),
    ("hl7apy", "hl7apy 1.3.5 parse_message(find_groups=False)"),
]


def parse_rows(d):
    figs = parse_figures(d)
    rows = []
    for file in FILES:
        ours = figs.get((file, "recordhub"), (None, 0))[0]
        for impl, label in PARSE_IMPLS:
            v, n = figs.get((file, impl), (None, 0))
            r = "—" if impl == "recordhub" else ratio(ours, v)
            rows.append((file, label, v, n, r))
    return rows


def mllp_figures(d):
    """{key: (median msgs/s, median p50, median p99, runs, problems)}"""
    out = {}
    for key, *_ in MLLP:
        runs = []
        for path in sorted(glob.glob(os.path.join(d, f"mllp-{key}-[0-9]*.json"))):
            try:
                runs.append(json.load(open(path)))
            except ValueError:
                pass
        if not runs:
            continue
        problems = []
        for r in runs:
            codes = r.get("acked_by_code", {})
            bad = {c: n for c, n in codes.items() if c not in ("AA", "CA")}
            if bad or r.get("timeouts") or r.get("errors"):
                problems.append(f"codes={codes} timeouts={r.get('timeouts')} errors={r.get('errors')}")
        capped = any(r.get("stopped_at_max_seconds") for r in runs)
        med = lambda f: statistics.median(f(r) for r in runs)
        out[key] = (
            med(lambda r: r["messages_per_sec"]),
            round(med(lambda r: r["latency_us"]["p50"])),
            round(med(lambda r: r["latency_us"]["p99"])),
            len(runs),
            med(lambda r: sum(r["acked_by_code"].values())),
            capped,
            problems,
        )
    return out


def mllp_rows(d):
    figs = mllp_figures(d)
    rows = []
    for key, label, client, durable, against in MLLP:
        if key not in figs:
            rows.append((label, client, durable, None, None, None, 0, 0, False, ["not run"], "n/a"))
            continue
        rate, p50, p99, n, acked, capped, problems = figs[key]
        r = "—"
        if against:
            r = ratio(figs.get(against, (None,))[0], rate)
        rows.append((label, client, durable, rate, p50, p99, n, acked, capped, problems, r))
    return rows


def cmd_parse(d):
    for file, label, v, n, r in parse_rows(d):
        extra = "" if r == "—" else f"   ours/peer {r}"
        print(f"  {file:<8} {label:<48} {fmt(v):>12} msg/s  (median of {n}){extra}")


def cmd_mllp(d):
    for label, client, durable, rate, p50, p99, n, acked, capped, problems, r in mllp_rows(d):
        dur = "durable (fdatasync before ACK)" if durable else "NOT durable (nothing written to disk)"
        line = f"  {label:<26} [{client}] {fmt(rate):>8} msg/s  p50 {p50} us  p99 {p99} us  (median of {n}, {fmt(acked)} ACKs/run)  {dur}"
        if r != "—":
            line += f"   recordhub/peer {r}"
        if capped:
            line += "  [stopped at the time cap]"
        print(line)
        for p in problems:
            print(f"      PROBLEM: {p}")


def cmd_table(d):
    print("| Measure | Input | Implementation | Figure | Ratio (recordhub / peer) |")
    print("|---|---|---|---|---|")
    for file, label, v, n, r in parse_rows(d):
        print(f"| parse, msg/s (median of {n}) | {file} | {label} | {fmt(v)} | {r} |")
    for label, client, durable, rate, p50, p99, n, acked, capped, problems, r in mllp_rows(d):
        dur = "durable" if durable else "not durable"
        note = " (time-capped)" if capped else ""
        bad = " **errors, see above**" if problems else ""
        print(
            f"| MLLP ACK, msg/s, p50/p99 us (median of {n}) | adt-a01 | {label}, {dur}; client: {client}{note} "
            f"| {fmt(rate)} msg/s, {p50}/{p99} us{bad} | {r} |"
        )


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("parse", "mllp", "table"):
        sys.exit(__doc__)
    {"parse": cmd_parse, "mllp": cmd_mllp, "table": cmd_table}[sys.argv[1]](sys.argv[2])


if __name__ == "__main__":
    main()
