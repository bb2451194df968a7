"""A test-time-training laboratory for PyTorch: learn a document, an ARC task or a code file at test time.

Modules:

- `tttlab.arc_grid`: Five small networks that map an ARC input grid to its output grid, from a plain causal transformer to a context-conditioned, colour-equivariant encoder-decoder: data contracts, smoke tests and a trained ablation."""

__version__ = "0.1.0"
