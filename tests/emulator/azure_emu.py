#!/usr/bin/python3
"""Local emulator of Entra ID, ARM and the Azure Bastion data plane.

Every bastion-stdio test talks to this one process instead of Azure. It serves
HTTPS and WSS (HTTP/1.1 only) on one loopback port (and on one more for
each bastion with "own_port") and routes by path:

  POST   /{tenant}/oauth2/v2.0/token                  Entra, every grant below
  POST   /{tenant}/oauth2/v2.0/devicecode             Entra, device code start
  POST   /providers/Microsoft.ResourceGraph/resources Azure Resource Graph
  GET    /subscriptions/.../bastionHosts/{name}       ARM bastion host
  GET    /subscriptions/{s}[/resourceGroups/{rg}]/providers/
             Microsoft.Network/bastionHosts           ARM bastion list
  GET    /subscriptions/.../virtualMachines/{vm}      ARM VM (also VMSS VMs,
             [?$expand=instanceView]                    .../virtualMachine-
  GET    .../virtualMachines/{vm}/instanceView          ScaleSets/{ss}/
  POST   .../virtualMachines/{vm}/start                 virtualMachines/{n})
  GET    /subscriptions/{s}/providers/Microsoft.Compute/locations/{loc}/
             operations/{id}[?monitor=true]           a start's progress
  GET    /subscriptions/.../networkInterfaces/{nic}   ARM NIC
  GET    /subscriptions/.../virtualNetworks/{vnet}    ARM vnet and peerings
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

Wire behaviour follows shared/docs/PROTOCOL.md (sections 3-9, 13, 14) and
AUTH.md (2, 3, 5, 7). ARM bodies are the azure-rest-api-specs example
payloads, loaded at run time, with only the fields a test needs
overridden; a virtual network and a scale set have no example there, so
their bodies are ours (the 2024-07-01 schema's fields discovery needs).

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
   "subscriptions": {              # who sees what (see "Scope" below)
     "<subscription id>": {
       "tenant": "<tenant>",       # tokens of another tid -> 401
       "principals": ["*"]}},      # appid, oid, upn or xms_mirid of the
                                   #   tokens that may see it; default *
   "vnets": {
     "<vnet id: /subscriptions/<s>/resourceGroups/<rg>/providers/
       Microsoft.Network/virtualNetworks/<name>>": {
       "address_prefixes": ["10.1.0.0/16"],
       "subnets": {"default": "10.1.0.0/24"},  # name -> prefix or null;
                                   #   subnets that NICs or bastions name
                                   #   are added (prefix unknown)
       "location": "westus",       # default westus
       "peerings": ["<vnet id>",   # or {"remote": id, "name": "..",
                    ...]}},        #   "state": "Connected"|"Initiated"|
                                   #   "Disconnected"}; see "Peerings"
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
       "own_port": false,          # true (any free port) or a port: this
                                   #   bastion gets a listener of its own,
                                   #   and <port> above is that one
       "vnet": null,               # its virtual network: the subnet
                                   #   AzureBastionSubnet of it (Developer:
                                   #   properties.virtualNetwork)
       "subnet": null,             # or the subnet id itself
       "location": null,           # default: the fixture's
       "node_id": true,            # Developer only, false: the data pod's
                                   #   /api/tokens has no nodeId (Q11)
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
       "port_map": {"22": 2222},   # optional workloadHostPort -> local port
       "computer_name": "web01",   # default: the VM name (a VMSS instance:
                                   #   <ss> and the id in 6 base-36 digits)
       "private_ip": "10.1.0.4",   # with "vnet" or "subnet": the VM's NIC
       "vnet": "<vnet id>",        #   (subnet "default" of the vnet)
       "subnet": "<vnet id>/subnets/<name>",
       "secondary_ips": [],        # more ipConfigurations on that NIC
       "nics": [{"private_ip": .., "vnet"|"subnet": .., "id": ..}],
                                   # further NICs (id optional)
       "power": "running",         # running|stopped|deallocated|starting|
                                   #   stopping|deallocating
       "location": null,           # default: the fixture's ("West US")
       "managed_by": null,         # managedBy (a flexible scale set id)
       "start_delay_s": 1.0,       # start: seconds until it runs
       "start_status": 202,        # 200: start answers 200 and runs at once
       "start_error": null}},      # {"code", "message", "status"}: the
                                   #   start fails after start_delay_s
   "nics": {                       # NICs not described by a VM, e.g. a
     "<NIC id>": {                 #   private endpoint's
       "private_ip": "10.1.0.200", "vnet"|"subnet": "..",
       "vm": null}},               # or a VM id of "vms": attached to it
   "ip_map": {"10.0.0.4": "127.0.0.1"},  # IP connect: target IP -> loopback
                                         #   (VMs' private IPs are added)
   "port_map": {"22": 2222},             # fallback for every target
   "token_lifetime_s": 3599,             # every access token's lifetime
   "start_delay_s": 1.0,                 # default of the VMs' key
   "asyncop_retry_after_s": null,        # an int: Retry-After on 202s
   "resourcegraph_page_size": 1000,      # rows per page without $top
   "arm_list_page_size": null,           # bastion lists: nextLink pages
   "faults": {...}                       # initial faults, see below
  }

Example of a world: a hub network with a Standard bastion, peered with an
application network holding a VM; a Developer bastion in a network of its
own (Developer reaches only its own network); a second subscription that
only one service principal may see.

  {"subscriptions": {"S2": {"principals": ["<client id>"]}},
   "vnets": {
     "/subscriptions/S1/resourceGroups/hub/providers/Microsoft.Network/
       virtualNetworks/vnet-hub": {"address_prefixes": ["10.0.0.0/16"],
       "peerings": ["/subscriptions/S1/.../virtualNetworks/vnet-app"]},
     "/subscriptions/S1/resourceGroups/app/providers/Microsoft.Network/
       virtualNetworks/vnet-app": {"address_prefixes": ["10.1.0.0/16"],
       "peerings": ["/subscriptions/S1/.../virtualNetworks/vnet-hub"]}},
   "bastions": {
     "/subscriptions/S1/resourceGroups/hub/providers/Microsoft.Network/
       bastionHosts/bh-hub": {"sku": "Standard", "vnet": "<vnet-hub id>"},
     "/subscriptions/S1/resourceGroups/dev/providers/Microsoft.Network/
       bastionHosts/bh-dev": {"sku": "Developer", "own_port": true,
       "vnet": "/subscriptions/S1/.../virtualNetworks/vnet-dev"}},
   "vms": {
     "/subscriptions/S1/resourceGroups/app/providers/Microsoft.Compute/
       virtualMachines/web": {"ip": "127.0.0.1", "port_map": {"22": 2222},
       "computer_name": "web01", "private_ip": "10.1.0.4",
       "vnet": "<vnet-app id>", "power": "deallocated"},
     "/subscriptions/S2/resourceGroups/db/providers/Microsoft.Compute/
       virtualMachines/db": {"ip": "127.0.0.1"}}}

Which bastion a data-plane request belongs to: the one whose own_port it
came to; else the one whose dnsName equals the Host header, else a
Developer bastion whose dataPod equals it, else the first bastion in the
config (all bastions without own_port share "localhost:<port>").

The world (our model, rebuilt on every config change):
  NICs: a VM with private_ip, vnet or subnet has a NIC
    .../networkInterfaces/<vm>VMNic in its resource group (as az vm create
    names it), one with "nics" more (<vm>VMNic1, ...); a scale-set
    instance's NICs are <instance id>/networkInterfaces/<ss>-nic (not in
    Resource Graph, no GET). A NIC has one ipConfiguration per address
    (private_ip, then secondary_ips), the first one primary.
  Virtual networks: the configured ones, and any a subnet reference
    names. Subnets: the configured ones, then those NICs and bastions
    reference (Standard/Premium bastions: AzureBastionSubnet).
  Peerings: one entry per configured remote. Its peeringState, unless
    configured: Connected if the remote vnet peers back (or is not in
    the config), else Initiated, as Azure shows a one-sided peering.
  Reachability (the relay checks it after the upgrade; a target it
    cannot reach gets 101, then close 1011 "target unreachable", and the
    session's "unreachable" says why): a VM must be running; a bastion
    reaches a VM if it shares one of the VM's vnets, or (not Developer:
    peering is not supported there) one of them is peered with the
    bastion's vnet, Connected on both sides that are in the config;
    peering is not transitive. IP connect: the vnets of the NIC holding
    that IP, else those whose address space holds it. Where the bastion
    or the target has no known network, everything is reachable (configs
    without networks keep working).
  Private IPs of VMs' NICs map to the VM's "ip" for IP connect, unless
    ip_map says otherwise.

ARM. Every request, in this order: counted (role "arm" and its kind,
below); <kind>_delay_ms and arm_delay_ms; the <kind>_status fault, else
the arm_status fault; a method other than the one served -> 405
MethodNotAllowed; Bearer token (401 InvalidAuthenticationToken as
before); no api-version -> 400 MissingApiVersionParameter; the
subscription in the path (Scope) -> 404 SubscriptionNotFound, 401
InvalidAuthenticationTokenTenant (WWW-Authenticate: Bearer
authorization_uri="https://login.windows.net/<tenant>", ...) or 403
AuthorizationFailed ("The client '<upn or appid>' with object id '<oid>'
does not have authorization to perform action '<action>' over scope
'<path>' ..."); then the kind. Unknown resources -> 404 ResourceNotFound.
Kinds (counter names and fault roles):
  arm_bastion_get    GET a bastion: the Standard (or Developer) fixture;
                     vnet -> ipConfigurations[].properties.subnet (or
                     properties.virtualNetwork)
  arm_bastion_list   GET the bastions of a subscription or resource group:
                     {"value": [...]}, with a nextLink (our $skiptoken)
                     when arm_list_page_size is set
  arm_vm_get         GET a VM or VMSS instance: its fixture with id, name,
                     vmId (stable, from the id), osProfile.computerName,
                     location, networkProfile (our NICs) overridden;
                     managedBy only if configured; ?$expand=instanceView
                     adds properties.instanceView
  arm_instance_view  GET .../instanceView: the fixture with statuses
                     [ProvisioningState/succeeded (updating while
                     starting, stopping, deallocating), PowerState/<state>
                     ("VM <state>")]; a deallocated VM has no
                     computerName, osName, osVersion, vmAgent
  vm_start           POST .../start (VMs and VMSS instances): stopping or
                     deallocating -> 409 OperationNotAllowed; start_status
                     200 -> 200, empty, running now; else 202, empty body,
                     Location (...?monitor=true) and Azure-AsyncOperation
                     (the same URL without monitor) on the Host the client
                     used (if loopback; else localhost:<port>), and
                     Retry-After if asyncop_retry_after_s is set. The VM
                     is "starting" until start_delay_s has passed, then
                     running (or back as it was, with start_error). A
                     start of a running VM succeeds at once; one of a
                     starting VM ends with the first start.
  asyncop            GET an operation: Azure-AsyncOperation -> 200
                     {"startTime", "status": InProgress|Succeeded|Failed,
                     "name", "endTime" (once done), "error" (Failed)};
                     Location -> 202 (Location, Retry-After as above)
                     while in progress, 200 with no body on success, the
                     start_error's status (default 409) and ARM error on
                     failure; unknown -> 404 NotFound
  arm_nic_get        GET a NIC: the fixture, ipConfigurations rebuilt from
                     its first (no publicIPAddress), virtualMachine back-
                     reference, primary
  arm_vnet_get       GET a vnet: ours: addressSpace, subnets,
                     virtualNetworkPeerings[].properties.{peeringState,
                     peeringSyncLevel, remoteVirtualNetwork.id,
                     remoteAddressSpace, allow*}
  resourcegraph      POST /providers/Microsoft.ResourceGraph/resources
  arm_other          anything else below /subscriptions -> 404
The power state lives in the emulator: start changes it, POST /_emu/power
sets it, POST /_emu/reset and a POST /_emu/config with "vms" forget it.

Scope. The subscriptions the config names (in "subscriptions" or in any
resource id). A token sees one unless it is listed with a "tenant" other
than the token's tid, or with "principals" none of which is the token's
appid, oid, upn or xms_mirid ("*" is everyone). A subscription named
nowhere is unknown (404) only once "subscriptions" is configured.

Resource Graph (api-version 2021-03-01 or 2024-04-01, else 400
InvalidApiVersionParameter). The body: {"query": "...", "subscriptions":
[...] (optional: without it, every subscription the token sees),
"options": {"$top": 1..1000, "$skip": >= 0, "$skipToken": "..",
"resultFormat": "objectArray"}}; other option keys (allowPartialScopes,
authorizationScopeFilter) are ignored; managementGroups, facets, another
resultFormat or a body that is not such an object -> 400
InvalidRequestContent. Listed subscriptions the token cannot see are
left out; if none is left -> 403 AccessDenied.
  The Resources table holds, sorted by id: VMs (not scale-set instances),
  uniform scale sets (one per scale set of the configured instances; sku
  capacity = their count, orchestrationMode Uniform, virtualMachineProfile.
  networkProfile naming the subnets of its first instance), bastions, NICs (not
  scale-set ones) and virtual networks, with the bodies ARM serves.
  Columns: id, name, type (lower case), tenantId (the subscription's
  tenant or null), kind (""), location (lower case, no spaces),
  resourceGroup (lower case), subscriptionId, managedBy ("" if none),
  sku, plan (null), properties, tags, identity (null), zones,
  extendedLocation (null). A VM's properties also have
  extended.instanceView.powerState {code: PowerState/<state>, level,
  displayStatus}, as the live service has them.
  The query subset (KQL keywords and function names are case-sensitive,
  the table name is not):
    query     := [Resources | resources] op ("|" op)*
                 (a query that starts with an op reads Resources)
    op        := "where" expr
               | "project" item ("," item)*      (only these columns)
               | "extend" item ("," item)*       (adds columns)
               | "mv-expand" [name "="] path     (one row per element of
                 an array, per key of a bag ({key: value}); none for an
                 empty array)
               | ("order" | "sort") "by" expr ["asc" | "desc"]
                 ("," ...)*                      (default desc, as KQL)
               | ("limit" | "take") integer
    item      := [name "="] expr   (without a name: a path, or
                 tostring(path), is named after the path with "_" for
                 ".", e.g. properties_osProfile_computerName)
    expr      := conj ("or" conj)* ;  conj := cmp ("and" cmp)*
    cmp       := value [op2 value | inop "(" literal ("," literal)* ")"]
    op2       := == != (case-sensitive) | =~ !~ (case-insensitive) |
                 contains startswith endswith and !contains !startswith
                 !endswith (case-insensitive substrings)
    inop      := in !in (case-sensitive) | in~ !in~
    value     := literal | path | function "(" expr ")" | "(" expr ")"
    function  := tostring tolower toupper isempty isnotempty isnull
                 isnotnull not array_length
    path      := column ("." name | "[" integer "]" | "[" string "]")*
    literal   := 'string' | "string" (backslash escapes) | integer |
                 true | false
  A missing path is null; comparisons use tostring() of both sides
  (null is "", dynamic values JSON) unless both are numbers. Rows are
  sorted by id before the query runs. The shapes a client needs, e.g.:
    Resources | where type =~ 'microsoft.compute/virtualmachines'
      | where name =~ 'web01' or properties.osProfile.computerName =~
      'web01' | project id, name, resourceGroup, subscriptionId,
      location, properties
    Resources | where type =~ 'microsoft.network/networkinterfaces'
      | mv-expand ipc = properties.ipConfigurations
      | where ipc.properties.privateIPAddress == '10.1.0.4'
      | project id, vmId = tostring(properties.virtualMachine.id),
        subnetId = tostring(ipc.properties.subnet.id)
    Resources | where type =~ 'microsoft.network/bastionhosts'
      | project id, name, sku, properties     (dnsName, flags, subnet or
                                               virtualNetwork)
    Resources | where type =~ 'microsoft.network/virtualnetworks'
      | project id, peerings = properties.virtualNetworkPeerings
    Resources | where type in~ ('microsoft.network/bastionhosts',
      'microsoft.network/virtualnetworks') | project id, type, properties
  Anything else -> 400 {"error": {"code": "BadRequest", "message":
  "Please provide below info when asking for support: timestamp = ..,
  correlationId = ..", "details": [{"code": "InvalidQuery", "message":
  "Query is invalid. ..."}, {"code": C, "message": M, "line": 1,
  "characterPositionInLine": P, "token": T}]}} where C is ParserFailure
  (not KQL as read here: syntax, comments, semicolons, let),
  NotEmulated (KQL outside the subset: summarize, join, count, distinct,
  top, union, parse, project-away, has, <, arithmetic, other functions
  or tables; the message names it) or FailedToResolveScalarExpression
  (no such column).
  The answer, in the fixtures' shape: {"totalRecords": rows of the whole
  result, "count": rows here, "resultTruncated": "true"|"false" (a
  string), "facets": [], "$skipToken" (only when more rows follow),
  "data": [rows as objects]}. Page size: $top, else
  resourcegraph_page_size. Paging needs the id column: if it was
  projected away and more rows remain, resultTruncated is "true" and
  there is no $skipToken. $skip starts later ($skip is ignored when the
  query has limit or take, as documented). A $skipToken works for the
  same query and subscriptions only; else 400 InvalidSkipToken.

Answers the public sources leave open (PROTOCOL.md section 15) are our
choice; the wording of these messages is ours too:
  POST /api/tokens, checked in this order: status/delay faults; an
    Authorization header, a non-form Content-Type or a JSON body -> 500
    {"message": "Unexpected internal error"}; a missing resourceId,
    protocol, workloadHostPort or aztoken -> the same 500; aztoken not
    issued here or expired -> 401 "Access denied"; protocol other than
    tcptunnel -> 400; bad port -> 400; a Developer bastion's dnsName
    (omnibrain) as Host where that is not its dataPod -> 404 "Not found";
    SKU Basic, or tunneling not true
    on a non-Developer bastion -> 400 "Tunneling is disabled";
    bh-hostConnect without a hostname equal to its IP -> 404 "Invalid IP
    address for connection."; IP connect off (or Developer SKU) -> 403 "IP
    based connection is not enabled"; a resourceId that is no VM, VMSS VM or
    bh-hostConnect id -> 500; unknown VM -> 404; port not in "ports" -> 403.
    "token" and X-Node-Id on the POST are accepted and ignored.
  DELETE /api/tokens: unknown -> 404 "Session already deleted"; wrong
    X-Node-Id -> 400 (a Developer session may also come without one);
    an open WebSocket of that session keeps running.
  POST /api/connection (Developer), in order: status/delay faults; not
    a JSON object with Content-Type application/json -> 400 "Bad
    Request"; azToken not issued here or expired -> 401 "Unauthorized";
    bastionResourceId no Developer bastion -> 404 "Bastion not found";
    connectionType not "nativeclient" -> 400; resourceId no VM or VMSS
    VM id -> 400; vmPort not a port (a JSON number or a string of
    digits: the CLI sends either) -> 400; else 200, text/plain, the
    bastion's dataPod (default: the listen address and its port, which
    is not its dnsName "localhost:<port>"). It does not check that the
    VM exists, or that it was asked before the token POST on the pod.
  Developer, uncertain (PROTOCOL.md 15 q11: does the data pod return a
    nodeId, does DELETE need X-Node-Id?): by default the pod's
    /api/tokens answers a nodeId like any bastion; /omni/webtunnel/ and
    DELETE take the session without X-Node-Id or with the right one, a
    wrong one is refused. "node_id": false on the bastion: no nodeId in
    the answer, and X-Node-Id is ignored everywhere. Sessions, the
    session table and DELETE work the same on the pod as elsewhere.
  WebSocket: unknown or used token, wrong X-Node-Id, the path of the other
    SKU or the old /webtunnel/ path -> 404 before the upgrade; target
    unreachable (no TCP connect, a VM not running, or networks that do
    not reach: see "The world") -> 101 then close 1011; target EOF ->
    remaining data, then
    close 1000; client frame with RSV bits, unmasked, FIN=0, continuation
    or unknown opcode -> close 1002; payload > max_client_frame -> 1009.
  ARM: no, unknown or expired Bearer token -> 401 InvalidAuthenticationToken
    (the message says which). The wording of SubscriptionNotFound,
    InvalidAuthenticationTokenTenant, AuthorizationFailed and of the
    Resource Graph errors follows public reports of the live service;
    InvalidSkipToken, NotEmulated and InvalidRequestContent are ours.

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
                    devicecode, arm (every ARM request, Resource Graph
                    included), the ARM kinds (arm_bastion_get,
                    arm_bastion_list, arm_vm_get, arm_instance_view,
                    arm_nic_get, arm_vnet_get, resourcegraph, vm_start,
                    asyncop, arm_other: that kind only, taken before
                    arm_status, which it then leaves alone), token (POST
                    /api/tokens), delete, connection, ws (the upgrade
                    request), imds, appservice, arc, cloudshell. Default
                    bodies follow each role's error shape; ARM codes by
                    status: 400 BadRequest, 404 NotFound, 409 Conflict,
                    429 TooManyRequests (resourcegraph: RateLimiting),
                    500 InternalServerError, 502 BadGateway, 503
                    ServiceUnavailable, 504 GatewayTimeout. An ARM 429
                    has Retry-After: 1 and x-ms-ratelimit-remaining-
                    subscription-reads: 0 (resourcegraph: x-ms-user-
                    quota-remaining: 0, x-ms-user-quota-resets-after:
                    00:00:01) unless "headers" names them; a null header
                    value leaves one out.
  <role>_delay_ms   delay before answering requests of that role.
  ws_after_101      "http400": 101, then a raw Tomcat-style HTTP 400 page,
                    then TCP close; "silence": 101, then nothing (input is
                    read and dropped, nothing relayed); "no_upgrade_headers":
                    101 without Upgrade/Connection; "no_accept": 101
                    without Sec-WebSocket-Accept; "bad_accept": 101 with a
                    wrong accept value; "with_frame": 101 and a binary
                    frame "early\n" in one write (so in one TLS record).
                    The last four relay normally.
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
                        "bastion", "developer", "unreachable" (why the
                        relay had no target, or null), ...}], "created":
                        N, "deleted": N}. A session stays
                        active until DELETEd, even after its WS closed.
  GET  /_emu/requests[?since=SEQ]  request log: seq, time, conn, method,
                        path (tokens as "<token>"), headers
                        (Authorization, X-IDENTITY-HEADER and Secret
                        "<redacted>"), form (field names), form_values
                        (client_secret, client_assertion, refresh_token,
                        device_code, code, password, aztoken, token
                        "<redacted>"),
                        json_keys, role, status; ARM requests also
                        "kind" (below), Resource Graph ones "query".
  GET  /_emu/counters   requests per role (entra, devicecode, arm,
                        tokens_post, tokens_delete, connection, ws, imds,
                        appservice, arc, cloudshell, emu, other); ARM
                        requests per kind (arm_bastion_get,
                        arm_bastion_list, arm_vm_get, arm_instance_view,
                        arm_nic_get, arm_vnet_get, resourcegraph,
                        vm_start, asyncop, arm_other; faulted and refused
                        ones included); token
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
                        given top-level keys (not "faults"); new own_port
                        bastions get their listener before the answer.
  GET  /_emu/world      {"bastions": {id: {"dnsName", "dataPod", "port",
                        "vnet"}}, "vms": {id: {"power", "computerName",
                        "nics", "vnets"}}, "operations": [{start
                        operation as served, "vm"}]}
  POST /_emu/power      {"vm": id, "power": state}: set a VM's power state
                        now (a start in progress then never ends).
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
                        device code flows, Arc secrets (their files too),
                        VM power states and start operations; open relays
                        are aborted. Issued access and refresh tokens (and
                        revocations) stay, and so do own_port listeners.
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
# What an ARM request asks for: its counter, and its own faults.
ARM_KINDS = ("arm_bastion_get", "arm_bastion_list", "arm_vm_get",
             "arm_instance_view", "arm_nic_get", "arm_vnet_get",
             "resourcegraph", "vm_start", "asyncop", "arm_other")
ROLES = ("entra", "arm", "token", "delete", "connection", "ws",
         "devicecode") + MI_SOURCES + ARM_KINDS
COUNTER_NAMES = (("entra", "arm", "tokens_post", "tokens_delete",
                  "connection", "ws", "emu", "other", "connections",
                  "tls_failures", "internal_errors", "devicecode",
                  "plain_connections")
                 + tuple(f"entra_{s}" for s in ENTRA_SOURCES) + MI_SOURCES
                 + tuple(f"issued_{s}" for s in SOURCES) + ARM_KINDS)
POWER_STATES = ("running", "stopped", "deallocated", "starting",
                "stopping", "deallocating")
ARG_API_VERSIONS = ("2021-03-01", "2024-04-01")
ARG_MAX_TOP = 1000          # largest $top (and the default page size)
ARG_OPTIONS = ("$top", "$skip", "$skipToken", "resultFormat",
               "allowPartialScopes", "authorizationScopeFilter")
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
VNET_RE = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/"
                     r"providers/Microsoft\.Network/virtualNetworks/[^/]+$",
                     re.I)
SUBNET_RE = re.compile(r"^(/subscriptions/[^/]+/resourceGroups/[^/]+/"
                       r"providers/Microsoft\.Network/virtualNetworks/"
                       r"[^/]+)/subnets/[^/]+$", re.I)
NIC_RE = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
                    r"Microsoft\.Network/networkInterfaces/[^/]+$", re.I)


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
             "vm_iv": "VirtualMachine_Get_InstanceView.json",
             "vmss_vm": "VirtualMachineScaleSetVM_Get_WithUserData.json",
             "vmss_vm_iv": "VirtualMachineScaleSetVM_Get_InstanceView"
                           "AutoPlacedOnDedicatedHostGroup.json",
             "nic": "NetworkInterfaceGet.json",
             "arg_page": "ResourcesFirstPageQuery.json"}
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
    validate_world_config(cfg)


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


def check_net_ref(what, conf):
    """A "subnet" (subnet id) or "vnet" (virtual network id) reference."""
    if "subnet" in conf:
        want(isinstance(conf["subnet"], str)
             and SUBNET_RE.match(conf["subnet"]),
             f"{what}.subnet: not a subnet id (<vnet id>/subnets/<name>)")
    if "vnet" in conf:
        want(isinstance(conf["vnet"], str) and VNET_RE.match(conf["vnet"]),
             f"{what}.vnet: not a virtualNetworks id")
    if conf.get("private_ip") is not None:
        want(norm_ip(str(conf["private_ip"])) is not None,
             f"{what}.private_ip: not an IP address")


def check_seconds(what, val):
    want(is_number(val) and val >= 0, f"{what}: a number >= 0")


def validate_vm_world(vid, vm):
    """The keys of a VM that describe it to ARM and Resource Graph."""
    check_net_ref(vid, vm)
    want(all(norm_ip(str(ip)) for ip in vm.get("secondary_ips", [])),
         f"{vid}.secondary_ips: IP addresses")
    want(vm.get("power", "running") in POWER_STATES,
         f"{vid}.power: one of {list(POWER_STATES)}")
    for i, nic in enumerate(vm.get("nics", [])):
        want(isinstance(nic, dict), f"{vid}.nics[{i}]: an object")
        check_net_ref(f"{vid}.nics[{i}]", nic)
        want(nic.get("id") is None or NIC_RE.match(str(nic["id"])),
             f"{vid}.nics[{i}].id: not a networkInterfaces id")
    if "start_delay_s" in vm:
        check_seconds(f"{vid}.start_delay_s", vm["start_delay_s"])
    err = vm.get("start_error")
    want(err is None or (isinstance(err, dict) and "code" in err),
         f"{vid}.start_error: {{\"code\": .., \"message\": ..}}")
    want(vm.get("start_status", 202) in (200, 202),
         f"{vid}.start_status: 200 or 202")


def validate_world_config(cfg):
    """Subscriptions, networks and the resource keys ARM and Resource
    Graph read (the data plane keys are checked in validate_config)."""
    subs = cfg.get("subscriptions", {})
    want(isinstance(subs, dict), "subscriptions: an object")
    for sub, sconf in subs.items():
        want(isinstance(sconf, dict) and is_str_list(
            sconf.get("principals", [])),
            f"subscriptions.{sub}: {{\"principals\": [..], ..}}")
    for vnid, vnet in cfg.get("vnets", {}).items():
        want(VNET_RE.match(vnid), f"not a virtualNetworks id: {vnid}")
        want(isinstance(vnet, dict), f"{vnid}: an object")
        for prefix in vnet.get("address_prefixes", []):
            try:
                ipaddress.ip_network(prefix, strict=False)
            except ValueError:
                raise ConfigError(f"{vnid}: bad address prefix {prefix!r}")
        for peer in vnet.get("peerings", []):
            remote = peer.get("remote") if isinstance(peer, dict) else peer
            want(isinstance(remote, str) and VNET_RE.match(remote),
                 f"{vnid}.peerings: a vnet id or {{\"remote\": id}}")
        want(isinstance(vnet.get("subnets", {}), dict),
             f"{vnid}.subnets: {{\"<name>\": \"<prefix>\" or null}}")
    for vid, vm in cfg.get("vms", {}).items():
        validate_vm_world(vid, vm)
    for nid, nic in cfg.get("nics", {}).items():
        want(NIC_RE.match(nid), f"not a networkInterfaces id: {nid}")
        want(isinstance(nic, dict), f"{nid}: an object")
        check_net_ref(nid, nic)
        want(nic.get("vm") is None or nic["vm"] in cfg.get("vms", {}),
             f"{nid}.vm: not a VM of \"vms\"")
    for bid, conf in cfg.get("bastions", {}).items():
        check_net_ref(bid, conf)
        want(isinstance(conf.get("node_id", True), bool),
             f"{bid}.node_id: true or false")
        own = conf.get("own_port", False)
        want(isinstance(own, bool) or (isinstance(own, int)
                                       and 0 <= own < 65536),
             f"{bid}.own_port: true, false or a port number")
    check_seconds("start_delay_s", cfg.get("start_delay_s", 0))
    ra = cfg.get("asyncop_retry_after_s")
    want(ra is None or (isinstance(ra, int) and ra >= 0),
         "asyncop_retry_after_s: an int >= 0 or null")
    size = cfg.get("arm_list_page_size")
    want(size is None or (isinstance(size, int) and size > 0),
         "arm_list_page_size: an int > 0 or null")
    size = cfg.get("resourcegraph_page_size", ARG_MAX_TOP)
    want(isinstance(size, int) and 0 < size <= ARG_MAX_TOP,
         f"resourcegraph_page_size: 1..{ARG_MAX_TOP}")


def ci_get(mapping, key):
    """Case-insensitive dict lookup: returns (canonical key, value)."""
    low = key.lower()
    for k, v in mapping.items():
        if k.lower() == low:
            return k, v
    return None, None


# ---------------------------------------------------------------- world

def id_parts(rid):
    """(subscription, resource group, last segment) of an ARM id."""
    segs = rid.strip("/").split("/")
    rg = segs[3] if len(segs) > 3 and segs[2].lower() == "resourcegroups" \
        else ""
    return segs[1], rg, segs[-1]


def subnet_of(conf):
    """The subnet a VM, NIC or bastion config names, if any."""
    if conf.get("subnet"):
        return conf["subnet"]
    if conf.get("vnet"):
        return conf["vnet"] + "/subnets/default"
    return None


def vnet_of(subnet):
    m = SUBNET_RE.match(subnet or "")
    return m.group(1) if m else None


def bastion_vnet(conf):
    return conf.get("vnet") or vnet_of(conf.get("subnet"))


def peer_remote(peer):
    return peer.get("remote", "") if isinstance(peer, dict) else peer


def default_nic_id(vid, i):
    """az vm create names a VM's NIC <vm>VMNic; a uniform scale-set
    instance's NICs live below the instance."""
    sub, rg, name = id_parts(vid)
    suffix = str(i) if i else ""
    if VMSS_RE.match(vid):
        return f"{vid}/networkInterfaces/{vid.split('/')[-3]}-nic{suffix}"
    return (f"/subscriptions/{sub}/resourceGroups/{rg}/providers/"
            f"Microsoft.Network/networkInterfaces/{name}VMNic{suffix}")


