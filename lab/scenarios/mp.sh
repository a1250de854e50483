#!/usr/bin/env bash
# Scenario `mp`: nginx and OpenSSL play a ConfigMgr management point, nginx a WSUS server.
#
#   mp (10.77.0.12)    nginx: HTTP 80 and HTTPS 443 (TLS 1.0-1.3, certificate issued by a CA
#                      whose subject CN is "SMS Issuing", as Enhanced HTTP's certificates are),
#                      ConfigMgr paths (/ccm_system/request, /ccm_system_windowsauth/request,
#                      /SMS_MP/.sms_aut), anything else 404;
#                      openssl s_server -tls1 on 10123 (client notification with legacy TLS).
#   sup (10.77.0.14)   nginx: plain HTTP on 443 (the HTTPS port) and WSUS-style HTTP on 8530.
#   client (10.77.1.21) curl and openssl s_client.
#
# What the clients do (client ports pinned with curl --local-port so that the expectations can
# tell flows to the same server port apart):
#   1. client -> mp:80     (41000) GET /SMS_MP/.sms_aut?MPLIST then ?MPCERT, one keep-alive
#                          connection, User-Agent ccmhttp
#   2. client -> mp:80     (41002) CCM_POST /ccm_system_windowsauth/request, ccmhttp (registration)
#   3. client -> mp:80     (41004) CCM_POST /ccm_system/request, User-Agent "ConfigMgr Messaging
#                          HTTP Sender" (the Messaging SDK's default)
#   4. client -> mp:443    (41010) TLS 1.2 only, SNI mp.lab.flowaudit.test, CCM_POST /ccm_system/request
#   5. client -> mp:443    (41012) TLS 1.3, SNI mp.lab.flowaudit.test, GET /SMS_MP/.sms_aut?MPLIST
#   6. client -> mp:443    (41014) TLS 1.0 only (SECLEVEL=0), SNI mp.lab.flowaudit.test, MPLIST
#   7. client -> mp:10123  openssl s_client -tls1 (client notification over TLS 1.0)
#   8. client -> sup:443   (41020) plain HTTP POST /ClientWebService/client.asmx on the HTTPS port
#   9. client -> sup:8530  (41030) POST /ClientWebService/client.asmx, POST
#                          /SimpleAuthWebService/SimpleAuth.asmx, GET /Content/..., keep-alive,
#                          User-Agent Windows-Update-Agent
#
# Usage (normally through lab/record.sh): LAB_SCENARIO=mp bash lab/scenarios/mp.sh OUTDIR
set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "$0")/../lib.sh"
OUTDIR="$(lab_outdir "${1:-}")"

MP="$(lab_addr mp)"
SUP="$(lab_addr sup)"
MPNAME=mp.lab.flowaudit.test

lab_host mp
lab_host sup
lab_host client

lab_names mp sup client

# --- certificates (before the capture) --------------------------------------------------------
PKI="$LAB_TMP/pki"
mkdir -p "$PKI"
openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 30 -keyout "$PKI/ca.key" -out "$PKI/ca.crt" \
  -subj "/CN=SMS Issuing" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  >"$PKI/openssl.log" 2>&1
openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$PKI/mp.key" -out "$PKI/mp.csr" \
  -subj "/CN=$MPNAME" >>"$PKI/openssl.log" 2>&1
printf 'subjectAltName=DNS:%s,IP:%s\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n' \
  "$MPNAME" "$MP" > "$PKI/mp.ext"
openssl x509 -req -sha256 -days 30 -in "$PKI/mp.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
  -CAcreateserial -extfile "$PKI/mp.ext" -out "$PKI/mp.crt" >>"$PKI/openssl.log" 2>&1

