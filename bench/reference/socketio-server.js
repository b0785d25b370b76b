'use strict';
// Socket.IO 4.8 reference server for `sessionhost-load --protocol=socketio`
// (bench/reference/README.md). Rooms as Socket.IO users build them: a client
// joins a room with a "join" event; a producer's "publish" event is emitted
// to the room with io.to(room).emit, and its ack callback answers after the
// emit. Socket.IO persists nothing: an ack here means "handed to the
// sockets", not "durable", unlike sessionhost's.
//
//   node socketio-server.js [PORT]      (or PORT=…; 0 or nothing: any free port)
//
// Prints "listening on http://127.0.0.1:PORT" once ready; exits on SIGTERM.
const http = require('http');
const { Server } = require('socket.io');

const port = Number(process.argv[2] ?? process.env.PORT ?? 0);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`socketio-server: bad port "${process.argv[2] ?? process.env.PORT}"`);
  process.exit(2);
}

const httpServer = http.createServer();
const io = new Server(httpServer, {
  transports: ['websocket'], // no long-polling: WebSocket only, like the others
  serveClient: false,
});

io.on('connection', (socket) => {
  // "join", room[, ack]: subscribe this socket to the room.
  socket.on('join', (room, ack) => {
    if (typeof room !== 'string' || room === '') {
      if (typeof ack === 'function') ack({ error: 'join needs a room name' });
      return;
    }
    socket.join(room);
    if (typeof ack === 'function') ack({ room });
  });
  // "publish", {room, ref, seq, data}[, ack]: one emit to the room (encoded
  // once by Socket.IO, written to every member), then the ack.
  socket.on('publish', (msg, ack) => {
    if (msg === null || typeof msg !== 'object' || typeof msg.room !== 'string') {
      if (typeof ack === 'function') ack({ error: 'publish needs {room, …}' });
      return;
    }
    io.to(msg.room).emit('event', msg);
    if (typeof ack === 'function') ack({ ref: msg.ref, seq: msg.seq });
  });
});

httpServer.listen(port, '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${httpServer.address().port} (socket.io)`);
});
process.on('SIGTERM', () => {
  io.close();
  process.exit(0);
});
