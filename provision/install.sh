#!/usr/bin/env bash
# Installs isync on a Debian or Raspberry Pi OS system: binary, systemd units,
# the isync system user, a default configuration (kept if one exists), and with
# --appliance the first-boot service of the SD-card image.
#
#   sudo provision/install.sh --binary PATH [--root DIR] [--appliance] [--no-start]
#
# --root DIR installs into a mounted or unpacked root file system instead of the
# running system (used by `make image` and `make image-rpios`); nothing is started
# then, and units are enabled offline. Run it from a checkout or an unpacked
# release: it takes the units from ../systemd next to this script.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
units_src=$here/../systemd
docs_src=$here/../docs/appliance.md

root=""
binary=""
appliance=0
start=1
while [ $# -gt 0 ]; do
	case "$1" in
	--root) root=$(cd "$2" && pwd); shift 2 ;;
	--binary) binary=$2; shift 2 ;;
	--appliance) appliance=1; shift ;;
	--no-start) start=0; shift ;;
	-h | --help) sed -n '2,12p' "$0"; exit 0 ;;
	*) echo "install.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
	esac
done
[ -n "$binary" ] || { echo "install.sh: --binary PATH is required (e.g. target/aarch64-unknown-linux-gnu/release/isync)" >&2; exit 2; }
[ -x "$binary" ] || { echo "install.sh: $binary is not an executable file" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "install.sh: run as root (sudo)" >&2; exit 1; }
[ -z "$root" ] || start=0

unit_dir=$root/usr/local/lib/systemd/system
say() { echo "install.sh: $*"; }

install -D -m 0755 "$binary" "$root/usr/local/bin/isync"
install -d "$unit_dir"
for u in "$units_src"/*.service "$units_src"/*.timer "$units_src"/*.mount "$units_src"/*.automount; do
	install -m 0644 "$u" "$unit_dir/"
done
install -D -m 0644 "$units_src/dev-disk-by\\x2dlabel-ISYNC.device.d/isync.conf" \
	"$unit_dir/dev-disk-by\\x2dlabel-ISYNC.device.d/isync.conf"
install -D -m 0644 "$units_src/isync.sysusers" "$root/usr/local/lib/sysusers.d/isync.conf"
[ -f "$docs_src" ] && install -D -m 0644 "$docs_src" "$root/usr/local/share/doc/isync/appliance.md"
install -d "$root/media/isync"

# The service user: systemd-sysusers from the same file systemd reads at boot,
# so the image, the Pi OS card and a live install agree.
if command -v systemd-sysusers >/dev/null; then
	if [ -n "$root" ]; then
		systemd-sysusers --root="$root" "$root/usr/local/lib/sysusers.d/isync.conf"
	else
		systemd-sysusers /usr/local/lib/sysusers.d/isync.conf
	fi
elif [ -z "$root" ]; then
	id isync >/dev/null 2>&1 || adduser --system --group --home /var/lib/isync --no-create-home isync
else
	echo "install.sh: --root needs systemd-sysusers on this machine (apt-get install systemd)" >&2; exit 1
fi
isync_gid=$(awk -F: '$1 == "isync" {print $3}' "$root/etc/group")

# Configuration: never overwrite the owner's.
if [ ! -e "$root/etc/isync/isync.toml" ]; then
	install -d -m 0755 "$root/etc/isync"
	install -m 0640 "$here/isync.toml" "$root/etc/isync/isync.toml"
	chgrp "$isync_gid" "$root/etc/isync/isync.toml"
	say "wrote /etc/isync/isync.toml"
fi

if [ "$appliance" = 1 ]; then
	install -D -m 0755 "$here/firstboot" "$root/usr/local/lib/isync/firstboot"
	install -m 0644 "$here/isync-firstboot.service" "$unit_dir/"
	install -D -m 0644 "$here/ssh-keygen.conf" "$root/etc/systemd/system/ssh.service.d/isync-keygen.conf"
	install -D -m 0644 "$here/isync.issue" "$root/etc/issue.d/isync.issue"
	# The journal's cap on the SD card (docs/appliance.md, "Where every byte lives").
	install -D -m 0644 "$here/journald.conf" "$root/etc/systemd/journald.conf.d/isync.conf"
fi

enable=(isync.service media-isync.automount isync-disk.service isync-backup.timer isync-verify.timer)
[ "$appliance" = 1 ] && enable+=(isync-firstboot.service)
if [ -n "$root" ]; then
	out=$(systemctl --root="$root" enable "${enable[@]}" 2>&1) || { echo "$out" >&2; exit 1; }
	say "installed into $root; enabled ${enable[*]}"
	exit 0
fi

systemctl daemon-reload
out=$(systemctl enable "${enable[@]}" 2>&1) || { echo "$out" >&2; exit 1; }
if [ "$start" = 1 ]; then
	systemctl start media-isync.automount
	systemctl restart isync.service
	systemctl start isync-backup.timer isync-verify.timer
	say "isync is $(systemctl is-active isync.service): http://$(hostname).local:5000/"
fi
say "claim it: open http://$(hostname).local:5000/ and redeem the one-time token init,"
say "or run: sudo -u isync isync admin init NAME (the first account is the admin)"
say "then invite the family: sudo -u isync isync admin token create --type uploader --library NAME"
