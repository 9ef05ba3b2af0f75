"""One place where exceptions become errno values.

pyfuse3 ends the whole mount when a handler raises anything but FUSEError, so every
handler goes through `translate`: an OSError keeps its errno, a file that fails
authentication gives EIO with one log line, and a bug gives EIO and a traceback in the
log while the mount keeps serving.
"""

from __future__ import annotations

import errno
import functools
import logging

import pyfuse3

from sisafs.vault.store import DAMAGE

log = logging.getLogger("sisafs.fs")


def translate(fn):
    @functools.wraps(fn)
    async def wrapper(*args, **kwargs):
        try:
            return await fn(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except DAMAGE as e:
            log.error("%s: %s (returning EIO)", fn.__name__, e)
            raise pyfuse3.FUSEError(errno.EIO) from None
        except OSError as e:
            raise pyfuse3.FUSEError(e.errno or errno.EIO) from None
        except KeyError:
            raise pyfuse3.FUSEError(errno.ENOENT) from None
        except Exception:
            log.exception("unexpected error in %s (returning EIO)", fn.__name__)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper
