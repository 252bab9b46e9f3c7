"""Device-resident matrices (MPSMatrix).

A :class:`Matrix` is a view into a :class:`Storage`, one flat Taichi ndarray: an
element offset, ``rows``, ``columns`` and a row stride (MPS's rowBytes). The
layers write whole sequences into one storage and hand out per-step views, so a
sequence costs one allocation and one transfer, and feeding a layer's output to
another layer reads it in place.

The host copy of a storage is cached and invalidated whenever a kernel writes
the storage, so converting T views of one storage to NumPy is one transfer.
"""
import ctypes
import weakref
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from . import cuda_copy
from .arrays import as_numpy
from .backend import current_arch, ensure_init
from .enums import DataType, coerce_enum

NUMPY_TYPES = {DataType.FLOAT32: np.dtype(np.float32), DataType.FLOAT16: np.dtype(np.float16)}


def data_type_of(np_dtype):
    """DataType of a NumPy dtype, or None if it is not float32/float16."""
    for dt, nt in NUMPY_TYPES.items():
        if np.dtype(np_dtype) == nt:
            return dt
    return None


class Storage:
    """A flat device buffer of float32 or float16 that matrices view.

    A new one is zero-filled. With ``recycled``, its array may come from a storage made the same way
    that nothing references any more (``RECYCLED``), with that storage's contents: for the outputs
    of a layer, which writes every element that can be seen through them. A new Taichi ndarray
    costs ~40-130 µs on the CPU (Taichi formats the Python stack for its debug record, then
    zero-fills it), so a loop of calls that each return new outputs, the last ones dropped, pays it
    once. A recycled storage takes its
    array when it is first used: a call that fails its checks afterwards takes none."""

    def __init__(self, size, data_type, recycled=False):
        ensure_init()
        self.data_type = DataType(data_type)
        self.size = int(size)
        self._array = None if recycled else self._new_array()
        self._version = 0
        self._host = None
        self._host_version = -1
        self._memory = None

    def _new_array(self):
        import taichi as ti
        return ti.ndarray(ti.f32 if self.data_type == DataType.FLOAT32 else ti.f16, (max(self.size, 1),))

    @property
    def array(self):
        """The Taichi ndarray that holds the storage."""
        if self._array is None:
            key = (self.size, self.data_type)
            self._array = RECYCLED.take(key)
            if self._array is None:
                self._array = self._new_array()
            weakref.finalize(self, RECYCLED.give, key, self._array, taichi_program()).atexit = False
        return self._array

    @classmethod
    def from_host(cls, flat):
        s = cls(flat.size, data_type_of(flat.dtype))
        s.upload(flat)
        return s

    @property
    def itemsize(self):
        return NUMPY_TYPES[self.data_type].itemsize

    def written(self):
        """Mark the device contents as changed (drops the cached host copy)."""
        self._version += 1

    def host_is_current(self):
        """Whether the cached host copy holds what the device holds (no kernel wrote it since)."""
        return self._host_version == self._version

    def memory(self):
        """On the CPU, the storage's own memory as a writable NumPy array (no copy: there the
        device's memory is the host's, and Taichi's launches return once their tasks are done), else
        None. Whoever writes it marks the storage ``written``. Moving 3,200 floats this way takes
        ~1 µs, where Taichi's ``from_numpy``/``to_numpy`` took 85-90 (a parallel kernel that wakes
        the thread pool) and a serial copy kernel ~22 (2-core AMD EPYC VM)."""
        if self._memory is None and current_arch() == "cpu":
            self._memory = cpu_memory(self.array, max(self.size, 1), NUMPY_TYPES[self.data_type])[: self.size]
        return self._memory

    def host(self):
        """The whole buffer as a read-only NumPy array (cached until the next write)."""
        if self._host_version != self._version:
            memory = self.memory()
            self._host = memory.copy() if memory is not None else self._download()
            self._host.flags.writeable = False
            self._host_version = self._version
        return self._host

    def _download(self):
        """The device's contents, copied to a new host array (on CUDA by the driver's memcpy,
        ``cuda_copy``, where Taichi's ``to_numpy`` allocates, copies twice and frees)."""
        if current_arch() == "cuda":
            out = np.empty(self.size, NUMPY_TYPES[self.data_type])
            if not self.size or cuda_copy.to_host(self.array, out):
                return out
        return self.array.to_numpy()[: self.size]

    def upload(self, flat, owned=False):
        """Write ``flat`` (all ``size`` values) to the device. It becomes the cached host copy: with
        ``owned`` as it is (the caller made it for this and lets it go), else as a copy."""
        given = flat
        flat = np.ascontiguousarray(flat, dtype=NUMPY_TYPES[self.data_type]).reshape(-1)
        if flat.size != self.size:
            raise ValueError(f"internal: uploading {flat.size} values into a storage of {self.size}")
        memory = self.memory()
        if memory is not None:
            memory[...] = flat
        elif self.size and not (current_arch() == "cuda" and cuda_copy.to_device(self.array, flat)):
            self.array.from_numpy(flat)
        self.written()
        self._host = flat if owned or not np.may_share_memory(flat, given) else flat.copy()
        self._host.flags.writeable = False
        self._host_version = self._version


