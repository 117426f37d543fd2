#!/usr/bin/env python3
"""Checks for scripts/interop.sh, run with the peers' venv python.

    peer_check.py codes   --sent X.mllp --acks X.out --file NAME [--ids-out F]
        python-hl7's mllp_send output (raw ACK frames) against what was sent:
        one ACK per message, MSA-2 = the sent MSH-10, and MSA-1 as expected:
        AA/CA for ADT, ORU and MDM messages, AE/AR/CE/CR when NAME contains
        "invalid", any code otherwise (printed as not checked). Appends the
        control ids that got AA/CA to --ids-out.
    peer_check.py hl7apy  --sent X.mllp --acks X.out
        hl7apy.parser.parse_message parses every ACK, and its MSA-2 equals
        the sent MSH-10: an independent check that the ACKs are well-formed.
    peer_check.py garbage --port P [--ids-out F]
        On ONE connection (python-hl7's hl7.client.MLLPClient): a frame that
        is not HL7 gets AR (or CR), then a valid ADT^A01 on the same
        connection gets AA; both ACKs also go through hl7apy.
    peer_check.py journal --ids F --journal J
        Every control id in F appears exactly once in `recordhub journal`
        output J.

Each prints what it checked and exits 0 when all is well, 1 otherwise.
"""
import argparse
import json
import os
import sys
import time

VT, FS, CR = b"\x0b", b"\x1c", b"\r"
ACCEPT = {"AA", "CA"}
REJECT = {"AE", "AR", "CE", "CR"}
ACCEPTED_TYPES = {"ADT", "ORU", "MDM"}


def frames(data):
    """Payloads between VT and FS, in order."""
    out = []
    for chunk in data.split(VT)[1:]:
        end = chunk.find(FS)
        out.append(chunk if end < 0 else chunk[:end])
    return out


def msh_fields(message):
    """MSH split on its field separator: [MSH, MSH-2, MSH-3, ...], so MSH-n is [n-1]."""
    msh = message.replace(b"\n", CR).split(CR)[0]
    if not msh.startswith(b"MSH") or len(msh) < 4:
        return []
    return [f.decode("latin-1") for f in msh.split(msh[3:4])]


def msa(ack):
    """(MSA-1, MSA-2) read by hand, or None."""
    fields = msh_fields(ack)
    sep = ack[3:4] if fields else b"|"
    for seg in ack.replace(b"\n", CR).split(CR):
        if seg.startswith(b"MSA" + sep):
            f = [x.decode("latin-1") for x in seg.split(sep)] + ["", ""]
            return f[1], f[2]
    return None


def sent_and_acks(args):
    with open(args.sent, "rb") as f:
        sent = frames(f.read())
    with open(args.acks, "rb") as f:
        acks = frames(f.read())
    return sent, acks


def expectation(name, message):
    if "invalid" in os.path.basename(name):
        return "reject", REJECT
    fields = msh_fields(message)
    msg_type = fields[8] if len(fields) > 8 else ""
    # MSH-9.1: the type before the first component separator (MSH-2[0]).
    comp = fields[1][:1] if len(fields) > 1 else "^"
    if msg_type.split(comp)[0] in ACCEPTED_TYPES:
        return "accept", ACCEPT
    return "any", None


def cmd_codes(args):
    sent, acks = sent_and_acks(args)
    failures = 0
    if len(acks) != len(sent):
        print(f"  FAIL {args.file}: {len(sent)} messages sent, {len(acks)} ACKs received")
        failures += 1
    accepted = []
    for i, message in enumerate(sent):
        fields = msh_fields(message)
        control_id = fields[9] if len(fields) > 9 else ""
        kind, allowed = expectation(args.file, message)
        got = msa(acks[i]) if i < len(acks) else None
        if got is None:
            print(f"  FAIL {args.file} #{i + 1} {control_id}: no readable ACK")
            failures += 1
            continue
        code, acked_id = got
        problems = []
        if acked_id != control_id:
            problems.append(f"MSA-2 {acked_id!r} != MSH-10 {control_id!r}")
        if allowed is not None and code not in allowed:
            problems.append(f"MSA-1 {code}, expected one of {sorted(allowed)}")
        verdict = "FAIL" if problems else "ok"
        note = "; ".join(problems) or ("code not checked (not an ADT/ORU/MDM)" if kind == "any" else f"expected {kind}")
        print(f"  {verdict:4} {args.file} #{i + 1} {control_id} -> {code} ({note})")
        failures += bool(problems)
        if code in ACCEPT and control_id:
            accepted.append(control_id)
    if args.ids_out:
        with open(args.ids_out, "a") as f:
            f.writelines(c + "\n" for c in accepted)
    return failures == 0


