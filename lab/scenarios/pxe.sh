#!/usr/bin/env bash
# Scenario pxe: a distribution point configured for PXE, and the other traffic of OS deployment.
#
#   dp (10.77.0.13)      dnsmasq as DHCP server only (no DNS: --port=0, no TFTP of its own)
#                        leasing 10.77.1.100-10.77.1.150 (/16); a client whose vendor class
#                        starts "PXEClient" gets the boot file smsboot/x64/wdsnbp.com on
#                        next-server 10.77.0.13. tftpd-hpa (in.tftpd) serves that file (a 40 KiB
#                        dummy: 80 blocks of 512 octets). socat sends a few datagrams to
#                        239.77.0.1:63500 -- the ADDRESSING of WDS multicast (group, port in
#                        63000-64000, sent by the DP); the bytes are NOT WDS's multicast protocol
#                        (Debian has no WDS multicast server), only a marker text.
#   pxeclient (none)     a bare machine booting from the network: ISC dhclient once with vendor
#                        class "PXEClient:Arch:00007:UNDI:003016" and PXE options 93/94/97, then
#                        tftp-hpa reads the boot file. Like a PXE ROM it never releases its lease.
#   pxeclient2 (none)    an ordinary machine: plain ISC dhclient, no vendor class, no PXE option
#                        (dnsmasq answers without a boot file), then dhclient -r (DHCPRELEASE).
#                        Only this scenario has it (it is not in hosts.tsv).
#   siteserver (10.77.0.10)  Wake-on-LAN magic packets (Debian's wakeonlan) for the client's MAC
#                        to the directed broadcast 10.77.255.255, UDP 9 and UDP 7.
#   client (10.77.1.21)  the machine woken: its MAC is set to 02:00:00:00:01:21 (it sends nothing).
#
# MACs are fixed and dnsmasq reserves an address of its range for each booting machine
# (pxeclient -> 10.77.1.100, pxeclient2 -> 10.77.1.101) so that the expectations can name the
# leased addresses; they are still leases of the range, handed out by DHCP.
#
#   LAB_SCENARIO=pxe bash lab/scenarios/pxe.sh OUTDIR   -> OUTDIR/pxe.pcap
set -euo pipefail
# shellcheck source=../lib.sh
source "$(cd "$(dirname "$0")/.." && pwd)/lib.sh"
OUTDIR="$(lab_outdir "${1:-}")"

DP=10.77.0.13
BOOT_FILE=smsboot/x64/wdsnbp.com
PXE_MAC=02:00:00:00:01:64
PXE_ADDR=10.77.1.100
PLAIN_MAC=02:00:00:00:01:65
PLAIN_ADDR=10.77.1.101
CLIENT_MAC=02:00:00:00:01:21
GROUP=239.77.0.1
GROUP_PORT=63500

lab_host dp
lab_host siteserver
lab_host client
lab_host pxeclient none
lab_host pxeclient2 none
ip -n "$(lab_ns client)" link set eth0 address "$CLIENT_MAC"
ip -n "$(lab_ns pxeclient)" link set eth0 address "$PXE_MAC"
ip -n "$(lab_ns pxeclient2)" link set eth0 address "$PLAIN_MAC"
# IPv4 only: no IPv6 link-local chatter (MLD, DAD) whose timing would differ from run to run.
for host in dp siteserver client pxeclient pxeclient2; do
  lab_in "$host" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.eth0.disable_ipv6=1
done
ip netns exec "$LAB_SWITCH" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.br0.disable_ipv6=1

# --- the boot file: a dummy, 40 KiB so the transfer has many blocks ---------------------------
root="$LAB_TMP/tftproot"
mkdir -p "$root/$(dirname "$BOOT_FILE")"
{
  printf 'flowaudit lab: a stand-in for wdsnbp.com (not Microsoft'"'"'s boot program)\n'
  head -c 40896 /dev/urandom
} > "$root/$BOOT_FILE"
chmod -R a+rX "$root"

