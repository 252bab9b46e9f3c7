"""Field positions shared by the host code and the kernels.

A kernel gets everything it needs about a layer from two small device arrays:

* ``frame`` (int32): the *plan header* (sizes of this run, whether it starts from
  zero states, the workspace offsets), then the *layer header* (cell kind, channel counts, neuron
  types, weight offsets), then the row count of every processing step, then the layer's float
  parameters ``prm`` (biases, neuron parameters and PReLU slopes) as their bits, read with
  ``frame.param``: one array argument fewer a dispatch;
* ``wts`` (float32 or float16): the weight matrices.

Keeping the layout here, as plain Python ints, lets the kernels use the names as
compile-time constants and lets the host build the arrays with the same names.
"""

# --- cell kinds -----------------------------------------------------------
CELL_SINGLE_GATE = 0
CELL_GRU = 1
CELL_LSTM = 2
GATES = {CELL_SINGLE_GATE: 1, CELL_GRU: 3, CELL_LSTM: 4}
FIRST_PHASE_GATES = {CELL_SINGLE_GATE: 1, CELL_GRU: 2, CELL_LSTM: 4}   # gates of a step's first product (GRU: z, r)

# --- how a gate reads x (its input-weights slot) ---------------------------
INPUT_NIL = 0        # nil data source: no contribution (bias 0, identity neuron)
INPUT_DENSE = 1      # W @ x
INPUT_IDENTITY = 2   # use_layer_input_unit_transform_mode: x itself

# --- LSTM memory (peephole) weights ----------------------------------------
PEEP_NONE = 0
PEEP_DENSE = 1
PEEP_DIAGONAL = 2

# --- neuron types (MPSCNNNeuronType raw values) ------------------------------
N_NONE, N_RELU, N_LINEAR, N_SIGMOID, N_HARD_SIGMOID, N_TANH, N_ABSOLUTE = 0, 1, 2, 3, 4, 5, 6
N_SOFT_PLUS, N_SOFT_SIGN, N_ELU, N_PRELU, N_RELU_N, N_POWER = 7, 8, 9, 10, 11, 12
N_EXPONENTIAL, N_LOGARITHM, N_GELU = 13, 14, 15

# --- frame: plan header ------------------------------------------------------
F_ZERO_STATE = 0   # 1: the run has no initial state; project_inputs writes zeros to history slot 0
F_STEPS = 1        # T
F_BATCH = 2        # B: rows of the first step (rows never grow)
F_WS_XW = 3        # workspace offset of the projected inputs, (T, B, G*H) (none in a CPU lanes run's:
                   # its terms are an array of their own, kernels/lanes.term_at)
F_WS_H = 4         # workspace offset of the output history, T+1 slots of (B, H); slot 0 = initial state
F_WS_C = 5         # workspace offset of the LSTM cell history, T+1 slots of (B, H)
F_WS_SCRATCH = 6   # workspace offset of per-step scratch, (3, B, H)
F_SLOT = 7         # elements between two history slots: B*H rounded up to a 128-byte line, so
                   # that a slot written by one GPU block never shares a cache line with the
                   # slot another block is reading (L1 caches are not coherent across SMs)
# --- frame: layer header -----------------------------------------------------
F_CELL = 8
F_IN = 9           # input feature channels
F_OUT = 10         # output feature channels (H)
F_GATES = 11       # G
F_W = 12           # offsets into wts: input weights (G, H, In)
F_U = 13           #   recurrent weights (G, H, H)
F_V = 14           #   LSTM memory weights (4, H, H) or (4, H); GRU Vh (H, H)
F_PEEP = 15        # LSTM peephole mode (PEEP_*)
F_FLIP = 16        # GRU flip_output_gates
F_CELL_NEURON = 17 # LSTM cell-to-output neuron type
F_P_BIAS = 18      # offsets of the float parameters: into prm in a cell's header (prm_offsets below),
                   # into the frame, past its rows, in a layer run's (scheduler/plans.py)