def hl7apy_check(ack, control_id, label):
    """Parse one ACK with hl7apy; True when it parses and MSA-2 matches."""
    from hl7apy.parser import parse_message

    text = ack.decode("utf-8", errors="replace").replace("\r\n", "\r").replace("\n", "\r").strip("\r")
    try:
        parsed = parse_message(text, find_groups=False)
        msa_2 = parsed.msa.msa_2.value
    except Exception as e:  # hl7apy raises many types; any of them is a failure
        print(f"  FAIL {label}: hl7apy cannot parse the ACK: {type(e).__name__}: {e}")
        return False
    if msa_2 != control_id:
        print(f"  FAIL {label}: hl7apy reads MSA-2 {msa_2!r}, sent MSH-10 {control_id!r}")
        return False
    print(f"  ok   {label}: hl7apy parses the ACK ({parsed.msh.msh_9.to_er7()}, v{parsed.version}), MSA-2 {msa_2!r}")
    return True


def cmd_hl7apy(args):
    sent, acks = sent_and_acks(args)
    ok = len(acks) == len(sent)
    if not ok:
        print(f"  FAIL {args.sent}: {len(sent)} sent, {len(acks)} ACKs")
    for i, (message, ack) in enumerate(zip(sent, acks)):
        fields = msh_fields(message)
        control_id = fields[9] if len(fields) > 9 else ""
        ok &= hl7apy_check(ack, control_id, f"{os.path.basename(args.sent)} #{i + 1} {control_id}")
    return ok


def recv_frame(sock):
    """Reads until FS CR: mllp_send's single recv(4096) may return half a frame."""
    data = b""
    while not data.endswith(FS + CR):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"server closed the connection after {len(data)} bytes")
        data += chunk
    return frames(data)[-1]


def cmd_garbage(args):
    import hl7.client

    control_id = f"INTEROP{os.getpid()}{int(time.time())}"
    valid = (
        f"MSH|^~\\&|PAS|RJ1|RECORDHUB|LCR|20261121083000||ADT^A01^ADT_A01|{control_id}|P|2.4\r"
        "EVN|A01|20261121083000\r"
        "PID|1||9434765919^^^NHS^NH~RJ1-123456^^^RJ1^MR||SMITH^JOHN^^^MR||19700101|M\r"
        "PV1|1|I|RJ1WARD1^BED1||||C123^JONES^ANN|||||||||||V0001\r"
    )
    ok = True
    with hl7.client.MLLPClient("127.0.0.1", args.port) as client:
        client.socket.settimeout(10)
        client.socket.sendall(VT + b"this is not HL7 at all\r" + FS + CR)
        nak = recv_frame(client.socket)
        got = msa(nak)
        if got is None or got[0] not in ("AR", "CR"):
            print(f"  FAIL garbage frame: expected AR, got {got!r}: {nak!r}")
            ok = False
        else:
            print(f"  ok   garbage frame -> {got[0]} (MSA-2 {got[1]!r})")
            ok &= hl7apy_check(nak, got[1], "garbage frame NAK")
        # Same socket: the connection must still work.
        client.socket.sendall(VT + valid.encode() + FS + CR)
        ack = recv_frame(client.socket)
        got = msa(ack)
        if got is None or got != ("AA", control_id):
            print(f"  FAIL valid message after garbage, same connection: expected AA {control_id}, got {got!r}")
            ok = False
        else:
            print(f"  ok   valid message after garbage, same connection -> AA {control_id}")
            ok &= hl7apy_check(ack, control_id, f"ACK of {control_id}")
    if ok and args.ids_out:
        with open(args.ids_out, "a") as f:
            f.write(control_id + "\n")
    return ok


def cmd_journal(args):
    with open(args.ids) as f:
        ids = [line.strip() for line in f if line.strip()]
    counts = {}
    with open(args.journal) as f:
        for line in f:
            entry = json.loads(line)
            counts[entry.get("control_id")] = counts.get(entry.get("control_id"), 0) + 1
    ok = bool(ids)
    if not ids:
        print("  FAIL no accepted control ids to look for")
    for control_id in ids:
        n = counts.get(control_id, 0)
        if n != 1:
            print(f"  FAIL {control_id}: {n} journal entries, expected exactly 1")
            ok = False
    if ok:
        print(f"  ok   all {len(ids)} accepted control ids are in the journal exactly once ({sum(counts.values())} entries in all)")
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("codes")
    p.add_argument("--sent", required=True)
    p.add_argument("--acks", required=True)
    p.add_argument("--file", required=True)
    p.add_argument("--ids-out")
    p = sub.add_parser("hl7apy")
    p.add_argument("--sent", required=True)
    p.add_argument("--acks", required=True)
    p = sub.add_parser("garbage")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ids-out")
    p = sub.add_parser("journal")
    p.add_argument("--ids", required=True)
    p.add_argument("--journal", required=True)
    args = parser.parse_args()
    handler = {"codes": cmd_codes, "hl7apy": cmd_hl7apy, "garbage": cmd_garbage, "journal": cmd_journal}
    try:
        ok = handler[args.cmd](args)
    except Exception as e:  # a peer failing in an unexpected way is a failed check, with its reason
        print(f"  FAIL {args.cmd}: {type(e).__name__}: {e}")
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
