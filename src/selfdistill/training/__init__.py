"""Training: the one minibatch loop, schedules (pure functions of step), EMA updates."""
