#!/usr/bin/env node
// An example function for fc-init, in Node.js (18.2 or later) with the standard
// library only.
//
// Run it under fc-init, from the repository root:
//
//     cargo build --release
//     target/release/fc-init -c examples/node/fc-init.toml
//
// and from another shell:
//
//     curl -X POST -d '{"name": "Ada"}' http://127.0.0.1:9000/invoke   # an event
//     curl http://127.0.0.1:9000/hello                                 # an HTTP request
//     kill -TERM <pid of fc-init>                                      # /pre-stop, then stop
//
// fc-init starts this program with FC_FUNCTION_SOCKET (a unix socket path) or
// FC_FUNCTION_PORT (serve on 127.0.0.1:PORT) in its environment, then sends it:
//
//     POST /initialize   once, before any traffic      (any 2xx = initialized)
//     POST /invoke       for each event, body as sent by the client
//     anything else      for each HTTP request, as sent by the client
//     GET  /pre-stop     once, when the instance stops (any 2xx = done)
//
// each with x-fc-control-path (/initialize, /invoke, /http-invoke, /pre-stop)
// naming its kind: the function chooses by that header, never by the URL
// path, so no client can run the hooks.
//
// and finally SIGTERM, once the requests in flight are done.
//
// To try it without fc-init:
//
//     FC_FUNCTION_SOCKET=/tmp/fn.sock node examples/node/function.js &
//     curl --unix-socket /tmp/fn.sock -H 'x-fc-control-path: /initialize' -X POST http://localhost/initialize
//     curl --unix-socket /tmp/fn.sock -H 'x-fc-control-path: /invoke' -X POST -d hi http://localhost/invoke

'use strict';

const fs = require('fs');
const http = require('http');

// Filled in once by the initializer, then read by every invocation.
let greeting = null;
let invocations = 0;

function log(message) {
  console.log(`function: ${message}`);
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks);
}

function reply(res, status, contentType, body) {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

async function handle(req, res) {
  // fc-init names the kind of every call in x-fc-control-path, and replaces
  // whatever a client sent in it: a client's own POST /initialize or
  // GET /pre-stop is an ordinary HTTP request and runs no hook code.
  const control = req.headers['x-fc-control-path'];
  const requestId = req.headers['x-fc-request-id'];
  const body = await readBody(req);

  if (control === '/initialize') {
    // The place for expensive one-time work: load a model, open a database
    // pool, read configuration...
    greeting = process.env.GREETING || 'Hello from fc-init!';
    log(`initialized (request ${requestId})`);
    reply(res, 200, 'text/plain', 'ok\n');
  } else if (control === '/invoke') {
    invocations += 1;
    const answer = { message: greeting, event: body.toString('utf8'), requestId };
    reply(res, 200, 'application/json', JSON.stringify(answer) + '\n');
  } else if (control === '/pre-stop') {
    // The place to flush buffers and close connections before the stop.
    log(`pre-stop: served ${invocations} invocations, flushing`);
    reply(res, 200, 'text/plain', 'ok\n');
  } else {
    reply(res, 200, 'text/plain', `${greeting} You asked for ${req.method} ${req.url}\n`);
  }
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((err) => {
    log(`error: ${err.stack}`);
    if (!res.headersSent) reply(res, 500, 'text/plain', 'internal error\n');
    else res.destroy();
  });
});

// fc-init keeps its connections to the function open for reuse. Node closes
// idle ones after 5 s by default, which races with a request fc-init is just
// sending on them; leave the closing to fc-init instead.
server.keepAliveTimeout = 0;

const socketPath = process.env.FC_FUNCTION_SOCKET;
if (socketPath) {
  // A socket file left over from an earlier run would make listen() fail.
  fs.rmSync(socketPath, { force: true });
  server.listen(socketPath, () => log('listening'));
} else {
  server.listen(Number(process.env.FC_FUNCTION_PORT), '127.0.0.1', () => log('listening'));
}

process.on('SIGTERM', () => {
  // fc-init sends SIGTERM once the requests in flight are done: stop
  // accepting, drop the idle keep-alive connections, and exit.
  server.close(() => {
    log('stopped');
    process.exit(0);
  });
  server.closeIdleConnections();
});
