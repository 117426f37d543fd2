// A simple-hl7 3.3.0 TCP/MLLP server answering its own auto-ACK (AA), for
// benches/compare.sh.
//
//   NODE_PATH=$PEERS/node/node_modules node simple_server.js PORT LIFETIME_MS
//
// simple-hl7's TcpServer.start(port) calls net.Server.listen(port), which
// listens on every interface; net.Server.prototype.listen is patched below
// so that a port-only listen binds 127.0.0.1. The server exits by itself
// after LIFETIME_MS. Nothing is written to disk (not durable).
//
// simple-hl7 detects a frame only when its receive buffer ends with FS CR,
// so frames pipelined into one read are merged: drive it in lockstep.
'use strict';
const net = require('net');

const origListen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number' || typeof args[0] === 'string') {
    // listen(port[, host][, backlog][, cb]): force the host.
    const port = args[0];
    const rest = args.slice(1).filter((a) => typeof a === 'function');
    return origListen.call(this, { port: Number(port), host: '127.0.0.1', backlog: 511 }, ...rest);
  }
  if (args[0] && typeof args[0] === 'object') {
    args[0] = Object.assign({}, args[0], { host: '127.0.0.1' });
  }
  return origListen.apply(this, args);
};

const hl7 = require('simple-hl7');

const port = Number(process.argv[2]);
const lifetime = Number(process.argv[3] || 60000);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: simple_server.js PORT LIFETIME_MS');
  process.exit(2);
}

const app = hl7.tcp();
app.use(function (req, res, next) {
  // The auto-ACK (MSA-1 AA, MSA-2 = MSH-10) is already in res.ack.
  res.end();
});
app.use(function (err, req, res, next) {
  console.error('simple_server: ' + (err && err.message ? err.message : err));
  if (res && res.end) res.end();
});
app.start(port);
// Log where it actually listens (checked by compare.sh).
setImmediate(() => {
  const s = app.server && app.server.server;
  if (s && s.address()) console.error('simple_server listening ' + JSON.stringify(s.address()));
});
setTimeout(() => process.exit(0), lifetime).unref();
// Keep running until the lifetime even if unref'd above.
setInterval(() => {}, 1 << 30);
