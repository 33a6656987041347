// A stock y-websocket client for Cairn's tests: connects to CAIRN_URL (ws://host/collab) in
// room CAIRN_DOC with the API key CAIRN_KEY, appends CAIRN_TYPE to the `content` text once
// synced, and waits until the text holds every part of CAIRN_EXPECT (separated by `|`). It
// prints {"ok", "text"} as one JSON line and exits 0, or 1 after 15 s.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

const { CAIRN_URL, CAIRN_DOC, CAIRN_KEY, CAIRN_TYPE, CAIRN_EXPECT } = process.env

class KeyedWebSocket extends WebSocket {
  constructor (url, protocols) {
    super(url, protocols, { headers: { authorization: `Bearer ${CAIRN_KEY}` } })
  }
}

const doc = new Y.Doc()
const text = doc.getText('content')
const provider = new WebsocketProvider(CAIRN_URL, CAIRN_DOC, doc, {
  WebSocketPolyfill: KeyedWebSocket,
  disableBc: true
})
const expected = CAIRN_EXPECT.split('|')
let typed = false
let done = false

const finish = (ok) => {
  if (done) return
  done = true
  console.log(JSON.stringify({ ok, text: text.toString() }))
  // Let the last update leave before the process does.
  setTimeout(() => { provider.destroy(); process.exit(ok ? 0 : 1) }, 500)
}
const timer = setTimeout(() => finish(false), 15000)
const check = () => {
  if (typed && expected.every((part) => text.toString().includes(part))) {
    clearTimeout(timer)
    finish(true)
  }
}
provider.on('sync', (synced) => {
  if (synced && !typed) {
    typed = true
    text.insert(text.length, CAIRN_TYPE)
    check()
  }
})
text.observe(check)