# --- nginx ------------------------------------------------------------------------------------
# The common part of an nginx configuration with everything under DIR: nginx_head DIR
nginx_head() {
  local dir="$1"
  mkdir -p "$dir"/{logs,tmp/body,tmp/proxy,tmp/fastcgi,tmp/uwsgi,tmp/scgi,html}
  cat <<EOF
user root;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/logs/error.log info;
events { worker_connections 64; }
http {
    access_log $dir/logs/access.log;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    default_type application/octet-stream;
    keepalive_timeout 10;
EOF
}

MPD="$LAB_TMP/nginx-mp"
mkdir -p "$MPD"
{
  nginx_head "$MPD"
  cat <<EOF
    server {
        listen $MP:80;
        listen $MP:443 ssl;
        server_name $MPNAME mp $MP;
        ssl_certificate $PKI/mp.crt;
        ssl_certificate_key $PKI/mp.key;
        ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;
        ssl_ciphers 'DEFAULT:@SECLEVEL=0';

        # Client messaging: the ConfigMgr client's CCM_POST (policy, inventory, status).
        location = /ccm_system/request {
            if (\$request_method != CCM_POST) { return 405; }
            default_type application/octet-stream;
            return 200 '<Reply><PolicyAssignmentReply/></Reply>';
        }
        # Registration with Windows authentication.
        location = /ccm_system_windowsauth/request {
            if (\$request_method != CCM_POST) { return 405; }
            default_type application/octet-stream;
            return 200 '<ClientRegistrationReply><SMSID>GUID:7F3C0A4E-1B2D-4C5E-8F90-A1B2C3D4E5F6</SMSID></ClientRegistrationReply>';
        }
        # Location and authentication queries: MPLIST, MPCERT, ...
        location = /SMS_MP/.sms_aut {
            default_type text/xml;
            if (\$args ~* ^MPLIST) {
                return 200 '<MPList><MP Name="MP" FQDN="$MPNAME"><Version>9128</Version><Capabilities SchemaVersion="1.0"><Property Name="SSLState" Value="0"/></Capabilities></MP></MPList>';
            }
            return 200 '<MPCERT><Cert Type="Signing">3082</Cert></MPCERT>';
        }
        location / { return 404; }
    }
}
EOF
} > "$MPD/nginx.conf"

SUPD="$LAB_TMP/nginx-sup"
mkdir -p "$SUPD/html/Content/A7"
head -c 2048 /dev/urandom > "$SUPD/html/Content/A7/A7F3E2D1C0B9A8F7E6D5C4B3A2918070E6D5C4B3.cab"
{
  nginx_head "$SUPD"
  cat <<EOF
    server {
        # Plain HTTP on the HTTPS port, and WSUS' HTTP port.
        listen $SUP:443;
        listen $SUP:8530;
        server_name sup.lab.flowaudit.test sup $SUP;
        root $SUPD/html;
        location = /ClientWebService/client.asmx {
            default_type 'text/xml; charset=utf-8';
            return 200 '<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><GetConfigResponse xmlns="http://www.microsoft.com/SoftwareDistribution/Server/ClientWebService"><GetConfigResult><LastChange>2026-01-01T00:00:00Z</LastChange></GetConfigResult></GetConfigResponse></soap:Body></soap:Envelope>';
        }
        location = /SimpleAuthWebService/SimpleAuth.asmx {
            default_type 'text/xml; charset=utf-8';
            return 200 '<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><GetAuthorizationCookieResponse xmlns="http://www.microsoft.com/SoftwareDistribution/Server/SimpleAuthWebService"><GetAuthorizationCookieResult><PlugInId>SimpleTargeting</PlugInId></GetAuthorizationCookieResult></GetAuthorizationCookieResponse></soap:Body></soap:Envelope>';
        }
        location /Content/ { }
        location / { return 404; }
    }
}
EOF
} > "$SUPD/nginx.conf"

for pair in "mp:$MPD" "sup:$SUPD"; do
  h="${pair%%:*}"; d="${pair#*:}"
  lab_in "$h" nginx -t -p "$d" -c "$d/nginx.conf" >"$d/logs/nginx-t.log" 2>&1 \
    || { lab_log "nginx config of $h: $(cat "$d/logs/nginx-t.log")"; exit 1; }
  lab_in "$h" setsid nginx -p "$d" -c "$d/nginx.conf" -g 'daemon off;' >"$d/logs/nginx.out" 2>&1 </dev/null &