def cpu_memory(array, count, dtype):
    """The ``count`` elements of a Taichi ndarray on the CPU as a NumPy array over the same memory.
    It must not outlive ``array`` (a Storage keeps both)."""
    import taichi as ti
    address = ti.lang.impl.get_runtime().prog.get_ndarray_data_ptr_as_int(array.arr)
    return np.frombuffer((ctypes.c_char * (count * dtype.itemsize)).from_address(address), dtype)


class Recycled:
    """The arrays of recycled storages (``Storage(recycled=True)``) that nothing references any more,
    by (size, data type): at most ``per_size`` of a size and ``limit`` bytes in all, the sizes given
    least recently dropped first. They belong to one Taichi program: arrays of another (before a
    ``ti.init`` again) are dropped. ``poison``, for tests: each array is filled with NaN when taken,
    so that an output element a layer leaves unwritten shows."""

    def __init__(self, per_size=2, limit=64 << 20):
        self.per_size, self.limit = per_size, limit
        self.poison = False
        self._arrays = OrderedDict()   # (size, data type) -> [array]
        self._bytes = 0
        self._program = None

    @staticmethod
    def _nbytes(key):
        return max(key[0], 1) * NUMPY_TYPES[key[1]].itemsize

    def _kept_for(self, program):
        """The pool, emptied first if it held another program's arrays."""
        if program is not self._program:
            self._arrays.clear()
            self._bytes = 0
            self._program = program
        return self._arrays

    def take(self, key):
        arrays = self._kept_for(taichi_program()).get(key)
        if not arrays:
            return None
        array = arrays.pop()
        if not arrays:
            del self._arrays[key]
        self._bytes -= self._nbytes(key)
        if self.poison:
            array.fill(float("nan"))
        return array

    def give(self, key, array, program):
        nbytes = self._nbytes(key)
        if program is not taichi_program() or nbytes > self.limit:
            return   # (dropped: Taichi frees it, or has already)
        arrays = self._kept_for(program).setdefault(key, [])
        self._arrays.move_to_end(key)
        if len(arrays) == self.per_size:
            return
        arrays.append(array)
        self._bytes += nbytes
        while self._bytes > self.limit:
            oldest, kept = next(iter(self._arrays.items()))
            kept.pop(0)
            self._bytes -= self._nbytes(oldest)
            if not kept:
                del self._arrays[oldest]


def taichi_program():
    """The Taichi program arrays are made in now (None before ``ti.init``)."""
    import taichi as ti
    return ti.lang.impl.get_runtime().prog


RECYCLED = Recycled()


