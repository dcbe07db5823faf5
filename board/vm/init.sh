#!/bin/busybox sh
# PID 1 of the V4L2 test VM (see run-v4l2-test.sh): mount the kernel file
# systems, load the modules (vivid, virtio-blk, v4l2loopback), run v4l2check
# once per scenario, power off. Every outcome ends in a line starting
# "V4L2CHECK " on the console, which the host parses.

/bin/busybox mkdir -p /proc /sys /dev /tmp
/bin/busybox --install -s /bin
export PATH=/bin
mount -t devtmpfs devtmpfs /dev
# The kernel found no /dev/console in the initramfs, so this script started
# without stdio; now that devtmpfs is up it can have some.
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys

uptime_s() { cut -d' ' -f1 /proc/uptime; }
stop() {
	sync
	poweroff -f
	sleep 10 # poweroff -f does not return; qemu's timeout is the backstop
}
t_init=$(uptime_s)

# /modules/order lists the modules in load order, each optionally followed
# by its parameters.
while read -r m args; do
	# shellcheck disable=SC2086 # the parameters are words on purpose
	if ! insmod "/modules/$m.ko" $args; then
		echo "V4L2CHECK fail reason=insmod detail=\"$m\""
		stop
	fi
done </modules/order

# devtmpfs creates the nodes as the drivers register them, but probing
# may finish after insmod returns.
wait_node() {
	i=0
	while [ ! -e "$1" ] && [ $i -lt 100 ]; do
		sleep 0.05
		i=$((i + 1))
	done
	[ -e "$1" ]
}
for node in $(cat /etc/nodes); do
	if ! wait_node "$node"; then
		echo "V4L2CHECK fail reason=no-device detail=\"$node\""
		stop
	fi
done
t_modules=$(uptime_s)

# One v4l2check run per file in /etc/checks, in name order, each printing
# its own V4L2CHECK line.
runs=
for f in /etc/checks/*; do
	echo "V4L2VM run=${f##*/} start=$(uptime_s)"
	# shellcheck disable=SC2046 # the arguments are words on purpose
	/v4l2check $(cat "$f")
	runs="$runs ${f##*/}:$?"
done
t_done=$(uptime_s)
echo "V4L2VM runs=${runs# } uptime_init=$t_init uptime_modules=$t_modules uptime_done=$t_done"
stop
