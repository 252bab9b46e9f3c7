"""Timing a call many times over: its wall times and the process's CPU time, user and system,
for the probes that ask where a synchronisation's time goes (``sync_wait.py``, ``vulkan_fence.py``)."""
import os
import time

import numpy as np


def timed_calls(call, reps):
    """(wall times of ``reps`` calls in µs, mean user µs a call, mean system µs a call), after one
    untimed call. The CPU times come from os.times, whose ticks are coarse: means over the calls."""
    call()
    wall = []
    cpu0 = os.times()
    for _ in range(reps):
        start = time.perf_counter()
        call()
        wall.append(time.perf_counter() - start)
    cpu1 = os.times()
    return (np.array(wall) * 1e6, (cpu1.user - cpu0.user) / reps * 1e6,
            (cpu1.system - cpu0.system) / reps * 1e6)