done

# Client notification: one TLS 1.0 server on 10123 (OpenSSL 3 needs security level 0 for it).
# Its standard input stays open (a sleeping writer, in the namespace too, so that the teardown
# ends it) so that it does not stop at EOF.
mkdir -p "$LAB_TMP/s_server"
lab_in mp setsid sh -c 'sleep 120 | exec openssl s_server -accept "$1:10123" -tls1 -cipher "DEFAULT@SECLEVEL=0" -cert "$2" -key "$3"' \
  _ "$MP" "$PKI/mp.crt" "$PKI/mp.key" >"$LAB_TMP/s_server/out.log" 2>&1 </dev/null &

for hp in mp:80 mp:443 mp:10123 sup:443 sup:8530; do
  lab_wait_port "${hp%%:*}" "${hp#*:}" 20 || {
    lab_log "$(cat "$MPD/logs/error.log" "$SUPD/logs/error.log" "$MPD/logs/nginx.out" "$SUPD/logs/nginx.out" "$LAB_TMP/s_server/out.log" 2>/dev/null)"
    exit 1
  }
done

# Request bodies.
printf '<ClientRegistrationRequest><Data hash="SHA256" SMSID=""><AgentInformation AgentIdentity="CCMSetup.exe" AgentVersion="5.00.9128.1000"/><Certificates><Encryption Encoding="HexBinary">3082</Encryption></Certificates><DiscoveryProperties><Property Name="Netbios Name" Value="CLIENT"/></DiscoveryProperties></Data></ClientRegistrationRequest>' > "$LAB_TMP/register.xml"
printf '<Msg SchemaVersion="1.1"><ID>{00000000-0000-0000-0000-000000000001}</ID><SourceID>GUID:7F3C0A4E-1B2D-4C5E-8F90-A1B2C3D4E5F6</SourceID><TargetEndpoint>MP_PolicyManager</TargetEndpoint><Body Type="ByteRange" Offset="0" Length="64"/></Msg><RequestAssignments SchemaVersion="1.00" ACK="false" RequestType="Always"><PolicySource>SMS:LAB</PolicySource><Resource ResourceType="Machine"/></RequestAssignments>' > "$LAB_TMP/policy.xml"
printf '<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><GetConfig xmlns="http://www.microsoft.com/SoftwareDistribution/Server/ClientWebService"><protocolVersion>1.20</protocolVersion></GetConfig></soap:Body></soap:Envelope>' > "$LAB_TMP/getconfig.xml"
printf '<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><GetAuthorizationCookie xmlns="http://www.microsoft.com/SoftwareDistribution/Server/SimpleAuthWebService"><clientId>7f3c0a4e-1b2d-4c5e-8f90-a1b2c3d4e5f6</clientId><targetGroupName></targetGroupName></GetAuthorizationCookie></soap:Body></soap:Envelope>' > "$LAB_TMP/simpleauth.xml"

WUA='Windows-Update-Agent/10.0.10011.16384 Client-Protocol/2.50'
SDK='ConfigMgr Messaging HTTP Sender'
# curl from the client, never through a proxy, bounded: c PORT args...
c() {
  local port="$1"; shift
  lab_in client timeout 20 curl --noproxy '*' --silent --show-error --fail --max-time 15 \
    --local-port "$port" --output /dev/null --write-out '%{http_code} %{ssl_verify_result} %{url_effective}\n' "$@"
}
step() { lab_log "$1"; shift; "$@" >>"$LAB_TMP/clients.log" 2>&1 || { lab_log "failed: $*"; tail -n 20 "$LAB_TMP/clients.log" >&2; exit 1; }; }
RESOLVE=(--resolve "$MPNAME:443:$MP")
# Client notification: handshake, then standard input's EOF closes the connection.
notify() {
  lab_in client timeout 15 openssl s_client -connect "$MP:10123" -tls1 -cipher 'DEFAULT@SECLEVEL=0' </dev/null
}