class World:
    """The resources of the config, indexed for ARM and Resource Graph:
    NICs (the explicit "nics", and those of VMs with private_ip, subnet,
    vnet or nics), virtual networks (configured, or named by a subnet
    reference) with their peerings. Built again on every config change;
    lookups take ids in any case."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.vms = {k.lower(): (k, v) for k, v in cfg.get("vms", {}).items()}
        self.bastions = {k.lower(): (k, v)
                         for k, v in cfg.get("bastions", {}).items()}
        self.nics = {}                # lower id -> NIC record (dict)
        self.vm_nics = {}             # lower VM id -> [NIC record]
        self.vnets = {}               # lower id -> vnet record (dict)
        for vid, vm in cfg.get("vms", {}).items():
            for i, spec in enumerate(self.vm_nic_specs(vid, vm)):
                self.add_nic(spec.get("id") or default_nic_id(vid, i), vid,
                             spec)
        for nid, spec in cfg.get("nics", {}).items():
            vid = self.vms.get(str(spec.get("vm")).lower(), (None,))[0]
            self.add_nic(nid, vid, spec)
        for vnid, conf in cfg.get("vnets", {}).items():
            self.vnet_record(vnid)["conf"] = conf
        for nic in self.nics.values():
            for _, subnet in nic["ipconfigs"]:
                self.note_subnet(subnet)
        for conf in cfg.get("bastions", {}).values():
            if bastion_vnet(conf):
                self.vnet_record(bastion_vnet(conf))
            if conf.get("subnet") or (conf.get("vnet")
                                      and not is_developer(conf)):
                self.note_subnet(conf.get("subnet") or
                                 conf["vnet"] + "/subnets/AzureBastionSubnet")

    @staticmethod
    def vm_nic_specs(vid, vm):
        specs = []
        if any(k in vm for k in ("private_ip", "subnet", "vnet")):
            specs.append(vm)
        return specs + list(vm.get("nics", []))

    def add_nic(self, nid, vid, spec):
        ips = [spec.get("private_ip")] + list(spec.get("secondary_ips", []))
        subnet = subnet_of(spec)
        rec = {"id": nid, "vm": vid, "spec": spec,
               "ipconfigs": [(norm_ip(str(ip)) if ip else None, subnet)
                             for ip in ips],
               "primary": vid is None or not self.vm_nics.get(vid.lower())}
        self.nics[nid.lower()] = rec
        if vid is not None:
            self.vm_nics.setdefault(vid.lower(), []).append(rec)

    def vnet_record(self, vnid):
        return self.vnets.setdefault(vnid.lower(), {
            "id": vnid, "conf": {}, "subnets": {}})

    def note_subnet(self, subnet):
        vnid = vnet_of(subnet)
        if vnid:
            self.vnet_record(vnid)["subnets"].setdefault(
                subnet.rsplit("/", 1)[1], None)

    def subnets(self, vnid):
        """{name: prefix or None}: configured ones first, then the ones
        some NIC or bastion references."""
        rec = self.vnets[vnid.lower()]
        out = dict(rec["conf"].get("subnets", {}))
        for name, prefix in rec["subnets"].items():
            out.setdefault(name, prefix)
        return out

    def vm(self, vid):
        return self.vms.get(vid.lower(), (None, None))

    def vm_vnets(self, vid):
        return {vnet_of(subnet).lower()
                for nic in self.vm_nics.get(vid.lower(), [])
                for _, subnet in nic["ipconfigs"] if vnet_of(subnet)}

    def ip_vnets(self, ip):
        """Virtual networks an IP is in: a NIC's, else an address space's."""
        found = {vnet_of(subnet).lower() for nic in self.nics.values()
                 for nip, subnet in nic["ipconfigs"]
                 if nip == ip and vnet_of(subnet)}
        if found:
            return found
        addr = ipaddress.ip_address(ip)
        return {k for k, rec in self.vnets.items()
                for prefix in rec["conf"].get("address_prefixes", [])
                if addr in ipaddress.ip_network(prefix, strict=False)}

    def ip_targets(self):
        """Private IP of a VM's NIC -> that VM's loopback relay target."""
        out = {}
        for nic in self.nics.values():
            _, vm = self.vm(nic["vm"] or "")
            for ip, _ in nic["ipconfigs"]:
                if vm is not None and ip and vm.get("ip"):
                    out.setdefault(ip, vm["ip"])
        return out

    def peerings(self, vnid):
        """[(name, remote vnet id, peeringState)] of a virtual network.
        State, unless configured: Connected if the remote vnet peers back
        (or is not in the config), else Initiated (one-sided)."""
        rec = self.vnets.get(vnid.lower())
        if rec is None:
            return []
        out = []
        for peer in rec["conf"].get("peerings", []):
            peer = peer if isinstance(peer, dict) else {"remote": peer}
            remote, state = peer["remote"], peer.get("state")
            back = self.vnets.get(remote.lower())
            if state is None:
                state = "Connected" if back is None or any(
                    peer_remote(p).lower() == vnid.lower()
                    for p in back["conf"].get("peerings", [])) \
                    else "Initiated"
            name = peer.get("name") or (f"{id_parts(vnid)[2]}-to-"
                                        f"{id_parts(remote)[2]}")
            out.append((name, remote, state))
        return out

    def connected(self, a, b):
        """Traffic flows between two vnets: each side's peering to the
        other (if that side is in the config) is Connected."""
        def state(x, y):
            for _, remote, st in self.peerings(x):
                if remote.lower() == y.lower():
                    return st
            return None
        return state(a, b) == "Connected" and (
            b.lower() not in self.vnets or not self.vnets[b.lower()]["conf"]
            or state(b, a) == "Connected")

    def unreachable(self, bconf, target_vnets):
        """Why a bastion cannot reach a target in these vnets, or None.
        Unknown networks on either side are reachable (older configs)."""
        bv = (bastion_vnet(bconf) or "").lower()
        if not bv or not target_vnets or bv in target_vnets:
            return None
        if is_developer(bconf):
            return ("the Developer SKU reaches only its own virtual"
                    " network")
        if any(self.connected(bv, v) for v in target_vnets):
            return None
        return ("the target's virtual network is neither the bastion's"
                " nor peered with it")

    def scale_sets(self):
        """{lower scale-set id: (id, [instance ids])} of the VMSS VMs."""
        out = {}
        for vid, _ in self.vms.values():
            if VMSS_RE.match(vid):
                ss = vid.rsplit("/virtualMachines/", 1)[0]
                out.setdefault(ss.lower(), (ss, []))[1].append(vid)
        return out

    def subscriptions(self):
        """{lower id: id} of every subscription named by the config."""
        ids = list(self.cfg.get("subscriptions", {}))
        ids += [v[0] for v in self.vms.values()]
        ids += [v[0] for v in self.bastions.values()]
        ids += [r["id"] for r in self.vnets.values()]
        ids += [r["id"] for r in self.nics.values()]
        out = {}
        for rid in ids:
            sub = rid if "/" not in rid else id_parts(rid)[0]
            out.setdefault(sub.lower(), sub)
        return out


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
                    "no_accept", "bad_accept", "with_frame"):
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
                 "body", "conn", "local_port", "kind", "note")

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
    req.local_port = req.kind = req.note = None
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
        self.unreachable = None       # why the relay found no target
        self.node_id = True           # nodeId in the answer, X-Node-Id

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
                "developer": self.developer,
                "unreachable": self.unreachable,
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
        self.power = {}               # lower VM id -> power state (run time)
        self.vm_ops = {}              # start operation id -> VmOp
        self.own_ports = {}           # lower bastion id -> its own port
        self.port_owner = {}          # that port -> lower bastion id
        self.open_listener = None     # async fn(port) -> bound port
        self.reset_counters()

    @property
    def cfg(self):
        return self._cfg

    @cfg.setter
    def cfg(self, cfg):
        # Every config change rebuilds the indexes ARM answers come from.
        self._cfg = cfg
        self.world = World(cfg)

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
        self.power.clear()
        self.vm_ops.clear()
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

    def bastion_port(self, bid):
        return self.own_ports.get(bid.lower(), self.port)

    def bastion_dns(self, bid, conf):
        return conf.get("dnsName") or f"localhost:{self.bastion_port(bid)}"

    def bastion_pod(self, bid, conf):
        host = self.listen if ":" not in self.listen else f"[{self.listen}]"
        return conf.get("dataPod") or f"{host}:{self.bastion_port(bid)}"

    def bastion_for_host(self, host, local_port=None):
        """(id, conf) of the bastion a data-plane request is meant for:
        the one owning the port it came to, else by Host header."""
        owner = self.port_owner.get(local_port)
        if owner in self.world.bastions:
            return self.world.bastions[owner]
        items = list(self.cfg.get("bastions", {}).items())
        host = host.lower()
        for bid, conf in items:
            if self.bastion_dns(bid, conf).lower() == host:
                return bid, conf
        for bid, conf in items:
            if (is_developer(conf)
                    and self.bastion_pod(bid, conf).lower() == host):
                return bid, conf
        return items[0] if items else (None, None)

    async def sync_listeners(self):
        """Open a listener for each bastion with "own_port" that has none
        yet. Listeners stay open (and keep their port) until exit."""
        if self.open_listener is None:
            return
        for key, (_, conf) in self.world.bastions.items():
            own = conf.get("own_port", False)
            if own is False or key in self.own_ports:
                continue
            port = await self.open_listener(0 if own is True else own)
            self.own_ports[key] = port
            self.port_owner[port] = key

    # -- VM power

    def vm_power(self, vid):
        """A VM's power state now; start operations whose time has come
        finish here, so every view agrees."""
        key = vid.lower()
        for op in list(self.vm_ops.values()):
            if op.vm.lower() == key:
                op.settle(self)
        _, conf = self.world.vm(vid)
        return self.power.get(key, (conf or {}).get("power", "running"))

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
        if req.kind:
            entry["kind"] = req.kind
        if req.note:
            entry.update(req.note)
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
    # Given headers replace the defaults; a null value drops one.
    headers = default_fault_headers(role, status)
    for name, value in fault.get("headers", {}).items():
        headers = [(k, v) for k, v in headers if k.lower() != name.lower()]
        if value is not None:
            headers.append((name, str(value)))
    return Response(status, body.encode(), ctype, headers)


def default_fault_headers(role, status):
    """ARM throttling: Retry-After and the remaining quota, which is
    per subscription for ARM and per user for Resource Graph."""
    if status != 429 or not (role == "arm" or role in ARM_KINDS):
        return []
    if role == "resourcegraph":
        return [("Retry-After", "1"), ("x-ms-user-quota-remaining", "0"),
                ("x-ms-user-quota-resets-after", "00:00:01")]
    return [("Retry-After", "1"),
            ("x-ms-ratelimit-remaining-subscription-reads", "0")]


def default_error_body(role, status):
    text = f"emulated failure {status}"
    if role in ("entra", "devicecode"):
        return entra_error_obj("temporarily_unavailable", 50033, text)
    if role in ("imds", "arc", "cloudshell"):
        return {"error": "service_unavailable" if status >= 500
                else "emulated_failure", "error_description": text}
    if role == "appservice":
        return {"statusCode": status, "message": text}
    if role == "arm" or role in ARM_KINDS:
        code = ARM_ERROR_CODES.get(status, "InternalServerError")
        if role == "resourcegraph" and status == 429:
            code = "RateLimiting"
        return {"error": {"code": code, "message": text}}
    return {"message": text}


ARM_ERROR_CODES = {400: "BadRequest", 404: "NotFound", 409: "Conflict",
                   429: "TooManyRequests", 500: "InternalServerError",
                   502: "BadGateway", 503: "ServiceUnavailable",
                   504: "GatewayTimeout"}


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


def arm_route(segs):
    """What an ARM path names: {"kind": one of ARM_KINDS, "method": the
    one served (None: any is refused but GET), "sub", "rid" (the
    resource, for a VM without /instanceView or /start), "op"}."""
    low = [s.lower() for s in segs]
    n = len(low)
    if low == ["providers", "microsoft.resourcegraph", "resources"]:
        return {"kind": "resourcegraph", "method": "POST"}
    if n < 2 or low[0] != "subscriptions":
        return {"kind": "arm_other", "method": None, "rid": ""}
    route = {"kind": "arm_other", "method": None, "sub": segs[1],
             "rid": "/" + "/".join(segs)}
    if (n == 8 and low[2:5] == ["providers", "microsoft.compute",
                                "locations"] and low[6] == "operations"):
        return dict(route, kind="asyncop", method="GET", op=segs[7])
    if n == 5 and low[2:] == ["providers", "microsoft.network",
                              "bastionhosts"]:
        return dict(route, kind="arm_bastion_list", method="GET")
    if n < 7 or low[2] != "resourcegroups" or low[4] != "providers":
        return route
    tail = low[5:]
    if tail == ["microsoft.network", "bastionhosts"]:
        return dict(route, kind="arm_bastion_list", method="GET")
    simple = {("microsoft.network", "bastionhosts"): "arm_bastion_get",
              ("microsoft.network", "networkinterfaces"): "arm_nic_get",
              ("microsoft.network", "virtualnetworks"): "arm_vnet_get"}
    if len(tail) == 3 and tuple(tail[:2]) in simple:
        return dict(route, kind=simple[tuple(tail[:2])], method="GET")
    if tail[:2] == ["microsoft.compute", "virtualmachines"]:
        vm_len = 3
    elif (tail[:2] == ["microsoft.compute", "virtualmachinescalesets"]
          and len(tail) >= 5 and tail[3] == "virtualmachines"):
        vm_len = 5
    else:
        return route
    kind, method = {(): ("arm_vm_get", "GET"),
                    ("instanceview",): ("arm_instance_view", "GET"),
                    ("start",): ("vm_start", "POST")}.get(
                        tuple(tail[vm_len:]), (None, None))
    if kind is None:
        return route
    return dict(route, kind=kind, method=method,
                rid="/" + "/".join(segs[:5 + vm_len]))


async def handle_arm(emu, req, segs):
    """Every ARM request: faults (the kind's, then "arm"), method, token,
    api-version, subscription access, then the kind's handler."""
    route = arm_route(segs)
    kind = req.kind = route["kind"]
    emu.counters[kind] += 1
    await emu.fault_delay("arm")
    await emu.fault_delay(kind)
    fault = emu.take_status_fault(kind) or emu.take_status_fault("arm")
    if fault:
        return fault
    if req.method != (route["method"] or "GET"):
        return arm_error(405, "MethodNotAllowed",
                         f"{req.method} is not emulated here.")
    denied = arm_auth_error(emu, req)
    if denied:
        return denied
    if not req.query.get("api-version"):
        return arm_error(400, "MissingApiVersionParameter",
                         "The api-version query parameter (?api-version=)"
                         " is required for all requests.")
    if "sub" in route:
        denied = sub_access_error(emu, req, route)
        if denied:
            return denied
    return ARM_HANDLERS.get(kind, arm_other)(emu, req, route)


def arm_ok(body, status=200, headers=()):
    return json_resp(status, body, [("x-ms-request-id", str(uuid.uuid4()))]
                     + list(headers))


def arm_other(emu, req, route):
    return arm_not_found(route["rid"])


def arm_not_found(rid):
    """ARM's 404 for a resource id (or any path below /subscriptions)."""
    segs = rid.strip("/").split("/")
    low = [s.lower() for s in segs]
    rg = segs[3] if len(segs) > 3 else ""
    if "providers" in low[:5] and len(segs) > low.index("providers") + 2:
        prov = segs[low.index("providers") + 1:]
        rtype = "/".join([prov[0]] + prov[1:-1])
    else:
        rtype = "resource"
    return arm_error(404, "ResourceNotFound",
                     f"The Resource '{rtype}/{segs[-1]}' under resource"
                     f" group '{rg}' was not found. For more details please"
                     " go to https://aka.ms/ARMResourceNotFoundFix")


# -- who may see a subscription

def bearer_claims(req):
    return jwt_claims(req.header("authorization").partition(" ")[2].strip())


def principal_ids(claims):
    return {str(claims[k]).lower() for k in ("appid", "oid", "upn",
                                            "xms_mirid") if claims.get(k)}


def sub_state(emu, claims, sub):
    """ok, tenant (the subscription is another tenant's), denied (the
    principal is not listed) or unknown (listing subscriptions, the
    config names it nowhere)."""
    subs = emu.cfg.get("subscriptions")
    _, sconf = ci_get(subs or {}, sub)
    if sconf is None:
        if subs is not None and sub.lower() not in emu.world.subscriptions():
            return "unknown"
        return "ok"
    tenant = sconf.get("tenant")
    if tenant and tenant.lower() != str(claims.get("tid", "")).lower():
        return "tenant"
    allowed = {p.lower() for p in sconf.get("principals", ["*"])}
    return "ok" if "*" in allowed or principal_ids(claims) & allowed \
        else "denied"


def visible_subscriptions(emu, claims):
    return [sub for sub in emu.world.subscriptions().values()
            if sub_state(emu, claims, sub) == "ok"]


ARM_ACTIONS = {"arm_bastion_get": "Microsoft.Network/bastionHosts/read",
               "arm_bastion_list": "Microsoft.Network/bastionHosts/read",
               "arm_vm_get": "Microsoft.Compute/virtualMachines/read",
               "arm_instance_view": "Microsoft.Compute/virtualMachines/"
                                    "instanceView/read",
               "vm_start": "Microsoft.Compute/virtualMachines/start/action",
               "arm_nic_get": "Microsoft.Network/networkInterfaces/read",
               "arm_vnet_get": "Microsoft.Network/virtualNetworks/read",
               "asyncop": "Microsoft.Compute/locations/operations/read"}


def sub_access_error(emu, req, route):
    claims = bearer_claims(req)
    sub = route["sub"]
    state = sub_state(emu, claims, sub)
    if state == "unknown":
        return arm_error(404, "SubscriptionNotFound",
                         f"The subscription '{sub}' could not be found.")
    if state == "tenant":
        tenant = ci_get(emu.cfg["subscriptions"], sub)[1]["tenant"]
        resp = arm_error(
            401, "InvalidAuthenticationTokenTenant",
            "The access token is from the wrong issuer"
            f" 'https://sts.windows.net/{claims.get('tid')}/'. It must"
            f" match the tenant 'https://sts.windows.net/{tenant}/'"
            " associated with this subscription. Please use the authority"
            f" (URL) 'https://login.windows.net/{tenant}' to get the"
            " token.")
        resp.headers.append((
            "WWW-Authenticate", f'Bearer authorization_uri="https://'
            f'login.windows.net/{tenant}", error="invalid_token",'
            ' error_description="The access token is from the wrong'
            ' issuer."'))
        return resp
    if state == "denied":
        who = claims.get("upn") or claims.get("appid") or ""
        return arm_error(
            403, "AuthorizationFailed",
            f"The client '{who}' with object id '{claims.get('oid')}' does"
            " not have authorization to perform action"
            f" '{ARM_ACTIONS.get(route['kind'], '*/read')}' over scope"
            f" '{route['rid']}' or the scope is invalid. If access was"
            " recently granted, please refresh your credentials.")
    return None


def self_url(emu, req):
    """Scheme and authority for URLs we hand out (operation status,
    nextLink): the Host the client used if that is loopback, else
    localhost and the port the request came to."""
    host = req.header("host")
    name = urllib.parse.urlsplit("//" + host).hostname or ""
    if not (name == "localhost" or is_loopback(name)):
        host = f"localhost:{req.local_port or emu.port}"
    return f"{emu.scheme}://{host}"


# -- resources

def arm_get(table, make):
    """A GET handler: the resource under its id in that index of the
    world (any case), made into a body by make(emu, req, entry)."""
    def handler(emu, req, route):
        entry = getattr(emu.world, table).get(route["rid"].lower())
        if entry is None:
            return arm_not_found(route["rid"])
        return arm_ok(make(emu, req, entry))
    return handler


def h_bastion_list(emu, req, route):
    """Bastions of a subscription or resource group, pageable: config
    arm_list_page_size (default: all in one page) and a nextLink."""
    scope = route["rid"].lower().split("/providers/")[0] + "/"
    items = [bastion_body(emu, bid, conf)
             for key, (bid, conf) in sorted(emu.world.bastions.items())
             if key.startswith(scope)]
    size = emu.cfg.get("arm_list_page_size") or len(items) or 1
    token = req.query.get("$skiptoken", "0")
    start = int(token) if token.isdigit() else 0
    body = {"value": items[start:start + size]}
    if start + size < len(items):
        query = urllib.parse.urlencode({
            "api-version": req.query["api-version"],
            "$skiptoken": start + size})
        body["nextLink"] = f"{self_url(emu, req)}{req.path}?{query}"
    return arm_ok(body)


def bastion_body(emu, bid, conf):
    """The fixture body with the fields the config controls overridden."""
    dev = is_developer(conf)
    body = copy.deepcopy(emu.fixtures["bastion_dev" if dev else "bastion"])
    body["id"] = bid
    body["name"] = bid.rsplit("/", 1)[1]
    body["sku"] = {"name": conf.get("sku", "Standard")}
    if conf.get("location"):
        body["location"] = conf["location"]
    props = body["properties"]
    props["dnsName"] = emu.bastion_dns(bid, conf)
    # The Developer example has no tunnel flags; add them only if asked.
    for key, default in (("enableTunneling", True),
                         ("enableIpConnect", False)):
        if key in conf or key in props:
            props[key] = conf.get(key, default)
    vnet = bastion_vnet(conf)
    if vnet and dev:
        props["virtualNetwork"] = {"id": vnet}
    elif vnet:
        subnet = conf.get("subnet") or vnet + "/subnets/AzureBastionSubnet"
        for ipc in props.get("ipConfigurations", []):
            ipc["id"] = f"{bid}/bastionHostIpConfigurations/{ipc['name']}"
            ipc["properties"]["subnet"] = {"id": subnet}
    props.update(conf.get("extra_properties", {}))
    for key in conf.get("absent", []):
        (body if key == "sku" else props).pop(key, None)
    return body


def base36(n, width):
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n or not out:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out.rjust(width, "0")


def computer_name(vid, conf):
    """Configured, else the VM's name; a scale-set instance's is the
    scale set's name and its instance id in six base-36 digits."""
    if conf.get("computer_name"):
        return conf["computer_name"]
    segs = vid.split("/")
    if VMSS_RE.match(vid):
        n = int(segs[-1]) if segs[-1].isdigit() else 0
        return segs[-3] + base36(n, 6)
    return segs[-1]


def vm_body(emu, vid, conf):
    """VM (or uniform scale-set instance) body from its fixture: id, name,
    vmId, computerName, location, NICs and managedBy overridden."""
    vmss = bool(VMSS_RE.match(vid))
    body = copy.deepcopy(emu.fixtures["vmss_vm" if vmss else "vm"])
    segs = vid.strip("/").split("/")
    body["id"] = vid
    props = body["properties"]
    props["vmId"] = str(uuid.uuid5(uuid.NAMESPACE_URL,
                                   f"azure-emu:vm:{vid.lower()}"))
    props["osProfile"]["computerName"] = computer_name(vid, conf)
    if conf.get("location"):
        body["location"] = conf["location"]
    if vmss:
        body["name"] = f"{segs[-3]}_{segs[-1]}"
        body["instanceId"] = segs[-1]
    else:
        body["name"] = segs[-1]
        # The fixture's VM is in a flexible scale set; ours only if said.
        body.pop("managedBy", None)
        if conf.get("managed_by"):
            body["managedBy"] = conf["managed_by"]
    nics = emu.world.vm_nics.get(vid.lower(), [])
    if nics:
        refs = [{"id": nic["id"]} for nic in nics]
        if len(refs) > 1:
            for ref, nic in zip(refs, nics):
                ref["properties"] = {"primary": nic["primary"]}
        props["networkProfile"]["networkInterfaces"] = refs
    subnet = nics[0]["ipconfigs"][0][1] if nics else None
    if vmss and subnet:
        for cfg in props["networkProfileConfiguration"][
                "networkInterfaceConfigurations"]:
            for ipc in cfg["properties"]["ipConfigurations"]:
                ipc["properties"]["subnet"] = {"id": subnet}
    return body


def instance_view(emu, vid, conf):
    """The fixture's instance view with the power state of now; a
    deallocated VM has no guest facts (computer name, OS, agent)."""
    vmss = bool(VMSS_RE.match(vid))
    body = copy.deepcopy(emu.fixtures["vmss_vm_iv" if vmss else "vm_iv"])
    power = emu.vm_power(vid)
    busy = power in ("starting", "stopping", "deallocating")
    prov, state = (dict(s) for s in body["statuses"][:2])
    prov.update(code="ProvisioningState/" + ("updating" if busy
                                              else "succeeded"),
                displayStatus="Updating" if busy
                else "Provisioning succeeded")
    state.update(code=f"PowerState/{power}", displayStatus=f"VM {power}")
    body["statuses"] = [prov, state]
    if "computerName" in body:
        body["computerName"] = computer_name(vid, conf)
    if power == "deallocated":
        for key in ("computerName", "osName", "osVersion", "vmAgent"):
            body.pop(key, None)
    return body


def nic_body(emu, rec):
    """The fixture NIC: one ipConfiguration (from its first) per address,
    the subnet and the VM back-reference from the config."""
    body = copy.deepcopy(emu.fixtures["nic"])
    nid = rec["id"]
    body["id"] = nid
    body["name"] = nid.rsplit("/", 1)[1]
    _, vm = emu.world.vm(rec["vm"] or "")
    location = rec["spec"].get("location") or (vm or {}).get("location")
    if location:
        body["location"] = location
    props = body["properties"]
    template = props["ipConfigurations"][0]
    props["ipConfigurations"] = []
    for i, (ip, subnet) in enumerate(rec["ipconfigs"]):
        ipc = copy.deepcopy(template)
        ipc["name"] = f"ipconfig{i + 1}"
        ipc["id"] = f"{nid}/ipConfigurations/ipconfig{i + 1}"
        p = ipc["properties"]
        p.pop("publicIPAddress", None)
        p["primary"] = i == 0
        p.pop("privateIPAddress", None)
        if ip:
            p["privateIPAddress"] = ip
            p["privateIPAddressVersion"] = "IPv6" if ":" in ip else "IPv4"
        p.pop("subnet", None)
        if subnet:
            p["subnet"] = {"id": subnet}
        props["ipConfigurations"].append(ipc)
    props["primary"] = rec["primary"]
    props.pop("virtualMachine", None)
    if rec["vm"]:
        props["virtualMachine"] = {"id": rec["vm"]}
    return body


def vnet_body(emu, rec):
    """No fixture for this one: the fields of the 2024-07-01 schema that
    discovery needs (address space, subnets, peerings and their state)."""
    vnid, conf = rec["id"], rec["conf"]
    prefixes = list(conf.get("address_prefixes", []))
    subnets = [{"name": name, "id": f"{vnid}/subnets/{name}",
                "type": "Microsoft.Network/virtualNetworks/subnets",
                "properties": dict({"provisioningState": "Succeeded"},
                                   **({"addressPrefix": prefix} if prefix
                                      else {}))}
               for name, prefix in emu.world.subnets(vnid).items()]
    peerings = []
    for name, remote, state in emu.world.peerings(vnid):
        rconf = emu.world.vnets.get(remote.lower(), {}).get("conf", {})
        peerings.append({
            "name": name, "id": f"{vnid}/virtualNetworkPeerings/{name}",
            "type": "Microsoft.Network/virtualNetworks/"
                    "virtualNetworkPeerings",
            "properties": {
                "provisioningState": "Succeeded", "peeringState": state,
                "peeringSyncLevel": "FullyInSync" if state == "Connected"
                else "LocalNotInSync",
                "remoteVirtualNetwork": {"id": remote},
                "allowVirtualNetworkAccess": True,
                "allowForwardedTraffic": False,
                "allowGatewayTransit": False, "useRemoteGateways": False,
                "remoteAddressSpace": {"addressPrefixes": list(
                    rconf.get("address_prefixes", []))}}})
    guid = uuid.uuid5(uuid.NAMESPACE_URL, f"azure-emu:vnet:{vnid.lower()}")
    return {"name": vnid.rsplit("/", 1)[1], "id": vnid,
            "type": "Microsoft.Network/virtualNetworks",
            "location": conf.get("location", "westus"),
            "etag": f'W/"{guid}"',
            "properties": {"provisioningState": "Succeeded",
                           "resourceGuid": str(guid),
                           "addressSpace": {"addressPrefixes": prefixes},
                           "subnets": subnets,
                           "virtualNetworkPeerings": peerings,
                           "enableDdosProtection": False}}


def vmss_body(emu, ssid, instances):
    """A uniform scale set, for Resource Graph only (no fixture)."""
    _, conf = emu.world.vm(instances[0])
    guid = uuid.uuid5(uuid.NAMESPACE_URL, f"azure-emu:vmss:{ssid.lower()}")
    return {"name": ssid.rsplit("/", 1)[1], "id": ssid,
            "type": "Microsoft.Compute/virtualMachineScaleSets",
            "location": conf.get("location", "westus"),
            "sku": {"name": "Standard_B1s", "tier": "Standard",
                    "capacity": len(instances)},
            "properties": {"orchestrationMode": "Uniform",
                           "provisioningState": "Succeeded",
                           "uniqueId": str(guid),
                           "virtualMachineProfile": {
                               "networkProfile": vmss_network(emu,
                                                              instances)}}}


def vmss_network(emu, instances):
    """The scale set's model: one NIC configuration per subnet its first
    instance's NICs use, as Azure shows it (instances share the model)."""
    subnets = []
    for nic in emu.world.vm_nics.get(instances[0].lower(), []):
        for _, subnet in nic["ipconfigs"]:
            if subnet and subnet not in subnets:
                subnets.append(subnet)
    return {"networkInterfaceConfigurations": [
        {"name": f"nic{i}", "properties": {
            "primary": i == 0, "ipConfigurations": [
                {"name": "ipconfig1", "properties": {
                    "subnet": {"id": subnet}}}]}}
        for i, subnet in enumerate(subnets)]}


# -- start, and its operation

def iso_time(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + \
        f".{int(t % 1 * 1e6):06d}+00:00"


class VmOp:
    """One start: InProgress until done_at, then Succeeded (the VM runs)
    or Failed (start_error; the VM is back in its state before)."""

    def __init__(self, vm, sub, done_at, error, before):
        self.id = str(uuid.uuid4())
        self.vm, self.sub = vm, sub
        self.started = time.time()
        self.done_at = done_at        # time.monotonic() value
        self.error = error
        self.before = before
        self.status = "InProgress"
        self.ended = None

    def settle(self, emu):
        if self.status == "InProgress" and time.monotonic() >= self.done_at:
            self.status = "Failed" if self.error else "Succeeded"
            self.ended = time.time()
            emu.power[self.vm.lower()] = (self.before if self.error
                                          else "running")

    def body(self):
        out = {"startTime": iso_time(self.started), "status": self.status,
               "name": self.id}
        if self.ended is not None:
            out["endTime"] = iso_time(self.ended)
        if self.status == "Failed":
            out["error"] = {"code": self.error["code"],
                            "message": self.error.get("message", "")}
        return out


def retry_after(emu):
    ra = emu.cfg.get("asyncop_retry_after_s")
    return [] if ra is None else [("Retry-After", str(ra))]


def h_vm_start(emu, req, route):
    """POST .../start: 202 and an operation to poll (or 200 at once with
    start_status 200); stopping or deallocating VMs -> 409."""
    vid, conf = emu.world.vm(route["rid"])
    if conf is None:
        return arm_not_found(route["rid"])
    power = emu.vm_power(vid)
    if power in ("stopping", "deallocating"):
        return arm_error(409, "OperationNotAllowed",
                         f"Operation 'start' is not allowed on VM"
                         f" '{vid.rsplit('/', 1)[1]}' since the VM is"
                         f" {power}.")
    key = vid.lower()
    if conf.get("start_status", 202) == 200 and not conf.get("start_error"):
        emu.power[key] = "running"
        return Response(200, b"", None,
                        [("x-ms-request-id", str(uuid.uuid4()))])
    now = time.monotonic()
    pending = [op.done_at for op in emu.vm_ops.values()
               if op.vm.lower() == key and op.status == "InProgress"]
    if power == "running":
        done_at = now
    elif pending:
        done_at = max(pending)
    else:
        done_at = now + conf.get("start_delay_s",
                                 emu.cfg.get("start_delay_s", 1.0))
    before = "deallocated" if power == "starting" else power
    op = VmOp(vid, route["sub"], done_at, conf.get("start_error"), before)
    emu.vm_ops[op.id] = op
    if power in ("stopped", "deallocated"):
        emu.power[key] = "starting"
    location = arm_location(conf.get("location")
                            or emu.fixtures["vm"]["location"])
    base = (f"{self_url(emu, req)}/subscriptions/{route['sub']}/providers/"
            f"Microsoft.Compute/locations/{location}/operations/{op.id}")
    query = {"p": str(uuid.uuid4()), "api-version": req.query["api-version"]}
    monitor = dict(query, monitor="true")
    return Response(202, b"", None, [
        ("Location", f"{base}?{urllib.parse.urlencode(monitor)}"),
        ("Azure-AsyncOperation", f"{base}?{urllib.parse.urlencode(query)}"),
        ("x-ms-request-id", str(uuid.uuid4()))] + retry_after(emu))


def arm_location(text):
    """ARM's normal form of a location: "West US" -> "westus"."""
    return str(text or "").replace(" ", "").lower()


def h_asyncop(emu, req, route):
    """Azure-AsyncOperation: 200 and the status. Location (monitor=true):
    202 while in progress, 200 (no body) on success, the error's status
    (start_error "status", default 409) and body on failure."""
    op = emu.vm_ops.get(route["op"])
    if op is None or op.sub.lower() != route["sub"].lower():
        return arm_error(404, "NotFound",
                         f"The operation '{route['op']}' was not found.")
    op.settle(emu)
    if req.query.get("monitor", "").lower() != "true":
        return arm_ok(op.body(), headers=retry_after(emu)
                      if op.status == "InProgress" else ())
    if op.status == "InProgress":
        return Response(202, b"", None, [
            ("Location", self_url(emu, req) + req.target)]
            + retry_after(emu))
    if op.status == "Succeeded":
        return Response(200, b"", None)
    return arm_error(op.error.get("status", 409), op.error["code"],
                     op.error.get("message", ""))


def vm_get_body(emu, req, entry):
    body = vm_body(emu, *entry)
    if req.query.get("$expand", "").lower() == "instanceview":
        body["properties"]["instanceView"] = instance_view(emu, *entry)
    return body


ARM_HANDLERS = {
    "arm_bastion_get": arm_get("bastions", lambda emu, req, entry:
                               bastion_body(emu, *entry)),
    "arm_bastion_list": h_bastion_list,
    "arm_vm_get": arm_get("vms", vm_get_body),
    "arm_instance_view": arm_get("vms", lambda emu, req, entry:
                                 instance_view(emu, *entry)),
    "arm_nic_get": arm_get("nics", lambda emu, req, rec: nic_body(emu, rec)),
    "arm_vnet_get": arm_get("vnets", lambda emu, req, rec:
                            vnet_body(emu, rec)),
    "vm_start": h_vm_start, "asyncop": h_asyncop}


# ---------------------------------------------------------------- graph

# The columns of the Resources table, in the order the service uses.
ARG_COLUMNS = ("id", "name", "type", "tenantId", "kind", "location",
               "resourceGroup", "subscriptionId", "managedBy", "sku",
               "plan", "properties", "tags", "identity", "zones",
               "extendedLocation")
ARG_TABLES = ("resources", "resourcecontainers", "advisorresources",
              "computeresources", "networkresources", "securityresources",
              "healthresources", "policyresources", "extensibility")
KQL_FUNCTIONS = ("tostring", "tolower", "toupper", "isempty", "isnotempty",
                 "isnull", "isnotnull", "not", "array_length")
KQL_CMP = ("==", "!=", "=~", "!~", "contains", "!contains", "startswith",
           "!startswith", "endswith", "!endswith")
KQL_IN = ("in", "!in", "in~", "!in~")
KQL_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")
  | (?P<num>\d+)
  | (?P<op>!?in~|==|!=|=~|!~|<=|>=|[|,()\[\].=!<>~+*/%@;:{}-])
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z_]+)?)
""", re.X)


class KqlError(Exception):
    """A query outside the subset: ParserFailure (not KQL as we read it),
    NotEmulated (KQL, but not in the subset) or
    FailedToResolveScalarExpression (no such column)."""

    def __init__(self, code, message, tok=None):
        super().__init__(message)
        self.code = code
        self.tok = tok                # (kind, text, offset) or None


def kql_tokens(text):
    out, pos = [], 0
    while pos < len(text):
        m = KQL_TOKEN.match(text, pos)
        if m is None:
            raise KqlError("ParserFailure", f"unexpected character"
                           f" {text[pos]!r}", ("op", text[pos], pos))
        if m.lastgroup != "ws":
            out.append((m.lastgroup, m.group(), pos))
        pos = m.end()
    out.append(("end", "", len(text)))
    return out


def kql_string(text):
    """The value of a quoted KQL string literal."""
    body, out, i = text[1:-1], [], 0
    escapes = {"n": "\n", "t": "\t", "r": "\r"}
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            out.append(escapes.get(body[i + 1], body[i + 1]))
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


class KqlParser:
    """Recursive descent over the subset (grammar in the docstring).
    Expressions are tuples: ("lit", v), ("path", [col, key...]),
    ("fn", name, [args]), ("cmp", op, a, b), ("in", op, a, [values]),
    ("and", a, b), ("or", a, b). Column names are resolved as parsed."""

    def __init__(self, text):
        self.toks = kql_tokens(text)
        self.i = 0
        self.columns = list(ARG_COLUMNS)

    def peek(self, k=0):
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def take(self):
        tok = self.toks[self.i]
        self.i = min(self.i + 1, len(self.toks) - 1)
        return tok

    def fail(self, message, tok=None):
        tok = tok or self.peek()
        raise KqlError("ParserFailure", message, tok)

    def expect(self, text):
        tok = self.take()
        if tok[1] != text:
            self.fail(f"expected {text!r}, found {tok[1] or 'the end'!r}",
                      tok)
        return tok

    def accept(self, text):
        if self.peek()[1] == text and self.peek()[0] in ("op", "name"):
            return self.take()
        return None

    def name(self):
        tok = self.take()
        if tok[0] != "name":
            self.fail(f"expected a name, found {tok[1] or 'the end'!r}", tok)
        return tok[1]

    # -- tabular operators

    def query(self):
        ops = []
        if self.peek()[1] in ("where", "project", "extend", "mv-expand",
                              "order", "sort", "limit", "take"):
            ops.append(self.operator())   # no table: Resources, as live
            tok = ("name", "Resources", 0)
        else:
            tok = self.take()
        if tok[0] != "name" or tok[1].lower() not in ARG_TABLES:
            self.fail("a query starts with a table: Resources", tok)
        if tok[1].lower() != "resources":
            raise KqlError("NotEmulated", f"table {tok[1]!r} is not"
                           " emulated; only Resources", tok)
        while self.accept("|"):
            ops.append(self.operator())
        if self.peek()[0] != "end":
            self.fail(f"unexpected {self.peek()[1]!r}")
        return ops

    def operator(self):
        tok = self.take()
        word = tok[1]
        if word == "where":
            return ("where", self.expr())
        if word in ("project", "extend"):
            items = [self.assignment(word)]
            while self.accept(","):
                items.append(self.assignment(word))
            if word == "project":
                self.columns = []
            self.columns += [n for n, _ in items if n not in self.columns]
            return (word, items)
        if word == "mv-expand":
            name, expr = self.assignment(word)
            if expr[0] != "path":
                raise KqlError("NotEmulated", "mv-expand takes a column"
                               " or a path", tok)
            if name not in self.columns:
                self.columns.append(name)
            return ("mv-expand", name, expr)
        if word in ("order", "sort"):
            self.expect("by")
            keys = [self.sort_key()]
            while self.accept(","):
                keys.append(self.sort_key())
            return ("order", keys)
        if word in ("limit", "take"):
            num = self.take()
            if num[0] != "num":
                self.fail(f"{word} takes a number", num)
            return ("limit", int(num[1]))
        if tok[0] == "name":
            raise KqlError("NotEmulated", f"operator {word!r} is not"
                           " emulated (where, project, extend, mv-expand,"
                           " order by, sort by, limit, take are)", tok)
        self.fail(f"expected an operator after '|', found {word!r}", tok)

    def assignment(self, word):
        """[name =] expr; without a name a path is named after itself
        (dots as underscores), and so is tostring(path)."""
        if self.peek()[0] == "name" and self.peek(1)[1] == "=":
            name = self.take()[1]
            self.take()
            return name, self.expr()
        start = self.peek()
        expr = self.expr()
        inner = expr[2][0] if expr[0] == "fn" and expr[1] == "tostring" \
            else expr
        if inner[0] != "path":
            raise KqlError("NotEmulated", f"{word}: name this column"
                           " (name = expression)", start)
        return "_".join(str(k) for k in inner[1]), expr

    def sort_key(self):
        expr = self.expr()
        desc = True                   # KQL sorts descending by default
        if self.accept("asc"):
            desc = False
        elif self.accept("desc"):
            desc = True
        return expr, desc

    # -- expressions

    def expr(self):
        left = self.conj()
        while self.accept("or"):
            left = ("or", left, self.conj())
        return left

    def conj(self):
        left = self.comparison()
        while self.accept("and"):
            left = ("and", left, self.comparison())
        return left

    def comparison(self):
        left = self.primary()
        tok = self.peek()
        op = tok[1]
        negated = tok[1] == "!" and self.peek(1)[0] == "name"
        if negated:
            op = "!" + self.peek(1)[1]
        if tok[0] in ("op", "name") and (op in KQL_CMP or op in KQL_IN):
            self.take()
            if negated:
                self.take()
            if op in KQL_IN:
                return ("in", op, left, self.literal_list())
            return ("cmp", op, left, self.primary())
        if tok[0] == "op" and op in ("<", ">", "<=", ">=", "+", "-", "*",
                                     "/", "%"):
            raise KqlError("NotEmulated", f"operator {op!r} is not"
                           " emulated", tok)
        if tok[0] == "name" and op in ("has", "has_cs", "matches",
                                       "contains_cs", "startswith_cs",
                                       "endswith_cs", "between", "has_any",
                                       "has_all", "hasprefix", "hassuffix",
                                       "!has"):
            raise KqlError("NotEmulated", f"operator {op!r} is not"
                           " emulated", tok)
        return left

    def literal_list(self):
        self.expect("(")
        values = [self.literal()]
        while self.accept(","):
            values.append(self.literal())
        self.expect(")")
        return values

    def literal(self):
        tok = self.take()
        if tok[0] == "str":
            return kql_string(tok[1])
        if tok[0] == "num":
            return int(tok[1])
        if tok[1] in ("true", "false"):
            return tok[1] == "true"
        self.fail(f"expected a literal, found {tok[1] or 'the end'!r}", tok)

    def primary(self):
        tok = self.peek()
        if tok[0] in ("str", "num") or tok[1] in ("true", "false"):
            return ("lit", self.literal())
        if self.accept("("):
            inner = self.expr()
            self.expect(")")
            return inner
        if tok[0] != "name":
            self.fail(f"expected a value, found {tok[1] or 'the end'!r}",
                      tok)
        if self.peek(1)[1] == "(":
            return self.function()
        return self.path()

    def function(self):
        tok = self.take()
        if tok[1] not in KQL_FUNCTIONS:
            raise KqlError("NotEmulated", f"function {tok[1]!r} is not"
                           f" emulated; these are: {', '.join(KQL_FUNCTIONS)}",
                           tok)
        self.expect("(")
        arg = self.expr()
        self.expect(")")
        return ("fn", tok[1], [arg])

    def path(self):
        tok = self.take()
        if tok[1] not in self.columns:
            raise KqlError("FailedToResolveScalarExpression", "Failed to"
                           f" resolve scalar expression named '{tok[1]}'",
                           tok)
        keys = [tok[1]]
        while True:
            if self.accept("."):
                keys.append(self.name())
            elif self.accept("["):
                key = self.take()
                if key[0] == "num":
                    keys.append(int(key[1]))
                elif key[0] == "str":
                    keys.append(kql_string(key[1]))
                else:
                    self.fail("expected an index or a quoted key", key)
                self.expect("]")
            else:
                return ("path", keys)


def kql_text(v):
    """tostring(): null is "", dynamic values are JSON."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def kql_eval(e, row):
    tag = e[0]
    if tag == "lit":
        return e[1]
    if tag == "path":
        v = row.get(e[1][0])
        for key in e[1][1:]:
            if isinstance(key, int) and isinstance(v, list):
                v = v[key] if -len(v) <= key < len(v) else None
            elif isinstance(key, str) and isinstance(v, dict):
                v = v.get(key)
            else:
                v = None
        return v
    if tag == "and":
        return kql_eval(e[1], row) is True and kql_eval(e[2], row) is True
    if tag == "or":
        return kql_eval(e[1], row) is True or kql_eval(e[2], row) is True
    if tag == "fn":
        return kql_function(e[1], kql_eval(e[2][0], row))
    if tag == "cmp":
        return kql_compare(e[1], kql_eval(e[2], row), kql_eval(e[3], row))
    values = e[3]                     # "in"
    v = kql_text(kql_eval(e[2], row))
    fold = e[1].endswith("~")
    hit = any((v.lower() == kql_text(x).lower()) if fold
              else v == kql_text(x) for x in values)
    return hit != e[1].startswith("!")


