"""The optional CUDA back-end of the fused loss: the extension module ``hbt_fast._C_cuda``.

It is a module of its own, built only where CMake found a CUDA compiler and cuBLAS
(``HBT_CUDA``, see cmake/cuda.cmake), and imported here on first use, so that ``import
hbt_fast`` never needs CUDA libraries. It links the CUDA runtime statically and cuBLAS
(``libcublas.so.13``, from the ``nvidia-cublas`` wheel or a CUDA toolkit) dynamically.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import os
import threading
from types import ModuleType
from typing import Optional, Tuple

import hbt_fast._C as _C

# Set (to anything but 0) to keep CUDA tensors on the tiled torch path.
DISABLE_VARIABLE = "HBT_DISABLE_CUDA_LOSS"

_lock = threading.Lock()
_loaded: Optional[Tuple[Optional[ModuleType], str]] = None  # (module or None, status)
_runtime_problem: Optional[str] = None  # None until probed; "" when the runtime works


def build_status() -> str:
    """What CMake decided: "built for sm_..." or "not built: <why>"."""
    return _C.build_info().get("loss_cuda_build", "not built: unknown build configuration")


def _preload_cublas() -> None:
    """Loads libcublas from the nvidia-cublas wheel, wherever it is installed, so that the
    dynamic loader resolves _C_cuda's dependency on it (torch's CUDA builds load it too)."""
    try:
        spec = importlib.util.find_spec("nvidia.cu13")
    except ImportError:
        return
    for directory in (spec.submodule_search_locations or []) if spec else []:
        library = os.path.join(directory, "lib", "libcublas.so.13")
        if os.path.exists(library):
            ctypes.CDLL(library, mode=ctypes.RTLD_GLOBAL)
            return


def _load() -> Tuple[Optional[ModuleType], str]:
    status = build_status()
    if not status.startswith("built"):
        return None, status
    try:
        _preload_cublas()
        module = importlib.import_module("hbt_fast._C_cuda")
    except (ImportError, OSError) as error:
        return None, f"{status}, but not loadable: {error}"
    return module, f"{status}; {module.build_description()}"


def load() -> Tuple[Optional[ModuleType], str]:
    """(the _C_cuda module, its description), or (None, why it is missing). Cached."""
    global _loaded
    with _lock:
        if _loaded is None:
            _loaded = _load()
        return _loaded


def backend() -> Tuple[Optional[ModuleType], str]:
    """(module, description) when the CUDA kernel can run here, else (None, why not). The
    first call asks the CUDA runtime for a device (callers have CUDA tensors by then)."""
    global _runtime_problem
    module, status = load()
    if module is None:
        return None, status
    if os.environ.get(DISABLE_VARIABLE, "") not in ("", "0"):
        return None, f"{status}, but disabled by {DISABLE_VARIABLE}"
    with _lock:
        if _runtime_problem is None:
            _runtime_problem = module.runtime_problem()
    if _runtime_problem:
        return None, f"{status}, but cannot run here: {_runtime_problem}"
    return module, status


def status() -> str:
    """For hbt_fast.info(): built or not, loadable or not, and usable where already probed.
    Never initialises CUDA itself (a forked process could not use it afterwards)."""
    module, status = load()
    if module is not None and _runtime_problem:
        return f"{status}, but cannot run here: {_runtime_problem}"
    return status
