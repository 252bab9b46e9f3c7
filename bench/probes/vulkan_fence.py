"""What a Vulkan synchronisation is made of on this driver, without Taichi: raw Vulkan calls through
ctypes, each timed alone, with the process's user and system (kernel) time beside the wall time.

    python bench/probes/vulkan_fence.py

Taichi's ti.sync on Vulkan (1.7.4) records a command buffer with a barrier, creates a semaphore and a
fence for its submission, submits, waits for the queue to go idle, and destroys them; every read of
results goes through such a submission. The last timed line repeats that sequence. The others take
it apart: an empty submission and its wait, and the creation and destruction of each object. A line
whose system time is most of its wall time is spent in the driver's kernel module, not on the GPU.
"""
import ctypes as C
import time

import numpy as np
from call_timing import timed_calls   # (bench/probes, this script's folder)

vk = C.CDLL("libvulkan.so.1")
P, U32, U64 = C.c_void_p, C.c_uint32, C.c_uint64

# sType values of the structures used (Vulkan 1.0)
APPLICATION_INFO, INSTANCE_INFO, QUEUE_INFO, DEVICE_INFO, SUBMIT_INFO = 0, 1, 2, 3, 4
FENCE_INFO, SEMAPHORE_INFO, POOL_INFO, BUFFER_ALLOC_INFO, BEGIN_INFO = 8, 9, 39, 40, 42
QUEUE_COMPUTE_BIT = 2


def struct(*fields):
    """A ctypes structure of (name, type) fields, in order."""
    return type("S", (C.Structure,), {"_fields_": list(fields)})


AppInfo = struct(("sType", U32), ("pNext", P), ("app", C.c_char_p), ("app_version", U32), ("engine", C.c_char_p),
                 ("engine_version", U32), ("api", U32))
InstanceInfo = struct(("sType", U32), ("pNext", P), ("flags", U32), ("app", P), ("layers", U32), ("layer_names", P),
                      ("extensions", U32), ("extension_names", P))
QueueInfo = struct(("sType", U32), ("pNext", P), ("flags", U32), ("family", U32), ("count", U32), ("priorities", P))
DeviceInfo = struct(("sType", U32), ("pNext", P), ("flags", U32), ("queues", U32), ("queue_infos", P),
                    ("layers", U32), ("layer_names", P), ("extensions", U32), ("extension_names", P),
                    ("features", P))
FlagsInfo = struct(("sType", U32), ("pNext", P), ("flags", U32))   # fence, semaphore
PoolInfo = struct(("sType", U32), ("pNext", P), ("flags", U32), ("family", U32))
BufferAllocInfo = struct(("sType", U32), ("pNext", P), ("pool", U64), ("level", U32), ("count", U32))
BeginInfo = struct(("sType", U32), ("pNext", P), ("flags", U32), ("inheritance", P))
SubmitInfo = struct(("sType", U32), ("pNext", P), ("waits", U32), ("wait_semaphores", P), ("wait_stages", P),
                    ("buffers", U32), ("command_buffers", P), ("signals", U32), ("signal_semaphores", P))

vk.vkQueueSubmit.argtypes = [P, U32, P, U64]
vk.vkWaitForFences.argtypes = [P, U32, P, U32, U64]
vk.vkResetFences.argtypes = [P, U32, P]
vk.vkQueueWaitIdle.argtypes = [P]
vk.vkDestroyFence.argtypes = [P, U64, P]
vk.vkDestroySemaphore.argtypes = [P, U64, P]
vk.vkFreeCommandBuffers.argtypes = [P, U64, U32, P]
vk.vkDestroyCommandPool.argtypes = [P, U64, P]


def check(result, what):
    if result != 0:
        raise SystemExit(f"{what}: VkResult {result}")


