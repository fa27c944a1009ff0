"""WXBizMsgCrypt: Tencent's published sample, and Tencent's own `@wecom/crypto` as the other side."""

from __future__ import annotations

import time

import pytest
from crypto_peer import peer, unavailable

from bot.adapters.wecom import CallbackRefused, MsgCrypt, signature

# The sample in WeCom's callback docs (加解密方案说明 / the WXBizMsgCrypt samples).
TOKEN, KEY, CORP = "QDG6eK", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", "wx5823bf96d3bd56c7"
SAMPLE = {"msg_signature": "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3", "timestamp": "1409659589",
          "nonce": "263014780",
          "echostr": "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="}
needs_peer = pytest.mark.skipif(unavailable() is not None, reason=unavailable() or "")


def test_verify_url_of_the_official_sample():
    crypt = MsgCrypt(TOKEN, KEY, CORP, max_age=None)
    assert crypt.verify_url(SAMPLE["msg_signature"], SAMPLE["timestamp"], SAMPLE["nonce"],
                            SAMPLE["echostr"]) == "1616140317555161061"


def test_the_sample_is_refused_as_a_replay_when_timestamps_are_checked():
    crypt = MsgCrypt(TOKEN, KEY, CORP, max_age=300)
    with pytest.raises(CallbackRefused, match="off"):
        crypt.verify_url(SAMPLE["msg_signature"], SAMPLE["timestamp"], SAMPLE["nonce"], SAMPLE["echostr"])
    assert crypt.verify_url(SAMPLE["msg_signature"], SAMPLE["timestamp"], SAMPLE["nonce"], SAMPLE["echostr"],
                            now=int(SAMPLE["timestamp"]) + 60) == "1616140317555161061"


@pytest.mark.parametrize("field,value", [("msg_signature", "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd4"),
                                         ("nonce", "263014781"), ("timestamp", "1409659590")])
def test_any_changed_part_breaks_the_signature(field, value):
    crypt = MsgCrypt(TOKEN, KEY, CORP, max_age=None)
    args = {**SAMPLE, field: value}
    with pytest.raises(CallbackRefused, match="msg_signature"):
        crypt.verify_url(args["msg_signature"], args["timestamp"], args["nonce"], args["echostr"])


def test_another_corp_is_refused():
    crypt = MsgCrypt(TOKEN, KEY, "wwsomeoneelse", max_age=None)
    with pytest.raises(CallbackRefused, match="corp"):
        crypt.verify_url(SAMPLE["msg_signature"], SAMPLE["timestamp"], SAMPLE["nonce"], SAMPLE["echostr"])


def test_a_bad_key_is_a_plain_error():
    with pytest.raises(ValueError, match="43"):
        MsgCrypt(TOKEN, "tooshort", CORP)


@needs_peer
def test_a_callback_encrypted_by_wecom_crypto_decrypts_here():
    xml = "<xml><Event><![CDATA[change_external_chat]]></Event><ChatId><![CDATA[群一]]></ChatId></xml>"
    now = str(int(time.time()))
    sent = peer(op="callback", token=TOKEN, key=KEY, corp=CORP, xml=xml, timestamp=now, nonce="4711")
    crypt = MsgCrypt(TOKEN, KEY, CORP)
    assert crypt.decrypt_message(sent["msg_signature"], sent["timestamp"], sent["nonce"], sent["body"]) == xml


@needs_peer
def test_what_we_encrypt_and_sign_wecom_crypto_reads():
    crypt = MsgCrypt(TOKEN, KEY, CORP)
    encrypted = crypt.encrypt("你好，企业微信")
    assert peer(op="decrypt", key=KEY, encrypted=encrypted) == {"message": "你好，企业微信", "id": CORP}
    echo = peer(op="echo", token=TOKEN, key=KEY, corp=CORP, echostr="x", timestamp="1", nonce="2")
    assert signature(TOKEN, "1", "2", echo["echostr"]) == echo["msg_signature"]
