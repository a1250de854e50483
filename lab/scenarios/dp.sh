#!/usr/bin/env bash
# Scenario `dp`: a Samba file server plays a ConfigMgr distribution point.
#
#   dp (10.77.0.13)          smbd, standalone, SMB1 allowed (server min protocol = NT1), signing
#                            disabled, listening on 445 (direct TCP), 139 (NetBIOS session
#                            service) and 8445; shares SCCMContentLib$, SMS_DP$, SMS_DP_SMSPKG$.
#   siteserver (10.77.0.10)  smbd with one share (SMS_LAB), signing mandatory: the target of the
#                            DP's wrong-direction connection.
#   client (10.77.1.21)      smbclient.
#
# What the clients do (in this order; client ports are pinned through the namespace's
# ip_local_port_range so that the expectations can tell flows to the same port apart):
#   1. siteserver -> dp:445   SMB2/3, puts a content file into SCCMContentLib$ (content copy)
#   2. siteserver -> dp:8445  SMB2/3 on a non-standard port, lists SMS_DP$
#   3. client -> dp:445       (client port 40020) smbclient -L: the share list over IPC$
#   4. client -> dp:445       (client port 40022) SMB2/3, lists and gets a file from SCCMContentLib$
#   5. client -> dp:445       (client port 40030) SMB1 forced (NT1 only), lists SMS_DP$
#   6. client -> dp:139       (client port 40138) NetBIOS session service, lists SMS_DP_SMSPKG$
#   7. dp -> siteserver:445   the DP starts SMB to the site server and puts a status file
#
# Usage (normally through lab/record.sh): LAB_SCENARIO=dp bash lab/scenarios/dp.sh OUTDIR
set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "$0")/../lib.sh"
OUTDIR="$(lab_outdir "${1:-}")"

DP="$(lab_addr dp)"
SS="$(lab_addr siteserver)"
USER_NAME=cmadmin
USER_PASS='Lab-Passw0rd!'
USER_UID=1501

# The lab's temporary directory is mktemp's 0700; smbd serves files as cmadmin, who must reach
# the share directories below it.
chmod 0755 "$LAB_TMP"

lab_host dp
lab_host siteserver
lab_host client

# Each host resolves nothing outside the lab (lab_names). dp and siteserver also get a passwd
# and group file with the SMB account, so that no account is added to the machine's own files.
lab_names dp siteserver client
for h in dp siteserver; do
  { cat /etc/passwd; echo "$USER_NAME:x:$USER_UID:$USER_UID:ConfigMgr lab account:/nonexistent:/usr/sbin/nologin"; } | lab_etc "$h" passwd
  { cat /etc/group; echo "$USER_NAME:x:$USER_UID:"; } | lab_etc "$h" group
done

# --- the distribution point -----------------------------------------------------------------
DPD="$LAB_TMP/dp"
lab_smbd_conf "$DPD" DP01 "$DP" "445 139 8445" disabled NT1
mkdir -p "$DPD/share/SCCMContentLib/DataLib" "$DPD/share/SCCMContentLib/FileLib/0A1B" \
         "$DPD/share/SCCMContentLib/PkgLib" "$DPD/share/SMS_DP" "$DPD/share/SMSPKG/LAB00002"
printf '[Packages]\nLAB00001=\n' > "$DPD/share/SCCMContentLib/PkgLib/LAB00001.INI"
head -c 4096 /dev/urandom > "$DPD/share/SCCMContentLib/FileLib/0A1B/0A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F9"
printf '[File]\nSize=4096\n' > "$DPD/share/SCCMContentLib/FileLib/0A1B/0A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F9.INI"
printf 'DP role files\n' > "$DPD/share/SMS_DP/smsdpmon.txt"
printf 'echo install\n' > "$DPD/share/SMSPKG/LAB00002/install.cmd"
chown -R "$USER_UID:$USER_UID" "$DPD/share"
chmod -R a+rX "$DPD/share"
cat >> "$DPD/smb.conf" <<EOF

[SCCMContentLib\$]
	comment = Configuration Manager content library
	path = $DPD/share/SCCMContentLib
	read only = no
	browseable = yes

[SMS_DP\$]
	comment = ConfigMgr Site Server DP share
	path = $DPD/share/SMS_DP
	read only = yes
	browseable = yes

[SMS_DP_SMSPKG\$]
	comment = Configuration Manager package share
	path = $DPD/share/SMSPKG
	read only = yes
	browseable = yes
EOF

# --- the site server's own file server (the DP's wrong-direction target) ----------------------
SSD="$LAB_TMP/siteserver"
lab_smbd_conf "$SSD" SITESERVER "$SS" "445" mandatory SMB2_02
mkdir -p "$SSD/share/SMS_LAB/inboxes/statmgr.box"
chown -R "$USER_UID:$USER_UID" "$SSD/share"
chmod -R a+rX "$SSD/share"
cat >> "$SSD/smb.conf" <<EOF

