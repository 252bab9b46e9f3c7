"""Host <-> device copies of a storage on Taichi's CUDA backend, by the CUDA driver's own memcpy.

Taichi's ``from_numpy``/``to_numpy`` on CUDA run a kernel on the host array, which Taichi moves
into a device buffer it allocates for that launch and back out of it afterwards: an allocation,
two copies, a free and a synchronisation for each transfer, either way. On the H200 a call of
LSTM 64 b1 t1000 with a NumPy array in and out (256 KB each way) took 1409 µs, against 802 with
its data already on the device (``bench/probes/call_forms.py``).

Taichi's LLVM backends allocate an ndarray as plain device memory, and Taichi hands out its
address (``get_ndarray_data_ptr_as_int``). ``cuMemcpyHtoD``/``cuMemcpyDtoH`` move the bytes in one
copy. Both are synchronous copies on CUDA's legacy default stream, on which Taichi launches its
kernels: a copy in waits for the kernels queued before it (a call of the layer still reading the
staging storage) and the kernels after it wait for the copy; a copy out returns once the kernels
before it are done and the bytes are on the host.

Used only where it can be checked: the driver library loads, and the ndarray's memory belongs to
the device's primary context (the one Taichi 1.7.4 runs in, as PyTorch does), or to no context (a
memory pool's, which every context of the device reaches). Otherwise, or on any error from the
driver, Taichi's own transfers, for the rest of the process. ``MPSRNN_CUDA_MEMCPY=on|off`` (read at
the first transfer) decides; by default off (``DRIVER_COPIES``) until it has run on CUDA.
"""
import ctypes

from .kernels.knobs import switch

CU_POINTER_ATTRIBUTE_CONTEXT = 1
DRIVER_COPIES = False   # the default of MPSRNN_CUDA_MEMCPY: off until a CUDA run has passed
# tests/test_matrix_inference.py's test_cuda_host_transfers_by_the_driver (written 2026-12-05, when no
# GPU machine could be started) and call_forms.py has timed it

_driver = None   # None: not tried yet; False: not usable; else (library, primary context)


def _load():
    """The driver library and device 0's primary context (retained: it lives as long as the
    process), or False."""
    if not switch("MPSRNN_CUDA_MEMCPY", DRIVER_COPIES):
        return False
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    lib.cuMemcpyHtoD_v2.argtypes = [ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t]
    lib.cuMemcpyDtoH_v2.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_size_t]
    lib.cuPointerGetAttribute.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64]
    lib.cuCtxPushCurrent_v2.argtypes = [ctypes.c_void_p]
    device, context = ctypes.c_int(), ctypes.c_void_p()
    if lib.cuDeviceGet(ctypes.byref(device), 0) or lib.cuDevicePrimaryCtxRetain(ctypes.byref(context), device):
        return False
    return lib, context


def _copy(array, transfer):
    """Run ``transfer(lib, address)`` (a driver call returning its status) on ``array``'s device
    memory, in the primary context; False where that path is not usable (then never again)."""
    global _driver
    if _driver is None:
        _driver = _load()
    if not _driver:
        return False
    import taichi as ti
    lib, context = _driver
    address = ti.lang.impl.get_runtime().prog.get_ndarray_data_ptr_as_int(array.arr)
    current = ctypes.c_void_p()
    lib.cuCtxGetCurrent(ctypes.byref(current))
    pushed = current.value != context.value
    if pushed and lib.cuCtxPushCurrent_v2(context):
        _driver = False
        return False
    try:
        owner = ctypes.c_void_p()
        if (lib.cuPointerGetAttribute(ctypes.byref(owner), CU_POINTER_ATTRIBUTE_CONTEXT, address)
                or owner.value not in (None, context.value) or transfer(lib, address)):
            _driver = False
            return False
        return True
    finally:
        if pushed:
            lib.cuCtxPopCurrent_v2(ctypes.byref(ctypes.c_void_p()))


def to_device(array, flat):
    """Copy the contiguous NumPy array ``flat`` into the start of the ndarray ``array``; False
    where this path is not usable (the caller then uses Taichi's ``from_numpy``)."""
    return _copy(array, lambda lib, address: lib.cuMemcpyHtoD_v2(address, flat.ctypes.data, flat.nbytes))


def to_host(array, out):
    """Copy the start of the ndarray ``array`` into the contiguous NumPy array ``out``; False where
    this path is not usable (the caller then uses Taichi's ``to_numpy``)."""
    return _copy(array, lambda lib, address: lib.cuMemcpyDtoH_v2(out.ctypes.data, address, out.nbytes))


def in_use():
    """Whether the driver's copies are in use (after a first transfer; for tests and probes)."""
    return bool(_driver)
