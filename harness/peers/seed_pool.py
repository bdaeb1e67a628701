#!/usr/bin/python3
# The seed's program (shared/seed/multiprocessing-in-python.txt, "Putting it
# all together"), as published, with its two undefined names fixed:
#   - `inputs` is generated as the post's text does just above the listing
#     (seeded, so a run can be repeated);
#   - `num_proc` is the loop variable (the post printed it but never set it).
# Added for the harness, without touching the measured code: the pool class
# (multiprocessing.Pool, or multiprocessing.pool.ThreadPool, same API), the
# worker counts, the item count and repeats come from the command line.
#
#   seed_pool.py [process|thread] [WORKERS e.g. 1,2,3,4] [ITEMS] [REPEAT] [SEED]
#
# Prints the post's lines, "Processes: 2, Seconds: 4.63", once per repeat.
# Needs numpy: run it with Debian's /usr/bin/python3 (python3-numpy).
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

def run(n, func, inputs):
    with Pool(n) as p:
        p.map(func, inputs)
    return

if __name__ == '__main__':
    mode = sys.argv[1] if len(sys.argv) > 1 else 'process'
    workers = [int(w) for w in (sys.argv[2] if len(sys.argv) > 2 else '1,2,3,4').split(',')]
    items = int(sys.argv[3]) if len(sys.argv) > 3 else 1000000
    repeat = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    seed = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    if mode == 'thread':
        Pool = ThreadPool # same interface, threads instead of processes
    elif mode != 'process':
        sys.exit('seed_pool.py: mode must be process or thread, not ' + mode)

    # generate large list of integers with values between 1 and 100
    np.random.seed(seed)
    inputs = np.random.randint(1, high=100, size=items).tolist()

    for num_proc in workers:
        for _ in range(repeat):
            start = time()
            run(num_proc, factorial, inputs)
            end = time() - start
            print('Processes: {}, Seconds: {:.2f}'.format(num_proc, end), flush=True)
