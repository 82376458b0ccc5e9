"""The local stack: the pipeline's servers on loopback, without Docker."""