def kql_function(name, v):
    if name == "tostring":
        return kql_text(v)
    if name in ("tolower", "toupper"):
        return getattr(kql_text(v), name[2:])()
    if name in ("isempty", "isnotempty"):
        empty = v is None or v == "" or v == [] or v == {}
        return empty == (name == "isempty")
    if name in ("isnull", "isnotnull"):
        return (v is None) == (name == "isnull")
    if name == "not":
        return v is not True
    return len(v) if isinstance(v, list) else None     # array_length


def kql_compare(op, a, b):
    neg = op.startswith("!") and op != "!="
    base = op[1:] if neg else op
    if base in ("==", "!="):
        num = (isinstance(a, (int, float)) and isinstance(b, (int, float))
               and not isinstance(a, bool) and not isinstance(b, bool))
        same = a == b if num else kql_text(a) == kql_text(b)
        return same if base == "==" else not same
    if base in ("=~", "!~"):
        same = kql_text(a).lower() == kql_text(b).lower()
        return same if base == "=~" else not same
    a, b = kql_text(a).lower(), kql_text(b).lower()
    hit = {"contains": b in a, "startswith": a.startswith(b),
           "endswith": a.endswith(b)}[base]
    return hit != neg


def kql_sort_key(v):
    if v is None:
        return (0, 0)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (1, v)
    return (2, kql_text(v))


