#!/usr/bin/python3
"""Local emulator of Entra ID, ARM and the Azure Bastion data plane.

Every bastion-stdio test talks to this one process instead of Azure. It serves
HTTPS and WSS (HTTP/1.1 only) on one loopback port and routes by path:

  POST   /{tenant}/oauth2/v2.0/token                  Entra, every grant below
  POST   /{tenant}/oauth2/v2.0/devicecode             Entra, device code start
  GET    /subscriptions/.../bastionHosts/{name}       ARM bastion host
  GET    /subscriptions/.../virtualMachines/{vm}      ARM VM (also VMSS VMs)
  POST   /api/connection                              Developer SKU: data pod
  POST   /api/tokens                                  Bastion session token
  DELETE /api/tokens/{authToken}                      end a Bastion session
  GET    /webtunnelv2/{websocketToken}?X-Node-Id=ID   WebSocket relay
  GET    /omni/webtunnel/{websocketToken}             same, Developer SKU
  *      /_emu/...  (alias /_fake/...)                test control, no auth

With --plain-port-file (or --plain-port) a second listener on the same
loopback address serves the managed identity endpoints over plain HTTP
(paths fixed here; clients take them from IDENTITY_ENDPOINT, MSI_ENDPOINT,
AZURE_POD_IDENTITY_AUTHORITY_HOST and the like):

  GET    /metadata/identity/oauth2/token      IMDS (api-version 2018-02-01)
  GET    /msi/token                           App Service 2019-08-01
  GET    /arc/metadata/identity/oauth2/token  Azure Arc (challenge file)
  POST   /cloudshell/oauth2/token             Cloud Shell
  *      /_emu/...                            the same test control

Wire behaviour follows shared/docs/PROTOCOL.md (sections 4-9, 13, 14) and
AUTH.md (2, 3, 5, 7.1, 7.2). ARM bodies are the azure-rest-api-specs
example payloads, loaded at run time, with only the fields a test needs
overridden.

Start (/usr/bin/python3 and its stdlib; a client "certificate" in the
config also needs Debian's python3-cryptography, loaded only then):

  /usr/bin/python3 tests/emulator/azure_emu.py --cert DIR/server.pem \
      --key DIR/server.key --config emu.json --port-file emu.port \
      [--plain-port-file mi.port] [--plain-port 0] \
      [--listen 127.0.0.1] [--port 0] [--seed 0] [--fixtures DIR] [--verbose]

The chosen port is written to --port-file (temp file + rename) once the
server accepts connections; --plain-port-file gets the plain listener's
port, written before --port-file (so once that exists both do).
SIGTERM/SIGINT stop it cleanly (exit 0) and delete the Arc secret files it
wrote. --no-tls serves plain HTTP/WS instead on the main port, for
debugging only (assertion "aud" must then say http://).

Config file (JSON; every key optional; resource ids compare
case-insensitively, as ARM does):

  {
   "tenants": {"<tenant>": {"clients": {"<client-id>": {
       "secret": "...",            # client_secret credential
       "certificate": "path.pem",  # or a list: PEM file(s); the first
                                   #   certificate in each is registered
                                   #   (a key in the same file is ignored)
       "federated_token": "..."}}}},  # or a list: accepted assertions
   "users": {"<upn>": {            # for refresh token, device code and
       "tenant": "<tenant>",       #   Cloud Shell; home tenant (required)
       "oid": "<guid>",            # default: derived from the UPN
       "name": "Display Name",     # default: the UPN
       "refresh_tokens": ["rt1"],  # valid refresh tokens (besides the
                                   #   ones the emulator issues)
       "expired_refresh_tokens": ["rt0"],  # -> AADSTS700082
       "refresh_error": {"status": 400, "error": "interaction_required",
                         "code": 50076, "text": "..."}}},
                                   # every RT redemption of this user
                                   #   fails so (MFA, CA...): all optional
   "public_clients": ["<id>"],     # besides the Azure CLI's 04b07795-...
   "rotate_refresh_tokens": false, # true: a redeemed RT is revoked
   "device_code_interval_s": 5,    # "interval" of a new device code
   "device_code_expires_s": 900,   # its "expires_in"
   "device_code_slow_down_s": 5,   # added to the interval per slow_down
   "device_code_auto_approve": null,  # "<upn>": a flow is approved for
                                   #   that user at its second poll
   "managed_identity": {           # IMDS and App Service identities
       "system": true,             # a system-assigned identity exists
       "system_client_id": null, "system_object_id": null,  # its ids
       "user_assigned": [{"client_id": "..", "object_id": "..",
                          "resource_id": "/subscriptions/.../ua1"}],
       "tenant": "<tenant>"},      # tid of MI tokens
   "appservice_header": "...",     # the X-IDENTITY-HEADER value
   "arc_token_dir": "/path/dir",   # where Arc secret files go (never a
                                   #   default: nothing is written unset)
   "cloudshell_user": "<upn>",     # whose token Cloud Shell hands out
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
   "token_lifetime_s": 3599,             # every access token's lifetime
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

Entra token endpoint. Every error has Entra's body: error,
error_description ("AADSTSnnnn: text Trace ID: .. Correlation ID: ..
Timestamp: .."), error_codes, timestamp, trace_id, correlation_id (the
client-request-id header if sent), error_uri. Checked first, for every
grant: entra_* faults; tenant (client credentials: a configured tenant;
user grants also a user's tenant, organizations, common) else 400 90002;
grant_type, client_id present else 400 900144; grant known else 400 70003.
Then per grant_type:
  client_credentials: unknown client -> 400 unauthorized_client 700016;
    both client_secret and client_assertion -> 400 90014; neither -> 401
    7000218; secret wrong -> 401 7000215; client_assertion_type not
    jwt-bearer -> 400 50027; then the assertion (below); scope not an ARM
    ".default" scope -> 400 invalid_scope 70011.
  Certificate assertion (client has "certificate"; if it also has a
    federated_token, an assertion without x5t/x5t#S256 is federated).
    In order, each 401 invalid_client unless said: not a JWT of three
    unpadded base64url segments with JSON objects -> 400 invalid_request
    50027; x5t (base64url SHA-1 of the DER, padded or not) and/or
    x5t#S256 (SHA-256, base64url or standard base64) missing or naming no
    registered certificate -> 50012; alg not RS256 (PKCS#1 v1.5) or PS256
    (PSS, MGF1-SHA256, salt exactly 32), or signature wrong -> 700027;
    iss != client_id -> 700021; sub != iss -> 50048; aud not the URL the
    request came to (scheme, host localhost/127.0.0.1/listen address,
    this port, same path compared case-insensitively, no query) -> 700023;
    exp/nbf/iat not numbers or no exp -> 400 50027; exp <= now, exp > now
    + 1 h + 60 s, or nbf/iat > now + 60 s -> 700024; no jti -> 400 50027.
  Federated (client has "federated_token"): the assertion must equal one
    configured string; if that is a JWT whose exp passed -> 401 700024.
    Else: a JWT whose iss is none of the configured tokens' -> 401
    invalid_client 700211; anything else -> 400 invalid_request 70021.
  refresh_token: client_id the Azure CLI's or in public_clients, else 400
    700016; refresh_token and scope present (900144); scope: exactly one
    ARM ".default" scope plus any of openid profile offline_access email,
    else 400 invalid_scope 70011; revoked or unknown RT -> 400
    invalid_grant 70008; in expired_refresh_tokens -> 400 invalid_grant
    700082; tenant path neither the user's, organizations nor common ->
    400 invalid_grant 50020; the user's refresh_error if set; else 200.
    A redeemed RT stays valid unless rotate_refresh_tokens is true.
  User token answer (refresh token and device code): token_type, scope
    (the requested ARM scope), expires_in, ext_expires_in (ints),
    access_token, refresh_token (new, valid until revoked), id_token
    (JWT-shaped, random signature: aud, iss, iat, nbf, exp, name, oid,
    preferred_username, sub, tid, ver), client_info (unpadded base64url
    of {"uid": oid, "utid": tenant}), foci "1" (only for the Azure CLI).
  devicecode: same client and scope checks; answers user_code (9 chars),
    device_code, verification_uri https://microsoft.com/devicelogin,
    expires_in, interval (ints) and message.
  device_code grant (device_code, or MSAL's legacy "code"): unknown code,
    or one started on another tenant path or client -> 400
    bad_verification_code 70000; already redeemed -> 400 invalid_grant
    54005; past expires_in -> 400 expired_token 70020; denied -> 400
    authorization_declined 70000; polled sooner than interval - 0.2 s
    after the previous poll (the first poll is never early) -> 400
    slow_down 70016, and the flow's interval grows by
    device_code_slow_down_s (RFC 8628 3.5); approved -> 200 (once);
    else 400 authorization_pending 70016.

Managed identity (plain listener). A resource must be an ARM resource
(https://management.core.windows.net/ or https://management.azure.com,
with or without the trailing slash); a v2 scope (".../.default") is
refused. Identity choice (IMDS, App Service): at most one selector; a
selector must match a user_assigned entry; without one, the system
identity if "system", else the only user-assigned one; else an error.
  IMDS: checked in order: imds faults; Metadata: true header, api-version,
    resource, identity (selectors client_id, object_id, msi_res_id, also
    mi_res_id) -> 400 {"error", "error_description"} (invalid_request, or
    invalid_resource for a bad resource; "Identity not found"). 200:
    access_token, refresh_token "", expires_in, expires_on, ext_expires_in,
    not_before (strings of integers), resource, token_type, client_id.
  App Service: X-IDENTITY-HEADER != appservice_header -> 401; api-version
    not 2019-08-01, bad resource or identity (client_id, object_id,
    principal_id, mi_res_id) -> 400; errors are {"statusCode", "message",
    "correlationId"}. 200: access_token, expires_on (string epoch),
    resource, token_type, client_id.
  Arc: Metadata: true, api-version 2020-06-01 or 2019-11-01, resource as
    IMDS (400). Without a valid "Authorization: Basic <secret>": 401 with
    "WWW-Authenticate: Basic realm=<arc_token_dir>/<32 hex>.key", a new
    file (0600) holding a new 43-char secret. A secret works once: the
    token answer (as IMDS, without client_id) deletes its file. Selectors
    are ignored: the token is the system identity's.
  Cloud Shell: Metadata: true, a form body with resource, else 400; 200
    as IMDS (without client_id) with a delegated token of cloudshell_user.

Faults (config "faults", POST /_emu/faults merges a JSON object into the
current set, a null value removes a key, unknown keys are refused with 400):

  <role>_status     int, or {"status": int, "body": str|object,
                    "content_type": str, "headers": {..}, "count": N}:
                    answer the next N (default: all) requests of that role
                    this way; or a list of those, answered one per request
                    in order, then gone (e.g. "imds_status": [404, 410,
                    429, 500]). Roles: entra (token endpoint, every grant),
                    devicecode, arm, token (POST /api/tokens), delete,
                    connection, ws (the upgrade request), imds,
                    appservice, arc, cloudshell. Default bodies follow
                    each role's error shape.
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
  lifetime_s        seconds new access tokens live, overriding
                    token_lifetime_s: an int for every source, or
                    {"<source>": N, "*": N} with sources client_secret,
                    client_assertion, federated, refresh_token,
                    device_code, imds, appservice, arc, cloudshell. 0
                    issues tokens that are already expired; 60 tests a
                    client's refresh ahead of expiry.
  arc_realm         how the next Arc challenges break the client's path
                    checks (the file still holds a valid secret):
                    "outside" (file in a temp dir of the emulator's own),
                    "dotdot" (<dir>/../../<that temp dir>/x.key),
                    "symlink" (<dir>/x.key links outside), "wrong_ext"
                    (<dir>/x.txt), "too_big" (a 4097-byte .key),
                    "missing" (no such file), "no_header" (no
                    WWW-Authenticate), "not_basic" (Bearer realm=...).
Relay faults are read live, so they also act on open sessions (except
close_after_s, whose timer starts at the upgrade).

Test endpoints (plain JSON, no auth, never logged in /_emu/requests):

  GET  /_emu/sessions   {"active": [{"authToken_sha", "resourceId", "state":
                        issued|open|closed, "ws_close_code", "ws_close_by",
                        ...}], "created": N, "deleted": N}. A session stays
                        active until DELETEd, even after its WS closed.
  GET  /_emu/requests[?since=SEQ]  request log: seq, time, conn, method,
                        path (tokens as "<token>"), headers
                        (Authorization, X-IDENTITY-HEADER and Secret
                        "<redacted>"), form (field names), form_values
                        (client_secret, client_assertion, refresh_token,
                        device_code, code, password, aztoken, token
                        "<redacted>"),
                        json_keys, role, status.
  GET  /_emu/counters   requests per role (entra, devicecode, arm,
                        tokens_post, tokens_delete, connection, ws, imds,
                        appservice, arc, cloudshell, emu, other); token
                        endpoint requests per grant, faulted or refused
                        ones included (entra_client_secret,
                        entra_client_assertion, entra_federated,
                        entra_refresh_token, entra_device_code); tokens
                        issued per source (issued_<source>, sources as in
                        lifetime_s); TCP connections (connections,
                        plain_connections), TLS handshake failures,
                        internal_errors (emulator bugs: tests should
                        expect 0).
  GET  /_emu/faults     current faults;  POST /_emu/faults  merge.
  GET  /_emu/config     current config;  POST /_emu/config  replace the
                        given top-level keys (not "faults").
  GET  /_emu/devicecode  {"flows": [{"user_code", "client_id", "tenant",
                        "scope", "state": pending|approved|denied|redeemed,
                        "user", "polls", "slow_downs", "interval",
                        "expires_in_s"}]}
  POST /_emu/devicecode/approve  {"user_code": .., "user": "<upn>"}: the
                        user signs in (400 if not in users or not in the
                        flow's tenant; 404 unknown code).
  POST /_emu/devicecode/deny     {"user_code": ..}
  POST /_emu/revoke     {"refresh_token": RT} or {"user": "<upn>"} (every
                        RT of that user, configured and issued).
  POST /_emu/reset      clear faults, request log, counters, sessions,
                        device code flows and Arc secrets (their files
                        too); open relays are aborted. Issued access and
                        refresh tokens (and revocations) stay.
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
import shutil
import signal
import ssl
import struct
import sys
import tempfile
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
ARM_RESOURCES = ("https://management.core.windows.net/",
                 "https://management.core.windows.net",
                 "https://management.azure.com/",
                 "https://management.azure.com")
CLI_CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
USER_SCOPES = ("openid", "profile", "offline_access", "email")
ANY_TENANTS = ("organizations", "common")
VERIFICATION_URI = "https://microsoft.com/devicelogin"
SECRET_FIELDS = ("aztoken", "azToken", "token", "client_secret",
                 "client_assertion", "refresh_token", "device_code", "code",
                 "password")
SECRET_HEADERS = ("authorization", "x-identity-header", "secret")
# Where a token came from: the counter and lifetime_s fault names.
ENTRA_SOURCES = ("client_secret", "client_assertion", "federated",
                 "refresh_token", "device_code")
MI_SOURCES = ("imds", "appservice", "arc", "cloudshell")
SOURCES = ENTRA_SOURCES + MI_SOURCES
ROLES = ("entra", "arm", "token", "delete", "connection", "ws",
         "devicecode") + MI_SOURCES
COUNTER_NAMES = (("entra", "arm", "tokens_post", "tokens_delete",
                  "connection", "ws", "emu", "other", "connections",
                  "tls_failures", "internal_errors", "devicecode",
                  "plain_connections")
                 + tuple(f"entra_{s}" for s in ENTRA_SOURCES) + MI_SOURCES
                 + tuple(f"issued_{s}" for s in SOURCES))
ASSERTION_SKEW_S = 60       # nbf/iat may be this far in the future
ASSERTION_MAX_S = 3600      # exp at most this far ahead
POLL_TOLERANCE_S = 0.2      # device code polls this much early are fine
ARC_API_VERSIONS = ("2019-11-01", "2020-06-01")
ARC_REALM_MODES = ("outside", "dotdot", "symlink", "wrong_ext", "too_big",
                   "missing", "no_header", "not_basic")
ARC_MAX_SECRETS = 10000

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
    validate_identity_config(cfg)


def want(cond, message):
    if not cond:
        raise ConfigError(message)


def is_str_list(val):
    return isinstance(val, list) and all(isinstance(v, str) for v in val)


def validate_identity_config(cfg):
    """The keys of the credential grants and managed identity endpoints."""
    for tenant, tconf in cfg.get("tenants", {}).items():
        for cid, cconf in tconf.get("clients", {}).items():
            what = f"tenants.{tenant}.clients.{cid}"
            if "certificate" in cconf:
                load_certificates(cconf["certificate"])
            fed = cconf.get("federated_token", "")
            want(isinstance(fed, str) or is_str_list(fed),
                 f"{what}.federated_token: a string or a list of strings")
    want(is_str_list(cfg.get("public_clients", [])),
         "public_clients: a list of client ids")
    for upn, user in cfg.get("users", {}).items():
        want(isinstance(user, dict) and isinstance(user.get("tenant"), str),
             f"users.{upn}: an object with a \"tenant\"")
        for key in ("refresh_tokens", "expired_refresh_tokens"):
            want(is_str_list(user.get(key, [])),
                 f"users.{upn}.{key}: a list of strings")
        want(isinstance(user.get("refresh_error", {}), dict),
             f"users.{upn}.refresh_error: an object")
    for key in ("device_code_interval_s", "device_code_expires_s",
                "device_code_slow_down_s", "token_lifetime_s"):
        val = cfg.get(key, 0)
        want(is_number(val) and val >= 0, f"{key}: a number >= 0")
    for key in ("device_code_auto_approve", "cloudshell_user"):
        upn = cfg.get(key)
        want(upn is None or upn in cfg.get("users", {}),
             f"{key}: {upn!r} is not in users")
    mi = cfg.get("managed_identity", {})
    want(isinstance(mi, dict) and isinstance(mi.get("user_assigned", []),
                                             list),
         "managed_identity: {\"system\": bool, \"user_assigned\": [...]}")
    for ident in mi.get("user_assigned", []):
        want(isinstance(ident, dict) and all(
            isinstance(ident.get(k), str)
            for k in ("client_id", "object_id", "resource_id")),
            "managed_identity.user_assigned: objects with client_id,"
            " object_id and resource_id")
    for key in ("appservice_header", "arc_token_dir"):
        want(isinstance(cfg.get(key, ""), str), f"{key}: a string")


def ci_get(mapping, key):
    """Case-insensitive dict lookup: returns (canonical key, value)."""
    low = key.lower()
    for k, v in mapping.items():
        if k.lower() == low:
            return k, v
    return None, None


# ---------------------------------------------------------------- faults

def status_fault(key, val):
    """A status fault as a dict: int -> {"status": int}."""
    if isinstance(val, int) and not isinstance(val, bool):
        val = {"status": val}
    if not isinstance(val, dict) or not isinstance(val.get("status"), int):
        raise ConfigError(f"{key}: needs an int status")
    return dict(val)


def check_lifetime_fault(val):
    if isinstance(val, dict):
        bad = sorted(set(val) - set(SOURCES) - {"*"})
        if bad:
            raise ConfigError(f"lifetime_s: unknown sources {bad}; known:"
                              f" {list(SOURCES)} and '*'")
        vals = list(val.values())
    else:
        vals = [val]
    for v in vals:
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ConfigError("lifetime_s: seconds must be ints >= 0")


def normalize_faults(update):
    """Validate a fault update; status faults become dicts (or lists of
    dicts, answered in order)."""
    known = {f"{r}_status" for r in ROLES} | {f"{r}_delay_ms" for r in ROLES}
    known |= {"ws_after_101", "close_after_bytes", "close_after_s",
              "close_code", "close_reason", "split_frames", "rsv1",
              "server_ping_interval_s", "ignore_pings", "stall",
              "max_client_frame", "lifetime_s", "arc_realm"}
    if not isinstance(update, dict):
        raise ConfigError("faults must be a JSON object")
    bad = sorted(set(update) - known)
    if bad:
        raise ConfigError(f"unknown fault keys {bad}; known: {sorted(known)}")
    out = {}
    for key, val in update.items():
        if key.endswith("_status") and isinstance(val, list):
            val = [status_fault(key, v) for v in val] or None
        elif key.endswith("_status") and val is not None:
            val = status_fault(key, val)
        out[key] = val
    mode = out.get("ws_after_101")
    if mode not in (None, "http400", "silence", "no_upgrade_headers",
                    "no_accept", "bad_accept"):
        raise ConfigError(f"ws_after_101: unknown mode {mode!r}")
    if out.get("lifetime_s") is not None:
        check_lifetime_fault(out["lifetime_s"])
    if out.get("arc_realm") not in (None,) + ARC_REALM_MODES:
        raise ConfigError(f"arc_realm: unknown mode {out['arc_realm']!r};"
                          f" known: {list(ARC_REALM_MODES)}")
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

    def __init__(self, cfg, fixtures, seed, listen, scheme="https"):
        validate_config(cfg)
        self.cfg = cfg
        self.fixtures = fixtures
        self.faults = {}
        merge_faults(self.faults, cfg.get("faults", {}))
        self.rng = random.Random(seed)
        self.listen = listen
        self.scheme = scheme          # of the main listener (assertion aud)
        self.port = 0
        self.plain_port = 0
        self.tokens = {}              # any access token -> expiry (epoch)
        self.issued_rts = {}          # refresh token issued here -> UPN
        self.revoked_rts = set()      # refresh tokens no longer valid
        self.device_flows = {}        # device_code -> DeviceFlow
        self.arc_secrets = {}         # Arc secret -> files written for it
        self.arc_outside = None       # our temp dir for arc_realm faults
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
        self.device_flows.clear()
        self.drop_arc_secrets()
        self.reset_counters()
        for relay in list(self.relays):
            relay.abort()

    def drop_arc_secrets(self):
        """Forget every Arc secret and delete the files written for them."""
        for paths in self.arc_secrets.values():
            remove_files(paths)
        self.arc_secrets.clear()

    def cleanup(self):
        self.drop_arc_secrets()
        if self.arc_outside:
            shutil.rmtree(self.arc_outside, ignore_errors=True)

    # -- tokens

    def lifetime_for(self, source):
        """Seconds a new token of this source lives: the lifetime_s fault,
        else config token_lifetime_s."""
        fault = self.faults.get("lifetime_s")
        if isinstance(fault, dict):
            fault = fault.get(source, fault.get("*"))
        if fault is not None:
            return fault
        return int(self.cfg.get("token_lifetime_s", 3599))

    def issue_token(self, source, tenant, aud, claims):
        """A new access token that ARM and POST /api/tokens accept."""
        lifetime = self.lifetime_for(source)
        token = make_access_token(tenant, aud, lifetime, claims)
        self.tokens[token] = time.time() + lifetime
        self.counters[f"issued_{source}"] += 1
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
        if isinstance(fault, list):
            # A list: one entry per request, in order, then gone.
            first = fault.pop(0)
            if not fault:
                del self.faults[f"{role}_status"]
            return fault_response(role, first)
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
        if k.lower() in SECRET_HEADERS:
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
    if role in ("entra", "devicecode"):
        return entra_error_obj("temporarily_unavailable", 50033, text)
    if role in ("imds", "arc", "cloudshell"):
        return {"error": "service_unavailable" if status >= 500
                else "emulated_failure", "error_description": text}
    if role == "appservice":
        return {"statusCode": status, "message": text}
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

def make_access_token(tenant, aud, lifetime, extra):
    """An opaque, JWT-shaped token (three base64url parts), > 1000 chars.

    Nothing verifies its signature; the emulator only looks it up in the
    table of issued tokens. extra: claims naming the principal (appid,
    oid, upn, ...).
    """
    now = int(time.time())
    header = {"typ": "JWT", "alg": "RS256", "x5t": b64url(os.urandom(20)),
              "kid": b64url(os.urandom(20))}
    claims = {"aud": aud, "iss": f"https://sts.windows.net/{tenant}/",
              "iat": now, "nbf": now, "exp": now + lifetime,
              "idp": f"https://sts.windows.net/{tenant}/",
              "oid": str(uuid.uuid4()), "sub": str(uuid.uuid4()),
              "tid": tenant, "uti": b64url(os.urandom(16)), "ver": "1.0",
              "xms_emu": b64url(os.urandom(400))}
    claims.update(extra)
    parts = [b64url(jdump(header)), b64url(jdump(claims)),
             b64url(os.urandom(256))]
    return ".".join(parts)


def scope_resource(scope):
    """The resource of a v2 scope: ".../.default" -> ".../"."""
    return scope.rsplit("/.default", 1)[0]


def entra_error_obj(error, code, text, client_request_id=None):
    stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    trace = str(uuid.uuid4())
    # Entra echoes the client's client-request-id as the correlation id.
    corr = client_request_id or str(uuid.uuid4())
    desc = (f"AADSTS{code}: {text} Trace ID: {trace} Correlation ID: "
            f"{corr} Timestamp: {stamp}")
    return {"error": error, "error_description": desc, "error_codes": [code],
            "timestamp": stamp, "trace_id": trace, "correlation_id": corr,
            "error_uri": ("https://login.microsoftonline.com/error?code="
                          f"{code}")}


def entra_error(req, status, error, code, text):
    obj = entra_error_obj(error, code, text, req.header("client-request-id"))
    return json_resp(status, obj, [("x-ms-request-id", obj["trace_id"]),
                                   ("Cache-Control", "no-store, no-cache")])


def bad_client(req, code, text):
    """invalid_client: what Entra answers (401) for a bad credential."""
    return entra_error(req, 401, "invalid_client", code, text)


def missing_param(req, field):
    return entra_error(req, 400, "invalid_request", 900144,
                       "The request body must contain the following"
                       f" parameter: '{field}'.")


def entra_ok(body):
    return json_resp(200, body, [("x-ms-request-id", str(uuid.uuid4())),
                                 ("Cache-Control", "no-store, no-cache")])


def known_tenant(emu, tenant, users_too):
    """Is tenant served? Client credentials need a configured tenant;
    user flows also take a user's tenant, organizations and common."""
    if ci_get(emu.cfg.get("tenants", {}), tenant)[1] is not None:
        return True
    if not users_too:
        return False
    return (tenant.lower() in ANY_TENANTS
            or any(str(u.get("tenant", "")).lower() == tenant.lower()
                   for u in emu.cfg.get("users", {}).values()))


