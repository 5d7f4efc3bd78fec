"""The registry of benchmark workloads.

Each workload names our call, the peer calls that compute the same values (OpenCV, SciPy,
scikit-image, PyTorch on the CPU, NumPy), how a peer's result maps onto ours for the value
check, and the bytes a single pass must move (input read once, output written once) for the
bandwidth floor. Peers that are not installed are left out.
"""

from __future__ import annotations

import math

import numpy as np
from _harness import Contender, Target, Workload

SQRT2 = math.sqrt(2.0)
TARGET_IMAGE = 2048  # the minimum ratios are stated for 2048^2 images ...
TARGET_CHANNELS = (1024, 1024, 16)  # ... and 1024^2 x 16 channel-last images


def _rng(seed=0):
    return np.random.default_rng(seed)


def _image(shape, dtype, seed=0):
    rng = _rng(seed)
    if np.dtype(dtype) == np.uint8:
        return rng.integers(0, 256, size=shape, dtype=np.uint8)
    return rng.random(shape, dtype=np.float64).astype(dtype)


def _taps(n, seed):
    """A smooth, asymmetric 1-D kernel: a flipped or transposed kernel would be caught."""
    x = np.linspace(-2.5, 2.5, n)
    w = np.exp(-0.5 * x**2) * (1.0 + 0.3 * np.linspace(-1, 1, n) * (1 + seed % 3))
    return w / w.sum()


def _gauss(n, seed):
    """A normalised Gaussian of n taps, the usual separable kernel; its width depends on
    ``seed``, so a kernel applied along the wrong axis would be caught."""
    x = np.arange(n) - n // 2
    sigma = n / (5.0 + seed)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def _kernels_1d(k, ndim, symmetric):
    return [(_gauss if symmetric else _taps)(k, i) for i in range(ndim)]


def _rank2_kernel(n, symmetric=True):
    """Difference of two Gaussians, wider along x than along y: exactly rank 2.

    Symmetric about its centre (as DoG and LoG kernels are), or with a slope across the second
    Gaussian when ``symmetric`` is False."""
    x = np.linspace(-3, 3, n)
    g1y, g1x = np.exp(-0.5 * (x / 0.8) ** 2), np.exp(-0.5 * (x / 1.0) ** 2)
    g2y, g2x = np.exp(-0.5 * (x / 1.6) ** 2), np.exp(-0.5 * (x / 2.0) ** 2)
    if not symmetric:
        g2x = g2x * (1 + 0.1 * x)
    return np.outer(g1y, g1x) / (g1y.sum() * g1x.sum()) - 0.5 * np.outer(g2y, g2x) / (g2y.sum() * g2x.sum())


def _full_rank_kernel(n, seed=1):
    return _rng(seed).standard_normal((n, n)) / n


def _nbytes(*arrays_or_sizes):
    return int(sum(a if isinstance(a, (int, np.integer)) else a.nbytes for a in arrays_or_sizes))


