import random

import numpy as np
import torch

from flowsteer.rollout.process_state import ProcessState


def test_restore_undoes_what_an_engine_build_changes():
    real = torch.set_num_threads
    threads = torch.get_num_threads()
    state = ProcessState.capture()
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    state.restore()
    try:
        # What vLLM's CPU worker does in the trainer's process.
        torch.set_num_threads(max(1, threads + 1))
        torch.set_num_threads = lambda n: None
        random.seed(123)
        np.random.seed(123)
        torch.manual_seed(123)
        state.restore()
        assert torch.set_num_threads is real
        assert torch.get_num_threads() == threads
        assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected
    finally:
        torch.set_num_threads = real
        torch.set_num_threads(threads)
