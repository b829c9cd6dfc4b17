# Ground truth for memory mode on Python: big_matrix() faults in a 6000x5000 float64
# array (228.9 MiB; numpy advises transparent huge pages for it unless
# NUMPY_MADVISE_HUGEPAGE=0), many_objects() ~40 MiB: 560,000 str objects of 10-12
# characters (64-byte pymalloc blocks: 34.2 MiB) and their list (4.3 MiB).
# Prints the process's own page faults (getrusage minor + major).
import resource

import numpy as np


def big_matrix():
    return np.ones((6000, 5000))


def many_objects():
    return [str(i) * 2 for i in range(560_000)]


a = big_matrix()
b = many_objects()
r = resource.getrusage(resource.RUSAGE_SELF)
print("faults", r.ru_minflt + r.ru_majflt, "maxrss_kib", r.ru_maxrss, a.shape, len(b))
