"""Where aiohttp's access log goes: api.access_log_file_path, else the "gomailpy.access" logger.

Access lines carry the request line and status, never a body.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from gomailpy.config.settings import ApiSettings

ACCESS_LOGGER = "gomailpy.access"


@contextmanager
def access_logger(api: ApiSettings) -> Iterator[logging.Logger]:
    if api.access_log_file_path is None:
        yield logging.getLogger(ACCESS_LOGGER)
        return
    # A logger of its own that does not propagate: file lines stay out of the process log.
    logger = logging.getLogger(f"{ACCESS_LOGGER}.file")
    handler = logging.FileHandler(api.access_log_file_path, encoding="utf-8")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield logger
    finally:
        logger.removeHandler(handler)
        handler.close()
