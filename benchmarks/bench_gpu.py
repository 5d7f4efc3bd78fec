"""GPU benchmark: napari-sepconv's CUDA backend on device arrays against CuPy and cuCIM.

    python benchmarks/bench_gpu.py            # every workload
    python benchmarks/bench_gpu.py --quick    # 5 rounds: minutes, for a short device lease
    python benchmarks/bench_gpu.py --only sobel

On a fresh machine with a GPU, install and quick run (a few minutes in all):

    pip install -e ".[cuda]" cupy-cuda12x torch && python benchmarks/bench_gpu.py --quick

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
        if type(x).__module__.startswith("torch"):
            return x.detach().cpu().numpy()
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
        return (
            f"{name} (cc {dev.compute_capability[0]}.{dev.compute_capability[1]}), "
            f"theoretical memory bandwidth {peak:.0f} GB/s"
        )


def _torch_conv(x, weight, bias=None, groups=1):
    """PyTorch's convolution on a channel-last CuPy image (zero borders, as mode='constant')."""
    import torch

    t = torch.from_dlpack(x).permute(2, 0, 1)[None]  # NCHW view of the NHWC data
    out = torch.nn.functional.conv2d(t, weight, bias, padding="same", groups=groups)
    return out[0].permute(1, 2, 0)


