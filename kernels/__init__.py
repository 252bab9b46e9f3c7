"""Taichi kernels of mpsrnn (installed as ``mpsrnn.kernels``).

One op per module, each with a few lines above it on what it computes and why it
is shaped that way:

* ``neurons``: every MPS neuron type as a float32 ``ti.func``;
* ``gate_math``: the gate math of the single-gate, GRU and LSTM cells, shared by
  the matrix and image variants;
* ``projection``: W·x + b for all time steps of a sequence in one launch, and
  ``projection_tiled``: the same product in shared-memory tiles (GPUs);
* ``matrix_cells``: one fused recurrent step per cell type for matrix layers;
* ``sequence_copy``: strided copies/combinations of whole sequences;
* ``grid``: the fixed worker grids every kernel loops over (one device task per kernel);
* ``exchange``: h between the blocks of a step as words tagged with their step (the spread kernel);
* ``layout``: the field positions of the small arrays that describe a layer;
* ``knobs``: the ``MPSRNN_*`` settings that override planning defaults, for A/B runs and tests.

The plain float64 reference these are tested against lives in ``tests/reference.py``.
Kernels take flat 1-D ndarrays plus offsets and strides, so one compiled kernel
serves every shape; the only specialisations are the storage types (float16 or
float32) of user data and weights.
"""