def kql_run(ops, rows):
    """Apply the parsed operators to the rows (dicts, column order kept)."""
    for op in ops:
        if op[0] == "where":
            rows = [r for r in rows if kql_eval(op[1], r) is True]
        elif op[0] == "project":
            rows = [{n: kql_eval(e, r) for n, e in op[1]} for r in rows]
        elif op[0] == "extend":
            rows = [dict(r, **{n: kql_eval(e, r) for n, e in op[1]})
                    for r in rows]
        elif op[0] == "mv-expand":
            rows = [dict(r, **{op[1]: item}) for r in rows
                    for item in mv_items(kql_eval(op[2], r))]
        elif op[0] == "order":
            for expr, desc in reversed(op[1]):
                rows.sort(key=lambda r: kql_sort_key(kql_eval(expr, r)),
                          reverse=desc)
        elif op[0] == "limit":
            rows = rows[:op[1]]
    return rows


def mv_items(v):
    """mv-expand: an array gives one row per element (none if empty), a
    property bag one per key, anything else one row as it is."""
    if isinstance(v, list):
        return v
    if isinstance(v, dict):
        return [{k: x} for k, x in v.items()]
    return [v]


def arg_rows(emu, subs):
    """The Resources table of these subscriptions, sorted by id: VMs,
    scale sets, bastions, NICs (not a scale set's) and virtual networks.
    type and resourceGroup lower-cased and location normalised, as the
    service shows them; a VM has properties.extended.instanceView
    .powerState."""
    want_subs = {s.lower() for s in subs}
    world = emu.world
    bodies = []
    for vid, conf in world.vms.values():
        if VMSS_RE.match(vid):
            continue
        body = vm_body(emu, vid, conf)
        power = emu.vm_power(vid)
        body["properties"]["extended"] = {"instanceView": {"powerState": {
            "code": f"PowerState/{power}", "level": "Info",
            "displayStatus": f"VM {power}"}}}
        bodies.append(body)
    for ssid, instances in world.scale_sets().values():
        bodies.append(vmss_body(emu, ssid, instances))
    bodies += [bastion_body(emu, bid, conf)
               for bid, conf in world.bastions.values()]
    bodies += [nic_body(emu, rec) for rec in world.nics.values()
               if NIC_RE.match(rec["id"])]
    bodies += [vnet_body(emu, rec) for rec in world.vnets.values()]
    rows = []
    for body in bodies:
        sub, rg, _ = id_parts(body["id"])
        if sub.lower() not in want_subs:
            continue
        _, sconf = ci_get(emu.cfg.get("subscriptions", {}), sub)
        rows.append({
            "id": body["id"], "name": body["name"],
            "type": body["type"].lower(),
            "tenantId": (sconf or {}).get("tenant"), "kind": "",
            "location": arm_location(body.get("location")),
            "resourceGroup": rg.lower(), "subscriptionId": sub,
            "managedBy": body.get("managedBy", ""), "sku": body.get("sku"),
            "plan": None, "properties": body.get("properties", {}),
            "tags": body.get("tags", {}), "identity": None,
            "zones": body.get("zones"), "extendedLocation": None})
    rows.sort(key=lambda r: r["id"].lower())
    return rows


