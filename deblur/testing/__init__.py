"""Helpers shared by the tests and the benchmarks (never imported by the runtime code).

`datasets`: small datasets in the original layout with STAND-IN priors (data path checks and
timing, not 3D reconstruction). `tf1_oracle`: an independent TF1/tf-slim graph of the
original generator that writes real TF1 checkpoints (needs tf-slim, requirements-test.txt).
"""
