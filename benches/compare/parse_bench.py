#!/usr/bin/env python3
"""Parse throughput of the Python peers, for benches/compare.sh.

    parse_bench.py --runs 5 --seconds 0.4 FILE...

For each FILE (one HL7 message, CR-separated segments) and each peer:
  python-hl7 0.4.5   hl7.parse(text)
  hl7apy 1.3.5       hl7apy.parser.parse_message(text, find_groups=False)
timeit picks a loop count once (about --seconds per run), then runs the
loop --runs times; prints one JSON line per (file, peer) with every run's
messages/s and their median.

Both parsers split the whole message into segments, fields, components
(python-hl7 eagerly into nested lists; hl7apy into element objects), so
no extra field walk is added on their side. Before timing, each peer must
see the same segment count as a plain CR split: a parse that silently
read less is not timed.
"""
import argparse
import json
import statistics
import sys
import timeit

import hl7
from hl7apy.parser import parse_message


def segments(text):
    return [s for s in text.split("\r") if s]


def check(name, peer, text):
    want = len(segments(text))
    if peer == "python-hl7":
        got = len(hl7.parse(text))
    else:
        got = len(parse_message(text, find_groups=False).children)
    if got != want:
        sys.exit(f"{name}: {peer} read {got} segments, expected {want}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.4)
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    for path in args.files:
        with open(path, "rb") as f:
            raw = f.read()
        # Same bytes as the Rust bench (include_bytes), segments on CR.
        text = raw.decode("utf-8").replace("\r\n", "\r").replace("\n", "\r")
        name = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        peers = {
            "python-hl7": lambda: hl7.parse(text),
            "hl7apy": lambda: parse_message(text, find_groups=False),
        }
        for peer, fn in peers.items():
            check(name, peer, text)
            timer = timeit.Timer(fn)
            number, took = timer.autorange()  # >= 0.2 s
            number = max(1, int(number * args.seconds / took))
            per_run = timer.repeat(repeat=args.runs, number=number)
            rates = [number / t for t in per_run]
            print(json.dumps({
                "file": name,
                "peer": peer,
                "bytes": len(raw),
                "loops": number,
                "runs_msgs_per_sec": [round(r, 1) for r in rates],
                "median_msgs_per_sec": statistics.median(rates),
            }), flush=True)


if __name__ == "__main__":
    main()
