"""WeCom's callback crypto (WXBizMsgCrypt): SHA1 `msg_signature`, AES-256-CBC, the receiver id checked.

The scheme, from Tencent's samples: the AES key is base64(EncodingAESKey + "="), the IV its first 16
bytes; the plaintext is 16 random bytes, a 4-byte big-endian length, the message and the receiver id
(the corp id), padded PKCS#7 to 32 bytes. The signature is SHA1 over the sorted token, timestamp,
nonce and ciphertext. Checked against Tencent's sample vectors and `@wecom/crypto` (tests/wecom/).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
import time
from xml.etree import ElementTree

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_BLOCK = 32


class CallbackRefused(Exception):
    """A callback that must not be processed: bad signature, stale timestamp, wrong corp, bad ciphertext."""


def signature(token: str, timestamp: str, nonce: str, encrypted: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, encrypted])).encode()).hexdigest()


class MsgCrypt:
    """One callback configuration: the token, the EncodingAESKey and the corp id it must carry."""

    def __init__(self, token: str, encoding_aes_key: str, corp_id: str, *, max_age: float | None = 300.0) -> None:
        try:
            key = base64.b64decode(encoding_aes_key + "=", validate=True)
        except binascii.Error:
            key = b""
        if len(key) != 32:
            raise ValueError("EncodingAESKey must be the 43 characters the WeCom console shows")
        self.token, self.corp_id, self.max_age = token, corp_id, max_age
        self._key, self._iv = key, key[:16]

    # --- the two requests WeCom sends -----------------------------------------------------

    def verify_url(self, msg_signature: str, timestamp: str, nonce: str, echostr: str, *,
                   now: float | None = None) -> str:
        """URL verification (GET): the plaintext echostr to answer with."""
        self._check(msg_signature, timestamp, nonce, echostr, now)
        return self.decrypt(echostr)

    def decrypt_message(self, msg_signature: str, timestamp: str, nonce: str, body: bytes | str, *,
                        now: float | None = None) -> str:
        """An encrypted POST: the inner XML, after the signature, the timestamp and the corp id passed."""
        try:
            encrypted = ElementTree.fromstring(body).findtext("Encrypt")
        except ElementTree.ParseError:
            encrypted = None
        if not encrypted:
            raise CallbackRefused("the body is not WeCom's <xml><Encrypt>…</Encrypt></xml>")
        self._check(msg_signature, timestamp, nonce, encrypted, now)
        return self.decrypt(encrypted)

    def _check(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str, now: float | None) -> None:
        expected = signature(self.token, timestamp, nonce, encrypted)
        if not hmac.compare_digest(expected, msg_signature.lower()):
            raise CallbackRefused("msg_signature does not match (wrong Token, or not from WeCom)")
        if self.max_age is not None:
            try:
                age = (time.time() if now is None else now) - int(timestamp)
            except ValueError:
                raise CallbackRefused(f"timestamp {timestamp!r} is not a number") from None
            if abs(age) > self.max_age:
                raise CallbackRefused(f"timestamp {timestamp} is {age:.0f}s off (more than {self.max_age:.0f}s): "
                                      "a replay, or this machine's clock is wrong")

    # --- the cipher --------------------------------------------------------------------

    def decrypt(self, encrypted: str) -> str:
        try:
            raw = base64.b64decode(encrypted, validate=True)
        except binascii.Error:
            raise CallbackRefused("the ciphertext is not base64") from None
        if not raw or len(raw) % 16:
            raise CallbackRefused("the ciphertext has a wrong length")
        decryptor = Cipher(algorithms.AES(self._key), modes.CBC(self._iv)).decryptor()
        plain = decryptor.update(raw) + decryptor.finalize()
        pad = plain[-1]
        if not 1 <= pad <= _BLOCK or len(plain) < 20 + pad:
            raise CallbackRefused("bad padding: the EncodingAESKey does not match")
        plain = plain[:-pad]
        (length,) = struct.unpack(">I", plain[16:20])
        message, receiver = plain[20:20 + length], plain[20 + length:]
        if len(message) != length:
            raise CallbackRefused("bad message length: the EncodingAESKey does not match")
        if receiver.decode(errors="replace") != self.corp_id:
            raise CallbackRefused(f"the callback is for corp {receiver.decode(errors='replace')!r}, "
                                  f"not {self.corp_id!r}")
        return message.decode()

    def encrypt(self, message: str, *, random: bytes | None = None) -> str:
        """What WeCom does (for replies, and for the mock server in tests)."""
        body = message.encode()
        plain = (random or os.urandom(16)) + struct.pack(">I", len(body)) + body + self.corp_id.encode()
        pad = _BLOCK - len(plain) % _BLOCK
        plain += bytes([pad]) * pad
        encryptor = Cipher(algorithms.AES(self._key), modes.CBC(self._iv)).encryptor()
        return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()
