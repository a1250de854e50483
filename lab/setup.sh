#!/usr/bin/env bash
# Install the lab's real software: Debian's Samba, MIT Kerberos, OpenLDAP clients, nginx,
# OpenSSL, dnsmasq, tftpd-hpa/tftp-hpa, ISC dhclient, wakeonlan, socat, curl and tcpdump, and
# impacket (PyPI) in a virtual environment of its own (LAB_VENV, default lab/.venv), so that
# the project's own environment never depends on it.
set -euo pipefail
cd "$(dirname "$0")"
# samba-ad-provision: the AD schema files samba-tool domain provision reads (only recommended
# by samba-ad-dc, and --no-install-recommends leaves it out; a Debian 12 update moved them there).
packages=(samba samba-ad-dc samba-ad-provision samba-dsdb-modules samba-vfs-modules smbclient
          winbind krb5-user ldap-utils nginx-light openssl dnsmasq-base tftpd-hpa tftp-hpa isc-dhcp-client
          wakeonlan socat curl tcpdump iproute2 dnsutils libsasl2-modules-gssapi-mit)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts no daemon in a container, but stop any the packages started on a full system:
# the lab runs its own instances inside its namespaces.
for svc in smbd nmbd samba-ad-dc winbind nginx tftpd-hpa dnsmasq; do
  service "$svc" stop >/dev/null 2>&1 || true
done
LAB_VENV="${LAB_VENV:-$PWD/.venv}"
if [ ! -x "$LAB_VENV/bin/python" ] || ! "$LAB_VENV/bin/python" -c 'import impacket' 2>/dev/null; then
  python3 -m venv "$LAB_VENV"
  "$LAB_VENV/bin/pip" install -q impacket==0.13.1
fi