F_P_PRELU = 19
F_P_NEURON = 20
F_P_CELL = 21
F_P_PNORM = 22
F_BARRIER = 23     # arrivals at the grid barrier of a persistent kernel (reset by its last block out)
F_INPUT_MODE = 24  # 4 entries: INPUT_* per gate
F_NEURON = 28      # 4 entries: neuron type per gate
# strides of the weight matrices, in elements: element (o, j) of W is at
# wts[F_W + o*F_W_SO + j*F_W_SJ], o = gate*H + unit, j = input channel; likewise
# U and the dense V (LSTM peepholes: o = gate*H + unit; GRU Vh: o = unit).
# Row-major (SO = row length, SJ = 1) suits a thread that walks one row (CPU);
# transposed (SO = 1, SJ = column length) lets neighbouring GPU threads, which
# own neighbouring rows o, read neighbouring addresses (coalesced).
F_W_SO = 32
F_W_SJ = 33
F_U_SO = 34
F_U_SJ = 35
F_V_SO = 36
F_V_SJ = 37
F_STANDARD = 38    # 1 when every gate uses the neurons the cell is usually built with (LSTM: sigmoid
                   # gates, tanh cell and cell-to-output; GRU: sigmoid gates, tanh output, p = 1;
                   # single gate: tanh), all with a = b = 1: the gate math then skips the run-time
                   # choice among sixteen neurons (measured ~1 us a step on small GPU layers)
F_LANE_U = 39      # offsets, in lane vectors, of U and V in the CPU's lane-packed weights
F_LANE_V = 40      # (W starts at 0; see lanes.py)
F_LANE_RUN = 41    # the CPU's lanes kernel, set per run by the plan: LANE_PROJECTED where
                   # project_inputs_lanes has written the run's input terms, so the kernel does not
                   # project them itself; LANE_PAIRS (LANE_FOURS) where its workers step rows in pairs
                   # (fours); LANE_SPLIT where the pipelined kernel's helper steps half of the units of
                   # a lone row or a pair
F_DEPART = 42      # blocks that have left a persistent kernel's last grid barrier: the last one out
                   # resets this and F_BARRIER for the next run
F_HAS_VH = 43      # GRU: 1 when Vh is set; nil means zero, and the kernels skip Vh·(z∘h0)
F_X_BASE = 44      # the layer's input view: where x starts, elements between steps and between
F_X_STEP = 45      # batch rows (element units; a negative step reads backwards). Per call: the plan
F_X_ROW = 46       # writes them when they change (``scheduler/plans.py``): as six int arguments they
                   # cost Taichi's launcher 4-6 µs a dispatch on the H200's host (probes/host_time.py)
F_OUT_BASE = 47    # the view each new h is also written to (the caller's destination for the last
F_OUT_STEP = 48    # layer of encode_sequence), likewise per call; a negative base means none
F_OUT_ROW = 49
F_HEADER = 50
F_ROWS = F_HEADER  # T entries: rows present at each processing step

LANE_PROJECTED = 1   # F_LANE_RUN's bits
LANE_PAIRS = 2
LANE_SPLIT = 4
LANE_FOURS = 8

# --- prm: float parameters (in the frame, after the rows) ------------------------
# bias (G*H) at 0, PReLU slopes (G*H) at G*H, then per gate (a, b, c), then the
# cell-to-output neuron's (a, b, c), then the GRU p-norm value.
def prm_offsets(gates, hidden):
    """Offsets of (bias, prelu, neuron params, cell neuron params, pnorm) in ``prm``.

    The host stores them in the layer header (F_P_*), so kernels never recompute them."""
    bias = 0
    prelu = gates * hidden
    neuron = 2 * gates * hidden
    cell = neuron + 3 * gates
    pnorm = cell + 3
    return bias, prelu, neuron, cell, pnorm


def prm_size(gates, hidden):
    return prm_offsets(gates, hidden)[4] + 1


def history_slot(batch, hidden):
    """Elements between two state-history slots (see F_SLOT)."""
    return -(-batch * hidden // 32) * 32
