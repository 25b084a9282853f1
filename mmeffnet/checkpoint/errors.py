"""The two ways a checkpoint can fail us: it cannot be read, or it does not fit the model."""


class CheckpointReadError(RuntimeError):
    """A checkpoint file that is truncated, not a checkpoint, or holds Python objects that are not
    unpickled for safety."""


class CheckpointMismatchError(RuntimeError):
    """A checkpoint that does not fit the model it is loaded into (or holds no tensors at all)."""
