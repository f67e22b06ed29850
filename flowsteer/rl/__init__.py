"""The RL core: the trainable policy, token log-probs, advantages, the CWRPO loss, the update plan
and the learning-rate schedule. Torch side; imports neither Lightning nor the canvas."""
