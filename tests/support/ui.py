"""Driving the Prefect UI (the React UI `prefect server start` serves by default) in headless
Debian Chromium with Playwright: no browser download, ``/usr/bin/chromium`` from apt."""

from __future__ import annotations

import re
from typing import Any

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps trying to reach Google's hosts,
# which this machine's closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _field_name(name: str) -> re.Pattern[str]:
    # Optional parameters are labelled "lake (Optional)".
    return re.compile(rf"^\s*{re.escape(name)}(\s*\(Optional\))?\s*$")


def log_in(page: Any, ui_url: str, auth: str) -> None:
    """Sign in as a user of a server with basic auth does: the UI asks for ``user:password``
    on its login page and keeps it for the session's API calls."""
    from playwright.sync_api import expect

    page.set_default_timeout(30_000)
    page.goto(f"{ui_url.rstrip('/')}/v2/dashboard")
    page.wait_for_url(re.compile(r"/login"))
    password = page.locator("input[type=password]")
    password.fill(auth)
    page.get_by_role("button", name="Login").click()
    expect(password).to_have_count(0)


def start_custom_run(page: Any, ui_url: str, deployment_id: str, params: dict[str, str]) -> str:
    """Deployment page → Run → Custom run → fill ``params`` → Submit; the new flow run's id."""
    from playwright.sync_api import expect

    page.set_default_timeout(30_000)
    page.goto(f"{ui_url.rstrip('/')}/v2/deployments/deployment/{deployment_id}")
    page.get_by_role("button", name="Run", exact=True).click()  # exact: the nav has "Runs"
    page.get_by_role("menuitem", name="Custom run").click()
    page.wait_for_url(re.compile(rf"/deployments/deployment/{deployment_id}/run"))
    expect(page.get_by_role("heading", name="Parameters", exact=True)).to_be_visible()
    for name, value in params.items():
        field = page.get_by_role("textbox", name=_field_name(name))
        field.fill(value)
        expect(field).to_have_value(value)
    with page.expect_response(
        lambda r: (
            r.request.method == "POST" and f"/deployments/{deployment_id}/create_flow_run" in r.url
        )
    ) as created:
        page.get_by_role("button", name="Submit", exact=True).click()
    response = created.value
    if not response.ok:
        raise RuntimeError(f"the UI could not create the run: {response.status} {response.text()}")
    return str(response.json()["id"])
