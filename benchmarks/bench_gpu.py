"""GPU benchmark: napari-sepconv's CUDA backend on device arrays against CuPy and cuCIM.

    python benchmarks/bench_gpu.py            # every workload
    python benchmarks/bench_gpu.py --quick    # fewer rounds
    python benchmarks/bench_gpu.py --only sobel

Per workload (all float32, data already on the GPU):

1. runs ours and each installed peer once (JIT compilation), then checks that the
   values agree (max difference relative to the largest value);
2. times them in interleaved rounds (the order rotating each round), each call
   followed by a device synchronisation, plus a device-to-device copy of as many
   bytes as the workload must read and write: the memory-bandwidth floor;
3. reports the median time, peer time / our time (above 1: we are faster) and
   floor time / our time (1.0: at the bandwidth floor; 0.5: twice the floor).

Peers: ``cupyx.scipy.ndimage`` (needs CuPy) and ``cucim.skimage.filters`` when
installed. Without CuPy our functions run on Numba device arrays with no peer.
Targets (exit status 1 when missed): Sobel on 4096 x 4096 float32 within 2x of
the bandwidth floor and at least as fast as ``cupyx.scipy.ndimage``.

Without a usable GPU it says so and exits 0.
"""

import argparse
import re
import statistics
import sys
import time


def _gpu_reason():
    """Why no GPU can run the benchmark, or ``None``."""
    import os

    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return "NUMBA_ENABLE_CUDASIM=1 (the simulator is not a GPU)"
    try:
        from napari_sepconv import _backend
    except ImportError as exc:
        return f"napari_sepconv is not importable ({exc})"
    return _backend.cuda_unavailable_reason()


def _optional(name):
    try:
        return __import__(name, fromlist=["_"])
    except Exception:  # noqa: BLE001 - an absent or broken peer is left out
        return None


