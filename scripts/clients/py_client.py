"""Echo check of wsecho's permessage-deflate with the Python `websockets` client (its own
compression, on by default: it offers `permessage-deflate; client_max_window_bits` and compresses
every message it sends). Run by scripts/clients.sh inside a venv that has `websockets`.

Usage: py_client.py WS_URL
       py_client.py WSS_URL CA_FILE 1.2|1.3


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
import socket
import ssl
import sys
import urllib.parse

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


def tls_context(ca, version):
    ctx = ssl.create_default_context(cafile=ca)
    v = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[version]
    ctx.minimum_version = ctx.maximum_version = v
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def check_tls(so, version):
    """The negotiated parameters as one string; raises unless they are the ones asked for."""
    got = f"{so.version()} {so.cipher()[0]} ALPN {so.selected_alpn_protocol()}"
    if so.version() != "TLSv" + version or so.selected_alpn_protocol() != "http/1.1":
        raise AssertionError(f"negotiated {got}, wanted TLSv{version} with ALPN http/1.1")
    return got


def resume(url, ctx, session, version):
    """A second connection resuming `session`; 2 echoes over it. Returns a summary string, the
    messages and their bytes."""
    u = urllib.parse.urlsplit(url)
    from websockets.sync.client import connect as sync_connect

    raw = socket.create_connection((u.hostname, u.port), timeout=10)
    tls = ctx.wrap_socket(raw, server_hostname=u.hostname, session=session)
    if not tls.session_reused:
        tls.close()
        raise AssertionError(f"TLSv{version} session not resumed (session_reused False, ticket {session.has_ticket})")
    got = check_tls(tls, version)
    # The socket is already TLS: hand it to the client as a ws:// connection.
    with sync_connect(f"ws://{u.netloc}{u.path or '/'}", sock=tls, max_size=None, open_timeout=10,
                      close_timeout=5) as ws:
        sent = ("resumed héllo", bytes(range(256)) * 8)
        for m in sent:
            ws.send(m)
            if ws.recv(timeout=10) != m:
                raise AssertionError("echo differs on the resumed connection")
    return f"session_reused, {got}, 2 echoes ok", len(sent), sum(size(m) for m in sent)


async def main(url, ca=None, version=None):
    msgs = messages()
    res = {"ok": False, "version": websockets.__version__, "extensions": None, "messages": 0,
           "payload_bytes": 0, "error": None}
    kw, session = {}, None
    if ca:
        ctx = kw["ssl"] = tls_context(ca, version)
    try:
        async with connect(url, max_size=None, open_timeout=10, close_timeout=5, **kw) as ws:
            if ca:
                res["tls"] = check_tls(ws.transport.get_extra_info("ssl_object"), version)
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
            if ca:
                session = ws.transport.get_extra_info("ssl_object").session
        if COUNTS["tx_compressed"] != res["messages"]:
            raise AssertionError(f"sent {COUNTS['tx_compressed']} of {res['messages']} messages compressed")
        if COUNTS["rx_compressed"] != res["messages"]:
            raise AssertionError(f"{COUNTS['rx_compressed']} of {res['messages']} echoes came back compressed")
        if ca:
            res["resumed"], n, b = await asyncio.to_thread(resume, url, ctx, session, version)
            res["messages"] += n
            res["payload_bytes"] += b
        res["ok"] = True
    except Exception as e:  # noqa: BLE001 - reported, exit status says it
        res["error"] = f"{type(e).__name__}: {e}"
    res.update(COUNTS)
    print(json.dumps(res))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(*sys.argv[1:4])))
