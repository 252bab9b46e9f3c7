"""Recurrent state passed between sequence calls (MPSRNNRecurrentMatrixState)."""
from .matrix import Matrix


class RNNRecurrentMatrixState:
    """Per layer of a stack: the recurrent output h and, for LSTM layers, the memory cell c.

    Layers return these from ``encode_sequence`` (``recurrent_output_states``); users can
    build one to start a sequence from a state of their own::

        RNNRecurrentMatrixState(recurrent_outputs=[h_layer0, h_layer1], memory_cells=[c0, None])

    Each h/c is a Matrix or a 2-D float32/float16 array of shape (batch rows, output channels).
    """

    def __init__(self, recurrent_outputs, memory_cells=None):
        if not isinstance(recurrent_outputs, (list, tuple)) or not recurrent_outputs:
            raise TypeError("recurrent_outputs: expected a non-empty list with one matrix per layer")
        self._h = [_matrix(h, f"recurrent_outputs[{k}]") for k, h in enumerate(recurrent_outputs)]
        if memory_cells is None:
            memory_cells = [None] * len(self._h)
        if not isinstance(memory_cells, (list, tuple)) or len(memory_cells) != len(self._h):
            raise ValueError(f"memory_cells: expected None or a list of {len(self._h)} entries (one per layer; "
                             f"None for layers without a memory cell)")
        self._c = [None if c is None else _matrix(c, f"memory_cells[{k}]") for k, c in enumerate(memory_cells)]
        for k, (h, c) in enumerate(zip(self._h, self._c)):
            if c is not None and c.shape != h.shape:
                raise ValueError(f"memory_cells[{k}]: shape {c.shape} differs from recurrent_outputs[{k}] {h.shape}")

    @property
    def number_of_layers(self):
        return len(self._h)

    def get_recurrent_output_matrix(self, layer_index):
        """h of layer ``layer_index`` (rows = sequences)."""
        return self._h[self._index(layer_index)]

    def get_memory_cell_matrix(self, layer_index):
        """c of layer ``layer_index``, or None if that layer has no memory cell (not an LSTM)."""
        return self._c[self._index(layer_index)]

    def _index(self, k):
        if not isinstance(k, int) or not 0 <= k < len(self._h):
            raise IndexError(f"layer_index: expected 0..{len(self._h) - 1}, got {k!r}")
        return k

    def __repr__(self):
        return f"RNNRecurrentMatrixState({len(self._h)} layers, rows={self._h[0].rows})"


def _matrix(x, name):
    if isinstance(x, Matrix):
        return x
    from .arrays import as_numpy
    a = as_numpy(x, name)
    try:
        return Matrix.from_numpy(a)
    except ValueError as e:
        raise ValueError(f"{name}: {str(e).split(': ', 1)[-1]}") from None
