#!/usr/bin/python3
"""A loopback port where connections hang, as to an address off Azure
that drops packets: the listen backlog is full and never accepted.

  blackhole.py PORTFILE
"""
import os
import socket
import sys
import time

lsock = socket.socket()
lsock.bind(("127.0.0.1", 0))
lsock.listen(0)
port = lsock.getsockname()[1]
# Fill the accept queue; later SYNs to the port are then dropped.
fillers = []
for _ in range(4):
    s = socket.socket()
    s.setblocking(False)
    try:
        s.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    fillers.append(s)
time.sleep(0.2)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(port))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while True:
    time.sleep(60)
