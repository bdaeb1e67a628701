#!/usr/bin/python3
# The seed's workload (the blog's recursive factorial over ITEMS random
# ints in [1,100), seeded as seed_pool.py draws them) through joblib's
# Parallel, what a Python programmer reaches for today (Debian's
# python3-joblib; its default backend, loky: worker processes).
#
#   seed_joblib.py batched|auto WORKERS ITEMS REPEAT SEED
#
# batched: delayed(chunk) over explicit batches of ITEMS / (4 W) items (one
#          call per batch, as Pool.map's default chunksize does);
# auto:    delayed(factorial) per item, joblib's batch_size='auto' grouping
#          them (at n_jobs=1 joblib runs them one by one, without a pool).
# Seconds include starting and stopping the workers, as the blog's run()
# times Pool(n). Prints once per repeat:
#   seed-joblib kernel=factorial items=N workers=W repeat=R batch=B seconds=S verified=1
# Results are checked, untimed, against math.factorial: verified=0 and exit
# 1 when one is wrong. MHB_CORRUPT=1 makes the first result wrong (tests).
import math
import os
import sys
from time import time

import numpy as np
from joblib import Parallel, delayed


def factorial(n):
    if n == 0:
        return 1
    else:
        return n * factorial(n-1)

def chunk(values):
    return [factorial(v) for v in values]

def run(mode, n_jobs, inputs):
    if mode == 'auto':
        return Parallel(n_jobs=n_jobs)(delayed(factorial)(x) for x in inputs)
    size = max(1, len(inputs) // (4 * n_jobs))
    batches = Parallel(n_jobs=n_jobs)(
        delayed(chunk)(inputs[i:i + size]) for i in range(0, len(inputs), size))
    return [r for batch in batches for r in batch]

if __name__ == '__main__':
    if len(sys.argv) != 6 or sys.argv[1] not in ('batched', 'auto'):
        sys.exit('usage: seed_joblib.py batched|auto WORKERS ITEMS REPEAT SEED')
    mode = sys.argv[1]
    workers = [int(w) for w in sys.argv[2].split(',')]
    items, repeat, seed = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    np.random.seed(seed)
    inputs = np.random.randint(1, high=100, size=items).tolist()
    status = 0
    for n_jobs in workers:
        batch = 'auto' if mode == 'auto' else str(max(1, items // (4 * n_jobs)))
        for r in range(repeat):
            start = time()
            results = run(mode, n_jobs, inputs)
            seconds = time() - start
            if os.environ.get('MHB_CORRUPT') and results:
                results[0] += 1
            ok = len(results) == items and all(
                x == math.factorial(v) for v, x in zip(inputs, results))
            print('seed-joblib kernel=factorial items={} workers={} repeat={} batch={} '
                  'seconds={:.6f} verified={}'.format(items, n_jobs, r, batch, seconds,
                                                      int(ok)), flush=True)
            status |= not ok
    sys.exit(status)
