'use strict';
// Plain `ws` 8 broadcast reference server for `sessionhost-load
// --protocol=ws` (bench/reference/README.md). Rooms are a Map from name to
// the set of its sockets; a publish is serialized once and sent to each
// member with one `send` per client, then acknowledged. It speaks
// sessionhost's JSON shapes so the load tool reads it the same way:
//   → {"op":"join","room":R,"ref":N}            ← {"op":"subscribed","room":R,"ref":N,"last_seq":0}
//   → {"op":"publish","room":R,"ref":N,"seq":S,"data":…}
//       members ← {"op":"event","room":R,"seq":S,"data":…}; producer ← {"op":"ack","ref":N,"seq":S}
// The seq is the producer's own (one producer per room). Nothing is
// persisted: an ack means "handed to the sockets", not "durable".
//
//   node ws-server.js [PORT]      (or PORT=…; 0 or nothing: any free port)
//
// Prints "listening on http://127.0.0.1:PORT" once ready; exits on SIGTERM.
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2] ?? process.env.PORT ?? 0);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`ws-server: bad port "${process.argv[2] ?? process.env.PORT}"`);
  process.exit(2);
}

const rooms = new Map(); // room name → Set of sockets
const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false });

function error(ws, message) {
  ws.send(JSON.stringify({ op: 'error', message }));
}

wss.on('connection', (ws) => {
  const joined = new Set();
  ws.on('message', (raw, isBinary) => {
    let m;
    try {
      m = JSON.parse(raw.toString());
    } catch {
      return error(ws, 'not JSON');
    }
    if (isBinary || m === null || typeof m !== 'object' || typeof m.room !== 'string')
      return error(ws, 'expected {"op":…,"room":…}');
    if (m.op === 'join') {
      let members = rooms.get(m.room);
      if (!members) rooms.set(m.room, (members = new Set()));
      members.add(ws);
      joined.add(m.room);
      ws.send(JSON.stringify({ op: 'subscribed', room: m.room, ref: m.ref, last_seq: 0 }));
    } else if (m.op === 'publish') {
      // Serialized and UTF-8 encoded once for all members (a string would be
      // encoded again by every send), sent as a text frame to each.
      const frame = Buffer.from(
        JSON.stringify({ op: 'event', room: m.room, seq: m.seq, data: m.data }));
      const members = rooms.get(m.room);
      if (members) for (const member of members) member.send(frame, { binary: false });
      ws.send(JSON.stringify({ op: 'ack', ref: m.ref, seq: m.seq }));
    } else {
      error(ws, `unknown op ${JSON.stringify(m.op)}`);
    }
  });
  ws.on('close', () => {
    for (const room of joined) {
      const members = rooms.get(room);
      if (!members) continue;
      members.delete(ws);
      if (members.size === 0) rooms.delete(room);
    }
  });
});

wss.on('listening', () => {
  console.log(`listening on http://127.0.0.1:${wss.address().port} (ws)`);
});
process.on('SIGTERM', () => {
  wss.close();
  process.exit(0);
});
