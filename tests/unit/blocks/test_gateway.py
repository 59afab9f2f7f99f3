"""The webhook gateway's configuration block: the command line's rules, saved and loaded
through a Prefect API, and a gateway built from it refuses what it does not allow."""

from __future__ import annotations

import json
import time

import pytest
from pydantic import ValidationError
from starlette.testclient import TestClient

from blocks.gateway import WebhookGatewayConfig
from deployments.webhook import create_app, gateway_of, sign

pytestmark = pytest.mark.timeout(60)
SECRET = "block-secret-0123456789abcdef"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"allowed_sources": ["landing/"]}, "expected s3://bucket/prefix/ or an absolute path"),
        ({"allowed_sources": ["/data/../etc/"]}, "expected s3://bucket/prefix/ or an absolute"),
        ({"datasets": {"bucket/in/": "customers"}}, "expected s3://bucket/prefix/=dataset-name"),
        ({"scoring": {"/score/": "Not A Name"}}, "=dataset-name"),
        ({"allowed_sources": ["/d/"], "allow_any_source": True}, "not both"),
    ],
)
def test_a_bad_gateway_config_is_refused_naming_the_value(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        WebhookGatewayConfig(**fields)  # type: ignore[arg-type]


def test_a_saved_config_and_the_command_lines_options_make_one_gateway(
    prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    WebhookGatewayConfig(
        allowed_sources=["s3://lake/landing/"],
        datasets={"s3://lake/landing/": "customers"},
    ).save("gateway-test", overwrite=True)
    loaded = WebhookGatewayConfig.load("gateway-test")
    config = loaded.with_options(
        allowed_sources=["/data/score/"], scoring=["/data/score/=customers"]
    )
    assert config.allowed_sources == ["s3://lake/landing/", "/data/score/"]
    assert config.scoring == {"/data/score/": "customers"}
    monkeypatch.setenv("GATEWAY_TEST_SECRET", SECRET)
    emitted: list[object] = []
    gateway = gateway_of(
        config, secret_env="GATEWAY_TEST_SECRET", emit=lambda a: str(emitted.append(a))
    )
    with TestClient(create_app(gateway)) as client:
        for uri, status in [("/data/score/b.csv", 202), ("/data/elsewhere/b.csv", 403)]:
            body = json.dumps({"dataset": "customers", "source_uri": uri}).encode()
            stamp = str(int(time.time()))
            response = client.post(
                "/hooks/generic",
                content=body,
                headers={
                    "X-Mlops-Timestamp": stamp,
                    "X-Mlops-Signature": sign(SECRET, stamp, body),
                },
            )
            assert response.status_code == status, response.text
    assert len(emitted) == 1
    # Without any allowlist, saved or given, the gateway refuses to start.
    with pytest.raises(ValueError, match="refusing to start without a source allowlist"):
        gateway_of(WebhookGatewayConfig(), secret_env="GATEWAY_TEST_SECRET")
