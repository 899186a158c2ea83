#!/usr/bin/python3
"""wsbench.py - measure relay throughput through azure_emu.py.

Gets an Entra token, a Bastion session and a WebSocket from a running
emulator, then pushes MiB of random data through the WS to an echo target
(the session's workloadHostPort) while reading the echo back, and checks the
SHA-256 of both directions. Prints one line per run and the median.

  /usr/bin/python3 tests/emulator/wsbench.py --port P --ca ca.pem \
      --tenant T --client C --secret S --resource VM_ID --target-port EP \
      [--mib 64] [--frame 8192] [--runs 3]

The client side is kept cheap (one big-integer XOR per frame, asyncio in a
single thread) so that the figure mostly reflects the emulator; on a small
machine client and emulator still share the CPUs.
"""

import argparse
import asyncio
import hashlib
import json
import os
import ssl
import statistics
import struct
import time
import urllib.parse
import urllib.request


def post_form(base, ctx, path, fields):
    data = urllib.parse.urlencode(fields).encode()
    req = urllib.request.Request(base + path, data=data)
    with urllib.request.urlopen(req, context=ctx) as resp:
        return json.load(resp)


async def ws_connect(port, ctx, path):
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, server_hostname="localhost",
        limit=1 << 20)
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    writer.write((f"GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\n"
                  "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise SystemExit(f"upgrade failed: {head[:80]!r}")
    return reader, writer


def masked_frame(payload, opcode=0x2):
    key = os.urandom(4)
    n = len(payload)
    keys = (key * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, "little")
            ^ int.from_bytes(keys, "little")).to_bytes(n, "little")
    b0 = 0x80 | opcode
    if n < 126:
        head = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", b0, 0x80 | 127, n)
    return head + key + body


async def sender(writer, data, frame_size):
    for i in range(0, len(data), frame_size):
        writer.write(masked_frame(data[i:i + frame_size]))
        await writer.drain()


async def receiver(reader, total):
    """SHA-256 of all data payloads (binary, text, continuation) until
    `total` bytes; control frames are skipped."""
    digest, got = hashlib.sha256(), 0
    while got < total:
        b0, n = await reader.readexactly(2)
        op, n = b0 & 0x0F, n & 0x7F
        if n >= 126:
            ext = await reader.readexactly(2 if n == 126 else 8)
            n = int.from_bytes(ext, "big")
        payload = await reader.readexactly(n)
        if op == 0x8:
            raise SystemExit(f"server closed the WebSocket: {payload!r}")
        if op in (0x0, 0x1, 0x2):
            digest.update(payload)
            got += n
    return digest.digest()


async def one_run(args, base, ctx, token):
    """One session: push args.mib MiB through the echo, both ways at once
    (a single thread: OpenSSL objects must not be shared by threads)."""
    sess = post_form(base, ctx, "/api/tokens", {
        "resourceId": args.resource, "protocol": "tcptunnel",
        "workloadHostPort": str(args.target_port), "aztoken": token})
    path = f"/webtunnelv2/{sess['websocketToken']}?X-Node-Id={sess['nodeId']}"
    reader, writer = await ws_connect(args.port, ctx, path)
    data = os.urandom(args.mib << 20)
    t0 = time.monotonic()
    _, echoed = await asyncio.gather(sender(writer, data, args.frame),
                                     receiver(reader, len(data)))
    elapsed = time.monotonic() - t0
    writer.write(masked_frame(struct.pack("!H", 1000), opcode=0x8))
    await writer.drain()
    writer.close()
    req = urllib.request.Request(f"{base}/api/tokens/{sess['authToken']}",
                                 method="DELETE",
                                 headers={"X-Node-Id": sess["nodeId"]})
    urllib.request.urlopen(req, context=ctx).close()
    return elapsed, echoed == hashlib.sha256(data).digest()


def main():
    p = argparse.ArgumentParser()
    for name in ("ca", "tenant", "client", "secret", "resource"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--target-port", type=int, required=True)
    p.add_argument("--mib", type=int, default=64)
    p.add_argument("--frame", type=int, default=8192)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    base = f"https://localhost:{args.port}"
    ctx = ssl.create_default_context(cafile=args.ca)
    token = post_form(base, ctx, f"/{args.tenant}/oauth2/v2.0/token", {
        "grant_type": "client_credentials", "client_id": args.client,
        "client_secret": args.secret,
        "scope": "https://management.azure.com/.default"})["access_token"]
    rates = []
    for i in range(args.runs):
        elapsed, ok = asyncio.run(one_run(args, base, ctx, token))
        rate = args.mib / elapsed
        rates.append(rate)
        print(f"run {i + 1}: {args.mib} MiB each way in {elapsed:.2f} s ="
              f" {rate:.1f} MiB/s per direction, sha256 "
              f"{'ok' if ok else 'MISMATCH'}")
        if not ok:
            raise SystemExit(1)
    print(f"median: {statistics.median(rates):.1f} MiB/s per direction")


if __name__ == "__main__":
    main()
