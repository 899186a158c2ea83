#!/usr/bin/python3
"""Local emulator of Entra ID, ARM and the Azure Bastion data plane.

Every bastion-stdio test talks to this one process instead of Azure. It serves
HTTPS and WSS (HTTP/1.1 only) on one loopback port and routes by path:

  POST   /{tenant}/oauth2/v2.0/token                  Entra, client credentials
  GET    /subscriptions/.../bastionHosts/{name}       ARM bastion host
  GET    /subscriptions/.../virtualMachines/{vm}      ARM VM (also VMSS VMs)
  POST   /api/connection                              Developer SKU: data pod
  POST   /api/tokens                                  Bastion session token
  DELETE /api/tokens/{authToken}                      end a Bastion session
  GET    /webtunnelv2/{websocketToken}?X-Node-Id=ID   WebSocket relay
  GET    /omni/webtunnel/{websocketToken}             same, Developer SKU
  *      /_emu/...  (alias /_fake/...)                test control, no auth

Wire behaviour follows shared/docs/PROTOCOL.md (sections 4-9, 13, 14) and
AUTH.md (2.3, 2.7, 7.1, 7.2). ARM bodies are the azure-rest-api-specs
example payloads, loaded at run time, with only the fields a test needs
overridden.

Start (only /usr/bin/python3 and its stdlib are needed):

  /usr/bin/python3 tests/emulator/azure_emu.py --cert DIR/server.pem \
      --key DIR/server.key --config emu.json --port-file emu.port \
      [--listen 127.0.0.1] [--port 0] [--seed 0] [--fixtures DIR] [--verbose]

The chosen port is written to --port-file (temp file + rename) once the
server accepts connections. SIGTERM/SIGINT stop it cleanly (exit 0).
--no-tls serves plain HTTP/WS instead, for debugging only.

Config file (JSON; every key optional; resource ids compare
case-insensitively, as ARM does):

  {
   "tenants": {"<tenant>": {"clients": {"<client-id>": {"secret": "..."}}}},
   "bastions": {
     "<bastion id: /subscriptions/<s>/resourceGroups/<rg>/providers/
       Microsoft.Network/bastionHosts/<name>>": {
       "sku": "Standard",          # Basic|Standard|Premium|Developer|...
                                   #   default Standard
       "enableTunneling": true,    # default true (null is shown as null)
       "enableIpConnect": false,   # default false
       "dnsName": null,            # null = "localhost:<port>"
       "dataPod": null,            # Developer: /api/connection's answer;
                                   #   null = "<listen address>:<port>"
       "absent": ["enableTunneling"],  # keys removed from the ARM body
                                       #   ("sku" or properties.* names)
       "extra_properties": {}      # merged into ARM "properties" as is
     }},
   "vms": {
     "<VM id: /subscriptions/<s>/resourceGroups/<rg>/providers/
       Microsoft.Compute/virtualMachines/<vm>, or a VMSS instance id
       .../virtualMachineScaleSets/<ss>/virtualMachines/<n>>": {
       "ip": "127.0.0.1",          # must be loopback: the relay target
       "ports": [22, 2222],        # optional allow-list of workloadHostPort
       "port_map": {"22": 2222}}}, # optional workloadHostPort -> local port
   "ip_map": {"10.0.0.4": "127.0.0.1"},  # IP connect: target IP -> loopback
   "port_map": {"22": 2222},             # fallback for every target
   "token_lifetime_s": 3599,             # Entra access token lifetime
   "faults": {...}                       # initial faults, see below
  }

Which bastion a data-plane request belongs to: the one whose dnsName equals
the Host header, else a Developer bastion whose dataPod equals it, else the
first bastion in the config (all bastions may share "localhost:<port>").

Answers the public sources leave open (PROTOCOL.md section 15) are our
choice; the wording of these messages is ours too:
  POST /api/tokens, checked in this order: status/delay faults; an
    Authorization header, a non-form Content-Type or a JSON body -> 500
    {"message": "Unexpected internal error"}; a missing resourceId,
    protocol, workloadHostPort or aztoken -> the same 500; aztoken not
    issued here or expired -> 401 "Access denied"; protocol other than
    tcptunnel -> 400; bad port -> 400; SKU Basic, or tunneling not true
    on a non-Developer bastion -> 400 "Tunneling is disabled";
    bh-hostConnect without a hostname equal to its IP -> 404 "Invalid IP
    address for connection."; IP connect off (or Developer SKU) -> 403 "IP
    based connection is not enabled"; a resourceId that is no VM, VMSS VM or
    bh-hostConnect id -> 500; unknown VM -> 404; port not in "ports" -> 403.
    "token" and X-Node-Id on the POST are accepted and ignored.
  DELETE /api/tokens: unknown -> 404 "Session already deleted"; wrong
    X-Node-Id -> 400; an open WebSocket of that session keeps running.
  WebSocket: unknown or used token, wrong X-Node-Id, the path of the other
    SKU or the old /webtunnel/ path -> 404 before the upgrade; target
    unreachable -> 101 then close 1011; target EOF -> remaining data, then
    close 1000; client frame with RSV bits, unmasked, FIN=0, continuation
    or unknown opcode -> close 1002; payload > max_client_frame -> 1009.
  ARM: no, unknown or expired Bearer token -> 401 InvalidAuthenticationToken
    (the message says which).

Faults (config "faults", POST /_emu/faults merges a JSON object into the
current set, a null value removes a key, unknown keys are refused with 400):

  <role>_status     int, or {"status": int, "body": str|object,
                    "content_type": str, "headers": {..}, "count": N}:
                    answer the next N (default: all) requests of that role
                    this way. Roles: entra, arm, token (POST /api/tokens),
                    delete, connection, ws (the upgrade request).
  <role>_delay_ms   delay before answering requests of that role.
  ws_after_101      "http400": 101, then a raw Tomcat-style HTTP 400 page,
                    then TCP close; "silence": 101, then nothing (input is
                    read and dropped, nothing relayed); "no_upgrade_headers":
                    101 without Upgrade/Connection; "no_accept": 101
                    without Sec-WebSocket-Accept; "bad_accept": 101 with a
                    wrong accept value. The last three relay normally.
  close_after_bytes N  after relaying N bytes to the client, close the WS
                    (close_code, default 1000, and close_reason) and the
                    target. 0 closes before any data (e.g. 1008 "policy").
  close_after_s T   same, T seconds after the upgrade.
  close_code, close_reason  used by the two faults above.
  split_frames      true: server->client data as messages of random size
                    1..70000 bytes; some are text frames, some fragmented
                    (binary + continuation) with pings between fragments.
                    Seeded by --seed.
  rsv1              true: set RSV1 on server data frames (quirk Q4).
  server_ping_interval_s  send a ping every that many seconds.
  ignore_pings      true: do not answer client pings.
  stall             true: open relays stop reading and writing in both
                    directions (no pongs either) until it is cleared.
  max_client_frame  largest client frame payload accepted (default 8192);
                    bigger -> close 1009.
Relay faults are read live, so they also act on open sessions (except
close_after_s, whose timer starts at the upgrade).

Test endpoints (plain JSON, no auth, never logged in /_emu/requests):

  GET  /_emu/sessions   {"active": [{"authToken_sha", "resourceId", "state":
                        issued|open|closed, "ws_close_code", "ws_close_by",
                        ...}], "created": N, "deleted": N}. A session stays
                        active until DELETEd, even after its WS closed.
  GET  /_emu/requests[?since=SEQ]  request log: seq, time, conn, method,
                        path (tokens as "<token>"), headers (Authorization
                        "<redacted>"), form (field names), form_values
                        (secrets "<redacted>"), json_keys, role, status.
  GET  /_emu/counters   requests per role, TCP connections, TLS handshake
                        failures, internal_errors (emulator bugs: tests
                        should expect 0).
  GET  /_emu/faults     current faults;  POST /_emu/faults  merge.
  GET  /_emu/config     current config;  POST /_emu/config  replace the
                        given top-level keys (not "faults").
  POST /_emu/reset      clear faults, request log, counters and sessions;
                        open relays are aborted. Issued Entra tokens stay.
"""