class Builder:
    """Makes workloads for the libraries that are installed."""

    def __init__(self, libs):
        self.libs = libs
        self.sc = libs.ours
        self.cv2 = libs.cv2
        self.ndi = libs.scipy_ndimage
        self.skf = libs.skimage_filters
        self.torch = libs.torch
        if self.torch is not None:
            import torch.nn.functional as F

            self.F = F

    def _ours(self, fn):
        return Contender("ours", fn) if self.sc is not None else None

    # ---------------------------------------------------------------------------- edge filters

    def sobel(
        self,
        shape,
        dtype=np.float32,
        *,
        out_dtype=None,
        target=None,
        peers=None,
        group="edges",
    ):
        """Sobel magnitude (scikit-image's definition) of a 2-D image or a 3-D volume."""
        ndim = len(shape)
        dtype = np.dtype(dtype)
        unit = 255.0 if dtype == np.uint8 else 1.0  # img_as_float scaling of uint8
        if out_dtype is None:
            out_dtype = np.float64 if dtype == np.uint8 else dtype
        out_dtype = np.dtype(out_dtype)
        name = f"sobel {_dt(dtype)}{'' if out_dtype == dtype else '->' + _dt(out_dtype)} {_shape(shape)}"
        want = set(peers) if peers is not None else None

        def use(peer):
            return want is None or peer in want

        def setup():
            return {"x": _image(shape, dtype)}

        kw = {} if (dtype != np.uint8 and out_dtype == dtype) else {"dtype": out_dtype}
        ours = self._ours(lambda d: self.sc.sobel(d["x"], **kw))
        contenders = []
        if self.cv2 is not None and ndim == 2 and use("opencv"):
            cv2 = self.cv2
            depth = cv2.CV_64F if out_dtype == np.float64 else cv2.CV_32F
            scale = 1.0 / (4.0 * SQRT2 * unit)  # folds skimage's /4 and /sqrt(ndim) into Sobel

            def opencv(d):
                gx = cv2.Sobel(
                    d["x"],
                    depth,
                    1,
                    0,
                    ksize=3,
                    scale=scale,
                    borderType=cv2.BORDER_REFLECT,
                )
                gy = cv2.Sobel(
                    d["x"],
                    depth,
                    0,
                    1,
                    ksize=3,
                    scale=scale,
                    borderType=cv2.BORDER_REFLECT,
                )
                return cv2.magnitude(gx, gy)

            contenders.append(Contender("opencv", opencv))
        if self.skf is not None and use("skimage"):
            skf = self.skf
            contenders.append(Contender("skimage", lambda d: skf.sobel(d["x"])))
        if self.ndi is not None and use("scipy"):
            ndi = self.ndi
            ftype = np.float64 if out_dtype == np.float64 else np.float32
            scale = 1.0 / (4.0 ** (ndim - 1) * math.sqrt(ndim) * unit)

            def scipy(d):
                x = d["x"] if d["x"].dtype == ftype else d["x"].astype(ftype)
                acc = None
                for axis in range(ndim):
                    g = ndi.sobel(x, axis=axis, mode="reflect")
                    np.multiply(g, g, out=g)
                    acc = g if acc is None else np.add(acc, g, out=acc)
                np.sqrt(acc, out=acc)
                acc *= scale
                return acc

            contenders.append(Contender("scipy", scipy))
        if self.torch is not None and ndim == 2 and dtype != np.uint8 and use("torch"):
            torch, F = self.torch, self.F
            tdtype = torch.float64 if dtype == np.float64 else torch.float32
            d1 = np.array([1.0, 0.0, -1.0])
            s1 = np.array([1.0, 2.0, 1.0])
            w = torch.tensor(np.stack([np.outer(d1, s1), np.outer(s1, d1)])[:, None], dtype=tdtype)
            scale = 1.0 / (4.0 * SQRT2)

            def torch_conv(d):
                with torch.inference_mode():
                    x = torch.from_numpy(d["x"])[None, None]
                    g = F.conv2d(x, w, padding=1)  # zero padding: the border is not compared
                    return (torch.linalg.vector_norm(g, dim=1)[0] * scale).numpy()

            contenders.append(Contender("torch", torch_conv, crop=1))

        def nbytes(d):
            return _nbytes(d["x"], d["x"].size * out_dtype.itemsize)

        rtol = 1e-10 if out_dtype == np.float64 and dtype != np.float32 else 2e-5
        return Workload(
            name,
            group,
            setup,
            ours,
            contenders,
            nbytes,
            rtol=rtol,
            target=target,
            params={"shape": shape, "dtype": dtype.name, "k": 3},
        )

    def sobel_plane_loop(self, n_planes, size, *, target=None, group="small calls"):
        """A stack filtered plane by plane through the public function, in a Python loop: what
        napari previews, dask chunks and scripts over planes do. The peer runs the same loop."""
        shape = (n_planes, size, size)
        name = f"sobel f32 loop over {n_planes} planes of {size}²"

        def setup():
            return {"x": _image(shape, np.float32), "out": np.empty(shape, np.float32)}

        def ours_loop(d):
            x, out = d["x"], d["out"]
            for i in range(n_planes):
                out[i] = self.sc.sobel(x[i])
            return out

        contenders = []
        if self.cv2 is not None:
            cv2 = self.cv2
            scale = 1.0 / (4.0 * SQRT2)

            def opencv_loop(d):
                x, out = d["x"], d["out"]
                for i in range(n_planes):
                    gx = cv2.Sobel(
                        x[i], cv2.CV_32F, 1, 0, ksize=3, scale=scale, borderType=cv2.BORDER_REFLECT
                    )
                    gy = cv2.Sobel(
                        x[i], cv2.CV_32F, 0, 1, ksize=3, scale=scale, borderType=cv2.BORDER_REFLECT
                    )
                    out[i] = cv2.magnitude(gx, gy)
                return out

            contenders.append(Contender("opencv", opencv_loop))
        return Workload(
            name,
            group,
            setup,
            self._ours(ours_loop),
            contenders,
            lambda d: 2 * d["x"].nbytes,
            rtol=2e-5,
            target=target,
            params={"shape": shape, "dtype": "float32", "k": 3},
        )

    # ---------------------------------------------------------------------- separable filters

    def separable(
        self,
        shape,
        k,
        dtype=np.float32,
        *,
        target=None,
        peers=None,
        group="separable",
        out_dtype=None,
        symmetric=True,
    ):
        """Correlation with the outer product of k-tap 1-D kernels, one per axis:
        Gaussians, or asymmetric kernels (no mirrored-pair shortcut) unless ``symmetric``."""
        ndim = len(shape)
        dtype = np.dtype(dtype)
        unit = 255.0 if dtype == np.uint8 else 1.0
        if out_dtype is None:
            out_dtype = np.float64 if dtype == np.uint8 else dtype
        out_dtype = np.dtype(out_dtype)
        kernels = _kernels_1d(k, ndim, symmetric)
        to = "" if out_dtype == dtype else "->" + _dt(out_dtype)
        sym = "" if symmetric else " asymmetric"
        name = f"separable {k}-tap{sym} {_dt(dtype)}{to} {_shape(shape)}"
        want = set(peers) if peers is not None else None

        def use(peer):
            return want is None or peer in want

        def setup():
            return {"x": _image(shape, dtype)}

        kw = {} if (dtype != np.uint8 and out_dtype == dtype) else {"dtype": out_dtype}
        ours = self._ours(lambda d: self.sc.separable_filter(d["x"], kernels, **kw))
        contenders = []
        if self.cv2 is not None and ndim == 2 and use("opencv"):
            cv2 = self.cv2
            depth = cv2.CV_64F if out_dtype == np.float64 else cv2.CV_32F
            kx = kernels[1] / unit
            ky = kernels[0]

            def opencv(d):
                return cv2.sepFilter2D(d["x"], depth, kx, ky, borderType=cv2.BORDER_REFLECT)

            contenders.append(Contender("opencv", opencv))
        if self.ndi is not None and use("scipy"):
            ndi = self.ndi
            ftype = np.float64 if out_dtype == np.float64 else np.float32

            def scipy(d):
                y = d["x"] if d["x"].dtype == ftype else d["x"].astype(ftype)
                for axis, w in enumerate(kernels):
                    y = ndi.correlate1d(y, w, axis=axis, mode="reflect")
                if unit != 1.0:
                    y /= unit
                return y

            contenders.append(Contender("scipy", scipy))
        if self.torch is not None and ndim == 2 and dtype != np.uint8 and use("torch"):
            torch, F = self.torch, self.F
            tdtype = torch.float64 if dtype == np.float64 else torch.float32
            wy = torch.tensor(kernels[0], dtype=tdtype).reshape(1, 1, k, 1)
            wx = torch.tensor(kernels[1], dtype=tdtype).reshape(1, 1, 1, k)
            r = k // 2

            def torch_conv(d):
                with torch.inference_mode():
                    x = torch.from_numpy(d["x"])[None, None]
                    y = F.conv2d(F.conv2d(x, wy, padding=(r, 0)), wx, padding=(0, r))
                    return y[0, 0].numpy()

            contenders.append(Contender("torch", torch_conv, crop=r))

        def nbytes(d):
            return _nbytes(d["x"], d["x"].size * out_dtype.itemsize)

        rtol = 1e-10 if out_dtype == np.float64 and dtype != np.float32 else 2e-5
        return Workload(
            name,
            group,
            setup,
            ours,
            contenders,
            nbytes,
            rtol=rtol,
            target=target,
            params={"shape": shape, "dtype": dtype.name, "k": k, "kind": "separable"},
        )

    def correlate1d(self, shape, k, axis, dtype=np.float32, *, group="separable"):
        """scipy.ndimage.correlate1d along one axis."""
        w = _gauss(k, 3)
        name = f"correlate1d {k}-tap axis={axis} {_dt(np.dtype(dtype))} {_shape(shape)}"

        def setup():
            return {"x": _image(shape, dtype)}

        ours = self._ours(lambda d: self.sc.correlate1d(d["x"], w, axis=axis))
        contenders = []
        if self.ndi is not None:
            ndi = self.ndi
            contenders.append(Contender("scipy", lambda d: ndi.correlate1d(d["x"], w, axis=axis)))
        if self.cv2 is not None and len(shape) == 2:
            cv2 = self.cv2
            one = np.ones(1)
            kx, ky = (w, one) if axis in (-1, 1) else (one, w)
            contenders.append(
                Contender(
                    "opencv",
                    lambda d: cv2.sepFilter2D(d["x"], -1, kx, ky, borderType=cv2.BORDER_REFLECT),
                )
            )
        return Workload(
            name,
            group,
            setup,
            ours,
            contenders,
            lambda d: 2 * d["x"].nbytes,
            rtol=2e-5,
            params={"shape": shape, "k": k},
        )

    # ------------------------------------------------------------------ Gaussian and box filters

    def gaussian(self, shape, sigma, dtype=np.float32, *, target=None, peers=None, group="smoothing"):
        """``gaussian`` (scikit-image style, reflect border, truncate 4) against cv2.GaussianBlur
        with the same kernel and border, scipy.ndimage.gaussian_filter and skimage's gaussian.

        uint8 input is kept in its range and written to a float32 ``out`` (scikit-image's own
        way to ask for float32); OpenCV's uint8 result is rounded to integers, hence the
        looser value check for that row."""
        dtype = np.dtype(dtype)
        radius = int(4.0 * sigma + 0.5)
        name = f"gaussian sigma={sigma:g} {_dt(dtype)} {_shape(shape)}"
        want = set(peers) if peers is not None else None

        def use(peer):
            return want is None or peer in want

        def setup():
            return {"x": _image(shape, dtype), "out": np.empty(shape, np.float32)}

        if dtype == np.uint8:
            ours = self._ours(
                lambda d: self.sc.gaussian(d["x"], sigma, mode="reflect", preserve_range=True, out=d["out"])
            )
        else:
            ours = self._ours(lambda d: self.sc.gaussian(d["x"], sigma, mode="reflect"))
        contenders = []
        if self.cv2 is not None and len(shape) == 2 and use("opencv"):
            cv2 = self.cv2
            k = 2 * radius + 1
            contenders.append(
                Contender(
                    "opencv",
                    lambda d: cv2.GaussianBlur(
                        d["x"], (k, k), sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT
                    ),
                    as_ours=lambda r: r.astype(np.float32),
                )
            )
        if self.ndi is not None and use("scipy"):
            ndi = self.ndi
            out_type = np.float32
            contenders.append(
                Contender(
                    "scipy", lambda d: ndi.gaussian_filter(d["x"], sigma, output=out_type, mode="reflect")
                )
            )
        if self.skf is not None and use("skimage"):
            skf = self.skf
            contenders.append(
                Contender(
                    "skimage",
                    lambda d: skf.gaussian(d["x"], sigma, mode="reflect", preserve_range=True),
                    as_ours=lambda r: r.astype(np.float32),
                )
            )
        return Workload(
            name,
            group,
            setup,
            ours,
            contenders,
            lambda d: d["x"].nbytes + 4 * d["x"].size,
            rtol=1e-2 if dtype == np.uint8 else 2e-5,
            target=target,
            params={"shape": shape, "dtype": dtype.name, "sigma": sigma, "k": 2 * radius + 1},
        )

    def gaussian_filter(self, shape, sigma, dtype=np.float32, *, target=None, group="smoothing"):
        """scipy.ndimage.gaussian_filter (every axis, reflect) against SciPy itself."""
        dtype = np.dtype(dtype)
        name = f"gaussian_filter sigma={sigma:g} {_dt(dtype)} {_shape(shape)}"

        def setup():
            return {"x": _image(shape, dtype)}

        ours = self._ours(lambda d: self.sc.gaussian_filter(d["x"], sigma))
        contenders = []
        if self.ndi is not None:
            ndi = self.ndi
            contenders.append(Contender("scipy", lambda d: ndi.gaussian_filter(d["x"], sigma)))
        return Workload(
            name,
            group,
            setup,
            ours,
            contenders,
            lambda d: 2 * d["x"].nbytes,
            rtol=2e-5,
            target=target,
            params={"shape": shape, "dtype": dtype.name, "sigma": sigma},
        )

    def uniform(self, shape, size, dtype=np.float32, *, target=None, group="smoothing"):
        """uniform_filter (a running sum, reflect border) against cv2.blur and SciPy."""
        dtype = np.dtype(dtype)
        name = f"uniform_filter size={size} {_dt(dtype)} {_shape(shape)}"

        def setup():
            return {"x": _image(shape, dtype)}

        ours = self._ours(lambda d: self.sc.uniform_filter(d["x"], size))
        contenders = []
        if self.cv2 is not None and len(shape) == 2:
            cv2 = self.cv2
            contenders.append(
                Contender("opencv", lambda d: cv2.blur(d["x"], (size, size), borderType=cv2.BORDER_REFLECT))
            )
        if self.ndi is not None:
            ndi = self.ndi
            contenders.append(Contender("scipy", lambda d: ndi.uniform_filter(d["x"], size)))
        return Workload(
            name,
            group,
            setup,
            ours,
            contenders,
            lambda d: 2 * d["x"].nbytes,
            rtol=2e-5,
            target=target,
            params={"shape": shape, "dtype": dtype.name, "k": size},
        )

    # ------------------------------------------------------------------------------- filter2d

    def filter2d(
        self,
        shape,
        kernel,
        label,
        dtype=np.float32,
        *,
        target=None,
        peers=None,
        group="filter2d",
    ):
        """2-D correlation with a user kernel; a 3-D shape is a stack of planes."""
        kernel = np.asarray(kernel, np.float64)
        kh, kw = kernel.shape
        name = f"filter2d {label} {_dt(np.dtype(dtype))} {_shape(shape)}"
        want = set(peers) if peers is not None else None

        def use(peer):
            return want is None or peer in want

        def setup():
            return {"x": _image(shape, dtype)}

        ours = self._ours(lambda d: self.sc.filter2d(d["x"], kernel))
        contenders = []
        stacked = len(shape) == 3
        if self.cv2 is not None and use("opencv"):
            cv2 = self.cv2

            def opencv(d):
                x = d["x"]
                if not stacked:
                    return cv2.filter2D(x, -1, kernel, borderType=cv2.BORDER_REFLECT)
                out = np.empty_like(x)
                for i in range(x.shape[0]):
                    cv2.filter2D(x[i], -1, kernel, dst=out[i], borderType=cv2.BORDER_REFLECT)
                return out

            contenders.append(Contender("opencv", opencv))
        if self.ndi is not None and use("scipy"):
            ndi = self.ndi
            k3 = kernel[None] if stacked else kernel
            contenders.append(Contender("scipy", lambda d: ndi.correlate(d["x"], k3, mode="reflect")))
        if self.torch is not None and use("torch") and kh % 2 and kw % 2:
            torch, F = self.torch, self.F
            w = torch.tensor(
                kernel,
                dtype=torch.float32 if np.dtype(dtype) == np.float32 else torch.float64,
            )[None, None]

            def torch_conv(d):
                with torch.inference_mode():
                    x = torch.from_numpy(d["x"])
                    x = x[:, None] if stacked else x[None, None]
                    y = F.conv2d(x, w, padding=(kh // 2, kw // 2))
                    return (y[:, 0] if stacked else y[0, 0]).numpy()

            contenders.append(
                Contender(
                    "torch",
                    torch_conv,
                    crop=max(kh, kw) // 2,
                    spatial_axes=(1, 2) if stacked else (0, 1),
                )
            )
        rtol = 1e-10 if np.dtype(dtype) == np.float64 else 2e-5
        return Workload(
            name,
            group,
            setup,
            ours,
            contenders,
            lambda d: 2 * d["x"].nbytes,
            rtol=rtol,
            target=target,
            params={"shape": shape, "k": kh, "kind": label},
        )

    # ------------------------------------------------------------------------- channel filters

    def _torch_layouts(self, conv, r, c_out):
        """PyTorch variants: NCHW prepared outside the timing, channels-last views (no copy),
        and NCHW including the layout changes to and from the channel-last NumPy array."""
        torch = self.torch
        out = []

        def nchw(d):
            with torch.inference_mode():
                return conv(d["x_nchw"])

        def channels_last(d):
            with torch.inference_mode():
                x = torch.from_numpy(d["x"]).permute(2, 0, 1)[None]  # NHWC memory, no copy
                return conv(x)

        def with_layout(d):
            with torch.inference_mode():
                x = torch.from_numpy(d["x"]).permute(2, 0, 1).contiguous()[None]
                return conv(x)[0].permute(1, 2, 0).contiguous().numpy()

        def to_hwc(y):
            return y[0].permute(1, 2, 0).numpy()

        out.append(Contender("torch NCHW", nchw, as_ours=to_hwc, crop=r))
        out.append(Contender("torch NHWC", channels_last, as_ours=to_hwc, crop=r))
        out.append(Contender("torch +layout", with_layout, crop=r))
        return out

    def _channel_setup(self, shape, dtype):
        def setup():
            x = _image(shape, dtype)
            d = {"x": x}
            if self.torch is not None:
                d["x_nchw"] = self.torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 0)))[None]
            return d

        return setup

    def depthwise(self, shape, k, *, target=None, peers=None, group="channels"):
        """One k x k kernel per channel of a channel-last image."""
        C = shape[-1]
        kernels = _rng(5).standard_normal((C, k, k)) / k
        r = k // 2
        name = f"depthwise {k}x{k} f32 {_shape(shape)}"
        want = set(peers) if peers is not None else None
        ours = self._ours(lambda d: self.sc.depthwise_filter(d["x"], kernels))
        contenders = []
        if self.torch is not None and (want is None or "torch" in want):
            torch, F = self.torch, self.F
            w = torch.tensor(kernels[:, None], dtype=torch.float32)
            contenders += self._torch_layouts(lambda x: F.conv2d(x, w, padding=r, groups=C), r, C)
        if self.cv2 is not None and (want is None or "opencv" in want):
            cv2 = self.cv2
            kern32 = kernels.astype(np.float32)

            def opencv(d):
                planes = cv2.split(d["x"])
                return cv2.merge(
                    [
                        cv2.filter2D(p, -1, kern32[c], borderType=cv2.BORDER_REFLECT)
                        for c, p in enumerate(planes)
                    ]
                )

            contenders.append(Contender("opencv", opencv))
        if self.ndi is not None and (want is None or "scipy" in want):
            ndi = self.ndi

            def scipy(d):
                x = d["x"]
                out = np.empty_like(x)
                for c in range(C):
                    ndi.correlate(x[..., c], kernels[c], output=out[..., c], mode="reflect")
                return out

            contenders.append(Contender("scipy", scipy))
        return Workload(
            name,
            group,
            self._channel_setup(shape, np.float32),
            ours,
            contenders,
            lambda d: 2 * d["x"].nbytes,
            rtol=2e-5,
            target=target,
            params={"shape": shape, "k": k},
        )

    def pointwise(self, shape, c_out, *, target=None, group="channels"):
        """A 1x1 convolution: out[..., o] = sum_i w[o, i] x[..., i]."""
        H, W, C = shape
        weights = _rng(6).standard_normal((c_out, C)) / C
        wt32 = np.ascontiguousarray(weights.T.astype(np.float32))
        name = f"pointwise {C}->{c_out} f32 {_shape(shape)}"
        ours = self._ours(lambda d: self.sc.pointwise_filter(d["x"], weights))
        contenders = [
            Contender(
                "numpy matmul",
                lambda d: np.matmul(d["x"].reshape(-1, C), wt32).reshape(H, W, c_out),
            )
        ]
        if self.torch is not None:
            torch = self.torch
            wt_t = torch.from_numpy(wt32)

            def torch_mm(d):
                with torch.inference_mode():
                    return (
                        torch.matmul(torch.from_numpy(d["x"]).reshape(-1, C), wt_t)
                        .reshape(H, W, c_out)
                        .numpy()
                    )

            contenders.append(Contender("torch matmul", torch_mm))
        return Workload(
            name,
            group,
            self._channel_setup(shape, np.float32),
            ours,
            contenders,
            lambda d: d["x"].nbytes * (1 + c_out / C),
            rtol=2e-5,
            target=target,
            params={"shape": shape, "c_out": c_out},
        )

    def depthwise_separable(self, shape, k, c_out, *, target=None, group="channels"):
        """Depthwise k x k then pointwise C -> c_out (MobileNet's block without the ReLU)."""
        H, W, C = shape
        kernels = _rng(7).standard_normal((C, k, k)) / k
        weights = _rng(8).standard_normal((c_out, C)) / C
        r = k // 2
        name = f"depthwise-separable {k}x{k} {C}->{c_out} f32 {_shape(shape)}"
        ours = self._ours(lambda d: self.sc.depthwise_separable_filter(d["x"], kernels, weights))
        contenders = []
        if self.torch is not None:
            torch, F = self.torch, self.F
            wd = torch.tensor(kernels[:, None], dtype=torch.float32)
            wp = torch.tensor(weights[:, :, None, None], dtype=torch.float32)
            contenders += self._torch_layouts(
                lambda x: F.conv2d(F.conv2d(x, wd, padding=r, groups=C), wp), r, c_out
            )
        if self.cv2 is not None:
            cv2 = self.cv2
            kern32 = kernels.astype(np.float32)
            wt32 = np.ascontiguousarray(weights.T.astype(np.float32))

            def opencv_numpy(d):
                planes = cv2.split(d["x"])
                dw = cv2.merge(
                    [
                        cv2.filter2D(p, -1, kern32[c], borderType=cv2.BORDER_REFLECT)
                        for c, p in enumerate(planes)
                    ]
                )
                return np.matmul(dw.reshape(-1, C), wt32).reshape(H, W, c_out)

            contenders.append(Contender("opencv+numpy", opencv_numpy))
        return Workload(
            name,
            group,
            self._channel_setup(shape, np.float32),
            ours,
            contenders,
            lambda d: d["x"].nbytes * (1 + c_out / C),
            rtol=5e-5,
            target=target,
            params={"shape": shape, "k": k, "c_out": c_out},
        )

    # ------------------------------------------------------------------------- kernel sweeps

    def kernel_size_sweep(self, n, k):
        """Time against kernel size: separable O(k) against direct O(k^2), same image."""
        shape = (n, n)
        kernels = _kernels_1d(k, 2, True)
        full = _full_rank_kernel(k)

        def setup():
            return {"x": _image(shape, np.float32)}

        out = []
        sep_contenders, direct_contenders = [], []
        if self.cv2 is not None:
            cv2 = self.cv2
            sep_contenders.append(
                Contender(
                    "opencv sepFilter2D",
                    lambda d: cv2.sepFilter2D(
                        d["x"],
                        -1,
                        kernels[1],
                        kernels[0],
                        borderType=cv2.BORDER_REFLECT,
                    ),
                )
            )
            direct_contenders.append(
                Contender(
                    "opencv filter2D",
                    lambda d: cv2.filter2D(d["x"], -1, full, borderType=cv2.BORDER_REFLECT),
                )
            )
        if self.ndi is not None:
            ndi = self.ndi

            def scipy_sep(d):
                return ndi.correlate1d(ndi.correlate1d(d["x"], kernels[0], axis=0), kernels[1], axis=1)

            sep_contenders.append(Contender("scipy correlate1d x2", scipy_sep))
            if k <= 15:  # beyond that a direct SciPy pass takes seconds per call
                direct_contenders.append(
                    Contender(
                        "scipy correlate",
                        lambda d: ndi.correlate(d["x"], full, mode="reflect"),
                    )
                )
        params = {"shape": shape, "k": k}
        out.append(
            Workload(
                f"sweep separable k={k} {_shape(shape)}",
                "ksize",
                setup,
                self._ours(lambda d: self.sc.separable_filter(d["x"], kernels)),
                sep_contenders,
                lambda d: 2 * d["x"].nbytes,
                rtol=2e-5,
                params=params | {"kind": "separable"},
            )
        )
        out.append(
            Workload(
                f"sweep direct k={k} {_shape(shape)}",
                "ksize",
                setup,
                self._ours(lambda d: self.sc.filter2d(d["x"], full)),
                direct_contenders,
                lambda d: 2 * d["x"].nbytes,
                rtol=5e-5 if k > 11 else 2e-5,
                params=params | {"kind": "direct"},
            )
        )
        return out


