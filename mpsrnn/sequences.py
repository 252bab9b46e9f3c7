"""Reading source sequences and preparing destination sequences.

A sequence reaches the kernels as a :class:`View`: one storage and three
strides, step t's element (r, c) at ``base + t*step + r*row + c``. Sequences
that already are one (a 3-D upload, or the per-step views a layer returned) are
used in place; anything else (separate matrices, host arrays) is packed into
one storage first. Destinations are the same in reverse.

Everything here validates before it touches the device, and every error names
the argument and step and says what was expected, so a bad call leaves the
user's data untouched.
"""
import bisect
import os
from dataclasses import dataclass

import numpy as np

from .arrays import as_numpy, is_torch_tensor, torch_dtype_name
from .backend import current_arch
from .enums import DataType
from .kernels.knobs import switch
from .matrix import NUMPY_TYPES, Matrix, MatrixSequence, Storage, data_type_of


@dataclass(frozen=True)
class View:
    storage: Storage
    base: int
    step: int
    row: int

    def binds(self, prefix):
        return {prefix: self.storage.array, prefix + "_base": self.base,
                prefix + "_step": self.step, prefix + "_row": self.row}


@dataclass
class Source:
    view: View
    rows: tuple          # rows present at each time step
    data_type: DataType
    prelude: list        # callables to run before the layer (uploads of host data)
    spans: list          # (storage, first, end) per step, for alias checks
    gather: object = None  # separate device matrices: a callable run before the layer, which packs them
    #                        on the host and returns None, or returns the per-step slots of the plan's
    #                        gather into the view (``step_binds("x", ...)``)


@dataclass
class Destination:
    view: View
    result: list         # what encode returns: the user's destinations, or new matrices
    postlude: list       # callables to run after the layer (copies to host arrays)
    storages: list       # storages whose host copies must be dropped after writing
    scatter: dict = None  # separate device matrices: the per-step slots of the plan's scatter from the view


def step_binds(prefix, items, offs):
    """Separate matrices, one a step, as a plan's per-step slots: ``{prefix}d{t}`` the array of step
    t's storage, ``{prefix}d{t}_base`` and ``_row`` its element offset and row stride."""
    values = {}
    for t, (m, o) in enumerate(zip(items, offs)):
        values[f"{prefix}d{t}"] = m.storage.array
        values[f"{prefix}d{t}_base"] = m.offset + o
        values[f"{prefix}d{t}_row"] = m.row_stride
    return values


class Staging:
    """The device storages a layer stages host sequences in, kept from one call to the next, one a
    role ("x" the source; "y", "y2" destinations). A new Taichi ndarray costs ~40-130 µs on the CPU
    (``Storage``: Taichi's debug record of the Python stack, then a zero fill). A layer's
    calls run one after another (a command buffer's too, on commit), each uploading into or reading
    from its storage inside its own work, so one storage a role serves them all."""

    def __init__(self):
        self._kept = {}

    def get(self, role, size, data_type):
        s = self._kept.get(role)
        if s is None or s.size != size or s.data_type != data_type:
            s = self._kept[role] = Storage(size, data_type)
        return s


def _new_storage(staging, role, size, data_type):
    return Storage(size, data_type) if staging is None else staging.get(role, size, data_type)


def _whole_array(obj, channels, offsets):
    """Whether ``obj`` is a host array (NumPy or PyTorch) the layer can take whole: 3-D, float32 or
    float16, ``channels`` wide, no offsets; else the per-step path takes it (and names what is
    wrong, if anything is). A whole array is checked once and moved in one copy, where the per-step
    path costs ~1.2 µs a step in Python (a call of 1000 steps: 1.2 ms before the kernels start).
    Nothing is copied to find out (a CUDA tensor stays where it is)."""
    if offsets is not None or not (isinstance(obj, np.ndarray) or is_torch_tensor(obj)):
        return False
    if obj.ndim != 3 or min(obj.shape) < 1 or obj.shape[2] != channels:
        return False
    if is_torch_tensor(obj):
        return torch_dtype_name(obj) in ("float32", "float16")
    return data_type_of(obj.dtype) is not None


