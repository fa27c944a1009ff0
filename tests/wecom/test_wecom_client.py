"""The WeCom API client against the mock: token cache and refresh, paging, back-off, named errors."""

from __future__ import annotations

import pytest

from bot.adapters._base import RateLimited
from bot.adapters.wecom import WecomApiError, WecomClient


def client_for(server, *, secret=None, sleeps=None, retries=4):
    async def sleep(seconds):
        if sleeps is not None:
            sleeps.append(seconds)

    return WecomClient(server.mock.corp_id, secret or server.mock.secret, base_url=server.url, sleep=sleep,
                       retries=retries)


async def test_the_token_is_fetched_once_and_reused(wecom):
    client = client_for(wecom)
    await client.group_chat_ids()
    await client.group_chat("wrGroupA")
    assert len(wecom.mock.called("gettoken")) == 1
    await client.aclose()


async def test_an_expired_token_is_refreshed_and_the_call_repeated(wecom):
    client = client_for(wecom)
    await client.group_chat_ids()
    wecom.mock.expire_tokens()  # the next call answers 42001
    assert await client.group_chat_ids() == ["wrGroupA", "wrGroupB"]
    assert len(wecom.mock.called("gettoken")) == 2
    await client.aclose()


async def test_the_token_is_refreshed_before_expires_in_runs_out(wecom):
    now = [0.0]
    client = WecomClient(wecom.mock.corp_id, wecom.mock.secret, base_url=wecom.url, monotonic=lambda: now[0])
    await client.token()
    now[0] = 7200 - 299  # within the five-minute margin
    await client.token()
    assert len(wecom.mock.called("gettoken")) == 2
    await client.aclose()


async def test_groups_are_read_over_every_page(wecom):
    for n in range(5):
        wecom.mock.add_group(f"wrMore{n}", f"群{n}", "owner_a")
    wecom.mock.max_page = 2
    client = client_for(wecom)
    ids = await client.group_chat_ids()
    assert ids == sorted(wecom.mock.groups)
    assert len(wecom.mock.called("externalcontact/groupchat/list")) == 4  # 7 groups, 2 a page
    await client.aclose()


async def test_rate_limits_back_off_and_retry(wecom):
    sleeps: list[float] = []
    client = client_for(wecom, sleeps=sleeps)
    await client.token()
    wecom.mock.rate_limited = 3
    assert await client.group_chat_ids() == ["wrGroupA", "wrGroupB"]
    assert sleeps == [1.0, 2.0, 4.0]
    await client.aclose()


async def test_a_rate_limit_that_lasts_becomes_rate_limited(wecom):
    client = client_for(wecom, sleeps=[], retries=2)
    await client.token()
    wecom.mock.rate_limited = 10
    with pytest.raises(RateLimited, match="45009"):
        await client.group_chat_ids()
    await client.aclose()


async def test_other_errcodes_name_the_call_and_wecoms_message(wecom):
    client = client_for(wecom)
    with pytest.raises(WecomApiError, match="externalcontact/groupchat/get: errcode 40050: chatid not found"):
        await client.group_chat("wrNoSuchGroup")
    wecom.mock.contact_permission = False
    with pytest.raises(WecomApiError) as err:
        await client.group_chat_ids()
    assert err.value.errcode == 48002
    await client.aclose()


async def test_a_wrong_secret_is_named(wecom):
    client = client_for(wecom, secret="wrong")
    with pytest.raises(WecomApiError, match="gettoken: errcode 40001"):
        await client.token()
    await client.aclose()


async def test_an_invalid_token_is_replaced_once_not_in_a_loop(wecom):
    client = client_for(wecom)
    await client.group_chat_ids()
    wecom.mock._tokens.clear()  # WeCom forgot the token: 40014 invalid access_token
    assert await client.group_chat_ids() == ["wrGroupA", "wrGroupB"]
    assert len(wecom.mock.called("gettoken")) == 2
    wecom.mock.secret = "rotated"  # and now no new token can be had: a plain error, not a retry loop
    wecom.mock._tokens.clear()
    with pytest.raises(WecomApiError, match="gettoken: errcode 40001"):
        await client.group_chat_ids()
    await client.aclose()