def unknown_tenant(req, tenant):
    return entra_error(req, 400, "invalid_request", 90002,
                       f"Tenant '{tenant}' not found. Check to make sure"
                       " you have the correct tenant ID and are signing"
                       " into the correct cloud.")


def client_conf(emu, tenant, client):
    _, tconf = ci_get(emu.cfg.get("tenants", {}), tenant)
    if tconf is None:
        return None
    return ci_get(tconf.get("clients", {}), client)[1]


def grant_source(emu, tenant, form):
    """Which counter a token request counts under (None: unknown grant).
    An assertion is "federated" when the client has a federated_token
    and either no certificate or an assertion without thumbprint."""
    grant = form.get("grant_type")
    if grant == "refresh_token":
        return "refresh_token"
    if grant == DEVICE_GRANT:
        return "device_code"
    if grant != "client_credentials":
        return None
    if "client_assertion" not in form or "client_secret" in form:
        return "client_secret"
    cconf = client_conf(emu, tenant, form.get("client_id", "")) or {}
    if "federated_token" not in cconf:
        return "client_assertion"
    if "certificate" not in cconf:
        return "federated"
    try:
        header = parse_jwt(form["client_assertion"])[0]
    except ValueError:
        return "federated"
    thumbed = "x5t" in header or "x5t#S256" in header
    return "client_assertion" if thumbed else "federated"


