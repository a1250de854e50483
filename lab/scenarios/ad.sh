#!/usr/bin/env bash
# Scenario ad: a Samba Active Directory domain controller (host dc) and domain members doing
# what Windows machines do with a DC, each step a real tool:
#   client (10.77.1.21), the workstation: DNS SRV lookups (dig, host), a CLDAP netlogon ping
#     (net ads lookup), NetBIOS name query and node status (nmblookup), Kerberos AS and TGS
#     (MIT kinit, kvno), SMB 3.1.1 with Kerberos (smbclient -L) and with NTLM
#     (smbclient //dc/netlogon), MS-RPC over named pipes (rpcclient), the endpoint map
#     (impacket rpcdump), LDAPS on 636, and -- the planted problem -- LDAP simple binds with a
#     password on plain 389 and on the global catalog 3268 (ldap server require strong
#     auth = no lets the DC accept them);
#   three more workstations, one LDAP kind each so that each flow can be told apart by its
#     client: 10.77.1.22 an anonymous rootDSE read, 10.77.1.23 SASL GSSAPI with sealing after
#     kinit, 10.77.1.24 StartTLS then a simple bind;
#   10.77.1.25, an administrator's workstation: impacket lookupsid and samrdump (LSA and SAM
#     over SMB pipes) and secretsdump (DRSUAPI on a dynamic port, domain admin), and
#     samba-tool drs showrepl (Samba's own DRSUAPI and sealed LDAP client);
#   siteserver (10.77.0.10), a second member: a Kerberos ticket and computer objects over LDAP
#     with GSSAPI, as ConfigMgr's Active Directory System Discovery reads them.
#
#   LAB_SCENARIO=ad bash lab/scenarios/ad.sh OUTDIR        -> OUTDIR/ad.pcap
#
# Every piece of Samba state (databases, sockets, pid files, logs, caches, TLS certificates)
# lives under $LAB_TMP: nothing in /etc/samba, /var/lib/samba, /var/cache/samba or /run/samba
# is read for configuration or written. The domain is provisioned before the capture starts.
# LAB_KEEP=1 keeps $LAB_TMP (it is kept anyway when a step fails); LAB_HOLD=S holds the lab
# up for S seconds before the capture stops, to poke at it by hand.
set -euo pipefail
exec </dev/null
export LAB_SCENARIO="${LAB_SCENARIO:-ad}"
# shellcheck source=../lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/lib.sh"
OUTDIR="$(lab_outdir "${1:-}")"

REALM=LAB.FLOWAUDIT.TEST
DOMAIN=LAB
DNSDOMAIN=lab.flowaudit.test
BASEDN=DC=lab,DC=flowaudit,DC=test
DC_FQDN=dc.$DNSDOMAIN
ADMIN_PASS='Lab-Adm1n-Pass!'
USER=alice
USER_PASS='Alice-Pass-42'
DC_IP="$(lab_addr dc)"
VENV="$LAB_DIR/.venv/bin"
T=30                                  # seconds any one client command may take

lab_host dc
lab_host client
lab_host siteserver
# Workstations outside hosts.tsv (client role by site.yaml's 10.77.1.0/24), see the top.
WS_ANON=10.77.1.22 WS_GSSAPI=10.77.1.23 WS_TLS=10.77.1.24 WS_ADMIN=10.77.1.25
lab_host ws-anon "$WS_ANON"
lab_host ws-gssapi "$WS_GSSAPI"
lab_host ws-tls "$WS_TLS"
lab_host ws-admin "$WS_ADMIN"
# IPv4 only: no router solicitations or other IPv6 chatter from the lab's own links.
for ns in "$LAB_SWITCH" $(for h in "${LAB_HOSTS[@]}"; do lab_ns "$h"; echo; done); do
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
    net.ipv6.conf.default.disable_ipv6=1 >/dev/null
done

# --- the domain controller: provisioned outside the capture -------------------------------
DCDIR="$LAB_TMP/dc"
mkdir -p "$DCDIR"
# smbd serves the shares as the domain user's idmap uid: it must be able to reach them.
chmod 755 "$LAB_TMP"
lab_etc dc resolv.conf <<< "nameserver $DC_IP
search $DNSDOMAIN"
lab_log "provisioning $REALM in $DCDIR"
start=$(date +%s)
# --targetdir keeps the databases under DCDIR; the smb.conf it writes is replaced below by one
# that names every path (provision copies shares from the system smb.conf, and its dns
# forwarder from the system resolv.conf: neither belongs in the lab).
if ! lab_in dc samba-tool domain provision --targetdir="$DCDIR" \
    --realm="$REALM" --domain="$DOMAIN" --server-role=dc --dns-backend=SAMBA_INTERNAL \
    --adminpass="$ADMIN_PASS" --host-name=dc --host-ip="$DC_IP" \
    --option="netbios name = DC" >"$LAB_TMP/provision.log" 2>&1; then
  lab_log "provision failed: $(tail -5 "$LAB_TMP/provision.log")"
  exit 1
