// A stock @hocuspocus/provider client for Cairn's tests: connects to CAIRN_URL (ws://host/collab)
// for document CAIRN_DOC with the token CAIRN_TOKEN (a ticket or an API key), appends CAIRN_TYPE
// to the `content` text once synced (or, if that is empty, only reads the document), and waits until the text holds every part of CAIRN_EXPECT
// (separated by `|`) and the provider has no unsynced changes: every update it sent was
// acknowledged (Cairn acknowledges only what it has stored). It prints {"ok", "text", "scope",
// "unsynced"} as one JSON line and exits 0, or 1 after 15 s or on a refusal.
import * as Y from 'yjs'
import { HocuspocusProvider, HocuspocusProviderWebsocket } from '@hocuspocus/provider'
import WebSocket from 'ws'

const { CAIRN_URL, CAIRN_DOC, CAIRN_TOKEN, CAIRN_TYPE, CAIRN_EXPECT } = process.env

const expected = CAIRN_EXPECT.split('|')
const doc = new Y.Doc()
const text = doc.getText('content')
let scope = null
let typed = false
let done = false

// Node has no global WebSocket: the socket gets the `ws` package, and the provider the socket.
const socket = new HocuspocusProviderWebsocket({ url: CAIRN_URL, WebSocketPolyfill: WebSocket })
const provider = new HocuspocusProvider({
  websocketProvider: socket,
  name: CAIRN_DOC,
  document: doc,
  token: CAIRN_TOKEN,
  onAuthenticated: ({ scope: s }) => { scope = s },
  onAuthenticationFailed: ({ reason }) => finish(false, reason),
  onSynced: () => {
    // Nothing to type: a reader, done once it has the document.
    if (CAIRN_TYPE === '') {
      return finish(expected.every((part) => text.toString().includes(part)))
    }
    if (!typed) {
      typed = true
      text.insert(text.length, CAIRN_TYPE)
    }
    check()
  },
  onUnsyncedChanges: () => check()
})

// A provider given its socket attaches itself only when asked.
provider.attach()

function finish (ok, reason) {
  if (done) return
  done = true
  console.log(JSON.stringify({ ok, reason, scope, text: text.toString(), unsynced: provider.unsyncedChanges }))
  setTimeout(() => { provider.destroy(); socket.destroy(); process.exit(ok ? 0 : 1) }, 200)
}
function check () {
  if (typed && !provider.hasUnsyncedChanges && expected.every((part) => text.toString().includes(part))) {
    clearTimeout(timer)
    finish(true)
  }
}
const timer = setTimeout(() => finish(false, 'timed out'), 15000)
text.observe(check)
