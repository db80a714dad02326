"""Notifier process. Event consumption and delivery arrive with the notifier issue;
for now it starts, logs that it has nothing to deliver, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio

from conveyor_kernel.logs import configure_logging, get_logger
from conveyor_kernel.runtime import stop_event
from conveyor_kernel.settings import ConveyorSettings

log = get_logger(__name__)


async def run() -> None:
    stop = stop_event()
    log.info("notifier idle: no delivery channels are implemented yet")
    await stop.wait()
    log.info("notifier stopped")


def main() -> None:
    settings = ConveyorSettings()
    configure_logging(settings.log_level, settings.log_json)
    asyncio.run(run())


if __name__ == "__main__":
    main()
