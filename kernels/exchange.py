"""h between the blocks of a step as words that carry their step ("tagged"), in place of a grid barrier.

A spread step ends with each block's new h in memory, a grid barrier (a GPU-scope fence, an atomic
add, polls of the count) and then every block's load of h: four round trips to L2 on the step's
path. Here each h value travels as one 64-bit word, its step in the high half and the float's bits
in the low, and a reader polls each word it needs with an atomic read until the word carries the
step it waits for: one write and one read on the path, no fence. A block cannot run ahead: it makes
its words of step s + 1 only from every block's words of step s. Two slots of words, taken in turn:
a block writes step s + 2 into a slot only after reading all of step s + 1, which every block wrote
after reading that slot's step s.

The words are written with an atomic max (a word's step only grows within a run): a plain 64-bit
store was torn on the H200, readers seeing the new step with the old float (``bench/probes/
exchange.py``: 8 blocks x 128 words 1.35 -> 0.66 µs a step, 16 x 512 1.62 -> 1.21, but 64 x 1024
2.00 -> 2.88, every block polling every word). So a run starts by writing its first step's words
plainly and zeroing the other slot, then one grid barrier: a later run's small steps must not meet
an earlier run's larger ones under the max.

With epochs (``epoch_field``), a run needs no barrier at all: its tags count from an epoch past
every tag in the words, so its first words go in by the atomic max too and nothing is zeroed. The
last block to leave (``leave_grid``) moves the epoch past the run's last tag; every block has read
the epoch by then, since each read every other block's first words. Past EPOCH_LIMIT that block
zeroes the words and the epoch instead. With the input projection apart, the kernel then has no
grid barrier, whose fence Vulkan and Metal lack; only atomics pass data between blocks.

The words live in one global field (no kernel argument, whose launch costs Taichi ~4 µs), which one
kernel at a time uses: the launches of a stream run one after another. A launch of two layers (the
two directions of a bidirectional level, ``paired_spread_kernel``) gives each a half of it, and with
epochs an epoch of its own; a lone layer takes the first half. 64-bit atomics: CUDA, and
Vulkan where the device has them (lavapipe does; the one-block tests run this form there). Metal
has none, so a Metal build keeps the barrier. The planner takes them on CUDA where a group's blocks
poll few words (``scheduler.recurrence.SPREAD_TAGGED_LIMITS``; H200, t1000, µs a step, barrier /
tagged: LSTM 128 b1 2.29 / 1.27, GRU 256 b4 4.82 / 2.79), and keeps the barrier past them, where
the polls queue at L2 (LSTM 512 b1 t400, 128 blocks: 2.92 / 3.29).
"""
import functools

import taichi as ti

EXCHANGE_WORDS = 1 << 20   # 8 MiB: a half for each layer of a paired launch (LAYER_WORDS)
LAYER_WORDS = EXCHANGE_WORDS // 2   # a layer's words: from layer x LAYER_WORDS (the second of a pair: 1)
SPIN = 1 << 26             # polls of one word before it is given up as lost (a NaN, not a hung GPU)
EPOCH_LIMIT = 1 << 30      # with epochs: past this the words restart from zero (tags stay under 2^31,
                           # the word's sign bit, a run's steps included)


@functools.lru_cache(maxsize=None)
def exchange_field(epochs=False):
    """The words, made on first use (a kernel that uses them compiles against this field). Runs
    with epochs have words of their own: a run that starts with a barrier leaves tags that no epoch
    counts past."""
    return ti.field(ti.i64, shape=(EXCHANGE_WORDS,))


@functools.lru_cache(maxsize=None)
def epoch_field():
    """With epochs: the tag from which a run's tags count, past every tag already in the words; one
    for each layer's half of the words (a paired launch's two layers each move their own)."""
    return ti.field(ti.i64, shape=(2,))


def exchange_words(gru, batch, hidden):
    """Words of a layer's exchange: two slots of h (batch x hidden words each), and for the GRU two
    of r∘h0 and z∘h0 after them."""
    return (6 if gru else 2) * batch * hidden


def exchange_fits(gru, batch, hidden):
    """Whether a layer's words fit its half of the field."""
    return exchange_words(gru, batch, hidden) <= LAYER_WORDS


@ti.func
def low_half():
    return (ti.i64(1) << 32) - 1


@ti.func
def tagged_word(step, value):
    """``value`` (a float32) with ``step`` in the word's high half."""
    return (ti.cast(step, ti.i64) << 32) | (ti.cast(ti.bit_cast(value, ti.i32), ti.i64) & low_half())


@ti.func
def word_value(word):
    return ti.bit_cast(ti.cast(word & low_half(), ti.i32), ti.f32)


@ti.func
def word_step(word):
    return ti.cast(word >> 32, ti.i32)
