#!/usr/bin/env python3
"""Large HL7 messages for measuring mapping (not committed: generated on demand).

    python3 scripts/bigmsg.py oru GROUPS > big-oru.hl7   # ORU^R01, one OBR + OBX per group
    python3 scripts/bigmsg.py adt DG1S   > big-adt.hl7   # ADT^A01 with that many DG1s

240,000 ORU groups make ~15.5 MB; 340,000 DG1s make ~16 MB (issue 8, hole 10)."""
import sys

def oru(groups, control_id="BIGORU1"):
    out = [b"MSH|^~\\&|WINPATH|RJ1LAB|RECORDHUB|LCR|20261121090000||ORU^R01^ORU_R01|" + control_id.encode() + b"|P|2.4",
           b"PID|1||9434765919^^^NHS^NH||TEST^PATIENT||19700101|F",
           b"PV1|1|O|OPD"]
    for g in range(1, groups + 1):
        out.append(b"OBR|%d||A%06d|K" % (g, g))
        out.append(b"OBX|1|NM|K^Potassium||6.8|mmol/L|3.5-5.3|H|||F")
    return b"\r".join(out) + b"\r"

def adt(dg1s, control_id="BIGADT1"):
    out = [b"MSH|^~\\&|PAS|RJ1|RECORDHUB|LCR|20261121090000||ADT^A01^ADT_A01|" + control_id.encode() + b"|P|2.4",
           b"EVN|A01|20261121090000",
           b"PID|1||9434765919^^^NHS^NH||TEST^PATIENT||19700101|F",
           b"PV1|1|I|WARD1^BAY1^BED1||||||||||||||||V1234"]
    for n in range(1, dg1s + 1):
        out.append(b"DG1|%d||I%05d^Hypertension^I10||20261121|F" % (n, n))
    return b"\r".join(out) + b"\r"

if __name__ == "__main__":
    kind, n = sys.argv[1], int(sys.argv[2])
    sys.stdout.buffer.write({"oru": oru, "adt": adt}[kind](n))