async def handle_entra(emu, req, tenant):
    """POST /{tenant}/oauth2/v2.0/token: every grant."""
    form = dict(parse_form(req.body) or [])
    source = grant_source(emu, tenant, form)
    if source:
        # Counted before faults: tests count attempts, not successes.
        emu.counters[f"entra_{source}"] += 1
    await emu.fault_delay("entra")
    fault = emu.take_status_fault("entra")
    if fault:
        return fault
    user_flow = source in ("refresh_token", "device_code")
    if not known_tenant(emu, tenant, user_flow):
        return unknown_tenant(req, tenant)
    for field in ("grant_type", "client_id"):
        if not form.get(field):
            return missing_param(req, field)
    if source is None:
        return entra_error(req, 400, "unsupported_grant_type", 70003,
                           "The app requested an unsupported grant type "
                           f"'{form['grant_type']}'.")
    if source == "refresh_token":
        return redeem_refresh_token(emu, req, tenant, form)
    if source == "device_code":
        return poll_device_code(emu, req, tenant, form)
    return check_client(emu, req, tenant, form, source)


def check_client(emu, req, tenant, form, source):
    """client_credentials: secret, certificate assertion or federated."""
    client = form["client_id"]
    cconf = client_conf(emu, tenant, client)
    if cconf is None:
        return entra_error(req, 400, "unauthorized_client", 700016,
                           f"Application with identifier '{client}' was not"
                           f" found in the directory '{tenant}'. This can"
                           " happen if the application has not been"
                           " installed by the administrator of the tenant"
                           " or consented to by any user in the tenant. You"
                           " may have sent your authentication request to"
                           " the wrong tenant.")
    if "client_secret" in form and "client_assertion" in form:
        return entra_error(req, 400, "invalid_request", 90014,
                           "Send either 'client_secret' or"
                           " 'client_assertion', not both.")
    if "client_secret" not in form and "client_assertion" not in form:
        return bad_client(req, 7000218, "The request body must contain the"
                          " following parameter: 'client_assertion' or"
                          " 'client_secret'.")
    if source == "client_secret":
        err = check_secret(req, client, cconf, form["client_secret"])
    elif form.get("client_assertion_type") != JWT_BEARER:
        err = entra_error(req, 400, "invalid_request", 50027,
                          "client_assertion_type must be"
                          f" '{JWT_BEARER}'.")
    elif source == "federated":
        err = check_federated(req, cconf, form["client_assertion"])
    else:
        err = check_assertion(emu, req, client, cconf,
                              form["client_assertion"])
    if err:
        return err
    scope = form.get("scope", "")
    if scope not in ARM_SCOPES:
        return entra_error(req, 400, "invalid_scope", 70011,
                           "The provided request must include a 'scope'"
                           " input parameter. The provided value for the"
                           " input parameter 'scope' is not valid. The"
                           f" scope {scope} is not valid.")
    token, lifetime = emu.issue_token(
        source, tenant, scope_resource(scope),
        {"appid": client, "appidacr": "1" if source == "client_secret"
         else "2", "idtyp": "app"})
    return entra_ok({"token_type": "Bearer", "expires_in": lifetime,
                     "ext_expires_in": lifetime, "access_token": token})