class Matrix:
    """A device-resident 2-D array: ``rows`` × ``columns`` of float32 or float16.

    For RNN layers, rows are the sequences of a batch and columns the feature
    channels. ``Matrix(rows, columns)`` is zero-filled; ``Matrix.from_numpy(a)``
    uploads an array; ``np.asarray(m)`` / ``m.numpy()`` read it back.
    """

    def __init__(self, rows, columns, data_type=DataType.FLOAT32, *, row_bytes=None):
        rows = _positive(rows, "rows")
        columns = _positive(columns, "columns")
        data_type = coerce_enum(DataType, data_type, "data_type")
        itemsize = NUMPY_TYPES[data_type].itemsize
        stride = columns
        if row_bytes is not None:
            rb = _positive(row_bytes, "row_bytes")
            if rb % itemsize or rb // itemsize < columns:
                raise ValueError(f"row_bytes: expected a multiple of {itemsize} of at least "
                                 f"{columns * itemsize} bytes for {columns} columns, got {rb}")
            stride = rb // itemsize
        storage = Storage(rows * stride, data_type)   # zero-filled (a new, not recycled, Taichi ndarray)
        self._bind(storage, 0, rows, columns, stride)

    def _bind(self, storage, offset, rows, columns, row_stride):
        self._storage = storage
        self._offset = offset
        self._rows = rows
        self._columns = columns
        self._row_stride = row_stride

    @classmethod
    def view(cls, storage, offset, rows, columns, row_stride):
        """A matrix over part of an existing storage (element units)."""
        m = cls.__new__(cls)
        m._bind(storage, int(offset), int(rows), int(columns), int(row_stride))
        return m

    @classmethod
    def from_numpy(cls, array, data_type=None):
        """Upload a 2-D array (NumPy or PyTorch). Without ``data_type`` it must be float32 or float16;
        with it, any real array is converted."""
        a = as_numpy(array, "array")
        if a.ndim != 2:
            raise ValueError(f"array: expected a 2-D array (rows, columns), got shape {a.shape}")
        if data_type is None:
            dt = data_type_of(a.dtype)
            if dt is None:
                raise ValueError(f"array: dtype {a.dtype} is not supported; expected float32 or float16 "
                                 f"(or pass data_type= to convert)")
        else:
            dt = coerce_enum(DataType, data_type, "data_type")
            if a.dtype.kind not in "fiu":
                raise ValueError(f"array: expected real numbers, got dtype {a.dtype}")
        if a.shape[0] < 1 or a.shape[1] < 1:
            raise ValueError(f"array: a matrix needs at least one row and one column, got shape {a.shape}")
        flat = np.ascontiguousarray(a, dtype=NUMPY_TYPES[dt]).reshape(-1)
        return cls.view(Storage.from_host(flat), 0, a.shape[0], a.shape[1], a.shape[1])

    # -- properties --------------------------------------------------------
    @property
    def rows(self):
        return self._rows

    @property
    def columns(self):
        return self._columns

    @property
    def shape(self):
        return (self._rows, self._columns)

    @property
    def data_type(self):
        return self._storage.data_type

    @property
    def dtype(self):
        return NUMPY_TYPES[self._storage.data_type]

    @property
    def row_bytes(self):
        return self._row_stride * self._storage.itemsize

    @property
    def row_stride(self):
        """Elements between the starts of two rows."""
        return self._row_stride

    @property
    def storage(self):
        return self._storage

    @property
    def offset(self):
        """Element offset of this matrix in its storage."""
        return self._offset

    def span(self):
        """[first, last + 1) elements of the storage this matrix covers."""
        return self._offset, self._offset + (self._rows - 1) * self._row_stride + self._columns

    # -- conversions -------------------------------------------------------
    def numpy(self):
        """A NumPy copy (float32 or float16)."""
        return self.host_view().copy()

    def host_view(self):
        """A read-only view of the storage's host copy (a transfer where it is not current)."""
        return self.rows_in(self._storage.host())

    def rows_in(self, flat, first_column=0, columns=None):
        """The matrix's rows, ``columns`` of them (all by default) from ``first_column`` on, as a
        view of ``flat``: one of its storage's whole arrays (the host copy, or on the CPU the
        storage's memory), read at the matrix's row stride (its span lies inside the storage)."""
        item = flat.itemsize
        return np.ndarray((self._rows, self._columns if columns is None else columns), flat.dtype, flat,
                          (self._offset + first_column) * item, (self._row_stride * item, item))

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def __repr__(self):
        return f"Matrix({self._rows}x{self._columns}, {self.data_type.name.lower()})"


def _positive(v, name):
    if isinstance(v, bool) or not hasattr(v, "__index__"):
        raise TypeError(f"{name}: expected a positive integer, got {v!r}")
    v = int(v)
    if v < 1:
        raise ValueError(f"{name}: expected a positive integer, got {v}")
    return v


