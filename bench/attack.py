#!/usr/bin/env python3
"""Attack helpers for bench/attack.sh (loopback only, bounded in count and time).

    attack.py probe   --port P --seconds S --out FILE
        good requests on fresh connections every 20 ms for S seconds, while another tool
        attacks; writes {"sent", "ok", "failed", "p50_ms", "p99_ms", "max_ms"} to FILE.
    attack.py smuggle --port P --record FILE
        CL.TE, TE.CL and TE.TE shapes; checks the strict h11 function (its record FILE)
        parsed nothing smuggled and refused nothing fc-init sent.
    attack.py mutate  --port P --record FILE --count N [--workers W] [--bound S] [--seed X]
        N mutated requests, one connection each, from valid templates; checks nothing hangs
        past S seconds, nothing reaches the function after fc-init answered 4xx (every request
        the function recorded has its answer delivered, before any 4xx of fc-init's own), and
        that the strict function never refused what fc-init forwarded.

Each command prints one JSON line of results on stdout and exits 1 when a check fails.
"""

import argparse
import collections
import concurrent.futures
import json
import random
import socket
import sys
import time


def read_record(path):
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    out.append(json.loads(line))
    except FileNotFoundError:
        pass
    return out


def record_id(r):
    for name, value in r.get("headers", []):
        if name == "x-fc-request-id":
            return value
    return None


