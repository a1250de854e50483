# shellcheck shell=bash
# The lab's plumbing: one switch namespace holding a Linux bridge, one namespace per host wired
# to it by a veth pair, tcpdump on the bridge. Every scenario script sources this file and
# builds its own namespaces, prefixed with the scenario's name, so that scenarios never share
# state and can run one after another (or side by side) on one machine.
#
# Traffic stays inside the namespaces this file creates: no namespace has a route out, and the
# root namespace's interfaces are never touched. Addresses are the lab's own (lab/hosts.tsv).
set -euo pipefail

LAB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LAB_PREFIX="${LAB_PREFIX:-fa}"
LAB_SCENARIO="${LAB_SCENARIO:?set LAB_SCENARIO before sourcing lab/lib.sh}"
LAB_SWITCH="${LAB_PREFIX}-${LAB_SCENARIO}-sw"
LAB_TMP="${LAB_TMP:-$(mktemp -d "/tmp/flowaudit-lab-${LAB_SCENARIO}.XXXXXX")}"
LAB_HOSTS=()
LAB_TCPDUMP_PID=""

lab_log() { printf '[lab %s] %s\n' "$LAB_SCENARIO" "$*" >&2; }

# The address of a lab host by name (lab/hosts.tsv: name, address, what it plays).
lab_addr() {
  awk -v name="$1" '$1 == name { print $2; found = 1 } END { exit !found }' "$LAB_DIR/hosts.tsv"
}

lab_ns() { printf '%s-%s-%s' "$LAB_PREFIX" "$LAB_SCENARIO" "$1"; }

# Run a command inside host NAME's namespace: lab_in NAME cmd args...
lab_in() {
  local name="$1"; shift
  ip netns exec "$(lab_ns "$name")" "$@"
}

lab_switch_up() {
  ip netns add "$LAB_SWITCH"
  ip -n "$LAB_SWITCH" link set lo up
  ip -n "$LAB_SWITCH" link add br0 type bridge
  # No spanning tree and no forwarding delay: a port forwards as soon as it is up.
  ip -n "$LAB_SWITCH" link set br0 type bridge stp_state 0 forward_delay 0
  ip -n "$LAB_SWITCH" link set br0 up
  # Let multicast through without IGMP snooping deciding who gets it.
  echo 0 | ip netns exec "$LAB_SWITCH" tee /sys/class/net/br0/bridge/multicast_snooping >/dev/null || true
}

# Create host NAME with its address from hosts.tsv (or ADDR if given, "none" for no address,
# as a DHCP client before its lease), plugged into the switch.
lab_host() {
  local name="$1" addr="${2:-}"
  local ns; ns="$(lab_ns "$name")"
  [ -n "$addr" ] || addr="$(lab_addr "$name")"
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  local short="v${#LAB_HOSTS[@]}${LAB_SCENARIO:0:6}"
  ip link add "${short}h" type veth peer name "${short}s"
  ip link set "${short}h" netns "$ns"
  ip link set "${short}s" netns "$LAB_SWITCH"
  ip -n "$ns" link set "${short}h" name eth0
  ip -n "$LAB_SWITCH" link set "${short}s" master br0
  ip -n "$LAB_SWITCH" link set "${short}s" up
  ip -n "$ns" link set eth0 up
  if [ "$addr" != none ]; then
    ip -n "$ns" addr add "$addr/16" dev eth0
  fi
  # Multicast goes out of eth0 (WDS-style multicast, SSDP, mDNS, ...); there is no other route.
  ip -n "$ns" route add 224.0.0.0/4 dev eth0 2>/dev/null || true
  # Per-host files under /etc/netns/<ns>/ are bind-mounted over /etc by `ip netns exec`.
  mkdir -p "/etc/netns/$ns"
  LAB_HOSTS+=("$name")
}

# Give host NAME its own /etc file: lab_etc NAME resolv.conf <<< "nameserver ..."
lab_etc() {
  local ns; ns="$(lab_ns "$1")"
  cat > "/etc/netns/$ns/$2"
}

# Give each named host a hosts file naming all of them (NAME.lab.flowaudit.test NAME) and a
# resolver on loopback where nothing listens: names resolve inside the lab, nothing leaves it.
# lab_names HOST...
lab_names() {
  local h n
  for h in "$@"; do
    lab_etc "$h" resolv.conf <<< "nameserver 127.0.0.1"
    {
      printf '127.0.0.1\tlocalhost\n'
      for n in "$@"; do printf '%s\t%s.lab.flowaudit.test %s\n' "$(lab_addr "$n")" "$n" "$n"; done
    } | lab_etc "$h" hosts
  done
}