def _items(obj, name):
    """The per-step items of a sequence, each a Matrix or a host ndarray (3-D arrays split)."""
    if isinstance(obj, Matrix):
        raise TypeError(f"{name}: expected a sequence (a list of matrices, one per time step, or a 3-D "
                        f"array of shape (steps, rows, columns)), got a single Matrix")
    if isinstance(obj, (list, tuple)):
        items = []
        for t, m in enumerate(obj):
            if isinstance(m, Matrix):
                items.append(m)
            else:
                try:
                    items.append(as_numpy(m, f"{name}[{t}]"))
                except TypeError:
                    raise TypeError(f"{name}[{t}]: expected a mpsrnn.Matrix, NumPy array or PyTorch tensor, "
                                    f"got {type(m).__name__}") from None
    else:
        try:
            a = as_numpy(obj, name)
        except TypeError:
            raise TypeError(f"{name}: expected a list of matrices (one per time step) or a 3-D array "
                            f"(steps, rows, columns), got {type(obj).__name__}") from None
        if a.ndim != 3:
            raise ValueError(f"{name}: expected a list of matrices or a 3-D array (steps, rows, columns), "
                             f"got an array of shape {a.shape}")
        items = list(a)
    if not items:
        raise ValueError(f"{name}: the sequence is empty; expected at least one time step")
    return items


def _item_type(item, name):
    if isinstance(item, Matrix):
        return item.data_type
    if item.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D matrix (rows = sequences, columns = feature channels), "
                         f"got shape {item.shape}")
    dt = data_type_of(item.dtype)
    if dt is None:
        raise ValueError(f"{name}: dtype {item.dtype} is not supported; expected float32 or float16")
    return dt


