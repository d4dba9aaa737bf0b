"""Errors that are the user's to fix: reported as one line, never as a traceback."""


class UserError(Exception):
  """Bad input or an unusable environment; the message says what to do."""


class DataError(UserError):
  """A data set that cannot be found, prepared or read."""


class DivergedError(UserError):
  """Training produced a non-finite loss."""


class Interrupted(UserError):
  """Training stopped on request (Ctrl-C, SIGTERM) after a checkpoint."""
