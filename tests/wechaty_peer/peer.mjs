// A real Wechaty puppet service for qunbot's end-to-end test.
//
// wechaty-puppet-mock, served by wechaty-puppet-service's PuppetServer on 127.0.0.1 (TLS off unless PEER_TLS=1),
// scripted through the mock's Mocker. It talks to its driver over stdin/stdout, one JSON object per line:
//   out {"event": "ready", "endpoint": "127.0.0.1:PORT", "token": "...", "versions": {...}}
//   in  {"cmd": "contact", "id": "u1", "name": "Alice"}             create a contact
//   in  {"cmd": "room", "id": "g1@chatroom", "topic": "...", "members": ["u1", ...]}
//   in  {"cmd": "login", "id": "bot"}                                 log the bot account in
//   in  {"cmd": "say", "from": "u1", "room": "g1@chatroom", "text": "ping", "mentions": ["bot"]}
//   in  {"cmd": "say", "from": "u1", "to": "bot", "text": "hi"}       a direct message
//   in  {"cmd": "image", "from": "u1", "room": "g1@chatroom", "name": "cat.png"}
//   in  {"cmd": "join", "room": "g1@chatroom", "members": ["u3"], "inviter": "u1"}
//   in  {"cmd": "leave", "room": "g1@chatroom", "members": ["u3"], "by": "owner"}
//   in  {"cmd": "topic", "room": "g1@chatroom", "topic": "...", "by": "u1"}
//   in  {"cmd": "rename", "room": "g1@chatroom", "member": "u1", "alias": "..."}   a group nickname (no event)
//   in  {"cmd": "logout"}
//   in  {"cmd": "stop"}
// `node peer.mjs --demo` also creates a group (小完子 the bot, 群主, Alice, Bob in 「qunbot 演示群」), logs the
// bot in, and takes plain lines as Alice speaking in the group ("@小完子 …" mentions the bot): see docs/wechaty.md.
// Every command is answered with {"event": "done", "seq": N} (or {"event": "error", ...}); what the bot
// does through the service is reported as {"event": "sent", ...} / {"event": "action", ...}.
import net from 'node:net'
import readline from 'node:readline'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'

// The packages come from this folder's node_modules, or from PEER_PACKAGES (another package line, e.g. v0/).
const base = process.env.PEER_PACKAGES ? pathToFileURL(process.env.PEER_PACKAGES + '/') : new URL('.', import.meta.url)
const require = createRequire(new URL('package.json', base))
const { log } = require('wechaty-puppet')
const { PuppetServer } = require('wechaty-puppet-service')
const { PuppetMock, mock } = require('wechaty-puppet-mock')
const { FileBox } = require('file-box')

log.level(process.env.PEER_LOG_LEVEL || 'silent')

const versions = Object.fromEntries(['wechaty-puppet', 'wechaty-puppet-service', 'wechaty-puppet-mock'].map(name => [
  name, JSON.parse(readFileSync(new URL(`node_modules/${name}/package.json`, base))).version]))

const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

