#!/usr/bin/env bash
# Proves the v4l2 source against real kernel V4L2 drivers: boots Debian's
# kernel in qemu (TCG, no KVM needed) and runs v4l2check, a static build of
# the source with -tags v4l2, once per scenario:
#   x264         vivid's raw webcam on /dev/video0, encoded with x264
#   x264-720p    the same at a configured 1280x720, checking that keyframes
#                come exactly the configured GOP apart
#   refused      a size vivid does not offer: refused at start, with the
#                sizes it offers
#   native-h264  v4l2loopback on /dev/video1 fed configs/media/main.h264,
#                read natively (the path of a camera that encodes)
#   native-h265  the same on /dev/video2 with main.h265
# and checks the result lines. The x264 capture comes back on a virtio disk
# and is checked with ffprobe when the host has it. v4l2loopback is not in
# Debian's kernel: it is built from the v4l2loopback-dkms source against the
# kernel's headers package.
#
# Idempotent: downloads (kernel and busybox-static packages, unpacked with
# dpkg -x, never installed on the host) are cached, the rest is rebuilt.
# Missing host tools are installed with apt-get when running as root.
#
# Environment:
#   V4L2VM_CACHE       download cache (default ${XDG_CACHE_HOME:-~/.cache}/ipcd/v4l2-vm)
#   V4L2VM_OUT         build products, console log, capture.h264 (default bin/v4l2vm)
#   V4L2VM_KERNEL_PKG  kernel package, e.g. linux-image-6.1.0-56-amd64
#                      (default: what linux-image-amd64 depends on)
#   V4L2VM_ACCEL       qemu accelerator (default tcg; kvm where allowed, with V4L2VM_CPU=host)
#   V4L2VM_CPU         qemu CPU model (default max: SSE4/AVX2 for x264 under TCG)
#   V4L2VM_TIMEOUT     seconds before qemu is killed (default 300)
#   V4L2VM_ARGS        extra v4l2check flags for the x264 run, e.g. "-duration 10s -v"
#   V4L2VM_NATIVE      0 skips the v4l2loopback scenarios (and their build)
#   GO                 go command (default go)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cache=${V4L2VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ipcd/v4l2-vm}
out=${V4L2VM_OUT:-$repo/bin/v4l2vm}
accel=${V4L2VM_ACCEL:-tcg}
cpu=${V4L2VM_CPU:-max}
qemu_timeout=${V4L2VM_TIMEOUT:-300}
native=${V4L2VM_NATIVE:-1}
GO=${GO:-go}

