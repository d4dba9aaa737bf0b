"""Errors that are the user's to fix: reported as one line, never as a
traceback."""

import errno

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_NOT_ALLOWED = (errno.EACCES, errno.EPERM, errno.EROFS)


class UserError(Exception):
  """Bad input or an unusable environment; the message says what to do."""


class DataError(UserError):
  """A data set that cannot be found, prepared or read."""


class DivergedError(UserError):
  """Training produced a non-finite loss."""


class Interrupted(UserError):
  """Training stopped on request (Ctrl-C, SIGTERM) after a checkpoint."""


def os_error_advice(error: BaseException, flag: str = "--workdir") -> str:
  """The cause of a failed file operation, with the fix that fits it: space
  for a full disk or quota, another folder for a refused write, and
  otherwise the error itself (never a guess)."""
  text = str(error).strip()
  reason = (getattr(error, "strerror", None)
            or (text.splitlines()[0] if text else type(error).__name__))
  code = getattr(error, "errno", None)
  if code in _NO_SPACE:
    return f"{reason}; free some disk space or choose another {flag}"
  if code in _NOT_ALLOWED:
    return f"{reason}; choose a {flag} this user may write to"
  filename = getattr(error, "filename", None)
  return (f"{reason}: {filename}" if filename and str(filename) not in reason
          else reason)
