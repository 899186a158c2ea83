#!/usr/bin/python3
"""A loopback TCP target for the relay tests, in place of a VM's service.

  tcp_target.py PORTFILE send N [hold]  send N deterministic bytes to each
                                        client, then close (or, with hold,
                                        keep the connection open)
  tcp_target.py PORTFILE sink OUTFILE   read to EOF, then write
                                        "<bytes> <sha256>" to OUTFILE
  tcp_target.py PORTFILE echo           echo everything back
  tcp_target.py PORTFILE greet OUTFILE  say "HELLO\n" first, as sshd does,
                                        then as sink
  tcp_target.py - pattern N             print the bytes "send N" sends
  tcp_target.py - fill OUTFILE          write to stdout until it stays full
                                        for a second, then exit and write
                                        "<bytes> <sha256>" to OUTFILE

The chosen port is written to PORTFILE once listening.  One connection at
a time is enough for these tests.
"""
import hashlib
import os
import socket
import sys
import threading
import time


BLOCK = hashlib.sha256(b"bastion-stdio").digest() * 2048  # 64 KiB


def pattern_blocks(n):
    """The same n bytes every time, in pieces, so that gigabytes need no
    gigabytes of memory and the sender's hash is known."""
    while n > 0:
        piece = BLOCK[:n]
        n -= len(piece)
        yield piece


def pattern(n):
    return b"".join(pattern_blocks(n))


def serve(conn, mode, args):
    with conn:
        if mode == "send":
            for piece in pattern_blocks(int(args[0])):
                conn.sendall(piece)
            if len(args) > 1 and args[1] == "hold":
                while conn.recv(65536):
                    pass
        elif mode in ("sink", "greet"):
            if mode == "greet":
                conn.sendall(b"HELLO\n")
            h, total = hashlib.sha256(), 0
            while True:
                data = conn.recv(1 << 16)
                if not data:
                    break
                h.update(data)
                total += len(data)
            tmp = args[0] + ".tmp"
            with open(tmp, "w") as f:
                f.write("%d %s\n" % (total, h.hexdigest()))
            os.rename(tmp, args[0])
        elif mode == "echo":
            while True:
                data = conn.recv(1 << 16)
                if not data:
                    break
                conn.sendall(data)


def fill(outfile):
    """Leaves a full pipe behind: its reader must have stopped reading."""
    os.set_blocking(1, False)
    data = BLOCK
    h, total, idle = hashlib.sha256(), 0, 0
    while idle < 10:
        try:
            n = os.write(1, data)
        except BlockingIOError:
            idle += 1
            time.sleep(0.1)
            continue
        h.update(data[:n])
        total += n
        idle = 0
    with open(outfile, "w") as f:
        f.write("%d %s\n" % (total, h.hexdigest()))


def main():
    portfile, mode, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    if mode == "pattern":
        for piece in pattern_blocks(int(args[0])):
            sys.stdout.buffer.write(piece)
        return
    if mode == "fill":
        fill(args[0])
        return
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    with open(portfile + ".tmp", "w") as f:
        f.write(str(lsock.getsockname()[1]))
    os.rename(portfile + ".tmp", portfile)
    while True:
        conn, _ = lsock.accept()
        threading.Thread(target=serve, args=(conn, mode, args),
                         daemon=True).start()


if __name__ == "__main__":
    main()