class Device:
    """The first physical device, one compute queue, a command pool on its family."""

    def __init__(self):
        app = AppInfo(APPLICATION_INFO, None, b"mpsrnn probe", 1, b"none", 1, (1 << 22) | (2 << 12))
        self.instance = P()
        check(vk.vkCreateInstance(C.byref(InstanceInfo(INSTANCE_INFO, None, 0, C.addressof(app), 0, None, 0, None)),
                                  None, C.byref(self.instance)), "vkCreateInstance")
        n = U32(0)
        vk.vkEnumeratePhysicalDevices(self.instance, C.byref(n), None)
        physical = (P * n.value)()
        vk.vkEnumeratePhysicalDevices(self.instance, C.byref(n), physical)
        self.physical = P(physical[0])
        props = C.create_string_buffer(4096)   # VkPhysicalDeviceProperties: the name from byte 20
        vk.vkGetPhysicalDeviceProperties(self.physical, props)
        self.name = props.raw[20:276].split(b"\0")[0].decode()
        vk.vkGetPhysicalDeviceQueueFamilyProperties(self.physical, C.byref(n), None)
        families = (U32 * (6 * n.value))()   # VkQueueFamilyProperties: 6 words, the flags first
        vk.vkGetPhysicalDeviceQueueFamilyProperties(self.physical, C.byref(n), families)
        self.family = next(f for f in range(n.value) if families[6 * f] & QUEUE_COMPUTE_BIT)
        priority = C.c_float(1.0)
        queue = QueueInfo(QUEUE_INFO, None, 0, self.family, 1, C.addressof(priority))
        self.device = P()
        check(vk.vkCreateDevice(self.physical, C.byref(DeviceInfo(DEVICE_INFO, None, 0, 1, C.addressof(queue),
                                                                  0, None, 0, None, None)),
                                None, C.byref(self.device)), "vkCreateDevice")
        self.queue = P()
        vk.vkGetDeviceQueue(self.device, self.family, 0, C.byref(self.queue))
        self.pool = U64()
        check(vk.vkCreateCommandPool(self.device, C.byref(PoolInfo(POOL_INFO, None, 0, self.family)), None,
                                     C.byref(self.pool)), "vkCreateCommandPool")

    def command_buffer(self):
        """A recorded, empty primary command buffer."""
        cb = P()
        check(vk.vkAllocateCommandBuffers(self.device, C.byref(BufferAllocInfo(BUFFER_ALLOC_INFO, None, self.pool, 0, 1)),
                                          C.byref(cb)), "vkAllocateCommandBuffers")
        check(vk.vkBeginCommandBuffer(cb, C.byref(BeginInfo(BEGIN_INFO, None, 0, None))), "vkBeginCommandBuffer")
        check(vk.vkEndCommandBuffer(cb), "vkEndCommandBuffer")
        return cb

    def free(self, cb):
        vk.vkFreeCommandBuffers(self.device, self.pool, 1, C.byref(cb))

    def fence(self):
        f = U64()
        check(vk.vkCreateFence(self.device, C.byref(FlagsInfo(FENCE_INFO, None, 0)), None, C.byref(f)), "vkCreateFence")
        return f

    def semaphore(self):
        s = U64()
        check(vk.vkCreateSemaphore(self.device, C.byref(FlagsInfo(SEMAPHORE_INFO, None, 0)), None, C.byref(s)),
              "vkCreateSemaphore")
        return s

    def submit(self, cb, fence, signal=None):
        """Submits ``cb`` (None: no command buffer), signalling ``fence`` (0: none) and ``signal``."""
        buffers = (P * 1)(cb) if cb is not None else None
        signals = (U64 * 1)(signal.value) if signal is not None else None
        info = SubmitInfo(SUBMIT_INFO, None, 0, None, None, int(cb is not None),
                          C.addressof(buffers) if buffers else None, int(signal is not None),
                          C.addressof(signals) if signals else None)
        check(vk.vkQueueSubmit(self.queue, 1, C.byref(info), fence.value if fence else 0), "vkQueueSubmit")


def timed(name, call, reps=300):
    """One line: wall-time percentiles of ``call`` and the mean user and system time a call."""
    wall, user, system = timed_calls(call, reps)
    print(f"{name:44s} wall p10 {np.percentile(wall, 10):7.1f} p50 {np.median(wall):7.1f} µs   "
          f"user {user:6.1f} sys {system:6.1f} µs", flush=True)


def main():
    d = Device()
    print(f"# {d.name}, queue family {d.family}; µs a call, {time.strftime('%Y-%m-%d')}")
    cb, fence = d.command_buffer(), d.fence()

    def fence_wait(buffer):
        d.submit(buffer, fence)
        check(vk.vkWaitForFences(d.device, 1, C.byref(fence), 1, 10 ** 10), "vkWaitForFences")
        vk.vkResetFences(d.device, 1, C.byref(fence))

    def idle_wait(buffer):
        d.submit(buffer, None)
        check(vk.vkQueueWaitIdle(d.queue), "vkQueueWaitIdle")

    def create_destroy_fence():
        vk.vkDestroyFence(d.device, d.fence(), None)

    def create_destroy_semaphore():
        vk.vkDestroySemaphore(d.device, d.semaphore(), None)

    def allocate_free_buffer():
        d.free(d.command_buffer())

    def like_taichi_sync():
        buffer, semaphore, f = d.command_buffer(), d.semaphore(), d.fence()
        d.submit(buffer, f, semaphore)
        check(vk.vkQueueWaitIdle(d.queue), "vkQueueWaitIdle")
        vk.vkDestroyFence(d.device, f, None)
        vk.vkDestroySemaphore(d.device, semaphore, None)
        d.free(buffer)

    timed("vkQueueWaitIdle, nothing submitted", lambda: vk.vkQueueWaitIdle(d.queue))
    timed("empty command buffer, fence wait", lambda: fence_wait(cb))
    timed("no command buffer, fence wait", lambda: fence_wait(None))
    timed("empty command buffer, vkQueueWaitIdle", lambda: idle_wait(cb))
    timed("vkCreateFence + vkDestroyFence", create_destroy_fence)
    timed("vkCreateSemaphore + vkDestroySemaphore", create_destroy_semaphore)
    timed("command buffer allocate + record + free", allocate_free_buffer)
    timed("as ti.sync: buffer, semaphore, new fence", like_taichi_sync)


if __name__ == "__main__":
    main()
