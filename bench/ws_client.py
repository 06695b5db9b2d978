#!/usr/bin/env python3
"""The client side of bench/websocket.sh (asyncio, Python's stdlib only).

    ws_client.py rtt PORT ROUNDS           one WebSocket, ROUNDS sequential echoes of 64
                                           bytes; prints the median and p99 round trip (µs)
    ws_client.py hold PORT N PID SECONDS   opens N WebSockets at once (all upgraded and
                                           echoing once), holds them SECONDS, and prints
                                           PID's VmRSS (KiB) and thread count before the
                                           first and with all N open: "rss0 thr0 rss thr"
"""

import asyncio
import os
import statistics
import sys
import time

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
MASK = b"\x11\x22\x33\x44"


def frame(payload):
    n = len(payload)
    head = bytes([0x82, 0x80 | n]) if n < 126 else bytes([0x82, 0x80 | 126]) + n.to_bytes(2, "big")
    return head + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))


async def upgrade(port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise SystemExit(f"no upgrade: {head[:80]!r}")
    return reader, writer


async def echo(reader, writer, payload, out):
    writer.write(out)
    await writer.drain()
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    data = await reader.readexactly(n)
    if data != payload:
        raise SystemExit("echo differs")


async def rtt(port, rounds):
    reader, writer = await upgrade(port)
    payload = os.urandom(64)
    out = frame(payload)
    times = []
    for _ in range(rounds):
        t = time.perf_counter_ns()
        await echo(reader, writer, payload, out)
        times.append((time.perf_counter_ns() - t) / 1000)
    times.sort()
    print(f"{statistics.median(times):.0f} {times[int(len(times) * 0.99)]:.0f}")


def status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            fields[name] = value.split()[0] if value.split() else ""
    return fields["VmRSS"], fields["Threads"]


async def hold(port, n, pid, seconds):
    rss0, thr0 = status(pid)
    gate = asyncio.Semaphore(256)
    payload = b"hello"
    out = frame(payload)

    async def one():
        async with gate:
            reader, writer = await upgrade(port)
            await echo(reader, writer, payload, out)
            return writer

    writers = await asyncio.gather(*(one() for _ in range(n)))
    await asyncio.sleep(seconds)
    rss, thr = status(pid)
    print(rss0, thr0, rss, thr)
    for w in writers:
        w.close()


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "rtt":
        asyncio.run(rtt(int(sys.argv[2]), int(sys.argv[3])))
    else:
        asyncio.run(hold(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5])))