def workloads(size, channels_size):
    """``(name, bytes moved, make(device) -> (ours, peers dict))``.

    The CPU benchmark's workloads on device arrays: float32 unless the name says
    otherwise; channel images are channel-last with 16 channels.
    """
    import numpy as np

    import napari_sepconv as sc

    rng = np.random.default_rng(0)
    image = rng.random((size, size), dtype=np.float32)
    image_u8 = (image * 255).astype(np.uint8)
    stack = rng.random((channels_size, channels_size, 16), dtype=np.float32)
    gauss = np.exp(-0.5 * (np.arange(-7, 8) / 2.5) ** 2)
    gauss = (gauss / gauss.sum()).astype(np.float32)
    u, v = rng.random((2, 11)), rng.random((2, 11))
    rank2 = np.outer(u[0], v[0]) + np.outer(u[1], v[1])
    dw = {k: rng.random((16, k, k)).astype(np.float32) for k in (3, 7)}
    pw = rng.random((32, 16)).astype(np.float32)
    bias = rng.random(32).astype(np.float32)
    torch = _optional("torch")
    if torch is not None:
        torch.backends.cudnn.allow_tf32 = False  # full float32, as ours and CuPy compute

    def ndimage(dev):
        return _optional("cupyx.scipy.ndimage") if dev.cp is not None else None

    def sobel(data):
        def make(dev):
            x = dev.put(data)
            peers = {}
            ndi = ndimage(dev)
            if ndi is not None:
                cp = dev.cp

                def cupyx_sobel():
                    xf = x.astype(cp.float32) * np.float32(1 / 255) if data.dtype == np.uint8 else x
                    gy = ndi.sobel(xf, axis=0)
                    gx = ndi.sobel(xf, axis=1)
                    return cp.sqrt((gx * gx + gy * gy) * np.float32(1 / 32))  # skimage's scaling

                peers["cupyx.scipy.ndimage"] = cupyx_sobel
            cucim = _optional("cucim.skimage.filters")
            if cucim is not None and dev.cp is not None:
                peers["cucim.skimage"] = lambda: cucim.sobel(x)
            dtype = np.float32 if data.dtype == np.uint8 else None
            return (lambda: sc.sobel(x, dtype=dtype)), peers

        return make

    def separable15(dev):
        x = dev.put(image)
        peers = {}
        ndi = ndimage(dev)
        if ndi is not None:
            g = dev.cp.asarray(gauss)
            peers["cupyx.scipy.ndimage"] = lambda: ndi.correlate1d(ndi.correlate1d(x, g, axis=0), g, axis=1)
        return (lambda: sc.separable_filter(x, [gauss, gauss])), peers

    def rank2_11(dev):
        x = dev.put(image)
        peers = {}
        ndi = ndimage(dev)
        if ndi is not None:
            k = dev.cp.asarray(rank2.astype(np.float32))
            peers["cupyx.scipy.ndimage"] = lambda: ndi.correlate(x, k)
        return (lambda: sc.filter2d(x, rank2)), peers

    def depthwise(size_):
        kernels = dw[size_]

        def make(dev):
            x = dev.put(stack)
            peers = {}
            ndi = ndimage(dev)
            if ndi is not None:
                cp = dev.cp
                ks = [cp.asarray(k) for k in kernels]
                peers["cupyx.scipy.ndimage (per channel)"] = lambda: cp.stack(
                    [ndi.correlate(x[..., c], ks[c], mode="constant") for c in range(16)], axis=-1
                )
            if torch is not None and dev.cp is not None:
                weight = torch.as_tensor(kernels[:, None], device="cuda")
                peers["torch conv2d (groups=16)"] = lambda: _torch_conv(x, weight, groups=16)
            return (lambda: sc.depthwise_filter(x, kernels, mode="constant")), peers

        return make

    def pointwise16_32(dev):
        x = dev.put(stack)
        peers = {}
        if dev.cp is not None:
            w = dev.cp.asarray(pw.T.copy())
            b = dev.cp.asarray(bias)
            peers["cupy matmul"] = lambda: (x.reshape(-1, 16) @ w + b).reshape(x.shape[:2] + (32,))
        return (lambda: sc.pointwise_filter(x, pw, bias)), peers

    def depthwise_separable(dev):
        x = dev.put(stack)
        peers = {}
        if torch is not None and dev.cp is not None:
            wd = torch.as_tensor(dw[3][:, None], device="cuda")
            wp = torch.as_tensor(pw[:, :, None, None], device="cuda")
            b = torch.as_tensor(bias, device="cuda")

            def torch_two_convs():
                t = torch.from_dlpack(x).permute(2, 0, 1)[None]
                t = torch.nn.functional.conv2d(t, wd, padding="same", groups=16)
                return torch.nn.functional.conv2d(t, wp, b)[0].permute(1, 2, 0)

            peers["torch conv2d x2"] = torch_two_convs
        return (lambda: sc.depthwise_separable_filter(x, dw[3], pw, bias, mode="constant")), peers

    plane, stack_bytes = image.nbytes, stack.nbytes
    return [
        (f"sobel {size}x{size}", 2 * plane, sobel(image)),
        (f"sobel uint8->float32 {size}x{size}", plane // 4 + plane, sobel(image_u8)),
        (f"separable 15-tap {size}x{size}", 2 * plane, separable15),
        (f"filter2d 11x11 rank-2 {size}x{size}", 2 * plane, rank2_11),
        (f"depthwise 3x3 {channels_size}x{channels_size}x16", 2 * stack_bytes, depthwise(3)),
        (f"depthwise 7x7 {channels_size}x{channels_size}x16", 2 * stack_bytes, depthwise(7)),
        (f"pointwise 16->32 {channels_size}x{channels_size}", 3 * stack_bytes, pointwise16_32),
        (
            f"depthwise-separable 3x3 16->32 {channels_size}x{channels_size}",
            3 * stack_bytes,
            depthwise_separable,
        ),
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
    rows = []
    tiny = workloads(64, 64)  # the same calls on 64 x 64 images: the fixed cost of a call
    for (name, nbytes, make), (_, _, make_tiny) in zip(workloads(args.size, args.channels_size), tiny):
        if args.only and not re.search(args.only, name):
            continue
        ours, peers = make(dev)
        ours_tiny, _ = make_tiny(dev)
        ours_tiny()
        floor = dev.copier(nbytes)
        contenders = {"ours": ours, **peers, "floor (copy)": floor, "ours 64x64": ours_tiny}
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
        fixed_t = min(statistics.median(times["ours 64x64"]), 0.95 * ours_t)
        gbs = nbytes / ours_t / 1e9
        print(
            f"{name}: ours {ours_t * 1e3:.3f} ms ({gbs:.0f} GB/s), "
            f"floor/ours {floor_t / ours_t:.2f}; fixed cost per call "
            f"{fixed_t * 1e3:.3f} ms, floor/(ours - fixed) {floor_t / (ours_t - fixed_t):.2f}"
        )
        best = None
        for peer_name in peers:
            peer_t = statistics.median(times[peer_name])
            print(f"    {peer_name}: {peer_t * 1e3:.3f} ms, peer/ours {peer_t / ours_t:.2f}")
            if best is None or peer_t < best[1]:
                best = (peer_name, peer_t)
        rows.append((name, ours_t, floor_t / ours_t, fixed_t, floor_t / (ours_t - fixed_t), best))
        if name.startswith("sobel") and args.size == 4096:
            ok = floor_t / ours_t >= 0.5
            print(
                f"  {'PASS' if ok else 'FAIL'}: {name} within 2x of the bandwidth floor "
                f"({floor_t / ours_t:.2f} of it)"
            )
            if not ok:
                failures.append(f"{name} is more than 2x the bandwidth floor")
            if "cupyx.scipy.ndimage" in peers:
                ratio = statistics.median(times["cupyx.scipy.ndimage"]) / ours_t
                ok = ratio >= 1.0
                print(
                    f"  {'PASS' if ok else 'FAIL'}: {name} at least as fast as "
                    f"cupyx.scipy.ndimage ({ratio:.2f}x)"
                )
                if not ok:
                    failures.append(f"{name} is slower than cupyx.scipy.ndimage")
    if args.markdown:
        _write_markdown(args.markdown, dev.describe(), rows)
    for failure in failures:
        print(f"FAIL: {failure}")
    return 1 if failures else 0


def _write_markdown(path, device, rows):
    """The results as a Markdown table, with the device and the peers' versions."""
    import platform

    import numba

    versions = [f"numba {numba.__version__}"]
    for name in ("numba_cuda", "cupy", "torch"):
        module = _optional(name)
        if module is not None:
            versions.append(f"{name.replace('_', '-')} {getattr(module, '__version__', '?')}")
    lines = [
        f"Device: {device}; Python {platform.python_version()}, {', '.join(versions)}.",
        "Medians of interleaved rounds, each call synchronised; peer/ours above 1: we are "
        "faster; floor share: a device-to-device copy of the bytes the workload must move, "
        "over our time; fixed cost: the same call on a 64 x 64 image (Python, argument "
        "checks, launch), left out of the last share.",
        "",
        "| workload | ours (ms) | floor share | fixed cost (ms) | floor share less fixed "
        "cost | fastest peer | peer/ours |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for name, ours_t, share, fixed_t, kernel_share, best in rows:
        peer, ratio = ("none", "") if best is None else (best[0], f"{best[1] / ours_t:.2f}")
        lines.append(
            f"| {name} | {ours_t * 1e3:.3f} | {share:.2f} | {fixed_t * 1e3:.3f} | "
            f"{kernel_share:.2f} | {peer} | {ratio} |"
        )
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    print(f"wrote {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 rounds instead of 30")
    parser.add_argument("--only", help="workloads whose name matches this regex")
    parser.add_argument("--size", type=int, default=4096, help="side of the 2-D images")
    parser.add_argument("--channels-size", type=int, default=1024, help="side of the 16-channel images")
    parser.add_argument("--markdown", help="also write the results as a Markdown table here")
    args = parser.parse_args(argv)
    args.rounds = 5 if args.quick else 30
    reason = _gpu_reason()
    if reason is not None:
        print(f"bench_gpu: no GPU to benchmark here: {reason}")
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
