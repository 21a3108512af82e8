"""The training loop (one page) and the parts it calls: losses, metrics, evaluation, precision, stop requests, divergence, monitor, distributed."""
