"""Training: the one minibatch loop, callbacks, schedules (pure functions of step), EMA
updates, the device, and the augmentations of window views."""
