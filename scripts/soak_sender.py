#!/usr/bin/env python3
"""The soak test's senders (scripts/soak.sh): CONNS threads, each a blocking
MLLP client offering RATE/CONNS messages per second until DEADLINE (unix
seconds). Every message has a unique control id s<conn>n<n>; an AA or CA is
appended to OUT/acked-<conn>.txt at once (so a kill of this process loses
nothing already noted). When the engine goes away (kill -9), the sender
reconnects and resends the unanswered message with the same bytes, as a real
sender does: a retransmission the engine must not journal twice.

    soak_sender.py HOST PORT CONNS RATE DEADLINE OUT

Prints one JSON summary. Standard library only.
"""
import json
import os
import socket
import sys
import threading
import time

VT, FS, CR = b"\x0b", b"\x1c", b"\r"
NHS = ["9434765919", "9434765927", "9434765935", "9434765943"]


def message(conn, n):
    cid = f"s{conn}n{n}"
    nhs = NHS[conn % len(NHS)]
    return cid, (
        f"MSH|^~\\&|SOAK|RJ1|RECORDHUB|LCR|20261121083000||ADT^A01^ADT_A01|{cid}|P|2.4\r"
        f"EVN|A01|20261121083000\r"
        f"PID|1||{nhs}^^^NHS^NH~RJ1-{nhs}^^^RJ1^MR||SOAK^TEST^^^MR||19700101|M\r"
        f"PV1|1|I|RJ1WARD1^BED1||||C123^JONES^ANN||||||||||||{cid}\r"
    ).encode()


def read_ack(sock, buf):
    while True:
        end = buf.find(FS + CR)
        if end >= 0:
            start = buf.find(VT)
            ack = bytes(buf[start + 1:end])
            del buf[:end + 2]
            return ack
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf.extend(chunk)


def msa(ack):
    for seg in ack.split(CR):
        if seg.startswith(b"MSA"):
            f = seg.split(ack[3:4])
            return f[1].decode(errors="replace"), f[2].decode(errors="replace") if len(f) > 2 else ""
    return "??", ""


def sender(host, port, conn, interval, deadline, out, stats, lock):
    acked = open(os.path.join(out, f"acked-{conn}.txt"), "a", buffering=1)
    n, sock, buf, pending = 0, None, bytearray(), None
    next_at = time.monotonic()
    while time.time() < deadline:
        if pending is None:
            now = time.monotonic()
            if now < next_at:
                time.sleep(next_at - now)
            next_at += interval
            pending = message(conn, n)
            n += 1
        cid, body = pending
        try:
            if sock is None:
                sock = socket.create_connection((host, port), timeout=5)
                sock.settimeout(30)
                buf = bytearray()
                with lock:
                    stats["connects"] += 1
            sock.sendall(VT + body + FS + CR)
            code, echoed = msa(read_ack(sock, buf))
        except OSError:
            # The engine is down (kill -9) or restarting: resend the same bytes.
            if sock is not None:
                sock.close()
            sock = None
            with lock:
                stats["resends"] += 1
            time.sleep(0.1)
            continue
        with lock:
            stats["codes"][code] = stats["codes"].get(code, 0) + 1
        if echoed != cid:
            with lock:
                stats["mismatched"] += 1
        elif code in ("AA", "CA"):
            acked.write(cid + "\n")
        pending = None
    if sock is not None:
        sock.close()
    acked.close()


def main():
    host, port, conns, rate, deadline, out = sys.argv[1:7]
    port, conns, rate, deadline = int(port), int(conns), float(rate), float(deadline)
    stats = {"codes": {}, "connects": 0, "resends": 0, "mismatched": 0}
    lock = threading.Lock()
    threads = [
        threading.Thread(target=sender, args=(host, port, c, conns / rate, deadline, out, stats, lock))
        for c in range(conns)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