def arg_error(status, code, message, detail=None):
    """Resource Graph's error: a support line, then details."""
    cid = str(uuid.uuid4())
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.0000000Z", time.gmtime())
    details = [{"code": code, "message": message}]
    if detail:
        details.append(detail)
    return json_resp(status, {"error": {
        "code": "BadRequest" if status == 400 else code,
        "message": "Please provide below info when asking for support:"
                   f" timestamp = {stamp}, correlationId = {cid}.",
        "details": details}}, [("x-ms-correlation-request-id", cid)])


def kql_failure(query, e):
    """400 InvalidQuery; the second detail says where and why."""
    detail = {"code": e.code, "message": str(e)}
    if e.tok is not None:
        offset = e.tok[2]
        line = query.count("\n", 0, offset) + 1
        detail.update(line=line, characterPositionInLine=offset - (
            query.rfind("\n", 0, offset) + 1), token=e.tok[1])
    return arg_error(400, "InvalidQuery", "Query is invalid. Please refer"
                     " to the documentation for the Azure Resource Graph"
                     " service and fix the error before retrying.", detail)


def skip_token(query_key, offset):
    raw = json.dumps({"q": query_key, "o": offset}).encode()
    return base64.b64encode(raw).decode()


def read_skip_token(token, query_key):
    try:
        obj = json.loads(base64.b64decode(token, validate=True))
        if obj["q"] == query_key and isinstance(obj["o"], int):
            return obj["o"]
    except (ValueError, TypeError, KeyError):
        pass
    return None


