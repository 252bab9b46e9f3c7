"""Command buffers: record encode calls now, run them on ``commit()``."""
from .backend import sync


class CommandBuffer:
    """Collects the work of encode calls given ``command_buffer=``; ``commit()`` submits it in order.

    Arguments are validated when a call is encoded; results are defined once the buffer
    has been committed (reading them synchronises with the device, as does
    ``wait_until_completed()``). A buffer is committed once, as in Metal.
    """

    def __init__(self):
        self._work = []
        self._status = "not_enqueued"

    @property
    def status(self):
        return self._status

    def _enqueue(self, work):
        if self._status != "not_enqueued":
            raise RuntimeError("command_buffer: this buffer was already committed; make a new CommandBuffer")
        self._work.append(work)

    def commit(self):
        if self._status != "not_enqueued":
            raise RuntimeError("command_buffer: commit() may be called once")
        self._status = "committed"
        work, self._work = self._work, []
        for w in work:
            w()

    def wait_until_completed(self):
        if self._status == "not_enqueued":
            raise RuntimeError("command_buffer: wait_until_completed() before commit()")
        sync()
        self._status = "completed"


def check_command_buffer(command_buffer):
    """Validate an encode call's ``command_buffer`` argument (before anything else runs)."""
    if command_buffer is not None and not isinstance(command_buffer, CommandBuffer):
        raise TypeError(f"command_buffer: expected a mpsrnn.CommandBuffer or None, got {type(command_buffer).__name__}")
    if command_buffer is not None and command_buffer.status != "not_enqueued":
        raise RuntimeError("command_buffer: this buffer was already committed; make a new CommandBuffer")


def submit(work, command_buffer):
    """Run ``work`` now, or record it in ``command_buffer``."""
    check_command_buffer(command_buffer)
    if command_buffer is None:
        work()
    else:
        command_buffer._enqueue(work)