[SMS_LAB]
	comment = ConfigMgr site share
	path = $SSD/share/SMS_LAB
	read only = no
EOF

CLD="$LAB_TMP/smbclient"
lab_smbclient_conf "$CLD"
printf '[Package]\nPackageID=LAB00003\n' > "$LAB_TMP/LAB00003.INI"
printf 'status message from DP01\n' > "$LAB_TMP/dp01.svf"

# The SMB account, in each server's own passdb (pdbedit reads the namespace's passwd file).
for h in dp siteserver; do
  d="$LAB_TMP/$h"
  printf '%s\n%s\n' "$USER_PASS" "$USER_PASS" \
    | lab_in "$h" timeout 20 pdbedit -s "$d/smb.conf" -t -a -u "$USER_NAME" >"$d/log/pdbedit.log" 2>&1 \
    || { lab_log "pdbedit failed on $h: $(cat "$d/log/pdbedit.log")"; exit 1; }
done

for h in dp siteserver; do
  d="$LAB_TMP/$h"
  # In a session of its own: smbd signals its whole process group when it stops.
  lab_in "$h" setsid smbd --foreground --no-process-group -s "$d/smb.conf" >"$d/log/smbd.out" 2>&1 </dev/null &
done
for port in 445 139 8445; do
  lab_wait_port dp "$port" 30 || { lab_log "smbd on dp: $(tail -n 20 "$DPD/log/smbd.out" "$DPD"/log/log.smbd 2>/dev/null)"; exit 1; }
done
lab_wait_port siteserver 445 30 || { lab_log "smbd on siteserver: $(tail -n 20 "$SSD/log/smbd.out" 2>/dev/null)"; exit 1; }

# smbclient run in host H with the lab's client config: smb H [smbclient args...]
smb() {
  local h="$1"; shift
  lab_in "$h" timeout 20 smbclient -s "$CLD/smb.conf" --use-kerberos=off \
    -U "LAB\\$USER_NAME%$USER_PASS" "$@"
}
# Pin the next connection's client port inside host H: pin H PORT (even: connect() takes the
# even ports of the range first, so PORT is the one it gets)
pin() { lab_in "$1" sysctl -q -w net.ipv4.ip_local_port_range="$2 $(( $2 + 1 ))"; }
unpin() { lab_in "$1" sysctl -q -w net.ipv4.ip_local_port_range="32768 60999"; }
# Every client step must succeed: a scenario that silently records nothing is worse than none.
step() { lab_log "$1"; shift; "$@" >>"$LAB_TMP/clients.log" 2>&1 || { lab_log "failed: $*"; tail -n 20 "$LAB_TMP/clients.log" >&2; exit 1; }; }

lab_capture_start "$OUTDIR/dp.pcap"

step "siteserver -> dp:445 copies content into SCCMContentLib\$" \
  smb siteserver "//$DP/SCCMContentLib\$" -c "cd PkgLib; put $LAB_TMP/LAB00003.INI LAB00003.INI; ls"
step "siteserver -> dp:8445 lists SMS_DP\$ (SMB on a non-standard port)" \
  smb siteserver "//$DP/SMS_DP\$" -p 8445 -c "ls"
pin client 40020
step "client -> dp:445 lists the shares (SMB2/3)" \
  smb client -L "//$DP" -p 445
pin client 40022
step "client -> dp:445 gets a file from SCCMContentLib\$ (SMB2/3)" \
  smb client "//$DP/SCCMContentLib\$" -p 445 -c "ls; cd FileLib\\0A1B; get 0A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F9.INI $LAB_TMP/got.ini"
pin client 40030
step "client -> dp:445 with SMB1 forced" \
  smb client "//$DP/SMS_DP\$" -p 445 --option='client min protocol=NT1' --option='client max protocol=NT1' -c "ls"
pin client 40138
step "client -> dp:139 (NetBIOS session service)" \
  smb client "//$DP/SMS_DP_SMSPKG\$" -p 139 -c "ls; cd LAB00002; ls"
unpin client
step "dp -> siteserver:445 puts a status file (a DP starting SMB to the site server)" \
  smb dp "//$SS/SMS_LAB" -p 445 -c "cd inboxes\\statmgr.box; put $LAB_TMP/dp01.svf dp01.svf"

lab_capture_stop
cmp -s "$LAB_TMP/got.ini" "$DPD/share/SCCMContentLib/FileLib/0A1B/0A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F9.INI" \
  || { lab_log "the file got from SCCMContentLib\$ differs from the one served"; exit 1; }
[ -f "$SSD/share/SMS_LAB/inboxes/statmgr.box/dp01.svf" ] || { lab_log "the DP's status file did not arrive"; exit 1; }
lab_log "recorded $OUTDIR/dp.pcap"