def arg_request(body):
    """(query, subscriptions or None, options) of a request body, or an
    error message."""
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        return "the body must be a JSON object with a \"query\" string"
    subs = body.get("subscriptions")
    if subs is not None and not is_str_list(subs):
        return "\"subscriptions\" must be a list of subscription ids"
    if body.get("managementGroups") or body.get("facets"):
        return "managementGroups and facets are not emulated"
    opts = body.get("options") or {}
    if not isinstance(opts, dict):
        return "\"options\" must be an object"
    if opts.get("resultFormat", "objectArray") != "objectArray":
        return "only resultFormat objectArray is emulated"
    for key, low, high in (("$top", 1, ARG_MAX_TOP), ("$skip", 0, None)):
        val = opts.get(key)
        if val is not None and not (
                isinstance(val, int) and not isinstance(val, bool)
                and val >= low and (high is None or val <= high)):
            return f"options.{key}: an integer from {low}" + (
                f" to {high}" if high else "")
    return body["query"], subs, opts


def h_resourcegraph(emu, req, route):
    """POST /providers/Microsoft.ResourceGraph/resources: run the query
    over the subscriptions the token may see; answer a page."""
    if req.query["api-version"] not in ARG_API_VERSIONS:
        return arm_error(400, "InvalidApiVersionParameter", "The"
                         f" api-version '{req.query['api-version']}' is"
                         " invalid. The supported versions are '"
                         + ",".join(ARG_API_VERSIONS) + "'.")
    try:
        parsed = arg_request(json.loads(req.body or b"null"))
    except ValueError:
        parsed = "the body is not JSON"
    if isinstance(parsed, str):
        return arg_error(400, "InvalidRequestContent", parsed)
    query, asked, opts = parsed
    req.note = {"query": query[:2000]}
    visible = visible_subscriptions(emu, bearer_claims(req))
    subs = visible
    if asked is not None:
        subs = [s for s in visible if s.lower() in
                {a.lower() for a in asked}]
        if asked and not subs:
            return arg_error(403, "AccessDenied", "Access is denied to the"
                             " requested resource. The user might not have"
                             " enough permission.")
    try:
        ops = KqlParser(query).query()
    except KqlError as e:
        return kql_failure(query, e)
    rows = kql_run(ops, arg_rows(emu, subs))
    key = sha256_hex(query + "\n" + ",".join(sorted(s.lower()
                                                     for s in subs)))[:16]
    offset = opts.get("$skip") or 0
    if any(op[0] == "limit" for op in ops):
        offset = 0                    # the service ignores $skip then
    if opts.get("$skipToken"):
        offset = read_skip_token(opts["$skipToken"], key)
        if offset is None:
            return arg_error(400, "InvalidSkipToken", "The $skipToken is"
                             " not valid for this query.")
    size = opts.get("$top") or emu.cfg.get("resourcegraph_page_size",
                                          ARG_MAX_TOP)
    page = rows[offset:offset + size]
    more = offset + len(page) < len(rows)
    # Paging needs the id column, as the service says; else truncation.
    pageable = all("id" in r for r in rows)
    body = copy.deepcopy(emu.fixtures["arg_page"])
    body.update(totalRecords=len(rows), count=len(page), facets=[],
                resultTruncated="true" if more and not pageable
                else "false", data=page)
    if more and pageable:
        body["$skipToken"] = skip_token(key, offset + len(page))
    else:
        body.pop("$skipToken", None)
    return arm_ok(body)


