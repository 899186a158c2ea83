#!/usr/bin/python3
"""wsbench.py - measure relay throughput through azure_emu.py.

Gets an Entra token, a Bastion session and a WebSocket from a running
emulator, then pushes MiB of random data through the WS to an echo target
(the session's workloadHostPort) while reading the echo back, and checks the
SHA-256 of both directions. Prints one line per run and the median.

  /usr/bin/python3 tests/emulator/wsbench.py --port P --ca ca.pem \
      --tenant T --client C --secret S --resource VM_ID --target-port EP \
      [--mib 64] [--frame 8192] [--runs 3]

The client side is written to be cheap (one big-integer XOR per frame, one
sendall per frame) so that the figure reflects the emulator.
"""

import argparse
import hashlib
import json
import os
import socket
import ssl
import statistics
import struct
import threading
import time
import urllib.parse
import urllib.request


def post_form(base, ctx, path, fields):
    data = urllib.parse.urlencode(fields).encode()
    req = urllib.request.Request(base + path, data=data)
    with urllib.request.urlopen(req, context=ctx) as resp:
        return json.load(resp)


def ws_connect(port, ctx, path):
    raw = socket.create_connection(("127.0.0.1", port))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock = ctx.wrap_socket(raw, server_hostname="localhost")
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\n"
                  "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise SystemExit("connection closed during upgrade")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise SystemExit(f"upgrade failed: {head[:80]!r}")
    return sock, head.split(b"\r\n\r\n", 1)[1]


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


def sender(sock, data, frame_size):
    for i in range(0, len(data), frame_size):
        sock.sendall(masked_frame(data[i:i + frame_size]))


class Receiver:
    """Parses server frames; collects binary/text/continuation payloads."""

    def __init__(self, sock, pending, total):
        self.sock, self.buf, self.total = sock, bytearray(pending), total
        self.hash, self.got = hashlib.sha256(), 0

    def need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise SystemExit("connection closed early")
            self.buf += chunk

    def run(self):
        while self.got < self.total:
            self.need(2)
            op, n = self.buf[0] & 0x0F, self.buf[1] & 0x7F
            hl = {126: 4, 127: 10}.get(n, 2)
            self.need(hl)
            if hl > 2:
                n = int.from_bytes(self.buf[2:hl], "big")
            self.need(hl + n)
            if op in (0, 1, 2):
                self.hash.update(self.buf[hl:hl + n])
                self.got += n
            elif op == 8:
                raise SystemExit("server closed the WebSocket")
            del self.buf[:hl + n]


def one_run(args, base, ctx, token):
    sess = post_form(base, ctx, "/api/tokens", {
        "resourceId": args.resource, "protocol": "tcptunnel",
        "workloadHostPort": str(args.target_port), "aztoken": token})
    path = f"/webtunnelv2/{sess['websocketToken']}?X-Node-Id={sess['nodeId']}"
    sock, pending = ws_connect(args.port, ctx, path)
    data = os.urandom(args.mib << 20)
    rx = Receiver(sock, pending, len(data))
    t0 = time.monotonic()
    th = threading.Thread(target=rx.run)
    th.start()
    sender(sock, data, args.frame)
    th.join()
    elapsed = time.monotonic() - t0
    ok = rx.hash.digest() == hashlib.sha256(data).digest()
    sock.sendall(masked_frame(struct.pack("!H", 1000), opcode=0x8))
    sock.close()
    req = urllib.request.Request(f"{base}/api/tokens/{sess['authToken']}",
                                 method="DELETE",
                                 headers={"X-Node-Id": sess["nodeId"]})
    urllib.request.urlopen(req, context=ctx).close()
    return elapsed, ok


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
        elapsed, ok = one_run(args, base, ctx, token)
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
