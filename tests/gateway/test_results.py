"""Results page extras from the API: age intervals and input warnings (issue 8), shown and
exported."""

from __future__ import annotations

import base64
import re

import httpx

from tests.support.http import post_files
from tests.support.images import sample_png


def with_trust(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/v1/preview":
        return httpx.Response(200, content=b"\x89PNG\r\n\x1a\n")
    return httpx.Response(
        200,
        json={
            "model": {"name": "m", "version": "2"},
            "results": [
                {
                    "index": 0,
                    "ok": True,
                    "age_years": 54.2,
                    "sex": "male",
                    "p_male": 0.83,
                    "age_interval_90": [41.4, 67.0],
                    "warnings": [],
                },
                {
                    "index": 1,
                    "ok": True,
                    "age_years": 30.0,
                    "sex": "female",
                    "p_male": 0.2,
                    "age_interval_90": {"low": 18.0, "high": 42.0},
                    "warnings": [
                        {"code": "not_chest_xray", "message": "This looks like a <colour> photo."}
                    ],
                },
                {
                    "index": 2,
                    "ok": True,
                    "sex": "female",
                },  # a malformed answer must not crash the page
            ],
        },
    )


def test_intervals_and_warnings_are_shown_and_exported(mock_app) -> None:
    app, _ = mock_app(with_trust)
    html = post_files(
        app.test_client(),
        [(sample_png(), "a.png"), (sample_png(1), "b.png"), (sample_png(2), "c.png")],
    ).get_data(as_text=True)
    assert "54 years" in html and "(90 % interval 41–67)" in html
    assert "(90 % interval 18–42)" in html
    assert 'data-code="not_chest_xray"' in html
    assert "This looks like a &lt;colour&gt; photo." in html
    assert "answer for this file was incomplete" in html
    uri = re.search(r'href="data:text/csv;charset=utf-8;base64,([^"]+)"', html).group(1)
    lines = base64.b64decode(uri).decode().splitlines()
    assert lines[1] == "a.png,ok,54.2,41.4,67.0,male,0.830,,,,m,2"
    assert lines[2].startswith("b.png,ok,30.0,18.0,42.0,female,0.200,not_chest_xray,")
    assert lines[3].startswith("c.png,error,")


def test_single_result_card_shows_interval_and_warning(mock_app) -> None:
    def one(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/preview":
            return httpx.Response(200, content=b"\x89PNG\r\n\x1a\n")
        return httpx.Response(
            200,
            json={
                "model": {"name": "m", "version": "2"},
                "results": [
                    {
                        "index": 0,
                        "ok": True,
                        "age_years": 54.2,
                        "sex": "male",
                        "p_male": 0.83,
                        "age_interval_90": [41.0, 67.0],
                        "warnings": [{"code": "low_contrast", "message": "Very low contrast."}],
                    }
                ],
            },
        )

    app, _ = mock_app(one)
    html = post_files(app.test_client(), [(sample_png(), "a.png")]).get_data(as_text=True)
    assert 'class="result-card result"' in html
    assert "(90 % interval 41–67)" in html and "Very low contrast." in html
    assert 'width="83"' in html  # the P(male) bar's length
