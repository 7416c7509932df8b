"""Private: everything that wraps the compiled kernels (``_C``, ``_C_cuda``).

Layers, lowest first: the C++ kernels -> ``backends`` (``cpu``, ``cuda``, ``tiled``: one
``run(...)`` each, block size an argument) -> ``autograd.InfoNCEFunction`` ->
``functional.info_nce`` (validates and picks the back-end once). The public faces are
:mod:`hbt_fast.losses` (``InfoNCELoss``, ``info_nce``) and :mod:`hbt_fast.testing` (the oracle).
Nothing here imports a public package of hbt_fast.
"""
