#!/usr/bin/env python3
"""Issue 9 conformance: every well-formed ADT, ORU and MDM message of the
public corpus gets AA (or CA) from the real engine, sent by python-hl7's
`mllp_send`.

    corpus_accept.py --port PORT --mllp-send PATH [--list] CORPUS_DIR

Each corpus file is split into messages as the engine's splitter does
(scripts/frame.py); each ADT/ORU/MDM message is sent on its own connection
by `mllp_send` (pre-framed, so no --loose), and its ACK bytes are read here:
mllp_send exits 0 on a NAK and on no reply at all (peers.md), so the exit
code says nothing. A message passes when MSA-1 is AA or CA and MSA-2 is its
MSH-10.

"Well-formed" (decided here, before sending, without the engine):
- MSH-2 holds 4 distinct encoding characters, none the field separator;
- MSH-9 names a trigger event of its type: ADT A01-A62 (table 0003),
  ORU R01/R30/R31/R32/R40/R41, MDM T01-T11;
- MSH-10 (control id) and MSH-12 (version) are present;
- every segment id is three upper-case letters or digits;
- the segments the type cannot do without are there: ADT a PID, ORU an
  OBR, MDM a PID and a TXA;
- every OBR has OBR-4 (universal service identifier, required in every
  version) and an order number: OBR-2 (placer) or OBR-3 (filler).
A message that asks for no ACK (MSH-15 NE) cannot show its verdict to a
sender and is listed but not counted.

Prints one line per message that does not pass, with why (not well-formed:
the rule it breaks; well-formed: the engine's MSA-1, MSA-3 and ERR), then
the counts. Exits 1 when a well-formed message is not accepted.
Standard library only (python-hl7 is only the sender).
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import frame  # noqa: E402  (scripts/frame.py: the engine's split rules)

VT, FS, CR = b"\x0b", b"\x1c", b"\r"
TRIGGERS = {
    "ADT": {f"A{n:02d}" for n in range(1, 63)},
    "ORU": {"R01", "R30", "R31", "R32", "R40", "R41"},
    "MDM": {f"T{n:02d}" for n in range(1, 12)},
}
NEEDS = {"ADT": ["PID"], "ORU": ["OBR"], "MDM": ["PID", "TXA"]}
SEGMENT_ID = re.compile(rb"^[A-Z0-9]{3}$")


def header(msg):
    """(field separator, encoding chars, MSH fields by HL7 number) or None."""
    if not msg.startswith(b"MSH") or len(msg) < 8:
        return None
    sep = msg[3:4]
    first = msg.split(CR)[0]
    parts = first.split(sep)
    fields = {1: sep, 2: parts[1] if len(parts) > 1 else b""}
    for i, p in enumerate(parts[2:], 3):
        fields[i] = p
    return sep, fields[2], fields


def text(b):
    return b.decode("latin-1")


def well_formed(msg):
    """None when well-formed, else the rule broken."""
    sep, enc, f = header(msg)
    if len(enc) < 4 or len(set(enc[:4])) != 4 or sep in enc[:4]:
        return f"MSH-2 encoding characters {text(enc)!r} are not 4 distinct characters"
    comp = enc[0:1]
    typ, _, rest = f.get(9, b"").partition(comp)
    trigger = rest.partition(comp)[0]
    typ, trigger = text(typ), text(trigger)
    if trigger not in TRIGGERS[typ]:
        return f"MSH-9 {typ}^{trigger}: {trigger or 'no trigger'} is not a {typ} trigger event"
    if not f.get(10):
        return "MSH-10 (control id) is empty"
    if not f.get(12):
        return "MSH-12 (version) is empty"
    ids = [line.split(sep)[0] for line in msg.split(CR) if line]
    bad = [text(i) for i in ids if not SEGMENT_ID.match(i)]
    if bad:
        return f"segment id {bad[0][:20]!r} is not three letters or digits"
    for need in NEEDS[typ]:
        if need.encode() not in ids:
            return f"no {need} segment"
    for line in msg.split(CR):
        if line.split(sep)[0] == b"OBR":
            obr = line.split(sep)
            field = lambda i: obr[i].split(comp)[0] if len(obr) > i else b""  # noqa: E731
            if not field(4):
                return "an OBR without OBR-4 (universal service identifier, required)"
            if not field(2) and not field(3):
                return "an OBR with neither a placer (OBR-2) nor a filler (OBR-3) order number"
    return None


def ack_of(out):
    """The first ACK payload in mllp_send's output (VT ... FS), or None."""
    start = out.find(VT)
    if start < 0:
        return None
    end = out.find(FS, start)
    return out[start + 1 : end if end >= 0 else len(out)]


