"""Choosing and starting the Taichi backend, once per process."""
import contextlib
import io
import functools
import os
import platform
import sys

from .kernels.knobs import switch

ARCHS = ("metal", "cuda", "vulkan", "cpu")
_current = None


def current_arch():
    """The arch name in use, or None before ``init``."""
    return _current


def _ti_arch(name):
    import taichi as ti
    return {"metal": ti.metal, "cuda": ti.cuda, "vulkan": ti.vulkan, "cpu": ti.cpu}[name]


def _available(name):
    """Whether Taichi can run on ``name`` here (without starting it)."""
    if name == "cpu":
        return True
    if name == "metal" and sys.platform != "darwin":
        return False
    import taichi as ti
    from taichi.lang.misc import is_arch_supported
    ti.set_logging_level(ti.ERROR)  # probing a missing driver is not worth a warning
    try:
        return bool(is_arch_supported(_ti_arch(name)))
    finally:
        ti.set_logging_level(ti.WARN)


def best_available_arch():
    """The arch ``init('auto')`` picks: metal on macOS, else cuda, else vulkan on a GPU, else cpu.

    A Vulkan driver that runs on the CPU (lavapipe, SwiftShader) is passed over: it is slower than
    the CPU backend, and lavapipe silently cuts long shader loops short (a whole-sequence kernel
    then leaves outputs unwritten). ``arch="vulkan"`` still runs on one, as the tests do."""
    order = ("metal",) if sys.platform == "darwin" else ("cuda", "vulkan")
    for name in order:
        if _available(name) and not (name == "vulkan" and _vulkan_on_cpu_only()):
            return name
    return "cpu"


VK_PHYSICAL_DEVICE_TYPE_CPU = 4


def _vulkan_on_cpu_only():
    """Whether every Vulkan device here is a CPU implementation (False when it cannot tell)."""
    types = vulkan_device_types()
    return bool(types) and all(t == VK_PHYSICAL_DEVICE_TYPE_CPU for t in types)


def vulkan_device_types():
    """The VkPhysicalDeviceType of each Vulkan device (an empty list without a Vulkan loader)."""
    return [t for t, _ in _vulkan_devices()]


def vulkan_gpu_is_cuda_device():
    """Whether the Vulkan GPU (the first device that is not a CPU implementation, as ``device_name``
    says) is CUDA device 0 by name: the device whose SMs ``gpu_multiprocessors`` counts. False
    without either."""
    gpus = [name for t, name in _vulkan_devices() if t != VK_PHYSICAL_DEVICE_TYPE_CPU]
    return bool(gpus) and bool(gpus[0]) and gpus[0] == _cuda_device_name()


@functools.lru_cache(maxsize=None)
def _vulkan_devices():
    """(VkPhysicalDeviceType, name) of each Vulkan device, through the loader (an empty list without
    one). Asked directly, since Taichi does not say which devices there are."""
    import ctypes
    try:
        lib = ctypes.CDLL("libvulkan.so.1" if sys.platform.startswith("linux") else
                          "vulkan-1.dll" if sys.platform == "win32" else "libvulkan.1.dylib")
    except OSError:
        return []

    class InstanceCreateInfo(ctypes.Structure):
        _fields_ = [("sType", ctypes.c_int), ("pNext", ctypes.c_void_p), ("flags", ctypes.c_uint32),
                    ("pApplicationInfo", ctypes.c_void_p), ("enabledLayerCount", ctypes.c_uint32),
                    ("ppEnabledLayerNames", ctypes.c_void_p), ("enabledExtensionCount", ctypes.c_uint32),
                    ("ppEnabledExtensionNames", ctypes.c_void_p)]

    info = InstanceCreateInfo(sType=1)   # VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO
    instance = ctypes.c_void_p()
    if lib.vkCreateInstance(ctypes.byref(info), None, ctypes.byref(instance)) != 0:
        return []
    try:
        count = ctypes.c_uint32()
        if lib.vkEnumeratePhysicalDevices(instance, ctypes.byref(count), None) != 0:
            return []
        devices = (ctypes.c_void_p * count.value)()
        if lib.vkEnumeratePhysicalDevices(instance, ctypes.byref(count), devices) != 0:
            return []
        found = []
        for dev in devices[: count.value]:
            # VkPhysicalDeviceProperties (824 bytes): four uint32, deviceType, then deviceName[256]
            props = (ctypes.c_uint32 * 1024)()
            lib.vkGetPhysicalDeviceProperties(ctypes.c_void_p(dev), props)
            name = ctypes.string_at(ctypes.addressof(props) + 20, 256).split(b"\0", 1)[0]
            found.append((int(props[4]), name.decode(errors="replace")))
        return found
    finally:
        lib.vkDestroyInstance(instance, None)


