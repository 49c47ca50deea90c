"""Job handlers: one module per kind with plan(), run() and finalize(), registered in .registry."""