fi
# Samba makes its socket directories itself (and insists on their modes).
mkdir -p "$DCDIR"/{run,log,cache,usershares,runroot/samba}
DCCONF="$DCDIR/etc/smb.conf"
cat > "$DCCONF" <<EOF
[global]
	netbios name = DC
	workgroup = $DOMAIN
	realm = $REALM
	server role = active directory domain controller
	interfaces = $DC_IP/16 127.0.0.1/8
	bind interfaces only = yes
	private dir = $DCDIR/private
	binddns dir = $DCDIR/bind-dns
	state directory = $DCDIR/state
	cache directory = $DCDIR/cache
	lock directory = $DCDIR
	pid directory = $DCDIR/run
	ncalrpc dir = $DCDIR/ncalrpc
	ntp signd socket directory = $DCDIR/ntp_signd
	# smbd finds winbindd at libwbclient's compiled-in /run/samba/winbindd (no setting moves
	# it): samba runs with \$DCDIR/runroot mounted over /run, in its own mount namespace.
	winbindd socket directory = /run/samba/winbindd
	usershare path = $DCDIR/usershares
	smb passwd file = $DCDIR/private/smbpasswd
	log file = $DCDIR/log/log.%m
	logging = file
	log level = 1
	load printers = no
	printcap name = /dev/null
	disable spoolss = yes
	idmap_ldb:use rfc2307 = yes
	# what the scenario is about
	server signing = mandatory
	ldap server require strong auth = no
	tls enabled = yes

[sysvol]
	path = $DCDIR/state/sysvol
	read only = No

[netlogon]
	path = $DCDIR/state/sysvol/$DNSDOMAIN/scripts
	read only = No
EOF
lab_in dc samba-tool user create "$USER" "$USER_PASS" -s "$DCCONF" \
  -H "$DCDIR/private/sam.ldb" >>"$LAB_TMP/provision.log" 2>&1
lab_log "provisioned in $(( $(date +%s) - start )) s"
# The DC's own Kerberos clients (samba_dnsupdate, samba_spnupdate) read /etc/krb5.conf.
lab_etc dc krb5.conf < "$DCDIR/private/krb5.conf"

lab_log "starting samba on dc"
# `ip netns exec` runs each command in a mount namespace of its own whose mounts do not
# propagate back, so this /run is the DC's alone (-n: no utab entry in the real /run).
lab_in dc sh -c 'mount -n --bind "$1" /run && shift && exec "$@"' _ "$DCDIR/runroot" \
  samba --foreground --no-process-group -s "$DCCONF" >"$LAB_TMP/samba.log" 2>&1 &
samba_pid=$!
dc_up() {
  local port listening
  listening="$(lab_in dc ss -ltnH)"
  for port in 53 88 135 389 445 636 3268; do
    grep -q ":$port " <<< "$listening" || return 1
  done
}
for _ in $(seq 1 600); do
  dc_up && break
  if ! kill -0 "$samba_pid" 2>/dev/null; then break; fi
  sleep 0.1
done
if ! dc_up; then
  lab_log "the DC never came up; its log:"
  tail -20 "$DCDIR/log/log.%m" "$LAB_TMP/samba.log" >&2 || true
  exit 1
fi
# The LDAP server makes its self-signed certificate on the first start; wait for it, so that
# StartTLS and LDAPS do not race it.
for _ in $(seq 1 100); do
  [ -s "$DCDIR/private/tls/cert.pem" ] && break
  sleep 0.1
done
lab_log "dc is up $(( $(date +%s) - start )) s after provisioning began"

# --- the domain members' configuration -----------------------------------------------------
member_files() {
  local host="$1" dir="$LAB_TMP/$1"
  mkdir -p "$dir"/{lock,state,cache,private,run,ncalrpc,log}
  lab_etc "$host" resolv.conf <<< "nameserver $DC_IP
search $DNSDOMAIN"
  lab_etc "$host" krb5.conf <<EOF
[libdefaults]
	default_realm = $REALM
	dns_lookup_realm = false
	dns_lookup_kdc = false
	rdns = false
	dns_canonicalize_hostname = false
[realms]
	$REALM = {
		kdc = $DC_IP
		admin_server = $DC_IP
	}
[domain_realm]
	.$DNSDOMAIN = $REALM
	$DNSDOMAIN = $REALM
EOF
  # The Samba client tools (smbclient, rpcclient, net, nmblookup) get -s this file.
  cat > "$dir/smb.conf" <<EOF
[global]
	workgroup = $DOMAIN
	realm = $REALM
	security = ads
	lock directory = $dir/lock
	state directory = $dir/state
	cache directory = $dir/cache
	private dir = $dir/private
	pid directory = $dir/run
	ncalrpc dir = $dir/ncalrpc
	log file = $dir/log/log.%m
	load printers = no
	printcap name = /dev/null
EOF
}
for host in client siteserver ws-anon ws-gssapi ws-tls ws-admin; do member_files "$host"; done
CLIENT_CONF="$LAB_TMP/client/smb.conf"
ADMIN_CONF="$LAB_TMP/ws-admin/smb.conf"

