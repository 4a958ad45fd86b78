"""The benchmarks (bench/README.md): scripts run as modules from the repository's root,
`python -m bench.<script> [--quick]`, so that they import what they share by name: bench.common,
and the tests' helpers (tests.support, tests.boundary, the fault suite's harness)."""