ARM_HANDLERS["resourcegraph"] = h_resourcegraph


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
    bid, bconf = emu.bastion_for_host(req.header("host"), req.local_port)
    if bid is None:
        return unexpected_error()
    dev = is_developer(bconf)
    host = req.header("host").lower()
    if dev and host == emu.bastion_dns(bid, bconf).lower() != \
            emu.bastion_pod(bid, bconf).lower():
        # Developer: sessions are the data pod's, not omnibrain's.
        return bastion_error(404, "Not found")
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
    # Developer: whether the data pod has node ids is not known (Q11).
    sess.node_id = not dev or bconf.get("node_id", True) is not False
    emu.sessions[sess.auth] = sess
    emu.ws_index[sess.ws_token] = sess
    emu.created += 1
    # X-Node-Id and "token" (previous session) are accepted and ignored.
    body = {"authToken": sess.auth, "nodeId": sess.node,
            "websocketToken": sess.ws_token, "username": "",
            "dataSource": "", "availableDataSources": []}
    if not sess.node_id:
        del body["nodeId"]
    return json_resp(200, body)


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
        ip_map = emu.world.ip_targets()
        ip_map.update({norm_ip(k): v
                       for k, v in emu.cfg.get("ip_map", {}).items()})
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
    node = req.header("x-node-id", None)
    # A Developer session may come without X-Node-Id (Q11); a wrong one
    # is refused wherever the session has a node id.
    if sess.node_id and node != sess.node and not (sess.developer
                                                   and node is None):
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
    bid, bconf = emu.world.bastions.get(
        str(body.get("bastionResourceId")).lower(), (None, None))
    if bconf is None or not is_developer(bconf):
        return text_resp(404, "Bastion not found")
    # Our checks, to catch client bugs; the live wording is unknown.
    if body.get("connectionType") != "nativeclient":
        return text_resp(400, "Unsupported connectionType")
    rid = str(body.get("resourceId", ""))
    if not (VM_RE.match(rid) or VMSS_RE.match(rid)):
        return text_resp(400, "Invalid resourceId")
    port = body.get("vmPort")
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if (not isinstance(port, int) or isinstance(port, bool)
            or not 0 < port < 65536):
        return text_resp(400, "Invalid vmPort")
    return text_resp(200, emu.bastion_pod(bid, bconf))


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
        if get and what == "world":
            return json_resp(200, world_view(emu))
        if req.method == "POST":
            resp = emu_post(emu, req, what)
            if what == "config":
                await emu.sync_listeners()
            return resp
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
        if "vms" in body:             # the config says how they are now
            emu.power.clear()
            emu.vm_ops.clear()
        return json_resp(200, emu.cfg)
    if what == "power":
        vid, conf = emu.world.vm(str(body.get("vm")))
        if conf is None:
            raise LookupError(f"no such VM in config: {body.get('vm')!r}")
        if body.get("power") not in POWER_STATES:
            raise ConfigError(f"power: one of {list(POWER_STATES)}")
        for op in emu.vm_ops.values():
            if op.vm.lower() == vid.lower() and op.status == "InProgress":
                op.done_at = float("inf")     # overtaken: never settles
        emu.power[vid.lower()] = body["power"]
        return json_resp(200, world_view(emu)["vms"][vid])
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


