"""``conveyor-api``: serve the REST API with uvicorn."""

from __future__ import annotations

import uvicorn

from conveyor_api.app import create_app
from conveyor_api.settings import ApiSettings
from conveyor_kernel.logs import configure_logging
from conveyor_kernel.settings import load_settings
from conveyor_kernel.tracing import Tracing


def main() -> None:
    settings = load_settings(ApiSettings, "conveyor-api")
    configure_logging(settings.log_level, settings.log_json)
    uvicorn.run(
        create_app(settings, Tracing.from_env("conveyor-api")),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        # longer than common load-balancer idle timeouts (60 s), so the proxy closes first
        timeout_keep_alive=75,
    )


if __name__ == "__main__":
    main()