def _offsets(offsets, name, steps, itemsize):
    """Element offsets per step from MPS-style byte offsets (None: zeros)."""
    if offsets is None:
        return None
    try:
        offs = [int(o) for o in offsets]
    except TypeError:
        raise TypeError(f"{name}: expected a list of byte offsets, one per time step") from None
    if len(offs) != steps:
        raise ValueError(f"{name}: has {len(offs)} offsets for a sequence of {steps} steps")
    for t, o in enumerate(offs):
        if o < 0 or o % itemsize:
            raise ValueError(f"{name}[{t}]: byte offset {o} must be >= 0 and a multiple of the element size "
                             f"({itemsize} bytes)")
    return [o // itemsize for o in offs]


def _check_columns(name, t, columns, channels, off, what):
    if off is None:
        if columns != channels:
            raise ValueError(f"{name}[{t}]: has {columns} columns but {what} {channels} feature channels")
    elif off + channels > columns:
        raise ValueError(f"{name}[{t}]: an offset of {off} elements leaves {max(columns - off, 0)} of the "
                         f"{channels} feature channels {what} inside a {columns}-column matrix")


def read_source(obj, name, channels, offsets=None, offsets_name="source_offsets", staging=None):
    """Validate a source sequence and return it as a :class:`Source`.

    Nothing touches the device yet: host data is packed here and uploaded by the
    prelude, when the call runs, after every argument has been checked. Packed
    sequences go to ``staging``'s "x" storage where given (a :class:`Staging`)."""
    if isinstance(obj, MatrixSequence):
        return _read_matrix_sequence(obj, name, channels, offsets, offsets_name)
    whole = _whole_array(obj, channels, offsets)
    if whole and _on_taichi_gpu(obj):
        return _gpu_tensor_source(obj.detach(), channels, staging)
    if whole:
        block = as_numpy(obj, name)
        T, B, _ = block.shape
        dt = data_type_of(block.dtype)
        flat = np.array(block, copy=True).reshape(-1)   # the data as it is now, as the per-step path packs it
        storage = _new_storage(staging, "x", flat.size, dt)
        return Source(View(storage, 0, B * channels, channels), (B,) * T, dt,
                      [lambda: storage.upload(flat, owned=True)], [])
    items = _items(obj, name)
    types = [_item_type(m, f"{name}[{t}]") for t, m in enumerate(items)]
    if len(set(types)) > 1:
        t = next(t for t, x in enumerate(types) if x != types[0])
        raise ValueError(f"{name}[{t}]: all steps must share one data type; step 0 is "
                         f"{types[0].name.lower()}, step {t} is {types[t].name.lower()}")
    dt = types[0]
    offs = _offsets(offsets, offsets_name, len(items), NUMPY_TYPES[dt].itemsize)
    rows = []
    for t, m in enumerate(items):
        r, cols = (m.rows, m.columns) if isinstance(m, Matrix) else m.shape
        _check_columns(name, t, cols, channels, None if offs is None else offs[t], "the layer expects")
        if r < 1:
            raise ValueError(f"{name}[{t}]: has no rows; every step needs at least one sequence")
        rows.append(r)
    error = _shrink_error(name, rows)
    if error:
        raise ValueError(error)
    offs = offs or [0] * len(items)
    spans = [(m.storage, *m.span()) for m in items if isinstance(m, Matrix)]
    view = _regular_view(items, offs)
    if view is not None:
        return Source(view, tuple(rows), dt, [], spans)
    storage = _new_storage(staging, "x", len(rows) * rows[0] * channels, dt)
    view = View(storage, 0, rows[0] * channels, channels)
    if not any(isinstance(m, Matrix) for m in items):
        return Source(view, tuple(rows), dt, [_host_pack(items, offs, rows, channels, storage)], spans)
    return Source(view, tuple(rows), dt, [], spans, _gather(items, offs, rows, channels, storage))


CUDA_TENSORS_IN_PLACE = False   # the default of MPSRNN_CUDA_TENSORS: off until a CUDA run has passed
# tests/test_matrix_inference.py's test_gpu_tensors_stay_on_the_device (written 2026-12-05, when no GPU
# machine could be started)


def _on_taichi_gpu(obj):
    """Whether ``obj`` is a PyTorch tensor in the memory of the GPU that Taichi's CUDA backend runs
    on (its first), where a kernel reads and writes it in place (``MPSRNN_CUDA_TENSORS=on``). A CUDA
    tensor that is not goes through the host: ``.cpu()``, then Taichi's upload, and back the same way
    for a destination."""
    return (is_torch_tensor(obj) and obj.is_cuda and obj.get_device() == 0 and current_arch() == "cuda"
            and os.environ.get("TI_VISIBLE_DEVICE", "0") == "0"
            and switch("MPSRNN_CUDA_TENSORS", CUDA_TENSORS_IN_PLACE))


def copy_flat(dst, src):
    """Copy all of ``src`` into ``dst``, one flat array (a storage's ndarray or a PyTorch tensor on
    Taichi's GPU) to another of as many elements, in ``dst``'s type: one dispatch of ``copy_block``.
    Taichi queues its work on CUDA's legacy default stream, as PyTorch does unless the caller made
    another stream current (a blocking one still waits for it), so the copy is ordered after the
    work that wrote ``src`` and before the work that reads ``dst``."""
    from .kernels.sequence_copy import block_kernel
    n = int(src.shape[0])
    block_kernel()(dst, 0, n, src, 0, n, 1, n)


def _gpu_tensor_source(t, channels, staging):
    """A whole 3-D tensor on Taichi's GPU (``_on_taichi_gpu``): a copy of it as it is now, made by
    PyTorch on the device (the call may run later, from a command buffer), moved into the staging
    storage by one copy on the device when the call runs."""
    T, B, _ = t.shape
    dt = data_type_of(torch_dtype_name(t))   # float32 or float16: _whole_array took no other
    flat = t.reshape(-1).clone()
    storage = _new_storage(staging, "x", flat.shape[0], dt)

    def upload():
        copy_flat(storage.array, flat)
        storage.written()
    return Source(View(storage, 0, B * channels, channels), (B,) * T, dt, [upload], [])


def _shrink_error(name, rows):
    for t in range(1, len(rows)):
        if rows[t] > rows[t - 1]:
            return (f"{name}[{t}]: has {rows[t]} rows after {rows[t - 1]} rows at step {t - 1}; the row count "
                    f"may only shrink over time (a sequence that ends drops out)")
    return None


def _no_offsets(offsets, offsets_name):
    if offsets is not None:
        raise ValueError(f"{offsets_name}: offsets address the matrices of a list; a MatrixSequence is addressed "
                         f"as a whole (slice or view it instead)")


def _read_matrix_sequence(seq, name, channels, offsets, offsets_name):
    """A MatrixSequence is already one strided view: checked in O(1) (its rows were checked when made)."""
    _no_offsets(offsets, offsets_name)
    if len(seq) == 0:
        raise ValueError(f"{name}: the sequence is empty; expected at least one time step")
    if seq.columns != channels:
        raise ValueError(f"{name}: has {seq.columns} columns but the layer expects {channels} feature channels")
    if not seq._shrinks:
        raise ValueError(_shrink_error(name, seq.rows))
    return sequence_source(seq, [(seq.storage, *seq.span())])


def sequence_source(seq, spans=()):
    """The Source a checked MatrixSequence makes (``spans``: for the destination's alias check)."""
    return Source(_sequence_view(seq), seq.rows, seq.data_type, [], spans)


def sequence_destination(seq):
    """The Destination a checked MatrixSequence makes."""
    return Destination(_sequence_view(seq), seq, [], [seq.storage])


def _sequence_view(seq):
    """A MatrixSequence's strided view of its storage."""
    return View(seq.storage, seq._base, seq._step, seq._row_stride)


def _regular_view(items, offs):
    """A View over device matrices already laid out at a constant stride in one storage, else None."""
    if not all(isinstance(m, Matrix) for m in items):
        return None
    first = items[0]
    if any(m.storage is not first.storage or m.row_stride != first.row_stride for m in items):
        return None
    bases = [m.offset + o for m, o in zip(items, offs)]
    step = bases[1] - bases[0] if len(bases) > 1 else 0
    if any(b != bases[0] + t * step for t, b in enumerate(bases)):
        return None
    return View(first.storage, bases[0], step, first.row_stride)


def _packed(items, offs, rows, channels, data_type):
    """The steps packed into one host array, (T, rows[0], channels), zeros past each step's rows."""
    packed = np.zeros((len(items), rows[0], channels), NUMPY_TYPES[data_type])
    for t, (m, o) in enumerate(zip(items, offs)):
        a = m.host_view() if isinstance(m, Matrix) else m
        packed[t, : rows[t]] = a[:, o: o + channels]
    return packed


def _host_pack(items, offs, rows, channels, storage):
    """Host arrays packed now (the data as it is at the call) and uploaded when the call runs:
    validation of the other arguments comes first."""
    packed = _packed(items, offs, rows, channels, storage.data_type)
    return lambda: storage.upload(packed, owned=True)


def _on_host(m):
    """Whether the host reads matrix ``m`` without a transfer: its storage's host copy is current
    (uploaded, and no kernel has written it since: matrices made from NumPy), or the storage is the
    CPU's memory (``Storage.memory``)."""
    return m.storage.host_is_current() or m.storage.memory() is not None


def _gather(items, offs, rows, channels, storage):
    """Separate device matrices (host arrays among them), read when the call runs: a command
    buffer's earlier work may write them. Where the host reads each one without a transfer
    (``_on_host``: made from NumPy, or on the CPU) they are packed on the host and uploaded once.
    Else the plan copies them on the device, a dispatch a step inside its graph (9-18 µs each on
    CUDA by the launch probe, where a launch from Python took 34-62)."""
    def gather():
        if all(not isinstance(m, Matrix) or _on_host(m) for m in items):
            storage.upload(_packed(items, offs, rows, channels, storage.data_type), owned=True)
            return None
        mats = [(m, o) if isinstance(m, Matrix) else (Matrix.from_numpy(m[:, o: o + channels]), 0)
                for m, o in zip(items, offs)]
        storage.written()
        return step_binds("x", *zip(*mats))
    return gather


def prepare_destination(obj, name, rows, channels, data_type, offsets=None, offsets_name="destination_offsets",
                        sources=(), as_sequence=False, staging=None, role="y"):
    """Validate destinations for a sequence with ``rows`` per step; None allocates new matrices
    (a MatrixSequence with ``as_sequence``, else a list of Matrix views of one storage). Host
    destinations are written from ``staging``'s ``role`` storage where given (a :class:`Staging`)."""
    T, B = len(rows), rows[0]
    if (_whole_array(obj, channels, offsets) and tuple(obj.shape[:2]) == (T, B) and rows[-1] == B
            and (is_torch_tensor(obj) or obj.flags.writeable)):
        storage = _new_storage(staging, role, T * B * channels, DataType.FLOAT32)
        if _on_taichi_gpu(obj) and obj.is_contiguous():
            return _gpu_tensor_destination(obj, storage)
        return _host_block_destination(obj, storage)
    if obj is None:
        if offsets is not None:
            raise ValueError(f"{offsets_name}: offsets need destination matrices to apply to")
        storage = Storage(T * B * channels, data_type, recycled=True)   # (the layer writes what the views see)
        if as_sequence:
            result = MatrixSequence.view(storage, 0, B * channels, rows, channels, channels)
        else:
            result = [Matrix.view(storage, t * B * channels, rows[t], channels, channels) for t in range(T)]
        return Destination(View(storage, 0, B * channels, channels), result, [], [storage])
    if isinstance(obj, MatrixSequence):
        return _sequence_destination(obj, name, rows, channels, offsets, offsets_name, sources)
    if isinstance(obj, Matrix) or not isinstance(obj, (list, tuple)) and not isinstance(obj, np.ndarray) \
            and not is_torch_tensor(obj):
        raise TypeError(f"{name}: expected a list of {T} destination matrices (or None to allocate them), "
                        f"got {type(obj).__name__}")
    items = list(obj)
    if len(items) != T:
        raise ValueError(f"{name}: has {len(items)} matrices for a sequence of {T} steps")
    on_device = [isinstance(m, Matrix) for m in items]
    if any(on_device) and not all(on_device):
        raise TypeError(f"{name}: mix of mpsrnn.Matrix and host arrays; use one kind for all steps")
    if all(on_device):
        dst = _device_destination(items, name, rows, channels, offsets, offsets_name, sources, staging, role)
    else:
        dst = _host_destination(items, name, rows, channels, offsets, offsets_name, staging, role)
    if isinstance(obj, list):
        dst.result = obj  # encode returns the very list the caller passed
    return dst


def _sequence_destination(seq, name, rows, channels, offsets, offsets_name, sources):
    _no_offsets(offsets, offsets_name)
    if len(seq) != len(rows):
        raise ValueError(f"{name}: has {len(seq)} steps for a sequence of {len(rows)} steps")
    if seq.columns != channels:
        raise ValueError(f"{name}: has {seq.columns} columns but the layer writes {channels} feature channels")
    if seq.rows != tuple(rows):
        t = next(t for t, (a, b) in enumerate(zip(seq.rows, rows)) if a != b)
        raise ValueError(f"{name}[{t}]: has {seq.rows[t]} rows; step {t} of the sequence has {rows[t]}")
    first, end = seq.span()
    for storage, s_first, s_end in sources:
        if storage is seq.storage and first < s_end and s_first < end:
            raise ValueError(f"{name}: overlaps the source sequence; destinations may not alias sources")
    return sequence_destination(seq)


def _device_destination(items, name, rows, channels, offsets, offsets_name, sources, staging, role):
    dt = items[0].data_type
    offs = _offsets(offsets, offsets_name, len(items), NUMPY_TYPES[dt].itemsize)
    for t, m in enumerate(items):
        if m.data_type != dt:
            raise ValueError(f"{name}[{t}]: all steps must share one data type; step 0 is "
                             f"{dt.name.lower()}, step {t} is {m.data_type.name.lower()}")
        if m.rows != rows[t]:
            raise ValueError(f"{name}[{t}]: has {m.rows} rows; step {t} of the sequence has {rows[t]}")
        _check_columns(name, t, m.columns, channels, None if offs is None else offs[t], "the layer writes")
    offs = offs or [0] * len(items)
    _check_alias(items, offs, channels, name, sources)
    view = _regular_view(items, offs)
    storages = list({id(m.storage): m.storage for m in items}.values())
    if view is not None:
        return Destination(view, list(items), [], storages)
    T, B = len(rows), rows[0]
    sview = View(_new_storage(staging, role, T * B * channels, DataType.FLOAT32), 0, B * channels, channels)
    if items[0].storage.memory() is None:
        # the plan copies the staged sequence to the matrices, a dispatch a step (``step_binds``)
        return Destination(sview, list(items), [], storages, step_binds(role, items, offs))

    def scatter():   # the CPU: the host writes the matrices' memory (~8 µs a step less than a dispatch)
        staged = sview.storage.host().reshape(T, B, channels)
        for t, (m, o) in enumerate(zip(items, offs)):
            m.rows_in(m.storage.memory(), o, channels)[...] = staged[t, : rows[t]]
    return Destination(sview, list(items), [scatter], storages)


def _check_alias(items, offs, channels, name, sources):
    """Destinations may not overlap source matrices (MPS forbids aliasing). O(T log T)."""
    spans = {}
    for storage, first, end in sources:
        spans.setdefault(id(storage), []).append((first, end))
    if not spans:
        return
    merged = {}
    for key, ivs in spans.items():   # disjoint, sorted intervals per storage
        ivs.sort()
        out = [list(ivs[0])]
        for first, end in ivs[1:]:
            if first <= out[-1][1]:
                out[-1][1] = max(out[-1][1], end)
            else:
                out.append([first, end])
        merged[key] = ([a for a, _ in out], [b for _, b in out])
    for t, (m, o) in enumerate(zip(items, offs)):
        if id(m.storage) not in merged:
            continue
        starts, ends = merged[id(m.storage)]
        first = m.offset + o
        end = first + (m.rows - 1) * m.row_stride + channels
        k = bisect.bisect_right(starts, first) - 1   # the last source interval starting at or before us
        if (k >= 0 and ends[k] > first) or (k + 1 < len(starts) and starts[k + 1] < end):
            raise ValueError(f"{name}[{t}]: overlaps a source matrix; destinations may not alias sources")


def _host_block_destination(obj, staging):
    """A whole 3-D host array (``_whole_array``, of the sequence's shape), written in one copy. The
    call returns the array itself, whose items are its steps: a list of them cost ~0.08 µs a step
    for NumPy and ~2.3 for PyTorch (4.6 ms at 2000 steps, for the tensor's views)."""
    T, B, channels = obj.shape

    def copy_out():
        _fill(obj if isinstance(obj, np.ndarray) else obj.detach(), staging.host().reshape(T, B, channels))
    return Destination(View(staging, 0, B * channels, channels), obj, [copy_out], [staging])


def _gpu_tensor_destination(obj, staging):
    """A whole 3-D contiguous tensor on Taichi's GPU (``_on_taichi_gpu``), written by one copy on the
    device from the storage the layer writes; the call returns the tensor."""
    _, B, channels = obj.shape
    flat = obj.detach().view(-1)
    return Destination(View(staging, 0, B * channels, channels), obj,
                       [lambda: copy_flat(flat, staging.array)], [staging])


def _host_destination(items, name, rows, channels, offsets, offsets_name, staging, role):
    """NumPy arrays or PyTorch tensors to fill in place once the layer has run."""
    arrays, types = [], []
    for t, m in enumerate(items):
        if isinstance(m, np.ndarray):
            a = m
            if not a.flags.writeable:
                raise ValueError(f"{name}[{t}]: the array is read-only")
        elif is_torch_tensor(m):
            a = m.detach()
        else:
            raise TypeError(f"{name}[{t}]: expected a mpsrnn.Matrix, NumPy array or PyTorch tensor, "
                            f"got {type(m).__name__}")
        if len(a.shape) != 2:
            raise ValueError(f"{name}[{t}]: expected a 2-D matrix, got shape {tuple(a.shape)}")
        dt = data_type_of(as_numpy(a[:0], name).dtype)
        if dt is None:
            raise ValueError(f"{name}[{t}]: dtype {a.dtype} is not supported; expected float32 or float16")
        if a.shape[0] != rows[t]:
            raise ValueError(f"{name}[{t}]: has {a.shape[0]} rows; step {t} of the sequence has {rows[t]}")
        arrays.append(a)
        types.append(dt)
    if len(set(types)) > 1:
        raise ValueError(f"{name}: all steps must share one data type")
    offs = _offsets(offsets, offsets_name, len(items), NUMPY_TYPES[types[0]].itemsize)
    for t, a in enumerate(arrays):
        _check_columns(name, t, a.shape[1], channels, None if offs is None else offs[t], "the layer writes")
    offs = offs or [0] * len(items)
    T, B = len(rows), rows[0]
    staging = _new_storage(staging, role, T * B * channels, DataType.FLOAT32)

    def copy_out():
        host = staging.host().reshape(T, B, channels)
        for t, (a, o) in enumerate(zip(arrays, offs)):
            _fill(a[:, o: o + channels], host[t, : rows[t]])
    return Destination(View(staging, 0, B * channels, channels), list(items), [copy_out], [staging])


def _fill(target, values):
    """Write ``values`` (NumPy, from a storage's host copy) into ``target``: a NumPy array, or a
    PyTorch tensor (detached), in its own type."""
    if isinstance(target, np.ndarray):
        target[...] = values
    else:
        import torch
        target.copy_(torch.from_numpy(values.copy()))
