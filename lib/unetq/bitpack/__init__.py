"""Bit-packed inference engine for MBU-Net (binary / masked-binary U-Net) on the CPU (numba,
AVX-512 ``vpopcntq``), with a Triton path for CUDA machines.

- ``pack_mbu(model, masked_form="xor_and") -> PackedMBU``: callable on float32 NCHW numpy,
  returns float32 logits; ``.nbytes`` is the packed model size.
- ``PackedConv3x3``, ``PackedConvT2x2``, ``maxpool``: single packed layers.
- ``pack_activations`` / ``unpack_activations`` / ``Segments``: the bit layout.
- ``identities``: the dot-product identities (XNOR/XOR-popcount, the paper's Equation 3 and
  Algorithm 1, the single-popcount masked form).
- ``triton_kernels``: the same engine on a CUDA device (imported only when asked for).

The package owns packed inference only: it trains nothing and measures nothing
(``python -m unetq.cli.bitpack_benchmark`` times it; ``unetq.studies.mbu`` is notebook 05).
"""
from .engine import PackedConv3x3, PackedConvT2x2, PackedMBU, maxpool, pack_mbu
from .packing import Segments, new_buffer, pack_activations, unpack_activations

__all__ = ["pack_mbu", "PackedMBU", "PackedConv3x3", "PackedConvT2x2", "maxpool", "Segments",
           "new_buffer", "pack_activations", "unpack_activations"]
