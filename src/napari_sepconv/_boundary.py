"""Border index maths shared by the CPU and CUDA kernels.

A border mode says which input sample stands in for a position outside the
image. The helper here is compiled inline into every kernel that calls it, on
the CPU by LLVM (``_cpu_kernels._inlined``) and in the CUDA kernels by Numba
(:func:`source_index`), so the five modes are written once and cannot drift
apart between backends. Importing this module does not import Numba.

Mode codes (the integers the kernels receive):

========  ========  =====================================  ==================
code      name      extension of ``a b c d``               scipy alias
========  ========  =====================================  ==================
0         reflect   ``d c b a | a b c d | d c b a``        ``grid-mirror``
1         constant  ``k k k k | a b c d | k k k k``        ``grid-constant``
2         nearest   ``a a a a | a b c d | d d d d``
3         mirror    ``d c b | a b c d | c b a``
4         wrap      ``a b c d | a b c d | a b c d``        ``grid-wrap``
========  ========  =====================================  ==================
"""

REFLECT = 0
CONSTANT = 1
NEAREST = 2
MIRROR = 3
WRAP = 4

MODE_CODES = {
    "reflect": REFLECT,
    "grid-mirror": REFLECT,
    "constant": CONSTANT,
    "grid-constant": CONSTANT,
    "nearest": NEAREST,
    "mirror": MIRROR,
    "wrap": WRAP,
    "grid-wrap": WRAP,
}

CANONICAL_NAMES = {
    REFLECT: "reflect",
    CONSTANT: "constant",
    NEAREST: "nearest",
    MIRROR: "mirror",
    WRAP: "wrap",
}


def _source_index(i, n, mode):
    """Index of the sample at position ``i`` of a line of ``n`` samples.

    Returns -1 where the position lies outside the line in ``'constant'``
    mode (the caller uses the constant value there). Valid for any ``i``, so
    kernels longer than the image extend it as scipy.ndimage does: reflect
    repeats with period ``2n``, mirror with ``2n - 2`` and wrap with ``n``.
    """
    if 0 <= i < n:
        return i
    if mode == 1:
        return -1
    if mode == 2:
        return 0 if i < 0 else n - 1
    if mode == 4:
        return i % n
    if mode == 0:
        m = i % (2 * n)
        return m if m < n else 2 * n - 1 - m
    # mirror
    if n == 1:
        return 0
    period = 2 * n - 2
    m = i % period
    return m if m < n else period - m


_compiled = None


def source_index():
    """The inline-compiled ``source_index(i, n, mode)`` helper of the CUDA kernels (built once)."""
    global _compiled
    if _compiled is None:
        import numba

        _compiled = numba.njit(inline="always", cache=False)(_source_index)
    return _compiled
