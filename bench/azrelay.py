#!/usr/bin/python3
"""The reference relay of the benchmarks: a ProxyCommand that moves bytes
the way the Azure CLI's `az network bastion tunnel` does, written here
from the protocol description (shared/docs/PROTOCOL.md), not from the
CLI's code.

  azrelay.py --authority URL --arm URL --bastion ID --ca FILE HOST PORT

Client secret from AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET;
Entra token, ARM lookup of the Bastion, POST /api/tokens, then one
WebSocket (Debian's python3-websocket, as websocket-client is what the
CLI uses) with TCP_NODELAY. Two threads, one per direction: stdin is
read 4096 bytes at a time, each read sent as one binary message; each
message received is written whole to stdout. Whichever side ends first
ends both; the session is then deleted. SIGHUP (what ssh sends) ends the
tunnel the same way.
"""
import argparse
import json
import os
import signal
import socket
import ssl
import sys
import threading
import urllib.parse
import urllib.request

import websocket

READ_SIZE = 4096
ARM_API = "2024-01-01"


def request(ctx, method, url, form=None, headers=None):
    data = urllib.parse.urlencode(form).encode() if form else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers=headers or {})
    with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
        body = resp.read()
    return json.loads(body) if body else None


def arm_token(ctx, authority):
    form = {"grant_type": "client_credentials",
            "client_id": os.environ["AZURE_CLIENT_ID"],
            "client_secret": os.environ["AZURE_CLIENT_SECRET"],
            "scope": "https://management.azure.com/.default"}
    tenant = os.environ["AZURE_TENANT_ID"]
    url = f"{authority}/{tenant}/oauth2/v2.0/token"
    return request(ctx, "POST", url, form)["access_token"]


def vm_id(bastion_id, host):
    """The VM named host, in the Bastion's resource group."""
    segs = bastion_id.strip("/").split("/")
    return (f"/subscriptions/{segs[1]}/resourceGroups/{segs[3]}/providers/"
            f"Microsoft.Compute/virtualMachines/{host}")


def pump_up(ws, done):
    """stdin -> WebSocket: one message per read."""
    try:
        while not done.is_set():
            data = os.read(0, READ_SIZE)
            if not data:
                break
            ws.send_binary(data)
    except (OSError, websocket.WebSocketException):
        pass
    done.set()


def pump_down(ws, done):
    """WebSocket -> stdout: each message written whole."""
    out = sys.stdout.buffer
    try:
        while not done.is_set():
            data = ws.recv()
            if not data:
                break
            out.write(data if isinstance(data, bytes) else data.encode())
            out.flush()
    except (OSError, websocket.WebSocketException):
        pass
    done.set()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--authority", required=True)
    p.add_argument("--arm", required=True)
    p.add_argument("--bastion", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("host")
    p.add_argument("port", type=int)
    a = p.parse_args()
    ctx = ssl.create_default_context(cafile=a.ca)

    token = arm_token(ctx, a.authority)
    bastion = request(ctx, "GET", f"{a.arm}{a.bastion}?api-version={ARM_API}",
                      headers={"Authorization": f"Bearer {token}"})
    endpoint = bastion["properties"]["dnsName"]
    sess = request(ctx, "POST", f"https://{endpoint}/api/tokens",
                   {"resourceId": vm_id(a.bastion, a.host),
                    "protocol": "tcptunnel",
                    "workloadHostPort": str(a.port), "aztoken": token})
    url = (f"wss://{endpoint}/webtunnelv2/{sess['websocketToken']}"
           f"?X-Node-Id={sess['nodeId']}")
    ws = websocket.create_connection(
        url, sslopt={"ca_certs": a.ca},
        sockopt=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),))

    done = threading.Event()
    signal.signal(signal.SIGHUP, lambda *_: done.set())
    threads = [threading.Thread(target=f, args=(ws, done), daemon=True)
               for f in (pump_up, pump_down)]
    for t in threads:
        t.start()
    while not done.wait(0.2):
        pass
    try:
        ws.close(timeout=1)
    except (OSError, websocket.WebSocketException):
        pass
    try:
        request(ctx, "DELETE",
                f"https://{endpoint}/api/tokens/{sess['authToken']}",
                headers={"X-Node-Id": sess["nodeId"]})
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
