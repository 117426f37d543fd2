#!/usr/bin/env python3
"""Memory figures for the README (not run by CI): server RSS with 1,000 idle
MLLP connections, and peak RSS growth while one ~16 MB ORU (an embedded
base64 PDF) is received, journaled and acknowledged.

    python3 scripts/memory.py [path/to/recordhub]

Starts the release binary on free loopback ports with a temporary data dir;
reads VmRSS/VmHWM from /proc; talks only to 127.0.0.1."""
import os, socket, subprocess, sys, tempfile, time

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/recordhub"

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])  # kB
    return 0

def start(data):
    port, http = free_port(), free_port()
    env = dict(os.environ, RUST_LOG="warn")
    p = subprocess.Popen([BIN, "serve", "--listen", f"127.0.0.1:{port}", "--http", f"127.0.0.1:{http}", "--data", data],
                         env=env, stderr=subprocess.DEVNULL)
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close(); break
        except OSError:
            time.sleep(0.02)
    return p, port

def call(sock, msg):
    sock.sendall(b"\x0b" + msg + b"\x1c\x0d")
    buf = b""
    while not buf.endswith(b"\x1c\x0d"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf

ADT = open("fixtures/adt-a01.hl7", "rb").read()

with tempfile.TemporaryDirectory() as d:
    p, port = start(d + "/data")
    try:
        s = socket.create_connection(("127.0.0.1", port)); call(s, ADT); s.close()
        time.sleep(0.3)
        base = status(p.pid, "VmRSS")
        # From 16 loopback addresses: one address may hold at most 64 connections.
        conns = [socket.create_connection(("127.0.0.1", port), source_address=(f"127.0.0.{2 + i % 16}", 0)) for i in range(1000)]
        time.sleep(1.0)
        idle = status(p.pid, "VmRSS")
        print(f"idle connections: 1000; server RSS {idle/1024:.1f} MiB (before: {base/1024:.1f} MiB; +{(idle-base)/1000:.1f} kB per connection)")
        for c in conns:
            c.close()
        time.sleep(0.5)
        # One ~16 MB ORU with an embedded base64 PDF (OBX-5 ED).
        body = (b"JVBERi0xLjQK" * 1_400_000)[:16_000_000]
        oru = (b"MSH|^~\\&|LAB|RJ1|RECORDHUB|LCR|20261121090000||ORU^R01^ORU_R01|BIG1|P|2.5\r"
               b"PID|1||9434765919^^^NHS^NH\rOBR|1||FL99^LAB|PDF^Report^L|||20261121085000|||||||||||||||20261121090000|||F\r"
               b"OBX|1|ED|PDF^Report^L||^application^pdf^Base64^" + body + b"||||||F\r")
        hwm0 = status(p.pid, "VmHWM")
        rss0 = status(p.pid, "VmRSS")
        s = socket.create_connection(("127.0.0.1", port))
        ack = call(s, oru)
        s.close()
        time.sleep(0.3)
        hwm1 = status(p.pid, "VmHWM")
        growth = (hwm1 - max(hwm0, rss0)) * 1024
        print(f"one ORU of {len(oru)/1e6:.1f} MB: ACK {ack[ack.find(b'MSA'):ack.find(b'MSA')+20]!r}; "
              f"peak RSS growth {growth/1e6:.1f} MB = {growth/len(oru):.2f}x the frame")
    finally:
        p.terminate(); p.wait(timeout=30)