def check_secret(req, client, cconf, secret):
    if "secret" not in cconf or secret != cconf["secret"]:
        return bad_client(req, 7000215, "Invalid client secret provided."
                          " Ensure the secret being sent in the request is"
                          " the client secret value, not the client secret"
                          f" ID, for a secret added to app '{client}'.")
    return None


# -- JWT client assertions (certificate credential)

B64URL_RE = re.compile(r"^[A-Za-z0-9_-]*$")


def b64url_decode(seg):
    """Strict: unpadded base64url only, as JWS compact segments are."""
    if not B64URL_RE.match(seg) or len(seg) % 4 == 1:
        raise ValueError("not unpadded base64url")
    return base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4))


def parse_jwt(text):
    """(header, claims, signature, signed bytes); ValueError if malformed."""
    parts = text.split(".")
    if len(parts) != 3:
        raise ValueError("a JWT has three segments")
    header = json.loads(b64url_decode(parts[0]))
    claims = json.loads(b64url_decode(parts[1]))
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise ValueError("header and claims must be JSON objects")
    return (header, claims, b64url_decode(parts[2]),
            f"{parts[0]}.{parts[1]}".encode())


def jwt_claims(text):
    """Claims of a JWT, or {} if it is none."""
    try:
        return parse_jwt(text)[1]
    except ValueError:
        return {}


def crypto():
    """python3-cryptography, imported only when a certificate is used."""
    try:
        from cryptography import x509, exceptions
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
    except ImportError:
        raise ConfigError("certificate credentials need python3-cryptography"
                          " (tests/deps.sh installs it)")
    return {"x509": x509, "InvalidSignature": exceptions.InvalidSignature,
            "hashes": hashes, "serialization": serialization,
            "padding": padding, "rsa": rsa}


PEM_CERT_RE = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n.+?"
                         rb"-----END CERTIFICATE-----", re.S)


