"""Plans separable filtering as 1-D passes and runs them on a backend engine.

A *term* is a separable n-D kernel given as ``{axis: (offsets, weights)}``:
correlating with it means one 1-D pass per axis. A filter is one term (a
separable kernel), a sum of terms (an SVD-split kernel) or the magnitude of
several (an edge filter). When the last two axes of the array are the last two
passes, they run fused in one sweep over memory (``engine.separable_2d``);
earlier axes run as ``engine.correlate_axis`` passes, shared between terms that
begin with the same passes.

Constant mode comes in two conventions:

``'full'``
    The result equals correlating with the full n-D kernel (``scipy.ndimage
    .correlate``), so a later pass sees, outside the image, ``cval`` times the
    sums of the earlier 1-D kernels.
``'pass'``
    Each pass pads with ``cval`` (scipy's convention for ``gaussian_filter``
    and friends).
"""

import math

import numpy as np

SUM = 0
SUM_SQUARES = 1
MAGNITUDE = 2


def taps(weights, origin=0, skip_zero=False):
    """Offsets and weights of a 1-D kernel anchored as scipy.ndimage anchors it.

    Output sample ``i`` collects ``weights[k]`` times input ``i + k - (len // 2
    + origin)``. With ``skip_zero`` the zero weights are left out, as
    ``scipy.ndimage.correlate`` leaves them out of its footprint.
    """
    weights = np.asarray(weights, dtype=np.float64)
    offsets = np.arange(weights.size, dtype=np.int64) - (weights.size // 2 + origin)
    if skip_zero:
        keep = weights != 0
        if not keep.any():  # an all-zero kernel still produces zeros (and NaN*0)
            keep[weights.size // 2 + origin] = True
        offsets, weights = offsets[keep], weights[keep]
    return offsets, weights


def reach(offsets):
    """How far a pass reaches before and after each sample: ``(before, after)``."""
    return max(0, -int(offsets.min())), max(0, int(offsets.max()))


def run_terms(engine, src, terms, modes, cval, *, rule, combine=SUM, divisor=1.0,
              dtype, scale=1.0, order=None, check_finite=False):
    """Filter ``src`` with each term and combine the results.

    Parameters
    ----------
    engine : module
        ``_cpu`` or ``_cuda``: allocates arrays and runs the kernels.
    src : array
        Kernel input (see ``_validation.to_kernel_input``).
    terms : list of dict
        ``{axis: (offsets, weights)}``, the same axes in every term.
    modes : dict
        Border mode code per filtered axis.
    cval : float
        Value outside the image in constant mode, in the units of the result.
    rule : {'full', 'pass'}
        Constant-mode convention (module docstring).
    combine : {SUM, MAGNITUDE}
        Sum of the terms, or ``sqrt(sum of squares) / divisor``.
    dtype : dtype
        Float type of the result and of every pass.
    scale : float
        Factor from kernel input units to result units.
    order : sequence of int, optional
        Pass order (matters only for ``rule='pass'``); default ascending axes.
    check_finite : bool, optional
        Also return whether every value of the result is finite (the fused
        kernel tells as it writes, saving a pass over the result).

    Returns
    -------
    out : array
        The result, or ``(out, finite)`` with ``check_finite``.
    """
    ndim = src.ndim
    axes = list(order) if order is not None else sorted(terms[0])
    fused = ndim >= 2 and len(axes) >= 2 and axes[-2:] == [ndim - 2, ndim - 1]
    prefix_axes = axes[:-2] if fused else axes

    # Fused terms that start with the same passes share them; unfused terms stand alone.
    groups = {}
    for i, term in enumerate(terms):
        key = (tuple((a, term[a][0].tobytes(), term[a][1].tobytes()) for a in prefix_axes)
               if fused else i)
        groups.setdefault(key, []).append(term)

    single = not fused and len(terms) == 1 and combine == SUM  # its last pass is the result
    out = None if single else engine.empty(src.shape, dtype)
    started = False
    finite = None  # unknown until a kernel tells
    for g, group in enumerate(groups.values()):
        last_group = g == len(groups) - 1
        cur, sums = _run_prefix(engine, src, group[0], prefix_axes, modes, cval, rule,
                                dtype, scale)
        if fused:
            step = SUM_SQUARES if combine == MAGNITUDE and not last_group else combine
            finite = _run_fused(engine, cur, group, axes[-2:], modes, cval, sums, rule, step,
                                divisor, started, out, scale)
        elif single:
            out = cur
            break
        else:
            engine.combine_into(out, cur, squares=combine == MAGNITUDE, first=not started)
            if combine == MAGNITUDE and last_group:
                engine.finish_magnitude(out, divisor)
        started = True
    if not check_finite:
        return out
    if finite is None:  # the last fused call checks the whole sum; otherwise look
        finite = engine.all_finite(out)
    return out, finite


def _pass_cval(cval, rule, sums, scale):
    """The outside value a pass sees in constant mode.

    ``sums`` are the sums of the earlier passes' kernels; the first pass reads
    the kernel input, in which ``cval`` is ``cval / scale``.
    """
    if not sums:
        return cval / scale
    return cval * math.prod(sums) if rule == "full" else cval


def _run_prefix(engine, src, term, prefix_axes, modes, cval, rule, dtype, scale):
    """Run the unfused passes of ``term``; return the result and the kernel sums."""
    cur = src
    sums = []
    for axis in prefix_axes:
        offsets, weights = term[axis]
        nxt = engine.empty(src.shape, dtype)
        engine.correlate_axis(cur, axis, offsets, weights * (1.0 if sums else scale),
                              modes[axis], _pass_cval(cval, rule, sums, scale), nxt)
        sums.append(float(weights.sum()))
        cur = nxt
    return cur, sums


def _run_fused(engine, cur, group, last_two, modes, cval, sums, rule, combine, divisor,
               accumulate, out, scale):
    """The fused vertical + horizontal passes over the last two axes.

    Returns what the engine tells of the result: whether it is all finite, or
    ``None`` when it does not say.
    """
    ay, ax = last_two
    first_scale = 1.0 if sums else scale
    cols, rows, pad_x = [], [], []
    for term in group:
        col_off, col_w = term[ay]
        cols.append((col_off, col_w * first_scale))
        rows.append(term[ax])
        if rule == "full":
            pad_x.append(cval * math.prod(sums) * float(col_w.sum()))
        else:
            pad_x.append(cval)
    return engine.separable_2d(cur, cols, rows, modes[ay], modes[ax],
                               _pass_cval(cval, rule, sums, scale), pad_x,
                               combine, divisor, accumulate, out)


def filter_terms(image, terms, modes, cval, *, rule, combine=SUM, divisor=1.0, dtype,
                 preserve_range, channel_axis, backend, order=None, check_finite=False):
    """Run ``terms`` on ``image`` with the chosen backend; the channel axis is not crossed.

    With ``check_finite``, returns ``(out, finite)`` as ``run_terms`` does.

    ``terms``, ``modes`` and ``order`` use the image's own axis numbers. The
    channel axis, if any, is moved to the front while filtering so that the
    filtered axes are the trailing, contiguous ones, and moved back after.
    """
    from . import _backend

    engine = _backend.engine(_backend.resolve(backend, image))
    src, scale = engine.to_kernel_input(image, dtype, preserve_range)
    if channel_axis is not None:
        def moved(a):
            return a + 1 if a < channel_axis else a

        src = engine.channels_first(src, channel_axis)
        terms = [{moved(a): t for a, t in term.items()} for term in terms]
        modes = {moved(a): m for a, m in modes.items()}
        order = None if order is None else [moved(a) for a in order]
    out = run_terms(engine, src, terms, modes, cval, rule=rule, combine=combine,
                    divisor=divisor, dtype=dtype, scale=scale, order=order,
                    check_finite=check_finite)
    out, finite = out if check_finite else (out, None)
    if channel_axis is not None:
        out = engine.channels_back(out, channel_axis)
    return (out, finite) if check_finite else out
