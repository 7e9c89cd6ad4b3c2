"""Echo check of wsecho's permessage-deflate with the Python `websockets` client (its own
compression, on by default: it offers `permessage-deflate; client_max_window_bits` and compresses
every message it sends). Run by scripts/clients.sh inside a venv that has `websockets`.

Usage: py_client.py WS_URL

Sends text and binary messages of 20 B, 1 KiB and 1 MiB (compressible: words with multi-byte
characters, bytes from a 4-symbol alphabet), one 64 KiB random binary message and a text and a
binary message of 3 fragments of 100 KiB each (one compressed stream over 3 frames), first one at a
time, then all at once (pipelined), and checks every echo byte for byte. Asserts that
permessage-deflate was negotiated (the 101's Sec-WebSocket-Extensions and the connection's
extension objects) and that every echo came back compressed (RSV1 on its first frame, counted by
wrapping the library's PerMessageDeflate.decode). Prints one JSON line:
{"ok", "extensions", "version", "messages", "payload_bytes", "rx_compressed", "tx_compressed",
 "error"} and exits 0 only when ok.
"""

import asyncio
import json
import random
import sys

import websockets
from websockets.asyncio.client import connect
from websockets.extensions import permessage_deflate as pmd
from websockets.frames import Opcode

COUNTS = {"rx_compressed": 0, "tx_compressed": 0}
_decode = pmd.PerMessageDeflate.decode
_encode = pmd.PerMessageDeflate.encode


def decode(self, frame, **kw):
    if frame.opcode in (Opcode.TEXT, Opcode.BINARY) and frame.rsv1:
        COUNTS["rx_compressed"] += 1
    return _decode(self, frame, **kw)


def encode(self, frame):
    out = _encode(self, frame)
    if out.opcode in (Opcode.TEXT, Opcode.BINARY) and out.rsv1:
        COUNTS["tx_compressed"] += 1
    return out


pmd.PerMessageDeflate.decode = decode
pmd.PerMessageDeflate.encode = encode

WORDS = ["wsecho", "permessage-deflate", "héllo", "naïve", "€uro", "日本語", "😀", "echo", "frame", "Ωmega"]


def text(n, rng):
    parts, size = [], 0
    while True:
        w = rng.choice(WORDS) + (str(rng.randrange(10000)) if rng.random() < 0.3 else "") + " "
        b = len(w.encode())
        if size + b > n:
            break
        parts.append(w)
        size += b
    return "".join(parts) + "x" * (n - size)


def messages():
    rng = random.Random(7692)
    out = []
    for n in (20, 1024, 1 << 20):
        out.append(("text", text(n, rng)))
        out.append(("binary", bytes(rng.choices(b"\x00\x01\xfeA", k=n))))
    out.append(("binary-random", rng.randbytes(64 << 10)))
    # Fragmented (a list is sent as one message in several frames, each compressed with the
    # message's one compressor): 3 x 100 KiB.
    out.append(("text-fragmented", [text(100 << 10, rng) for _ in range(3)]))
    out.append(("binary-fragmented", [bytes(rng.choices(b"\x00\x01\xfeA", k=100 << 10)) for _ in range(3)]))
    return out


def whole(m):
    """The message a (possibly fragmented) send should come back as."""
    if isinstance(m, list):
        return "".join(m) if isinstance(m[0], str) else b"".join(m)
    return m


def size(m):
    m = whole(m)
    return len(m.encode() if isinstance(m, str) else m)


async def main(url):
    msgs = messages()
    res = {"ok": False, "version": websockets.__version__, "extensions": None, "messages": 0,
           "payload_bytes": 0, "error": None}
    try:
        async with connect(url, max_size=None, open_timeout=10, close_timeout=5) as ws:
            res["extensions"] = ws.response.headers.get("Sec-WebSocket-Extensions")
            names = [e.name for e in ws.protocol.extensions]
            if "permessage-deflate" not in names or "permessage-deflate" not in (res["extensions"] or ""):
                raise AssertionError(f"permessage-deflate not negotiated (header {res['extensions']!r}, {names})")
            # One at a time.
            for kind, m in msgs:
                await ws.send(m)
                e = await asyncio.wait_for(ws.recv(), 20)
                if e != whole(m):
                    raise AssertionError(f"{kind} {size(m)}: echo differs (got {type(e).__name__} of {len(e)})")
                res["messages"] += 1
                res["payload_bytes"] += size(m)
            # Pipelined: all sent before any echo is read.
            for _, m in msgs:
                await ws.send(m)
            for kind, m in msgs:
                e = await asyncio.wait_for(ws.recv(), 20)
                if e != whole(m):
                    raise AssertionError(f"pipelined {kind} {size(m)}: echo differs")
                res["messages"] += 1
                res["payload_bytes"] += size(m)
        if COUNTS["tx_compressed"] != res["messages"]:
            raise AssertionError(f"sent {COUNTS['tx_compressed']} of {res['messages']} messages compressed")
        if COUNTS["rx_compressed"] != res["messages"]:
            raise AssertionError(f"{COUNTS['rx_compressed']} of {res['messages']} echoes came back compressed")
        res["ok"] = True
    except Exception as e:  # noqa: BLE001 - reported, exit status says it
        res["error"] = f"{type(e).__name__}: {e}"
    res.update(COUNTS)
    print(json.dumps(res))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1])))
