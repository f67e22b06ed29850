"""Policy models. `tiny` builds small offline models for tests and the CPU quickstart."""