def load_certificates(spec):
    """[(DER bytes, public key)] of a client's "certificate": a path or a
    list of paths to PEM files; the first certificate of each file counts
    (the file may hold the private key too)."""
    c = crypto()
    paths = [spec] if isinstance(spec, str) else spec
    if not isinstance(paths, list) or not all(isinstance(p, str)
                                               for p in paths):
        raise ConfigError("certificate: a path or a list of paths")
    out = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                found = PEM_CERT_RE.search(f.read())
        except OSError as e:
            raise ConfigError(f"certificate {path}: {e.strerror}")
        if not found:
            raise ConfigError(f"certificate {path}: no PEM certificate")
        try:
            cert = c["x509"].load_pem_x509_certificate(found.group(0))
        except ValueError as e:
            raise ConfigError(f"certificate {path}: {e}")
        der = cert.public_bytes(c["serialization"].Encoding.DER)
        out.append((der, cert.public_key()))
    return out


def thumb(value, standard_ok):
    """A thumbprint header value in one canonical form (unpadded
    base64url), or None; standard_ok also takes '+' and '/'."""
    if not isinstance(value, str):
        return None
    value = value.rstrip("=")
    if standard_ok:
        value = value.replace("+", "-").replace("/", "_")
    return value


def find_cert(certs, header):
    """The registered (der, key) the assertion's x5t / x5t#S256 names;
    every thumbprint header present must name the same certificate."""
    wanted = []
    if "x5t#S256" in header:
        wanted.append((hashlib.sha256, thumb(header["x5t#S256"], True)))
    if "x5t" in header:
        wanted.append((hashlib.sha1, thumb(header["x5t"], False)))
    if not wanted:
        return None
    for der, key in certs:
        if all(b64url(h(der).digest()) == v for h, v in wanted):
            return der, key
    return None


def verify_signature(alg, key, signed, sig):
    c = crypto()
    if not isinstance(key, c["rsa"].RSAPublicKey):
        return False
    pad = c["padding"]
    if alg == "RS256":
        scheme = pad.PKCS1v15()
    else:
        scheme = pad.PSS(mgf=pad.MGF1(c["hashes"].SHA256()), salt_length=32)
    try:
        key.verify(sig, signed, scheme, c["hashes"].SHA256())
        return True
    except c["InvalidSignature"]:
        return False


def token_url_ok(emu, req, aud):
    """aud is this emulator's token URL for the path the request came to:
    https://localhost:PORT/{tenant}/oauth2/v2.0/token (or 127.0.0.1, or
    the listen address); the path compares case-insensitively."""
    if not isinstance(aud, str):
        return False
    try:
        url = urllib.parse.urlsplit(aud)
        port = url.port
    except ValueError:
        return False
    hosts = {"localhost", "127.0.0.1", norm_ip(emu.listen) or emu.listen}
    return (url.scheme == emu.scheme and port == emu.port
            and (url.hostname or "").lower() in hosts
            and url.path.lower() == req.path.lower()
            and not url.query and not url.fragment
            and "@" not in url.netloc)


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_assertion(emu, req, client, cconf, assertion):
    """A certificate credential's JWT, checked in this order: form,
    thumbprint, signature, iss, sub, aud, time, jti."""
    try:
        header, claims, sig, signed = parse_jwt(assertion)
    except ValueError as e:
        return entra_error(req, 400, "invalid_request", 50027,
                           f"JWT token is invalid or malformed ({e}).")
    if "certificate" not in cconf:
        return bad_client(req, 50012, "No certificate is registered for"
                          f" application '{client}'.")
    try:
        certs = load_certificates(cconf["certificate"])
    except ConfigError as e:
        emu.internal_error(e)
        return entra_error(req, 500, "server_error", 50000, str(e))
    found = find_cert(certs, header)
    if found is None:
        return bad_client(req, 50012, "The certificate used to sign the"
                          " client assertion is not registered on"
                          f" application '{client}' (x5t"
                          f" '{header.get('x5t')}', x5t#S256"
                          f" '{header.get('x5t#S256')}').")
    if header.get("alg") not in ("RS256", "PS256") or not verify_signature(
            header["alg"], found[1], signed, sig):
        return bad_client(req, 700027, "Client assertion failed signature"
                          f" validation (alg {header.get('alg')!r}).")
    return check_claims(emu, req, client, claims)


def check_claims(emu, req, client, claims):
    if claims.get("iss") != client:
        return bad_client(req, 700021, "Client assertion application"
                          " identifier doesn't match 'client_id'"
                          " parameter.")
    if claims.get("sub") != claims.get("iss"):
        return bad_client(req, 50048, "Subject mismatches Issuer claim in"
                          " the client assertion.")
    if not token_url_ok(emu, req, claims.get("aud")):
        return bad_client(req, 700023, "Client assertion audience claim"
                          f" '{claims.get('aud')}' is not the token"
                          " endpoint it was sent to.")
    now = time.time()
    exp, nbf, iat = claims.get("exp"), claims.get("nbf"), claims.get("iat")
    if not is_number(exp) or any(v is not None and not is_number(v)
                                 for v in (nbf, iat)):
        return entra_error(req, 400, "invalid_request", 50027, "JWT token"
                           " is invalid or malformed (exp, nbf and iat"
                           " must be numbers; exp is required).")
    if (exp <= now or exp > now + ASSERTION_MAX_S + ASSERTION_SKEW_S
            or any(v is not None and v > now + ASSERTION_SKEW_S
                   for v in (nbf, iat))):
        return bad_client(req, 700024, "Client assertion is not within its"
                          f" valid time range. Current time: {int(now)},"
                          f" nbf: {nbf}, iat: {iat}, exp: {exp}.")
    if not isinstance(claims.get("jti"), str) or not claims["jti"]:
        return entra_error(req, 400, "invalid_request", 50027, "JWT token"
                           " is invalid or malformed (no jti).")
    return None


def check_federated(req, cconf, assertion):
    """Workload identity: the assertion must be one of the configured
    federated_token strings; a JWT one must not have expired."""
    allowed = cconf.get("federated_token")
    allowed = [allowed] if isinstance(allowed, str) else allowed
    if assertion in allowed:
        exp = jwt_claims(assertion).get("exp")
        if is_number(exp) and exp <= time.time():
            return bad_client(req, 700024, "Client assertion is not within"
                              " its valid time range (federated token"
                              f" expired at {exp}).")
        return None
    given = jwt_claims(assertion)
    issuers = {jwt_claims(t).get("iss") for t in allowed} - {None}
    if given.get("iss") and issuers and given["iss"] not in issuers:
        return bad_client(req, 700211, "No matching federated identity"
                          " record found for presented assertion issuer"
                          f" '{given['iss']}'.")
    return entra_error(req, 400, "invalid_request", 70021,
                       "No matching federated identity record found for"
                       " presented assertion. Assertion Issuer:"
                       f" '{given.get('iss', '')}'. Assertion Subject:"
                       f" '{given.get('sub', '')}'. Assertion Audience:"
                       f" '{given.get('aud', '')}'.")


# -- user tokens: refresh token and device code

def public_client_ok(emu, client):
    allowed = [CLI_CLIENT_ID] + list(emu.cfg.get("public_clients", []))
    return client.lower() in (c.lower() for c in allowed)


def unknown_public_client(req, client, tenant):
    return entra_error(req, 400, "unauthorized_client", 700016,
                       f"Application with identifier '{client}' was not"
                       f" found in the directory '{tenant}' (not a public"
                       " client of this emulator).")


def user_scope(req, form):
    """(ARM scope, None) for a user flow's scope list, or (None, error):
    exactly one resource scope, an ARM one; OIDC scopes may come too."""
    if not form.get("scope"):
        return None, missing_param(req, "scope")
    resources = [s for s in form["scope"].split() if s not in USER_SCOPES]
    if len(resources) != 1 or resources[0] not in ARM_SCOPES:
        return None, entra_error(
            req, 400, "invalid_scope", 70011, "The provided value for the"
            f" input parameter 'scope' is not valid: {form['scope']}"
            f" (one ARM scope needed, e.g. {ARM_SCOPES[0]}).")
    return resources[0], None


def user_oid(upn, user):
    return user.get("oid") or str(uuid.uuid5(uuid.NAMESPACE_URL,
                                             f"azure-emu:user:{upn}"))