# --- servers on the DP -------------------------------------------------------------------------
# tftpd-hpa in the foreground, chrooted to the root, on the DP's address only. It answers each
# request from a new port (RFC 1350 4).
lab_in dp timeout 120 in.tftpd -L -v -s "$root" -a "$DP:69" >"$LAB_TMP/tftpd.log" 2>&1 &

# dnsmasq: DHCP only. --dhcp-vendorclass tags a client whose option 60 starts "PXEClient"; only
# tagged clients get the boot file (option 67 when asked for it, else the file field). dnsmasq
# puts its own address in siaddr (next-server) of every reply, PXE or not. It answers a client
# without the broadcast flag (ISC dhclient never sets it) by unicast to the offered address.
lab_in dp timeout 120 dnsmasq --keep-in-foreground --conf-file=/dev/null --port=0 \
  --interface=eth0 --bind-interfaces \
  --pid-file="$LAB_TMP/dnsmasq.pid" --dhcp-leasefile="$LAB_TMP/dnsmasq.leases" \
  --log-facility="$LAB_TMP/dnsmasq.log" --log-dhcp \
  --dhcp-authoritative \
  --dhcp-range=10.77.1.100,10.77.1.150,255.255.0.0,10m \
  --dhcp-host="$PXE_MAC,$PXE_ADDR" --dhcp-host="$PLAIN_MAC,$PLAIN_ADDR" \
  --dhcp-vendorclass=set:pxe,PXEClient \
  --dhcp-boot=tag:pxe,"$BOOT_FILE",,"$DP" \
  >"$LAB_TMP/dnsmasq.out" 2>&1 &
dnsmasq_job=$!

wait_udp() {  # wait_udp HOST PORT SECONDS: until something is bound to that UDP port
  local i
  for i in $(seq 1 $(( $3 * 10 ))); do
    lab_in "$1" ss -lunH "sport = :$2" | grep -q . && return 0
    sleep 0.1
  done
  return 1
}
if ! wait_udp dp 67 10; then
  lab_log "dnsmasq did not start: $(cat "$LAB_TMP/dnsmasq.out" "$LAB_TMP/dnsmasq.log" 2>/dev/null)"
  exit 1
fi
kill -0 "$dnsmasq_job" 2>/dev/null || { lab_log "dnsmasq exited"; exit 1; }
if ! wait_udp dp 69 10; then
  lab_log "in.tftpd did not start: $(cat "$LAB_TMP/tftpd.log")"
  exit 1
fi

# --- the DHCP clients' files -------------------------------------------------------------------
# dhclient's script: apply the address and nothing else (no routes, no resolv.conf: the lab has
# no way out). Debian's dhclient-script would also work but rewrites /etc/resolv.conf.
cat > "$LAB_TMP/dhclient-script" <<'EOF'
#!/bin/sh
case "$reason" in
  PREINIT) ip link set dev "$interface" up ;;
  BOUND|RENEW|REBIND|REBOOT)
    ip addr replace "$new_ip_address/16" dev "$interface" ;;
  EXPIRE|FAIL|RELEASE|STOP)
    [ -n "${old_ip_address:-}" ] && ip addr del "$old_ip_address/16" dev "$interface" 2>/dev/null ;;
esac
exit 0
EOF
chmod 755 "$LAB_TMP/dhclient-script"

# A PXE ROM: vendor class PXEClient:Arch:00007 (EFI x64) UNDI 3.16, and RFC 4578 options
# 93 (architecture 7), 94 (UNDI 1, 3.16) and 97 (type 0 + machine UUID); it asks for 66 and 67.
cat > "$LAB_TMP/pxe-dhclient.conf" <<'EOF'
option pxe-client-arch code 93 = unsigned integer 16;
option pxe-client-ndi code 94 = { unsigned integer 8, unsigned integer 8, unsigned integer 8 };
option pxe-client-uuid code 97 = string;
send vendor-class-identifier "PXEClient:Arch:00007:UNDI:003016";
send pxe-client-arch 7;
send pxe-client-ndi 1 3 16;
send pxe-client-uuid 00:4c:41:42:00:00:00:00:00:00:00:00:00:00:00:01:64;
request subnet-mask, broadcast-address, routers, tftp-server-name, bootfile-name;
timeout 20;
retry 1;
EOF
# An ordinary machine: no vendor class, no PXE option, nothing about booting.
cat > "$LAB_TMP/plain-dhclient.conf" <<'EOF'
request subnet-mask, broadcast-address, routers, domain-name-servers;
timeout 20;
retry 1;
EOF

