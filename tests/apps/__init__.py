"""Apps shaped unlike the reference, each written once, for tests, benchmarks and chaos runs."""
