#!/usr/bin/env python3
"""Checks for scripts/interop.sh, run with the peers' venv python.

    peer_check.py codes   --sent X.mllp --acks X.out --file NAME [--ids-out F]
        python-hl7's mllp_send output (raw ACK frames) against what was sent:
        one ACK per message, MSA-2 = the sent MSH-10, and MSA-1 as expected:
        AA/CA for ADT, ORU and MDM messages; not checked (and printed as
        such) for other types or in a file whose name holds "invalid" or
        "error". Appends the
        control ids that got AA/CA to --ids-out.
    peer_check.py hl7apy  --sent X.mllp --acks X.out
        hl7apy.parser.parse_message parses every ACK, and its MSA-2 equals
        the sent MSH-10: an independent check that the ACKs are well-formed.
    peer_check.py garbage --port P [--ids-out F]
        On ONE connection (python-hl7's hl7.client.MLLPClient): a frame that
        is not HL7 gets AR (or CR), then a valid ADT^A01 on the same
        connection gets AA; both ACKs also go through hl7apy.
    peer_check.py journal --ids F --journal J
        Every accepted message (control ids in F) has exactly one accepted
        entry in `recordhub journal` output J.
    peer_check.py send-enhanced --port P [--policy-only] FILE
        For scripts/corpus.sh (standard library only): sends FILE's messages
        on one connection and honours MSH-15 (table 0155, hl7-ack.md "Which
        acknowledgement mode"): NE must get no ACK, ER only CE/CR, SU only
        CA, AL (or empty) an ACK. Prints `<control id> <code> <text>` or
        `<control id> none MSH-15=..` per message, like `recordhub send`, and
        `<control id> -- <problem>` on a failure.

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
    base = os.path.basename(name).lower()
    if "invalid" in base or "error" in base:
        return "any", None
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
        note = "; ".join(problems) or ("code not checked: not an ADT/ORU/MDM, or a file of errors" if kind == "any" else f"expected {kind}")
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
    # A control id may be reused by different messages (the engine journals
    # each: "sender's counter reset"), so compare counts: one accepted entry
    # per accepted send.
    sent = {}
    for control_id in ids:
        sent[control_id] = sent.get(control_id, 0) + 1
    counts = {}
    with open(args.journal) as f:
        for line in f:
            entry = json.loads(line)
            if entry.get("ack_code") in ACCEPT:
                counts[entry.get("control_id")] = counts.get(entry.get("control_id"), 0) + 1
    ok = bool(ids)
    if not ids:
        print("  FAIL no accepted control ids to look for")
    for control_id, n_sent in sorted(sent.items()):
        n = counts.get(control_id, 0)
        if n != n_sent:
            print(f"  FAIL {control_id}: accepted {n_sent} time(s), {n} accepted journal entries")
            ok = False
    if ok:
        print(f"  ok   all {len(ids)} accepted control ids are in the journal exactly once ({sum(counts.values())} entries in all)")
    return ok


def recv_frame_within(sock, seconds):
    """One ACK frame, or None when nothing starts arriving within `seconds`."""
    import socket

    sock.settimeout(seconds)
    data = b""
    try:
        while not data.endswith(FS + CR):
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            data += chunk
            sock.settimeout(30)  # the rest of a started frame
    except socket.timeout:
        if data:
            raise ConnectionError(f"half an ACK ({len(data)} bytes), then nothing")
        return None
    return frames(data)[-1]


def ack_policy(fields):
    """MSH-15 in enhanced mode (MSH-15 or MSH-16 valued), else AL (original mode)."""
    msh15 = fields[14].strip() if len(fields) > 14 else ""
    msh16 = fields[15].strip() if len(fields) > 15 else ""
    if not (msh15 or msh16):
        return "AL"
    return msh15 if msh15 in ("AL", "NE", "ER", "SU") else "AL"


def cmd_send_enhanced(args):
    import socket

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from frame import split_messages

    with open(args.file, "rb") as f:
        messages = split_messages(f.read())
    if args.policy_only:
        print(" ".join(sorted({ack_policy(msh_fields(m)) for m in messages})))
        return True
    ok = True
    with socket.create_connection(("127.0.0.1", args.port), timeout=10) as sock:
        for message in messages:
            fields = msh_fields(message)
            control_id = fields[9] if len(fields) > 9 else ""
            policy = ack_policy(fields)
            sock.sendall(VT + message + FS + CR)
            ack = recv_frame_within(sock, 30 if policy == "AL" else args.quiet_wait)
            if ack is None:
                if policy == "AL":
                    print(f"{control_id} -- no ACK within 30 s")
                    return False
                print(f"{control_id} none MSH-15={policy}")
                continue
            got = msa(ack)
            code, acked_id = got if got else ("??", "")
            allowed = {"NE": set(), "ER": REJECT, "SU": ACCEPT, "AL": ACCEPT | REJECT}[policy]
            if code not in allowed or acked_id != control_id:
                print(f"{control_id} -- ACK {code} for {acked_id!r} breaks MSH-15={policy}")
                ok = False
            else:
                print(f"{control_id} {code} MSH-15={policy}")
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
    p = sub.add_parser("send-enhanced")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--quiet-wait", type=float, default=2.0, help="seconds to wait for an ACK that may be suppressed")
    p.add_argument("--policy-only", action="store_true", help="print the MSH-15 policies in FILE, send nothing")
    p.add_argument("file")
    args = parser.parse_args()
    handler = {
        "codes": cmd_codes,
        "hl7apy": cmd_hl7apy,
        "garbage": cmd_garbage,
        "journal": cmd_journal,
        "send-enhanced": cmd_send_enhanced,
    }
    try:
        ok = handler[args.cmd](args)
    except Exception as e:  # a peer failing in an unexpected way is a failed check, with its reason
        print(f"  FAIL {args.cmd}: {type(e).__name__}: {e}")
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
