#!/bin/sh
# Test image only: the Linux kernel's own v9fs client mounts NineDoor in both
# dialects and does ls, cat, stat and an append. One "CHECK name ok|FAIL"
# line per step, read by test/qemu/boot.e2e.test.ts from the console.
check() { name=$1; shift; if "$@" >/tmp/check.out 2>&1; then echo "CHECK $name ok"; else echo "CHECK $name FAIL"; sed 's/^/  | /' /tmp/check.out; fi; }
T=$(sed -n 's/.*cohesix\.ticket=\([^ ]*\).*/\1/p' /proc/cmdline)
mkdir -p /mnt/l /mnt/u /mnt/wl /mnt/wu
check mount-9p2000.L mount -t 9p -o trans=tcp,port=5640,version=9p2000.L,aname=$T 127.0.0.1 /mnt/l
check mount-9p2000 mount -t 9p -o trans=tcp,port=5640,version=9p2000,aname=$T 127.0.0.1 /mnt/u
check ls-L sh -c 'ls /mnt/l | grep -q queen'
check ls-U sh -c 'ls /mnt/u | grep -q queen'
check cat-L sh -c 'grep -q "^board=" /mnt/l/proc/boot'
check cat-U sh -c 'grep -q "^board=" /mnt/u/proc/boot'
check stat-L stat /mnt/l/queen/ctl
check stat-U stat /mnt/u/proc/boot
before=$(ls /mnt/l/worker)
echo '{"spawn":"heartbeat","ticks":1000}' >> /mnt/l/queen/ctl
W=""
for i in 1 2 3 4 5 6 7 8 9 10; do
  for w in $(ls /mnt/l/worker); do echo " $before " | grep -q " $w " || W=$w; done
  [ -n "$W" ] && break
  sleep 1
done
echo "selftest worker: $W"
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do grep -q tick /mnt/l/worker/$W/telemetry 2>/dev/null && break; sleep 1; done
check telemetry-L grep -q tick /mnt/l/worker/$W/telemetry
check telemetry-U grep -q tick /mnt/u/worker/$W/telemetry
WT=$(/usr/bin/node /etc/cohesix/mint.mjs worker-heartbeat $W)
check mount-worker-L mount -t 9p -o trans=tcp,port=5640,version=9p2000.L,aname=$WT 127.0.0.1 /mnt/wl
check mount-worker-U mount -t 9p -o trans=tcp,port=5640,version=9p2000,aname=$WT 127.0.0.1 /mnt/wu
check append-L sh -c "echo '{\"selftest\":\"9p2000.L\"}' >> /mnt/wl/worker/$W/telemetry"
check append-U sh -c "echo '{\"selftest\":\"9p2000\"}' >> /mnt/wu/worker/$W/telemetry"
check readback-L grep -q '"selftest":"9p2000.L"' /mnt/l/worker/$W/telemetry
check readback-U grep -q '"selftest":"9p2000"' /mnt/u/worker/$W/telemetry
echo '{"kill":"'$W'"}' >> /mnt/l/queen/ctl
umount /mnt/wl /mnt/wu /mnt/l /mnt/u
exit 0
