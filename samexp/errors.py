"""The one error type users see: raised where bad input enters, worded so they know what to fix."""


class SamexpError(Exception):
    """A user-facing problem (bad file, bad value, missing checkpoint); the CLI prints it without a traceback."""


class DatasetError(SamexpError):
    """A dataset file or folder that cannot be used as given."""


class CheckpointError(SamexpError):
    """A SAM checkpoint that cannot be found, fetched or verified."""
