#!/usr/bin/env python3
"""MLLP load with one TCP connection per message, for benches/compare.sh.

    conn_per_msg_client.py --to 127.0.0.1:PORT --connections 4 --messages 2000
                           [--max-seconds 5] [--timeout 10] FILE

hl7apy's MLLPServer answers one message per TCP connection and then closes
it, so `recordhub load` (persistent connections) cannot drive it. This
client is run, the same way, against hl7apy and against recordhub, so the
two figures compare like with like. Each of --connections threads, in
lockstep: connect, send one framed message, read its ACK up to FS CR,
close. MSH-10 is made unique per message (`<id>-<run>-P<thread>-<n>`, as
`recordhub load` does) so recordhub never answers from its duplicate
table. Latency is from connect() to the whole ACK (so it includes the TCP
handshake). After --max-seconds no new message is started; the
messages/s is of what was done. Prints a JSON summary shaped like
`recordhub load`'s. Only 127.0.0.1 is accepted as the host.
"""
import argparse
import json
import socket
import sys
import threading
import time

VT, FS, CR = b"\x0b", b"\x1c", b"\r"


def template(path):
    data = open(path, "rb").read()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    data = data.replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    msh_end = data.find(CR)
    msh = data[:msh_end]
    sep = msh[3:4]
    fields = msh.split(sep)
    if not msh.startswith(b"MSH") or len(fields) < 10:
        sys.exit(f"{path}: no MSH-10")
    return fields, sep, data[msh_end:]


def frame(fields, sep, rest, control_id):
    f = list(fields)
    f[9] = control_id
    return VT + sep.join(f) + rest + FS + CR


def msa(ack):
    for seg in ack.strip(VT + FS + CR).split(CR):
        if seg.startswith(b"MSA"):
            parts = seg.split(seg[3:4] or b"|")
            return (parts[1] if len(parts) > 1 else b"").decode(), (parts[2] if len(parts) > 2 else b"")
    return None, None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--to", required=True)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--max-seconds", type=float, default=5.0)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("file")
    args = ap.parse_args()
    host, port = args.to.rsplit(":", 1)
    if host != "127.0.0.1":
        sys.exit("only 127.0.0.1 is allowed")
    port = int(port)
    fields, sep, rest = template(args.file)
    run = format(int(time.time() * 1000) & 0xFFFFFFF, "x")
    lock = threading.Lock()
    state = {"next": 0, "sent": 0, "codes": {}, "errors": 0, "timeouts": 0, "lat": []}
    start = time.perf_counter()
    deadline = start + args.max_seconds

    def worker(t):
        n = 0
        while True:
            with lock:
                if state["next"] >= args.messages or time.perf_counter() >= deadline:
                    return
                state["next"] += 1
            cid = fields[9] + f"-{run}-P{t}-{n}".encode()
            n += 1
            payload = frame(fields, sep, rest, cid)
            t0 = time.perf_counter()
            try:
                with socket.create_connection((host, port), timeout=args.timeout) as s:
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    s.sendall(payload)
                    with lock:
                        state["sent"] += 1
                    buf = b""
                    while not buf.endswith(FS + CR):
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        buf += chunk
                took = time.perf_counter() - t0
                code, acked = msa(buf)
                with lock:
                    if code is None or acked != cid:
                        state["errors"] += 1
                    else:
                        state["codes"][code] = state["codes"].get(code, 0) + 1
                        state["lat"].append(int(took * 1e6))
            except socket.timeout:
                with lock:
                    state["timeouts"] += 1
            except OSError:
                with lock:
                    state["errors"] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.connections)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - start
    lat = sorted(state["lat"])

    def rank(p):
        if not lat:
            return 0
        i = min(max(int(-(-p * len(lat) // 1)), 1), len(lat)) - 1
        return lat[i]

    print(json.dumps({
        "sent": state["sent"],
        "acked_by_code": state["codes"],
        "timeouts": state["timeouts"],
        "errors": state["errors"],
        "elapsed_secs": elapsed,
        "messages_per_sec": len(lat) / elapsed if elapsed > 0 else 0.0,
        "latency_us": {"p50": rank(0.50), "p90": rank(0.90), "p99": rank(0.99), "max": lat[-1] if lat else 0},
        "stopped_at_max_seconds": state["next"] < args.messages,
    }, indent=2))


if __name__ == "__main__":
    main()
