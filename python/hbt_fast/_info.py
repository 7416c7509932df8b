"""Build information: which back-ends the compiled extensions carry."""

import hbt_fast._C as _C


def info() -> dict:
    """Return the version and the back-ends compiled into ``hbt_fast._C``, and the state of
    the optional CUDA loss (``"loss_cuda"``): "not built: <why>", "built for sm_...,
    but not loadable: <error>", or "built for sm_...; <runtime and cuBLAS versions>"
    (with ", but cannot run here: <why>" once a run found no usable device); and
    ``"loss_threads"``: whether the CPU loss's OpenMP threads are torch's own (one runtime
    shared) or compete with them (see ``hbt_fast._openmp``)."""
    from hbt_fast import _cuda, _openmp
    from hbt_fast._version import __version__

    details = dict(_C.build_info())
    details.pop("loss_cuda_build", None)
    return {"version": __version__, **details, "loss_cuda": _cuda.status(),
            "loss_threads": _openmp.describe(*_openmp.runtimes())}
