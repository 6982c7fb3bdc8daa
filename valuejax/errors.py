"""User-facing errors: what was wrong, where, and what to do.

Launchers catch `ValueJaxError`, print its message and exit non-zero without a traceback.
"""


class ValueJaxError(Exception):
  """An error caused by the user's input (a file, a flag, a config value), not by a bug."""

  def __init__(self, what: str, where: str | None = None, fix: str | None = None):
    self.what, self.where, self.fix = what, where, fix
    parts = [f"{where}: {what}" if where else what]
    if fix:
      parts.append(f"To fix: {fix}")
    super().__init__("\n".join(parts))