import argparse
import asyncio
import base64
import copy
import email.utils
import hashlib
import http
import ipaddress
import json
import os
import random
import re
import secrets
import signal
import ssl
import struct
import sys
import time
import urllib.parse
import uuid

VERBOSE = False

READ_CHUNK = 65536          # target -> client read size (one WS frame each)
STREAM_LIMIT = 1 << 18      # StreamReader buffer; bigger = fewer wakeups
READ_LIMIT = 1 << 24        # client frames above this end the relay at once
MAX_BODY = 1 << 20          # largest HTTP request body accepted
MAX_HEAD = 65536            # largest HTTP request head accepted
MAX_LOG = 20000             # request log entries kept (oldest dropped)
CLOSE_GRACE_S = 2.0         # wait for the client's close reply this long
CONNECT_TIMEOUT_S = 5.0     # relay target connect timeout
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
ARM_SCOPES = ("https://management.core.windows.net//.default",
              "https://management.azure.com/.default")
SECRET_FIELDS = ("aztoken", "azToken", "token", "client_secret",
                 "client_assertion")
ROLES = ("entra", "arm", "token", "delete", "connection", "ws")
COUNTER_NAMES = ("entra", "arm", "tokens_post", "tokens_delete",
                 "connection", "ws", "emu", "other", "connections",
                 "tls_failures", "internal_errors")

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA

VM_RE = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
                   r"Microsoft\.Compute/virtualMachines/[^/]+$", re.I)
VMSS_RE = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
                     r"Microsoft\.Compute/virtualMachineScaleSets/[^/]+/"
                     r"virtualMachines/[^/]+$", re.I)
HOSTCONNECT_RE = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/"
                            r"providers/Microsoft\.Network/bh-hostConnect/"
                            r"([^/]+)$", re.I)
BASTION_RE = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/"
                        r"providers/Microsoft\.Network/bastionHosts/[^/]+$",
                        re.I)


def log(msg):
    if VERBOSE:
        stamp = time.strftime("%H:%M:%S")
        print(f"azure_emu {stamp} {msg}", file=sys.stderr, flush=True)


class ConfigError(Exception):
    pass


