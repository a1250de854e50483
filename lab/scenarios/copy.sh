#!/usr/bin/env bash
# Scenario `copy`: a 100 MiB file copied from a distribution point's content share over SMB3,
# the yardstick of whole-conversation reading (byte counts right, memory bounded). Recorded
# afresh by CI (lab/record.sh) and never committed: the capture is about 110 MB.
#
#   dp (10.77.0.13)      smbd, standalone, signing disabled, SCCMContentLib$ on 445
#   client (10.77.1.21)  smbclient gets FileLib\big.bin (104,857,600 bytes), then puts a
#                        10 MiB file back, in one session
#
# Usage (normally through lab/record.sh): LAB_SCENARIO=copy bash lab/scenarios/copy.sh OUTDIR
set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "$0")/../lib.sh"
OUTDIR="$(lab_outdir "${1:-}")"

DP="$(lab_addr dp)"
USER_NAME=cmadmin
USER_PASS='Lab-Passw0rd!'
USER_UID=1501
chmod 0755 "$LAB_TMP"

lab_host dp
lab_host client
lab_names dp client
{ cat /etc/passwd; echo "$USER_NAME:x:$USER_UID:$USER_UID:ConfigMgr lab account:/nonexistent:/usr/sbin/nologin"; } | lab_etc dp passwd
{ cat /etc/group; echo "$USER_NAME:x:$USER_UID:"; } | lab_etc dp group

DPD="$LAB_TMP/dp"
lab_smbd_conf "$DPD" DP01 "$DP" "445" disabled SMB2_02
mkdir -p "$DPD/share/SCCMContentLib/FileLib"
head -c 104857600 /dev/urandom > "$DPD/share/SCCMContentLib/FileLib/big.bin"
chown -R "$USER_UID:$USER_UID" "$DPD/share"
chmod -R a+rwX "$DPD/share"
cat >> "$DPD/smb.conf" <<EOF

[SCCMContentLib\$]
	comment = Configuration Manager content library
	path = $DPD/share/SCCMContentLib
	read only = no
EOF
CLD="$LAB_TMP/smbclient"
lab_smbclient_conf "$CLD"
head -c 10485760 /dev/urandom > "$LAB_TMP/up.bin"

printf '%s\n%s\n' "$USER_PASS" "$USER_PASS" \
  | lab_in dp timeout 20 pdbedit -s "$DPD/smb.conf" -t -a -u "$USER_NAME" >"$DPD/log/pdbedit.log" 2>&1 \
  || { lab_log "pdbedit failed: $(cat "$DPD/log/pdbedit.log")"; exit 1; }
lab_in dp setsid smbd --foreground --no-process-group -s "$DPD/smb.conf" >"$DPD/log/smbd.out" 2>&1 </dev/null &
lab_wait_port dp 445 30 || { lab_log "smbd on dp: $(tail -n 20 "$DPD/log/smbd.out" 2>/dev/null)"; exit 1; }

lab_capture_start "$OUTDIR/copy.pcap"
lab_log "client -> dp:445 gets 100 MiB and puts 10 MiB (SMB3)"
lab_in client timeout 120 smbclient -s "$CLD/smb.conf" --use-kerberos=off \
  -U "LAB\\$USER_NAME%$USER_PASS" "//$DP/SCCMContentLib\$" \
  -c "cd FileLib; get big.bin $LAB_TMP/got.bin; put $LAB_TMP/up.bin up.bin" >>"$LAB_TMP/clients.log" 2>&1 \
  || { lab_log "smbclient failed"; tail -n 20 "$LAB_TMP/clients.log" >&2; exit 1; }
lab_capture_stop
cmp -s "$LAB_TMP/got.bin" "$DPD/share/SCCMContentLib/FileLib/big.bin" || { lab_log "the copy differs"; exit 1; }
cmp -s "$LAB_TMP/up.bin" "$DPD/share/SCCMContentLib/FileLib/up.bin" || { lab_log "the upload differs"; exit 1; }
lab_log "recorded $OUTDIR/copy.pcap"
