"""Why a layout operation was refused. Every message is meant for the person who asked."""


class LayoutError(Exception):
    """Base of every refused layout operation; nothing was changed."""


class LayoutInvalid(LayoutError):
    """The layout breaks one or more rules; `problems` lists each of them."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("the layout is invalid:\n  " + "\n  ".join(problems))
        self.problems = problems


class LayoutNotFound(LayoutError):
    pass


class LayoutExists(LayoutError):
    pass


class LayoutImmutable(LayoutError):
    """Published and deployed layouts never change: a change makes a new version."""


class LayoutStateConflict(LayoutError):
    """The layout is not in the status the operation needs (or changed meanwhile)."""


class EventSetupError(LayoutError):
    """An event cannot be created from this layout with these prices."""
