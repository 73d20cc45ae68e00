"""Training from samples alone: the ``.npy`` file a config's ``data`` names, and its point cloud;
or an ``.npz`` file of triplets (pairs with their midpoints and distances, :func:`load_triplets`).

The file holds samples ``shape=[N, n]`` or images ``shape=[N, H, W]`` (flattened
row-major to ``N`` samples of ``n = H W`` pixels, the layout of the image
manifolds). The cloud (:class:`gammalimit.PointCloud`) is built once per file
version and options and kept for the next caller: the config validates with
it, the trainer and the evaluation use the same object.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
from pathlib import Path

import numpy as np

from ..manifolds.point_cloud import PointCloud

#: PointCloud's keyword options, which a config's ``cloud`` dict may set.
CLOUD_OPTIONS = tuple(p.name for p in inspect.signature(PointCloud).parameters.values()
                      if p.kind is inspect.Parameter.KEYWORD_ONLY)


def _open(path) -> np.ndarray:
    """The array in ``path`` (memory-mapped: only the header is read), with one-line errors; for a
    triplet file, an empty array with the shape of its points."""
    if is_triplets(path):
        return np.empty((0, load_triplets(path).x.shape[1]))
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"data file {str(path)!r} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"data file {str(path)!r} is not a .npy array of numbers (a ragged or object array, or "
                         f"another format?): {first}") from None
    if not isinstance(array, np.ndarray):  # an .npz archive
        raise ValueError(f"data file {str(path)!r} is an .npz archive; save one array of samples with np.save")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"data file {str(path)!r} holds {array.dtype} values; samples must be real numbers")
    if array.ndim not in (2, 3):
        raise ValueError(f"data file {str(path)!r} must hold samples of shape (N, n) or images of shape "
                         f"(N, H, W), got shape {array.shape}")
    return array


def load_samples(path) -> np.ndarray:
    """The samples in the ``.npy`` file ``path``, float64 ``shape=[N, n]`` (images ``[N, H, W]`` flattened).

    Raises
    ------
    ValueError
        If the file is missing, is not a ``.npy`` array of real numbers, or has
        neither 2 nor 3 axes (each a one-line message naming the file).
    """
    array = _open(path)
    # a copy: the samples must not change under a run if the file does
    return np.array(array.reshape(array.shape[0], -1), dtype=np.float64, order="C", copy=True)


def image_side(path) -> int | None:
    """``H`` for square images ``shape=[N, H, H]`` or samples of ``n = H^2`` values with ``H >= 8``
    (as the image manifolds have), else ``None``."""
    shape = _open(path).shape
    if len(shape) == 3:
        return shape[1] if shape[1] == shape[2] else None
    side = math.isqrt(shape[1])
    return side if side * side == shape[1] and side >= 8 else None


def load_cloud(path, dim: int, options: dict | None = None) -> PointCloud:
    """The point cloud of the samples in ``path`` with intrinsic dimension ``dim`` and PointCloud ``options``.

    Built once per file version (path, modification time and size) and
    arguments; the two most recent clouds are kept.

    Raises
    ------
    ValueError, TypeError
        As :func:`load_samples` and :class:`gammalimit.PointCloud` (NaN rows,
        ``dim >= n``, too few samples, a bad option), naming the file.
    """
    options = dict(options or {})
    unknown = sorted(set(options) - set(CLOUD_OPTIONS))
    if unknown:
        raise ValueError(f"cloud options {unknown} are not PointCloud options; allowed: {list(CLOUD_OPTIONS)}")
    path = os.fspath(path)
    try:
        stat = os.stat(path)
    except OSError:
        raise ValueError(f"data file {path!r} does not exist") from None
    key = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items()))
    return _cloud(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size, dim, key)


@functools.lru_cache(maxsize=2)
def _cloud(path: str, mtime_ns: int, size: int, dim: int, options: tuple) -> PointCloud:
    triplets = load_triplets(path) if is_triplets(path) else None
    X = load_samples(path) if triplets is None else triplet_points(triplets)
    try:
        cloud = PointCloud(X, dim, **dict(options))
    except (ValueError, TypeError) as err:
        raise type(err)(f"data file {path!r}: {err}") from None
    cloud.triplets = triplets
    return cloud


#: The arrays of a triplet file (``np.savez``).
TRIPLET_KEYS = ("x", "y", "midpoint", "dist")


def is_triplets(path) -> bool:
    """Whether ``path`` names a triplet file (``.npz``) rather than samples (``.npy``)."""
    return os.fspath(path).endswith(".npz")


def load_triplets(path):
    """The pairs of a triplet file: an ``.npz`` archive (``np.savez``) with ``x, y, midpoint`` ``shape=[k, n]``
    (or images ``[k, H, W]``) and ``dist`` ``shape=[k]``, e.g. frames ``t - h, t + h`` of a video, the frame
    ``t`` as their midpoint and ``dist = 2 h`` times the speed.

    Returns
    -------
    PairSample
        :meth:`gammalimit.PairSample.from_arrays`, with ``delta = max(dist)``.

    Raises
    ------
    ValueError
        A missing file or array, another key, arrays of different shapes, a
        non-positive distance (one line naming the file).
    """
    from ..sampling import PairSample

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"triplet file {str(path)!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: np.asarray(archive[k]) for k in archive.files}
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"triplet file {str(path)!r} is not an .npz archive of arrays: "
                         f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    if sorted(arrays) != sorted(TRIPLET_KEYS):
        raise ValueError(f"triplet file {str(path)!r} must hold exactly the arrays {list(TRIPLET_KEYS)}, "
                         f"got {sorted(arrays)}")
    flat = {k: arrays[k].reshape(arrays[k].shape[0], -1) if k != "dist" else arrays[k] for k in TRIPLET_KEYS}
    try:
        return PairSample.from_arrays(flat["x"], flat["y"], flat["midpoint"], flat["dist"])
    except (ValueError, TypeError) as err:
        raise ValueError(f"triplet file {str(path)!r}: {err}") from None


def given_pairs(cloud, delta: float):
    """The triplets of a cloud built from a triplet file, at scale ``delta`` (``r = dist / delta``), or ``None``."""
    from ..sampling import PairSample

    t = getattr(cloud, "triplets", None)
    return None if t is None else PairSample.from_arrays(t.x, t.y, t.midpoint, t.dist, delta=delta)


def triplet_points(pairs) -> np.ndarray:
    """The distinct points of the triplets ``shape=[N, n]``: every ``x``, ``y`` and ``midpoint`` once."""
    points = np.concatenate([pairs.x.numpy(), pairs.y.numpy(), pairs.midpoint.numpy()])
    return np.unique(points, axis=0)


def forget_clouds() -> None:
    """Drop the kept clouds (their samples and neighbour trees)."""
    _cloud.cache_clear()
