"""CP-SAT model of the placement problem: build (with one module per rule family), solve, explain."""