async function freePort () {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

const mocker = new mock.Mocker()
const puppet = new PuppetMock({ mocker })

// Record every write the bot makes before the mock sees it: the mock drops mention ids and ignores room actions.
function record (method, toEvent) {
  const original = puppet[method].bind(puppet)
  puppet[method] = async (...args) => {
    out(await toEvent(...args))
    return original(...args)
  }
}
record('messageSendText', (conversationId, text, mentionIdList) => ({
  event: 'sent', kind: 'text', conversation: conversationId, text, mentions: mentionIdList || [],
}))
record('messageSendFile', async (conversationId, file) => ({
  event: 'sent', kind: 'file', conversation: conversationId, name: file.name, size: (await file.toBuffer()).length,
}))
record('roomDel', (roomId, contactId) => ({ event: 'action', action: 'remove_member', room: roomId, member: contactId }))
record('roomTopic', (roomId, topic) => (topic === undefined
  ? { event: 'read', what: 'topic', room: roomId }
  : { event: 'action', action: 'set_topic', room: roomId, topic }))
record('contactAlias', (contactId, alias) => (alias === undefined
  ? { event: 'read', what: 'alias', contact: contactId }
  : { event: 'action', action: 'set_alias', contact: contactId, alias }))

// Room members are answered from the scripted contacts: the 0.x mock lists no members and gives everyone the
// same fake name and alias. Group nicknames (room aliases) are scripted with the `rename` command.
const roomAliases = new Map()
puppet.roomMemberList = async (roomId) => [...mocker.roomPayload(roomId).memberIdList]
puppet.roomMemberPayload = async (roomId, contactId) => {
  const contact = mocker.contactPayload(contactId)
  return { id: contactId, name: contact.name, avatar: contact.avatar || '',
    roomAlias: roomAliases.get(`${roomId}/${contactId}`) || '' }
}

const token = process.env.PEER_TOKEN || 'qunbot-test-token'
const port = Number(process.env.PEER_PORT || 0) || await freePort()
const endpoint = `127.0.0.1:${port}`
// PEER_TLS=1 serves TLS as 1.x services do by default (the Wechaty community's built-in certificate)
const server = new PuppetServer({ endpoint, puppet, token, tls: { disable: !process.env.PEER_TLS } })
await server.start()

const contact = (id) => mocker.ContactMock.load(id)
const room = (id) => mocker.RoomMock.load(id)

const commands = {
  contact: ({ id, name }) => { mocker.createContact({ id, name }) },
  room: ({ id, topic, members, owner, admins }) => {
    mocker.createRoom({ id, topic, memberIdList: [...members], ownerId: owner, adminIdList: admins || [] })
  },
  login: ({ id }) => { mocker.login(contact(id)) },
  logout: async () => { await puppet.logout() },
  say: ({ from, room: roomId, to, text, mentions }) => {
    const target = roomId ? room(roomId) : contact(to)
    contact(from).say(text, (mentions || []).map(contact)).to(target)
  },
  image: ({ from, room: roomId, to, name, base64 }) => {
    const png = base64 || 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=='
    contact(from).say(FileBox.fromBase64(png, name || 'image.png')).to(roomId ? room(roomId) : contact(to))
  },
  join: ({ room: roomId, members, inviter }) => { room(roomId).add(...members.map(contact)).by(contact(inviter)) },
  leave: ({ room: roomId, members, by }) => { room(roomId).remove(...members.map(contact)).by(contact(by)) },
  topic: ({ room: roomId, topic, by }) => { room(roomId).topic(topic).by(contact(by)) },
  rename: ({ room: roomId, member, alias }) => { roomAliases.set(`${roomId}/${member}`, alias) },
  stop: async () => {
    await server.stop()
    await puppet.stop().catch(() => {})
    process.exit(0)
  },
}

const demo = process.argv.includes('--demo')
const DEMO_ROOM = 'demo@chatroom'
if (demo) {
  for (const [id, name] of [['bot', '小完子'], ['owner1', '群主'], ['u1', 'Alice'], ['u2', 'Bob']]) {
    commands.contact({ id, name })
  }
  commands.room({ id: DEMO_ROOM, topic: 'qunbot 演示群', members: ['bot', 'owner1', 'u1', 'u2'], owner: 'owner1' })
  commands.login({ id: 'bot' })
  process.stderr.write([
    `demo puppet service on ${endpoint} (token ${token})`,
    `  export WECHATY_PUPPET_SERVICE_ENDPOINT=${endpoint} WECHATY_PUPPET_SERVICE_TOKEN=${token}`,
    '  type a line to say it as Alice in 「qunbot 演示群」 ("@小完子 hi" mentions the bot), or a JSON command',
    '',
  ].join('\n'))
}

function parse (line) {
  if (!demo || line.trimStart().startsWith('{')) return JSON.parse(line)
  const mentions = line.includes('@小完子') ? ['bot'] : []
  return { cmd: 'say', from: 'u1', room: DEMO_ROOM, text: line.replace('@小完子 ', '@小完子\u2005'), mentions }
}

let seq = 0
const lines = readline.createInterface({ input: process.stdin })
lines.on('line', async (line) => {
  if (!line.trim()) return
  const n = ++seq
  try {
    const command = parse(line)
    const run = commands[command.cmd]
    if (!run) throw new Error(`unknown command ${command.cmd}`)
    await run(command)
    out({ event: 'done', seq: n, cmd: command.cmd })
  } catch (e) {
    out({ event: 'error', seq: n, message: String(e && e.message || e) })
  }
})
lines.on('close', () => { if (!demo) commands.stop() })

out({ event: 'ready', endpoint, token, versions })
