"""The lab's one exception: what its operator reads when the lab cannot do what was asked."""


class LabError(Exception):
    """An operator-facing failure of the lab, with a one-line message."""
