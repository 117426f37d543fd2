#!/usr/bin/env python3
"""Frame HL7 files for MLLP: writes VT <message> FS CR to stdout.

    frame.py --split FILE...   one frame per message (what scripts/interop.sh uses)
    frame.py FILE...           one frame per file, bytes as they are

--split follows the rules of recordhub's own splitter (src/mllp/split.rs),
so python-hl7's `mllp_send` (without --loose, which needs framed input)
sends exactly the messages `recordhub send` would:
- a file already holding MLLP framing (a VT byte) is cut into its frames;
- otherwise each message starts at a line beginning with MSH; LF, CRLF and
  CR all become the segment terminator CR; blank lines and batch envelope
  lines (FHS, BHS, BTS, FTS) are dropped; a UTF-8 BOM is dropped.
Standard library only.
"""
import sys

VT, FS, CR = b"\x0b", b"\x1c", b"\r"
BATCH = (b"FHS", b"BHS", b"BTS", b"FTS")


def is_segment(line, seg_id):
    # A segment id is followed by the field separator, never alphanumeric.
    return line.startswith(seg_id) and (len(line) == 3 or not line[3:4].isalnum())


def split_frames(data):
    messages = []
    for chunk in data.split(VT)[1:]:
        end = chunk.find(FS)
        messages.append(chunk if end < 0 else chunk[:end])
    return messages


def split_lines(data):
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    messages, current = [], []
    for line in data.replace(b"\r\n", b"\r").replace(b"\n", b"\r").split(CR):
        if not line.strip(b" \t\x1c") or any(is_segment(line, b) for b in BATCH):
            continue
        if is_segment(line, b"MSH") and current:
            messages.append(b"".join(current))
            current = []
        current.append(line + CR)
    if current:
        messages.append(b"".join(current))
    return messages


def split_messages(data):
    return split_frames(data) if VT in data else split_lines(data)


def main(argv):
    split = "--split" in argv
    files = [a for a in argv if a != "--split"]
    if not files:
        sys.stderr.write("usage: frame.py [--split] FILE...\n")
        return 2
    out = sys.stdout.buffer
    for path in files:
        with open(path, "rb") as f:
            data = f.read()
        for message in split_messages(data) if split else [data]:
            out.write(VT + message + FS + CR)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
