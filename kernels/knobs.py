"""A/B knobs: ``MPSRNN_*`` environment settings that override a planning default, for tests and
benchmarks. Every knob is read here, so each one answers a bad value in the same words: its name,
the values it takes, and what it got."""
import functools
import os

# the knobs the planner reads (scheduler/recurrence.py, kernels/): part of every plan's key, so that
# forcing another path, as the benchmarks and tests do, builds a new plan. (MPSRNN_WEIGHT_LAYOUT and
# MPSRNN_LAUNCH are read when a layer is made, MPSRNN_ARCH, MPSRNN_CUDA_SCALARIZE and
# MPSRNN_ADVANCED_OPTIMIZATION at start-up, MPSRNN_CPU_LANES when kernels/lanes.py is imported.)
PLANNING_KNOBS = ("MPSRNN_RECURRENCE", "MPSRNN_PROJECTION", "MPSRNN_PROJECTION_TILES", "MPSRNN_PROJECTION_TILE",
                  "MPSRNN_TILE_UNITS", "MPSRNN_TILE_LAYOUT", "MPSRNN_TILE_LOADS", "MPSRNN_RESIDENT_WEIGHTS",
                  "MPSRNN_PAIR_DIRECTIONS", "MPSRNN_PERSISTENT_GRID",
                  "MPSRNN_PERSISTENT_LOADS", "MPSRNN_PERSISTENT_PER_SM", "MPSRNN_PERSISTENT_ROWS",
                  "MPSRNN_PERSISTENT_ZIGZAG", "MPSRNN_PERSISTENT_LAYOUT",
                  "MPSRNN_PERSISTENT_FOLD", "MPSRNN_PERSISTENT_KEPT",
                  "MPSRNN_REGISTERS_BLOCK", "MPSRNN_SPREAD_PER_SM", "MPSRNN_SPREAD_GROUPS", "MPSRNN_SPREAD_EXCHANGE",
                  "MPSRNN_SPREAD_START", "MPSRNN_SPREAD_THREADS", "MPSRNN_SPREAD_FROM_MEMORY",
                  "MPSRNN_SPREAD_ROWS_LAYOUT", "MPSRNN_VULKAN_SPREAD",
                  "MPSRNN_SPLIT_PER_SM",
                  "MPSRNN_SPLIT_HALVES", "MPSRNN_SPLIT_REDUCE",
                  "MPSRNN_SPLIT_GRU_GATES", "MPSRNN_SPLIT_PROJECTION", "MPSRNN_CPU_ROW_GROUP", "MPSRNN_CPU_PIPELINE",
                  "MPSRNN_CPU_SPLIT_ROW",
                  "MPSRNN_WARP_STORES")


def knob_settings(names):
    """The raw settings of the knobs ``names`` (None where unset), as a key for a cache of plans.

    Read on every call of a layer, so it goes straight to the mapping behind ``os.environ`` where
    CPython has one (``_data``, keyed by ``encodekey``): ``os.environ.get`` encodes every key and
    decodes every value, and the 20 planning knobs took 31 µs a call that way on this project's VM
    (2 µs direct), more than half of a layer call's host time. ``os.environ``'s own setters write
    through to that mapping, so a knob set between calls (tests, ``ab.py``) is seen at once."""
    data = getattr(os.environ, "_data", None)
    keys = _environ_keys(tuple(names))
    if data is None or keys is None:
        return tuple(os.environ.get(name) for name in names)
    return tuple(map(data.get, keys))


@functools.lru_cache(maxsize=None)
def _environ_keys(names):
    """``names`` as keys of the mapping behind ``os.environ``, or None where it has no encoder."""
    encode = getattr(os.environ, "encodekey", None)
    return None if encode is None else tuple(encode(name) for name in names)


def knob(name, choices, where=""):
    """The setting of knob ``name`` (stripped, lower case), one of ``choices``, or None where it is
    unset; any other value is a ValueError. ``where``: said after the choices (say, the arch they
    are the choices of)."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return None
    if value not in choices:
        raise ValueError(f"{name}: expected {alternatives(choices)}{where}, got {value!r}")
    return value


def switch(name, default):
    """An on/off knob: True for on, False for off, ``default`` where it is unset."""
    value = knob(name, ("on", "off"))
    return default if value is None else value == "on"


def one_or_two(name):
    """An A/B knob that takes 1 or 2 (blocks an SM, gate rows a thread...): its value, or None where
    it is unset."""
    forced = knob(name, ("1", "2"))
    return int(forced) if forced else None


def alternatives(choices):
    """'a' or 'b'; 'a', 'b' or 'c': words quoted, numbers as they are."""
    said = [c if c.isdigit() else f"'{c}'" for c in choices]
    return said[0] if len(said) == 1 else f"{', '.join(said[:-1])} or {said[-1]}"
