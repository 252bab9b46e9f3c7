"""A/B knobs: ``MPSRNN_*`` environment settings that override a planning default, for tests and
benchmarks. Every knob is read here, so each one answers a bad value in the same words: its name,
the values it takes, and what it got."""
import os


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


def alternatives(choices):
    """'a' or 'b'; 'a', 'b' or 'c': words quoted, numbers as they are."""
    said = [c if c.isdigit() else f"'{c}'" for c in choices]
    return said[0] if len(said) == 1 else f"{', '.join(said[:-1])} or {said[-1]}"