dhclient_in() {  # dhclient_in HOST CONF [dhclient options...]: dhclient on HOST's eth0
  local host="$1" conf="$2"; shift 2
  lab_in "$host" timeout 30 dhclient -4 -v -cf "$conf" -lf "$LAB_TMP/$host.leases" \
    -pf "$LAB_TMP/$host.pid" -sf "$LAB_TMP/dhclient-script" "$@" eth0
}
has_addr() { lab_in "$1" ip -4 -o addr show dev eth0 | grep -q "inet $2/"; }

# --- record ------------------------------------------------------------------------------------
lab_capture_start "$OUTDIR/pxe.pcap"

# 1. PXE boot: DHCP with the PXE vendor class, then the boot file over TFTP.
dhclient_in pxeclient "$LAB_TMP/pxe-dhclient.conf" -1 2>"$LAB_TMP/pxeclient.dhclient.log" || {
  lab_log "PXE dhclient failed: $(cat "$LAB_TMP/pxeclient.dhclient.log")"; exit 1; }
has_addr pxeclient "$PXE_ADDR" || { lab_log "pxeclient has no lease: $(cat "$LAB_TMP/pxeclient.dhclient.log")"; exit 1; }
( cd "$LAB_TMP" && lab_in pxeclient timeout 20 tftp "$DP" -m binary -c get "$BOOT_FILE" "$LAB_TMP/got.com" )
cmp -s "$root/$BOOT_FILE" "$LAB_TMP/got.com" || { lab_log "TFTP transfer differs"; exit 1; }

# 2. An ordinary DHCP exchange (no PXE), then a release.
dhclient_in pxeclient2 "$LAB_TMP/plain-dhclient.conf" -1 2>"$LAB_TMP/pxeclient2.dhclient.log" || {
  lab_log "plain dhclient failed: $(cat "$LAB_TMP/pxeclient2.dhclient.log")"; exit 1; }
has_addr pxeclient2 "$PLAIN_ADDR" || { lab_log "pxeclient2 has no lease: $(cat "$LAB_TMP/pxeclient2.dhclient.log")"; exit 1; }
sleep 0.5
dhclient_in pxeclient2 "$LAB_TMP/plain-dhclient.conf" -r 2>>"$LAB_TMP/pxeclient2.dhclient.log" || true

# 3. Wake-on-LAN from the site server: the subnet-directed broadcast, UDP 9 then UDP 7.
lab_in siteserver timeout 10 wakeonlan -i 10.77.255.255 -p 9 "$CLIENT_MAC" >/dev/null
lab_in siteserver timeout 10 wakeonlan -i 10.77.255.255 -p 7 "$CLIENT_MAC" >/dev/null

# 4. WDS-style multicast addressing from the DP: five datagrams of 1400 octets to 239.77.0.1:63500.
#    The payload is a marker text, not the WDS multicast protocol.
for i in 1 2 3 4 5; do
  printf '%-1399s\n' "flowaudit lab: WDS-style multicast addressing only, not WDS bytes; datagram $i"
done > "$LAB_TMP/multicast.bin"
lab_in dp timeout 10 socat -u -b 1400 OPEN:"$LAB_TMP/multicast.bin" \
  "UDP4-DATAGRAM:$GROUP:$GROUP_PORT,ip-multicast-if=$DP,ip-multicast-ttl=1"

sleep 0.5
lab_capture_stop
lab_log "leases: $(tr '\n' ';' < "$LAB_TMP/dnsmasq.leases" 2>/dev/null)"
lab_down
rm -rf "$LAB_TMP"