def verdict(ack):
    """(MSA-1, MSA-2, why) from ACK bytes."""
    sep = ack[3:4] if ack.startswith(b"MSH") else b"|"
    msa, err = [], []
    for seg in ack.split(CR):
        if seg.startswith(b"MSA"):
            msa = seg.split(sep)
        elif seg.startswith(b"ERR"):
            err.append(text(seg))
    get = lambda i: text(msa[i]) if len(msa) > i else ""  # noqa: E731
    return get(1), get(2), "; ".join([get(3)] + err).strip("; ")


def send(mllp_send, port, msg):
    with tempfile.NamedTemporaryFile(suffix=".mllp") as f:
        f.write(VT + msg + FS + CR)
        f.flush()
        try:
            r = subprocess.run([mllp_send, "-p", str(port), "-f", f.name, "127.0.0.1"], capture_output=True, timeout=30)
        except subprocess.TimeoutExpired:
            return None, "no ACK within 30 s"
        if r.returncode != 0:
            return None, f"mllp_send exited {r.returncode}: {text(r.stderr[-200:])}"
        return ack_of(r.stdout), ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mllp-send", required=True)
    ap.add_argument("--list", action="store_true", help="also list every message that passes")
    ap.add_argument("corpus")
    a = ap.parse_args()
    counts = {"messages": 0, "well_formed": 0, "accepted": 0, "not_well_formed": 0, "refused": 0, "no_ack_asked": 0}
    for root, _, files in sorted(os.walk(a.corpus)):
        for name in sorted(files):
            if not name.endswith(".hl7"):
                continue
            path = os.path.join(root, name)
            rel = os.path.relpath(path, a.corpus)
            with open(path, "rb") as fh:
                messages = frame.split_messages(fh.read())
            for i, msg in enumerate(messages, 1):
                h = header(msg)
                if h is None:
                    continue
                _, enc, f = h
                typ = text(f.get(9, b"").partition(enc[0:1] or b"^")[0])
                if typ not in TRIGGERS:
                    continue
                counts["messages"] += 1
                where = f"{rel} #{i} {text(f.get(9, b''))} {text(f.get(10, b''))!r}"
                broken = well_formed(msg)
                if text(f.get(15, b"")) == "NE":
                    counts["no_ack_asked"] += 1
                    print(f"SKIP {where}: MSH-15 NE asks for no ACK")
                    continue
                ack, problem = send(a.mllp_send, a.port, msg)
                code, echoed, why = verdict(ack) if ack else ("", "", problem or "no ACK (connection closed)")
                ok = code in ("AA", "CA") and echoed == text(f.get(10, b""))
                if broken:
                    counts["not_well_formed"] += 1
                    if ok:
                        counts["accepted"] += 1
                    print(f"{'ok  ' if ok else 'ILL '} {where}: not well-formed ({broken}); engine {code or '-'} {why}")
                    continue
                counts["well_formed"] += 1
                if ok:
                    counts["accepted"] += 1
                    if a.list:
                        print(f"ok   {where}: {code}")
                else:
                    counts["refused"] += 1
                    if code in ("AA", "CA"):
                        why = f"MSA-2 {echoed!r} is not the control id"
                    print(f"FAIL {where}: well-formed but engine answered {code or '-'}: {why}")
    print(
        f"corpus ADT/ORU/MDM: {counts['messages']} messages, {counts['accepted']} accepted (AA/CA); "
        f"{counts['well_formed']} well-formed, of which {counts['refused']} not accepted; "
        f"{counts['not_well_formed']} not well-formed; {counts['no_ack_asked']} ask for no ACK"
    )
    return 1 if counts["refused"] else 0


if __name__ == "__main__":
    sys.exit(main())