class Device:
    """Allocation, transfer, synchronisation and copies on CuPy or Numba arrays."""

    def __init__(self):
        from numba import cuda

        self.cuda = cuda
        self.cp = _optional("cupy")

    def put(self, host):
        return self.cp.asarray(host) if self.cp is not None else self.cuda.to_device(host)

    def host(self, x):
        if self.cp is not None and isinstance(x, self.cp.ndarray):
            return self.cp.asnumpy(x)
        return x.copy_to_host()

    def sync(self):
        if self.cp is not None:
            self.cp.cuda.runtime.deviceSynchronize()
        else:
            self.cuda.synchronize()

    def copier(self, nbytes):
        """A copy moving ``nbytes`` in all: it reads half of them and writes the other half."""
        import numpy as np

        n = max(1, nbytes // 8)  # float32 elements in each of the two buffers
        src = self.put(np.zeros(n, np.float32))
        if self.cp is not None:
            dst = self.cp.empty_like(src)
            return lambda: dst.__setitem__(Ellipsis, src)
        dst = self.cuda.device_array_like(src)
        return lambda: dst.copy_to_device(src)

    def describe(self):
        dev = self.cuda.get_current_device()
        name = dev.name.decode() if isinstance(dev.name, bytes) else dev.name
        clock = dev.MEMORY_CLOCK_RATE  # kHz
        width = dev.GLOBAL_MEMORY_BUS_WIDTH  # bits
        peak = 2 * clock * 1e3 * width / 8 / 1e9
        return f"{name} (cc {dev.compute_capability[0]}.{dev.compute_capability[1]}), " \
               f"theoretical memory bandwidth {peak:.0f} GB/s"


def workloads(size, channels_size):
    """``(name, bytes moved, make(device) -> (ours, peers dict))``; float32 throughout."""
    import numpy as np

    import napari_sepconv as sc

    rng = np.random.default_rng(0)
    image = rng.random((size, size), dtype=np.float32)
    stack = rng.random((channels_size, channels_size, 16), dtype=np.float32)
    gauss = np.exp(-0.5 * (np.arange(-7, 8) / 2.5) ** 2)
    gauss = (gauss / gauss.sum()).astype(np.float32)
    u, v = rng.random((2, 11)), rng.random((2, 11))
    rank2 = np.outer(u[0], v[0]) + np.outer(u[1], v[1])
    dw_kernels = rng.random((16, 5, 5)).astype(np.float32)
    pw = rng.random((32, 16)).astype(np.float32)
    bias = rng.random(32).astype(np.float32)
    plane_bytes = image.nbytes
    stack_bytes = stack.nbytes

    def sobel(dev):
        x = dev.put(image)
        peers = {}
        if dev.cp is not None:
            import cupyx.scipy.ndimage as ndi

            cp = dev.cp

            def cupyx_sobel():
                gy = ndi.sobel(x, axis=0)
                gx = ndi.sobel(x, axis=1)
                return cp.sqrt((gx * gx + gy * gy) * np.float32(1 / 32))  # skimage's scaling

            peers["cupyx.scipy.ndimage"] = cupyx_sobel
        cucim = _optional("cucim.skimage.filters")
        if cucim is not None and dev.cp is not None:
            peers["cucim.skimage"] = lambda: cucim.sobel(x)
        return (lambda: sc.sobel(x)), peers

    def separable15(dev):
        x = dev.put(image)
        peers = {}
        if dev.cp is not None:
            import cupyx.scipy.ndimage as ndi

            peers["cupyx.scipy.ndimage"] = lambda: ndi.correlate1d(
                ndi.correlate1d(x, gauss, axis=0), gauss, axis=1)
        return (lambda: sc.separable_filter(x, [gauss, gauss])), peers

    def rank2_11(dev):
        x = dev.put(image)
        peers = {}
        if dev.cp is not None:
            import cupyx.scipy.ndimage as ndi

            k = dev.cp.asarray(rank2.astype(np.float32))
            peers["cupyx.scipy.ndimage"] = lambda: ndi.correlate(x, k)
        return (lambda: sc.filter2d(x, rank2)), peers

    def depthwise16(dev):
        x = dev.put(stack)
        peers = {}
        if dev.cp is not None:
            import cupyx.scipy.ndimage as ndi

            cp = dev.cp
            ks = [cp.asarray(k) for k in dw_kernels]

            def per_channel():
                return cp.stack([ndi.correlate(x[..., c], ks[c]) for c in range(16)], axis=-1)

            peers["cupyx.scipy.ndimage (per channel)"] = per_channel
        return (lambda: sc.depthwise_filter(x, dw_kernels)), peers

    def pointwise16_32(dev):
        x = dev.put(stack)
        peers = {}
        if dev.cp is not None:
            w = dev.cp.asarray(pw.T.copy())
            b = dev.cp.asarray(bias)
            peers["cupy matmul"] = lambda: (x.reshape(-1, 16) @ w + b).reshape(
                x.shape[:2] + (32,))
        return (lambda: sc.pointwise_filter(x, pw, bias)), peers

    return [
        (f"sobel {size}x{size}", 2 * plane_bytes, sobel),
        (f"separable 15-tap {size}x{size}", 2 * plane_bytes, separable15),
        (f"filter2d 11x11 rank-2 {size}x{size}", 2 * plane_bytes, rank2_11),
        (f"depthwise 16ch 5x5 {channels_size}x{channels_size}", 2 * stack_bytes, depthwise16),
        (f"pointwise 16->32 {channels_size}x{channels_size}", 3 * stack_bytes, pointwise16_32),
    ]


def _timed(dev, call):
    dev.sync()
    start = time.perf_counter()
    call()
    dev.sync()
    return time.perf_counter() - start


def agree(dev, ours, peer):
    import numpy as np

    a = np.asarray(dev.host(ours), np.float64)
    b = np.asarray(dev.host(peer), np.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def run(args):
    dev = Device()
    print(f"device: {dev.describe()}")
    if dev.cp is None:
        print("CuPy is not installed: timing ours on Numba device arrays, with no peer")
    failures = []
    for name, nbytes, make in workloads(args.size, args.channels_size):
        if args.only and not re.search(args.only, name):
            continue
        ours, peers = make(dev)
        floor = dev.copier(nbytes)
        contenders = {"ours": ours, **peers, "floor (copy)": floor}
        result = ours()
        for peer_name, peer in peers.items():
            error = agree(dev, result, peer())
            status = "ok" if error <= 1e-4 else "MISMATCH"
            print(f"  {name}: values vs {peer_name}: max relative difference {error:.1e} {status}")
            if status != "ok":
                failures.append(f"{name}: values differ from {peer_name}")
        times = {key: [] for key in contenders}
        order = list(contenders)
        for r in range(args.rounds):
            shift = r % len(order)
            for key in order[shift:] + order[:shift]:
                times[key].append(_timed(dev, contenders[key]))
        ours_t = statistics.median(times["ours"])
        floor_t = statistics.median(times["floor (copy)"])
        gbs = nbytes / ours_t / 1e9
        print(f"{name}: ours {ours_t * 1e3:.3f} ms ({gbs:.0f} GB/s), "
              f"floor/ours {floor_t / ours_t:.2f}")
        for peer_name in peers:
            peer_t = statistics.median(times[peer_name])
            print(f"    {peer_name}: {peer_t * 1e3:.3f} ms, peer/ours {peer_t / ours_t:.2f}")
        if name.startswith("sobel") and args.size == 4096:
            ok = floor_t / ours_t >= 0.5
            print(f"  {'PASS' if ok else 'FAIL'}: Sobel within 2x of the bandwidth floor "
                  f"({floor_t / ours_t:.2f} of it)")
            if not ok:
                failures.append("Sobel is more than 2x the bandwidth floor")
            if "cupyx.scipy.ndimage" in peers:
                ratio = statistics.median(times["cupyx.scipy.ndimage"]) / ours_t
                ok = ratio >= 1.0
                print(f"  {'PASS' if ok else 'FAIL'}: Sobel at least as fast as "
                      f"cupyx.scipy.ndimage ({ratio:.2f}x)")
                if not ok:
                    failures.append("Sobel is slower than cupyx.scipy.ndimage")
    for failure in failures:
        print(f"FAIL: {failure}")
    return 1 if failures else 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 rounds instead of 30")
    parser.add_argument("--only", help="workloads whose name matches this regex")
    parser.add_argument("--size", type=int, default=4096, help="side of the 2-D images")
    parser.add_argument("--channels-size", type=int, default=1024,
                        help="side of the 16-channel images")
    args = parser.parse_args(argv)
    args.rounds = 5 if args.quick else 30
    reason = _gpu_reason()
    if reason is not None:
        print(f"bench_gpu: no GPU to benchmark here: {reason}")
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