def _dt(dtype):
    return {"float32": "f32", "float64": "f64", "uint8": "u8"}.get(np.dtype(dtype).name, np.dtype(dtype).name)


def _shape(shape):
    if len(shape) == 2 and shape[0] == shape[1]:
        return f"{shape[0]}²"
    if len(shape) == 3 and shape[0] == shape[1]:
        return f"{shape[0]}²x{shape[2]}"
    return "x".join(map(str, shape))


# ------------------------------------------------------------------------------- the suites


def target_workloads(b: Builder):
    """The workloads with a minimum ratio (issue 6, item 2), at 2048^2 and 1024^2 x 16."""
    n = TARGET_IMAGE
    ch = TARGET_CHANNELS
    return [
        b.sobel((n, n), np.float32, target=Target(3.0, "Sobel float32 >= 3x OpenCV", ("opencv",))),
        b.sobel(
            (n, n),
            np.uint8,
            out_dtype=np.float32,
            target=Target(3.0, "Sobel uint8 >= 3x OpenCV", ("opencv",)),
        ),
        b.separable(
            (n, n),
            15,
            np.float32,
            target=Target(1.2, "15-tap separable >= 1.2x cv2.sepFilter2D", ("opencv",)),
        ),
        b.filter2d(
            (n, n),
            _rank2_kernel(11),
            "11x11 rank-2",
            target=Target(1.5, "11x11 rank-2 filter2d >= 1.5x cv2.filter2D", ("opencv",)),
        ),
        b.depthwise(ch, 3, target=Target(3.0, "depthwise 3x3 >= 3x PyTorch and OpenCV", ("torch", "opencv"))),
        b.depthwise(
            ch, 7, target=Target(1.5, "depthwise 7x7 >= 1.5x PyTorch and OpenCV", ("torch", "opencv"))
        ),
        b.pointwise(ch, 32, target=Target(0.9, "pointwise 16->32 >= 0.9x NumPy matmul", ("numpy",))),
        b.depthwise_separable(
            ch,
            3,
            32,
            target=Target(1.5, "depthwise-separable 3x3 16->32 >= 1.5x PyTorch", ("torch",)),
        ),
    ] + small_call_workloads(b)