def parse_responses(data):
    """Responses in `data` (as much as is complete): a list of (status, headers dict)."""
    out = []
    at = 0
    while True:
        end = data.find(b"\r\n\r\n", at)
        if end < 0:
            return out
        lines = data[at:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        try:
            status = int(parts[1])
        except (IndexError, ValueError):
            return out
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        at = end + 4
        out.append((status, headers))
        if status < 200 or status in (204, 304):
            continue
        if "content-length" in headers:
            try:
                at += int(headers["content-length"])
            except ValueError:
                return out
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                nl = data.find(b"\r\n", at)
                if nl < 0:
                    return out
                try:
                    size = int(data[at:nl].split(b";")[0], 16)
                except ValueError:
                    return out
                at = nl + 2 + size + 2
                if size == 0:
                    break
        else:
            return out


def exchange(port, raw, half_close, bound):
    """Sends `raw` on a new connection and reads until the server closes or `bound` seconds
    pass; returns (bytes received, seconds, closed by the server)."""
    start = time.monotonic()
    s = socket.create_connection(("127.0.0.1", port), timeout=bound)
    got = bytearray()
    closed = False
    try:
        try:
            s.sendall(raw)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        while True:
            left = bound - (time.monotonic() - start)
            if left <= 0:
                break
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except OSError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            got += chunk
    finally:
        s.close()
    return bytes(got), time.monotonic() - start, closed


# ---------------------------------------------------------------------------------------- probe

def probe(args):
    lat, failed = [], 0
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        t = time.monotonic()
        try:
            got, secs, _ = exchange(
                args.port, b"GET /probe HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n", True, 3.0
            )
            answers = parse_responses(got)
            if answers and answers[0][0] == 200:
                lat.append(secs * 1000)
            else:
                failed += 1
        except OSError:
            failed += 1
        time.sleep(max(0.0, 0.02 - (time.monotonic() - t)))
    lat.sort()
    pct = lambda p: round(lat[min(len(lat) - 1, int(p * len(lat)))], 2) if lat else None
    result = {
        "sent": len(lat) + failed,
        "ok": len(lat),
        "failed": failed,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "max_ms": round(lat[-1], 2) if lat else None,
    }
    with open(args.out, "w") as f:
        json.dump(result, f)
    print(json.dumps(result))
    return 0


# -------------------------------------------------------------------------------------- smuggle

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"


def post(fields, body):
    return b"POST /front HTTP/1.1\r\nHost: a\r\n" + fields + b"\r\n" + body


SMUGGLE_CASES = [
    ("CL.TE", post(b"Content-Length: 40\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n" + SMUGGLED)),
    ("TE.CL", post(b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
                   b"%x\r\n" % len(SMUGGLED) + SMUGGLED + b"\r\n0\r\n\r\n")),
    ("TE.TE xchunked", post(b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n" + SMUGGLED)),
    ("TE.TE chunked, x", post(b"Transfer-Encoding: chunked, x\r\n", b"0\r\n\r\n" + SMUGGLED)),
    ("TE.TE x, chunked", post(b"Transfer-Encoding: x, chunked\r\n", b"0\r\n\r\n" + SMUGGLED)),
    ("TE.TE two fields", post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: cow\r\n",
                              b"0\r\n\r\n" + SMUGGLED)),
    ("TE.TE space before colon", post(b"Transfer-Encoding : chunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n")),
    ("TE.TE obs-fold", post(b"X: y\r\n Transfer-Encoding: chunked\r\n", b"0\r\n\r\n" + SMUGGLED)),
    ("TE.TE folded value", post(b"Transfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n" + SMUGGLED)),
    ("TE.TE vertical tab", post(b"Transfer-Encoding: chunked\x0b\r\n", b"0\r\n\r\n" + SMUGGLED)),
    ("TE.TE NUL", post(b"Transfer-Encoding: chunked\x00\r\n", b"0\r\n\r\n" + SMUGGLED)),
    ("TE.TE quoted", post(b'Transfer-Encoding: "chunked"\r\n', b"0\r\n\r\n" + SMUGGLED)),
    ("TE.TE identity, chunked", post(b"Transfer-Encoding: identity, chunked\r\n", b"0\r\n\r\n" + SMUGGLED)),
    ("TE in HTTP/1.0", b"POST /front HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED),
    ("CL list that differs", post(b"Content-Length: 0, %d\r\n" % len(SMUGGLED), SMUGGLED)),
    ("CL twice, differing", post(b"Content-Length: 0\r\nContent-Length: %d\r\n" % len(SMUGGLED), SMUGGLED)),
    ("CL with sign", post(b"Content-Length: +%d\r\n" % len(SMUGGLED), SMUGGLED)),
    ("CL hex", post(b"Content-Length: 0x%x\r\n" % len(SMUGGLED), SMUGGLED)),
    ("Connection strips CL", post(b"Content-Length: %d\r\nConnection: content-length\r\n" % len(SMUGGLED), SMUGGLED)),
    ("Connection strips TE", post(b"Transfer-Encoding: chunked\r\nConnection: transfer-encoding\r\n",
                                  b"0\r\n\r\n" + SMUGGLED)),
    ("chunk size 0x", post(b"Transfer-Encoding: chunked\r\n", b"0x0\r\n\r\n" + SMUGGLED)),
    ("chunk size LF", post(b"Transfer-Encoding: chunked\r\n", b"0\n\r\n" + SMUGGLED)),
    ("chunk size overflow", post(b"Transfer-Encoding: chunked\r\n", b"10000000000000000\r\nx\r\n0\r\n\r\n" + SMUGGLED)),
    ("chunk data without CRLF", post(b"Transfer-Encoding: chunked\r\n", b"1\r\nxx0\r\n\r\n" + SMUGGLED)),
    ("two Hosts", b"GET /front HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" + SMUGGLED),
    ("Host list", b"GET /front HTTP/1.1\r\nHost: a, b\r\n\r\n" + SMUGGLED),
]


def smuggle(args):
    rows, failures = [], []
    before = len(read_record(args.record))
    for name, raw in SMUGGLE_CASES:
        got, secs, closed = exchange(args.port, raw, False, 5.0)
        answers = parse_responses(got)
        statuses = [a[0] for a in answers]
        rows.append({"case": name, "statuses": statuses, "closed": closed})
        if statuses != [400] or not closed:
            failures.append(f"{name}: answered {statuses}, closed {closed}")
    record = read_record(args.record)[before:]
    reached = [r for r in record if r["event"] == "request"]
    errors = [r for r in record if r["event"] == "protocol_error"]
    for r in reached:
        failures.append(f"reached the function: {r['method']} {r['target']} body {r['body_len']}")
    for r in errors:
        failures.append(f"the strict function refused what fc-init sent: {r['error']}")
    result = {"cases": len(SMUGGLE_CASES), "refused_400": sum(r["statuses"] == [400] for r in rows),
              "reached_function": len(reached), "h11_protocol_errors": len(errors), "failures": failures}
    print(json.dumps(result))
    return 1 if failures else 0


# --------------------------------------------------------------------------------------- mutate

TEMPLATES = [
    b"GET /m/q?x=1&y=%C3%A9 HTTP/1.1\r\nHost: 127.0.0.1\r\nx-fc-request-id: {id}-1\r\nUser-Agent: mut/1\r\n"
    b"Accept: */*\r\n\r\n",
    b"POST /m/json HTTP/1.1\r\nHost: a.example:8080\r\nx-fc-request-id: {id}-1\r\n"
    b"Content-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"a\":[1,2,3]}",
    b"POST /m/chunked HTTP/1.1\r\nHost: a\r\nx-fc-request-id: {id}-1\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
    b"GET /m/one HTTP/1.1\r\nHost: a\r\nx-fc-request-id: {id}-1\r\n\r\n"
    b"POST /m/two HTTP/1.1\r\nHost: a\r\nx-fc-request-id: {id}-2\r\nContent-Length: 3\r\n\r\nabc"
    b"GET /m/three HTTP/1.1\r\nHost: a\r\nx-fc-request-id: {id}-3\r\nConnection: close\r\n\r\n",
    b"GET /m/old HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\nx-fc-request-id: {id}-1\r\n\r\n",
    b"GET http://b.example:81/m/abs?x HTTP/1.1\r\nHost: a\r\nx-fc-request-id: {id}-1\r\n\r\n",
    b"POST /m/expect HTTP/1.1\r\nHost: a\r\nx-fc-request-id: {id}-1\r\nExpect: 100-continue\r\n"
    b"Content-Length: 5\r\n\r\nhello",
    b"PUT /m/put HTTP/1.1\r\nHost: [::1]:9000\r\nx-fc-request-id: {id}-1\r\nConnection: keep-alive, X-Drop\r\n"
    b"X-Drop: 1\r\nContent-Length: 0\r\n\r\n",
    b"GET /m/no-host HTTP/1.0\r\nx-fc-request-id: {id}-1\r\n\r\n",
]

TOKENS = [
    b"\r", b"\n", b"\r\n", b"\r\n\r\n", b"\0", b" ", b"\t", b",", b":", b";", b"@", b"/", b"?", b"#",
    b"\x0b", b"\x7f", b"\x80", b"\xff", b"\xc7\x98", b"\xd1\x8a", b"\xe2\x82\xac", b"\xf0\x9f\x92\xa9",
    b"chunked", b"identity", b"close", b"keep-alive", b"host", b"HTTP/1.0", b"HTTP/1.1", b"http://",
    b"Content-Length: 5\r\n", b"Content-Length: 5, 5\r\n", b"Content-Length: 0\r\n",
    b"Transfer-Encoding: chunked\r\n", b"Host: b\r\n", b"Connection: host\r\n", b"Expect: 100-continue\r\n",
    b"0\r\n\r\n", b"ffffffffffffffff\r\n", b"GET /m/smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    b"0", b"5", b"-1", b"+5", b"0x5", b"99999999999999999999", b"65536",
]


def mutate_once(rng, data):
    op = rng.randrange(9)
    n = len(data)
    if op == 0 and n:
        i = rng.randrange(n)
        return data[:i] + bytes([rng.randrange(256)]) + data[i + 1:]
    if op == 1:
        i = rng.randrange(n + 1)
        return data[:i] + rng.choice(TOKENS) + data[i:]
    if op == 2 and n:
        i = rng.randrange(n)
        j = min(n, i + rng.randrange(1, 9))
        return data[:i] + data[j:]
    lines = data.split(b"\r\n")
    if op == 3 and len(lines) > 1:
        i = rng.randrange(len(lines))
        lines.insert(i, lines[i])
        return b"\r\n".join(lines)
    if op == 4 and len(lines) > 2:
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
        return b"\r\n".join(lines)
    if op == 5 and n:
        return data[: rng.randrange(n)]
    if op == 6 and n:
        i = rng.randrange(n)
        return data[:i] + data[i:i + 1].swapcase() + data[i + 1:]
    if op == 7:
        digits = [i for i, b in enumerate(data) if 0x30 <= b <= 0x39]
        if digits:
            i = rng.choice(digits)
            return data[:i] + rng.choice(TOKENS[-7:]) + data[i + 1:]
    if op == 8 and n:
        i = rng.randrange(n)
        return data[:i] + data[i:i + rng.randrange(1, 40)] * rng.randrange(2, 5) + data[i:]
    return data + rng.choice(TOKENS)


def one_mutation(args, token, k):
    rng = random.Random(args.seed * 1_000_003 + k)
    ident = f"mut{token}c{k}".encode()
    raw = rng.choice(TEMPLATES).replace(b"{id}", ident)
    for _ in range(rng.randrange(1, 5)):
        raw = mutate_once(rng, raw)
    half_close = rng.random() < 0.9
    try:
        got, secs, closed = exchange(args.port, raw, half_close, args.bound + 5)
    except OSError as e:
        return {"k": k, "error": str(e), "answers": [], "secs": 0.0, "closed": True, "raw": raw}
    answers = []
    for status, headers in parse_responses(got):
        answers.append({
            "status": status,
            "own": "x-fc-error-type" in headers,
            "id": headers.get("x-fc-request-id"),
        })
    return {"k": k, "answers": answers, "secs": secs, "closed": closed, "raw": raw, "half_close": half_close}


def mutate(args):
    token = "%08x" % random.Random(args.seed).getrandbits(32)
    before = len(read_record(args.record))
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
        results = list(pool.map(lambda k: one_mutation(args, token, k), range(args.count)))
    elapsed = time.monotonic() - start
    # The function records a request before answering; give the last answers' records time to
    # land (they are written before the answer left, so this is only the file's visibility).
    time.sleep(0.2)
    record = read_record(args.record)[before:]
    requests = [r for r in record if r["event"] == "request"]
    errors = [r for r in record if r["event"] == "protocol_error"]

    statuses = collections.Counter()
    delivered = collections.Counter()
    failures, order_violations, hangs, connect_errors = [], 0, 0, 0
    max_secs = 0.0
    for res in results:
        if "error" in res:
            connect_errors += 1
            continue
        max_secs = max(max_secs, res["secs"])
        if res["secs"] > args.bound:
            hangs += 1
            if len(failures) < 20:
                failures.append(f"hang {res['secs']:.1f}s on {res['raw'][:200]!r}")
        seen_own_4xx = False
        for a in res["answers"]:
            statuses[(a["status"], "fc-init" if a["own"] else "function")] += 1
            if a["own"] and 400 <= a["status"] < 500:
                seen_own_4xx = True
            elif not a["own"] and a["status"] >= 200:
                if seen_own_4xx:
                    order_violations += 1
                    failures.append(f"function answered after a 4xx of fc-init: {res['raw'][:200]!r}")
                delivered[a["id"]] += 1
    reached = collections.Counter(record_id(r) for r in requests)
    orphans = reached - delivered
    for ident, n in list(orphans.items())[:20]:
        rec = [r for r in requests if record_id(r) == ident][:1]
        failures.append(f"reached the function without its answer delivered ({n}x): {rec}")
    for r in errors[:20]:
        failures.append(f"the strict function refused what fc-init sent: {r['error']}")
    result = {
        "requests": args.count,
        "seconds": round(elapsed, 1),
        "connect_errors": connect_errors,
        "answers": {f"{s} {who}": n for (s, who), n in sorted(statuses.items())},
        "fc_init_4xx": sum(n for (s, who), n in statuses.items() if who == "fc-init" and 400 <= s < 500),
        "reached_function": len(requests),
        "reached_without_answer": sum(orphans.values()),
        "function_after_4xx": order_violations,
        "h11_protocol_errors": len(errors),
        "h11_protocol_errors_by_kind": dict(collections.Counter(r["error"][:60] for r in errors)),
        "hangs_over_bound": hangs,
        "max_connection_seconds": round(max_secs, 2),
        "bound_seconds": args.bound,
        "failures": failures,
    }
    print(json.dumps(result))
    return 1 if failures or connect_errors else 0


# ------------------------------------------------------------------------------------ reporting

def row(args):
    """One table cell group for bench/attack.sh from a result file."""
    if args.kind == "slowlog":
        import re
        text = re.sub(r"\x1b\[[0-9;]*m", "", open(args.file, errors="replace").read())
        connected = [int(n) for n in re.findall(r"connected:\s*(\d+)", text)]
        available = re.findall(r"service available:\s*(\w+)", text)
        ended = re.findall(r"Exit status:\s*(.*)", text)
        print(f"most connected at once {max(connected, default=0)}; service available in "
              f"{available.count('YES')} of {len(available)} samples; "
              f"ended: {ended[-1].strip() if ended else '?'}")
        return 0
    d = json.load(open(args.file))
    if args.kind == "probe":
        print(f"{d['ok']}/{d['sent']} | {d['p50_ms']} / {d['p99_ms']} / {d['max_ms']}")
    elif args.kind == "smuggle":
        print(f"{d['refused_400']} of {d['cases']} refused 400 and closed; reached the function: "
              f"{d['reached_function']}; h11 protocol errors: {d['h11_protocol_errors']}")
    elif args.kind == "mutate":
        print(f"fc-init 4xx: {d['fc_init_4xx']}; reached the function: {d['reached_function']}, "
              f"of which without its answer delivered: {d['reached_without_answer']}, answered "
              f"after a 4xx: {d['function_after_4xx']}; h11 protocol errors: "
              f"{d['h11_protocol_errors']} {d['h11_protocol_errors_by_kind'] or ''}; longest connection {d['max_connection_seconds']} s "
              f"(bound {d['bound_seconds']} s), over the bound: {d['hangs_over_bound']}")
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("probe")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("smuggle")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--record", required=True)
    p = sub.add_parser("mutate")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--record", required=True)
    p.add_argument("--count", type=int, default=20000)
    p.add_argument("--workers", type=int, default=16)
    p.add_argument("--bound", type=float, default=3.5)
    p.add_argument("--seed", type=int, default=17)
    p = sub.add_parser("row")
    p.add_argument("kind", choices=["slowlog", "probe", "smuggle", "mutate"])
    p.add_argument("file")
    args = ap.parse_args()
    return {"probe": probe, "smuggle": smuggle, "mutate": mutate, "row": row}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