def world_view(emu):
    """What tests need to know of the world: bastion endpoints and
    ports, VM power states and NICs, start operations."""
    return {
        "bastions": {bid: {"dnsName": emu.bastion_dns(bid, conf),
                           "dataPod": emu.bastion_pod(bid, conf)
                           if is_developer(conf) else None,
                           "port": emu.bastion_port(bid),
                           "vnet": bastion_vnet(conf)}
                     for bid, conf in emu.world.bastions.values()},
        "vms": {vid: {"power": emu.vm_power(vid),
                      "computerName": computer_name(vid, conf),
                      "nics": [n["id"] for n in
                               emu.world.vm_nics.get(vid.lower(), [])],
                      "vnets": sorted(emu.world.vnets[v]["id"] for v in
                                      emu.world.vm_vnets(vid))}
                for vid, conf in emu.world.vms.values()},
        "operations": [dict(op.body(), vm=op.vm)
                       for op in emu.vm_ops.values()]}


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
            self.sess.unreachable = unreachable_reason(self.emu, self.sess)
            if self.sess.unreachable:
                log(f"target unreachable: {self.sess.unreachable}")
            if not self.sess.unreachable and await self.connect_target():
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


def unreachable_reason(emu, sess):
    """Why the Bastion cannot reach the target, or None: a VM that is not
    running, or networks that are known and neither shared nor peered."""
    _, bconf = emu.world.bastions.get(sess.bastion.lower(), (None, None))
    m = HOSTCONNECT_RE.match(sess.resource_id)
    if m:
        ip = norm_ip(urllib.parse.unquote(m.group(1)))
        return bconf and ip and emu.world.unreachable(
            bconf, emu.world.ip_vnets(ip)) or None
    vid, conf = emu.world.vm(sess.resource_id)
    if conf is None:
        return None
    power = emu.vm_power(vid)
    if power != "running":
        return f"the VM is {power}"
    return bconf and emu.world.unreachable(
        bconf, emu.world.vm_vnets(vid)) or None


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
    if kind == "omni" and (not sess.developer or (
            sess.node_id and node not in (None, sess.node))):
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
    resp = upgrade_response(req, mode)
    if mode == "with_frame":
        resp += frame(0x2, b"early\n")
    writer.write(resp)
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
    if low[:1] == ["subscriptions"] or low[:2] == ["providers",
                                                  "microsoft.resourcegraph"]:
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
    sockname = writer.get_extra_info("sockname") or (None, None)
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
        req.local_port = sockname[1]
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

    async def open_listener(port):
        # A bastion's own port: the same TLS and routes as the main one.
        try:
            server = await asyncio.start_server(
                on_conn(False), args.listen, port, limit=STREAM_LIMIT)
        except OSError as e:
            raise ConfigError(f"own_port {port}: {e}")
        servers.append(server)
        return server.sockets[0].getsockname()[1]
    emu.open_listener = open_listener
    try:
        await emu.sync_listeners()
    except ConfigError as e:
        print(f"azure_emu: {e}", file=sys.stderr)
        for server in servers:
            server.close()
        return 2
    if args.plain_port_file or args.plain_port:
        servers.append(await asyncio.start_server(
            on_conn(True), args.listen, args.plain_port, limit=STREAM_LIMIT))
        emu.plain_port = servers[-1].sockets[0].getsockname()[1]
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
    return 0


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
    return asyncio.run(serve(args, emu))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