def small_call_workloads(b: Builder):
    """Small images, where the cost around the kernel decides (issue 11, item 4)."""
    return [
        b.sobel(
            (64, 64),
            np.float32,
            peers=("opencv",),
            group="small calls",
            target=Target(0.7, "Sobel float32 64² >= 0.7x OpenCV", ("opencv",)),
        ),
        b.sobel(
            (256, 256),
            np.float32,
            peers=("opencv",),
            group="small calls",
            target=Target(1.5, "Sobel float32 256² >= 1.5x OpenCV", ("opencv",)),
        ),
        b.separable(
            (256, 256),
            15,
            np.float32,
            peers=("opencv",),
            group="small calls",
            target=Target(1.2, "15-tap separable 256² >= 1.2x cv2.sepFilter2D", ("opencv",)),
        ),
        b.sobel_plane_loop(
            1000,
            128,
            target=Target(1.0, "1000 planes of 128², one call each, >= 1.0x OpenCV in a loop", ("opencv",)),
        ),
    ]


def smoothing_workloads(b: Builder):
    """The Gaussian family and the box filter (issue 13, item 4), at 2048^2 and 64x512x512."""
    n = TARGET_IMAGE
    return [
        b.gaussian(
            (n, n),
            2.0,
            peers=("opencv",),
            target=Target(1.5, "gaussian sigma 2 >= 1.5x cv2.GaussianBlur", ("opencv",)),
        ),
        b.gaussian(
            (n, n),
            2.0,
            peers=("scipy", "skimage"),
            target=Target(20.0, "gaussian sigma 2 >= 20x scipy.ndimage.gaussian_filter", ("scipy",)),
        ),
        b.gaussian(
            (n, n),
            8.0,
            peers=("opencv",),
            target=Target(1.5, "gaussian sigma 8 >= 1.5x cv2.GaussianBlur", ("opencv",)),
        ),
        b.uniform((n, n), 31, target=Target(2.0, "uniform_filter size 31 >= 2x cv2.blur", ("opencv",))),
        b.gaussian_filter(
            (64, 512, 512), 2.0, target=Target(8.0, "3-D gaussian_filter sigma 2 >= 8x SciPy", ("scipy",))
        ),
        b.gaussian(
            (n, n),
            2.0,
            np.uint8,
            peers=("opencv",),
            target=Target(1.5, "gaussian uint8 sigma 2 >= 1.5x cv2.GaussianBlur", ("opencv",)),
        ),
    ]


