"""One run per workdir: a lock file that names its holder (pid, host, command), taken over only when the
holder is provably gone.

Two runs writing one workdir would leave statistics of one config under the other's bookkeeping, with no
error. The second run refuses at once; a lock left by a killed run (same host, pid no longer alive, or a lock
file that was never completed) is taken over with a log line.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from typing import Any, Iterator

from absl import logging

from valuejax.errors import ValueJaxError

LOCK = ".lock"
# A lock file with no readable holder is someone's half-written lock for this long, then it is stale.
_UNREADABLE_GRACE_S = 10.0


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, owned by someone else
    return True
  return True


def _holder(path: str) -> dict[str, Any] | None:
  try:
    with open(path, encoding="utf-8") as f:
      d = json.load(f)
    return d if isinstance(d, dict) and isinstance(d.get("pid"), int) else None
  except (OSError, ValueError):
    return None


def _stale(path: str, holder: dict[str, Any] | None) -> bool:
  if holder is None:
    try:
      return time.time() - os.path.getmtime(path) > _UNREADABLE_GRACE_S
    except FileNotFoundError:
      return True
  return holder.get("host") == socket.gethostname() and not _alive(holder["pid"])


@contextlib.contextmanager
def hold(root: str, command: str = "") -> Iterator[None]:
  """Holds `<root>/.lock` for the duration; raises ValueJaxError when another live run holds it."""
  path = os.path.join(root, LOCK)
  me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
  for _ in range(3):
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      holder = _holder(path)
      if holder is not None and holder.get("pid") == me["pid"] and holder.get("host") == me["host"]:
        yield  # already held by this process (a stage inside launch.run)
        return
      if not _stale(path, holder):
        who = (f"process {holder['pid']} on {holder.get('host')} ({holder.get('command') or 'a valuejax run'}, "
               f"since {holder.get('started')})" if holder else "a run that is starting")
        raise ValueJaxError(f"the workdir is in use by {who}", path,
                            "wait for that run to finish, or use another --workdir; if that run is dead on "
                            "another machine, delete the lock file") from None
      logging.warning("workdir lock %s was left by %s, which is no longer running; taking it over", path,
                      f"process {holder['pid']}" if holder else "an unfinished start")
      with contextlib.suppress(FileNotFoundError):
        os.remove(path)
      continue
    except OSError as e:
      raise ValueJaxError(f"cannot create the workdir lock: {e.strerror}", path,
                          "use a writable --workdir") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      json.dump(me, f)
    break
  else:
    raise ValueJaxError("could not take the workdir lock: another run took it at the same moment", path,
                        "run one command per workdir at a time")
  try:
    yield
  finally:
    if (_holder(path) or {}).get("pid") == me["pid"]:
      with contextlib.suppress(FileNotFoundError):
        os.remove(path)
