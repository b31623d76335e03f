#!/usr/bin/env python3
"""pagecache-cost.py [DIR] [MIB]: what writing and reading a file costs
through the page cache on this machine, the way proglog's logs use it.

Writes MIB MiB (default 600) in 1 MiB pieces into a new file (fresh page
cache pages), over the same file again (pages already cached), and into a
new file that is fdatasynced every 4 MiB with the synced pages more than
8 or 64 MiB behind dropped (POSIX_FADV_DONTNEED, as the Raft log does),
then reads half as much back uncached and cached. Prints wall and system
seconds for each. On a VM whose freed memory goes back to its host, a
fresh page costs a host fault and the first row is far slower than the
others; pages dropped and taken again at once are not handed back.
"""
import os
import sys
import time

MIB = 1 << 20
dir_ = sys.argv[1] if len(sys.argv) > 1 else "/var/tmp"
total = (int(sys.argv[2]) if len(sys.argv) > 2 else 600) * MIB
path = os.path.join(dir_, "pagecache-cost.%d" % os.getpid())
buf = b"x" * MIB


def timed(label, f):
    t0, c0 = time.time(), os.times()
    f()
    c1 = os.times()
    print("%-28s %5.2f s wall, %5.2f s system" % (label, time.time() - t0, c1.system - c0.system))


def write(flags, behind=None, size=total):
    fd = os.open(path, flags)
    try:
        for off in range(0, size, MIB):
            os.pwrite(fd, buf, off)
            if behind is not None and (off + MIB) % (4 * MIB) == 0:
                os.fdatasync(fd)
                end = off + MIB - behind
                if end > 0:
                    os.posix_fadvise(fd, 0, end, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def read():
    fd = os.open(path, os.O_RDONLY)
    try:
        off = 0
        while True:
            b = os.pread(fd, MIB, off)
            if not b:
                return
            off += len(b)
    finally:
        os.close(fd)


def fresh():
    if os.path.exists(path):
        os.unlink(path)


def drop_all():
    fd = os.open(path, os.O_RDONLY)
    os.fdatasync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)


try:
    fresh()
    timed("write, new pages", lambda: write(os.O_WRONLY | os.O_CREAT))
    time.sleep(5)
    timed("write, cached pages", lambda: write(os.O_WRONLY))
    for behind in (8, 64):
        fresh()
        time.sleep(5)
        timed("write, drop %d MiB behind" % behind,
              lambda: write(os.O_WRONLY | os.O_CREAT, behind * MIB))
    fresh()
    write(os.O_WRONLY | os.O_CREAT, 8 * MIB, total // 2)
    drop_all()
    time.sleep(5)
    timed("read half, not cached", read)
    timed("read half, cached", read)
finally:
    fresh()
