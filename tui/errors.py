"""The dashboard's exception tree: every exception :mod:`sutazai.tui` defines, by module.

DashboardError          root of every error raised by the dashboard itself
├── NotPermittedError   errors: the signed-in role may not open that screen or take that action
├── KeyTimingError      errors: a timed key was not answered (the key-latency benchmark)
└── OptionsError        errors: a value typed in a form (chat options, a new task) is invalid

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
    """A value typed in a form is invalid (a chat option, a new task's field).

    A sampling option out of its range; a task type that is not a capability name, a payload
    that is not a JSON object, a priority outside 0 to 3.

    Shown under the form; nothing is sent (the service would refuse it with INVALID_ARGUMENT).
    """
