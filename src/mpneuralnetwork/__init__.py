"""mpneuralnetwork: a fully vectorized, object-oriented deep-learning library.

Built on NumPy on the CPU and CuPy on NVIDIA GPUs through one array module ``xp``
(set ``MPNN_BACKEND=cupy`` before the import to use the GPU).
"""

from .backend import DTYPE, ArrayType, get_backend, set_seed, to_device, to_host, xp

__version__ = "1.2.0"

__all__ = [
    "DTYPE",
    "ArrayType",
    "__version__",
    "get_backend",
    "set_seed",
    "to_device",
    "to_host",
    "xp",
]
