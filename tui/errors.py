"""The dashboard's exception tree: every exception :mod:`sutazai.tui` defines, by module.

DashboardError          root of every error raised by the dashboard itself
├── NotPermittedError   errors: the signed-in role may not open that screen or take that action
├── KeyTimingError      errors: a timed key was not answered (the key-latency benchmark)
└── OptionsError        errors: a chat option typed in the form is not a number or out of range

What the mesh answers (unreachable, session ended, a refused call) arrives as the client's
exceptions (:mod:`sutazai.client`), which the screens show and never re-raise.
``tests/test_error_trees.py`` keeps this drawing complete and its branches true.
"""


class DashboardError(Exception):
    """Root of every error raised by :mod:`sutazai.tui`."""


class NotPermittedError(DashboardError):
    """The signed-in user's role may not open that screen or take that action."""


class KeyTimingError(DashboardError):
    """A key sent by :class:`~sutazai.tui.keytimer.KeyTimer` was not answered in time."""


class OptionsError(DashboardError):
    """A sampling option typed on the Chat screen is not a number or out of its range.

    Shown under the form; nothing is sent (the service would refuse it with INVALID_ARGUMENT).
    """
