"""Opens N WebSocket connections to wsecho and holds them, for scripts/deflate-memory.sh (Python
standard library only: asyncio, zlib; frames written by hand so that what each connection sends is
exactly known).

Usage: hold.py MODE PORT N READY_FILE [HOLD_SECONDS]

MODE:
  plain     no Sec-WebSocket-Extensions offer; the connection stays idle
  deflate   offers `permessage-deflate; client_max_window_bits` (what Chrome, Python websockets and
            Node ws offer); must be accepted; idle afterwards
  takeover  the same offer (so no *_no_context_takeover from the client) to a server with
            --deflate-context-takeover; the answer must not forbid context takeover; sends one
            compressed 1 KiB text message, checks its echo (inflated with the client's kept
            context), then stays idle with the server's states kept
  half      the same offer as deflate; sends the first half of one compressed text frame of ~40 KiB
            (payload) and stops there, so the server holds an unfinished compressed frame

When all N are open (and, for takeover, echoed) it writes one line to READY_FILE:
`ready N=<n> negotiated=<k> sent_bytes=<bytes written on all connections> ext=<the answer>`,
then holds them until killed (SIGTERM) or HOLD_SECONDS (default 300) have passed. On a failure
it writes `error <what>` to READY_FILE and exits 1. At most 256 connects are in flight at once.
"""

import asyncio
import base64
import os
import random
import signal
import sys
import zlib

MODE, PORT, N, READY = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
HOLD = float(sys.argv[5]) if len(sys.argv) > 5 else 300.0
OFFER = "permessage-deflate; client_max_window_bits"
TAIL = b"\x00\x00\xff\xff"
rng = random.Random(1)


def text(n):
    words = ["wsecho", "deflate", "héllo", "window", "frame", "€uro", "日本語", "inflate", "context"]
    out, size = [], 0
    while size < n:
        w = rng.choice(words) + str(rng.randrange(100000)) + " "
        out.append(w)
        size += len(w.encode())
    return "".join(out).encode()[:n].decode("utf-8", "ignore").encode()


def deflate(data, wbits=15):
    c = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[:-4]


def frame(payload, opcode=1, rsv1=True, fin=True):
    """A masked client frame (header and masked payload)."""
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        head = bytes([b0, 0x80 | n])
    elif n < 65536:
        head = bytes([b0, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([b0, 0x80 | 127]) + n.to_bytes(8, "big")
    key = os.urandom(4)
    k = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big") if n else b""
    return head + key + masked


# The half-sent frame: compressed text of ~40 KiB, the same bytes on every connection.
HALF_TEXT = text(160 << 10)
HALF_PAYLOAD = deflate(HALF_TEXT)
while len(HALF_PAYLOAD) > 44 << 10:
    HALF_TEXT = HALF_TEXT[: len(HALF_TEXT) * 9 // 10].decode("utf-8", "ignore").encode()
    HALF_PAYLOAD = deflate(HALF_TEXT)
HALF_FRAME = frame(HALF_PAYLOAD)
HALF_SENT = HALF_FRAME[: len(HALF_FRAME) // 2]
ONE_TEXT = text(1024)

conns = []
stats = {"negotiated": 0, "sent": 0, "ext": ""}


async def read_frame(r):
    h = await r.readexactly(2)
    n = h[1] & 0x7F
    if n == 126:
        n = int.from_bytes(await r.readexactly(2), "big")
    elif n == 127:
        n = int.from_bytes(await r.readexactly(8), "big")
    return h[0], await r.readexactly(n)


async def one(sem):
    async with sem:
        r, w = await asyncio.open_connection("127.0.0.1", PORT, limit=1 << 20)
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{PORT}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")
        if MODE != "plain":
            req += f"Sec-WebSocket-Extensions: {OFFER}\r\n"
        req = (req + "\r\n").encode()
        w.write(req)
        head = (await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 30)).decode("latin-1")
        if not head.startswith("HTTP/1.1 101"):
            raise RuntimeError(f"upgrade refused: {head.splitlines()[0]!r}")
        ext = ""
        for line in head.split("\r\n")[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == "sec-websocket-extensions":
                ext = v.strip()
        sent = len(req)
        if "permessage-deflate" in ext:
            stats["negotiated"] += 1
            stats["ext"] = ext
        if MODE in ("deflate", "takeover", "half") and "permessage-deflate" not in ext:
            raise RuntimeError("permessage-deflate not negotiated")
        if MODE == "takeover":
            if "client_no_context_takeover" in ext or "server_no_context_takeover" in ext:
                raise RuntimeError(f"context takeover refused: {ext}")
            f = frame(deflate(ONE_TEXT))
            w.write(f)
            sent += len(f)
            b0, payload = await asyncio.wait_for(read_frame(r), 30)
            if b0 & 0x40 == 0 or b0 & 0x8F != 0x81:
                raise RuntimeError(f"echo not one compressed text frame: first byte {b0:#x}")
            d = zlib.decompressobj(-15)
            if d.decompress(payload + TAIL) != ONE_TEXT:
                raise RuntimeError("echo differs")
        elif MODE == "half":
            w.write(HALF_SENT)
            sent += len(HALF_SENT)
        await w.drain()
        stats["sent"] += sent
        conns.append((r, w))


async def main():
    sem = asyncio.Semaphore(256)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        await asyncio.gather(*(one(sem) for _ in range(N)))
    except Exception as e:  # noqa: BLE001 - reported through READY
        with open(READY, "w") as f:
            f.write(f"error {type(e).__name__}: {e}\n")
        return 1
    with open(READY + ".tmp", "w") as f:
        f.write(f"ready N={len(conns)} negotiated={stats['negotiated']} sent_bytes={stats['sent']} "
                f"frame={len(HALF_FRAME) - len(HALF_PAYLOAD)}+{len(HALF_PAYLOAD)} ext={stats['ext']}\n")
    os.replace(READY + ".tmp", READY)
    try:
        await asyncio.wait_for(stop.wait(), HOLD)
    except asyncio.TimeoutError:
        pass
    for _, w in conns:
        w.transport.abort()
    return 0


sys.exit(asyncio.run(main()))
