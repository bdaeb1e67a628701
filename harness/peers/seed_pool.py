#!/usr/bin/python3
# The seed's program (shared/seed/multiprocessing-in-python.txt, "Putting it
# all together"), as published, with its two undefined names fixed:
#   - `inputs` is generated as the post's text does just above the listing
#     (seeded, so a run can be repeated);
#   - `num_proc` is the loop variable (the post printed it but never set it).
# Added for the harness, without touching the measured code: the pool class
# (multiprocessing.Pool, or multiprocessing.pool.ThreadPool, same API), the
# worker counts, the item count, repeats and chunksize come from the command
# line; run() returns the map's results (it built them anyway) so that they
# can be checked, untimed, against math.factorial.
#
#   seed_pool.py [process|thread] [WORKERS e.g. 1,2,3,4] [ITEMS] [REPEAT] [SEED] [tuned]
#
# "tuned" passes Pool.map a chunksize of ITEMS / W (one chunk per worker)
# instead of its default ITEMS / (4 W): the fewest messages. The best of a
# sweep at 2 workers on the 2-core machine (load 6-9): ITEMS / W 2.66 and
# 4.55 s, the default 3.17 and 4.55 s, ITEMS / 32 3.36 and 5.57 s,
# ITEMS / 128 3.65 and 5.53 s, 2000 items 4.04 and 4.41 s.
#
# Prints the post's line, "Processes: 2, Seconds: 4.63", then the harness's:
#   seed-pool kernel=factorial items=N workers=W repeat=R chunksize=C seconds=S verified=1
# once per repeat; verified=0 (and exit 1) when a result is wrong.
# MHB_CORRUPT=1 in the environment makes the first result wrong (tests).
# Needs numpy: run it with Debian's /usr/bin/python3 (python3-numpy).
import math
import os
import sys
from multiprocessing import Pool
from multiprocessing.pool import ThreadPool
from time import time # for timing execution of the code

import numpy as np # for generating list of integers


def factorial(n):
    if n == 0:
        return 1
    else:
        return n * factorial(n-1)

def run(n, func, inputs, chunksize=None):
    with Pool(n) as p:
        return p.map(func, inputs, chunksize)

def verified(inputs, results):
    if os.environ.get('MHB_CORRUPT') and results:
        results[0] += 1
    return len(results) == len(inputs) and all(
        r == math.factorial(x) for x, r in zip(inputs, results))

if __name__ == '__main__':
    mode = sys.argv[1] if len(sys.argv) > 1 else 'process'
    workers = [int(w) for w in (sys.argv[2] if len(sys.argv) > 2 else '1,2,3,4').split(',')]
    items = int(sys.argv[3]) if len(sys.argv) > 3 else 1000000
    repeat = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    seed = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    tuned = len(sys.argv) > 6 and sys.argv[6] == 'tuned'
    if mode == 'thread':
        Pool = ThreadPool # same interface, threads instead of processes
    elif mode != 'process':
        sys.exit('seed_pool.py: mode must be process or thread, not ' + mode)

    # generate large list of integers with values between 1 and 100
    np.random.seed(seed)
    inputs = np.random.randint(1, high=100, size=items).tolist()

    status = 0
    for num_proc in workers:
        chunksize = max(1, -(-items // num_proc)) if tuned else None
        for r in range(repeat):
            start = time()
            results = run(num_proc, factorial, inputs, chunksize)
            end = time() - start
            print('Processes: {}, Seconds: {:.2f}'.format(num_proc, end), flush=True)
            ok = verified(inputs, results)
            print('seed-pool kernel=factorial items={} workers={} repeat={} chunksize={} '
                  'seconds={:.6f} verified={}'.format(items, num_proc, r, chunksize or 0, end,
                                                      int(ok)), flush=True)
            status |= not ok
    sys.exit(status)