say() { printf 'v4l2vm: %s\n' "$*" >&2; }
die() {
	say "FAIL: $*"
	exit 1
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# --- host tools ---------------------------------------------------------------

missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
command -v xz >/dev/null || missing+=(xz-utils)
command -v cpio >/dev/null || missing+=(cpio)
command -v gcc >/dev/null || missing+=(gcc)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v make >/dev/null || missing+=(make)
[ -f /usr/include/linux/videodev2.h ] || missing+=(linux-libc-dev)
libdir=$(gcc -print-multiarch 2>/dev/null || true)
[ -n "$libdir" ] && [ -f "/usr/lib/$libdir/libx264.a" ] || missing+=(libx264-dev)
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
		die "missing host packages: ${missing[*]} (install them, or run as root on Debian/Ubuntu)"
	fi
	say "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null || die "apt-get update failed"
	apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
fi
command -v "$GO" >/dev/null || die "no go command ($GO)"

# --- downloads: kernel, modules, busybox ---------------------------------------

mkdir -p "$cache/debs" "$out"

# fetch PKG: the .deb of PKG in $cache/debs, downloaded once.
fetch() {
	local debs=("$cache/debs/$1"_*.deb)
	if [ ! -f "${debs[0]}" ]; then
		command -v apt-get >/dev/null || die "need apt-get to download $1"
		say "downloading $1"
		(cd "$cache/debs" && apt-get download -q "$1" >/dev/null 2>&1) ||
			die "apt-get download $1 failed (run apt-get update?)"
		debs=("$cache/debs/$1"_*.deb)
		[ -f "${debs[0]}" ] || die "apt-get download $1 left no .deb"
	fi
	printf '%s\n' "${debs[0]}"
}

kpkg=${V4L2VM_KERNEL_PKG:-}
if [ -z "$kpkg" ] && command -v apt-cache >/dev/null; then
	kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
fi
if [ -z "$kpkg" ]; then
	# Offline without apt: whatever kernel was cached last.
	for d in "$cache"/linux-image-*/ready; do
		[ -f "$d" ] && kpkg=$(basename "$(dirname "$d")")
	done
fi
[ -n "$kpkg" ] || die "cannot tell which kernel package to use; set V4L2VM_KERNEL_PKG"
kdir=$cache/$kpkg

# Only vivid, virtio-blk and their dependencies are kept, with their load
# order, next to the uncompressed kernel: booting the ELF vmlinux saves the
# decompression, slow under TCG.
if [ ! -f "$kdir/ready" ]; then
	t=$(now)
	deb=$(fetch "$kpkg")
	rm -rf "$kdir" && mkdir -p "$kdir/modules"
	root=$kdir/root
	dpkg -x "$deb" "$root"
	vmlinuz=("$root"/boot/vmlinuz-*)
	vmlinuz=${vmlinuz[0]}
	for off in $(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$vmlinuz" | cut -d: -f1); do
		# xz stops with an error at the data after its stream; what it
		# wrote before is the kernel.
		tail -c +$((off + 1)) "$vmlinuz" | xz -dc 2>/dev/null >"$kdir/vmlinux" || true
		[ "$(head -c 4 "$kdir/vmlinux" | od -An -c | tr -d ' ')" = '177ELF' ] && break
	done
	[ "$(head -c 4 "$kdir/vmlinux" | od -An -c | tr -d ' ')" = '177ELF' ] ||
		die "no xz-compressed ELF kernel found in $vmlinuz"

	declare -A path=() seen=()
	while IFS= read -r ko; do
		name=$(basename "$ko" .ko)
		path[${name//-/_}]=$ko
	done < <(find "$root/lib/modules" -name '*.ko')
	order=()
	# add NAME: NAME's dependencies (from its .modinfo), then NAME.
	add() {
		local key=${1//-/_} deps dep
		[ -n "${seen[$key]:-}" ] && return
		seen[$key]=1
		[ -n "${path[$key]:-}" ] || die "module $1 not in $kpkg (built in? set V4L2VM_KERNEL_PKG)"
		deps=$(grep -a -o -m 1 'depends=[^[:cntrl:]]*' "${path[$key]}" | cut -d= -f2)
		for dep in ${deps//,/ }; do
			add "$dep"
		done
		cp "${path[$key]}" "$kdir/modules/$key.ko"
		order+=("$key")
	}
	for m in vivid virtio_pci virtio_blk; do
		add "$m"
	done
	printf '%s\n' "${order[@]}" >"$kdir/modules/order"
	rm -rf "$root"
	touch "$kdir/ready"
	say "kernel $kpkg unpacked in $(since "$t") s: ${order[*]}"
fi

# v4l2loopback, built once per kernel with the compiler the kernel was
# built with (named in the headers' .kernelvariables).
if [ "$native" = 1 ] && [ ! -f "$kdir/v4l2loopback/v4l2loopback.ko" ]; then
	t=$(now)
	kver=${kpkg#linux-image-}
	command -v apt-cache >/dev/null || die "need apt-cache to find the headers of $kpkg (or V4L2VM_NATIVE=0)"
	tmp=$cache/v4l2loopback-build
	rm -rf "$tmp" && mkdir -p "$tmp"
	for p in "linux-headers-$kver" $(apt-cache depends "linux-headers-$kver" |
		awk '/Depends: linux-(headers|kbuild)-/ { print $2 }') v4l2loopback-dkms; do
		deb=$(fetch "$p")
		dpkg -x "$deb" "$tmp"
	done
	hdr=$tmp/usr/src/linux-headers-$kver
	# The headers' Makefile includes the common part by absolute path.
	sed -i "s|include /usr/src/|include $tmp/usr/src/|" "$hdr/Makefile"
	cc=$(grep -o -m 1 'gcc-[0-9][0-9]*' "$hdr/.kernelvariables" || true)
	if [ -n "$cc" ] && ! command -v "$cc" >/dev/null; then
		[ "$(id -u)" = 0 ] || die "$kpkg was built with $cc; install it (or V4L2VM_NATIVE=0)"
		say "installing $cc"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$cc" >/dev/null ||
			die "apt-get install $cc failed"
	fi
	srcs=("$tmp"/usr/src/v4l2loopback-*)
	if ! make -C "$hdr" M="${srcs[0]}" modules >"$out/v4l2loopback-build.log" 2>&1; then
		cat "$out/v4l2loopback-build.log" >&2
		die "building v4l2loopback for $kver failed (V4L2VM_NATIVE=0 skips it)"
	fi
	deps=$(grep -a -o -m 1 'depends=[^[:cntrl:]]*' "${srcs[0]}/v4l2loopback.ko" | cut -d= -f2)
	for dep in ${deps//,/ }; do
		[ -f "$kdir/modules/${dep//-/_}.ko" ] || die "v4l2loopback needs $dep, which is not among the kept modules"
	done
	mkdir -p "$kdir/v4l2loopback"
	cp "${srcs[0]}/v4l2loopback.ko" "$kdir/v4l2loopback/"
	rm -rf "$tmp"
	say "v4l2loopback built in $(since "$t") s"
fi

bbdir=$cache/busybox-static
if [ ! -x "$bbdir/bin/busybox" ]; then
	deb=$(fetch busybox-static)
	rm -rf "$bbdir" && dpkg -x "$deb" "$bbdir.tmp" && mv "$bbdir.tmp" "$bbdir"
fi

# --- build ----------------------------------------------------------------------

t=$(now)
# x264 is static too; its static library needs libm, which pkg-config's
# non-static flags leave out.
# The linker warns that x264's unused OpenCL loader calls dlopen; the log
# is shown only when the build fails.
if ! (cd "$repo" && CGO_ENABLED=1 "$GO" build -tags v4l2,netgo,osusergo -trimpath \
	-ldflags "-s -w -linkmode external -extldflags '-static -lm'" \
	-o "$out/v4l2check" ./board/vm/v4l2check) >"$out/build.log" 2>&1; then
	cat "$out/build.log" >&2
	die "building v4l2check failed"
fi
build_s=$(since "$t")

t=$(now)
stage=$out/initramfs
rm -rf "$stage" && mkdir -p "$stage/bin" "$stage/etc/checks" "$stage/modules" "$stage/feed"
cp "$bbdir/bin/busybox" "$stage/bin/busybox"
cp "$repo/board/vm/init.sh" "$stage/init"
chmod 755 "$stage/init"
cp "$out/v4l2check" "$stage/v4l2check"
cp "$kdir/modules/"*.ko "$stage/modules/"
# One device with a video capture node only: /dev/video0.
sed 's/^vivid$/vivid n_devs=1 node_types=0x1/' "$kdir/modules/order" >"$stage/modules/order"
echo "/dev/video0 /dev/vda" >"$stage/etc/nodes"
echo "-device /dev/video0 -disk /dev/vda -duration 5s ${V4L2VM_ARGS:-}" >"$stage/etc/checks/10-x264"
echo "-device /dev/video0 -width 1280 -height 720 -keyint 10 -gop-check -duration 5s" >"$stage/etc/checks/12-x264-720p"
echo "-device /dev/video0 -width 1000 -height 600 -expect-refused 1280x720 -duration 5s" >"$stage/etc/checks/15-refused"
if [ "$native" = 1 ]; then
	cp "$kdir/v4l2loopback/v4l2loopback.ko" "$stage/modules/"
	echo "v4l2loopback devices=2 video_nr=1,2 exclusive_caps=0,0 max_buffers=4" >>"$stage/modules/order"
	echo "/dev/video1 /dev/video2" >>"$stage/etc/nodes"
	cp "$repo/configs/media/main.h264" "$repo/configs/media/main.h265" "$stage/feed/"
	echo "-device /dev/video1 -feed-device /dev/video1 -feed /feed/main.h264 -max-feed-gaps 5 -codec h264 -width 640 -height 360 -duration 4s" \
		>"$stage/etc/checks/20-native-h264"
	echo "-device /dev/video2 -feed-device /dev/video2 -feed /feed/main.h265 -max-feed-gaps 5 -codec h265 -width 640 -height 360 -duration 4s" \
		>"$stage/etc/checks/30-native-h265"
fi
want_runs=$(ls "$stage/etc/checks" | wc -l)
# Uncompressed: decompressing under TCG costs more than reading it.
(cd "$stage" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) >"$out/initramfs.cpio"
rm -f "$out/disk.img" && truncate -s 64M "$out/disk.img"
initramfs_s=$(since "$t")

# --- boot -----------------------------------------------------------------------

say "booting $kpkg (accel $accel, timeout ${qemu_timeout}s)"
t=$(now)
set +e
timeout "$qemu_timeout" qemu-system-x86_64 \
	-accel "$accel" -cpu "$cpu" -smp 2 -m 512 \
	-nographic -serial stdio -monitor none -no-reboot -nic none \
	-kernel "$kdir/vmlinux" -initrd "$out/initramfs.cpio" \
	-append "console=ttyS0 quiet panic=-1" \
	-drive "file=$out/disk.img,format=raw,if=virtio" \
	</dev/null | tr -d '\r' | tee "$out/console.log"
qemu_rc=${PIPESTATUS[0]}
set -e
qemu_s=$(since "$t")
[ "$qemu_rc" = 124 ] && say "qemu killed after ${qemu_timeout}s"

results=$(grep -a '^V4L2CHECK ' "$out/console.log" || true)
vm=$(grep -a '^V4L2VM runs=' "$out/console.log" || true)
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
x264=$(grep -a -m 1 ' native=false ' <<<"$results" || true)

# --- the captured stream --------------------------------------------------------

len=$(head -c 512 "$out/disk.img" | tr -d '\0' | sed -n 's/^V4L2CHECK-ANNEXB \([0-9][0-9]*\)$/\1/p')
probe=
if [ -n "$len" ] && [ "$len" -gt 0 ]; then
	dd if="$out/disk.img" of="$out/capture.h264" bs=512 skip=1 count=$(((len + 511) / 512)) status=none
	truncate -s "$len" "$out/capture.h264"
	if command -v ffprobe >/dev/null; then
		probe=$(ffprobe -v error -count_frames -select_streams v:0 \
			-show_entries stream=codec_name,profile,width,height,nb_read_frames \
			-of default=noprint_wrappers=1 "$out/capture.h264" | tr '\n' ' ')
	fi
fi

guest() {
	local v
	v=$(field "$1" "$vm")
	printf '%s' "${v:-?}"
}
say "timing: build ${build_s}s, initramfs ${initramfs_s}s, qemu ${qemu_s}s" \
	"(guest uptime: init $(guest uptime_init)s, modules loaded $(guest uptime_modules)s," \
	"checks done $(guest uptime_done)s)"
[ -n "$probe" ] && say "ffprobe capture.h264: $probe"
[ -n "$results" ] || die "no V4L2CHECK line on the console (see $out/console.log)"
echo "$results"
n_ok=$(grep -c '^V4L2CHECK ok ' <<<"$results" || true)
[ "$n_ok" = "$want_runs" ] && [ "$(wc -l <<<"$results")" = "$want_runs" ] ||
	die "$n_ok of $want_runs checks passed"
if [ -n "$probe" ]; then
	w=$(sed -n 's/.*width=\([0-9]*\).*/\1/p' <<<"$probe")
	h=$(sed -n 's/.*height=\([0-9]*\).*/\1/p' <<<"$probe")
	n=$(sed -n 's/.*nb_read_frames=\([0-9]*\).*/\1/p' <<<"$probe")
	size=$(field size "$x264")
	frames=$(field frames "$x264")
	[ "${w}x${h}" = "$size" ] || die "ffprobe sees ${w}x${h}, v4l2check saw $size"
	[ "$n" = "$frames" ] || die "ffprobe decodes $n frames, v4l2check counted $frames"
fi
say "PASS: $want_runs checks ($out/capture.h264)"