# Run one client step: on HOST, under a time limit, output to the log; a failing step is
# logged and the scenario carries on. Standard input is passed through (kinit's password).
# `step_expect HOST WHAT PATTERN cmd...` also wants PATTERN in the output (impacket's
# examples exit 0 after an error).
FAILED=()
step_expect() {
  local host="$1" what="$2" pattern="$3"; shift 3
  local rc=0 out="$LAB_TMP/step.out"
  lab_in "$host" env KRB5CCNAME="FILE:$LAB_TMP/$host/krb5cc" LDAPTLS_REQCERT=never \
    HOME="$LAB_TMP/$host" timeout "$T" "$@" >"$out" 2>&1 || rc=$?
  { printf '\n===== %s: %s (exit %s)\n' "$host" "$what" "$rc"; cat "$out"; } >>"$LAB_TMP/clients.log"
  if [ "$rc" -eq 0 ] && { [ -z "$pattern" ] || grep -q -- "$pattern" "$out"; }; then
    lab_log "ok: $host: $what"
  else
    lab_log "FAILED (exit $rc): $host: $what: $(tail -1 "$out")"
    FAILED+=("$host: $what")
  fi
}
step() { local host="$1" what="$2"; shift 2; step_expect "$host" "$what" "" "$@"; }

# --- the capture ----------------------------------------------------------------------------
lab_capture_start "$OUTDIR/ad.pcap"
capture_start=$(date +%s)

# Locating the domain: DNS SRV records, then the CLDAP netlogon ping, as a Windows client does.
step client "dig SRV _ldap._tcp" dig +time=3 +tries=2 @"$DC_IP" "_ldap._tcp.$DNSDOMAIN" SRV
step client "dig SRV _kerberos._tcp.dc._msdcs" dig +time=3 +tries=2 @"$DC_IP" \
  "_kerberos._tcp.dc._msdcs.$DNSDOMAIN" SRV
step client "host A $DC_FQDN" host -W 3 "$DC_FQDN" "$DC_IP"
step client "net ads lookup (CLDAP ping)" net ads lookup -S "$DC_FQDN" -s "$CLIENT_CONF"
step client "nmblookup DC (NetBIOS name query)" nmblookup -s "$CLIENT_CONF" -U "$DC_IP" DC
step client "nmblookup -A (NetBIOS node status)" nmblookup -s "$CLIENT_CONF" -A "$DC_IP"

# Kerberos: a TGT for the user, then a service ticket for the DC's file service.
step client "kinit $USER" kinit "$USER@$REALM" <<< "$USER_PASS"
step client "kvno cifs/$DC_FQDN" kvno "cifs/$DC_FQDN@$REALM"

# SMB: the share list with Kerberos, a share's listing with NTLM.
step client "smbclient -L with Kerberos" smbclient -s "$CLIENT_CONF" -L "//$DC_FQDN" \
  --use-kerberos=required --use-krb5-ccache="FILE:$LAB_TMP/client/krb5cc"
step client "smbclient //dc/netlogon with NTLM" smbclient -s "$CLIENT_CONF" "//$DC_FQDN/netlogon" \
  --use-kerberos=off -U "$DOMAIN\\$USER%$USER_PASS" -c ls
step client "rpcclient enumdomusers;srvinfo;lsaquery" rpcclient -s "$CLIENT_CONF" \
  --use-kerberos=off -U "$DOMAIN\\$USER%$USER_PASS" -c 'enumdomusers;srvinfo;lsaquery' "$DC_FQDN"

# LDAP from the workstation: LDAPS, and the planted cleartext simple binds (389 and the GC).
step client "ldapsearch simple bind (389, cleartext)" ldapsearch -x -LLL -H "ldap://$DC_FQDN" \
  -D "$USER@$DNSDOMAIN" -w "$USER_PASS" -b "$BASEDN" "(sAMAccountName=$USER)" cn memberOf
step client "ldapsearch simple bind (3268 global catalog, cleartext)" ldapsearch -x -LLL \
  -H "ldap://$DC_FQDN:3268" -D "$USER@$DNSDOMAIN" -w "$USER_PASS" -b "$BASEDN" \
  "(sAMAccountName=$USER)" cn