def resolve_arch(arch=None):
    """The arch name ``init(arch)`` starts: ``arch``, else ``MPSRNN_ARCH``, else (or for "auto")
    ``best_available_arch``. Checks the name only, not that the arch runs here."""
    requested = (arch or "").strip().lower() or os.environ.get("MPSRNN_ARCH", "").strip().lower() or "auto"
    if requested not in ARCHS + ("auto",):
        raise ValueError(f"arch: expected one of {', '.join(ARCHS)} or 'auto', got {requested!r}")
    return best_available_arch() if requested == "auto" else requested


def init(arch=None):
    """Pick and start the Taichi backend; returns the arch name in use.

    ``arch`` is "metal", "cuda", "vulkan", "cpu", or None/"auto" (metal on macOS, else
    cuda, else vulkan on a GPU, else cpu: ``best_available_arch``). With ``arch=None`` the environment variable
    ``MPSRNN_ARCH`` decides when set. A second call with the same arch, or with
    None/"auto", is a no-op; asking for another arch is an error (a process runs on one).
    """
    global _current
    if arch is not None and not isinstance(arch, str):
        raise TypeError(f"arch: expected one of {', '.join(ARCHS)} or 'auto' as a string, got {arch!r}")
    requested = (arch or "").strip().lower()
    if _current is not None:
        if requested in ("", "auto", _current):
            return _current
        raise RuntimeError(f"arch: mpsrnn is already running on {_current!r} in this process and cannot "
                           f"switch to {requested!r}; start a new process (or set MPSRNN_ARCH) to use another arch")
    name = resolve_arch(requested)
    if not _available(name):
        raise RuntimeError(f"arch: Taichi cannot run on {name!r} on this machine "
                           f"(no {name} device or driver found); try 'auto' or 'cpu'")
    import taichi as ti
    # fast_math off: float32 results must match a float64 reference to ~1e-5 relative.
    # On the CPU and CUDA vectors stay whole (real_matrix_scalarize off), so the CPU's lane-packed
    # products compile to vector instructions (kernels/lanes.py) and CUDA reads the persistent
    # kernel's weight quads with 128-bit loads (kernels/quads.py). MPSRNN_CUDA_SCALARIZE=on gives
    # CUDA Taichi's default back, for A/B runs.
    from . import cpu_threads
    before = cpu_threads.thread_ids() if name == "cpu" else None   # (to tell the threads ti.init starts)
    with contextlib.redirect_stdout(io.StringIO()):  # Taichi prints a start-up line
        ti.init(arch=_ti_arch(name), enable_fallback=False, fast_math=False, offline_cache=True,
                default_fp=ti.f32, default_ip=ti.i32, log_level=ti.WARN, real_matrix_scalarize=_scalarizes(name),
                advanced_optimization=_optimizes(name))
    _current = name
    if name == "cpu":
        cpu_threads.PINNED.update(cpu_threads.pin_pool(cpu_threads.thread_ids() - before))
    return name


def _scalarizes(name):
    """Whether Taichi splits vectors into scalars on ``name`` (see ``init``)."""
    scalarize_cuda = switch("MPSRNN_CUDA_SCALARIZE", False)
    if name == "cuda":
        return scalarize_cuda
    return name != "cpu"


ADVANCED_OPTIMIZATION = True   # Taichi's own IR optimisations, on every arch (``_optimizes``)