class HttpError(Exception):
    """A request we cannot parse: answer with this status and close."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------- helpers

def jdump(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def sha256_hex(text):
    return hashlib.sha256(text.encode()).hexdigest()


def is_loopback(addr):
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


def norm_ip(text):
    """Canonical text of an IP address, or None if it is not one."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def parse_form(body):
    """Form fields in order, or None if the body is not valid form text."""
    try:
        return urllib.parse.parse_qsl(body.decode("utf-8"),
                                      keep_blank_values=True,
                                      strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        return None


def media_type(req):
    return req.header("content-type").split(";")[0].strip().lower()


# ---------------------------------------------------------------- config

def load_fixtures(fixture_dir):
    """The example payloads (200 bodies) the ARM answers are built from."""
    names = {"bastion": "BastionHostGet.json",
             "bastion_dev": "BastionHostDeveloperGet.json",
             "vm": "VirtualMachine_Get.json",
             "vmss_vm": "VirtualMachineScaleSetVM_Get_WithUserData.json"}
    out = {}
    for key, name in names.items():
        with open(os.path.join(fixture_dir, name), encoding="utf-8") as f:
            out[key] = json.load(f)["responses"]["200"]["body"]
    return out


def find_fixture_dir(given):
    """--fixtures, else the repo copy, else shared/ beside the repo."""
    if given:
        return given
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(os.path.dirname(here))
    sub = os.path.join("fixtures", "azure-rest-api-specs")
    for cand in (os.path.join(repo, "tests", sub),
                 os.path.join(os.path.dirname(repo), "shared", sub),
                 os.path.join("/work/shared", sub)):
        if os.path.isdir(cand):
            return cand
    raise ConfigError("fixtures not found; use --fixtures DIR")


def check_loopback(what, addr):
    # Safety: the relay must never connect anywhere but loopback.
    if not is_loopback(addr):
        raise ConfigError(f"{what}: {addr!r} is not a loopback address")


def check_port_map(what, pmap):
    for k, v in pmap.items():
        if not (str(k).isdigit() and isinstance(v, int) and 0 < v < 65536):
            raise ConfigError(f"{what}: bad port_map entry {k!r}: {v!r}")


def validate_config(cfg):
    """Raise ConfigError on anything the emulator could misread."""
    if not isinstance(cfg, dict):
        raise ConfigError("config must be a JSON object")
    for bid in cfg.get("bastions", {}):
        if not BASTION_RE.match(bid):
            raise ConfigError(f"not a bastionHosts id: {bid}")
    for vid, vm in cfg.get("vms", {}).items():
        if not (VM_RE.match(vid) or VMSS_RE.match(vid)):
            raise ConfigError(f"not a VM or VMSS VM id: {vid}")
        check_loopback(vid, vm.get("ip", ""))
        check_port_map(vid, vm.get("port_map", {}))
    for src, dst in cfg.get("ip_map", {}).items():
        if norm_ip(src) is None:
            raise ConfigError(f"ip_map: {src!r} is not an IP address")
        check_loopback(f"ip_map[{src}]", dst)
    check_port_map("port_map", cfg.get("port_map", {}))


def ci_get(mapping, key):
    """Case-insensitive dict lookup: returns (canonical key, value)."""
    low = key.lower()
    for k, v in mapping.items():
        if k.lower() == low:
            return k, v
    return None, None


# ---------------------------------------------------------------- faults

def normalize_faults(update):
    """Validate a fault update; status faults become dicts."""
    known = {f"{r}_status" for r in ROLES} | {f"{r}_delay_ms" for r in ROLES}
    known |= {"ws_after_101", "close_after_bytes", "close_after_s",
              "close_code", "close_reason", "split_frames", "rsv1",
              "server_ping_interval_s", "ignore_pings", "stall",
              "max_client_frame"}
    if not isinstance(update, dict):
        raise ConfigError("faults must be a JSON object")
    bad = sorted(set(update) - known)
    if bad:
        raise ConfigError(f"unknown fault keys {bad}; known: {sorted(known)}")
    out = {}
    for key, val in update.items():
        if key.endswith("_status") and isinstance(val, int):
            val = {"status": val}
        if key.endswith("_status") and val is not None:
            if not isinstance(val, dict) or not isinstance(
                    val.get("status"), int):
                raise ConfigError(f"{key}: needs an int status")
            val = dict(val)
        out[key] = val
    mode = out.get("ws_after_101")
    if mode not in (None, "http400", "silence", "no_upgrade_headers",
                    "no_accept", "bad_accept"):
        raise ConfigError(f"ws_after_101: unknown mode {mode!r}")
    return out


def merge_faults(faults, update):
    for key, val in normalize_faults(update).items():
        if val is None:
            faults.pop(key, None)
        else:
            faults[key] = val


# ---------------------------------------------------------------- HTTP

class Request:
    __slots__ = ("method", "target", "path", "query", "version", "headers",
                 "body", "conn")

    def header(self, name, default=""):
        """Value of a header (repeats joined by ', '), case-insensitive."""
        low = name.lower()
        vals = [v for k, v in self.headers if k.lower() == low]
        return ", ".join(vals) if vals else default

    def has_header(self, name):
        return any(k.lower() == name.lower() for k, _ in self.headers)

    def keep_alive(self):
        conn = self.header("connection").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in conn
        return "close" not in conn


class Response:
    __slots__ = ("status", "body", "ctype", "headers")

    def __init__(self, status, body=b"", ctype=None, headers=None):
        self.status = status
        self.body = body
        self.ctype = ctype
        self.headers = list(headers or [])


def json_resp(status, obj, headers=None):
    return Response(status, jdump(obj), "application/json; charset=utf-8",
                    headers)


def text_resp(status, text, ctype="text/plain; charset=utf-8"):
    return Response(status, text.encode(), ctype)


def reason_phrase(status):
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Status"


def parse_head(head):
    """Request line and headers of one request head (bytes, no CRLFCRLF)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, "bad request line")
    req = Request()
    req.method, req.target, req.version = parts
    req.headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(400, "bad header line")
        req.headers.append((name, value.strip()))
    split = urllib.parse.urlsplit(req.target)
    req.path = split.path
    req.query = dict(urllib.parse.parse_qsl(split.query,
                                            keep_blank_values=True))
    return req


async def read_request(reader, writer):
    """Next request on the connection, or None at a clean EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial.strip():
            return None
        raise HttpError(400, "truncated request head")
    except asyncio.LimitOverrunError:
        raise HttpError(431, "request head too large")
    if len(head) > MAX_HEAD:
        raise HttpError(431, "request head too large")
    req = parse_head(head[:-4])
    if req.has_header("transfer-encoding"):
        raise HttpError(501, "chunked request bodies are not supported")
    try:
        length = int(req.header("content-length", "0"))
    except ValueError:
        raise HttpError(400, "bad Content-Length")
    if length < 0 or length > MAX_BODY:
        raise HttpError(413, "body too large")
    if length and "100-continue" in req.header("expect").lower():
        # libcurl waits up to 1 s for this before sending bigger bodies.
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    req.body = await reader.readexactly(length) if length else b""
    return req


def response_bytes(resp, keep_alive):
    lines = [f"HTTP/1.1 {resp.status} {reason_phrase(resp.status)}",
             f"Date: {email.utils.formatdate(usegmt=True)}"]
    if resp.status not in (204, 304):
        lines.append(f"Content-Length: {len(resp.body)}")
        if resp.ctype:
            lines.append(f"Content-Type: {resp.ctype}")
    lines.append("Connection: " + ("keep-alive" if keep_alive else "close"))
    lines += [f"{k}: {v}" for k, v in resp.headers]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + (b"" if resp.status in (204, 304) else resp.body)


# ---------------------------------------------------------------- state

class Session:
    """One Bastion session: a POST /api/tokens answer and its WebSocket."""

    def __init__(self, resource_id, bastion, developer, target, port,
                 req_port, hostname):
        self.auth = secrets.token_urlsafe(48)
        self.node = secrets.token_hex(16).upper()
        self.ws_token = secrets.token_urlsafe(64)
        self.resource_id = resource_id
        self.bastion = bastion
        self.developer = developer
        self.target = target          # loopback IP (or an unmapped IP)
        self.port = port              # local port after port_map
        self.req_port = req_port      # workloadHostPort as sent
        self.hostname = hostname
        self.state = "issued"
        self.close_code = None
        self.close_by = None
        self.bytes_up = 0             # client -> target
        self.bytes_down = 0           # target -> client
        self.created = time.time()

    def note_close(self, code, by):
        # The first close decides what the session table shows.
        if self.close_code is None:
            self.close_code, self.close_by = code, by

    def public(self):
        return {"authToken_sha": sha256_hex(self.auth),
                "resourceId": self.resource_id, "bastion": self.bastion,
                "state": self.state, "ws_close_code": self.close_code,
                "ws_close_by": self.close_by,
                "workloadHostPort": self.req_port,
                "hostname": self.hostname, "bytes_up": self.bytes_up,
                "bytes_down": self.bytes_down,
                "age_s": round(time.time() - self.created, 3)}


class Emulator:
    """All mutable state: config, faults, tokens, sessions, request log."""

    def __init__(self, cfg, fixtures, seed, listen):
        validate_config(cfg)
        self.cfg = cfg
        self.fixtures = fixtures
        self.faults = {}
        merge_faults(self.faults, cfg.get("faults", {}))
        self.rng = random.Random(seed)
        self.listen = listen
        self.port = 0
        self.tokens = {}              # Entra access token -> expiry (epoch)
        self.sessions = {}            # authToken -> Session
        self.ws_index = {}            # unused websocketToken -> Session
        self.relays = set()
        self.log = []
        self.seq = 0
        self.conn_seq = 0
        self.reset_counters()

    def internal_error(self, exc):
        """An emulator bug: counted so tests can assert there were none."""
        self.counters["internal_errors"] += 1
        log(f"internal error: {exc!r}")

    def reset_counters(self):
        self.counters = dict.fromkeys(COUNTER_NAMES, 0)
        self.created = 0
        self.deleted = 0

    def reset(self):
        self.faults.clear()
        self.log.clear()
        self.sessions.clear()
        self.ws_index.clear()
        self.reset_counters()
        for relay in list(self.relays):
            relay.abort()

    # -- Entra tokens

    def issue_token(self, tenant, client, scope):
        lifetime = int(self.cfg.get("token_lifetime_s", 3599))
        token = make_access_token(tenant, client, scope, lifetime)
        self.tokens[token] = time.time() + lifetime
        return token, lifetime

    def token_state(self, token):
        exp = self.tokens.get(token)
        if exp is None:
            return "unknown"
        return "valid" if exp > time.time() else "expired"

    # -- bastions

    def bastion_dns(self, conf):
        return conf.get("dnsName") or f"localhost:{self.port}"

    def bastion_pod(self, conf):
        host = self.listen if ":" not in self.listen else f"[{self.listen}]"
        return conf.get("dataPod") or f"{host}:{self.port}"

    def bastion_for_host(self, host):
        """(id, conf) of the bastion a data-plane request is meant for."""
        items = list(self.cfg.get("bastions", {}).items())
        host = host.lower()
        for bid, conf in items:
            if self.bastion_dns(conf).lower() == host:
                return bid, conf
        for bid, conf in items:
            if is_developer(conf) and self.bastion_pod(conf).lower() == host:
                return bid, conf
        return items[0] if items else (None, None)

    # -- faults

    def take_status_fault(self, role):
        """The configured failure for this request, counting it down."""
        fault = self.faults.get(f"{role}_status")
        if not fault:
            return None
        if fault.get("count") is not None:
            fault["count"] -= 1
            if fault["count"] <= 0:
                del self.faults[f"{role}_status"]
        return fault_response(role, fault)

    async def fault_delay(self, role):
        ms = self.faults.get(f"{role}_delay_ms")
        if ms:
            await asyncio.sleep(ms / 1000)

    # -- request log

    def record(self, req, role, status, redact_last=False):
        self.seq += 1
        path = req.path
        if redact_last:
            path = path.rsplit("/", 1)[0] + "/<token>"
        query = urllib.parse.urlsplit(req.target).query
        if query:
            path += "?" + query
        entry = {"seq": self.seq, "time": round(time.time(), 3),
                 "conn": req.conn, "role": role, "method": req.method,
                 "path": path, "headers": logged_headers(req),
                 "status": status}
        entry.update(body_summary(req))
        self.log.append(entry)
        del self.log[:-MAX_LOG]
        log(f"{req.method} {path} -> {status}")


def is_developer(conf):
    return str(conf.get("sku", "Standard")).lower() in ("developer",
                                                        "quickconnect")


def logged_headers(req):
    out = {}
    for k, v in req.headers:
        if k.lower() == "authorization":
            v = "<redacted>"
        out[k] = f"{out[k]}, {v}" if k in out else v
    return out


def body_summary(req):
    """Field names (and redacted values) of form or JSON bodies."""
    if not req.body:
        return {}
    mtype = media_type(req)
    if mtype == "application/x-www-form-urlencoded":
        fields = parse_form(req.body) or []
        return {"form": [k for k, _ in fields],
                "form_values": {k: "<redacted>" if k in SECRET_FIELDS else v
                                for k, v in fields}}
    try:
        obj = json.loads(req.body)
    except ValueError:
        return {"body_bytes": len(req.body)}
    return {"json_keys": list(obj) if isinstance(obj, dict) else []}


def fault_response(role, fault):
    status = fault["status"]
    body = fault.get("body")
    if body is None:
        body = default_error_body(role, status)
    if not isinstance(body, str):
        body = json.dumps(body)
    ctype = fault.get("content_type") or guess_ctype(body)
    return Response(status, body.encode(), ctype,
                    list(fault.get("headers", {}).items()))


def default_error_body(role, status):
    text = f"emulated failure {status}"
    if role == "entra":
        return entra_error_obj("temporarily_unavailable", 50033, text)
    if role == "arm":
        return {"error": {"code": "InternalServerError", "message": text}}
    return {"message": text}


def guess_ctype(body):
    try:
        json.loads(body)
        return "application/json; charset=utf-8"
    except ValueError:
        pass
    if body.lstrip().startswith("<"):
        return "text/html; charset=utf-8"
    return "text/plain; charset=utf-8"


# ---------------------------------------------------------------- Entra

def make_access_token(tenant, client, scope, lifetime):
    """An opaque, JWT-shaped token (three base64url parts), > 1000 chars.

    Nothing verifies its signature; the emulator only looks it up in the
    table of issued tokens.
    """
    now = int(time.time())
    header = {"typ": "JWT", "alg": "RS256", "x5t": b64url(os.urandom(20)),
              "kid": b64url(os.urandom(20))}
    claims = {"aud": scope.rsplit("/.default", 1)[0],
              "iss": f"https://sts.windows.net/{tenant}/", "iat": now,
              "nbf": now, "exp": now + lifetime, "appid": client,
              "appidacr": "1", "idp": f"https://sts.windows.net/{tenant}/",
              "oid": str(uuid.uuid4()), "sub": str(uuid.uuid4()),
              "tid": tenant, "uti": b64url(os.urandom(16)), "ver": "1.0",
              "xms_emu": b64url(os.urandom(400))}
    parts = [b64url(jdump(header)), b64url(jdump(claims)),
             b64url(os.urandom(256))]
    return ".".join(parts)


def entra_error_obj(error, code, text, client_request_id=None):
    stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    trace = str(uuid.uuid4())
    # Entra echoes the client's client-request-id as the correlation id.
    corr = client_request_id or str(uuid.uuid4())
    desc = (f"AADSTS{code}: {text} Trace ID: {trace} Correlation ID: "
            f"{corr} Timestamp: {stamp}")
    return {"error": error, "error_description": desc, "error_codes": [code],
            "timestamp": stamp, "trace_id": trace, "correlation_id": corr}


def entra_error(req, status, error, code, text):
    obj = entra_error_obj(error, code, text, req.header("client-request-id"))
    return json_resp(status, obj, [("x-ms-request-id", obj["trace_id"]),
                                   ("Cache-Control", "no-store, no-cache")])


async def handle_entra(emu, req, tenant):
    """POST /{tenant}/oauth2/v2.0/token, client_credentials with a secret."""
    await emu.fault_delay("entra")
    fault = emu.take_status_fault("entra")
    if fault:
        return fault
    _, tconf = ci_get(emu.cfg.get("tenants", {}), tenant)
    if tconf is None:
        return entra_error(req, 400, "invalid_request", 90002,
                           f"Tenant '{tenant}' not found. Check to make sure"
                           " you have the correct tenant ID and are signing"
                           " into the correct cloud.")
    form = dict(parse_form(req.body) or [])
    for field in ("grant_type", "client_id"):
        if not form.get(field):
            return entra_error(req, 400, "invalid_request", 900144,
                               "The request body must contain the following"
                               f" parameter: '{field}'.")
    if form["grant_type"] != "client_credentials":
        return entra_error(req, 400, "unsupported_grant_type", 70003,
                           "The app requested an unsupported grant type "
                           f"'{form['grant_type']}'.")
    return check_client(emu, req, tenant, tconf, form)


def check_client(emu, req, tenant, tconf, form):
    client = form["client_id"]
    _, cconf = ci_get(tconf.get("clients", {}), client)
    if cconf is None:
        return entra_error(req, 400, "unauthorized_client", 700016,
                           f"Application with identifier '{client}' was not"
                           f" found in the directory '{tenant}'. This can"
                           " happen if the application has not been"
                           " installed by the administrator of the tenant"
                           " or consented to by any user in the tenant. You"
                           " may have sent your authentication request to"
                           " the wrong tenant.")
    if form.get("client_secret") != cconf.get("secret"):
        return entra_error(req, 401, "invalid_client", 7000215,
                           "Invalid client secret provided. Ensure the"
                           " secret being sent in the request is the client"
                           " secret value, not the client secret ID, for a"
                           f" secret added to app '{client}'.")
    scope = form.get("scope", "")
    if scope not in ARM_SCOPES:
        return entra_error(req, 400, "invalid_scope", 70011,
                           "The provided request must include a 'scope'"
                           " input parameter. The provided value for the"
                           " input parameter 'scope' is not valid. The"
                           f" scope {scope} is not valid.")
    token, lifetime = emu.issue_token(tenant, client, scope)
    body = {"token_type": "Bearer", "expires_in": lifetime,
            "ext_expires_in": lifetime, "access_token": token}
    return json_resp(200, body, [("x-ms-request-id", str(uuid.uuid4())),
                                 ("Cache-Control", "no-store, no-cache")])


# ---------------------------------------------------------------- ARM

def arm_error(status, code, message):
    return json_resp(status, {"error": {"code": code, "message": message}},
                     [("x-ms-request-id", str(uuid.uuid4())),
                      ("x-ms-correlation-request-id", str(uuid.uuid4()))])


def arm_auth_error(emu, req):
    """None if the request carries a valid issued Bearer token."""
    scheme, _, token = req.header("authorization").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        msg = "Authentication failed. The 'Authorization' header is missing."
    else:
        state = emu.token_state(token.strip())
        if state == "valid":
            return None
        msg = ("The access token expiry UTC time is earlier than current"
               " UTC time." if state == "expired"
               else "The access token is invalid.")
    resp = arm_error(401, "InvalidAuthenticationToken", msg)
    resp.headers.append(("WWW-Authenticate",
                         'Bearer error="invalid_token", '
                         'error_description="The access token is missing'
                         ' or invalid."'))
    return resp


def arm_resource(segs):
    """(kind, canonical-ish id) for the ARM resource paths we serve."""
    low = [s.lower() for s in segs]
    base_ok = (len(low) >= 8 and low[0] == "subscriptions"
               and low[2] == "resourcegroups" and low[4] == "providers")
    if not base_ok:
        return None, None
    rid = "/" + "/".join(segs)
    tail = low[5:]
    if len(tail) == 3 and tail[:2] == ["microsoft.network", "bastionhosts"]:
        return "bastion", rid
    if len(tail) == 3 and tail[:2] == ["microsoft.compute",
                                       "virtualmachines"]:
        return "vm", rid
    if (len(tail) == 5 and tail[:2] == ["microsoft.compute",
                                        "virtualmachinescalesets"]
            and tail[3] == "virtualmachines"):
        return "vmss_vm", rid
    return None, rid


async def handle_arm(emu, req, segs):
    await emu.fault_delay("arm")
    fault = emu.take_status_fault("arm")
    if fault:
        return fault
    if req.method != "GET":
        return arm_error(405, "MethodNotAllowed", "Only GET is emulated.")
    denied = arm_auth_error(emu, req)
    if denied:
        return denied
    if not req.query.get("api-version"):
        return arm_error(400, "MissingApiVersionParameter",
                         "The api-version query parameter (?api-version=)"
                         " is required for all requests.")
    kind, rid = arm_resource(segs)
    table = {"bastion": "bastions", "vm": "vms", "vmss_vm": "vms"}.get(kind)
    cid, conf = ci_get(emu.cfg.get(table, {}), rid or "")
    if conf is None:
        return arm_not_found(kind, segs)
    body = (bastion_body(emu, cid, conf) if kind == "bastion"
            else vm_body(emu, kind, cid))
    return json_resp(200, body, [("x-ms-request-id", str(uuid.uuid4()))])


def arm_not_found(kind, segs):
    rg = segs[3] if len(segs) > 3 else ""
    rtype = {"bastion": "Microsoft.Network/bastionHosts",
             "vm": "Microsoft.Compute/virtualMachines",
             "vmss_vm": "Microsoft.Compute/virtualMachineScaleSets/"
                        f"{segs[-3]}/virtualMachines"}.get(kind, "resource")
    name = segs[-1] if segs else ""
    return arm_error(404, "ResourceNotFound",
                     f"The Resource '{rtype}/{name}' under resource group"
                     f" '{rg}' was not found. For more details please go to"
                     " https://aka.ms/ARMResourceNotFoundFix")


def bastion_body(emu, bid, conf):
    """The fixture body with the fields the config controls overridden."""
    dev = is_developer(conf)
    body = copy.deepcopy(emu.fixtures["bastion_dev" if dev else "bastion"])
    body["id"] = bid
    body["name"] = bid.rsplit("/", 1)[1]
    body["sku"] = {"name": conf.get("sku", "Standard")}
    props = body["properties"]
    props["dnsName"] = emu.bastion_dns(conf)
    # The Developer example has no tunnel flags; add them only if asked.
    for key, default in (("enableTunneling", True),
                         ("enableIpConnect", False)):
        if key in conf or key in props:
            props[key] = conf.get(key, default)
    props.update(conf.get("extra_properties", {}))
    for key in conf.get("absent", []):
        (body if key == "sku" else props).pop(key, None)
    return body


def vm_body(emu, kind, vid):
    body = copy.deepcopy(emu.fixtures[kind])
    segs = vid.strip("/").split("/")
    body["id"] = vid
    if kind == "vmss_vm":
        body["name"] = f"{segs[-3]}_{segs[-1]}"
        body["instanceId"] = segs[-1]
    else:
        body["name"] = segs[-1]
    return body


# ---------------------------------------------------------------- tokens

def bastion_error(status, message):
    return json_resp(status, {"message": message})


def unexpected_error():
    # The live service's answer to anything it cannot parse (PROTOCOL 4.1).
    return bastion_error(500, "Unexpected internal error")


async def handle_tokens_post(emu, req):
    """POST /api/tokens: a Bastion session for one TCP connection."""
    await emu.fault_delay("token")
    fault = emu.take_status_fault("token")
    if fault:
        return fault
    # JSON bodies and an Authorization header both give 500 live (Q9).
    if req.has_header("authorization"):
        return unexpected_error()
    if media_type(req) != "application/x-www-form-urlencoded":
        return unexpected_error()
    fields = parse_form(req.body)
    if fields is None or req.body.lstrip().startswith(b"{"):
        return unexpected_error()
    form = dict(fields)
    for name in ("resourceId", "protocol", "workloadHostPort", "aztoken"):
        if not form.get(name):
            # Unknown live; the service fails opaquely on bad input.
            return unexpected_error()
    if emu.token_state(form["aztoken"]) != "valid":
        return bastion_error(401, "Access denied")
    if form["protocol"] != "tcptunnel":
        return bastion_error(400, "Unsupported protocol")
    port = form["workloadHostPort"]
    if not port.isdigit() or not 0 < int(port) < 65536:
        return bastion_error(400, "Invalid workloadHostPort")
    return new_session(emu, req, form, int(port))


def new_session(emu, req, form, port):
    bid, bconf = emu.bastion_for_host(req.header("host"))
    if bid is None:
        return unexpected_error()
    dev = is_developer(bconf)
    sku = str(bconf.get("sku", "Standard")).lower()
    if sku == "basic" or (not dev and bconf.get("enableTunneling",
                                                 True) is not True):
        return bastion_error(400, "Tunneling is disabled")
    rid = form["resourceId"]
    target = resolve_target(emu, bconf, dev, rid, form, port)
    if isinstance(target, Response):
        return target
    host, local_port = target
    sess = Session(rid, bid, dev, host, local_port, port,
                   form.get("hostname"))
    emu.sessions[sess.auth] = sess
    emu.ws_index[sess.ws_token] = sess
    emu.created += 1
    # X-Node-Id and "token" (previous session) are accepted and ignored.
    return json_resp(200, {"authToken": sess.auth, "nodeId": sess.node,
                           "websocketToken": sess.ws_token, "username": "",
                           "dataSource": "", "availableDataSources": []})


def resolve_target(emu, bconf, dev, rid, form, port):
    """(ip, local port) for a resourceId, or an error Response."""
    m = HOSTCONNECT_RE.match(rid)
    if m:
        ip = norm_ip(urllib.parse.unquote(m.group(1)))
        if ip is None or norm_ip(form.get("hostname", "")) != ip:
            return bastion_error(404, "Invalid IP address for connection.")
        if dev or not bconf.get("enableIpConnect", False):
            # Live status is 403 (AGB PR #9149); the wording is ours.
            return bastion_error(403, "IP based connection is not enabled")
        ip_map = {norm_ip(k): v for k, v in emu.cfg.get("ip_map", {}).items()}
        ip = ip_map.get(ip, ip)
        return ip, map_port(emu, {}, port)
    if not (VM_RE.match(rid) or VMSS_RE.match(rid)):
        return unexpected_error()
    _, vm = ci_get(emu.cfg.get("vms", {}), rid)
    if vm is None:
        # Wording is ours; the live text is not public.
        return bastion_error(404, "Target virtual machine not found")
    if "ports" in vm and port not in vm["ports"]:
        return bastion_error(403, f"Port {port} is not allowed for this"
                             " target")
    return vm["ip"], map_port(emu, vm, port)


def map_port(emu, vm, port):
    key = str(port)
    return vm.get("port_map", {}).get(
        key, emu.cfg.get("port_map", {}).get(key, port))


async def handle_tokens_delete(emu, req, auth):
    await emu.fault_delay("delete")
    fault = emu.take_status_fault("delete")
    if fault:
        return fault
    sess = emu.sessions.get(auth)
    if sess is None:
        return bastion_error(404, "Session already deleted")
    if req.header("x-node-id") != sess.node:
        return bastion_error(400, "Invalid node id")
    # An open WebSocket is left running: live behaviour is not documented.
    del emu.sessions[auth]
    emu.ws_index.pop(sess.ws_token, None)
    emu.deleted += 1
    return Response(204)


async def handle_connection(emu, req):
    """POST /api/connection (Developer SKU): answers the data pod host."""
    await emu.fault_delay("connection")
    fault = emu.take_status_fault("connection")
    if fault:
        return fault
    try:
        body = json.loads(req.body)
    except ValueError:
        body = None
    if media_type(req) != "application/json" or not isinstance(body, dict):
        return text_resp(400, "Bad Request")
    if emu.token_state(str(body.get("azToken"))) != "valid":
        return text_resp(401, "Unauthorized")
    _, bconf = ci_get(emu.cfg.get("bastions", {}),
                      str(body.get("bastionResourceId")))
    if bconf is None or not is_developer(bconf):
        return text_resp(404, "Bastion not found")
    return text_resp(200, emu.bastion_pod(bconf))


# ---------------------------------------------------------------- /_emu

async def handle_emu(emu, req, what):
    get = req.method == "GET"
    try:
        if get and what == "sessions":
            return json_resp(200, sessions_view(emu))
        if get and what == "requests":
            since = int(req.query.get("since", "0"))
            return json_resp(200, [e for e in emu.log if e["seq"] > since])
        if get and what == "counters":
            return json_resp(200, emu.counters)
        if get and what in ("faults", "config"):
            return json_resp(200, emu.faults if what == "faults" else emu.cfg)
        if req.method == "POST":
            return emu_post(emu, req, what)
    except (ValueError, ConfigError) as e:
        return json_resp(400, {"message": str(e)})
    return json_resp(404, {"message": f"no such test endpoint: {what}"})


def emu_post(emu, req, what):
    body = json.loads(req.body or b"{}")
    if not isinstance(body, dict):
        raise ConfigError("body must be a JSON object")
    if what == "faults":
        merge_faults(emu.faults, body)
        return json_resp(200, emu.faults)
    if what == "reset":
        emu.reset()
        return json_resp(200, {"ok": True})
    if what == "config":
        new = dict(emu.cfg, **body)
        new.pop("faults", None)
        validate_config(new)
        emu.cfg = new
        return json_resp(200, emu.cfg)
    return json_resp(404, {"message": f"no such test endpoint: {what}"})


def sessions_view(emu):
    return {"active": [s.public() for s in emu.sessions.values()],
            "created": emu.created, "deleted": emu.deleted}


# ---------------------------------------------------------------- WS frames

def frame_header(opcode, length, fin=True, rsv1=False):
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    if length < 126:
        return bytes((b0, length))
    if length < 65536:
        return struct.pack("!BBH", b0, 126, length)
    return struct.pack("!BBQ", b0, 127, length)


def frame(opcode, payload, fin=True, rsv1=False):
    return frame_header(opcode, len(payload), fin, rsv1) + payload


def unmask(payload, key):
    """XOR with the 4-byte mask as one big-integer operation: a few linear
    passes in C instead of a Python loop per byte."""
    n = len(payload)
    keys = (bytes(key) * (n // 4 + 1))[:n]
    x = int.from_bytes(payload, "little") ^ int.from_bytes(keys, "little")
    return x.to_bytes(n, "little")


class WsFrame:
    __slots__ = ("fin", "rsv", "opcode", "masked", "payload")


def parse_frames(buf, max_payload):
    """Remove and return every complete frame at the start of buf.

    Working on our own buffer lets one read (often dozens of 8 KiB
    frames) be handled without an await per frame. A frame longer than
    max_payload raises OverflowError as soon as its header is seen.
    """
    frames, pos, n = [], 0, len(buf)
    while n - pos >= 2:
        b0, b1 = buf[pos], buf[pos + 1]
        length = b1 & 0x7F
        ext = {126: 2, 127: 8}.get(length, 0)
        hlen = 2 + ext + (4 if b1 & 0x80 else 0)
        if n - pos < hlen:
            break
        if ext:
            length = int.from_bytes(buf[pos + 2:pos + 2 + ext], "big")
        if length > max_payload:
            raise OverflowError(length)
        if n - pos < hlen + length:
            break
        f = WsFrame()
        f.fin, f.rsv, f.opcode = b0 & 0x80, b0 & 0x70, b0 & 0x0F
        f.masked = b1 & 0x80
        data = buf[pos + hlen:pos + hlen + length]
        f.payload = (unmask(data, buf[pos + hlen - 4:pos + hlen])
                     if f.masked else bytes(data))
        frames.append(f)
        pos += hlen + length
    del buf[:pos]
    return frames


def frame_error(f, max_client_frame):
    """(close code, reason) if this client frame must end the session."""
    if f.rsv:
        return 1002, "reserved bits set"
    if not f.masked:
        return 1002, "client frame not masked"
    if f.opcode >= OP_CLOSE:
        if f.opcode > OP_PONG or not f.fin or len(f.payload) > 125:
            return 1002, "bad control frame"
        return None
    if not f.fin or f.opcode == OP_CONT:
        # Suspected live behaviour (PROTOCOL 6.1 F1, Q5).
        return 1002, "fragmented messages are not supported"
    if f.opcode not in (OP_TEXT, OP_BINARY):
        return 1002, "bad opcode"
    if len(f.payload) > max_client_frame:
        return 1009, "frame too big"
    return None


def split_message(rng, data, rsv1):
    """One server message as frames: text, plain binary, or binary +
    continuations with pings between the fragments."""
    r = rng.random()
    if r < 0.15:
        return frame(OP_TEXT, data, rsv1=rsv1)
    if r < 0.5 and len(data) >= 2:
        k = rng.randint(2, min(5, len(data)))
        cuts = sorted(rng.sample(range(1, len(data)), k - 1))
        pieces = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
        out = []
        for i, piece in enumerate(pieces):
            if i and rng.random() < 0.5:
                out.append(frame(OP_PING, b"emu-ping"))
            op = OP_BINARY if i == 0 else OP_CONT
            out.append(frame(op, piece, fin=i == k - 1, rsv1=rsv1 and i == 0))
        return b"".join(out)
    return frame(OP_BINARY, data, rsv1=rsv1)


# ---------------------------------------------------------------- relay

class Relay:
    """Splices one accepted WebSocket to a TCP connection to its target."""

    def __init__(self, emu, sess, reader, writer):
        self.emu = emu
        self.faults = emu.faults      # live: run-time changes apply
        self.sess = sess
        self.reader, self.writer = reader, writer
        self.treader = self.twriter = None
        self.closing = False          # our close frame has been sent
        self.tasks = []

    def abort(self):
        for t in self.tasks:
            t.cancel()
        self.writer.transport.abort()
        self.close_target()

    def close_target(self):
        if self.twriter is not None:
            self.twriter.close()

    def send(self, data):
        # Each frame goes out in one write: nothing can interleave in it.
        self.writer.write(data)

    async def stalled(self):
        while self.faults.get("stall"):
            await asyncio.sleep(0.05)

    async def send_close(self, code, reason="", by="server"):
        if self.closing:
            return
        self.closing = True
        self.sess.note_close(code if code is not None else 1005, by)
        payload = b"" if code is None else (struct.pack("!H", code)
                                            + reason.encode()[:123])
        try:
            self.send(frame(OP_CLOSE, payload))
            await asyncio.wait_for(self.writer.drain(), CLOSE_GRACE_S)
        except (OSError, asyncio.TimeoutError):
            pass

    async def connect_target(self):
        host, port = self.sess.target, self.sess.port
        if not is_loopback(host):
            # Safety net: the emulator relays to loopback only.
            log(f"refusing relay to non-loopback {host}:{port}")
            return False
        try:
            self.treader, self.twriter = await asyncio.wait_for(
                asyncio.open_connection(host, port, limit=STREAM_LIMIT),
                CONNECT_TIMEOUT_S)
            return True
        except (OSError, asyncio.TimeoutError) as e:
            log(f"target {host}:{port} unreachable: {e}")
            return False

    async def run(self):
        self.emu.relays.add(self)
        try:
            if await self.connect_target():
                await self.relay()
            else:
                # Live behaviour unknown; a WS close is the natural signal.
                await self.send_close(1011, "target unreachable")
                await self.wait_client_close()
        finally:
            self.finish()

    async def relay(self):
        up = asyncio.create_task(self.client_to_target())
        down = asyncio.create_task(self.target_to_client())
        self.tasks = [up, down, asyncio.create_task(self.pinger()),
                      asyncio.create_task(self.close_timer())]
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        if not up.done():
            # We closed first (target EOF, fault): give the client time to
            # answer our close frame before dropping the connection.
            await asyncio.wait({up}, timeout=CLOSE_GRACE_S)

    async def wait_client_close(self):
        task = asyncio.create_task(self.client_to_target())
        self.tasks = [task]
        await asyncio.wait({task}, timeout=CLOSE_GRACE_S)

    def finish(self):
        for t in self.tasks:
            if t.done() and not t.cancelled() and t.exception():
                self.emu.internal_error(t.exception())
            t.cancel()
        self.close_target()
        self.sess.note_close(1006, "abnormal")
        self.sess.state = "closed"
        self.emu.relays.discard(self)
        log(f"relay end: close {self.sess.close_code} by {self.sess.close_by},"
            f" {self.sess.bytes_up} bytes up, {self.sess.bytes_down} down")

    async def client_to_target(self):
        try:
            await self.client_loop()
        except OSError as e:
            log(f"relay: client connection broken: {e!r}")
        except OverflowError:
            await self.send_close(1009, "frame too big")

    async def client_loop(self):
        buf = bytearray()
        while True:
            await self.stalled()
            # Oversized frames are still read (up to READ_LIMIT) so that
            # the client's close reply can be parsed after our 1009.
            frames = parse_frames(buf, READ_LIMIT)
            if not frames:
                data = await self.reader.read(STREAM_LIMIT)
                if not data:
                    return            # client gone without a close frame
                buf += data
                continue
            if await self.handle_frames(frames):
                return

    async def handle_frames(self, frames):
        """Act on a batch of client frames; True when the WS is done.
        Data payloads are joined so the target gets one write per batch."""
        data = []
        for f in frames:
            if self.closing:
                if f.opcode == OP_CLOSE:
                    return True       # the client's answer to our close
                continue              # drop data after our close
            err = frame_error(f, self.faults.get("max_client_frame", 8192))
            if err or f.opcode == OP_CLOSE:
                await self.to_target(b"".join(data))
                data = []
            if err:
                await self.send_close(*err)
                self.close_target()
            elif f.opcode == OP_CLOSE:
                await self.on_client_close(f.payload)
                return True
            elif f.opcode == OP_PING:
                if not self.faults.get("ignore_pings"):
                    self.send(frame(OP_PONG, f.payload))
            elif f.opcode != OP_PONG:
                data.append(f.payload)
        await self.to_target(b"".join(data))
        return False

    async def on_client_close(self, payload):
        if len(payload) == 1:
            await self.send_close(1002, "bad close payload")
        else:
            code = struct.unpack("!H", payload[:2])[0] if payload else None
            await self.send_close(code, "", by="client")
        self.close_target()

    async def to_target(self, data):
        if not data or self.twriter.is_closing():
            return
        self.sess.bytes_up += len(data)
        try:
            self.twriter.write(data)
            await self.twriter.drain()
        except OSError:
            # The target went away; target_to_client sees EOF and closes.
            self.close_target()

    async def target_to_client(self):
        try:
            if self.faults.get("close_after_bytes") == 0:
                await self.fault_close()
                return
            await self.target_loop()
        except OSError as e:
            log(f"relay: client connection broken: {e!r}")

    async def target_loop(self):
        split_buf = bytearray()
        while True:
            await self.stalled()
            if self.faults.get("split_frames"):
                data = await self.read_split(split_buf)
            else:
                data = await self.read_target(READ_CHUNK)
            if self.closing:
                return
            if not data:
                # Target closed: everything read was sent; end normally.
                await self.send_close(1000)
                return
            if await self.to_client(data):
                return

    async def read_target(self, n):
        try:
            return await self.treader.read(n)
        except OSError:
            return b""                # reset by the target: same as EOF

    async def read_split(self, buf):
        """Up to a random 1..70000 bytes: what arrives without waiting."""
        want = self.emu.rng.randint(1, 70000)
        if not buf:
            buf += await self.read_target(READ_CHUNK)
        while buf and len(buf) < want:
            try:
                more = await asyncio.wait_for(
                    self.read_target(want - len(buf)), 0.002)
            except asyncio.TimeoutError:
                break
            if not more:
                break
            buf += more
        data = bytes(buf[:want])
        del buf[:want]
        return data

    async def to_client(self, data):
        """Send data frames; True once a close_after_bytes limit hit."""
        limit = self.faults.get("close_after_bytes")
        hit = limit is not None and self.sess.bytes_down + len(data) >= limit
        if hit:
            data = data[:max(limit - self.sess.bytes_down, 0)]
        self.sess.bytes_down += len(data)
        rsv1 = bool(self.faults.get("rsv1"))
        if data and self.faults.get("split_frames"):
            self.send(split_message(self.emu.rng, data, rsv1))
        elif data:
            self.send(frame(OP_BINARY, data, rsv1=rsv1))
        await self.writer.drain()
        if hit:
            await self.fault_close()
        return hit

    async def fault_close(self):
        await self.send_close(self.faults.get("close_code", 1000),
                              self.faults.get("close_reason", ""))
        self.close_target()

    async def pinger(self):
        while True:
            interval = self.faults.get("server_ping_interval_s")
            await asyncio.sleep(interval or 0.5)
            if interval and not self.closing and not self.faults.get("stall"):
                self.send(frame(OP_PING, b"emu"))

    async def close_timer(self):
        after = self.faults.get("close_after_s")
        if after is None:
            return
        await asyncio.sleep(after)
        await self.fault_close()


# ---------------------------------------------------------------- upgrade

TOMCAT_400 = (
    '<!doctype html><html lang="en"><head><title>HTTP Status 400 \u2013 Bad'
    ' Request</title><style type="text/css">body {font-family:Tahoma,Arial,'
    'sans-serif;} h1 {font-size:22px;}</style></head><body><h1>HTTP Status'
    ' 400 \u2013 Bad Request</h1><hr class="line" /><p><b>Type</b> Status'
    ' Report</p><p><b>Description</b> The server cannot or will not process'
    ' the request due to something that is perceived to be a client error'
    '.</p><hr class="line" /><h3>Apache Tomcat</h3></body></html>')


def accept_value(key):
    digest = hashlib.sha1((key + WS_GUID).encode()).digest()
    return base64.b64encode(digest).decode()


def handshake_error(req):
    """An HTTP error Response if this is not a valid RFC 6455 upgrade."""
    if req.method != "GET":
        return bastion_error(405, "Method not allowed")
    conn = [t.strip().lower() for t in req.header("connection").split(",")]
    if (req.header("upgrade").lower() != "websocket"
            or "upgrade" not in conn):
        return bastion_error(400, "WebSocket upgrade required")
    if req.header("sec-websocket-version") != "13":
        resp = bastion_error(426, "Unsupported WebSocket version")
        resp.headers.append(("Sec-WebSocket-Version", "13"))
        return resp
    try:
        raw = base64.b64decode(req.header("sec-websocket-key"), validate=True)
    except ValueError:
        raw = b""
    if len(raw) != 16:
        return bastion_error(400, "Bad Sec-WebSocket-Key")
    return None


def find_ws_session(emu, req, kind, token):
    """The session for this tunnel URL, or None (answered with 404)."""
    sess = emu.ws_index.get(token)
    if kind == "old" or sess is None:
        return None
    node = req.query.get("X-Node-Id")
    if kind == "v2" and (sess.developer or node != sess.node):
        return None
    if kind == "omni" and (not sess.developer
                           or node not in (None, sess.node)):
        return None
    return sess


def upgrade_response(req, mode):
    lines = ["HTTP/1.1 101 Switching Protocols"]
    if mode != "no_upgrade_headers":
        lines += ["Upgrade: websocket", "Connection: Upgrade"]
    key = req.header("sec-websocket-key")
    if mode == "bad_accept":
        lines.append(f"Sec-WebSocket-Accept: {accept_value(key + 'x')}")
    elif mode != "no_accept":
        lines.append(f"Sec-WebSocket-Accept: {accept_value(key)}")
    # Never any Sec-WebSocket-Extensions: compression is not negotiated.
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def handle_ws(emu, req, reader, writer, kind, token):
    """Upgrade request on a tunnel path; owns the connection afterwards."""
    emu.counters["ws"] += 1
    await emu.fault_delay("ws")
    sess = find_ws_session(emu, req, kind, token)
    if sess is None:
        resp = bastion_error(404, "Not found")
    else:
        resp = handshake_error(req) or emu.take_status_fault("ws")
    if resp is not None:
        emu.record(req, "ws", resp.status, redact_last=True)
        writer.write(response_bytes(resp, False))
        await writer.drain()
        return
    del emu.ws_index[token]           # a websocketToken works once
    sess.state = "open"
    mode = emu.faults.get("ws_after_101")
    emu.record(req, "ws", 101, redact_last=True)
    writer.write(upgrade_response(req, mode))
    await after_upgrade(emu, sess, reader, writer, mode)


async def after_upgrade(emu, sess, reader, writer, mode):
    if mode not in ("http400", "silence"):
        await Relay(emu, sess, reader, writer).run()
        return
    try:
        if mode == "http400":
            # Quirk H2: the backend's Tomcat error page after the 101.
            page = TOMCAT_400.encode()
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Type: "
                         b"text/html;charset=utf-8\r\nContent-Language: en"
                         b"\r\nContent-Length: " + str(len(page)).encode()
                         + b"\r\nConnection: close\r\n\r\n" + page)
            await writer.drain()
        else:
            # Quirk H3: 101, then a black hole until the client leaves.
            await writer.drain()
            while await reader.read(READ_CHUNK):
                pass
    finally:
        sess.note_close(1006, "abnormal")
        sess.state = "closed"


# ---------------------------------------------------------------- server

def route(req):
    """(role, handler args) for a request; role names the counter."""
    segs = [urllib.parse.unquote(s) for s in req.path.split("/")[1:]]
    low = [s.lower() for s in segs]
    if low and low[0] in ("_emu", "_fake") and len(segs) == 2:
        return "emu", segs[1]
    if len(low) == 4 and low[1:] == ["oauth2", "v2.0", "token"]:
        return "entra", segs[0]
    if low[:1] == ["subscriptions"]:
        return "arm", segs
    if segs == ["api", "tokens"]:
        return "tokens_post", None
    if len(segs) == 3 and segs[:2] == ["api", "tokens"]:
        return "tokens_delete", segs[2]
    if segs == ["api", "connection"]:
        return "connection", None
    if len(segs) == 2 and segs[0] in ("webtunnelv2", "webtunnel"):
        return "ws", ("v2" if segs[0] == "webtunnelv2" else "old", segs[1])
    if len(segs) == 3 and segs[:2] == ["omni", "webtunnel"]:
        return "ws", ("omni", segs[2])
    return "other", None


METHODS = {"entra": "POST", "tokens_post": "POST", "tokens_delete": "DELETE",
           "connection": "POST"}


async def dispatch(emu, req, role, arg):
    if METHODS.get(role, req.method) != req.method:
        return bastion_error(405, "Method not allowed")
    if role == "entra":
        return await handle_entra(emu, req, arg)
    if role == "arm":
        return await handle_arm(emu, req, arg)
    if role == "tokens_post":
        return await handle_tokens_post(emu, req)
    if role == "tokens_delete":
        return await handle_tokens_delete(emu, req, arg)
    if role == "connection":
        return await handle_connection(emu, req)
    return bastion_error(404, "Not found")


async def serve_requests(emu, reader, writer, conn):
    """HTTP/1.1 keep-alive loop; a WebSocket upgrade takes the connection."""
    while True:
        try:
            req = await read_request(reader, writer)
        except HttpError as e:
            writer.write(response_bytes(bastion_error(e.status, str(e)),
                                        False))
            return
        if req is None:
            return
        req.conn = conn
        role, arg = route(req)
        if role == "ws":
            await handle_ws(emu, req, reader, writer, *arg)
            return
        if role == "emu":
            emu.counters["emu"] += 1
            resp = await handle_emu(emu, req, arg)
        else:
            emu.counters[role] += 1
            resp = await dispatch(emu, req, role, arg)
            emu.record(req, role, resp.status,
                       redact_last=role == "tokens_delete")
        keep = req.keep_alive()
        writer.write(response_bytes(resp, keep))
        await writer.drain()
        if not keep:
            return


async def handle_conn(emu, tls, reader, writer):
    emu.conn_seq += 1
    emu.counters["connections"] += 1
    conn = emu.conn_seq
    try:
        if tls is not None:
            try:
                await writer.start_tls(tls, ssl_handshake_timeout=10)
            except (OSError, asyncio.TimeoutError) as e:
                emu.counters["tls_failures"] += 1
                log(f"conn {conn}: TLS handshake failed: {e}")
                return
        await serve_requests(emu, reader, writer, conn)
    except (OSError, asyncio.IncompleteReadError) as e:
        log(f"conn {conn}: {e!r}")
    except Exception as e:            # noqa: a bug; keep serving others
        emu.internal_error(e)
    finally:
        await close_writer(writer)


async def close_writer(writer):
    try:
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    except OSError:
        pass                          # already broken: nothing to flush
    except asyncio.TimeoutError:
        # A peer that never completes the TLS shutdown. Only here: after a
        # second close() (or a lost connection) 3.11's SSL transport raises
        # AttributeError from abort().
        writer.transport.abort()


def make_tls(cert, key):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])   # never h2: HTTP/1.1 server
    return ctx


