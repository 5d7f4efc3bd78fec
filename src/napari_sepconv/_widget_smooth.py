"""The Smooth widget: the Gaussian family of the library on an image layer.

Gaussian blur (``sc.gaussian``), a Gaussian derivative (``sc.gaussian_filter``
with an ``order``), difference of Gaussians and unsharp mask, per 2-D plane or
in 3-D, with sigma in pixels or in the layer's units (so an anisotropic
``scale`` gives each axis its own sigma). It runs, previews, cancels and names
its results as the other widgets do.
"""

from typing import Any

from napari.layers import Image

from ._widget_base import DERIVATIVES, Job, Source, smooth_job
from ._widgets import MODES, _combo, _FilterWidget, _public

_OPERATIONS = [
    ("Gaussian blur", "gaussian"),
    ("Gaussian derivative", "derivative"),
    ("difference of Gaussians", "dog"),
    ("unsharp mask", "unsharp"),
]
_OUTPUT_TYPES = [("as the function gives it", "auto"), ("input's range", "range")]


class SmoothWidget(_FilterWidget):
    """Gaussian blur, derivative, difference of Gaussians and unsharp mask."""

    title = "Smooth"
    functions = ("gaussian", "gaussian_filter", "difference_of_gaussians", "unsharp_mask")

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(
            napari_viewer,
            {
                "operation": _combo(_OPERATIONS),
                "sigma": {"min": 0.05, "max": 100.0, "step": 0.25},
                "high_sigma": {"label": "high sigma", "min": 0.05, "max": 200.0, "step": 0.25},
                "amount": {"min": -10.0, "max": 100.0, "step": 0.5},
                "derivative": _combo(list(DERIVATIVES)),
                "physical": {"label": "sigma in layer units"},
                "ndim": _combo([("per 2-D plane", 2), ("in 3-D", 3)], "dimensions"),
                "mode": _combo(MODES),
                "cval": {"label": "constant", "step": 0.1},
                "channel_axis": _combo(self._channel_choices, "channel axis"),
                "output_type": _combo(_OUTPUT_TYPES, "output type"),
            },
        )

    def _filter(
        self,
        image: Image,
        operation: str = "gaussian",
        sigma: float = 2.0,
        high_sigma: float = 4.0,
        amount: float = 1.0,
        derivative: str = "d/dx",
        physical: bool = False,
        ndim=2,
        mode: str = "nearest",
        cval: float = 0.0,
        channel_axis=None,
        output_type: str = "auto",
    ) -> Any:
        """Smooth.

        Parameters
        ----------
        image : Image
            The layer to filter.
        operation : str
            Gaussian blur, a Gaussian derivative, the difference of two
            Gaussian blurs (sigma minus high sigma), or unsharp mask (the
            image plus ``amount`` times itself minus its blur of radius sigma).
        sigma : float
            Standard deviation of the Gaussian (the unsharp mask's radius), in
            pixels or, with "sigma in layer units", in the layer's units.
        high_sigma : float
            The wider Gaussian of the difference of Gaussians.
        amount : float
            How much of the detail the unsharp mask adds.
        derivative : str
            The derivative of the Gaussian: along y or x, first or second order.
        physical : bool
            Sigma in the layer's units: each axis gets sigma / its scale pixels.
        ndim : int
            Filter each 2-D plane of a stack on its own, or whole 3-D volumes.
        mode : str
            How the image is extended beyond its border (as in scipy.ndimage).
        cval : float
            The value outside the image in 'constant' mode.
        channel_axis : int or None
            The axis holding channels, filtered one by one (RGB: the colours).
        output_type : str
            Floats as the function gives them (integers scaled to [0, 1] by
            the blur and unsharp mask, as scikit-image does), or the input's
            range (integers not scaled).
        """
        return self._launch(locals())

    def _make_job(self, source: Source, params: dict) -> Job:
        return smooth_job(
            source,
            params["operation"],
            params["sigma"],
            params["high_sigma"],
            params["amount"],
            params["derivative"],
            params["ndim"],
            params["physical"],
            params["mode"],
            params["cval"],
            params["output_type"],
            metadata=_public(params),
        )

    def _describe(self, params: dict) -> str:
        layer = params["image"]
        if layer is None or not params["physical"]:
            return ""
        source = self._source(params)
        sigma = smooth_job(source, sigma=params["sigma"], ndim=params["ndim"], physical=True)
        per_axis = sigma.func.keywords["sigma"]
        per_axis = per_axis if isinstance(per_axis, tuple) else (per_axis,) * params["ndim"]
        return "sigma in pixels per axis: " + ", ".join(f"{s:.3g}" for s in per_axis)

    def _update_controls(self, params: dict) -> None:
        operation = params["operation"]
        self.high_sigma.visible = operation == "dog"
        self.amount.visible = operation == "unsharp"
        self.derivative.visible = operation == "derivative"
        self.mode.visible = operation != "unsharp"
        self.cval.visible = operation != "unsharp" and params["mode"] == "constant"
        self.output_type.visible = operation in ("gaussian", "unsharp")
        layer = params["image"]
        self.channel_axis.enabled = not (layer is not None and layer.rgb)

    def _channel_choices(self, widget: Any = None) -> list:
        from ._widgets import _channel_axis_choices

        return _channel_axis_choices(self._chosen_layer(), optional=True)