class MatrixSequence(Sequence):
    """A whole sequence of matrices in one device storage, step t's rows at ``base + t·step``.

    It reads like a list of :class:`Matrix` (``len``, ``seq[t]``, iteration, slices),
    but a layer takes it as one object: checking and binding it costs the same for
    10 steps or 10 000, where a list of matrices costs a little per step. Layers
    return one when given one. Rows may shrink over time (``rows`` per step).

    ``MatrixSequence(steps, rows, columns)`` is zero-filled (``rows`` an int or one
    per step); ``MatrixSequence.from_numpy(a)`` takes a 3-D array (steps, rows,
    columns) or a list of 2-D arrays.
    """

    def __init__(self, steps, rows, columns, data_type=DataType.FLOAT32):
        steps = _positive(steps, "steps")
        rows = _rows_per_step(rows, steps)
        columns = _positive(columns, "columns")
        data_type = coerce_enum(DataType, data_type, "data_type")
        storage = Storage(steps * rows[0] * columns, data_type)   # zero-filled, as Matrix's
        self._bind(storage, 0, rows[0] * columns, rows, columns, columns)

    def _bind(self, storage, base, step, rows, columns, row_stride):
        self._storage = storage
        self._base = base
        self._step = step
        self._rows = tuple(rows)
        self._columns = columns
        self._row_stride = row_stride
        self._shrinks = all(a >= b for a, b in zip(self._rows, self._rows[1:]))

    @classmethod
    def view(cls, storage, base, step, rows, columns, row_stride):
        seq = cls.__new__(cls)
        seq._bind(storage, int(base), int(step), tuple(int(r) for r in rows), int(columns), int(row_stride))
        return seq

    @classmethod
    def from_numpy(cls, array, data_type=None):
        """Upload a 3-D array (steps, rows, columns), or a list of 2-D arrays whose rows shrink."""
        if isinstance(array, (list, tuple)):
            arrays = [as_numpy(a, f"array[{t}]") for t, a in enumerate(array)]
            if not arrays or any(a.ndim != 2 for a in arrays):
                raise ValueError("array: expected a non-empty list of 2-D arrays (rows, columns)")
            if len({a.shape[1] for a in arrays}) != 1:
                raise ValueError("array: every step needs the same number of columns")
            rows = [a.shape[0] for a in arrays]
            padded = np.zeros((len(arrays), max(rows), arrays[0].shape[1]), arrays[0].dtype)
            for t, a in enumerate(arrays):
                padded[t, : a.shape[0]] = a
            a, rows = padded, rows
        else:
            a = as_numpy(array, "array")
            if a.ndim != 3:
                raise ValueError(f"array: expected a 3-D array (steps, rows, columns), got shape {a.shape}")
            rows = [a.shape[1]] * a.shape[0]
        if min(a.shape) < 1:
            raise ValueError(f"array: every dimension needs at least one element, got shape {a.shape}")
        flat = Matrix.from_numpy(a.reshape(-1, a.shape[2]), data_type)
        steps, width, columns = a.shape
        return cls.view(flat.storage, 0, width * columns, rows, columns, columns)

    # -- the list protocol ----------------------------------------------------
    def __len__(self):
        return len(self._rows)

    def __getitem__(self, t):
        if isinstance(t, slice):
            start, stop, stride = t.indices(len(self))
            if stride != 1:
                raise ValueError("MatrixSequence slices take consecutive steps (step 1)")
            stop = max(stop, start)
            return MatrixSequence.view(self._storage, self._base + start * self._step, self._step,
                                       self._rows[start:stop], self._columns, self._row_stride)
        t = range(len(self))[t]
        return Matrix.view(self._storage, self._base + t * self._step, self._rows[t], self._columns,
                           self._row_stride)

    # -- properties -----------------------------------------------------------
    @property
    def rows(self):
        """Rows (sequences present) at each step."""
        return self._rows

    @property
    def columns(self):
        return self._columns

    @property
    def data_type(self):
        return self._storage.data_type

    @property
    def storage(self):
        return self._storage

    def numpy(self):
        """The steps as a list of 2-D NumPy arrays (one transfer for all of them)."""
        return [m.numpy() for m in self]

    def __array__(self, dtype=None, copy=None):
        """The steps as one (steps, rows, columns) array: one transfer and one copy, whatever the
        number of steps (strided views of the host copy, where a stack of per-step copies cost ~1.5
        µs a step)."""
        if len(set(self._rows)) != 1:
            raise ValueError("a MatrixSequence whose rows shrink has no 3-D array form; use .numpy()")
        flat = self._storage.host()
        item = flat.itemsize
        a = np.ndarray((len(self._rows), self._rows[0], self._columns), flat.dtype, flat, self._base * item,
                       (self._step * item, self._row_stride * item, item)).copy()
        return a if dtype is None else a.astype(dtype)

    def span(self):
        """[first, last + 1) elements of the storage the sequence covers."""
        ends = [self._base + t * self._step + (r - 1) * self._row_stride + self._columns
                for t, r in ((0, self._rows[0]), (len(self) - 1, self._rows[-1]))]
        return min(self._base, self._base + (len(self) - 1) * self._step), max(ends)

    def __repr__(self):
        return f"MatrixSequence({len(self)} steps, rows={self._rows[0]}..{self._rows[-1]}, columns={self._columns}, " \
               f"{self.data_type.name.lower()})"


def _rows_per_step(rows, steps):
    if hasattr(rows, "__index__"):
        return (_positive(rows, "rows"),) * steps
    rows = tuple(_positive(r, "rows") for r in rows)
    if len(rows) != steps:
        raise ValueError(f"rows: expected {steps} row counts (one per step), got {len(rows)}")
    return rows
