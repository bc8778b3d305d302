"""Benchmark suites of sklearn_cpvae; see benchmarks/README.md. Run as modules:
``python -m benchmarks.<suite>.<script>``."""
