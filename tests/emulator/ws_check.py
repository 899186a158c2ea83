#!/usr/bin/python3
"""ws_check.py - WebSocket-side checks for selftest.sh.

  ws_check.py CHECK URL CA [ARG]

URL is the full wss:// tunnel URL (token and X-Node-Id included). Prints
what it saw; exits 0 on success, 1 on failure.
Uses python3-websocket (websocket-client), except where a raw socket is
the only way to see the bytes (http400).

Checks:
  echo MIB        send MIB random MiB in 8 KiB frames, read the echo,
                  compare SHA-256, close with 1000
  bigframe        one 9000-byte frame -> server closes with 1009
  cont            a FIN=0 binary frame -> server closes with 1002
  ping            ping -> pong with the same payload
  status CODE     the upgrade fails with HTTP status CODE
  closeafter N    send 2N bytes, get exactly N back, then close 1000
  noext           offer permessage-deflate (User-Agent: ws_check); the
                  101 must not accept it
  http400         after the 101 the next bytes are a raw "HTTP/1.1 400"
  closed CODE     after the 101 the server closes with CODE, no data
"""

import hashlib
import os
import socket
import ssl
import struct
import sys
import urllib.parse

import websocket
from websocket import ABNF

FRAME = 8192
WINDOW = 65536


class Fail(Exception):
    pass


def connect(url, ca, **kw):
    return websocket.create_connection(url, sslopt={"ca_certs": ca},
                                       timeout=10, **kw)


def recv_close_code(ws):
    """Read until a close frame; return its status code."""
    while True:
        op, data = ws.recv_data(control_frame=True)
        if op == ABNF.OPCODE_CLOSE:
            return struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None


def check_echo(url, ca, mib):
    """Lock-step windows: one thread must not read and write the same
    TLS socket concurrently (OpenSSL forbids it), and a bounded window
    cannot deadlock on full buffers."""
    # Text frames carry raw bytes under split_frames: no UTF-8 check.
    ws = connect(url, ca, skip_utf8_validation=True)
    data = os.urandom(int(mib) << 20)
    got = bytearray()
    for start in range(0, len(data), WINDOW):
        window = data[start:start + WINDOW]
        for i in range(0, len(window), FRAME):
            ws.send_binary(window[i:i + FRAME])
        while len(got) < start + len(window):
            op, chunk = ws.recv_data()
            if op == ABNF.OPCODE_CLOSE:
                raise Fail(f"closed after {len(got)} bytes")
            got.extend(chunk)
    ws.close()
    if hashlib.sha256(got).digest() != hashlib.sha256(data).digest():
        raise Fail(f"hash mismatch ({len(got)} of {len(data)} bytes back)")
    return f"{mib} MiB echoed, sha256 equal"


def check_bigframe(url, ca):
    ws = connect(url, ca)
    ws.send_binary(os.urandom(9000))
    code = recv_close_code(ws)
    if code != 1009:
        raise Fail(f"close code {code}")
    return "closed 1009"


def check_cont(url, ca):
    ws = connect(url, ca)
    ws.send_frame(ABNF.create_frame(b"abc", ABNF.OPCODE_BINARY, fin=0))
    code = recv_close_code(ws)
    if code != 1002:
        raise Fail(f"close code {code}")
    return "closed 1002"


def check_ping(url, ca):
    ws = connect(url, ca)
    ws.ping(b"selftest")
    op, data = ws.recv_data(control_frame=True)
    ws.close()
    if op == ABNF.OPCODE_PONG and data == b"selftest":
        return "pong echoed the payload"
    raise Fail(f"got opcode {op} {data!r}")


def check_status(url, ca, want):
    try:
        connect(url, ca).close()
    except websocket.WebSocketBadStatusException as e:
        if e.status_code == int(want):
            return f"upgrade refused with {want}"
        raise Fail(f"status {e.status_code}")
    raise Fail("upgrade succeeded")


def check_closeafter(url, ca, n):
    n = int(n)
    ws = connect(url, ca)
    data = os.urandom(2 * n)
    for i in range(0, len(data), FRAME):
        ws.send_binary(data[i:i + FRAME])
    got = 0
    while True:
        op, data = ws.recv_data(control_frame=True)
        if op == ABNF.OPCODE_CLOSE:
            code = struct.unpack("!H", data[:2])[0]
            break
        if op in (ABNF.OPCODE_BINARY, ABNF.OPCODE_TEXT):
            got += len(data)
    if got == n and code == 1000:
        return f"{n} bytes then close 1000"
    raise Fail(f"{got} bytes, close {code}")


def check_closed(url, ca, want):
    ws = connect(url, ca)
    code = recv_close_code(ws)
    if code != int(want):
        raise Fail(f"close code {code}")
    return f"closed {code}"


def check_noext(url, ca):
    ws = connect(url, ca, header=[
        "User-Agent: ws_check",
        "Sec-WebSocket-Extensions: permessage-deflate; "
        "client_max_window_bits"])
    headers = ws.getheaders() or {}
    ws.close()
    if "sec-websocket-extensions" in headers:
        raise Fail("server accepted an extension")
    return "no extension negotiated"


def check_http400(url, ca):
    u = urllib.parse.urlsplit(url)
    ctx = ssl.create_default_context(cafile=ca)
    raw = socket.create_connection((u.hostname, u.port), timeout=10)
    with ctx.wrap_socket(raw, server_hostname=u.hostname) as s:
        s.sendall((f"GET {u.path}?{u.query} HTTP/1.1\r\nHost: {u.netloc}\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    if head.startswith(b"HTTP/1.1 101") and rest.startswith(
            b"HTTP/1.1 400 Bad Request"):
        return "101 then raw HTTP 400"
    raise Fail(f"unexpected bytes {data[:60]!r}")


CHECKS = {"echo": check_echo, "bigframe": check_bigframe,
          "cont": check_cont, "ping": check_ping, "status": check_status,
          "closeafter": check_closeafter, "noext": check_noext,
          "http400": check_http400, "closed": check_closed}


def main(argv):
    if len(argv) < 3 or argv[0] not in CHECKS:
        print(__doc__, file=sys.stderr)
        return 64
    try:
        print(CHECKS[argv[0]](*argv[1:]))
        return 0
    except (Fail, websocket.WebSocketException, OSError) as e:
        print(f"{type(e).__name__}: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
