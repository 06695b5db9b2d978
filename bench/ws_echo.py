#!/usr/bin/env python3
"""A WebSocket echo function for bench/websocket.sh (asyncio, Python's stdlib only).

    ws_echo.py UNIX_SOCKET TCP_PORT

Serves the same echo on the unix socket (fc-init's function.socket) and on
127.0.0.1:TCP_PORT (the direct baseline). A request with `Upgrade: websocket`
and a `Sec-WebSocket-Key` is answered `101` (RFC 6455 §4.2.2), then every data
frame is echoed back unmasked until a close frame or the end of the
connection. Anything else gets `200 ok`.
"""

import asyncio
import base64
import hashlib
import sys

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


async def handle(reader, writer):
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        fields = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
        key = fields.get(b"sec-websocket-key")
        if fields.get(b"upgrade", b"").lower() != b"websocket" or not key:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
            await writer.drain()
            return
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        await writer.drain()
        while True:
            b0, b1 = await reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(await reader.readexactly(2), "big")
            elif n == 127:
                n = int.from_bytes(await reader.readexactly(8), "big")
            mask = await reader.readexactly(4) if b1 & 0x80 else b"\0\0\0\0"
            data = bytearray(await reader.readexactly(n))
            for i in range(n):
                data[i] ^= mask[i % 4]
            opcode = b0 & 0x0F
            if n < 126:
                frame = bytes([0x80 | opcode, n])
            elif n < 65536:
                frame = bytes([0x80 | opcode, 126]) + n.to_bytes(2, "big")
            else:
                frame = bytes([0x80 | opcode, 127]) + n.to_bytes(8, "big")
            writer.write(frame + data)
            await writer.drain()
            if opcode == 0x8:
                return
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main(path, port):
    unix = await asyncio.start_unix_server(handle, path, backlog=4096)
    tcp = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    async with unix, tcp:
        await asyncio.gather(unix.serve_forever(), tcp.serve_forever())


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
