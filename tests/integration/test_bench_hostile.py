"""The hostile share of `dtrag bench soak --hostile`, case by case against the app: each is answered with
what it deserves (accepted, or a 4xx naming the problem), never a 5xx, and quickly. The bodies that need
a raw socket (a trickle, a flood past the size limit) are pinned in test_hardening.py; the 10,000-character
queries cost the embedding model seconds each and are left to the bench."""

from __future__ import annotations

import time

from apps.bench import hostile
from apps.bench.hostile import Target
from tests.support.api import api_client

EXPECTED = {
    hostile.json_150k_spaces: {"202"},
    hostile.markdown_heading_spaces: {"202"},
    hostile.filename_40k: {"400", "422"},  # the multipart parser's header limit, or the name's
    hostile.title_1mb: {"400", "422"},  # the multipart parser's part limit, or the title's
    hostile.filter_keys_1000: {"422"},
    hostile.nested_json_10k: {"400", "422"},
    hostile.no_key: {"401"},
    hostile.bad_key: {"401"},
    hostile.javascript_source_url: {"422"},
}


async def test_hostile_requests_get_a_4xx_or_are_accepted_never_a_5xx(settings) -> None:
    async with api_client(settings) as api:
        target = Target("http://test", api.keys["read"], api.keys["write"], settings)
        for case, wanted in EXPECTED.items():
            for i in range(3 if case is hostile.nested_json_10k else 1):  # its three routes
                start = time.monotonic()
                status, detail = await case(api.client, target, i)
                assert status in wanted and detail is None, (case.__name__, i, status, detail)
                assert time.monotonic() - start < 5, case.__name__


def test_the_mix_covers_every_case_once_per_round() -> None:
    names = [name for name, _ in hostile.CASES]
    assert len(set(names)) == 14 and names.count("korean_10k_distinct") == 3
    assert 9_990 <= len(hostile.korean_query(5)) <= 10_000 and hostile.korean_query(5) == hostile.korean_query(5)
    assert hostile.korean_query(5) != hostile.korean_query(6)
    assert len(hostile.yes_no_question(10_000)) == 10_000 and hostile.yes_no_question(10_000).endswith("?")
