"""Isolation of model-written code: the sandbox (capabilities, cgroups, the child runner) and
hidden tests judged in a process the candidate cannot reach. Text side: no torch."""
