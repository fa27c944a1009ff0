// Tencent's @wecom/crypto, driven by qunbot's WeCom tests: one JSON request in argv[2], one JSON answer out.
//   {"op": "callback", token, key, corp, xml, timestamp, nonce} -> {msg_signature, timestamp, nonce, body}
//     (what WeCom POSTs: <xml><ToUserName/><Encrypt/><AgentID/></xml>, signed over the ciphertext)
//   {"op": "echo", token, key, corp, echostr, timestamp, nonce} -> {msg_signature, timestamp, nonce, echostr}
//   {"op": "decrypt", key, encrypted} -> {message, id}
import { decrypt, encrypt, getSignature } from '@wecom/crypto';

const req = JSON.parse(process.argv[2]);
const out = {};
if (req.op === 'decrypt') {
  const { message, id } = decrypt(req.key, req.encrypted);
  Object.assign(out, { message, id });
} else {
  const plain = req.op === 'echo' ? req.echostr : req.xml;
  const ciphered = encrypt(req.key, plain, req.corp);
  Object.assign(out, {
    msg_signature: getSignature(req.token, req.timestamp, req.nonce, ciphered),
    timestamp: req.timestamp,
    nonce: req.nonce,
  });
  if (req.op === 'echo') {
    out.echostr = ciphered;
  } else {
    out.body = `<xml><ToUserName><![CDATA[${req.corp}]]></ToUserName>`
      + `<Encrypt><![CDATA[${ciphered}]]></Encrypt><AgentID><![CDATA[]]></AgentID></xml>`;
  }
}
process.stdout.write(JSON.stringify(out));