lab_capture_start "$OUTDIR/mp.pcap"

step "client -> mp:80 MPLIST and MPCERT on one keep-alive connection (ccmhttp)" \
  c 41000 -A ccmhttp "http://$MP/SMS_MP/.sms_aut?MPLIST" "http://$MP/SMS_MP/.sms_aut?MPCERT"
step "client -> mp:80 CCM_POST /ccm_system_windowsauth/request (registration, ccmhttp)" \
  c 41002 -A ccmhttp -X CCM_POST -H 'Content-Type: text/xml' --data-binary "@$LAB_TMP/register.xml" \
  "http://$MP/ccm_system_windowsauth/request"
step "client -> mp:80 CCM_POST /ccm_system/request with the Messaging SDK's user agent" \
  c 41004 -A "$SDK" -X CCM_POST -H 'Content-Type: text/xml' --data-binary "@$LAB_TMP/policy.xml" \
  "http://$MP/ccm_system/request"
step "client -> mp:443 TLS 1.2 CCM_POST /ccm_system/request" \
  c 41010 -k --tlsv1.2 --tls-max 1.2 "${RESOLVE[@]}" -A ccmhttp -X CCM_POST -H 'Content-Type: text/xml' \
  --data-binary "@$LAB_TMP/policy.xml" "https://$MPNAME/ccm_system/request"
step "client -> mp:443 TLS 1.3 MPLIST" \
  c 41012 -k --tlsv1.3 "${RESOLVE[@]}" -A ccmhttp "https://$MPNAME/SMS_MP/.sms_aut?MPLIST"
step "client -> mp:443 TLS 1.0 MPLIST" \
  c 41014 -k --tlsv1.0 --tls-max 1.0 --ciphers 'DEFAULT@SECLEVEL=0' "${RESOLVE[@]}" -A ccmhttp \
  "https://$MPNAME/SMS_MP/.sms_aut?MPLIST"
step "client -> mp:10123 openssl s_client -tls1 (client notification)" \
  notify
step "client -> sup:443 plain HTTP POST /ClientWebService/client.asmx on the HTTPS port" \
  c 41020 -A "$WUA" -H 'Content-Type: text/xml; charset=utf-8' \
  -H 'SOAPAction: "http://www.microsoft.com/SoftwareDistribution/Server/ClientWebService/GetConfig"' \
  --data-binary "@$LAB_TMP/getconfig.xml" "http://$SUP:443/ClientWebService/client.asmx"
step "client -> sup:8530 WSUS client web service, SimpleAuth and content on one connection" \
  c 41030 -A "$WUA" -H 'Content-Type: text/xml; charset=utf-8' \
  -H 'SOAPAction: "http://www.microsoft.com/SoftwareDistribution/Server/ClientWebService/GetConfig"' \
  --data-binary "@$LAB_TMP/getconfig.xml" "http://$SUP:8530/ClientWebService/client.asmx" \
  --next -A "$WUA" -H 'Content-Type: text/xml; charset=utf-8' \
  -H 'SOAPAction: "http://www.microsoft.com/SoftwareDistribution/Server/SimpleAuthWebService/GetAuthorizationCookie"' \
  --data-binary "@$LAB_TMP/simpleauth.xml" "http://$SUP:8530/SimpleAuthWebService/SimpleAuth.asmx" \
  --next -A "$WUA" "http://$SUP:8530/Content/A7/A7F3E2D1C0B9A8F7E6D5C4B3A2918070E6D5C4B3.cab"

lab_capture_stop
grep -q 'Protocol *: TLSv1$' "$LAB_TMP/clients.log" || { lab_log "s_client did not negotiate TLS 1.0"; exit 1; }
lab_log "recorded $OUTDIR/mp.pcap"
