#!/usr/bin/env python3
"""An example function for fc-init, in Python 3 with the standard library only.

Run it under fc-init, from the repository root:

    cargo build --release
    target/release/fc-init -c examples/python/fc-init.toml

and from another shell:

    curl -X POST -d '{"name": "Ada"}' http://127.0.0.1:9000/invoke   # an event
    curl http://127.0.0.1:9000/hello                                 # an HTTP request
    kill -TERM <pid of fc-init>                                      # /pre-stop, then stop

fc-init starts this program with FC_FUNCTION_SOCKET (a unix socket path) or
FC_FUNCTION_PORT (serve on 127.0.0.1:PORT) in its environment, then sends it:

    POST /initialize   once, before any traffic      (any 2xx = initialized)
    POST /invoke       for each event, body as sent by the client
    anything else      for each HTTP request, as sent by the client
    GET  /pre-stop     once, when the instance stops (any 2xx = done)

each with x-fc-control-path (/initialize, /invoke, /http-invoke, /pre-stop)
naming its kind: the function chooses by that header, never by the URL path,
so no client can run the hooks.

and finally SIGTERM, once the requests in flight are done.

To try it without fc-init:

    FC_FUNCTION_SOCKET=/tmp/fn.sock python3 examples/python/function.py &
    curl --unix-socket /tmp/fn.sock -H 'x-fc-control-path: /initialize' -X POST http://localhost/initialize
    curl --unix-socket /tmp/fn.sock -H 'x-fc-control-path: /invoke' -X POST -d hi http://localhost/invoke
"""

import json
import os
import signal
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler

# Filled in once by the initializer, then read by every invocation.
greeting = None
invocations = 0


class Handler(BaseHTTPRequestHandler):
    # Keep-alive: fc-init reuses its connections to the function.
    protocol_version = "HTTP/1.1"

    # fc-init names the kind of every call in x-fc-control-path, and replaces
    # whatever a client sent in it: a client's own POST /initialize or
    # GET /pre-stop is an ordinary HTTP request and runs no hook code.
    def route(self):
        control = self.headers.get("x-fc-control-path")
        if control == "/initialize":
            self.initialize()
        elif control == "/invoke":
            self.invoke()
        elif control == "/pre-stop":
            self.pre_stop()
        else:
            self.http_request()

    do_GET = do_POST = route

    def initialize(self):
        # The place for expensive one-time work: load a model, open a
        # database pool, read configuration...
        global greeting
        greeting = os.environ.get("GREETING", "Hello from fc-init!")
        log(f"initialized (request {self.headers['x-fc-request-id']})")
        self.reply(200, "text/plain", b"ok\n")

    def invoke(self):
        global invocations
        invocations += 1
        event = self.read_body().decode("utf-8", errors="replace")
        answer = {
            "message": greeting,
            "event": event,
            "requestId": self.headers["x-fc-request-id"],
        }
        self.reply(200, "application/json", json.dumps(answer).encode() + b"\n")

    def http_request(self):
        self.read_body()
        text = f"{greeting} You asked for {self.command} {self.path}\n"
        self.reply(200, "text/plain", text.encode())

    def pre_stop(self):
        # The place to flush buffers and close connections before the stop.
        log(f"pre-stop: served {invocations} invocations, flushing")
        sys.stdout.flush()
        self.reply(200, "text/plain", b"ok\n")

    do_PUT = do_PATCH = do_DELETE = http_request

    def read_body(self):
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            # BaseHTTPRequestHandler leaves chunked bodies to us:
            # each chunk is "<size in hex>\r\n<data>\r\n", ended by a 0 size.
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("content-length", 0)))

    def reply(self, status, content_type, body):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass  # fc-init already logs every invocation


def log(message):
    print(f"function: {message}", flush=True)


# One thread per connection. Daemon threads, so that on SIGTERM the process
# does not wait for idle keep-alive connections: fc-init sends SIGTERM only
# once the requests in flight are done.
class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class TcpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    socket_path = os.environ.get("FC_FUNCTION_SOCKET")
    if socket_path:
        if os.path.exists(socket_path):
            os.unlink(socket_path)  # left over from an earlier run
        server = UnixServer(socket_path, Handler)
    else:
        server = TcpServer(("127.0.0.1", int(os.environ["FC_FUNCTION_PORT"])), Handler)

    # serve_forever() runs in this thread, so the shutdown must come from another.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    log("listening")
    server.serve_forever()
    server.server_close()
    if socket_path:
        os.unlink(socket_path)
    log("stopped")


if __name__ == "__main__":
    main()