def make_id_token(client, upn, user, now):
    """JWT-shaped, signature random: nothing should verify it."""
    tid = user["tenant"]
    header = {"typ": "JWT", "alg": "RS256", "kid": b64url(os.urandom(20))}
    claims = {"aud": client, "iss": f"https://login.microsoftonline.com/"
              f"{tid}/v2.0", "iat": now, "nbf": now, "exp": now + 3600,
              "name": user.get("name", upn), "oid": user_oid(upn, user),
              "preferred_username": upn, "sub": b64url(os.urandom(32)),
              "tid": tid, "ver": "2.0"}
    return ".".join([b64url(jdump(header)), b64url(jdump(claims)),
                     b64url(os.urandom(256))])


def user_token_claims(client, upn, user):
    return {"appid": client, "appidacr": "0", "idtyp": "user",
            "oid": user_oid(upn, user), "upn": upn, "unique_name": upn,
            "name": user.get("name", upn), "scp": "user_impersonation"}


def user_token_response(emu, source, client, upn, user, scope):
    """A v2 token response for a user, with a new refresh token."""
    now = int(time.time())
    tid = user["tenant"]
    token, lifetime = emu.issue_token(source, tid, scope_resource(scope),
                                      user_token_claims(client, upn, user))
    rt = "0.A" + secrets.token_urlsafe(600)
    emu.issued_rts[rt] = upn
    info = {"uid": user_oid(upn, user), "utid": tid}
    body = {"token_type": "Bearer", "scope": scope, "expires_in": lifetime,
            "ext_expires_in": lifetime, "access_token": token,
            "refresh_token": rt,
            "id_token": make_id_token(client, upn, user, now),
            "client_info": b64url(jdump(info))}
    if client.lower() == CLI_CLIENT_ID:
        body["foci"] = "1"            # the Azure CLI is a FOCI client
    return entra_ok(body)


def find_refresh_token(emu, rt):
    """(state, upn): state valid|expired|revoked|unknown."""
    if rt in emu.revoked_rts:
        return "revoked", None
    for upn, user in emu.cfg.get("users", {}).items():
        if rt in user.get("expired_refresh_tokens", []):
            return "expired", upn
        if rt in user.get("refresh_tokens", []):
            return "valid", upn
    upn = emu.issued_rts.get(rt)
    if upn is not None and upn in emu.cfg.get("users", {}):
        return "valid", upn
    return "unknown", None


def tenant_has_user(tenant, user):
    return (tenant.lower() in ANY_TENANTS
            or tenant.lower() == str(user.get("tenant", "")).lower())


def redeem_refresh_token(emu, req, tenant, form):
    client = form["client_id"]
    if not public_client_ok(emu, client):
        return unknown_public_client(req, client, tenant)
    if not form.get("refresh_token"):
        return missing_param(req, "refresh_token")
    scope, err = user_scope(req, form)
    if err:
        return err
    rt = form["refresh_token"]
    state, upn = find_refresh_token(emu, rt)
    if state == "expired":
        return entra_error(req, 400, "invalid_grant", 700082, "The refresh"
                           " token has expired due to inactivity. Sign in"
                           " again.")
    if state != "valid":
        return entra_error(req, 400, "invalid_grant", 70008, "The provided"
                           " refresh token has expired or been revoked."
                           " Sign in again.")
    user = emu.cfg["users"][upn]
    if not tenant_has_user(tenant, user):
        return entra_error(req, 400, "invalid_grant", 50020, f"User account"
                           f" '{upn}' does not exist in tenant '{tenant}'.")
    err = user.get("refresh_error")
    if err:
        return entra_error(req, err.get("status", 400),
                           err.get("error", "invalid_grant"),
                           err.get("code", 50076),
                           err.get("text", "Emulated refusal for this"
                                   " user."))
    if emu.cfg.get("rotate_refresh_tokens"):
        emu.revoked_rts.add(rt)
    return user_token_response(emu, "refresh_token", client, upn, user,
                               scope)


class DeviceFlow:
    """One device authorization: issued, polled, approved or denied."""

    def __init__(self, emu, tenant, client, scope):
        cfg = emu.cfg
        self.device_code = "DAQABAAEAAA" + secrets.token_urlsafe(120)
        alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
        self.user_code = "".join(secrets.choice(alphabet) for _ in range(9))
        self.tenant, self.client, self.scope = tenant, client, scope
        self.expires_in = cfg.get("device_code_expires_s", 900)
        self.interval = cfg.get("device_code_interval_s", 5)
        self.created = time.monotonic()
        self.last_poll = None
        self.polls = 0
        self.slow_downs = 0
        self.state = "pending"        # pending|approved|denied|redeemed
        self.user = None

    def public(self):
        left = self.created + self.expires_in - time.monotonic()
        return {"user_code": self.user_code, "client_id": self.client,
                "tenant": self.tenant, "scope": self.scope,
                "state": self.state, "user": self.user,
                "polls": self.polls, "slow_downs": self.slow_downs,
                "interval": self.interval,
                "expires_in_s": round(max(left, 0), 3)}


async def handle_devicecode(emu, req, tenant):
    """POST /{tenant}/oauth2/v2.0/devicecode: start a device code flow."""
    await emu.fault_delay("devicecode")
    fault = emu.take_status_fault("devicecode")
    if fault:
        return fault
    if not known_tenant(emu, tenant, True):
        return unknown_tenant(req, tenant)
    form = dict(parse_form(req.body) or [])
    if not form.get("client_id"):
        return missing_param(req, "client_id")
    if not public_client_ok(emu, form["client_id"]):
        return unknown_public_client(req, form["client_id"], tenant)
    scope, err = user_scope(req, form)
    if err:
        return err
    flow = DeviceFlow(emu, tenant, form["client_id"], scope)
    emu.device_flows[flow.device_code] = flow
    return entra_ok({
        "user_code": flow.user_code, "device_code": flow.device_code,
        "verification_uri": VERIFICATION_URI,
        "expires_in": flow.expires_in, "interval": flow.interval,
        "message": f"To sign in, use a web browser to open the page"
                   f" {VERIFICATION_URI} and enter the code"
                   f" {flow.user_code} to authenticate."})


def poll_device_code(emu, req, tenant, form):
    """The device code grant, checked in this order: known code,
    redeemed, expired, declined, polled too fast, approved, pending."""
    code = form.get("device_code") or form.get("code")
    if not code:
        return missing_param(req, "device_code")
    flow = emu.device_flows.get(code)
    if (flow is None or flow.tenant.lower() != tenant.lower()
            or flow.client.lower() != form["client_id"].lower()):
        return entra_error(req, 400, "bad_verification_code", 70000,
                           "The device_code is not known for this tenant"
                           " and client.")
    now = time.monotonic()
    if flow.state == "redeemed":
        return entra_error(req, 400, "invalid_grant", 54005, "This device"
                           " code has already been redeemed.")
    if now >= flow.created + flow.expires_in:
        return entra_error(req, 400, "expired_token", 70020, "The provided"
                           " value for the input parameter 'device_code' is"
                           " not valid. This device code has expired.")
    if flow.state == "denied":
        return entra_error(req, 400, "authorization_declined", 70000,
                           "The user declined the sign-in request.")
    early = (flow.last_poll is not None and flow.interval
             and now - flow.last_poll < flow.interval - POLL_TOLERANCE_S)
    flow.last_poll = now
    flow.polls += 1
    if early:
        # RFC 8628 3.5: the client adds 5 s to its interval from now on.
        flow.slow_downs += 1
        flow.interval += emu.cfg.get("device_code_slow_down_s", 5)
        return entra_error(req, 400, "slow_down", 70016, "OAuth 2.0 device"
                           " flow error. Polling too fast: slow down.")
    auto = emu.cfg.get("device_code_auto_approve")
    if flow.state == "pending" and auto and flow.polls > 1:
        approve_flow(emu, flow, auto)
    if flow.state == "approved":
        flow.state = "redeemed"
        user = emu.cfg.get("users", {}).get(flow.user)
        if user is None:
            return entra_error(req, 400, "invalid_grant", 50034, "The user"
                               f" account {flow.user} does not exist.")
        return user_token_response(emu, "device_code", flow.client,
                                   flow.user, user, flow.scope)
    return entra_error(req, 400, "authorization_pending", 70016, "OAuth 2.0"
                       " device flow error. Authorization is pending."
                       " Continue polling.")


