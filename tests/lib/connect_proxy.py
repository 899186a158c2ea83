#!/usr/bin/python3
"""A logging HTTP CONNECT proxy for the proxy tests, loopback only.

  connect_proxy.py PORTFILE LOGFILE [MODE]

MODE: "open" (default) tunnels; "auth:USER:PASS" wants Proxy-Authorization
Basic for those credentials and answers 407 otherwise; "deny" answers 403.
Each request line ("CONNECT host:port") is appended to LOGFILE.  Targets
other than loopback names and addresses are refused with 403, so that no
test can reach beyond this machine through it.
"""
import base64
import os
import socket
import sys
import threading

LOOPBACK = ("localhost", "127.0.0.1", "::1", "[::1]")


def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def read_head(conn):
    head = b""
    while b"\r\n\r\n" not in head:
        data = conn.recv(4096)
        if not data:
            return None
        head += data
    return head.decode("latin-1")


def answer(conn, status, reason, extra=""):
    conn.sendall(("HTTP/1.1 %d %s\r\n%sContent-Length: 0\r\n\r\n"
                  % (status, reason, extra)).encode())


def handle(conn, log, mode):
    with conn:
        head = read_head(conn)
        if head is None:
            return
        lines = head.split("\r\n")
        with open(log, "a") as f:
            f.write(lines[0] + "\n")
        method, target = lines[0].split(" ")[:2]
        host, _, port = target.rpartition(":")
        headers = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip()
                   for l in lines[1:] if ":" in l}
        if mode == "deny" or method != "CONNECT" or host not in LOOPBACK:
            answer(conn, 403, "Forbidden")
            return
        if mode.startswith("auth:"):
            # the scheme is case-insensitive (RFC 9110); lws sends "basic"
            want = base64.b64encode(mode[5:].encode()).decode()
            got = headers.get("proxy-authorization", "").split(" ")
            if len(got) != 2 or got[0].lower() != "basic" or got[1] != want:
                answer(conn, 407, "Proxy Authentication Required",
                       'Proxy-Authenticate: Basic realm="test"\r\n')
                return
        up = socket.create_connection((host.strip("[]"), int(port)))
        answer(conn, 200, "Connection established")
        t = threading.Thread(target=pipe, args=(up, conn), daemon=True)
        t.start()
        pipe(conn, up)
        t.join()
        up.close()


def main():
    portfile, log = sys.argv[1], sys.argv[2]
    mode = sys.argv[3] if len(sys.argv) > 3 else "open"
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(64)
    with open(portfile + ".tmp", "w") as f:
        f.write(str(lsock.getsockname()[1]))
    os.rename(portfile + ".tmp", portfile)
    while True:
        conn, _ = lsock.accept()
        threading.Thread(target=handle, args=(conn, log, mode),
                         daemon=True).start()


if __name__ == "__main__":
    main()
