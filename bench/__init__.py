"""t2i-audit benchmarking: prompt sets, generation, run directories (and later metrics).

Importable with no side effects; the CLI lives in ``bench.cli``.
"""

__version__ = "0.1.0"