def smoothing_extra_workloads(b: Builder):
    """The box filter at size 3: size 31's time should stay within 1.3x of it (a running sum);
    and scipy's ``gaussian_filter`` on uint8 (each pass stored as uint8, as SciPy does)."""
    return [
        b.uniform((TARGET_IMAGE, TARGET_IMAGE), 3),
        b.gaussian_filter((TARGET_IMAGE, TARGET_IMAGE), 2.0, np.uint8),
    ]


def extra_workloads(b: Builder, quick: bool):
    """More dtypes, the issue's 4096^2 measurements, 3-D stacks, 1-D passes.

    Peers that take seconds per call on the largest images are left out of those rows (they
    are timed on the 2048^2 rows), to keep a full run near ten minutes.
    """
    n = TARGET_IMAGE
    fast = ("opencv", "torch")
    out = [
        b.sobel((4096, 4096), np.float32, peers=("opencv", "skimage", "scipy")),
        b.separable((n, n), 15, np.uint8, out_dtype=np.float32),
    ]
    if quick:
        return out
    out += [
        b.sobel((n, n), np.float64, peers=("opencv", "skimage", "scipy")),
        b.sobel((n, n), np.uint8, peers=("opencv", "skimage")),  # default: uint8 -> float64
        b.separable((n, n), 15, np.float64),
        b.separable((n, n), 15, np.float32, symmetric=False),
        b.filter2d((n, n), _rank2_kernel(11, symmetric=False), "11x11 rank-2 asymmetric"),
        b.separable((4096, 4096), 15, np.float32, peers=fast),
        b.filter2d((4096, 4096), _rank2_kernel(11), "11x11 rank-2", peers=("opencv",)),
        b.filter2d((n, n), _full_rank_kernel(5), "5x5 full-rank"),
        b.correlate1d((n, n), 15, axis=-1),
        b.correlate1d((n, n), 15, axis=0),
        b.sobel((64, 512, 512), np.float32, group="3-D"),
        b.sobel((1024, 1024, 3), np.float32, group="3-D"),  # an RGB image as a volume
        b.separable((64, 512, 512), 7, np.float32, group="3-D"),
        b.filter2d(
            (32, 512, 512),
            _rank2_kernel(11),
            "11x11 rank-2 per plane",
            peers=("opencv", "torch"),
            group="3-D",
        ),
        b.depthwise((2048, 2048, 16), 3, peers=("torch", "opencv")),
        b.depthwise_separable((1024, 1024, 16), 7, 32),
    ]
    return out