def on_loop_error(emu, ctx):
    """asyncio's last-resort handler: peers vanishing mid-TLS are normal,
    anything else is an emulator bug."""
    exc = ctx.get("exception")
    if exc is None or isinstance(exc, OSError):
        log(f"{ctx.get('message')}: {exc!r}")
    else:
        emu.internal_error(exc)


def write_port_file(path, port):
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.replace(tmp, path)


async def serve(args, emu):
    tls = None if args.no_tls else make_tls(args.cert, args.key)
    conns = {}                        # connection task -> its writer

    async def on_conn(reader, writer):
        task = asyncio.current_task()
        conns[task] = writer
        try:
            await handle_conn(emu, tls, reader, writer)
        finally:
            conns.pop(task, None)

    server = await asyncio.start_server(on_conn, args.listen, args.port,
                                        limit=STREAM_LIMIT)
    emu.port = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.set_exception_handler(lambda _loop, ctx: on_loop_error(emu, ctx))
    if args.port_file:
        write_port_file(args.port_file, emu.port)
    log(f"listening on {args.listen}:{emu.port}")
    await stop.wait()
    log("stopping")
    server.close()
    # Abort rather than close: a graceful TLS shutdown waits on each peer.
    for task, writer in list(conns.items()):
        writer.transport.abort()
        task.cancel()
    await asyncio.gather(*conns, return_exceptions=True)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--listen", default="127.0.0.1",
                   help="loopback IP to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0,
                   help="TCP port (default 0: any free port)")
    p.add_argument("--cert", help="server certificate chain (PEM)")
    p.add_argument("--key", help="server private key (PEM)")
    p.add_argument("--no-tls", action="store_true",
                   help="plain HTTP/WS, for debugging")
    p.add_argument("--config", help="JSON config, see the module docstring")
    p.add_argument("--port-file", help="write the chosen port here")
    p.add_argument("--fixtures", help="azure-rest-api-specs example dir")
    p.add_argument("--seed", type=int, default=0,
                   help="seed for split_frames (default 0)")
    p.add_argument("--verbose", action="store_true",
                   help="log requests and relay events to stderr")
    args = p.parse_args(argv)
    if not args.no_tls and not (args.cert and args.key):
        p.error("--cert and --key are required (or --no-tls)")
    if not is_loopback(args.listen):
        p.error("--listen must be a loopback address")
    return args


def main(argv):
    global VERBOSE
    args = parse_args(argv)
    VERBOSE = args.verbose
    try:
        cfg = {}
        if args.config:
            with open(args.config, encoding="utf-8") as f:
                cfg = json.load(f)
        fixtures = load_fixtures(find_fixture_dir(args.fixtures))
        emu = Emulator(cfg, fixtures, args.seed, args.listen)
    except (OSError, ValueError, KeyError, ConfigError) as e:
        print(f"azure_emu: {e}", file=sys.stderr)
        return 2
    asyncio.run(serve(args, emu))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
