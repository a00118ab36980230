"""The trusted training side: the trainer (:mod:`~harness.training.trainer`), the data
(:mod:`~harness.training.data`), the architectures (:mod:`~harness.training.models`), the device and
precision (:mod:`~harness.training.device`) and the per-epoch checkpoints
(:mod:`~harness.training.checkpoint`). It owns the model, the data, the optimizer and the scorer;
the loss module's code runs only on the other side of :mod:`harness.isolation`."""
