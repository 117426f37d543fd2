#!/usr/bin/env bash
# Seeds fuzz/corpus/<target>/ from fixtures/ (and ../shared/corpus/public when
# it is beside the checkout): one file per message for hl7_parse and
# pipeline, the same framed for mllp_codec, and every mapping path for
# mapping_path. Idempotent; libFuzzer adds what it finds.
set -euo pipefail
cd "$(dirname "$0")"
root=..
mkdir -p corpus/hl7_parse corpus/pipeline corpus/mllp_codec corpus/mapping_path
python3 - "$root" <<'PY'
import hashlib, os, pathlib, re, sys
root = pathlib.Path(sys.argv[1])
sources = [root / "fixtures", root / "../shared/corpus/public"]
def put(target, data):
    name = hashlib.sha1(data).hexdigest()[:16]
    (pathlib.Path("corpus") / target / name).write_bytes(data)
n = 0
for src in sources:
    if not src.is_dir():
        continue
    for f in sorted(src.rglob("*")):
        if f.suffix not in (".hl7", ".txt") or not f.is_file():
            continue
        text = f.read_bytes().replace(b"\r\n", b"\r").replace(b"\n", b"\r")
        for msg in re.split(rb"(?=MSH)", text):
            msg = msg.strip(b"\x0b\x1c")
            if not msg.startswith(b"MSH"):
                continue
            put("hl7_parse", msg)
            put("pipeline", msg)
            put("mllp_codec", b"\x07\x0b" + msg + b"\x1c\r")
            n += 1
for f in sorted((root / "mappings").glob("*.toml")):
    for p in re.findall(r'"([A-Z][A-Z0-9]{2}-[^"]*)"', f.read_text()):
        put("mapping_path", p.encode())
print(f"seeded {n} messages")
PY