# Start recording everything on the bridge into FILE (pcap, full packets).
lab_capture_start() {
  local file="$1"
  rm -f "$file"
  ip netns exec "$LAB_SWITCH" tcpdump -i br0 --immediate-mode -U -B 262144 -Z root -n -s 0 -w "$file" >"$LAB_TMP/tcpdump.log" 2>&1 &
  LAB_TCPDUMP_PID=$!
  local i
  for i in $(seq 1 50); do
    grep -q "listening on" "$LAB_TMP/tcpdump.log" 2>/dev/null && return 0
    sleep 0.1
  done
  lab_log "tcpdump did not start: $(cat "$LAB_TMP/tcpdump.log")"
  return 1
}

lab_capture_stop() {
  if [ -n "$LAB_TCPDUMP_PID" ]; then
    sleep 0.5
    kill -INT "$LAB_TCPDUMP_PID" 2>/dev/null || true
    wait "$LAB_TCPDUMP_PID" 2>/dev/null || true
    LAB_TCPDUMP_PID=""
  fi
}

# Wait until a TCP port listens inside host NAME: lab_wait_port NAME PORT [SECONDS]
lab_wait_port() {
  local name="$1" port="$2" limit="${3:-30}" i
  for i in $(seq 1 $((limit * 10))); do
    if lab_in "$name" ss -ltnH "sport = :$port" | grep -q .; then return 0; fi
    sleep 0.1
  done
  lab_log "nothing listens on $name:$port after ${limit}s"
  return 1
}

# Tear everything down: every process in the scenario's namespaces, the namespaces, their /etc.
lab_down() {
  lab_capture_stop
  local ns name pid
  for name in "${LAB_HOSTS[@]}" ; do
    ns="$(lab_ns "$name")"
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
  done
  sleep 0.3
  for name in "${LAB_HOSTS[@]}" ; do
    ns="$(lab_ns "$name")"
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "/etc/netns/$ns"
  done
  ip netns del "$LAB_SWITCH" 2>/dev/null || true
  LAB_HOSTS=()
}

# Remove what an earlier, interrupted run of this scenario left behind.
lab_clean_stale() {
  local ns
  for ns in $(ip netns list | awk '{print $1}' | grep "^${LAB_PREFIX}-${LAB_SCENARIO}-" || true); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "/etc/netns/$ns"
  done
}

# The scenario's output directory (its first argument), created, as an absolute path:
#   OUTDIR="$(lab_outdir "${1:-}")"
lab_outdir() {
  local dir="${1:?usage: LAB_SCENARIO=$LAB_SCENARIO bash lab/scenarios/$LAB_SCENARIO.sh OUTDIR}"
  mkdir -p "$dir" && (cd "$dir" && pwd)
}

# On exit the namespaces go; so does $LAB_TMP, unless the run failed (its logs tell why) or
# LAB_KEEP is set.
lab_exit() {
  local rc=$?
  lab_down
  if [ "$rc" -eq 0 ] && [ -z "${LAB_KEEP:-}" ]; then
    rm -rf "$LAB_TMP"
  else
    lab_log "state and logs kept in $LAB_TMP"
  fi
}

lab_clean_stale
trap lab_exit EXIT
lab_switch_up

# smb.conf for one standalone smbd (dp, copy): all state under DIR.
#   lab_smbd_conf DIR NETBIOSNAME ADDR PORTS SIGNING MINPROTO
lab_smbd_conf() {
  local dir="$1" name="$2" addr="$3" ports="$4" signing="$5" minproto="$6"
  mkdir -p "$dir"/{private,lock,state,cache,pid,log,ncalrpc,bind-dns}
  chmod 0700 "$dir/private"
  cat > "$dir/smb.conf" <<EOF
[global]
	netbios name = $name
	workgroup = LAB
	server string = $name
	server role = standalone server
	security = user
	passdb backend = tdbsam:$dir/private/passdb.tdb
	private dir = $dir/private
	lock directory = $dir/lock
	state directory = $dir/state
	cache directory = $dir/cache
	pid directory = $dir/pid
	ncalrpc dir = $dir/ncalrpc
	binddns dir = $dir/bind-dns
	usershare path =
	log file = $dir/log/log.%m
	log level = 1
	max log size = 0
	interfaces = $addr/16
	bind interfaces only = yes
	smb ports = $ports
	disable netbios = no
	server min protocol = $minproto
	server signing = $signing
	map to guest = never
	restrict anonymous = 0
	load printers = no
	printing = bsd
	printcap name = /dev/null
	disable spoolss = yes
	host msdfs = no
	dns proxy = no
	smb encrypt = default
EOF
}

# The client side (lab_smbclient_conf DIR): smbclient reads this instead of /etc/samba/smb.conf, and keeps its caches here.
lab_smbclient_conf() {
  local dir="$1"
  mkdir -p "$dir"/{private,lock,state,cache,ncalrpc}
  cat > "$dir/smb.conf" <<EOF
[global]
	workgroup = LAB
	private dir = $dir/private
	lock directory = $dir/lock
	state directory = $dir/state
	cache directory = $dir/cache
	ncalrpc dir = $dir/ncalrpc
	usershare path =
	name resolve order = host
	client min protocol = SMB2_02
	client max protocol = SMB3
EOF
}
