// An example function for fc-init, in Go with the standard library only (net/http).
//
// Build and run it under fc-init, from the repository root:
//
//	cargo build --release
//	go build -o examples/go/function ./examples/go
//	target/release/fc-init -c examples/go/fc-init.toml
//
// and from another shell:
//
//	curl -X POST -d '{"name": "Ada"}' http://127.0.0.1:9000/invoke   # an event
//	curl http://127.0.0.1:9000/hello                                 # an HTTP request
//	kill -TERM <pid of fc-init>                                      # /pre-stop, then stop
//
// fc-init starts this program with FC_FUNCTION_SOCKET (a unix socket path) or
// FC_FUNCTION_PORT (serve on 127.0.0.1:PORT) in its environment, then sends it:
//
//	POST /initialize   once, before any traffic      (any 2xx = initialized)
//	POST /invoke       for each event, body as sent by the client
//	anything else      for each HTTP request, as sent by the client
//	GET  /pre-stop     once, when the instance stops (any 2xx = done)
//
// each with x-fc-control-path (/initialize, /invoke, /http-invoke, /pre-stop)
// naming its kind: the function chooses by that header, never by the URL
// path, so no client can run the hooks.
//
// and finally SIGTERM, once the requests in flight are done.
//
// To try it without fc-init:
//
//	FC_FUNCTION_SOCKET=/tmp/fn.sock examples/go/function &
//	curl --unix-socket /tmp/fn.sock -H 'x-fc-control-path: /initialize' -X POST http://localhost/initialize
//	curl --unix-socket /tmp/fn.sock -H 'x-fc-control-path: /invoke' -X POST -d hi http://localhost/invoke
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
)

// Filled in once by the initializer, then read by every invocation.
var (
	mu          sync.RWMutex
	greeting    string
	invocations atomic.Int64
)

func logf(format string, args ...any) {
	fmt.Printf("function: "+format+"\n", args...)
}

func reply(w http.ResponseWriter, status int, contentType string, body []byte) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func handle(w http.ResponseWriter, r *http.Request) {
	requestID := r.Header.Get("x-fc-request-id")
	// net/http decodes chunked request bodies; read the whole body before answering.
	body, err := io.ReadAll(r.Body)
	if err != nil {
		reply(w, http.StatusBadRequest, "text/plain", []byte("cannot read the body\n"))
		return
	}
	// fc-init names the kind of every call in x-fc-control-path, and replaces
	// whatever a client sent in it: a client's own POST /initialize or
	// GET /pre-stop is an ordinary HTTP request and runs no hook code.
	switch r.Header.Get("x-fc-control-path") {
	case "/initialize":
		// The place for expensive one-time work: load a model, open a database
		// pool, read configuration...
		mu.Lock()
		greeting = os.Getenv("GREETING")
		if greeting == "" {
			greeting = "Hello from fc-init!"
		}
		mu.Unlock()
		logf("initialized (request %s)", requestID)
		reply(w, http.StatusOK, "text/plain", []byte("ok\n"))
	case "/invoke":
		invocations.Add(1)
		mu.RLock()
		answer := map[string]string{"message": greeting, "event": string(body), "requestId": requestID}
		mu.RUnlock()
		out, _ := json.Marshal(answer)
		reply(w, http.StatusOK, "application/json", append(out, '\n'))
	case "/pre-stop":
		// The place to flush buffers and close connections before the stop.
		logf("pre-stop: served %d invocations, flushing", invocations.Load())
		reply(w, http.StatusOK, "text/plain", []byte("ok\n"))
	default:
		mu.RLock()
		text := fmt.Sprintf("%s You asked for %s %s\n", greeting, r.Method, r.URL.RequestURI())
		mu.RUnlock()
		reply(w, http.StatusOK, "text/plain", []byte(text))
	}
}

// listen opens the socket fc-init named: a unix socket, or a loopback port.
func listen() (net.Listener, string, error) {
	if path := os.Getenv("FC_FUNCTION_SOCKET"); path != "" {
		// A socket file left over from an earlier run would make Listen fail.
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, "", err
		}
		l, err := net.Listen("unix", path)
		return l, path, err
	}
	port := os.Getenv("FC_FUNCTION_PORT")
	if port == "" {
		// An FC-style server listens on $FC_SERVER_PORT; under fc-init that is the
		// function's own port, never fc-init's listener.
		port = os.Getenv("FC_SERVER_PORT")
	}
	if port == "" {
		return nil, "", errors.New("set FC_FUNCTION_SOCKET or FC_FUNCTION_PORT")
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", port))
	return l, "", err
}

func main() {
	listener, socketPath, err := listen()
	if err != nil {
		log.Fatalf("function: %v", err)
	}
	// fc-init keeps its connections to the function open for reuse: no IdleTimeout
	// (nor ReadTimeout, which would stand in for it), so closing them is left to
	// fc-init; its own timeouts bound every request.
	server := &http.Server{Handler: http.HandlerFunc(handle)}

	stopped := make(chan struct{})
	go func() {
		// fc-init sends SIGTERM once the requests in flight are done: stop accepting,
		// close the idle keep-alive connections, wait for the active ones, exit.
		signals := make(chan os.Signal, 1)
		signal.Notify(signals, syscall.SIGTERM)
		<-signals
		if err := server.Shutdown(context.Background()); err != nil {
			logf("shutdown: %v", err)
		}
		close(stopped)
	}()

	logf("listening")
	if err := server.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("function: %v", err)
	}
	<-stopped
	if socketPath != "" {
		_ = os.Remove(socketPath)
	}
	logf("stopped")
}
