"""Many runs of one config family: sweeps, their overfitting statistics (DSR, PBO), executors and the run registry."""