def _optimizes(name):
    """Whether Taichi runs its own IR optimisations (``advanced_optimization``) on ``name``'s kernels:
    by default yes. They are most of a cold compile on the CPU (this project's 2-core VM: the lanes
    LSTM kernel 79 s with them, 8 s without), but the kernels run slower without them (CPU smoke
    suite, µs a step, on / off: LSTM 256 b1 t50 11.0-17.5 / 19.2-20.4, GRU 128 b2 8.2-9.4 / 11.2-11.6,
    RNN 128 b4 6.5-6.9 / 9.3). On the H200's CUDA they changed neither speed (11 layers, ratio to
    cuDNN in two processes each way, on / off: LSTM 32 b1 1.04, 1.06 / 1.06, 1.06; GRU 2560 b4
    1.01, 1.03 / 1.01, 1.01; LSTM 2048 b1 0.62, 0.60 / 0.61, 0.60) nor compile time much. The CPU
    test session turns them off (``tests/conftest.py``), where compiles, not kernel speed, are the
    cost. ``MPSRNN_ADVANCED_OPTIMIZATION=on|off`` decides."""
    return switch("MPSRNN_ADVANCED_OPTIMIZATION", ADVANCED_OPTIMIZATION)


def ensure_init():
    """``init()`` unless already initialised (what every first use of the library calls)."""
    return _current if _current is not None else init()


def sync():
    """Wait for all submitted device work."""
    if _current is not None:
        import taichi as ti
        ti.sync()


def device_name():
    """A human-readable name of the device in use (best effort)."""
    arch = _current
    if arch == "vulkan":   # the loader's name for it, a GPU's before a CPU implementation's
        named = sorted(_vulkan_devices(), key=lambda d: d[0] == VK_PHYSICAL_DEVICE_TYPE_CPU)
        if named and named[0][1]:
            return named[0][1]
    if arch in ("cuda", "vulkan"):
        name = _cuda_device_name()
        if name:
            return name
        return f"{arch} device"
    if arch == "metal":
        return _run(["sysctl", "-n", "machdep.cpu.brand_string"]) or "Apple GPU"
    return _cpu_name()


@functools.lru_cache(maxsize=None)
def gpu_multiprocessors():
    """Streaming multiprocessors of CUDA device 0 (what a persistent grid may occupy), else 1. Asked
    once per process: the scheduler plans with it at every new shape."""
    return max(1, _cuda_attribute(16) or 1)   # 16: CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT


@functools.lru_cache(maxsize=None)
def gpu_l2_bytes():
    """Bytes of L2 cache of CUDA device 0, else 0 (no CUDA device)."""
    return _cuda_attribute(38) or 0   # 38: CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE


@functools.lru_cache(maxsize=None)
def _cuda_device():
    """(the CUDA driver library, device 0) through the driver API, or None without them. Asked once
    per process: loading the library and cuInit are not free, and the planner asks for device 0's
    name at every Vulkan plan (``vulkan_gpu_is_cuda_device``)."""
    import ctypes
    try:
        lib = ctypes.CDLL("libcuda.so.1" if sys.platform != "win32" else "nvcuda.dll")
    except OSError:
        return None
    dev = ctypes.c_int()
    if lib.cuInit(0) != 0 or lib.cuDeviceGet(ctypes.byref(dev), 0) != 0:
        return None
    return lib, dev


def _cuda_attribute(attribute):
    """A device attribute of CUDA device 0, or None without one."""
    import ctypes
    found = _cuda_device()
    if found is None:
        return None
    lib, dev = found
    value = ctypes.c_int()
    return value.value if lib.cuDeviceGetAttribute(ctypes.byref(value), attribute, dev) == 0 else None


def _cuda_device_name():
    import ctypes
    found = _cuda_device()
    if found is None:
        return None
    lib, dev = found
    buf = ctypes.create_string_buffer(256)
    return buf.value.decode() if lib.cuDeviceGetName(buf, 256, dev) == 0 else None


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def _run(cmd):
    import subprocess
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
