#!/usr/bin/env python3
"""An hl7apy 1.3.5 MLLPServer answering AA, for benches/compare.sh.

    hl7apy_server.py --port PORT --lifetime SECS [--host 127.0.0.1]

Bound to 127.0.0.1 only. Exits by itself after --lifetime seconds.

The handler does what hl7apy's documentation shows a handler doing: it
parses the incoming message with hl7apy (parse_message, find_groups=False,
tolerant) and answers an original-mode ACK with MSA-1 = AA and MSA-2 = the
message's MSH-10. Nothing is written to disk (not durable).

hl7apy's MLLPServer (a socketserver.ThreadingTCPServer: one thread per
connection) reads one frame byte by byte, answers it and closes the
connection: one message per TCP connection (see shared/research/peers.md).
"""
import argparse
import threading
import time

from hl7apy.mllp import AbstractErrorHandler, AbstractHandler, MLLPServer
from hl7apy.parser import parse_message

VT, FS, CR = "\x0b", "\x1c", "\r"


def ack(msh10, code, text=""):
    now = time.strftime("%Y%m%d%H%M%S")
    segs = [
        f"MSH|^~\\&|HL7APY|BENCH|||{now}||ACK|A{msh10}|P|2.5",
        f"MSA|{code}|{msh10}" + (f"|{text}" if text else ""),
    ]
    return VT + CR.join(segs) + CR + FS + CR


class AckHandler(AbstractHandler):
    def reply(self):
        msg = parse_message(self.incoming_message, find_groups=False)
        return ack(msg.msh.msh_10.value, "AA")


class ErrHandler(AbstractErrorHandler):
    def reply(self):
        # Best effort control id for the NAK: MSH-10 by plain splitting.
        first = self.incoming_message.split("\r", 1)[0]
        fields = first.split(first[3:4] or "|")
        msh10 = fields[9] if len(fields) > 9 else ""
        return ack(msh10, "AR", type(self.exc).__name__)


class BenchServer(MLLPServer):
    # listen() runs in the constructor: set these on the class.
    daemon_threads = True
    request_queue_size = 128


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--lifetime", type=float, default=60)
    ap.add_argument("--host", default="127.0.0.1", choices=["127.0.0.1"])
    args = ap.parse_args()
    # Handlers are keyed by exact MSH-9; the bench sends the ADT fixture.
    handlers = {
        "ADT^A01^ADT_A01": (AckHandler,),
        "ADT^A01": (AckHandler,),
        "ORU^R01^ORU_R01": (AckHandler,),
        "ORU^R01": (AckHandler,),
        "ERR": (ErrHandler,),
    }
    server = BenchServer(args.host, args.port, handlers)
    timer = threading.Timer(args.lifetime, server.shutdown)
    timer.daemon = True
    timer.start()
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
