// Echo check of wsecho's permessage-deflate with the Node `ws` client, `perMessageDeflate: true`
// (its defaults: offers `permessage-deflate; client_max_window_bits`, compresses messages of at
// least 1 KiB, so the 20-byte ones go out uncompressed). Run by scripts/clients.sh.
//
// Usage: node node_client.js WS_DIR WS_URL   (WS_DIR: where `ws` is installed, node_modules/ws)
//        node node_client.js WS_DIR WSS_URL CA_FILE
//
// Sends text and binary messages of 20 B, 1 KiB and 1 MiB (compressible), one 64 KiB random
// binary message and a text and a binary message of 3 fragments of 100 KiB, one at a time, then
// all at once (pipelined), and checks every echo byte for byte.
// Asserts that permessage-deflate was negotiated (`ws.extensions` and the 101's header) and that
// an echo is compressed exactly when its message was sent compressed, with at least the 1 KiB and
// 1 MiB messages compressed (calls of ws's PerMessageDeflate compress/decompress counted). Prints
// one JSON line and exits 0 only when ok.
//
// Over wss (CA_FILE given): `ca:` that certificate only (Node's defaults otherwise: TLS 1.3,
// hostname checked), ALPN http/1.1 offered; asserts TLS 1.3 and ALPN http/1.1 ("tls" in the
// JSON). Then resumption: the session of that connection (`getSession()`, the ticket the server
// sent) passed as `session:` to a second WebSocket, whose socket must report isSessionReused()
// and echo 2 messages byte for byte ("resumed").
'use strict';
const path = require('path');
const dir = path.resolve(process.argv[2]);
const url = process.argv[3];
const ca = process.argv[4] ? require('fs').readFileSync(process.argv[4]) : null;
const tlsOpts = ca ? { ca, ALPNProtocols: ['http/1.1'] } : {};
const WebSocket = require(path.join(dir, 'node_modules', 'ws'));
const PMD = require(path.join(dir, 'node_modules', 'ws', 'lib', 'permessage-deflate.js'));
const version = require(path.join(dir, 'node_modules', 'ws', 'package.json')).version;

const counts = { tx_compressed: 0, rx_compressed: 0 };
const compress = PMD.prototype.compress;
const decompress = PMD.prototype.decompress;
PMD.prototype.compress = function (data, fin, cb) {
  if (fin) counts.tx_compressed++;
  return compress.call(this, data, fin, cb);
};
PMD.prototype.decompress = function (data, fin, cb) {
  if (fin) counts.rx_compressed++;
  return decompress.call(this, data, fin, cb);
};

// xorshift32, so that runs are repeatable.
let seed = 7692;
function rnd() {
  seed ^= seed << 13; seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5; seed >>>= 0;
  return seed / 4294967296;
}
const WORDS = ['wsecho', 'permessage-deflate', 'héllo', 'naïve', '€uro', '日本語', '😀', 'echo', 'frame', 'Ωmega'];
function text(n) {
  const parts = [];
  let size = 0;
  for (;;) {
    const w = WORDS[Math.floor(rnd() * WORDS.length)] + (rnd() < 0.3 ? String(Math.floor(rnd() * 10000)) : '') + ' ';
    const b = Buffer.byteLength(w);
    if (size + b > n) break;
    parts.push(w);
    size += b;
  }
  return parts.join('') + 'x'.repeat(n - size);
}
function binary(n, alphabet) {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = alphabet ? alphabet[Math.floor(rnd() * alphabet.length)] : Math.floor(rnd() * 256);
  return b;
}
const msgs = [];
for (const n of [20, 1024, 1 << 20]) {
  msgs.push(['text', text(n)]);
  msgs.push(['binary', binary(n, [0, 1, 0xfe, 0x41])]);
}
msgs.push(['binary-random', binary(64 << 10, null)]);
// Fragmented: sent as one message in 3 frames of 100 KiB (ws compresses them as one stream).
msgs.push(['text-fragmented', [0, 1, 2].map(() => text(100 << 10))]);
msgs.push(['binary-fragmented', [0, 1, 2].map(() => binary(100 << 10, [0, 1, 0xfe, 0x41]))]);
const whole = (m) => (Array.isArray(m) ? (typeof m[0] === 'string' ? m.join('') : Buffer.concat(m)) : m);
const size = (m) => (typeof whole(m) === 'string' ? Buffer.byteLength(whole(m)) : whole(m).length);
const expectCompressed = msgs.filter(([, m]) => size(m) >= 1024).length * 2;
function send(m) {
  if (!Array.isArray(m)) return ws.send(m);
  m.forEach((p, i) => ws.send(p, { fin: i === m.length - 1 }));
}

