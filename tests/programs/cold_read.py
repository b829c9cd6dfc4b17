"""Ground truth for major faults in memory mode: writes a 48 MiB file (argv[1]), drops
it from the page cache (fsync + posix_fadvise DONTNEED), maps it with MADV_RANDOM (no
readahead: every page is its own major fault) and reads one byte per page in read_cold,
on its own line. Prints the process's major faults (getrusage): those of the loop
(12,288 for 48 MiB of 4 KiB pages) and in all."""
import mmap
import os
import resource
import sys


def read_cold(m):
    return sum(m[i] for i in range(0, len(m), 4096))  # the cold-read line


path = sys.argv[1]
with open(path, "wb") as f:
    f.write(os.urandom(1 << 20) * 48)
    f.flush()
    os.fsync(f.fileno())
fd = os.open(path, os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
m = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
m.madvise(mmap.MADV_RANDOM)
before = resource.getrusage(resource.RUSAGE_SELF).ru_majflt
read_cold(m)
after = resource.getrusage(resource.RUSAGE_SELF).ru_majflt
print("loop_majflt", after - before, "majflt", after)
