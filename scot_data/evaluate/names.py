"""The benchmark names, in the registry's order: light, so ``scot --help`` lists them without
loading the readers (``registry`` checks that its entries match)."""

BENCHMARK_NAMES = ("fashioniq", "cirr", "circo", "clipart")
