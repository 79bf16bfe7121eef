"""Scripts that run inside the competitor venv (benchmarks/.proxlb-venv), never imported by proxlb-opt."""