def approve_flow(emu, flow, upn):
    """Sign a user in to a flow; raises ConfigError if that cannot be."""
    user = emu.cfg.get("users", {}).get(upn)
    if user is None:
        raise ConfigError(f"no such user in config: {upn!r}")
    if not tenant_has_user(flow.tenant, user):
        raise ConfigError(f"user {upn} is not in tenant {flow.tenant}")
    flow.state = "approved"
    flow.user = upn


def flow_by_user_code(emu, body):
    code = str(body.get("user_code", "")).upper()
    for flow in emu.device_flows.values():
        if flow.user_code == code:
            return flow
    raise LookupError(f"no device code flow with user_code {code!r}")


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


# ---------------------------------------------------------------- MI

def mi_error(status, error, description):
    """IMDS-style error body (IMDS, Arc, Cloud Shell)."""
    return json_resp(status, {"error": error,
                              "error_description": description})


def appservice_error(status, message):
    return json_resp(status, {"statusCode": status, "message": message,
                              "correlationId": str(uuid.uuid4())})


def metadata_ok(req):
    return req.header("metadata").lower() == "true"


def resource_error(resource):
    """Description of why a managed identity resource is refused, or
    None. A v2 scope ("/.default") is refused: MI endpoints take a
    resource."""
    if not resource:
        return "Required query variable 'resource' is missing"
    if resource not in ARM_RESOURCES:
        return ("AADSTS500011: The resource principal named"
                f" {resource} was not found in the tenant.")
    return None


def system_identity(mi):
    return {"kind": "system",
            "client_id": mi.get("system_client_id") or str(uuid.uuid5(
                uuid.NAMESPACE_URL, "azure-emu:system-identity:client")),
            "object_id": mi.get("system_object_id") or str(uuid.uuid5(
                uuid.NAMESPACE_URL, "azure-emu:system-identity:object")),
            "resource_id": None}


def pick_identity(emu, query, selectors):
    """(identity, None) or (None, reason). selectors maps a query name to
    the identity field it matches (client_id, object_id, resource_id)."""
    mi = emu.cfg.get("managed_identity", {})
    given = [(k, query[k]) for k in selectors if query.get(k)]
    if len(given) > 1:
        return None, ("Only one of " + ", ".join(selectors)
                      + " may be given")
    users = [dict(u, kind="user") for u in mi.get("user_assigned", [])]
    if given:
        name, value = given[0]
        field = selectors[name]
        for ident in users:
            if str(ident.get(field, "")).lower() == value.lower():
                return ident, None
        return None, "Identity not found"
    if mi.get("system"):
        return system_identity(mi), None
    if len(users) == 1:
        return users[0], None
    if users:
        return None, ("More than one user-assigned identity is assigned;"
                      " name one with " + ", ".join(selectors))
    return None, "Identity not found"


def identity_claims(ident):
    claims = {"appid": ident.get("client_id"), "appidacr": "2",
              "idtyp": "app", "oid": ident.get("object_id")}
    if ident.get("resource_id"):
        claims["xms_mirid"] = ident["resource_id"]
    return claims


def mi_tenant(emu):
    return emu.cfg.get("managed_identity", {}).get(
        "tenant", "00000000-0000-0000-0000-0000000000e1")


def msi_body(token, lifetime, resource, client_id=None):
    """The IMDS token answer: every number a string."""
    now = int(time.time())
    body = {"access_token": token, "refresh_token": "",
            "expires_in": str(lifetime), "expires_on": str(now + lifetime),
            "ext_expires_in": str(lifetime), "not_before": str(now),
            "resource": resource, "token_type": "Bearer"}
    if client_id:
        body["client_id"] = client_id
    return json_resp(200, body)


IMDS_SELECTORS = {"client_id": "client_id", "object_id": "object_id",
                  "msi_res_id": "resource_id", "mi_res_id": "resource_id"}
APPSERVICE_SELECTORS = {"client_id": "client_id", "object_id": "object_id",
                        "principal_id": "object_id",
                        "mi_res_id": "resource_id"}


async def msi_precheck(emu, req, role, versions, resource):
    """IMDS, Arc and Cloud Shell, in order: faults, the Metadata header,
    api-version (versions: None unchecked, () any, else one of them),
    resource. An error Response, or None."""
    await emu.fault_delay(role)
    fault = emu.take_status_fault(role)
    if fault:
        return fault
    if not metadata_ok(req):
        return mi_error(400, "invalid_request",
                        "Required metadata header not specified")
    version = req.query.get("api-version")
    if versions is not None and not version:
        return mi_error(400, "invalid_request",
                        "Required query variable 'api-version' is missing")
    if versions and version not in versions:
        return mi_error(400, "invalid_request", "api-version must be one"
                        f" of {', '.join(versions)}")
    why = resource_error(resource)
    if why:
        return mi_error(400, "invalid_resource" if resource
                        else "invalid_request", why)
    return None


async def handle_imds(emu, req):
    """GET /metadata/identity/oauth2/token (IMDS, api-version 2018-02-01)."""
    resource = req.query.get("resource", "")
    err = await msi_precheck(emu, req, "imds", (), resource)
    if err:
        return err
    ident, why = pick_identity(emu, req.query, IMDS_SELECTORS)
    if ident is None:
        return mi_error(400, "invalid_request", why)
    token, lifetime = emu.issue_token("imds", mi_tenant(emu), resource,
                                      identity_claims(ident))
    return msi_body(token, lifetime, resource, ident["client_id"])


async def handle_appservice(emu, req):
    """GET /msi/token: App Service / Container Apps, 2019-08-01."""
    await emu.fault_delay("appservice")
    fault = emu.take_status_fault("appservice")
    if fault:
        return fault
    want = emu.cfg.get("appservice_header")
    if not want:
        return appservice_error(500, "emulator: appservice_header is not"
                                " configured")
    if req.header("x-identity-header") != want:
        return appservice_error(401, "X-IDENTITY-HEADER is missing or"
                                " wrong")
    if req.query.get("api-version") != "2019-08-01":
        return appservice_error(400, "api-version must be 2019-08-01")
    resource = req.query.get("resource", "")
    why = resource_error(resource)
    if why:
        return appservice_error(400, why)
    ident, why = pick_identity(emu, req.query, APPSERVICE_SELECTORS)
    if ident is None:
        return appservice_error(400, f"Unable to load the managed"
                                f" identity: {why}")
    token, lifetime = emu.issue_token("appservice", mi_tenant(emu),
                                      resource, identity_claims(ident))
    return json_resp(200, {"access_token": token,
                           "expires_on": str(int(time.time()) + lifetime),
                           "resource": resource, "token_type": "Bearer",
                           "client_id": ident["client_id"]})


def remove_files(paths):
    for path in paths:
        try:
            os.unlink(path)
        except OSError:
            pass


def write_secret_file(path, secret):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret)


def arc_outside_dir(emu):
    """A directory of our own outside arc_token_dir, for realm faults."""
    if emu.arc_outside is None:
        emu.arc_outside = tempfile.mkdtemp(prefix="azure-emu-arc-")
    return emu.arc_outside


def arc_challenge(emu, tokdir):
    """401 naming a new secret file, shaped by the arc_realm fault."""
    mode = emu.faults.get("arc_realm")
    name = secrets.token_hex(16)
    secret = secrets.token_urlsafe(32)
    if mode == "too_big":
        secret = (secret + secrets.token_urlsafe(4200))[:4097]
    files = []
    if mode in ("outside", "dotdot", "symlink"):
        outside = os.path.join(arc_outside_dir(emu), f"{name}.key")
        write_secret_file(outside, secret)
        files.append(outside)
        if mode == "outside":
            realm = outside
        elif mode == "dotdot":
            realm = os.path.join(tokdir, os.path.relpath(outside, tokdir))
        else:
            realm = os.path.join(tokdir, f"{name}.key")
            os.symlink(outside, realm)
            files.append(realm)
    elif mode == "missing":
        realm = os.path.join(tokdir, f"{name}.key")
    else:
        ext = ".txt" if mode == "wrong_ext" else ".key"
        realm = os.path.join(tokdir, name + ext)
        write_secret_file(realm, secret)
        files.append(realm)
    if len(emu.arc_secrets) >= ARC_MAX_SECRETS:
        oldest = next(iter(emu.arc_secrets))
        remove_files(emu.arc_secrets.pop(oldest))
    emu.arc_secrets[secret] = files
    headers = []
    if mode != "no_header":
        scheme = "Bearer" if mode == "not_basic" else "Basic"
        headers.append(("WWW-Authenticate", f"{scheme} realm={realm}"))
    return json_resp(401, {"error": "unauthorized_client",
                           "error_description": "Read the file the realm"
                           " names and send it as Basic credentials."},
                     headers)