step client "ldapsearch LDAPS (636) + simple bind" ldapsearch -x -LLL -H "ldaps://$DC_FQDN" \
  -D "$USER@$DNSDOMAIN" -w "$USER_PASS" -b "$BASEDN" "(sAMAccountName=$USER)" cn

# One LDAP kind per workstation. ldapsearch -x without -D binds anonymously (simple, empty
# name and password); the address spares it a DNS lookup.
step ws-anon "ldapsearch anonymous rootDSE (389)" ldapsearch -x -LLL -H "ldap://$DC_IP" \
  -s base -b '' defaultNamingContext dnsHostName supportedSASLMechanisms
step ws-gssapi "kinit $USER" kinit "$USER@$REALM" <<< "$USER_PASS"
step ws-gssapi "ldapsearch SASL GSSAPI (sealed)" ldapsearch -Y GSSAPI -N -Q -LLL \
  -H "ldap://$DC_FQDN" -b "$BASEDN" "(sAMAccountName=$USER)" cn
step ws-tls "ldapsearch StartTLS + simple bind" ldapsearch -ZZ -x -LLL -H "ldap://$DC_FQDN" \
  -D "$USER@$DNSDOMAIN" -w "$USER_PASS" -b "$BASEDN" "(sAMAccountName=$USER)" cn

# The workstation lists the DC's endpoint map: impacket rpcdump walks it with ept_lookup
# (the only endpoint mapper flow of client, so that its answer can be told apart from the
# ept_map calls below). Samba ends the walk with ept_s_not_registered where Windows returns an
# empty last batch, and impacket 0.13.1 then drops what it read and says "No endpoints found";
# the full lookup answer is on the wire either way.
step_expect client "impacket rpcdump (135)" 'MS-DRSR\|ept_s_not_registered' "$VENV/python" \
  "$VENV/rpcdump.py" "$DOMAIN/$USER:$USER_PASS@$DC_IP"

# The administrator's workstation. impacket: LSA and SAM over named pipes, DRSUAPI replication.
step_expect ws-admin "impacket lookupsid (445, lsarpc)" "SidTypeUser" "$VENV/python" \
  "$VENV/lookupsid.py" "$DOMAIN/$USER:$USER_PASS@$DC_IP" 520
step_expect ws-admin "impacket samrdump (445, samr)" "Received" "$VENV/python" \
  "$VENV/samrdump.py" "$DOMAIN/$USER:$USER_PASS@$DC_IP"
# secretsdump maps DRSUAPI through the endpoint mapper, binds it on the dynamic port and calls
# DRSBind, DRSDomainControllerInfo and DRSCrackNames; impacket 0.13.1 then fails to read
# Samba's DRSCrackNames answer ("byte indices must be integers", fortra/impacket#991: DRSUAPI
# against Samba is untested). The exchange is on the wire all the same: success here is
# reaching DRSCrackNames.
step_expect ws-admin "impacket secretsdump DRSUAPI (domain admin)" "Calling DRSCrackNames" \
  "$VENV/python" "$VENV/secretsdump.py" -debug -just-dc-user krbtgt \
  "$DOMAIN/Administrator:$ADMIN_PASS@$DC_IP"
# Samba's own DRSUAPI client: a rootDSE read and a sealed GSS-SPNEGO bind on LDAP, the endpoint
# mapper, then DsReplicaGetInfo sealed on the dynamic port.
step_expect ws-admin "samba-tool drs showrepl (DRSUAPI)" "DSA object GUID" samba-tool drs showrepl \
  "$DC_FQDN" -s "$ADMIN_CONF" -U "$DOMAIN\\Administrator%$ADMIN_PASS"

# The second member: Kerberos, then computer objects over LDAP with GSSAPI (AD discovery).
step siteserver "kinit Administrator" kinit "Administrator@$REALM" <<< "$ADMIN_PASS"
step siteserver "ldapsearch SASL GSSAPI computers (sealed)" ldapsearch -Y GSSAPI -N -Q -LLL \
  -H "ldap://$DC_FQDN" -b "$BASEDN" "(objectClass=computer)" dNSHostName

[ -z "${LAB_HOLD:-}" ] || { lab_log "holding $LAB_HOLD s"; sleep "$LAB_HOLD"; }
lab_capture_stop
lab_log "captured for $(( $(date +%s) - capture_start )) s: $(stat -c %s "$OUTDIR/ad.pcap") bytes"
if [ ${#FAILED[@]} -gt 0 ]; then
  lab_log "${#FAILED[@]} client step(s) failed (see $LAB_TMP/clients.log):"
  printf '  %s\n' "${FAILED[@]}" >&2
  LAB_KEEP=1
  # Without the planted cleartext binds the recording misses its point.
  for failed in "${FAILED[@]}"; do
    case "$failed" in
      *cleartext*) lab_log "the planted problem was not recorded"; exit 1 ;;
    esac
  done
fi
