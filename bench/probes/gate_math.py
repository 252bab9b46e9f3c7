"""Is a small-hidden step bound by the generic gate math? (CUDA or Vulkan)

    python bench/probes/gate_math.py --arch cuda

Times, per step, the ``blocks`` LSTM kernel (every gate's neuron chosen at run
time from all sixteen MPS neuron types) against a copy whose gates are
hard-wired to sigmoid/tanh, on the same workspace. A large gap means the
run-time neuron choice, not the recurrence, sets the floor.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mpsrnn  # noqa: E402
from profile_call import plan_and_bindings  # noqa: E402   (bench/profile_call.py)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="cuda")
    a = p.parse_args()
    mpsrnn.init(a.arch)
    import taichi as ti
    from mpsrnn.benchmark import Config, build_pair
    from mpsrnn.kernels import sequence_blocks as SB
    from mpsrnn.kernels.dots import dot8
    from mpsrnn.kernels.layout import F_BATCH, F_OUT, F_ROWS, F_SLOT, F_STEPS, F_U, F_U_SJ, F_U_SO, F_WS_C, F_WS_H, \
        F_WS_XW
    from mpsrnn.kernels.neurons import sigmoid32, tanh32
    BLOCK, MAXH = SB.BLOCK, SB.MAX_HIDDEN

    @ti.kernel
    def lstm_blocks_fixed(ws: ti.types.ndarray(dtype=ti.f32, ndim=1), wts: ti.types.ndarray(ndim=1),
                          frame: ti.types.ndarray(dtype=ti.i32, ndim=1), out: ti.types.ndarray(ndim=1)):
        # (out, the destination the block kernel also writes, is left alone here)
        T = frame[F_STEPS]
        B = frame[F_BATCH]
        H = frame[F_OUT]
        slot = frame[F_SLOT]
        u0 = frame[F_U]
        uso = frame[F_U_SO]
        usj = frame[F_U_SJ]
        ti.loop_config(block_dim=BLOCK)
        for t in range(B * BLOCK):
            r = t // BLOCK
            tid = t % BLOCK
            pre = ti.simt.block.SharedArray((4 * MAXH,), ti.f32)
            h = ti.simt.block.SharedArray((MAXH,), ti.f32)
            c = ti.simt.block.SharedArray((MAXH,), ti.f32)
            for k in range(SB.rounds(H, tid)):
                i = tid + k * BLOCK
                h[i] = ws[frame[F_WS_H] + r * H + i]
                c[i] = ws[frame[F_WS_C] + r * H + i]
            ti.simt.block.sync()
            for s in range(T):
                h_next = frame[F_WS_H] + (s + 1) * slot + r * H
                c_next = frame[F_WS_C] + (s + 1) * slot + r * H
                if r < frame[F_ROWS + s]:
                    xw = frame[F_WS_XW] + (s * B + r) * 4 * H
                    for k in range(SB.rounds(4 * H, tid)):
                        o = tid + k * BLOCK
                        pre[o] = ws[xw + o] + dot8(wts, u0 + o * uso, usj, h, 0, H)
                    ti.simt.block.sync()
                    for k in range(SB.rounds(H, tid)):
                        i = tid + k * BLOCK
                        c_new = sigmoid32(pre[H + i]) * c[i] + sigmoid32(pre[i]) * tanh32(pre[2 * H + i])
                        c[i] = c_new
                        h[i] = sigmoid32(pre[3 * H + i]) * tanh32(c_new)
                        ws[c_next + i] = c_new
                        ws[h_next + i] = h[i]
                    ti.simt.block.sync()

    for hidden, batch, steps in ((32, 1, 2000), (64, 1, 1000), (128, 8, 1000)):
        layer, _ = build_pair(Config("lstm", hidden, hidden, batch, steps))
        x = mpsrnn.MatrixSequence.from_numpy(
            np.random.default_rng(0).standard_normal((steps, batch, hidden)).astype(np.float32))
        y = layer.encode_sequence(x)
        cell = layer._cells[0]
        _, values = plan_and_bindings(layer, x, y)
        lr = next(iter(layer._plans._plans.values()))._keep[0].layers[0]
        args = (lr.ws, cell.wts, lr.frame, values["y"])
        out = {}
        for name, k in (("generic neurons", SB.lstm_blocks), ("sigmoid/tanh wired", lstm_blocks_fixed)):
            k(*args)
            ti.sync()
            t0 = time.perf_counter()
            for _ in range(5):
                k(*args)
            ti.sync()
            out[name] = (time.perf_counter() - t0) / 5 / steps * 1e6
        wired = lr.ws.to_numpy()
        layer.encode_sequence(x, y)   # rerun normally; the wired kernel must have produced the same states
        generic = lr.ws.to_numpy()
        h0 = lr.h
        diff = np.abs(wired[h0: h0 + (steps + 1) * lr.slot] - generic[h0: h0 + (steps + 1) * lr.slot]).max()
        print(f"lstm hidden={hidden} batch={batch}: " + ", ".join(f"{n} {v:.2f} us/step" for n, v in out.items())
              + f"  (state difference {diff:.1e})", flush=True)


if __name__ == "__main__":
    main()