async def handle_arc(emu, req):
    """GET /arc/metadata/identity/oauth2/token: Azure Arc (himds)."""
    resource = req.query.get("resource", "")
    err = await msi_precheck(emu, req, "arc", ARC_API_VERSIONS, resource)
    if err:
        return err
    tokdir = emu.cfg.get("arc_token_dir")
    if not tokdir or not os.path.isdir(tokdir):
        return mi_error(500, "server_error", "emulator: arc_token_dir is"
                        " not configured or not a directory")
    scheme, _, cred = req.header("authorization").partition(" ")
    if scheme.lower() == "basic" and cred in emu.arc_secrets:
        # A secret works once; its file goes with it.
        remove_files(emu.arc_secrets.pop(cred))
        ident = system_identity(emu.cfg.get("managed_identity", {}))
        token, lifetime = emu.issue_token("arc", mi_tenant(emu), resource,
                                          identity_claims(ident))
        return msi_body(token, lifetime, resource)
    return arc_challenge(emu, os.path.abspath(tokdir))


async def handle_cloudshell(emu, req):
    """POST /cloudshell/oauth2/token: the Cloud Shell user's token."""
    resource = ""
    if media_type(req) == "application/x-www-form-urlencoded":
        resource = dict(parse_form(req.body) or []).get("resource", "")
    err = await msi_precheck(emu, req, "cloudshell", None, resource)
    if err:
        return err
    upn = emu.cfg.get("cloudshell_user")
    user = emu.cfg.get("users", {}).get(upn)
    if user is None:
        return mi_error(400, "invalid_request", "emulator: no"
                        " cloudshell_user is signed in")
    token, lifetime = emu.issue_token(
        "cloudshell", user["tenant"], resource,
        user_token_claims(CLI_CLIENT_ID, upn, user))
    return msi_body(token, lifetime, resource)


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
        if get and what == "devicecode":
            return json_resp(200, {"flows": [
                f.public() for f in emu.device_flows.values()]})
        if req.method == "POST":
            return emu_post(emu, req, what)
    except (ValueError, ConfigError) as e:
        return json_resp(400, {"message": str(e)})
    except LookupError as e:
        return json_resp(404, {"message": str(e)})
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
    if what == "devicecode/approve":
        flow = flow_by_user_code(emu, body)
        approve_flow(emu, flow, body.get("user"))
        return json_resp(200, flow.public())
    if what == "devicecode/deny":
        flow = flow_by_user_code(emu, body)
        flow.state = "denied"
        return json_resp(200, flow.public())
    if what == "revoke":
        return json_resp(200, {"revoked": revoke(emu, body)})
    return json_resp(404, {"message": f"no such test endpoint: {what}"})


def revoke(emu, body):
    """Revoke {"refresh_token": RT} or every RT of {"user": UPN}."""
    if "refresh_token" in body:
        emu.revoked_rts.add(body["refresh_token"])
        return 1
    upn = body.get("user")
    if upn not in emu.cfg.get("users", {}):
        raise ConfigError(f"no such user in config: {upn!r}")
    rts = set(emu.cfg["users"][upn].get("refresh_tokens", []))
    rts |= {rt for rt, u in emu.issued_rts.items() if u == upn}
    emu.revoked_rts |= rts
    return len(rts)


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
    if low and low[0] in ("_emu", "_fake") and len(segs) >= 2:
        return "emu", "/".join(segs[1:])
    if len(low) == 4 and low[1:] == ["oauth2", "v2.0", "token"]:
        return "entra", segs[0]
    if len(low) == 4 and low[1:] == ["oauth2", "v2.0", "devicecode"]:
        return "devicecode", segs[0]
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


PLAIN_ROUTES = {"/metadata/identity/oauth2/token": "imds",
                "/msi/token": "appservice",
                "/arc/metadata/identity/oauth2/token": "arc",
                "/cloudshell/oauth2/token": "cloudshell"}


def route_plain(req):
    """Routes of the plain-HTTP managed identity listener."""
    segs = [urllib.parse.unquote(s) for s in req.path.split("/")[1:]]
    if segs and segs[0].lower() in ("_emu", "_fake") and len(segs) >= 2:
        return "emu", "/".join(segs[1:])
    return PLAIN_ROUTES.get(req.path, "other"), None


METHODS = {"entra": "POST", "tokens_post": "POST", "tokens_delete": "DELETE",
           "connection": "POST", "devicecode": "POST", "imds": "GET",
           "appservice": "GET", "arc": "GET", "cloudshell": "POST"}
HANDLERS = {"imds": handle_imds, "appservice": handle_appservice,
            "arc": handle_arc, "cloudshell": handle_cloudshell}


async def dispatch(emu, req, role, arg):
    if METHODS.get(role, req.method) != req.method:
        return bastion_error(405, "Method not allowed")
    if role in HANDLERS:
        return await HANDLERS[role](emu, req)
    if role == "entra":
        return await handle_entra(emu, req, arg)
    if role == "devicecode":
        return await handle_devicecode(emu, req, arg)
    if role == "arm":
        return await handle_arm(emu, req, arg)
    if role == "tokens_post":
        return await handle_tokens_post(emu, req)
    if role == "tokens_delete":
        return await handle_tokens_delete(emu, req, arg)
    if role == "connection":
        return await handle_connection(emu, req)
    return bastion_error(404, "Not found")


async def serve_requests(emu, reader, writer, conn, plain):
    """HTTP/1.1 keep-alive loop; a WebSocket upgrade takes the connection.
    plain: the managed identity listener, with its own routes."""
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
        role, arg = route_plain(req) if plain else route(req)
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


async def handle_conn(emu, tls, reader, writer, plain=False):
    emu.conn_seq += 1
    emu.counters["plain_connections" if plain else "connections"] += 1
    conn = emu.conn_seq
    try:
        if tls is not None:
            try:
                await writer.start_tls(tls, ssl_handshake_timeout=10)
            except (OSError, asyncio.TimeoutError) as e:
                emu.counters["tls_failures"] += 1
                log(f"conn {conn}: TLS handshake failed: {e}")
                return
        await serve_requests(emu, reader, writer, conn, plain)
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

    def on_conn(plain):
        async def serve_one(reader, writer):
            task = asyncio.current_task()
            conns[task] = writer
            try:
                await handle_conn(emu, None if plain else tls, reader,
                                  writer, plain)
            finally:
                conns.pop(task, None)
        return serve_one

    servers = [await asyncio.start_server(on_conn(False), args.listen,
                                          args.port, limit=STREAM_LIMIT)]
    emu.port = servers[0].sockets[0].getsockname()[1]
    if args.plain_port_file or args.plain_port:
        servers.append(await asyncio.start_server(
            on_conn(True), args.listen, args.plain_port, limit=STREAM_LIMIT))
        emu.plain_port = servers[1].sockets[0].getsockname()[1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.set_exception_handler(lambda _loop, ctx: on_loop_error(emu, ctx))
    # The plain port file first: once the main one exists, both do.
    if args.plain_port_file:
        write_port_file(args.plain_port_file, emu.plain_port)
    if args.port_file:
        write_port_file(args.port_file, emu.port)
    log(f"listening on {args.listen}:{emu.port}"
        + (f", plain HTTP on {emu.plain_port}" if emu.plain_port else ""))
    await stop.wait()
    log("stopping")
    for server in servers:
        server.close()
    emu.cleanup()
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
    p.add_argument("--plain-port", type=int, default=0,
                   help="also serve the managed identity endpoints over"
                   " plain HTTP on this port (0: any free port, when"
                   " --plain-port-file is given)")
    p.add_argument("--plain-port-file",
                   help="start the plain-HTTP managed identity listener"
                   " and write its port here")
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
        emu = Emulator(cfg, fixtures, args.seed, args.listen,
                       "http" if args.no_tls else "https")
    except (OSError, ValueError, KeyError, ConfigError) as e:
        print(f"azure_emu: {e}", file=sys.stderr)
        return 2
    asyncio.run(serve(args, emu))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