const res = { ok: false, version, extensions: null, header: null, messages: 0, payload_bytes: 0, error: null };
const ws = new WebSocket(url, { perMessageDeflate: true, maxPayload: 0, handshakeTimeout: 10000, ...tlsOpts });
const queue = [];
let waiter = null;
ws.on('upgrade', (r) => { res.header = r.headers['sec-websocket-extensions'] || null; });
ws.on('message', (data, isBinary) => {
  queue.push([data, isBinary]);
  if (waiter) { const w = waiter; waiter = null; w(); }
});
function recv() {
  if (queue.length) return Promise.resolve(queue.shift());
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no echo within 20 s')), 20000);
    waiter = () => { clearTimeout(t); resolve(queue.shift()); };
  });
}
function check(kind, part, [data, isBinary]) {
  const m = whole(part);
  const isText = typeof m === 'string';
  if (isText === isBinary) throw new Error(`${kind} ${size(m)}: echo has the wrong opcode`);
  const ok = isText ? data.toString('utf8') === m && Buffer.compare(data, Buffer.from(m)) === 0 : Buffer.compare(data, m) === 0;
  if (!ok) throw new Error(`${kind} ${size(m)}: echo differs (${data.length} bytes)`);
  res.messages++;
  res.payload_bytes += size(m);
}
function tlsInfo(sock) {
  const got = `${sock.getProtocol()} ${sock.getCipher().standardName} ALPN ${sock.alpnProtocol}`;
  if (sock.getProtocol() !== 'TLSv1.3' || sock.alpnProtocol !== 'http/1.1') throw new Error(`negotiated ${got}`);
  return got;
}
// A second connection resuming `session`; 2 echoes over it.
function resume(session) {
  return new Promise((resolve, reject) => {
    const w = new WebSocket(url, { perMessageDeflate: true, handshakeTimeout: 10000, ...tlsOpts, session });
    const sent = ['resumed héllo', Buffer.alloc(2048, 0x5a)];
    const got = [];
    const t = setTimeout(() => reject(new Error('resumed connection: timed out (10 s)')), 10000);
    w.on('error', (e) => reject(new Error(`resumed connection: ${e.message}`)));
    w.on('open', () => {
      try {
        if (!w._socket.isSessionReused()) throw new Error('session not resumed (isSessionReused() false)');
        res.resumed = `isSessionReused, ${tlsInfo(w._socket)}`;
      } catch (e) { clearTimeout(t); reject(e); w.terminate(); return; }
      for (const m of sent) w.send(m);
    });
    w.on('message', (data, isBinary) => {
      got.push([data, isBinary]);
      if (got.length < sent.length) return;
      clearTimeout(t);
      try {
        sent.forEach((m, i) => check('resumed', m, got[i]));
      } catch (e) { reject(e); w.terminate(); return; }
      res.resumed += ', 2 echoes ok';
      w.close(1000);
      w.on('close', () => resolve());
    });
  });
}
function finish(code) {
  Object.assign(res, counts);
  console.log(JSON.stringify(res));
  process.exit(code);
}
const timer = setTimeout(() => { res.error = 'timed out (45 s)'; finish(1); }, 45000);
ws.on('error', (e) => { res.error = `error: ${e.message}`; finish(1); });
ws.on('close', (code, reason) => { if (!res.ok) { res.error = res.error || `closed ${code} ${reason}`; finish(1); } });
ws.on('open', async () => {
  try {
    res.extensions = ws.extensions;
    if (ca) res.tls = tlsInfo(ws._socket);
    if (!ws.extensions.includes('permessage-deflate') || !(res.header || '').includes('permessage-deflate')) {
      throw new Error(`permessage-deflate not negotiated (${ws.extensions} / ${res.header})`);
    }
    for (const [kind, m] of msgs) {
      send(m);
      check(kind, m, await recv());
    }
    for (const [, m] of msgs) send(m);
    for (const [kind, m] of msgs) check(`pipelined ${kind}`, m, await recv());
    if (counts.rx_compressed !== counts.tx_compressed) {
      throw new Error(`${counts.tx_compressed} messages sent compressed, ${counts.rx_compressed} echoes came back compressed`);
    }
    if (counts.tx_compressed < expectCompressed) {
      throw new Error(`only ${counts.tx_compressed} messages sent compressed, expected at least ${expectCompressed}`);
    }
    if (ca) {
      const session = ws._socket.getSession();
      if (!session) throw new Error('no TLS session to resume (getSession() gave nothing)');
      await resume(session);
    }
    res.ok = true;
    clearTimeout(timer);
    ws.close(1000);
    setTimeout(() => finish(0), 2000).unref();
    ws.on('close', () => finish(0));
  } catch (e) {
    res.error = e.message;
    finish(1);
  }
});