def scaling_workloads(b: Builder, quick: bool):
    """Linear in pixels: the same filter from 256^2 to 8192^2 (fast peers only)."""
    sizes = [256, 512, 1024, 2048, 4096] + ([] if quick else [8192])
    out = []
    for n in sizes:
        out.append(b.sobel((n, n), np.float32, peers=("opencv",), group="pixels"))
        if not quick:
            out.append(b.separable((n, n), 15, np.float32, peers=("opencv",), group="pixels"))
    return out


def thread_workloads(b: Builder, quick: bool):
    """Run at 1 and at 2 threads: the speed-up from the second thread."""
    n = TARGET_IMAGE
    ch = TARGET_CHANNELS
    out = [
        b.sobel((n, n), np.float32, peers=("opencv", "torch"), group="threads"),
        b.separable((n, n), 15, np.float32, peers=("opencv", "torch"), group="threads"),
        b.depthwise(ch, 3, peers=("torch", "opencv"), group="threads"),
    ]
    if not quick:
        out += [
            b.filter2d(
                (n, n),
                _rank2_kernel(11),
                "11x11 rank-2",
                peers=("opencv", "torch"),
                group="threads",
            ),
            b.pointwise(ch, 32, group="threads"),
        ]
    return out


def sweep_workloads(b: Builder, quick: bool):
    ks = [3, 7, 15, 31] if quick else [3, 5, 7, 9, 11, 15, 21, 25, 31]
    out = []
    for k in ks:
        out += b.kernel_size_sweep(1024, k)
    return out
