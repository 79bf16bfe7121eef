"""Benchmarks of proxlb-opt: a seeded cluster generator (`benchmarks.generate`) and the data it draws from."""
